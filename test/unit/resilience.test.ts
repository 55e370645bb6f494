import { describe, expect, it } from "vitest";
import { mulberry32 } from "./prng.ts";
import {
  AdaptiveDelay,
  decideFault,
  DEFAULT_OUTLIER,
  DEFAULT_RETRY_BUDGET,
  fixedBackoff,
  healthyOwners,
  isRetrySafe,
  OutlierDetector,
  RetryBudget,
  type FaultRule,
} from "../../shared/resilience.ts";
import { expandLayout, rebalance } from "../../shared/split.ts";


function count<T>(items: readonly T[], predicate: (item: T) => boolean): number {
  return items.reduce((n, item) => (predicate(item) ? n + 1 : n), 0);
}

describe("isRetrySafe", () => {
  it.each([
    ["GET", false, true],
    ["HEAD", false, true],
    ["OPTIONS", false, true],
    ["PUT", false, true],
    ["DELETE", false, true],
    ["get", false, true],
    ["POST", false, false],
    ["PATCH", false, false],
    ["POST", true, true],
    ["PATCH", true, true],
  ])("%s with key=%s → %s", (method, hasKey, expected) => {
    expect(isRetrySafe(method, hasKey)).toBe(expected);
  });
});

describe("RetryBudget", () => {
  it("holds sustained retries to ratio × requests + minPerSecond × window", () => {
    const budget = new RetryBudget();
    const { ratio, minPerSecond, windowSeconds } = DEFAULT_RETRY_BUDGET;
    let granted = 0;
    let grantedLast10s = 0;
    // 100 requests/s for 20 s, every one of them wanting a retry.
    for (let i = 0; i < 2_000; i++) {
      const now = i * 10;
      budget.recordRequest(now);
      if (budget.tryRetry(now)) {
        granted++;
        if (now >= 10_000) grantedLast10s++;
      }
      if (now >= 10_000 && now % 1_000 === 990) {
        // End of each second once the window is full: the window holds 1 000 requests.
        const snap = budget.snapshot(now);
        expect(snap.requests).toBe(1_000);
        const formula = ratio * snap.requests + minPerSecond * windowSeconds;
        expect(snap.allowed).toBe(formula);
        expect(Math.abs(snap.retries - formula)).toBeLessThanOrEqual(2);
      }
    }
    // Steady state: 20% of 100/s + 10/s = 30 retries/s.
    expect(Math.abs(grantedLast10s - 300)).toBeLessThanOrEqual(2);
    expect(granted).toBeGreaterThan(grantedLast10s);
  });

  it("still allows minPerSecond when idle", () => {
    const budget = new RetryBudget();
    // 10 retries/s for a minute with no requests at all: all granted.
    for (let i = 0; i < 600; i++) expect(budget.tryRetry(i * 100)).toBe(true);
    // A burst beyond the floor is refused once the window's floor is used up.
    const burst = new RetryBudget();
    let granted = 0;
    for (let i = 0; i < 500; i++) if (burst.tryRetry(0)) granted++;
    expect(granted).toBe(100);
    expect(burst.tryRetry(9_999)).toBe(false);
    expect(burst.tryRetry(10_000)).toBe(true);
  });

  it("slides: requests older than the window stop counting", () => {
    const budget = new RetryBudget();
    for (let i = 0; i < 1_000; i++) budget.recordRequest(0);
    expect(budget.snapshot(0).allowed).toBe(300);
    expect(budget.snapshot(9_999)).toEqual({ requests: 1_000, retries: 0, allowed: 300 });
    expect(budget.snapshot(10_000)).toEqual({ requests: 0, retries: 0, allowed: 100 });
  });

  it("ignores a stale timestamp instead of wiping the current second", () => {
    const budget = new RetryBudget({ ratio: 1, minPerSecond: 0, windowSeconds: 2 });
    budget.recordRequest(5_000);
    budget.recordRequest(3_000);
    expect(budget.snapshot(5_500).requests).toBe(2);
  });
});

