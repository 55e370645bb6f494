/**
 * Who is calling. Internal callers arrive over service bindings whose `props` the deployer set in
 * wrangler config (`props = { caller = "cart" }`); the caller's code cannot change them. Anything
 * without props came from the internet through a route.
 */

/** The identity of requests that arrived through a public route. */
export const INTERNET = "internet";

/** Headers starting with this prefix are the mesh's own; the internet may not set them. */
export const MESH_HEADER_PREFIX = "x-weft-";

/** Reads the caller identity the binding carries. */
export function callerOf(props: unknown): string {
  if (typeof props === "object" && props !== null && "caller" in props && typeof props.caller === "string" && props.caller !== "") {
    return props.caller;
  }
  return INTERNET;
}

/**
 * The headers the backend receives: mesh headers from the internet removed, and the verified caller
 * identity added as `x-weft-caller`.
 */
export function inboundHeaders(request: Request, caller: string): Headers {
  const headers = new Headers(request.headers);
  if (caller === INTERNET) {
    for (const name of [...headers.keys()]) if (name.startsWith(MESH_HEADER_PREFIX)) headers.delete(name);
  }
  headers.set("x-weft-caller", caller);
  return headers;
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
