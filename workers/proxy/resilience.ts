/**
 * The resilience step: one request, possibly several attempts. Safe requests (and any with an
 * Idempotency-Key) are retried within the service's retry budget, waiting as long as the backend's
 * failures usually take to clear; the route's failover backends take over when the chosen backend is
 * ejected or out of retries. Rehearsal faults are injected exactly where a real failure would
 * happen, so every policy sees them as the backend's own. Every outcome feeds outlier detection.
 */
import type { FaultRule, RetryPolicy } from "../../shared/config.ts";
import { problemResponse } from "../../shared/problem.ts";
import {
  AdaptiveDelay,
  decideFault,
  fixedBackoff,
  isRetrySafe,
  OutlierDetector,
  RetryBudget,
} from "../../shared/resilience.ts";
import { readBounded, sleep } from "./bounded.ts";
import type { CompiledBackend, CompiledRoute, CompiledSlice } from "./compile.ts";
import { forward, timedOut, unreachable, type EgressContext, type ForwardResult } from "./forward.ts";
import { DEADLINE_HEADER, SHADOW_HEADER } from "./identity.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { countAttempt, countEjection } from "./telemetry.ts";

/** Bodies up to this size are kept so the request can be sent again; larger ones get one attempt. */
export const MAX_REPLAY_BYTES = 256 * 1024;

interface BackendState {
  outlier: OutlierDetector;
  delay: AdaptiveDelay;
}

/** Per isolate, like an Envoy's per-host stats: no shared state on the request path. */
const backends = new Map<string, BackendState>();
const budgets = new Map<string, RetryBudget>();
/** Backends currently ejected, per service; empty (the usual case) means no work per request. */
const ejected = new Map<string, Set<string>>();

function stateOf(service: string, backend: string): BackendState {
  const key = `${service}/${backend}`;
  let state = backends.get(key);
  if (!state) backends.set(key, (state = { outlier: new OutlierDetector(), delay: new AdaptiveDelay() }));
  return state;
}

function budgetOf(service: string): RetryBudget {
  let budget = budgets.get(service);
  if (!budget) budgets.set(service, (budget = new RetryBudget()));
  return budget;
}

/**
 * Backends failing their active health check (as Envoy: 3 failed probes in a row mark a backend
 * unhealthy, 2 passed probes in a row clear it). Kept apart from outlier detection, so successful
 * real traffic cannot hide a failing health endpoint.
 */
const unhealthy = new Map<string, Set<string>>();
const probeStreaks = new Map<string, { failed: number; passed: number }>();
const UNHEALTHY_THRESHOLD = 3;
const HEALTHY_THRESHOLD = 2;

/** The backends of `service` that requests must avoid right now: ejected or failing health checks. */
export function ejectedBackends(service: string, now: number): ReadonlySet<string> {
  const set = ejected.get(service);
  const sick = unhealthy.get(service);
  if ((!set || set.size === 0) && (!sick || sick.size === 0)) return EMPTY;
  if (set) for (const name of set) if (!stateOf(service, name).outlier.isEjected(now)) set.delete(name);
  if (!sick || sick.size === 0) return set ?? EMPTY;
  return new Set([...(set ?? []), ...sick]);
}

function recordProbe(service: string, backend: string, passed: boolean): void {
  const key = `${service}/${backend}`;
  const streak = probeStreaks.get(key) ?? { failed: 0, passed: 0 };
  if (passed) {
    streak.passed++;
    streak.failed = 0;
  } else {
    streak.failed++;
    streak.passed = 0;
  }
  probeStreaks.set(key, streak);
  let sick = unhealthy.get(service);
  if (!sick) unhealthy.set(service, (sick = new Set()));
  if (!passed && streak.failed >= UNHEALTHY_THRESHOLD && !sick.has(backend)) {
    sick.add(backend);
    console.warn(JSON.stringify({ event: "backend-unhealthy", service, backend, failedProbes: streak.failed }));
  } else if (passed && streak.passed >= HEALTHY_THRESHOLD && sick.delete(backend)) {
    console.log(JSON.stringify({ event: "backend-healthy", service, backend }));
  }
}
const EMPTY: ReadonlySet<string> = new Set();

