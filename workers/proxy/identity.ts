/**
 * Who is calling. Every request has two principals, as Istio keeps a peer and a request principal:
 *
 * - the **peer**: who handed the request to this proxy. Internal peers arrive over service bindings
 *   whose `props` the deployer set in wrangler config; the peer's code cannot change them. A
 *   service's own worker code calls with `props = { caller = "cart" }`; another service's *proxy*,
 *   relaying a request to this service as a `mesh` backend, calls with
 *   `props = { caller = "storefront", hop = "proxy" }`. Anything without props came from the
 *   internet through a route.
 * - the **origin**: on whose behalf the request is made. A worker's own call is its own origin. A
 *   proxy relays the origin of the request it received in `x-weft-origin`, and that header is
 *   believed only from a peer whose props say it is a proxy — so an internet request relayed by
 *   `storefront` stays an internet request at the next service, and worker code cannot claim to be
 *   relaying for someone else.
 *
 * Authorization policies match the origin (`from`) and, optionally, the peer (`peers`).
 */

/** The identity of requests that arrived through a public route. */
export const INTERNET = "internet";

/** Headers starting with this prefix are the mesh's own; the internet may not set them. */
export const MESH_HEADER_PREFIX = "x-weft-";
/** The verified origin of an internal request, for the backend; absent on requests from the internet. */
export const CALLER_HEADER = "x-weft-caller";
/** The immediate caller, for the backend, when it is not the origin (a proxy that relayed the request). */
export const PEER_HEADER = "x-weft-peer";
/** The origin a proxy relays to the next proxy; believed only from a proxy peer. */
export const ORIGIN_HEADER = "x-weft-origin";
/** Milliseconds the caller will still wait: inner hops must not outlive it. */
export const DEADLINE_HEADER = "x-weft-deadline-ms";
/** Marks mirrored (shadow) copies, whose responses nobody reads. */
export const SHADOW_HEADER = "x-weft-shadow";

/** The `hop` value of binding props that a proxy (not worker code) is the peer. */
export const PROXY_HOP = "proxy";

/** Longest identity accepted from props or a header (a service name is a DNS label: 63). */
export const MAX_IDENTITY_LENGTH = 63;
const SERVICE_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** Who called, and on whose behalf. `peer === origin` for direct calls; both `internet` from outside. */
export interface Identity {
  /** The immediate caller: the service whose binding delivered the request, or `internet`. */
  readonly peer: string;
  /** The request principal: the service (or `internet`) the request was first made by. */
  readonly origin: string;
}

/** The peer as the deployer described it in the binding's props. */
export type Peer =
  | { kind: "internet" }
  | { kind: "worker"; service: string }
  | { kind: "proxy"; service: string };

/** The identity of every request from the internet. */
export const FROM_INTERNET: Identity = { peer: INTERNET, origin: INTERNET };

/** True for a service name (or `internet`) of bounded length: the only identities Weft believes. */
export function isIdentity(value: unknown): value is string {
  return typeof value === "string" && value.length <= MAX_IDENTITY_LENGTH && SERVICE_NAME.test(value);
}

/**
 * Reads the peer from a binding's props. Props that do not name a valid service are treated as
 * none: such a request is from the internet, the least trusted peer. Only `hop = "proxy"` marks a
 * proxy; any other `hop` is worker code.
 */
export function peerOf(props: unknown): Peer {
  if (typeof props !== "object" || props === null || !("caller" in props)) return { kind: "internet" };
  const caller = props.caller;
  if (!isIdentity(caller) || caller === INTERNET) return { kind: "internet" };
  const hop = "hop" in props ? props.hop : undefined;
  return hop === PROXY_HOP ? { kind: "proxy", service: caller } : { kind: "worker", service: caller };
}

/**
 * Who is calling: the peer from the binding's props, and the origin — from `x-weft-origin` when the
 * peer is a proxy and the header holds a valid identity, else the peer itself (a worker's call, or
 * a proxy's own probes, are their own origin). Headers from the internet or from worker code never
 * change the identity.
 */