describe("OutlierDetector", () => {
  it("ejects after 5 consecutive failures", () => {
    const detector = new OutlierDetector();
    for (let i = 0; i < 4; i++) expect(detector.record(false, i).state).toBe("healthy");
    expect(detector.record(false, 4)).toEqual({ state: "ejected", until: 5_004, ejections: 1 });
    expect(detector.isEjected(5_003)).toBe(true);
  });

  it("a success resets the consecutive count", () => {
    // Error-rate rule off, so only the streak counts.
    const detector = new OutlierDetector({ ...DEFAULT_OUTLIER, errorRatePercent: 101 });
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 4; i++) expect(detector.record(false, round * 10 + i).state).toBe("healthy");
      expect(detector.record(true, round * 10 + 5).state).toBe("healthy");
    }
  });

  it("ejects at a 50% error rate over at least 10 requests in the window", () => {
    const detector = new OutlierDetector();
    // Alternating: never two failures in a row.
    for (let i = 0; i < 9; i++) expect(detector.record(i % 2 === 1, i * 100).state).toBe("healthy");
    expect(detector.record(false, 900).state).toBe("ejected");
  });

  it("does not apply the error-rate rule below minRequests or outside the window", () => {
    // Streak rule off, so only the error rate counts.
    const settings = { ...DEFAULT_OUTLIER, consecutiveFailures: 1_000 };
    const few = new OutlierDetector(settings);
    for (let i = 0; i < 9; i++) expect(few.record(i < 5, 0).state).toBe("healthy"); // 4 of 9 fail (44%)…
    for (let i = 0; i < 9; i++) expect(new OutlierDetector(settings).record(false, 0).state).toBe("healthy");
    const slid = new OutlierDetector(settings);
    for (let i = 0; i < 9; i++) slid.record(i % 2 === 0, 0); // 4 failures, 5 successes
    // The tenth outcome (a failure) would make 5/10 = 50% — but the first nine are out of the window by now.
    expect(slid.record(false, 10_000).state).toBe("healthy");
    const inWindow = new OutlierDetector(settings);
    for (let i = 0; i < 9; i++) inWindow.record(i % 2 === 0, 0);
    expect(inWindow.record(false, 9_000).state).toBe("ejected");
  });

  it("doubles ejection time per consecutive ejection, capped; probing success heals and decays", () => {
    const detector = new OutlierDetector({ ...DEFAULT_OUTLIER, maxEjectionMs: 30_000 });
    let now = 0;
    for (let i = 0; i < 5; i++) detector.record(false, now);
    const durations: number[] = [];
    let health = detector.health(now);
    for (let round = 0; round < 6; round++) {
      if (health.state !== "ejected") throw new Error("expected an ejection");
      durations.push(health.until - now);
      now = health.until;
      expect(detector.health(now)).toEqual({ state: "probing", ejections: round + 1 });
      health = detector.record(false, now); // the probe fails: ejected again, longer
    }
    expect(durations).toEqual([5_000, 10_000, 20_000, 30_000, 30_000, 30_000]);
    if (health.state !== "ejected") throw new Error("expected an ejection");
    now = health.until;
    expect(detector.record(true, now)).toEqual({ state: "healthy" });
    // Healed: the next ejection starts from the base again.
    for (let i = 0; i < 5; i++) detector.record(false, now + 1);
    expect(detector.health(now + 1)).toEqual({ state: "ejected", until: now + 1 + 5_000, ejections: 1 });
  });

  it("an ejection expires at exactly `until`", () => {
    const detector = new OutlierDetector();
    for (let i = 0; i < 5; i++) detector.record(false, 1_000);
    expect(detector.isEjected(5_999)).toBe(true);
    expect(detector.health(5_999).state).toBe("ejected");
    expect(detector.isEjected(6_000)).toBe(false);
    expect(detector.health(6_000).state).toBe("probing");
  });

  it("ignores late answers while ejected and does not re-eject on old failures after healing", () => {
    const detector = new OutlierDetector();
    for (let i = 0; i < 5; i++) detector.record(false, 0);
    expect(detector.record(true, 100)).toEqual({ state: "ejected", until: 5_000, ejections: 1 });
    expect(detector.record(true, 5_000)).toEqual({ state: "healthy" });
    expect(detector.record(false, 5_001).state).toBe("healthy");
  });
});

