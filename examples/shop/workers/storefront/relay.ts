/**
 * Passing answers of other services through to the page's script.
 */
import { DependencyError, isJson } from "../../../../shared/mesh-client.ts";

// Problems that describe the shopper's request (unknown sku, empty cart, reused key, slow down)
// reach the page as they are; any other failure is the dependency's and becomes a 502.
const CLIENT_PROBLEMS = new Set([400, 409, 422, 429]);
const KEPT_HEADERS = ["idempotent-replayed", "retry-after"];

/** The dependency's JSON answer as our response, or a {@link DependencyError} to report. */
export async function relay(res: Response, dependency: string): Promise<Response> {
  if (isJson(res) && (res.ok || CLIENT_PROBLEMS.has(res.status))) {
    const headers = new Headers({ "content-type": res.headers.get("content-type") ?? "application/json", "cache-control": "no-store" });
    for (const name of KEPT_HEADERS) {
      const value = res.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    return new Response(res.body, { status: res.status, headers });
  }
  await res.body?.cancel();
  throw new DependencyError(dependency, `answered ${res.status} ${res.headers.get("content-type") ?? "without content-type"}`);
}
