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
import type { HeaderEdits } from "./outbound.ts";

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
/** The verified webhook scheme, set by the proxy only after a provider's signature checked out. */
export const WEBHOOK_SCHEME_HEADER = "x-weft-webhook-scheme";
/** The verified webhook delivery (event) id, when the scheme has one. */
export const WEBHOOK_ID_HEADER = "x-weft-webhook-id";
/** Headers only this proxy sets, after checking something: nobody's code may send them on. */
const VERIFIED_HEADERS = [WEBHOOK_SCHEME_HEADER, WEBHOOK_ID_HEADER];
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

/** When the request must be answered by (ms epoch): the route's timeout and the caller's remaining deadline, whichever ends first. The inbound deadline is believed from mesh peers only. */
export function deadlineOf(request: Request, who: Identity, routeTimeoutMs: number | undefined, now: number): number | undefined {
  const inbound = who.peer === INTERNET ? Number.NaN : Number(request.headers.get(DEADLINE_HEADER) ?? Number.NaN);
  const budget = Math.min(routeTimeoutMs ?? Number.POSITIVE_INFINITY, Number.isFinite(inbound) && inbound > 0 ? inbound : Number.POSITIVE_INFINITY);
  return Number.isFinite(budget) ? now + budget : undefined;
}

/**
 * The identity step's mark on the backend's request. From an internet peer every `x-weft-*` header
 * is removed, so a request without `x-weft-caller` came from the internet (backends are reachable
 * only through their proxy). `x-weft-caller` is the origin (absent when the origin is the internet,
 * relayed or not); `x-weft-peer` the immediate caller when it is not the origin (a proxy relayed the
 * request), and removed otherwise, whatever worker code sent; so are the headers only the proxy sets
 * after verifying something (`x-weft-webhook-*`). When the route can send to another
 * service's proxy (`relays`: a `mesh` backend among its backends, failover or mirror),
 * `x-weft-origin` tells that proxy whom the request is for; it believes it only from a proxy peer.
 * An internet request to a route without mesh backends and without mesh headers needs no change.
 */
export function identityEdits(edits: HeaderEdits, headers: Headers, who: Identity, relays: boolean): void {
  if (who.peer === INTERNET) edits.stripMeshHeaders(headers);
  else for (const name of VERIFIED_HEADERS) edits.remove(name);
  if (who.origin !== INTERNET) edits.set(CALLER_HEADER, who.origin);
  else if (who.peer !== INTERNET) edits.remove(CALLER_HEADER);
  if (who.peer !== who.origin) edits.set(PEER_HEADER, who.peer);
  else if (who.peer !== INTERNET) edits.remove(PEER_HEADER);
  if (relays) edits.set(ORIGIN_HEADER, who.origin);
  else if (who.peer !== INTERNET) edits.remove(ORIGIN_HEADER);
}

/** One cookie's value from a Cookie header, without parsing the others. */
export function readCookie(header: string | null, name: string): string | undefined {
  if (!header) return undefined;
  // Scans for `name=` at a cookie boundary instead of splitting the header (this runs per request).
  let from = 0;
  for (;;) {
    const at = header.indexOf(name, from);
    if (at < 0) return undefined;
    from = at + name.length;
    let before = at - 1;
    while (before >= 0 && header[before] === " ") before--;
    let after = from;
    while (header[after] === " ") after++;
    if ((before < 0 || header[before] === ";") && header[after] === "=") {
      const end = header.indexOf(";", after);
      const raw = header.slice(after + 1, end < 0 ? undefined : end).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
}
