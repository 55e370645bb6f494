/**
 * Who is calling. Internal callers arrive over service bindings whose `props` the deployer set in
 * wrangler config (`props = { caller = "cart" }`); the caller's code cannot change them. Anything
 * without props came from the internet through a route.
 */

/** The identity of requests that arrived through a public route. */
export const INTERNET = "internet";

/** Headers starting with this prefix are the mesh's own; the internet may not set them. */
export const MESH_HEADER_PREFIX = "x-weft-";
/** The verified identity of an internal caller; absent on requests from the internet. */
export const CALLER_HEADER = "x-weft-caller";
/** Milliseconds the caller will still wait: inner hops must not outlive it. */
export const DEADLINE_HEADER = "x-weft-deadline-ms";
/** Marks mirrored (shadow) copies, whose responses nobody reads. */
export const SHADOW_HEADER = "x-weft-shadow";

/** When the request must be answered by (ms epoch): the route's timeout and the caller's remaining deadline, whichever ends first. */
export function deadlineOf(request: Request, caller: string, routeTimeoutMs: number | undefined, now: number): number | undefined {
  const inbound = caller === INTERNET ? Number.NaN : Number(request.headers.get(DEADLINE_HEADER) ?? Number.NaN);
  const budget = Math.min(routeTimeoutMs ?? Number.POSITIVE_INFINITY, Number.isFinite(inbound) && inbound > 0 ? inbound : Number.POSITIVE_INFINITY);
  return Number.isFinite(budget) ? now + budget : undefined;
}

/** Reads the caller identity the binding carries. */
export function callerOf(props: unknown): string {
  if (typeof props === "object" && props !== null && "caller" in props && typeof props.caller === "string" && props.caller !== "") {
    return props.caller;
  }
  return INTERNET;
}

/**
 * The headers the backend receives: the trace context of this hop (W3C `traceparent`, this proxy's
 * span as the parent), and for internal callers `x-weft-caller` set to their verified identity. From
 * the internet every `x-weft-*` header is removed, so a request without `x-weft-caller` came from the
 * internet: backends are reachable only through their proxy.
 */
export function inboundHeaders(request: Request, caller: string, trace: { traceparent: string; tracestate: string | undefined }): Headers {
  const headers = new Headers(request.headers);
  headers.set("traceparent", trace.traceparent);
  if (trace.tracestate === undefined) headers.delete("tracestate");
  if (caller !== INTERNET) {
    headers.set(CALLER_HEADER, caller);
    return headers;
  }
  for (const [name] of request.headers) {
    if (name.startsWith(MESH_HEADER_PREFIX)) headers.delete(name);
  }
  return headers;
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
