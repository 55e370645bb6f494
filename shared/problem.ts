/**
 * RFC 9457 problem details, the one error format of every Weft HTTP API and of the proxy itself.
 */

/** A problem document. `type` is a URN naming the problem class; `issues` carries validation details. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** Builds a problem response. `type` is a short slug such as `validation`, turned into a URN. */
export function problemResponse(
  status: number,
  slug: string,
  title: string,
  extra: Omit<Partial<Problem>, "type" | "title" | "status"> = {},
  headers: HeadersInit = {},
): Response {
  const body: Problem = { type: `urn:weft:problem:${slug}`, title, status, ...extra };
  const h = new Headers(headers);
  h.set("content-type", PROBLEM_CONTENT_TYPE);
  h.set("cache-control", "no-store");
  return new Response(JSON.stringify(body), { status, headers: h });
}