describe("healthyOwners", () => {
  const weights = { a: 60, b: 30, c: 10 };
  const owners = expandLayout(rebalance(undefined, weights));

  it("returns the same instance when nothing is ejected", () => {
    expect(healthyOwners(owners, weights, new Set())).toBe(owners);
    expect(healthyOwners(owners, weights, new Set(["unrelated"]))).toBe(owners);
  });

  it("moves only the ejected backend's slots, to healthy backends, by weight, deterministically", () => {
    const result = healthyOwners(owners, weights, new Set(["a"]));
    expect(result).toHaveLength(owners.length);
    owners.forEach((owner, slot) => {
      if (owner === "a") expect(["b", "c"]).toContain(result[slot]);
      else expect(result[slot]).toBe(owner);
    });
    const toB = count(owners.map((o, slot) => [o, result[slot]]), ([o, r]) => o === "a" && r === "b");
    const toC = count(owners.map((o, slot) => [o, result[slot]]), ([o, r]) => o === "a" && r === "c");
    expect(toB + toC).toBe(60);
    // 3:1 of 60 slots is 45/15; 60 draws give a standard deviation of ~3.4.
    expect(toB).toBeGreaterThanOrEqual(38);
    expect(toB).toBeLessThanOrEqual(52);
    expect(healthyOwners(owners, weights, new Set(["a"]))).toEqual(result);
  });

  it("splits by weight over many slots (3:1 within 2%)", () => {
    const many = new Array<string>(10_000).fill("a");
    const result = healthyOwners(many, weights, new Set(["a"]));
    expect(count(result, (o) => o === "b") / 10_000).toBeCloseTo(0.75, 1);
    expect(Math.abs(count(result, (o) => o === "b") / 10_000 - 0.75)).toBeLessThan(0.02);
  });

  it("never substitutes a zero-weight backend", () => {
    const w = { a: 60, b: 40, c: 0 };
    const result = healthyOwners(expandLayout(rebalance(undefined, w)), w, new Set(["a"]));
    expect(result).not.toContain("c");
    expect(result).not.toContain("a");
  });

  it("keeps a shopper's substitute when another backend is also ejected, unless it was that one", () => {
    const w = { a: 40, b: 30, c: 20, d: 10 };
    const o = expandLayout(rebalance(undefined, w));
    const one = healthyOwners(o, w, new Set(["a"]));
    const two = healthyOwners(o, w, new Set(["a", "d"]));
    o.forEach((owner, slot) => {
      if (owner === "a" && one[slot] !== "d") expect(two[slot]).toBe(one[slot]);
    });
  });

  it("panics (unchanged) when every weighted backend is ejected, and restores owners on recovery", () => {
    expect(healthyOwners(owners, weights, new Set(["a", "b", "c"]))).toBe(owners);
    const during = healthyOwners(owners, weights, new Set(["b"]));
    expect(during).not.toEqual(owners);
    const after = healthyOwners(owners, weights, new Set());
    expect(after).toEqual(expandLayout(rebalance(undefined, weights)));
  });
});

