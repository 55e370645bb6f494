/**
 * The error answers every shop service gives, as RFC 9457 problems: unknown paths, unsupported
 * methods, failed dependencies and unexpected errors.
 */
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { DependencyError, dependencyProblem } from "./mesh-client.ts";
import { problemResponse } from "./problem.ts";

/** A handler for the paths a service knows but not with this method (register it after the real ones). */
export function methodNotAllowed(allow: string): (c: Context) => Response {
  return (c) =>
    problemResponse(
      405,
      "method-not-allowed",
      "Method not allowed",
      { detail: `${c.req.method} is not supported on ${c.req.path}`, instance: c.req.path },
      { allow },
    );
}

/** `app.notFound(notFound)`. */
export const notFound: NotFoundHandler = (c) =>
  problemResponse(404, "not-found", "Not found", { detail: `no resource at ${c.req.method} ${c.req.path}`, instance: c.req.path });

/** `app.onError(serviceErrors("cart"))`: dependency failures are 502s naming the dependency. */
export function serviceErrors(service: string): ErrorHandler {
  return (err, c) => {
    if (err instanceof DependencyError) return dependencyProblem(err, c.req.path);
    console.error(`${service}: unhandled error`, err instanceof Error ? err.message : String(err));
    return problemResponse(500, "internal", "Internal error", { instance: c.req.path });
  };
}
