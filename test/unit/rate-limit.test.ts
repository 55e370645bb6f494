import { describe, expect, it } from "vitest";
import { grant, initialState, nextLeaseSize, policyHeader, rateLimitHeader, type CounterState, type LimitSpec } from "../../shared/rate-limit.ts";

/** Asks for `want` tokens `times` times at `now`, returning the total granted and the final state. */
function drain(spec: LimitSpec, state: CounterState, want: number, times: number, now: number): { total: number; state: CounterState } {
  let total = 0;
  let current = state;
  for (let i = 0; i < times; i++) {
    const g = grant(spec, current, want, now);
    total += g.granted;
    current = g.state;
  }
  return { total, state: current };
}

describe("fixed window", () => {
  const spec: LimitSpec = { algorithm: "fixed-window", limit: 50, periodSeconds: 10 };
  const t0 = 1_000_000_000_000; // on a window boundary

  it("grants exactly the limit per window, however it is asked for", () => {
    expect(drain(spec, initialState(spec, t0), 1, 200, t0).total).toBe(50);
    expect(drain(spec, initialState(spec, t0), 7, 200, t0).total).toBe(50);
  });

  it("refuses until the window ends, then starts afresh (window edges)", () => {
    const { state } = drain(spec, initialState(spec, t0), 1, 50, t0 + 9_999);
    const refused = grant(spec, state, 1, t0 + 9_999);
    expect(refused.granted).toBe(0);
    expect(refused.retryAt).toBe(t0 + 10_000);
    expect(grant(spec, refused.state, 1, t0 + 10_000).granted).toBe(1);
  });

  it("leases expire with their window", () => {
    expect(grant(spec, initialState(spec, t0), 5, t0 + 3_000).validUntil).toBe(t0 + 10_000);
  });
});

describe("sliding window", () => {
  const spec: LimitSpec = { algorithm: "sliding-window", limit: 100, periodSeconds: 10 };
  const t0 = 1_000_000_000_000;

  it("counts the previous window in proportion to its overlap", () => {
    const full = drain(spec, initialState(spec, t0), 1, 100, t0 + 5_000).state; // 100 in window 1
    // A quarter into window 2, 75% of the previous 100 still count: 25 more fit.
    expect(drain(spec, full, 1, 100, t0 + 12_500).total).toBe(25);
    // Three quarters in: 25% still count.
    expect(drain(spec, full, 1, 100, t0 + 17_500).total).toBe(75);
  });

  it("forgets a window two periods old", () => {
    const full = drain(spec, initialState(spec, t0), 1, 100, t0).state;
    expect(drain(spec, full, 1, 200, t0 + 25_000).total).toBe(100);
  });
});

describe("token bucket", () => {
  const spec: LimitSpec = { algorithm: "token-bucket", limit: 20, periodSeconds: 1, burst: 40 };
  const t0 = 1_000_000_000_000;

  it("allows a burst, then the rate", () => {
    const burst = drain(spec, initialState(spec, t0), 1, 100, t0);
    expect(burst.total).toBe(40);
    // 20 per second refill: 500 ms later, 10 more.
    expect(drain(spec, burst.state, 1, 100, t0 + 500).total).toBe(10);
  });

  it("says when the next token arrives", () => {
    const empty = drain(spec, initialState(spec, t0), 1, 100, t0).state;
    const refused = grant(spec, empty, 1, t0);
    expect(refused.granted).toBe(0);
    expect(refused.retryAt).toBe(t0 + 50); // one token per 50 ms
  });
});

describe("leases and headers", () => {
  it("doubles leases up to 5% of the limit, so few tokens are ever stranded", () => {
    const spec: LimitSpec = { algorithm: "fixed-window", limit: 1000, periodSeconds: 1 };
    const sizes = [0, 1, 2, 4, 8, 16, 32, 64].map((previous) => nextLeaseSize(previous, spec));
    expect(sizes).toEqual([1, 2, 4, 8, 16, 32, 50, 50]);
    expect(nextLeaseSize(10, { algorithm: "fixed-window", limit: 50, periodSeconds: 10 })).toBe(2);
  });

  it("formats RateLimit-Policy and RateLimit as in the IETF draft", () => {
    expect(policyHeader("api-key", { algorithm: "fixed-window", limit: 50, periodSeconds: 10 })).toBe('"api-key";q=50;w=10');
    expect(rateLimitHeader("api-key", 12, 1_000_004_000, 1_000_000_500)).toBe('"api-key";r=12;t=4');
  });
});
