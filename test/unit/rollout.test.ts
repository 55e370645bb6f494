/**
 * The rollout policies in isolation: request validation, weights per step, the step judge (error
 * budget, latency, too little traffic) and the state machine's transitions.
 */
import { describe, expect, it } from "vitest";
import { BUCKETS, bucketOf, noAttempts, type AttemptStats } from "../../shared/metrics.ts";
import {
  attemptsSince,
  DEFAULT_STEPS,
  judgeStep,
  nextTransition,
  RolloutAnalysis,
  RolloutRequest,
  stepsOf,
  stepWeights,
  type StepClock,
  type Verdict,
} from "../../shared/rollout.ts";

/** `count` attempts of `ms` each, `failures` of them failed. */
function attempts(count: number, failures: number, ms = 10): AttemptStats {
  const stats = noAttempts();
  stats.count = count;
  stats.failures = failures;
  stats.buckets[bucketOf(ms)] = count;
  return stats;
}

const analysis = RolloutAnalysis.parse({ maxErrorRate: 0.05, maxP99Ms: 500, minRequests: 100 });

describe("RolloutRequest", () => {
  it("fills in defaults", () => {
    const parsed = RolloutRequest.parse({ backend: "pim-v2" });
    expect(parsed).toMatchObject({ strategy: "canary", stepSeconds: 60, analysis: { maxErrorRate: 0.01, minRequests: 100, trafficTimeoutSeconds: 600 } });
    expect(stepsOf(parsed)).toEqual(DEFAULT_STEPS);
  });

  it("refuses steps that do not increase, blue-green with steps or without a probe, and unknown fields", () => {
    const issues = (body: unknown): string[] => {
      const result = RolloutRequest.safeParse(body);
      return result.success ? [] : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    };
    expect(issues({ backend: "b", steps: [10, 10] })).toEqual(["steps.1: steps must be strictly increasing"]);
    expect(issues({ backend: "b", steps: [0] })[0]).toMatch(/^steps.0:/);
    expect(issues({ backend: "b", steps: [101] })[0]).toMatch(/^steps.0:/);
    expect(issues({ backend: "b", strategy: "blue-green", steps: [50] })).toEqual([
      "steps: blue-green has no steps: all traffic switches at once",
      expect.stringMatching(/^probe: blue-green needs a probe/),
    ]);
    expect(issues({ backend: "b", strategy: "blue-green", probe: { path: "/health" } })).toEqual([]);
    expect(issues({ backend: "b", probe: { path: "health" } })[0]).toMatch(/^probe.path:/);
    expect(issues({ backend: "b", analysis: { maxErrorRate: 1.5 } })[0]).toMatch(/^analysis.maxErrorRate:/);
    expect(issues({ backend: "B!" })[0]).toMatch(/^backend:/);
    expect(issues({ backend: "b", colour: "blue" })[0]).toMatch(/colour/);
  });

  it("blue-green is a check at 0% then the switch to 100%", () => {
    expect(stepsOf({ strategy: "blue-green", steps: undefined })).toEqual([0, 100]);
    expect(stepsOf({ strategy: "canary", steps: [10, 20] })).toEqual([10, 20]);
  });
});

describe("stepWeights", () => {
  it("gives the candidate its weight and the rest to the baseline", () => {
    expect(stepWeights({ v1: 100, v2: 0 }, "v2", 5)).toEqual({ v1: 95, v2: 5 });
    expect(stepWeights({ v1: 100, v2: 0 }, "v2", 100)).toEqual({ v1: 0, v2: 100 });
    expect(stepWeights({ v1: 100, v2: 0 }, "v2", 0)).toEqual({ v1: 100, v2: 0 });
  });

  it("shares the rest among several baseline backends in proportion, summing to exactly 100", () => {
    const weights = stepWeights({ a: 50, b: 30, c: 20, cand: 0 }, "cand", 25);
    expect(weights).toEqual({ a: 38, b: 22, c: 15, cand: 25 });
    for (const w of [1, 7, 33, 50, 99]) {
      const split = stepWeights({ a: 34, b: 33, c: 33, cand: 0 }, "cand", w);
      expect(Object.values(split).reduce((sum, n) => sum + n, 0)).toBe(100);
      expect(split.cand).toBe(w);
    }
  });

  it("keeps backends that had no traffic at 0 and the operator's order", () => {
    expect(Object.keys(stepWeights({ vendor: 0, v1: 100, v2: 0 }, "v2", 20))).toEqual(["vendor", "v1", "v2"]);
    expect(stepWeights({ vendor: 0, v1: 100, v2: 0 }, "v2", 20)).toEqual({ vendor: 0, v1: 80, v2: 20 });
    // A candidate that already had some traffic starts from the baseline's share of the rest.
    expect(stepWeights({ v1: 90, v2: 10 }, "v2", 50)).toEqual({ v1: 50, v2: 50 });
  });
});

describe("attemptsSince", () => {
  it("is the difference of running totals, summed over the backends asked for", () => {
    const before = { v1: attempts(100, 1), v2: attempts(10, 0) };
    const now = { v1: attempts(250, 3), v2: attempts(40, 6), vendor: attempts(7, 7) };
    const candidate = attemptsSince(now, before, ["v2"]);
    expect(candidate).toMatchObject({ count: 30, failures: 6 });
    expect(candidate.buckets[bucketOf(10)]).toBe(30);
    expect(attemptsSince(now, before, ["v1", "vendor"])).toMatchObject({ count: 157, failures: 9 });
    expect(attemptsSince(now, {}, ["missing"])).toEqual(noAttempts());
    expect(noAttempts().buckets).toHaveLength(BUCKETS);
  });
});