/** Feeds one attempt's outcome to outlier detection, adaptive backoff and the attempt counts. */
function record(service: string, backend: string, success: boolean, now: number, startedAt: number): void {
  countAttempt(service, backend, !success, now - startedAt);
  const state = stateOf(service, backend);
  const health = state.outlier.record(success, now);
  if (success) state.delay.recordSuccess(now);
  else state.delay.recordFailure(now);
  if (health.state === "ejected") {
    let set = ejected.get(service);
    if (!set) ejected.set(service, (set = new Set()));
    if (!set.has(backend)) {
      set.add(backend);
      countEjection(service);
      console.warn(JSON.stringify({ event: "backend-ejected", service, backend, until: new Date(health.until).toISOString(), ejections: health.ejections }));
    }
  }
}

/** One attempt on one backend, with any rehearsal fault applied first. */
async function attempt(backend: CompiledBackend, request: Request, faults: readonly FaultRule[], egress: EgressContext, timeoutMs: number | undefined): Promise<ForwardResult> {
  const fault = faults.length > 0 ? decideFault(faults, backend.name, Math.random(), Math.random()) : { kind: "none" as const };
  if (fault.kind === "delay" || fault.kind === "delay-then-abort") {
    // An injected delay counts against the attempt's time like a slow backend would.
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
    response.headers.set("x-weft-fault", "abort");
    return { kind: "response", response };
  }
  return forward(backend, request, egress, timeoutMs);
}

const DEFAULT_RETRY_STATUSES = [502, 503, 504];

/**
 * The common case of a route with retries or failover while nothing fails: one GET or HEAD to an
 * internal backend, its response returned as is, with no extra awaits. Only a failure enters the
 * full loop (as its second attempt), so configured retries cost nothing until they are needed.
 */
export function sendFast(
  slice: CompiledSlice,
  route: CompiledRoute,
  chosen: CompiledBackend,
  fetcher: Fetcher,
  request: Request,
  egress: EgressContext,
): Promise<Delivery> {
  const service = slice.service;
  budgetOf(service).recordRequest(Date.now());
  const statuses = route.retries?.statuses ?? DEFAULT_RETRY_STATUSES;
  const retry = (first: Delivery): Promise<Delivery> => sendResiliently(slice, route, chosen, request, egress, undefined, first);
  const started = Date.now();
  return fetcher.fetch(request).then(
    (response) => {
      record(service, chosen.name, response.status < 500, Date.now(), started);
      return statuses.includes(response.status) ? retry({ response, backend: chosen, attempts: 1 }) : { response, backend: chosen, attempts: 1 };
    },
    (error: unknown) => {
      record(service, chosen.name, false, Date.now(), started);
      return retry({ response: unreachable(chosen.name, error).response, backend: chosen, attempts: 1 });
    },
  );
}

/** Did the backend fail (for outlier detection), and is the outcome worth another attempt? */
function judge(result: ForwardResult, policy: RetryPolicy | undefined): { failed: boolean; retryable: boolean } {
  const status = result.response.status;
  if (result.kind === "failed") {
    // Connect errors and timeouts (502/504 made by the proxy) are the backend's; refusals (403, 413, 422) are not.
    const backendFault = status === 502 || status === 504;
    return { failed: backendFault, retryable: backendFault };
  }
  return { failed: status >= 500, retryable: (policy?.statuses ?? DEFAULT_RETRY_STATUSES).includes(status) };
}

/** The outcome of {@link sendResiliently}: the response to return and the backend that gave it. */
export interface Delivery {
  response: Response;
  backend: CompiledBackend;
  attempts: number;
}

/**
 * Sends `request` (already headed for `chosen`) with the route's retries, failover and the service's
 * faults. With a deadline (ms epoch), every attempt gets only the time left and tells the backend
 * how much that is (`x-weft-deadline-ms`), and no attempt starts after it.
 */
