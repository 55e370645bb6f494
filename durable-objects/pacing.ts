/**
 * Pacing of telemetry writers: a TelemetryStore tells each proxy isolate, in every reply, how long
 * to gather before its next batch, so the store's writes per second stay near a fixed budget
 * whatever the number of isolates. Counts are never dropped or sampled: a slower pace only makes
 * each batch cover a longer time, so the totals rollouts judge on stay exact and arrive later.
 */

/** Batches per second one TelemetryStore aims at. */
export const TELEMETRY_WRITE_BUDGET = 8;
/** The fastest pace: one batch a second per isolate (the pace before pacing existed). */
export const MIN_FLUSH_MS = 1_000;
/**
 * The slowest pace, and so the longest delay pacing adds before counts reach `/admin/metrics` and
 * rollout decisions. Past {@link TELEMETRY_WRITE_BUDGET} × 10 = 80 isolates the store's load grows
 * again, as isolates / 10 per second (100/s at 1,000 isolates), rather than delaying counts further.
 */
export const MAX_FLUSH_MS = 10_000;
/** How long a writer counts as active after its last batch: two slowest periods, so none is missed between batches. */
export const WRITER_MEMORY_MS = 2 * MAX_FLUSH_MS + 5_000;
/** Writers remembered at most (ids come from proxies: memory keyed by them is bounded). */
export const MAX_WRITERS = 10_000;
const WRITER_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The pace a store hands its writers. */
export type FlushPace =
  /** Someone is tapping the service: every second, so the tap stays live. */
  | { kind: "live"; afterMs: number }
  /** Spread so that `writers` isolates together send about the budget. */
  | { kind: "paced"; afterMs: number; writers: number };

/** How long each of `writers` active isolates should gather before its next batch (pure). */
export function flushPace(writers: number, tapping: boolean, budgetPerSec = TELEMETRY_WRITE_BUDGET): FlushPace {
  if (tapping) return { kind: "live", afterMs: MIN_FLUSH_MS };
  const spread = Math.ceil((Math.max(1, writers) * 1000) / Math.max(0.1, budgetPerSec));
  return { kind: "paced", afterMs: Math.min(MAX_FLUSH_MS, Math.max(MIN_FLUSH_MS, spread)), writers };
}

/**
 * The writers a store has heard from recently: a map from writer id to when it last wrote, kept
 * oldest first (a write moves its writer to the end), so expired writers are dropped from the front.
 */
export class RecentWriters {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly memoryMs = WRITER_MEMORY_MS,
    private readonly maxWriters = MAX_WRITERS,
  ) {}

  /** Notes a write by `writer` at `now` (ids that are not plausible writer ids are ignored). */
  touch(writer: string | undefined, now: number): void {
    if (writer === undefined || !WRITER_ID.test(writer)) return;
    this.seen.delete(writer);
    this.seen.set(writer, now);
    if (this.seen.size > this.maxWriters) {
      const oldest = this.seen.keys().next();
      if (!oldest.done) this.seen.delete(oldest.value);
    }
  }

  /** Writers that wrote within the memory before `now`. */
  active(now: number): number {
    for (const [writer, at] of this.seen) {
      if (at > now - this.memoryMs) break;
      this.seen.delete(writer);
    }
    return this.seen.size;
  }
}

/**
 * Lease calls per second one token-bucket counter (one key) aims at. Each isolate that serves a key
 * leases its tokens; with small leases a counter's calls grow with the isolates, so the counter
 * tells its leasers a horizon: lease enough for that long at your own rate. Past the budget the
 * horizon grows, so the calls per counter stay near it whatever the number of isolates. (Window
 * limits size leases in tokens and grant standing shares of their next windows instead:
 * shared/rate-limit.ts `leaseTarget`, `planLease`, `WINDOW_LEASE_BUDGET`.)
 */
export const LEASE_CALL_BUDGET = 1;
/** The longest horizon (token buckets): at most this much of an isolate's own traffic is leased ahead. */
export const MAX_LEASE_HORIZON_MS = 60_000;
/** The horizon is re-decided after this long of calls. */
export const LEASE_PACE_WINDOW_MS = 5_000;
/**
 * Below this share of the limit left, no horizon: near the limit, leased tokens an isolate does not
 * spend would refuse other isolates' requests, so leases stay small (doubling) as before.
 */
export const HORIZON_MIN_HEADROOM = 0.5;

/** What a horizon is multiplied by after a pace window with few calls. */
export const HORIZON_SHRINK = 0.8;

/** How a counter's leasers size their next lease. */
export type LeaseHorizon =
  /** Near the limit, or few calls: the isolate's own doubling sizes. */
  | { kind: "doubling" }
  /** Lease about `ms` of the isolate's own rate. */
  | { kind: "horizon"; ms: number };

/**
 * The next horizon of a counter (pure): from its lease calls per second over the last pace window,
 * its current horizon (0: none) and the share of its limit left. It grows in one step to what the
 * calls ask for and shrinks by a fifth per quiet window, so it settles within a few windows and
 * survives the quiet between two window boundaries.
 */
export function leaseHorizon(callsPerSec: number, currentMs: number, headroom: number, budgetPerSec = LEASE_CALL_BUDGET): LeaseHorizon {
  if (headroom < HORIZON_MIN_HEADROOM) return { kind: "doubling" };
  const base = Math.max(currentMs, 1_000);
  if (callsPerSec > budgetPerSec) {
    return { kind: "horizon", ms: Math.min(MAX_LEASE_HORIZON_MS, Math.round((base * callsPerSec) / budgetPerSec)) };
  }
  if (currentMs === 0) return { kind: "doubling" };
  // Well under budget: shrink slowly (calls come in bursts at window boundaries, when every isolate
  // leases again, and are rare in between: halving would undo the horizon between two bursts).
  if (callsPerSec < budgetPerSec / 2) {
    const shrunk = Math.round(currentMs * HORIZON_SHRINK);
    return shrunk < 1_000 ? { kind: "doubling" } : { kind: "horizon", ms: shrunk };
  }
  return { kind: "horizon", ms: currentMs };
}