describe("AdaptiveDelay", () => {
  it("uses initialMs with ±20% jitter before learning, then the EWMA, clamped", () => {
    const delay = new AdaptiveDelay();
    expect(delay.learnedMs()).toBeUndefined();
    expect(delay.delay(0)).toBe(40);
    expect(delay.delay(0.5)).toBe(50);
    expect(delay.delay(0.999999)).toBeCloseTo(60, 3);
    delay.recordSuccess(10); // no open streak: nothing learned
    expect(delay.learnedMs()).toBeUndefined();
    delay.recordFailure(100);
    delay.recordFailure(150); // same streak
    delay.recordSuccess(400);
    expect(delay.learnedMs()).toBe(300);
    // A streak whose first retry succeeded only bounds the outage from above: its sample is shrunk by 10%.
    delay.recordFailure(1_000);
    delay.recordSuccess(1_100);
    expect(delay.learnedMs()).toBeCloseTo(0.3 * 90 + 0.7 * 300, 9);
    const capped = new AdaptiveDelay({ initialMs: 50, minMs: 5, maxMs: 2_000, alpha: 1 });
    capped.recordFailure(0);
    capped.recordSuccess(60_000);
    expect(capped.delay(0.999)).toBe(2_000);
    capped.recordFailure(0);
    capped.recordSuccess(1);
    expect(capped.delay(0)).toBe(5);
  });

  it("aims at the learned duration from the streak's start, then backs off once overrun", () => {
    const delay = new AdaptiveDelay({ initialMs: 50, minMs: 5, maxMs: 2_000, alpha: 1 });
    delay.recordFailure(0);
    delay.recordFailure(10);
    delay.recordSuccess(300);
    expect(delay.learnedMs()).toBe(300);
    delay.recordFailure(1_000);
    expect(delay.delay(0.5)).toBe(300);
    delay.recordFailure(1_200); // 200 ms into the streak: 100 ms left
    expect(delay.delay(0.5)).toBe(100);
    delay.recordFailure(1_300); // estimate reached without recovery: a quarter of it
    expect(delay.delay(0.5)).toBe(75);
    delay.recordFailure(1_700); // overrun by 400 ms: wait that long again
    expect(delay.delay(0.5)).toBe(400);
  });

  it("backs off exponentially before anything is learned", () => {
    const delay = new AdaptiveDelay();
    const waits: number[] = [];
    let now = 0;
    for (let i = 0; i < 5; i++) {
      delay.recordFailure(now);
      const wait = delay.delay(0.5);
      waits.push(wait);
      now += wait;
    }
    expect(waits).toEqual([50, 50, 100, 200, 400]);
  });

  it("fixedBackoff doubles per attempt with full jitter, capped", () => {
    expect(fixedBackoff(1, 25, 1_000, 0.5)).toBe(12.5);
    expect(fixedBackoff(3, 25, 1_000, 1)).toBe(100);
    expect(fixedBackoff(10, 25, 1_000, 0.5)).toBe(500);
    expect(fixedBackoff(1, 25, 1_000, 0)).toBe(0);
  });

  it("beats fixed exponential backoff on a backend that recovers after a set time", () => {
    const T = 300; // the backend fails every request until T ms after the outage starts
    const OUTAGES = 200;
    const WARMUP = 10;
    const MAX_RETRIES = 20;
    const random = mulberry32(42);

    interface Outcome {
      attempts: number;
      time: number;
      succeeded: boolean;
    }

    /** One outage on a virtual clock: the first request at its start fails, then retries until one succeeds. */
    function outage(start: number, nextDelay: (retry: number) => number, adaptive?: AdaptiveDelay): Outcome {
      let now = start;
      let attempts = 1;
      adaptive?.recordFailure(now);
      for (let retry = 1; retry <= MAX_RETRIES; retry++) {
        now += nextDelay(retry);
        attempts++;
        if (now - start >= T) {
          adaptive?.recordSuccess(now);
          return { attempts, time: now - start, succeeded: true };
        }
        adaptive?.recordFailure(now);
      }
      return { attempts, time: now - start, succeeded: false };
    }

    const adaptive = new AdaptiveDelay();
    const runs: { adaptive: Outcome[]; fixed: Outcome[] } = { adaptive: [], fixed: [] };
    const learned: number[] = [];
    for (let i = 0; i < OUTAGES; i++) {
      const start = i * 60_000;
      runs.adaptive.push(outage(start, () => adaptive.delay(random()), adaptive));
      runs.fixed.push(outage(start, (retry) => fixedBackoff(retry, 25, 2_000, random())));
      learned.push(adaptive.learnedMs() ?? Number.NaN);
    }
    const stats = (list: readonly Outcome[]) => {
      const after = list.slice(WARMUP);
      return {
        attempts: after.reduce((s, r) => s + r.attempts, 0) / after.length,
        meanTime: after.reduce((s, r) => s + r.time, 0) / after.length,
        p99Time: [...after].sort((x, y) => x.time - y.time)[Math.floor(after.length * 0.99)]?.time ?? Number.NaN,
        failed: count(after, (r) => !r.succeeded),
      };
    };
    const a = stats(runs.adaptive);
    const f = stats(runs.fixed);
    const learnedAfter = learned.slice(WARMUP);
    const learnedMean = learnedAfter.reduce((s, x) => s + x, 0) / learnedAfter.length;
    const fmt = (n: number) => n.toFixed(1);
    console.log(
      `adaptive vs fixed (T=${T} ms, ${OUTAGES - WARMUP} outages after ${WARMUP} warm-up): ` +
        `attempts/outage ${fmt(a.attempts)} vs ${fmt(f.attempts)}; ` +
        `mean time-to-success ${fmt(a.meanTime)} vs ${fmt(f.meanTime)} ms; p99 ${fmt(a.p99Time)} vs ${fmt(f.p99Time)} ms; ` +
        `learned delay mean ${fmt(learnedMean)} ms (min ${fmt(Math.min(...learnedAfter))}, max ${fmt(Math.max(...learnedAfter))}); ` +
        `first outage: adaptive ${runs.adaptive[0]?.attempts ?? 0} attempts, fixed ${runs.fixed[0]?.attempts ?? 0}`,
    );
    expect(a.failed).toBe(0);
    expect(f.failed).toBe(0);
    expect(a.attempts).toBeLessThan(f.attempts / 2);
    expect(a.meanTime).toBeLessThanOrEqual(1.5 * T);
    // Converges near the real outage length (it neither ratchets up nor collapses).
    expect(learnedMean).toBeGreaterThanOrEqual(0.9 * T);
    expect(learnedMean).toBeLessThanOrEqual(1.3 * T);
  });
});