export function identify(props: unknown, headers: Headers): Identity {
  const peer = peerOf(props);
  if (peer.kind === "internet") return FROM_INTERNET;
  if (peer.kind === "worker") return { peer: peer.service, origin: peer.service };
  const relayed = headers.get(ORIGIN_HEADER);
  return { peer: peer.service, origin: isIdentity(relayed) ? relayed : peer.service };
}

/**
 * Reads the caller identity the binding carries (the peer; `internet` without props).
 * @deprecated Use {@link identify}: a proxy peer relays someone else's request, so the peer alone
 * is not who the request is for.
 */
export function callerOf(props: unknown): string {
  const peer = peerOf(props);
  return peer.kind === "internet" ? INTERNET : peer.service;
}

/** A bare caller string is a direct call: it is both peer and origin. */
function identityOf(who: Identity | string): Identity {
  return typeof who === "string" ? { peer: who, origin: who } : who;
}

/** When the request must be answered by (ms epoch): the route's timeout and the caller's remaining deadline, whichever ends first. The inbound deadline is believed from mesh peers only. */
export function deadlineOf(request: Request, who: Identity | string, routeTimeoutMs: number | undefined, now: number): number | undefined {
  const inbound = identityOf(who).peer === INTERNET ? Number.NaN : Number(request.headers.get(DEADLINE_HEADER) ?? Number.NaN);
  const budget = Math.min(routeTimeoutMs ?? Number.POSITIVE_INFINITY, Number.isFinite(inbound) && inbound > 0 ? inbound : Number.POSITIVE_INFINITY);
  return Number.isFinite(budget) ? now + budget : undefined;
}

/**
 * Sets `x-weft-origin` on headers a proxy sends on: the next proxy (a `mesh` backend) then knows
 * whom the request is for. {@link inboundHeaders} already does this for every forwarded request;
 * call it for any request built apart from those headers that relays a caller's request.
 */
export function setOrigin(headers: Headers, who: Identity): Headers {
  headers.set(ORIGIN_HEADER, who.origin);
  return headers;
}

/**
 * The headers the backend receives: the trace context of this hop (W3C `traceparent`, this proxy's
 * span as the parent); `x-weft-caller` set to the origin (absent when the origin is the internet);
 * `x-weft-peer` set to the immediate caller when it is not the origin (a proxy relayed the request);
 * and `x-weft-origin` for the next proxy when the backend is a `mesh` backend (worker backends may
 * ignore it: a proxy believes it only from another proxy). From an internet peer every other
 * `x-weft-*` header is removed, so a request without `x-weft-caller` came from the internet:
 * backends are reachable only through their proxy.
 *
 * A string `who` is a direct caller (peer and origin alike), for callers not yet using {@link identify}.
 */
export function inboundHeaders(request: Request, who: Identity | string, trace: { traceparent: string; tracestate: string | undefined }): Headers {
  const identity = identityOf(who);
  const headers = new Headers(request.headers);
  headers.set("traceparent", trace.traceparent);
  if (trace.tracestate === undefined) headers.delete("tracestate");
  if (identity.peer === INTERNET) {
    for (const [name] of request.headers) {
      if (name.startsWith(MESH_HEADER_PREFIX)) headers.delete(name);
    }
  }
  if (identity.origin === INTERNET) headers.delete(CALLER_HEADER);
  else headers.set(CALLER_HEADER, identity.origin);
  if (identity.peer === identity.origin) headers.delete(PEER_HEADER);
  else headers.set(PEER_HEADER, identity.peer);
  return setOrigin(headers, identity);
}

/**
 * The request a backend receives: the method, URL and body of `request` with `headers`. Built from
 * parts because `new Request(request, …)` also copies `request.cf`, which cost more than all of the
 * proxy's own work in the bench (~30 µs a request); backends get the proxy's headers, not `cf`.
 */
export function outboundRequest(request: Request, headers: Headers): Request {
  return new Request(request.url, { method: request.method, headers, body: request.body, redirect: "manual" });
}

/** One cookie's value from a Cookie header, without parsing the others. */
export function readCookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const raw = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
  return undefined;
}
