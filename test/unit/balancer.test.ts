import { describe, expect, it } from "vitest";
import { mulberry32 } from "./prng.ts";
import { DEFAULT_BALANCER, OriginBalancer } from "../../shared/balancer.ts";
import { DEFAULT_OUTLIER } from "../../shared/resilience.ts";


type Outcome = Parameters<ReturnType<OriginBalancer["start"]>>[0];

/**
 * Virtual-clock load generator: one request every `intervalMs`, each picked by the balancer and completing after
 * its origin's current latency (`latencyOf(origin, request index)`). Completions due before a pick are delivered
 * first, so outstanding counts are what a real proxy would see. Returns the origin chosen for each request.
 */
function simulate(
  balancer: OriginBalancer,
  requests: number,
  latencyOf: (origin: string, request: number) => number,
  options: { intervalMs?: number; seed?: number; startAt?: number } = {},
): { picks: string[]; end: number } {
  const { intervalMs = 1, seed = 1, startAt = 0 } = options;
  const random = mulberry32(seed);
  const inFlight: Array<{ at: number; latencyMs: number; done: (outcome: Outcome) => void }> = [];
  const picks: string[] = [];
  const deliver = (upTo: number): void => {
    inFlight.sort((a, b) => a.at - b.at);
    while (inFlight.length > 0 && (inFlight[0]?.at ?? Infinity) <= upTo) {
      const next = inFlight.shift();
      next?.done({ latencyMs: next.latencyMs, success: true, now: next.at });
    }
  };
  let now = startAt;
  for (let i = 0; i < requests; i++) {
    now = startAt + i * intervalMs;
    deliver(now);
    const origin = balancer.pick(now, random(), random());
    picks.push(origin);
    const latencyMs = latencyOf(origin, i);
    inFlight.push({ at: now + latencyMs, latencyMs, done: balancer.start(origin, now) });
  }
  deliver(Infinity);
  return { picks, end: now };
}

function shares(picks: readonly string[], origins: readonly string[]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const origin of origins) result[origin] = picks.filter((p) => p === origin).length / Math.max(1, picks.length);
  return result;
}

function percent(share: Record<string, number>): string {
  return Object.entries(share)
    .map(([origin, s]) => `${origin} ${(s * 100).toFixed(1)}%`)
    .join(", ");
}