export async function sendResiliently(
  slice: CompiledSlice,
  route: CompiledRoute,
  chosen: CompiledBackend,
  request: Request,
  egress: EgressContext,
  deadlineAt: number | undefined,
  first?: Delivery,
): Promise<Delivery> {
  const service = slice.service;
  const policy = route.retries;
  const safe = isRetrySafe(request.method, request.headers.has("idempotency-key"));
  const budget = budgetOf(service);
  // A first attempt made by sendFast was already counted.
  if (!first) budget.recordRequest(Date.now());

  // Failover is a re-send too: only for requests that may be sent twice.
  const candidates = [chosen, ...(safe ? route.failover : []).flatMap((name) => slice.backends.get(name) ?? []).filter((b) => b !== chosen)];
  const avoid = ejectedBackends(service, Date.now());
  const healthy = candidates.filter((b) => !avoid.has(b.name));
  // Panic threshold: if every candidate is ejected, try them anyway rather than fail without trying.
  const order = healthy.length > 0 ? healthy : candidates;

  let maxAttempts = safe ? (policy?.attempts ?? 1) : 1;
  let body: ArrayBuffer | undefined;
  const mayResend = maxAttempts > 1 || order.length > 1;
  if (mayResend && request.body) {
    const declared = Number(request.headers.get("content-length") ?? Number.NaN);
    const bytes = declared <= MAX_REPLAY_BYTES ? await readBounded(request.body, MAX_REPLAY_BYTES) : "too-large";
    if (bytes === "too-large") {
      maxAttempts = 1;
      order.length = 1;
    } else {
      body = bytes;
    }
  }
  const nextRequest = (remainingMs: number | undefined): Request => {
    if (remainingMs === undefined) return body === undefined ? request : new Request(request, { body });
    const headers = new Headers(request.headers);
    headers.set(DEADLINE_HEADER, String(remainingMs));
    return new Request(request, body === undefined ? { headers } : { headers, body });
  };
  const faults = slice.faults;

  let attempts = first ? 1 : 0;
  let last: Delivery | undefined = first;
  for (const [index, backend] of order.entries()) {
    const tries = index === 0 ? maxAttempts : 1;
    for (let i = index === 0 && first ? 1 : 0; i < tries; i++) {
      if (attempts > 0) {
        if (!budget.tryRetry(Date.now())) return last ?? { response: problemResponse(503, "retry-budget", "Retry budget exhausted"), backend, attempts };
        if (i > 0) {
          const state = stateOf(service, backend.name);
          const wait = policy && policy.backoff !== "adaptive" ? fixedBackoff(i, policy.backoff.baseMs, policy.backoff.capMs, Math.random()) : state.delay.delay(Math.random());
          await sleep(wait);
        }
      }
      const remaining = deadlineAt === undefined ? undefined : deadlineAt - Date.now();
      if (remaining !== undefined && remaining <= 0) {
        return last ?? { response: problemResponse(504, "deadline-exceeded", "Deadline exceeded", { detail: "no time left for another attempt" }), backend, attempts };
      }
      await last?.response.body?.cancel(); // the failed answer is replaced by this attempt's
      attempts++;
      const started = Date.now();
      const result = await attempt(backend, nextRequest(remaining), faults, egress, remaining);
      const verdict = judge(result, policy);
      record(service, backend.name, !verdict.failed, Date.now(), started);
      last = { response: result.response, backend, attempts };
      if (!verdict.retryable || !safe) return last;
    }
  }
  return last ?? { response: problemResponse(502, "no-backend", "No backend"), backend: chosen, attempts };
}

/**
 * Copies the request to the route's mirror backend when this request is drawn (and may be sent
 * twice). Runs in `waitUntil`, off the response path; the mirror's answer is read and dropped.
 */
