import { describe, expect, it } from "vitest";
import {
  AHEAD_MAX_SHARE,
  expiresAt,
  grant,
  grantAhead,
  initialState,
  LEASE_JITTER,
  leaseCap,
  leaseJitter,
  leaseTarget,
  MAX_AHEAD_MS,
  MIN_TARGET_LEASE,
  maxAheadWindows,
  nextLeaseSize,
  planLease,
  policyHeader,
  rateLimitHeader,
  WINDOW_LEASE_BUDGET,
  type CounterState,
  type LeasePlanInput,
  type LimitSpec,
} from "../../shared/rate-limit.ts";

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

describe("standing shares: leases that span windows", () => {
  const spec: LimitSpec = { algorithm: "fixed-window", limit: 1_000, periodSeconds: 10 };
  const t0 = 1_000_000_000_000; // on a window boundary

  it("reserves a share in the next windows, where it counts before anyone spends it: the limit holds in every window", () => {
    const first = grant(spec, initialState(spec, t0), 10, t0 + 2_000);
    const ahead = grantAhead(spec, first.state, { perWindow: 40, windows: 3, last: 15 });
    expect(ahead).toMatchObject({ kind: "reserved", grant: { perWindow: 40, windows: 3, last: 15 } });
    if (ahead.kind !== "reserved") return;
    expect(ahead.state.ahead).toEqual([40, 40, 15]);
    // The next window opens with the share counted: others get the limit minus it, not more.
    const next = drain(spec, ahead.state, 7, 1_000, t0 + 10_000);
    expect(next.total).toBe(1_000 - 40);
    expect(next.state.used).toBe(1_000);
    // Two windows on (none asked in between), the last window's smaller share is what counts.
    expect(drain(spec, ahead.state, 1, 2_000, t0 + 30_000).total).toBe(1_000 - 15);
  });

  it("keeps what all shares reserve in one window within half the limit, shortening a share that does not fit", () => {
    let state = grant(spec, initialState(spec, t0), 1, t0).state;
    let reserved = 0;
    for (let isolate = 0; isolate < 40; isolate++) {
      const ahead = grantAhead(spec, state, { perWindow: 50, windows: 2, last: 50 });
      if (ahead.kind === "reserved") {
        state = ahead.state;
        reserved += ahead.grant.perWindow;
      }
    }
    expect(reserved).toBe(1_000 * AHEAD_MAX_SHARE);
    expect(Math.max(...(state.ahead ?? []))).toBeLessThanOrEqual(1_000 * AHEAD_MAX_SHARE);
    // A share that fits only in its first window is cut to it (its last window then holds perWindow).
    const room = { ...state, ahead: [400, 500] };
    expect(grantAhead(spec, room, { perWindow: 50, windows: 2, last: 20 })).toMatchObject({ kind: "reserved", grant: { windows: 1, last: 50 } });
  });

  it("bounds what a proxy may ask: per window, windows, and nothing for token buckets or malformed asks", () => {
    const state = initialState(spec, t0);
    const big = grantAhead(spec, state, { perWindow: 10_000, windows: 10_000, last: 10_000 });
    expect(big).toMatchObject({ kind: "reserved", grant: { perWindow: leaseCap(spec), windows: maxAheadWindows(spec) } });
    expect(maxAheadWindows(spec)).toBe(MAX_AHEAD_MS / 10_000);
    // A window longer than MAX_AHEAD_MS gets no shares: its isolates lease once per window.
    expect(maxAheadWindows({ algorithm: "fixed-window", limit: 1_000, periodSeconds: 3_600 })).toBe(0);
    expect(grantAhead({ algorithm: "fixed-window", limit: 1_000, periodSeconds: 3_600 }, state, { perWindow: 5, windows: 1, last: 5 })).toEqual({ kind: "none" });
    const bucket: LimitSpec = { algorithm: "token-bucket", limit: 1_000, periodSeconds: 10 };
    expect(grantAhead(bucket, initialState(bucket, t0), { perWindow: 5, windows: 2, last: 5 })).toEqual({ kind: "none" });
    for (const bad of [{ perWindow: Number.NaN, windows: 2, last: 1 }, { perWindow: 5, windows: 0, last: 5 }, { perWindow: 5, windows: 2, last: -1 }]) {
      expect(grantAhead(spec, state, bad)).toEqual({ kind: "none" });
    }
  });

  it("counts a sliding window's shares like any grant, in their own window and then by their overlap", () => {
    const sliding: LimitSpec = { algorithm: "sliding-window", limit: 100, periodSeconds: 10 };
    const ahead = grantAhead(sliding, grant(sliding, initialState(sliding, t0), 0, t0).state, { perWindow: 5, windows: 2, last: 5 });
    if (ahead.kind !== "reserved") throw new Error("expected a share");
    // The first reserved window opens with its 5 counted: 95 more fit.
    expect(drain(sliding, ahead.state, 1, 200, t0 + 10_000).total).toBe(95);
    // The second opens with its own 5 counted, and a quarter in, 75% of the full previous window too.
    const full = drain(sliding, ahead.state, 1, 200, t0 + 10_000).state;
    expect(drain(sliding, full, 1, 200, t0 + 12_500 + 10_000).total).toBe(100 - 75 - 5);
  });

  it("keeps a counter with shares alive until its last reserved window ends, and a skipped window's share is not carried on", () => {
    const ahead = grantAhead(spec, grant(spec, initialState(spec, t0), 1, t0).state, { perWindow: 5, windows: 3, last: 5 });
    if (ahead.kind !== "reserved") throw new Error("expected a share");
    expect(expiresAt(spec, ahead.state)).toBe(t0 + 40_000);
    const later = grant(spec, ahead.state, 0, t0 + 20_000);
    expect(later.state).toMatchObject({ at: t0 + 20_000, used: 5, previous: 5, ahead: [5] });
  });
});