describe("judgeStep", () => {
  const baseline = attempts(900, 9);

  it("passes a healthy candidate with enough requests and reports the baseline beside it", () => {
    const verdict = judgeStep(attempts(120, 2), baseline, analysis);
    expect(verdict.kind).toBe("pass");
    expect(verdict.candidate).toMatchObject({ requests: 120, failures: 2, errorRate: 0.01667 });
    expect(verdict.baseline).toMatchObject({ requests: 900, failures: 9, errorRate: 0.01 });
  });

  it("never passes on too little traffic", () => {
    const verdict = judgeStep(attempts(99, 0), baseline, analysis);
    expect(verdict).toMatchObject({ kind: "insufficient", reason: "99 of the 100 requests needed" });
    expect(judgeStep(noAttempts(), noAttempts(), analysis)).toMatchObject({ kind: "insufficient", candidate: { errorRate: null, p99Ms: null } });
  });

  it("fails as soon as the step's error budget is spent, before minRequests", () => {
    // 6 failures can never fit in 5% of 100 requests, however many succeed next.
    const verdict = judgeStep(attempts(10, 6), baseline, analysis);
    expect(verdict.kind).toBe("fail");
    if (verdict.kind === "fail") expect(verdict.reason).toBe("error rate 60% (6 of 10 attempts) is above the maximum 5%; baseline 1% of 900");
    // 5 failures still fit (5 of 100 = 5%): wait for more traffic.
    expect(judgeStep(attempts(10, 5), baseline, analysis).kind).toBe("insufficient");
    // With more requests than the minimum, the rate is over what was seen.
    expect(judgeStep(attempts(400, 20), baseline, analysis).kind).toBe("pass");
    expect(judgeStep(attempts(400, 21), baseline, analysis).kind).toBe("fail");
  });

  it("fails on p99 latency only with enough requests", () => {
    expect(judgeStep(attempts(50, 0, 900), baseline, analysis).kind).toBe("insufficient");
    const slow = judgeStep(attempts(200, 0, 900), attempts(900, 0, 20), analysis);
    expect(slow.kind).toBe("fail");
    if (slow.kind === "fail") expect(slow.reason).toMatch(/^p99 latency \d+(\.\d+)? ms is above the maximum 500 ms; baseline p99 \d+(\.\d+)? ms$/);
    const noLatencyCheck = RolloutAnalysis.parse({ minRequests: 100 });
    expect(judgeStep(attempts(200, 0, 900), baseline, noLatencyCheck).kind).toBe("pass");
  });
});

describe("judgeStep against the baseline", () => {
  const relative = RolloutAnalysis.parse({ maxErrorRate: 0.5, minRequests: 100, maxErrorRateIncrease: 0.01, maxP99Ratio: 1.5 });

  it("fails a candidate whose error rate is more than the allowed increase over the baseline's", () => {
    const verdict = judgeStep(attempts(200, 10), attempts(1000, 20), relative);
    expect(verdict.kind).toBe("fail");
    if (verdict.kind === "fail") expect(verdict.reason).toBe("error rate 5% is 3% above the baseline's 2% (at most +1%)");
    expect(judgeStep(attempts(200, 5), attempts(1000, 20), relative).kind).toBe("pass");
  });

  it("fails a candidate slower than the allowed ratio of the baseline's p99", () => {
    const verdict = judgeStep(attempts(200, 0, 40), attempts(1000, 0, 8), relative);
    expect(verdict.kind).toBe("fail");
    if (verdict.kind === "fail") expect(verdict.reason).toMatch(/^p99 latency [\d.]+ ms is [\d.]+× the baseline's [\d.]+ ms \(at most 1.5×\)$/);
    expect(judgeStep(attempts(200, 0, 8), attempts(1000, 0, 8), relative).kind).toBe("pass");
  });

  it("does not compare with a baseline that had too little traffic in the step (e.g. after a blue-green switch)", () => {
    expect(judgeStep(attempts(200, 10, 40), attempts(50, 0, 8), relative).kind).toBe("pass");
  });
});

describe("nextTransition", () => {
  const clock = (elapsedMs: number, index = 0, count = 3): StepClock => ({ elapsedMs, stepSeconds: 60, trafficTimeoutSeconds: 120, index, count });
  const pass: Verdict = judgeStep(attempts(200, 0), noAttempts(), analysis);
  const short: Verdict = judgeStep(attempts(20, 0), noAttempts(), analysis);
  const failing: Verdict = judgeStep(attempts(20, 10), noAttempts(), analysis);

  it("keeps a passing step going until its time is up, then advances, and promotes after the last", () => {
    expect(nextTransition(pass, clock(10_000))).toEqual({ kind: "wait", state: "progressing", dueInMs: 50_000 });
    expect(nextTransition(pass, clock(60_000))).toEqual({ kind: "advance", index: 1 });
    expect(nextTransition(pass, clock(61_000, 2, 3))).toEqual({ kind: "promote" });
  });

  it("rolls back on a failing verdict at any time", () => {
    const transition = nextTransition(failing, clock(1_000));
    expect(transition.kind).toBe("rollback");
    if (transition.kind === "rollback") expect(transition.reason).toMatch(/^error rate 50%/);
  });

  it("waits for traffic after the step's time, then fails at the traffic timeout", () => {
    expect(nextTransition(short, clock(30_000))).toEqual({ kind: "wait", state: "progressing", dueInMs: 30_000 });
    expect(nextTransition(short, clock(61_000))).toEqual({ kind: "wait", state: "waiting-for-traffic", dueInMs: 119_000 });
    expect(nextTransition(short, clock(180_000))).toEqual({
      kind: "rollback",
      reason: "not enough traffic: 20 of the 100 requests needed after waiting 120 s",
    });
  });
});
