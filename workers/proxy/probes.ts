/**
 * The proxy's own requests: active health checks of backends (run while the proxy serves traffic,
 * as each Envoy checks its own hosts) and a running rollout's synthetic probes of its candidate
 * (run by the cron trigger). Both go through {@link attempt}, so faults apply to them as to any
 * attempt, and both feed the same outlier detection and attempt counts.
 */
import { sleep } from "./bounded.ts";
import { unreachable, type EgressContext } from "./forward.ts";
import type { CompiledSlice } from "./plan.ts";
import { attempt, judge, type Sender } from "./send.ts";

const NO_RETRY_STATUSES: ReadonlySet<number> = new Set();
const PROBE_TIMEOUT_MS = 10_000;
const PROBE_REPORT_MS = 1_000;

/**
 * Sends health probes that are due (`GET path` of backends with a `healthCheck`) in `waitUntil`.
 * Backends without a health check cost nothing: the slice lists only the checked ones.
 */
export function checkHealth(sender: Sender, slice: CompiledSlice, egress: EgressContext, waitUntil: (promise: Promise<unknown>) => void): void {
  if (slice.checked.length === 0) return;
  const now = Date.now();
  for (const backend of slice.checked) {
    const check = backend.healthCheck;
    if (!check || !sender.health.probeDue(backend.name, check.intervalSeconds * 1000, now)) continue;
    const probe = new Request(`https://${backend.name}.health${check.path}`, { headers: { "x-weft-health-check": "1" } });
    waitUntil(
      attempt(backend, probe, egress, check.timeoutMs).then(async (result) => {
        await result.response.body?.cancel();
        const flipped = sender.health.recordProbe(backend.name, !judge(result, NO_RETRY_STATUSES).failed);
        if (flipped === "unhealthy") console.warn(JSON.stringify({ event: "backend-unhealthy", service: slice.service, backend: backend.name }));
        if (flipped === "healthy") console.log(JSON.stringify({ event: "backend-healthy", service: slice.service, backend: backend.name }));
      }),
    );
  }
}

/**
 * Sends a running rollout's probe requests to its candidate until `until` (ms epoch), evenly spaced
 * at the probe's rate, counted as the candidate's attempts. `sliceNow` is asked before each probe,
 * so probing stops as soon as the rollout ends. Returns the number sent.
 */
export async function probeCandidate(
  sender: Sender,
  sliceNow: () => Promise<CompiledSlice | undefined>,
  egressOf: (slice: CompiledSlice) => EgressContext,
  window: { until: number; onBatch: () => Promise<void> },
): Promise<number> {
  let sent = 0;
  let batchedAt = Date.now();
  for (;;) {
    const slice = await sliceNow();
    const probe = slice?.probe;
    const backend = probe ? slice.backends.get(probe.backend) : undefined;
    if (!slice || !probe || !backend || Date.now() >= window.until) break;
    const started = Date.now();
    const request = new Request(`https://${backend.name}.probe${probe.path}`, { headers: { "x-weft-probe": probe.rollout } });
    const result = await attempt(backend, request, egressOf(slice), PROBE_TIMEOUT_MS).catch((error: unknown) => unreachable(backend.name, error));
    await result.response.body?.cancel();
    sender.recordOutcome(backend.name, !judge(result, NO_RETRY_STATUSES).failed, started, Date.now());
    sent++;
    // Report as we go, so the rollout can judge while the probes still run.
    if (Date.now() - batchedAt >= PROBE_REPORT_MS) {
      batchedAt = Date.now();
      await window.onBatch();
    }
    await sleep(Math.max(0, started + 60_000 / probe.requestsPerMinute - Date.now()));
  }
  await window.onBatch();
  return sent;
}