export function mirrorRequest(
  slice: CompiledSlice,
  route: CompiledRoute,
  request: Request,
  egress: EgressContext,
  waitUntil: (promise: Promise<unknown>) => void,
): void {
  const mirror = route.mirror;
  if (!mirror || Math.random() * 100 >= mirror.percent) return;
  if (!mirror.unsafe && !isRetrySafe(request.method, request.headers.has("idempotency-key"))) return;
  const backend = slice.backends.get(mirror.backend);
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

/** Mirrors never hold an invocation open for long. */
const MIRROR_TIMEOUT_MS = 10_000;

/** When each service's next health probe is due (ms epoch), for the config version it was computed from. */
const nextProbe = new Map<string, { version: number; at: number }>();
const probedAt = new Map<string, number>();

/**
 * Active health checks, run by the proxy while it serves traffic (as each Envoy checks its own
 * hosts): backends with a `healthCheck` whose interval has passed get `GET path` in `waitUntil`.
 * Probes pass through fault injection like any attempt, and feed the same outlier detection.
 */
export function probeHealth(slice: CompiledSlice, controlPlane: ControlPlaneApi, waitUntil: (promise: Promise<unknown>) => void): void {
  const now = Date.now();
  const next = nextProbe.get(slice.service);
  if (next && next.version === slice.version && now < next.at) return;
  if (next?.version !== slice.version) {
    // A new config: backends that no longer have a health check are no longer judged by one.
    const sick = unhealthy.get(slice.service);
    if (sick) for (const name of sick) if (!slice.backends.get(name)?.healthCheck) sick.delete(name);
  }
  // Probes are the proxy's own calls: to a third party they are signed as the service itself.
  const egress: EgressContext = { service: slice.service, caller: slice.service, controlPlane };
  let soonest = Number.POSITIVE_INFINITY;
  for (const backend of slice.backends.values()) {
    const check = backend.healthCheck;
    if (!check) continue;
    const key = `${slice.service}/${backend.name}`;
    const due = (probedAt.get(key) ?? 0) + check.intervalSeconds * 1000;
    if (now >= due) {
      probedAt.set(key, now);
      const probe = new Request(`https://${backend.name}.health${check.path}`, { headers: { "x-weft-health-check": "1" } });
      waitUntil(
        attempt(backend, probe, slice.faults, egress, check.timeoutMs).then(async (result) => {
          await result.response.body?.cancel();
          recordProbe(slice.service, backend.name, !judge(result, undefined).failed);
        }),
      );
      soonest = Math.min(soonest, now + check.intervalSeconds * 1000);
    } else {
      soonest = Math.min(soonest, due);
    }
  }
  nextProbe.set(slice.service, { version: slice.version, at: soonest });
}

/**
 * Sends a running rollout's probe requests to its candidate until `until` (ms epoch), evenly
 * spaced at the probe's rate. They take the path of any attempt (faults included) and are counted
 * as the candidate's attempts, which is all a rollout needs from them. `sliceNow` is asked before
 * each probe, so probing stops as soon as the rollout ends. Returns the number sent.
 */
export async function probeCandidate(sliceNow: () => Promise<CompiledSlice | undefined>, controlPlane: ControlPlaneApi, until: number, onBatch: () => Promise<void>): Promise<number> {
  let sent = 0;
  let batchedAt = Date.now();
  for (;;) {
    const slice = await sliceNow();
    const probe = slice?.probe;
    const backend = probe ? slice.backends.get(probe.backend) : undefined;
    if (!slice || !probe || !backend || Date.now() >= until) break;
    const started = Date.now();
    const request = new Request(`https://${backend.name}.probe${probe.path}`, { headers: { "x-weft-probe": probe.rollout } });
    const egress: EgressContext = { service: slice.service, caller: slice.service, controlPlane };
    const result = await attempt(backend, request, slice.faults, egress, PROBE_TIMEOUT_MS).catch((error: unknown) => unreachable(backend.name, error));
    await result.response.body?.cancel();
    record(slice.service, backend.name, !judge(result, undefined).failed, Date.now(), started);
    sent++;
    // Report as we go, so the rollout can judge while the probes still run.
    if (Date.now() - batchedAt >= PROBE_REPORT_MS) {
      batchedAt = Date.now();
      await onBatch();
    }
    await sleep(Math.max(0, started + 60_000 / probe.requestsPerMinute - Date.now()));
  }
  await onBatch();
  return sent;
}

const PROBE_TIMEOUT_MS = 10_000;
const PROBE_REPORT_MS = 1_000;
