/**
 * How a service calls another service: through that service's mesh proxy, over a service binding. Every failure of a dependency becomes a
 * {@link DependencyError}, which the app's error handler turns into a 502 naming the dependency.
 */
import type { ZodType } from "zod";
import { problemResponse } from "./problem.ts";

const TIMEOUT_MS = 5000;

/** A dependency did not answer usefully: unreachable, timed out, 5xx, or not the JSON we expect. */
export class DependencyError extends Error {
  readonly dependency: string;
  readonly detail: string;
  constructor(dependency: string, detail: string) {
    super(`${dependency}: ${detail}`);
    this.name = "DependencyError";
    this.dependency = dependency;
    this.detail = detail;
  }
}

/** The 502 problem for a failed dependency. */
export function dependencyProblem(err: DependencyError, instance: string): Response {
  return problemResponse(502, "bad-gateway", `${err.dependency} is unavailable`, {
    detail: err.detail,
    dependency: err.dependency,
    instance,
  });
}

/**
 * Sends one request to `dependency` through its proxy binding, with a timeout. Only the path
 * matters to the proxy; the host is a readable placeholder.
 */
export async function meshFetch(
  binding: Fetcher,
  dependency: string,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  // Never wait longer than the caller still waits for us (x-weft-deadline-ms, from forwardFrom).
  const deadline = Number(new Headers(init.headers).get(DEADLINE_HEADER) ?? Number.NaN);
  const timeout = deadline > 0 ? Math.min(TIMEOUT_MS, deadline) : TIMEOUT_MS;
  try {
    return await binding.fetch(`https://${dependency}.mesh${path}`, {
      ...init,
      signal: AbortSignal.timeout(timeout),
    });
  } catch (err) {
    throw new DependencyError(dependency, isTimeout(err) ? `no answer within ${timeout} ms` : "unreachable");
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === "TimeoutError";
}

/** Whether a response declares a JSON body (`application/json` or a `+json` type such as problem+json). */
export function isJson(res: Response): boolean {
  const type = (res.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  return type === "application/json" || type.endsWith("+json");
}

/** Reads a 2xx JSON answer of the expected shape, or throws {@link DependencyError}. */
export async function expectJson<T>(res: Response, dependency: string, schema: ZodType<T>): Promise<T> {
  if (!res.ok || !isJson(res)) {
    await res.body?.cancel();
    throw new DependencyError(
      dependency,
      `answered ${res.status} ${res.headers.get("content-type") ?? "without content-type"}`,
    );
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch (err) {
    // The timeout also covers the body, which may still be streaming.
    throw new DependencyError(dependency, isTimeout(err) ? `no answer within ${TIMEOUT_MS} ms` : "sent malformed JSON");
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new DependencyError(dependency, "sent JSON of an unexpected shape");
  return parsed.data;
}

/** The proxy's header for the time the caller still waits (ms). */
const DEADLINE_HEADER = "x-weft-deadline-ms";

/** The `cookie` header to forward, so pim's sticky split keeps a shopper on one version. */
export function forwardCookie(cookie: string | undefined): Record<string, string> {
  return cookie ? { cookie } : {};
}

/**
 * The W3C trace context (`traceparent`, `tracestate`) of `incoming`. Services pass it on, as with
 * every mesh, so their outgoing calls join the trace their proxy continued or started.
 */
export function traceFrom(incoming: Request): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of ["traceparent", "tracestate"]) {
    const value = incoming.headers.get(name);
    if (value) headers[name] = value;
  }
  return headers;
}

/**
 * Headers a service passes on when it calls another service while handling `incoming`: the trace
 * context, the shopper's cookie (sticky splits) and the time the caller still waits, so inner hops
 * never outlive the request that started them.
 */
export function forwardFrom(incoming: Request): Record<string, string> {
  const headers = { ...traceFrom(incoming), ...forwardCookie(incoming.headers.get("cookie") ?? undefined) };
  const deadline = incoming.headers.get(DEADLINE_HEADER);
  return deadline ? { ...headers, [DEADLINE_HEADER]: deadline } : headers;
}
