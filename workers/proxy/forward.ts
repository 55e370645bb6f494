/**
 * Forwarding to a backend: internal workers through service bindings, third parties by URL (only the
 * configured origin is ever contacted, because the URL is built from it). Every call has a timeout.
 */
import { problemResponse } from "../../shared/problem.ts";
import type { CompiledBackend } from "./compile.ts";

/** Until routes carry their own timeouts, a call may take this long (Envoy's default route timeout). */
export const DEFAULT_TIMEOUT_MS = 15_000;
/** Larger declared bodies are refused before anything is sent. */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** Headers a third party must never receive from a shopper's request. */
const NOT_FOR_THIRD_PARTIES = ["cookie", "authorization"];

/** Outcome of one forwarding attempt. */
export type ForwardResult =
  | { kind: "response"; response: Response }
  | { kind: "failed"; status: 502 | 504; detail: string };

/** Sends `request` to `backend`, or says why it could not. */
export async function forward(backend: CompiledBackend, request: Request, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ForwardResult> {
  const target = backend.target;
  if (target.kind === "missing") return { kind: "failed", status: 502, detail: target.reason };
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    if (target.kind === "binding") {
      return { kind: "response", response: await target.fetcher.fetch(request, { signal }) };
    }
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    for (const name of NOT_FOR_THIRD_PARTIES) headers.delete(name);
    const outbound = new Request(target.origin + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
      redirect: "manual",
      signal,
    });
    return { kind: "response", response: await fetch(outbound) };
  } catch (error) {
    const timedOut = signal.aborted;
    return {
      kind: "failed",
      status: timedOut ? 504 : 502,
      detail: timedOut
        ? `backend '${backend.name}' did not answer within ${timeoutMs} ms`
        : `backend '${backend.name}' could not be reached: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
}

/** The problem response for a failed forward, tagged with the backend it was meant for. */
export function forwardProblem(failure: Extract<ForwardResult, { kind: "failed" }>, backend: string): Response {
  return problemResponse(
    failure.status,
    failure.status === 504 ? "upstream-timeout" : "upstream-unavailable",
    failure.status === 504 ? "Backend timed out" : "Backend unavailable",
    { detail: failure.detail, backend },
  );
}
