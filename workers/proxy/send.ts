/**
 * The resilience step: every request, whatever its route, leaves through {@link send}. One request
 * may take several attempts: requests that may be sent twice are retried within the service's retry
 * budget and failed over to the route's failover backends; every attempt gets the time left before
 * the deadline; rehearsal faults are injected exactly where a real failure would happen; and every
 * attempt's outcome feeds outlier detection, the attempt counts rollouts judge on, and metrics. A
 * route with none of these configured takes the same path: one attempt, one recorded outcome.
 */
import { problemResponse } from "../../shared/problem.ts";
import { decideFault, fixedBackoff, isRetrySafe, type FaultDecision } from "../../shared/resilience.ts";
import { readBounded, sleep } from "./bounded.ts";
import { forward, timedOut, type EgressContext, type ForwardResult } from "./forward.ts";
import type { ServiceHealth } from "./health.ts";
import { DEADLINE_HEADER, SHADOW_HEADER } from "./identity.ts";
import type { CompiledBackend, RoutePlan } from "./plan.ts";

/** Bodies up to this size are kept so the request can be sent again; larger ones get one attempt. */
export const MAX_REPLAY_BYTES = 256 * 1024;
/** Mirrors never hold an invocation open for long. */
const MIRROR_TIMEOUT_MS = 10_000;

/** What sending needs from the service's proxy: its backends' health and a place to report outcomes. */
export interface Sender {
  readonly health: ServiceHealth;
  /** Records one attempt's outcome (outlier detection, attempt counts, ejection metrics). */
  recordOutcome(backend: string, success: boolean, startedAt: number, endedAt: number): void;
}

/** One request's facts that sending needs. */
export interface Call {
  egress: EgressContext;
  /** When the caller stops waiting (ms epoch), if it is bounded. */
  deadlineAt: number | undefined;
}

/** The outcome of {@link send}: the response to return, the backend that gave it, and the attempts made. */
export interface Delivery {
  response: Response;
  backend: CompiledBackend;
  attempts: number;
  /** The response is the backend's own, not one the proxy made (timeout, unreachable, injected fault). */
  fromBackend: boolean;
}

/**
 * One attempt on one backend, with its rehearsal fault (if any) applied first: an injected delay
 * counts against the attempt's time as a slow backend would, an injected abort answers as a failing
 * backend would.
 */
export function attempt(backend: CompiledBackend, request: Request, egress: EgressContext, timeoutMs: number | undefined): Promise<ForwardResult> {
  if (!backend.fault) return forward(backend, request, egress, timeoutMs);
  return withFault(backend, decideFault([backend.fault], backend.name, Math.random(), Math.random()), request, egress, timeoutMs);
}

async function withFault(backend: CompiledBackend, fault: FaultDecision, request: Request, egress: EgressContext, timeoutMs: number | undefined): Promise<ForwardResult> {
  if (fault.kind === "delay" || fault.kind === "delay-then-abort") {
    if (timeoutMs !== undefined && fault.ms >= timeoutMs) {
      await sleep(timeoutMs);
      await request.body?.cancel();
      return timedOut(backend.name, timeoutMs);
    }
    await sleep(fault.ms);
  }
  if (fault.kind === "abort" || fault.kind === "delay-then-abort") {
    await request.body?.cancel();
    const response = problemResponse(fault.status, "fault-injected", "Injected fault", { detail: `rehearsal fault on backend '${backend.name}'`, backend: backend.name });
    response.headers.set("x-weft-fault", "abort"); // tells a person reading the response; no code trusts it
    return { kind: "failed", response, injected: true };
  }
  return forward(backend, request, egress, timeoutMs);
}

/** Did the backend fail (for outlier detection), and is the outcome worth another attempt? */
export function judge(result: ForwardResult, retryStatuses: ReadonlySet<number>): { failed: boolean; retryable: boolean } {
  const status = result.response.status;
  if (result.kind === "failed") {
    // Connect errors, timeouts and injected faults are the backend's; the proxy's refusals (403, 413, 422) are not.
    const backendFault = result.injected === true ? status >= 500 : status === 502 || status === 504;
    return { failed: backendFault, retryable: backendFault || retryStatuses.has(status) };
  }
  return { failed: status >= 500, retryable: retryStatuses.has(status) };
}

/** May this request be sent more than once on this route? */
function mayRepeat(route: RoutePlan, request: Request): boolean {
  return isRetrySafe(request.method, route.honoursIdempotencyKey && request.headers.has("idempotency-key"));
}

/** The chosen backend, then (for requests that may be sent twice) the route's failover backends; ejected ones last resort only. */
function candidates(route: RoutePlan, chosen: CompiledBackend, repeatable: boolean, avoid: ReadonlySet<string>): CompiledBackend[] {
  if (!repeatable || route.failover.length === 0) return [chosen];
  const all = [chosen, ...route.failover.filter((b) => b !== chosen)];
  const healthy = avoid.size === 0 ? all : all.filter((b) => !avoid.has(b.name));
  // Panic threshold: if every candidate is ejected, try them anyway rather than fail without trying.
  return healthy.length > 0 ? healthy : all;
}