describe("OriginBalancer", () => {
  it("sends most traffic to the fastest origin and some to every origin", () => {
    const latencies: Record<string, number> = { fast: 10, mid: 30, slow: 100 };
    const origins = Object.keys(latencies);
    const balancer = new OriginBalancer(origins);
    const { picks } = simulate(balancer, 10_000, (origin) => latencies[origin] ?? 0);
    const share = shares(picks, origins);
    console.log(`steady 10/30/100 ms, 1 req/ms, 10 000 picks: ${percent(share)}`);
    expect(share.fast).toBeGreaterThan(0.5);
    expect(share.slow).toBeLessThan(0.1);
    expect(share.fast).toBeGreaterThan(share.mid ?? 1);
    expect(share.mid).toBeGreaterThan(share.slow ?? 1);
    // P2C never starves an origin that is not hopeless: each still gets traffic (and so fresh estimates).
    for (const origin of origins) expect(share[origin]).toBeGreaterThan(0);
    const snapshot = balancer.snapshot(20_000);
    expect(snapshot.fast?.outstanding).toBe(0);
    // The estimates track the real latencies (decayed a little since the last answer).
    const estimates = balancer.snapshot(10_010);
    console.log(`estimates: ${Object.entries(estimates).map(([o, s]) => `${o} ${s.ewmaMs.toFixed(1)} ms`).join(", ")}`);
    expect(estimates.fast?.ewmaMs).toBeGreaterThan(9);
    expect(estimates.fast?.ewmaMs).toBeLessThan(11);
    expect(estimates.slow?.ewmaMs).toBeGreaterThan(90);
    expect(estimates.slow?.ewmaMs).toBeLessThan(110);
  });

  it("moves traffic off an origin that turns slow, and back when it recovers", () => {
    const origins = ["a", "b", "c"];
    const balancer = new OriginBalancer(origins);
    const base: Record<string, number> = { a: 10, b: 20, c: 30 };
    const slowFrom = 5_000;
    const slowUntil = 10_000;
    const total = 40_000;
    const { picks } = simulate(balancer, total, (origin, i) =>
      origin === "a" && i >= slowFrom && i < slowUntil ? 200 : (base[origin] ?? 0),
    );
    const before = shares(picks.slice(slowFrom - 2_000, slowFrom), origins);
    // A few hundred requests after the change (the first slow answer only arrives 200 requests in, until then the
    // growing outstanding count is what pushes traffic away).
    const firstFew = shares(picks.slice(slowFrom, slowFrom + 300), origins);
    const during = shares(picks.slice(slowFrom + 300, slowUntil), origins);
    const after = shares(picks.slice(total - 5_000), origins);
    console.log(
      `a turns 10→200 ms: before ${percent(before)} | first 300 after ${percent(firstFew)} | ` +
        `slow phase ${percent(during)} | 25-30 s after recovery ${percent(after)}`,
    );
    expect(before.a).toBeGreaterThan(0.5);
    expect(firstFew.a).toBeLessThan(before.a ?? 0);
    expect(during.a).toBeLessThan(0.05);
    // Recovered: the 200 ms peak has decayed and a is the fastest again.
    expect(after.a).toBeGreaterThan(0.5);
    expect(after.a).toBeGreaterThan(during.a ?? 1);
  });

  it("probes an origin that lost every comparison once its old estimate has decayed, even without load", () => {
    const balancer = new OriginBalancer(["a", "b"]);
    // a answered slowly once, b is quick; one request at a time, so outstanding never tips the balance.
    balancer.start("a", 0)({ latencyMs: 500, success: true, now: 500 });
    balancer.start("b", 0)({ latencyMs: 20, success: true, now: 20 });
    expect(balancer.pick(1_000, 0, 0)).toBe("b");
    // 500 × e^(−t/10 s) falls below b's decaying 20 ms after ~32 s without answers from a.
    let now = 1_000;
    while (balancer.pick(now, 0, 0) === "b" && now < 120_000) {
      const end = balancer.start("b", now);
      now += 20;
      end({ latencyMs: 20, success: true, now });
    }
    console.log(`unloaded: a (once 500 ms) probed again after ${(now / 1_000).toFixed(1)} s of virtual time`);
    expect(balancer.pick(now, 0, 0)).toBe("a");
    expect(now).toBeLessThan(60_000);
  });

  it("prefers origins with fewer requests in flight when latencies are equal", () => {
    const origins = ["a", "b", "c"];
    const balancer = new OriginBalancer(origins);
    for (const origin of origins) balancer.start(origin, 0)({ latencyMs: 20, success: true, now: 20 });
    const busy = Array.from({ length: 5 }, () => balancer.start("a", 30));
    expect(balancer.snapshot(30).a?.outstanding).toBe(5);
    const random = mulberry32(7);
    const picks = Array.from({ length: 1_000 }, () => balancer.pick(40, random(), random()));
    const loaded = shares(picks, origins);
    // Same answer time for all, so the estimates are equal again (read-time decay favours whoever answered last longest ago).
    for (const end of busy) end({ latencyMs: 20, success: true, now: 50 });
    for (const origin of ["b", "c"]) balancer.start(origin, 30)({ latencyMs: 20, success: true, now: 50 });
    const idle = shares(
      Array.from({ length: 1_000 }, () => balancer.pick(60, random(), random())),
      origins,
    );
    console.log(`equal latency, a with 5 in flight: ${percent(loaded)} | after they end: ${percent(idle)}`);
    expect(loaded.a).toBeLessThan(0.05);
    expect(idle.a).toBeGreaterThan(0.2);
  });

  it("weighs outstanding requests against latency (cost = ewma × (outstanding + 1))", () => {
    const balancer = new OriginBalancer(["fast", "slow"]);
    balancer.start("fast", 0)({ latencyMs: 10, success: true, now: 10 });
    balancer.start("slow", 0)({ latencyMs: 35, success: true, now: 35 });
    expect(balancer.pick(40, 0, 0)).toBe("fast");
    // 10 × (3 + 1) = 40 > 35 × 1: the fast origin is now the busier one.
    for (let i = 0; i < 3; i++) balancer.start("fast", 40);
    expect(balancer.pick(40, 0, 0)).toBe("slow");
  });

  it("ejects an origin after consecutive failures, sends it nothing while ejected, and panics when all are", () => {
    const origins = ["a", "b", "c"];
    const balancer = new OriginBalancer(origins);
    let now = 0;
    for (let i = 0; i < DEFAULT_OUTLIER.consecutiveFailures; i++) {
      expect(balancer.snapshot(now).a?.ejected).toBe(false);
      balancer.start("a", now)({ latencyMs: 5, success: false, now: now + 5 });
      now += 10;
    }
    const snapshot = balancer.snapshot(now);
    expect(snapshot.a?.ejected).toBe(true);
    // Fast failures still made it look expensive: each doubled the estimate.
    expect(snapshot.a?.ewmaMs).toBeGreaterThan(DEFAULT_BALANCER.initialLatencyMs * 2 ** (DEFAULT_OUTLIER.consecutiveFailures - 1));
    const random = mulberry32(3);
    const picks = Array.from({ length: 1_000 }, () => balancer.pick(now, random(), random()));
    expect(picks.filter((p) => p === "a")).toHaveLength(0);
    expect(new Set(picks)).toEqual(new Set(["b", "c"]));

    // Eject the others too: panic mode still answers with some origin.
    for (const origin of ["b", "c"]) {
      for (let i = 0; i < DEFAULT_OUTLIER.consecutiveFailures; i++) balancer.start(origin, now)({ latencyMs: 5, success: false, now });
    }
    expect(Object.values(balancer.snapshot(now)).every((s) => s.ejected)).toBe(true);
    const panic = Array.from({ length: 100 }, () => balancer.pick(now, random(), random()));
    for (const origin of panic) expect(origins).toContain(origin);

    // Once the ejection is over, a is a candidate again (probing).
    const later = now + DEFAULT_OUTLIER.baseEjectionMs;
    expect(balancer.snapshot(later).a?.ejected).toBe(false);
  });

  it("always picks the only origin", () => {
    const balancer = new OriginBalancer(["only"]);
    const random = mulberry32(5);
    for (let i = 0; i < 100; i++) expect(balancer.pick(i, random(), random())).toBe("only");
    // Even when it is ejected (panic).
    for (let i = 0; i < DEFAULT_OUTLIER.consecutiveFailures; i++) balancer.start("only", 0)({ latencyMs: 1, success: false, now: 1 });
    expect(balancer.snapshot(1).only?.ejected).toBe(true);
    expect(balancer.pick(1, 0.5, 0.5)).toBe("only");
  });

  it("counts a request's end once, ignores unknown origins, and copes with r = 1", () => {
    const balancer = new OriginBalancer(["a", "b"]);
    const end = balancer.start("a", 0);
    end({ latencyMs: 10, success: true, now: 10 });
    end({ latencyMs: 10, success: true, now: 10 });
    expect(balancer.snapshot(10).a?.outstanding).toBe(0);
    balancer.start("zzz", 0)({ latencyMs: 10, success: false, now: 10 });
    expect(Object.keys(balancer.snapshot(10))).toEqual(["a", "b"]);
    expect(["a", "b"]).toContain(balancer.pick(10, 1, 1));
    expect(() => new OriginBalancer([])).toThrow(RangeError);
  });
});