describe("leaseTarget: the lease size a window counter suggests", () => {
  const spec: LimitSpec = { algorithm: "fixed-window", limit: 100_000, periodSeconds: 10 };
  const t0 = 1_000_000_000_000;

  it("is the key's rate over the previous window divided by the call budget", () => {
    const state: CounterState = { at: t0 + 10_000, used: 0, previous: 2_500, since: t0 };
    expect(leaseTarget(spec, state, t0 + 12_000, 100_000)).toBe(Math.ceil(250 / WINDOW_LEASE_BUDGET));
    // The counter started halfway through the previous window: its count covers 5 s, not 10.
    expect(leaseTarget(spec, { ...state, since: t0 + 5_000 }, t0 + 12_000, 100_000)).toBe(Math.ceil(500 / WINDOW_LEASE_BUDGET));
  });

  it("in a counter's first window, counts this window's shares only for the part of it that has elapsed", () => {
    // 2 s into a window that opened with 800 reserved tokens and 100 leased since.
    const state: CounterState = { at: t0, used: 900, previous: 0, base: 800 };
    expect(leaseTarget(spec, state, t0 + 2_000, 100_000)).toBe(Math.ceil((100 + 800 * 0.2) / 2 / WINDOW_LEASE_BUDGET));
  });

  it("gives none near the limit or for a token bucket, and never more than a lease's cap", () => {
    const state: CounterState = { at: t0 + 10_000, used: 0, previous: 90_000 };
    expect(leaseTarget(spec, state, t0 + 12_000, 100_000 * AHEAD_MAX_SHARE - 1)).toBeUndefined();
    expect(leaseTarget(spec, state, t0 + 12_000, 100_000)).toBe(leaseCap(spec));
    expect(leaseTarget({ algorithm: "token-bucket", limit: 100, periodSeconds: 1 }, state, t0, 100)).toBeUndefined();
  });
});

describe("planLease: an isolate's next lease", () => {
  const spec: LimitSpec = { algorithm: "fixed-window", limit: 1_000_000, periodSeconds: 20 };
  const t0 = 1_000_000_000_000; // on a window boundary
  const base: LeasePlanInput = { spec, now: t0 + 5_000, doubling: 4, waiting: 1, ratePerMs: 0.001, target: 0, shareAhead: false, jitter: 1 };

  it("doubles without a target, a known rate, or while a share already covers the next window (a burst's top-up)", () => {
    expect(planLease(base)).toEqual({ kind: "window", want: 4 });
    expect(planLease({ ...base, target: 25, ratePerMs: 0 })).toEqual({ kind: "window", want: 4 });
    expect(planLease({ ...base, target: 25, shareAhead: true })).toEqual({ kind: "window", want: 4 });
  });

  it("asks for the target when it lasts within this window (no doubling past it), and for those waiting if more", () => {
    // 5 requests/s: 25 tokens last 5 s, the window has 15 s left.
    expect(planLease({ ...base, ratePerMs: 0.005, target: 25, doubling: 64 })).toEqual({ kind: "window", want: 25 });
    expect(planLease({ ...base, ratePerMs: 0.005, target: 25, waiting: 40 })).toEqual({ kind: "window", want: 40 });
  });

  it("leases a key with little traffic at least MIN_TARGET_LEASE tokens, so its requests do not each wait on the counter", () => {
    // 2 requests/s, and a key so quiet that its target is 1 token.
    expect(planLease({ ...base, ratePerMs: 0.002, target: 1 })).toEqual({ kind: "window", want: MIN_TARGET_LEASE });
    // Never past the lease cap of a small limit.
    expect(planLease({ ...base, spec: { ...spec, limit: 60 }, ratePerMs: 0.002, target: 1 })).toEqual({ kind: "window", want: 3 });
  });

  it("spreads a lease that outlasts the window over the next windows: this window's need now, a share of each next one", () => {
    // 1 request/s, target 50: 50 s of life from t0 + 5 s, ending 15 s into the third window after.
    const plan = planLease({ ...base, target: 50 });
    expect(plan).toEqual({ kind: "span", want: Math.ceil(15 * 1.25), ahead: { perWindow: 25, windows: 2, last: Math.ceil(15 * 1.25) } });
    // A long life stops at MAX_AHEAD_MS past the window.
    const long = planLease({ ...base, ratePerMs: 0.0001, target: 1_000 });
    expect(long.kind === "span" && long.ahead.windows).toBe(MAX_AHEAD_MS / 20_000);
  });

  it("jitters lease sizes narrowly and almost without bias once phased", () => {
    expect(leaseJitter(0)).toBeCloseTo(1 / LEASE_JITTER);
    expect(leaseJitter(1)).toBeCloseTo(LEASE_JITTER);
    let inverse = 0;
    for (let i = 0; i < 1_000; i++) inverse += 1 / leaseJitter((i + 0.5) / 1_000);
    expect(inverse / 1_000).toBeLessThan(1.01);
  });
});
