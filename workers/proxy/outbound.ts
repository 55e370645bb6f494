/**
 * The request a backend receives. Most requests from the internet need no change at all (no mesh
 * headers to strip, no trace to add), and then the proxy hands over the very request it received:
 * copying a request's headers and building a new Request is the largest cost a proxy on Workers
 * can add to a request, so it is paid only when something must change.
 */
import { MESH_HEADER_PREFIX } from "./identity.ts";

/** Set by {@link noteMeshHeader} during one synchronous `forEach` (module-level: no closure per request). */
let meshHeaderSeen = false;

function noteMeshHeader(_value: string, name: string): void {
  if (!meshHeaderSeen && name.startsWith(MESH_HEADER_PREFIX)) meshHeaderSeen = true;
}

/** Header changes collected by the chain's steps, applied once. */
export class HeaderEdits {
  private edits: Array<[string, string | undefined, "set" | "append"]> | undefined;
  private stripMesh = false;

  /** Sets `name` to `value` on the backend's copy. */
  set(name: string, value: string): void {
    (this.edits ??= []).push([name, value, "set"]);
  }

  /** Adds a value of `name` on the backend's copy, keeping the values it has (a route's `add` filter). */
  append(name: string, value: string): void {
    (this.edits ??= []).push([name, value, "append"]);
  }

  /** Removes `name` from the backend's copy. */
  remove(name: string): void {
    (this.edits ??= []).push([name, undefined, "set"]);
  }

  /** The same as {@link remove}, under the name the route filters' header sink uses. */
  delete(name: string): void {
    this.remove(name);
  }

  /** Removes every `x-weft-*` header the caller sent (the internet may not set the mesh's headers). */
  stripMeshHeaders(headers: Headers): void {
    // forEach is one call into the runtime; a keys() iterator crosses into it once per header
    // (measured on workerd with a browser's few headers: ~2.6 vs ~4 µs a request).
    meshHeaderSeen = false;
    headers.forEach(noteMeshHeader);
    if (meshHeaderSeen) this.stripMesh = true;
  }

  /** The backend's header set, or undefined when the request's own headers go unchanged. */
  apply(source: Headers): Headers | undefined {
    if (!this.edits && !this.stripMesh) return undefined;
    const headers = new Headers(source);
    if (this.stripMesh) for (const name of source.keys()) if (name.startsWith(MESH_HEADER_PREFIX)) headers.delete(name);
    for (const [name, value, how] of this.edits ?? []) {
      if (value === undefined) headers.delete(name);
      else if (how === "append") headers.append(name, value);
      else headers.set(name, value);
    }
    return headers;
  }
}

/** Where and with what body the request goes on, when the chain changed them. */
export interface Outbound {
  /** The canonical URL, when it differs from the request's. */
  url: string | undefined;
  /** The body to send instead of the request's own stream: bytes the chain read (contract checks) or a wrapping stream. */
  body: ArrayBuffer | ReadableStream<Uint8Array> | undefined;
}

/**
 * The request the backend receives: `request` itself when nothing changes, else a new one. Built
 * from parts because `new Request(request, …)` also copies `request.cf`, which cost more than all of
 * the proxy's own work in the bench (~30 µs a request); backends get the proxy's headers, not `cf`.
 */
export function backendRequest(request: Request, edits: HeaderEdits, outbound: Outbound): Request {
  const headers = edits.apply(request.headers);
  if (!headers && outbound.url === undefined && outbound.body === undefined) return request;
  return new Request(outbound.url ?? request.url, {
    method: request.method,
    headers: headers ?? request.headers,
    body: outbound.body ?? request.body,
    redirect: "manual",
  });
}