describe("decideFault", () => {
  const rules: FaultRule[] = [
    { backend: "pim", abort: { percent: 50, status: 503 }, delay: { percent: 20, ms: 200 } },
    { backend: "pim", abort: { percent: 100, status: 500 } }, // shadowed: first matching rule wins
    { backend: "cart", delay: { percent: 100, ms: 50 } },
  ];

  it("hits the configured percentages independently", () => {
    const random = mulberry32(7);
    const decisions = Array.from({ length: 10_000 }, () => decideFault(rules, "pim", random(), random()));
    const aborted = count(decisions, (d) => d.kind === "abort" || d.kind === "delay-then-abort");
    const delayed = count(decisions, (d) => d.kind === "delay" || d.kind === "delay-then-abort");
    const both = count(decisions, (d) => d.kind === "delay-then-abort");
    expect(aborted / 100).toBeGreaterThanOrEqual(48);
    expect(aborted / 100).toBeLessThanOrEqual(52);
    expect(delayed / 100).toBeGreaterThanOrEqual(18);
    expect(delayed / 100).toBeLessThanOrEqual(22);
    // Independent draws: both ≈ 50% × 20% = 10%.
    expect(both / 100).toBeGreaterThanOrEqual(8.5);
    expect(both / 100).toBeLessThanOrEqual(11.5);
    expect(decisions.every((d) => d.kind !== "abort" || d.status === 503)).toBe(true);
  });

  it("leaves other backends alone and returns the exact shapes", () => {
    const random = mulberry32(8);
    for (let i = 0; i < 1_000; i++) expect(decideFault(rules, "orders", random(), random())).toEqual({ kind: "none" });
    expect(decideFault(rules, "cart", 0.9, 0)).toEqual({ kind: "delay", ms: 50 });
    expect(decideFault(rules, "pim", 0.1, 0.1)).toEqual({ kind: "delay-then-abort", ms: 200, status: 503 });
    expect(decideFault(rules, "pim", 0.1, 0.9)).toEqual({ kind: "abort", status: 503 });
    expect(decideFault(rules, "pim", 0.5, 0.2)).toEqual({ kind: "none" });
    expect(decideFault([], "pim", 0, 0)).toEqual({ kind: "none" });
  });
});