/**
 * Sends `request` (already headed for `chosen`) with the route's retries, failover, timeout and the
 * backends' faults. With a deadline, every attempt gets only the time left and tells the backend how
 * much that is (`x-weft-deadline-ms`), and no attempt starts after it.
 */
export async function send(sender: Sender, route: RoutePlan, chosen: CompiledBackend, request: Request, call: Call): Promise<Delivery> {
  const health = sender.health;
  health.budget.recordRequest(Date.now());
  const repeatable = mayRepeat(route, request);
  const order = candidates(route, chosen, repeatable, health.avoiding(Date.now()));
  let maxAttempts = repeatable ? (route.retries?.attempts ?? 1) : 1;

  // A request that may be sent again keeps its body (bounded) so each attempt can carry it.
  let body: ArrayBuffer | undefined;
  if ((maxAttempts > 1 || order.length > 1) && request.body) {
    const declared = Number(request.headers.get("content-length") ?? Number.NaN);
    const bytes = declared <= MAX_REPLAY_BYTES ? await readBounded(request.body, MAX_REPLAY_BYTES) : "too-large";
    if (bytes === "too-large") {
      maxAttempts = 1;
      order.length = 1;
    } else {
      body = bytes;
    }
  }
  const requestFor = (remainingMs: number | undefined): Request => {
    if (remainingMs === undefined) return body === undefined ? request : new Request(request, { body });
    const headers = new Headers(request.headers);
    headers.set(DEADLINE_HEADER, String(remainingMs));
    return new Request(request, body === undefined ? { headers } : { headers, body });
  };

  let attempts = 0;
  let last: Delivery | undefined;
  for (const [index, backend] of order.entries()) {
    const tries = index === 0 ? maxAttempts : 1;
    for (let i = 0; i < tries; i++) {
      if (last) {
        if (!health.budget.tryRetry(Date.now())) return last;
        if (i > 0) {
          const backoff = route.retries?.backoff;
          await sleep(backoff && backoff !== "adaptive" ? fixedBackoff(i, backoff.baseMs, backoff.capMs, Math.random()) : health.retryDelay(backend.name, Math.random()));
        }
      }
      const remaining = call.deadlineAt === undefined ? undefined : call.deadlineAt - Date.now();
      if (remaining !== undefined && remaining <= 0) {
        return last ?? { response: problemResponse(504, "deadline-exceeded", "Deadline exceeded", { detail: "no time left for an attempt" }), backend, attempts, fromBackend: false };
      }
      await last?.response.body?.cancel(); // the failed answer is replaced by this attempt's
      attempts++;
      const startedAt = Date.now();
      // The route's timeout is part of the deadline: it bounds the whole request, retries included;
      // an attempt timeout bounds each attempt within it.
      const limit = route.attemptTimeoutMs === undefined ? remaining : Math.min(remaining ?? route.attemptTimeoutMs, route.attemptTimeoutMs);
      const result = await attempt(backend, requestFor(limit), call.egress, limit);
      const verdict = judge(result, route.retryStatuses);
      sender.recordOutcome(backend.name, !verdict.failed, startedAt, Date.now());
      last = { response: result.response, backend, attempts, fromBackend: result.kind === "response" };
      if (!verdict.retryable || !repeatable) return last;
    }
  }
  return last ?? { response: problemResponse(502, "no-backend", "No backend"), backend: chosen, attempts, fromBackend: false };
}

/** One mirror of a route: its `mirror` setting, or one of its RequestMirror filters. */
export interface MirrorTarget {
  backend: string;
  /** Share of requests copied, 0-100. */
  percent: number;
  unsafe: boolean;
}

/**
 * Copies the request to a mirror backend when this request is drawn (and may be sent twice). Runs
 * in `waitUntil`, off the response path; the mirror's answer is read and dropped.
 */
export function mirror(policy: MirrorTarget, route: RoutePlan, backends: ReadonlyMap<string, CompiledBackend>, request: Request, egress: EgressContext, waitUntil: (promise: Promise<unknown>) => void): void {
  if (Math.random() * 100 >= policy.percent) return;
  if (!policy.unsafe && !mayRepeat(route, request)) return;
  const backend = backends.get(policy.backend);
  if (!backend) return;
  const headers = new Headers(request.headers);
  headers.set(SHADOW_HEADER, "1");
  const copy = new Request(request.clone(), { headers });
  waitUntil(
    forward(backend, copy, egress, MIRROR_TIMEOUT_MS).then(async (result) => {
      await result.response.body?.cancel();
    }),
  );
}
