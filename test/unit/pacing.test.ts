import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  flushPace,
  HORIZON_MIN_HEADROOM,
  HORIZON_SHRINK,
  LEASE_CALL_BUDGET,
  leaseHorizon,
  MAX_FLUSH_MS,
  MAX_LEASE_HORIZON_MS,
  MIN_FLUSH_MS,
  RecentWriters,
  TELEMETRY_WRITE_BUDGET,
  WRITER_MEMORY_MS,
} from "../../durable-objects/pacing.ts";
import { telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { leaseSizeFor } from "../../workers/proxy/rate-limit.ts";
import { beginHop, nextFlushDelay, ServiceTelemetry, type TelemetrySettings } from "../../workers/proxy/telemetry.ts";

describe("flushPace: how a telemetry shard paces its writers", () => {
  it("keeps one batch a second while few isolates write, and spreads more writers so the shard stays near its budget", () => {
    expect(flushPace(1, false)).toEqual({ kind: "paced", afterMs: MIN_FLUSH_MS, writers: 1 });
    expect(flushPace(0, false).afterMs).toBe(MIN_FLUSH_MS);
    expect(flushPace(TELEMETRY_WRITE_BUDGET, false).afterMs).toBe(MIN_FLUSH_MS);
    for (const writers of [20, 50, 80]) {
      const pace = flushPace(writers, false);
      expect((writers * 1000) / pace.afterMs).toBeCloseTo(TELEMETRY_WRITE_BUDGET, 5);
    }
  });

  it("never delays counts beyond the slowest pace, and paces every second while someone taps", () => {
    expect(flushPace(1_000, false).afterMs).toBe(MAX_FLUSH_MS);
    expect(flushPace(1_000_000, false).afterMs).toBe(MAX_FLUSH_MS);
    expect(flushPace(1_000, true)).toEqual({ kind: "live", afterMs: MIN_FLUSH_MS });
  });

  it("the proxy believes a pace only within its bounds, and keeps the second when the shard says nothing", () => {
    expect(nextFlushDelay(undefined)).toBe(1_000);
    expect(nextFlushDelay(Number.NaN)).toBe(1_000);
    expect(nextFlushDelay(5_000)).toBe(5_000);
    expect(nextFlushDelay(0)).toBe(250);
    expect(nextFlushDelay(3_600_000)).toBe(20_000);
  });
});

describe("RecentWriters: the writers a shard counts", () => {
  it("counts each writer once, forgets writers silent for longer than the memory, and ignores implausible ids", () => {
    const writers = new RecentWriters();
    writers.touch("a", 0);
    writers.touch("b", 1_000);
    writers.touch("a", 2_000);
    writers.touch("x".repeat(65), 2_000);
    writers.touch("a/b", 2_000);
    writers.touch(undefined, 2_000);
    expect(writers.active(2_000)).toBe(2);
    expect(writers.active(1_000 + WRITER_MEMORY_MS)).toBe(1); // b went quiet
    expect(writers.active(2_000 + WRITER_MEMORY_MS)).toBe(0);
  });

  it("remembers a bounded number of writers", () => {
    const writers = new RecentWriters(60_000, 100);
    for (let i = 0; i < 1_000; i++) writers.touch(`w${i}`, i);
    expect(writers.active(1_000)).toBe(100);
  });
});

const settings: TelemetrySettings = { accessLog: { kind: "off" }, slowMs: 1_000, sampleRate: 0, otlp: undefined, analytics: undefined };

function boundTo(service: string): ControlPlaneApi {
  const entrypoint = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
  return entrypoint({ props: { service } });
}

describe("paced telemetry through the proxies' RPC entrypoint", () => {
  it("slows each isolate as more isolates write, and every request is still counted exactly", async () => {
    const service = "paced";
    const controlPlane = boundTo(service);
    const isolates = Array.from({ length: 40 }, () => new ServiceTelemetry(service, controlPlane, settings));
    const perIsolate = 7;
    const failing = 1;
    const deferred: Array<Promise<unknown>> = [];
    for (const telemetry of isolates) {
      for (let i = 0; i < perIsolate; i++) {
        const request = new Request(`https://shop.test/products/${i}`);
        const hop = beginHop(request, false, 0, Date.now());
        const status = i < failing ? 503 : 200;
        telemetry.countAttempt("paced-v1", status >= 500, 3);
        telemetry.finish(hop, request, "internet", { route: "all", backend: "paced-v1", attempts: 1, configVersion: 1 }, status, (p) => deferred.push(p));
      }
      await telemetry.flush();
    }
    // 40 writers: the shard asks each for one batch per 5 s (8 batches a second together).
    expect(isolates.map((t) => t.nextFlushMs).at(-1)).toBe((40 * 1000) / TELEMETRY_WRITE_BUDGET);
    expect(isolates[0]?.nextFlushMs).toBe(MIN_FLUSH_MS); // the first writer was alone when it wrote
    const totals = await telemetryStoreOf(env, service).totals();
    expect(totals.series.reduce((sum, s) => sum + s.count, 0)).toBe(isolates.length * perIsolate);
    expect(totals.series.filter((s) => s.code === 503).reduce((sum, s) => sum + s.count, 0)).toBe(isolates.length * failing);
    const attempts = await telemetryStoreOf(env, service).attemptTotals();
    expect(attempts["paced-v1"]).toMatchObject({ count: isolates.length * perIsolate, failures: isolates.length * failing });
    // The flushes each isolate scheduled with its first request find nothing left: nothing is counted twice.
    await Promise.all(deferred);
    const after = await telemetryStoreOf(env, service).totals();
    expect(after.series.reduce((sum, s) => sum + s.count, 0)).toBe(isolates.length * perIsolate);
  });
});

describe("leaseHorizon: how a rate-limit counter paces its leasers", () => {
  it("gives no horizon while the calls are within budget, and one that brings them back to budget when they are not", () => {
    expect(leaseHorizon(LEASE_CALL_BUDGET, 0, 1)).toEqual({ kind: "doubling" });
    expect(leaseHorizon(LEASE_CALL_BUDGET * 5, 0, 1)).toEqual({ kind: "horizon", ms: 5_000 });
    // Calls made at a 5 s horizon still twice the budget: twice the horizon.
    expect(leaseHorizon(LEASE_CALL_BUDGET * 2, 5_000, 1)).toEqual({ kind: "horizon", ms: 10_000 });
    expect(leaseHorizon(LEASE_CALL_BUDGET * 1_000, 5_000, 1)).toEqual({ kind: "horizon", ms: MAX_LEASE_HORIZON_MS });
  });

  it("keeps a horizon that works, shrinks one that is no longer needed slowly, and drops it once short", () => {
    expect(leaseHorizon(LEASE_CALL_BUDGET * 0.8, 8_000, 1)).toEqual({ kind: "horizon", ms: 8_000 });
    expect(leaseHorizon(LEASE_CALL_BUDGET * 0.1, 8_000, 1)).toEqual({ kind: "horizon", ms: 8_000 * HORIZON_SHRINK });
    expect(leaseHorizon(LEASE_CALL_BUDGET * 0.1, 1_100, 1)).toEqual({ kind: "doubling" });
    // Between two window boundaries (quiet pace windows) a long horizon survives: 60 s → still ≥ 20 s after four.
    let ms = MAX_LEASE_HORIZON_MS;
    for (let quiet = 0; quiet < 4; quiet++) {
      const next = leaseHorizon(0, ms, 1);
      ms = next.kind === "horizon" ? next.ms : 0;
    }
    expect(ms).toBeGreaterThanOrEqual(20_000);
  });

  it("never leases ahead near the limit: unspent tokens there would refuse other isolates' requests", () => {
    expect(leaseHorizon(LEASE_CALL_BUDGET * 50, 20_000, HORIZON_MIN_HEADROOM - 0.01)).toEqual({ kind: "doubling" });
  });
});

describe("leaseSizeFor: an isolate's next lease", () => {
  const spec = { algorithm: "fixed-window", limit: 10_000, periodSeconds: 60 } as const;
  it("is the doubling size without a horizon or a known rate", () => {
    expect(leaseSizeFor(4, 0.5, 0, spec)).toBe(4);
    expect(leaseSizeFor(4, 0, 10_000, spec)).toBe(4);
  });

  it("lasts the horizon at the isolate's own rate, capped at 5% of the limit", () => {
    expect(leaseSizeFor(4, 0.002, 10_000, spec)).toBe(20); // 2 requests/s for 10 s
    expect(leaseSizeFor(64, 0.002, 10_000, spec)).toBe(64);
    expect(leaseSizeFor(4, 1, 60_000, spec)).toBe(500);
  });
});
