/**
 * Rate limiting: what a counter grants, and where a counter lives. A counter is one (scope, limit,
 * key) triple; its key is stored as a fixed-size digest of the outside value (a 600-character API key
 * costs what a 6-character one does), and the counters of one limit live in {@link RATE_SHARDS}
 * Durable Objects chosen by that digest, so the number of objects is bounded whatever the keys are.
 * Proxies lease small batches of tokens, so a request rarely waits on an object and the total
 * granted across every isolate never exceeds the limit (unused leased tokens can only make the limit
 * stricter, by at most one lease per isolate); see workers/proxy/rate-limit.ts for the one bounded
 * exception (a key new to an isolate).
 *
 * Window limits also grant *standing shares* (`AheadAsk`/`grantAhead`): tokens of the next windows,
 * reserved for one isolate and charged to the window they are spent in, at the moment they are
 * granted. A counter tells its leasers a lease size in tokens (`leaseTarget`: its total rate over
 * {@link WINDOW_LEASE_BUDGET}), an isolate with a small share of the traffic leases that many tokens
 * spread over as many windows as they last at its own rate (`planLease`), so a key's lease calls are
 * about its total rate / lease size, whatever the number of isolates. Reserved tokens are counted in
 * their window before anyone spends them, so shares never let the mesh over the limit; unspent shares
 * can only make it stricter, by at most {@link AHEAD_MAX_SHARE} of the limit per window and for at
 * most {@link MAX_AHEAD_MS}.
 */
import { base64url, sha256 } from "./hash.ts";

/** Counter objects per limit (and per egress provider). Keys spread across them by digest. */
export const RATE_SHARDS = 32;

/** Characters of the key digest kept (22 base64url characters = 132 bits: collisions are not a concern). */
const DIGEST_CHARS = 22;

/** A counter's name: `scope/limit/digest`, where scope is the service (or `egress`) and digest hashes the key value. */
export function counterName(scope: string, limit: string, keyValue: string): string {
  return `${scope}/${limit}/${base64url(sha256(keyValue)).slice(0, DIGEST_CHARS)}`;
}

const COUNTER_NAME = /^([a-z0-9][a-z0-9-]{0,62})\/([a-z0-9][a-z0-9-]{0,62})\/([A-Za-z0-9_-]{22})$/;

/** The shard object that holds `counter` (`scope/limit/#n`), or undefined when the name is not one {@link counterName} makes. */
export function shardOf(counter: string): string | undefined {
  const match = COUNTER_NAME.exec(counter);
  if (!match) return undefined;
  const [, scope, limit, digest = ""] = match;
  // The digest's first two characters carry 12 uniformly distributed bits.
  const bits = (BASE64URL_INDEX.indexOf(digest[0] ?? "A") << 6) | BASE64URL_INDEX.indexOf(digest[1] ?? "A");
  return `${scope}/${limit}/#${bits % RATE_SHARDS}`;
}

const BASE64URL_INDEX = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * When a counter's state stops mattering (ms): a fresh counter from then on grants exactly what this
 * one would. Fixed window: the window's end; sliding window: one period later (the previous window
 * still counts until then); token bucket: when the bucket is full again.
 */
export function expiresAt(spec: LimitSpec, state: CounterState): number {
  const period = spec.periodSeconds * 1000;
  if (spec.algorithm === "token-bucket") {
    const burst = spec.burst ?? spec.limit;
    return state.at + Math.ceil(Math.max(0, burst - state.used) / (spec.limit / period));
  }
  // Windows reserved ahead (standing shares) keep the counter alive until the last of them ends.
  const reserved = (state.ahead?.length ?? 0) * period;
  return state.at + reserved + (spec.algorithm === "sliding-window" ? 2 * period : period);
}

/** One limit as configured: how many requests per period (or a token bucket's rate and burst). */
export interface LimitSpec {
  algorithm: "fixed-window" | "sliding-window" | "token-bucket";
  limit: number;
  periodSeconds: number;
  /** Token bucket only: bucket size; defaults to `limit`. */
  burst?: number;
}

/** One lease asked of a counter: its name (`counterName`), its spec and how many tokens. */
export interface LeaseAsk {
  counter: string;
  spec: LimitSpec;
  want: number;
  /** Window limits: a standing share of the next windows asked along with the tokens (see {@link planLease}). */
  ahead?: AheadAsk;
}

/** Most leases one batch call may ask for. */
export const MAX_LEASE_BATCH = 4_096;

/** A counter's stored state. */
export interface CounterState {
  /** Fixed/sliding window: start of the current window (ms). Token bucket: time of the last refill. */
  at: number;
  /** Fixed/sliding: requests granted in the current window. Token bucket: tokens left (fractional). */
  used: number;
  /** Sliding window: requests granted in the previous window (fixed window: kept to estimate the key's rate). */
  previous: number;
  /**
   * Window limits: tokens already reserved (standing shares) in each of the next windows, the
   * window after `at` first. At most {@link MAX_AHEAD_WINDOWS} long; absent when none.
   */
  ahead?: number[];
  /** Window limits: when this counter started counting, while that is within the previous or current window (for its rate). */
  since?: number;
  /** Window limits: how much of `used` was reserved ahead (standing shares) before the window began (for its rate). */
  base?: number;
}

/** What a lease request gets. */
export interface Grant {
  granted: number;
  /** Until when the granted tokens may be spent (ms). */
  validUntil: number;
  /** When asking again may succeed, if nothing was granted (ms). */
  retryAt: number;
  /** Tokens still available after this grant (for RateLimit headers). */
  remaining: number;
  state: CounterState;
  /**
   * Set by the counter when many isolates lease it: size the next lease to last about this long at
   * the isolate's own rate (ms), so the counter's calls do not grow with the isolates
   * (durable-objects/pacing.ts `leaseHorizon`). Absent: the usual doubling sizes.
   */
  horizonMs?: number;
  /**
   * Window limits, while the key is far from its limit: lease about this many tokens at a time
   * ({@link leaseTarget}), spreading them over the next windows when they outlast this one.
   */
  target?: number;
  /** The standing share granted with this lease, if one was asked and fits ({@link grantAhead}). */
  ahead?: AheadGrant;
}

/** A fresh counter. */
export function initialState(spec: LimitSpec, now: number): CounterState {
  return spec.algorithm === "token-bucket" ? { at: now, used: spec.burst ?? spec.limit, previous: 0 } : { at: windowStart(spec, now), used: 0, previous: 0, since: now };
}

function windowStart(spec: LimitSpec, now: number): number {
  const period = spec.periodSeconds * 1000;
  return Math.floor(now / period) * period;
}

/** Grants up to `want` tokens at `now` (pure: returns the next state). */
export function grant(spec: LimitSpec, state: CounterState, want: number, now: number): Grant {
  const period = spec.periodSeconds * 1000;
  if (spec.algorithm === "token-bucket") {
    const burst = spec.burst ?? spec.limit;
    const perMs = spec.limit / period;
    const tokens = Math.min(burst, state.used + Math.max(0, now - state.at) * perMs);
    const granted = Math.max(0, Math.min(want, Math.floor(tokens)));
    const left = tokens - granted;
    return {
      granted,
      // Leased tokens are spent at once or soon; a short validity keeps the bucket honest.
      validUntil: now + Math.min(period, 1_000),
      retryAt: granted > 0 ? now : now + Math.ceil((1 - (left % 1)) / perMs),
      remaining: Math.floor(left),
      state: { at: now, used: left, previous: 0 },
    };
  }
  let { at, used, previous } = state;
  let ahead = state.ahead ?? [];
  const start = windowStart(spec, now);
  if (start !== at) {
    // Skipped `windows` windows: the one now starting holds what was reserved for it ahead.
    const windows = Math.round((start - at) / period);
    previous = windows === 1 ? used : windows > 1 ? (ahead[windows - 2] ?? 0) : 0;
    used = windows >= 1 ? (ahead[windows - 1] ?? 0) : 0;
    ahead = windows >= 1 ? ahead.slice(windows) : [];
    at = start;
  }
  // Sliding window (as Cloudflare's): the previous window counts in proportion to its overlap.
  const carried = spec.algorithm === "sliding-window" ? previous * (1 - (now - at) / period) : 0;
  const available = Math.max(0, Math.floor(spec.limit - carried - used));
  const granted = Math.max(0, Math.min(want, available));
  const end = at + period;
  let retryAt = end;
  if (spec.algorithm === "sliding-window" && previous > 0 && granted === 0) {
    // The carried share shrinks over the window: one slot frees when it has shrunk by one request.
    const needed = carried + used + 1 - spec.limit;
    retryAt = Math.min(end, now + Math.ceil((needed / previous) * period));
  }
  // A start within the previous window still tells how long `previous` covers; older, it no longer matters.
  const since = state.since !== undefined && state.since > at - period ? state.since : undefined;
  const base = start !== state.at ? used : (state.base ?? 0);
  const next: CounterState = {
    at,
    used: used + granted,
    previous,
    ...(ahead.length > 0 ? { ahead } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(base > 0 ? { base } : {}),
  };
  return { granted, validUntil: end, retryAt: granted > 0 ? now : retryAt, remaining: available - granted, state: next };
}

/** The largest lease (and standing share per window) one isolate holds: 5% of the limit, so few tokens are ever stranded. */
export function leaseCap(spec: LimitSpec): number {
  return Math.max(1, Math.floor(spec.limit / 20));
}

/** How many tokens a proxy isolate asks for next: doubling while it keeps needing more, capped so few tokens are ever stranded. */
export function nextLeaseSize(previous: number, spec: LimitSpec): number {
  return Math.min(leaseCap(spec), Math.max(1, previous * 2));
}

// ---------------------------------------------------------------------------------------------
// Leases that span windows (window limits)

/**
 * Lease calls per second one window-limit key's counter aims at (a token bucket's counter paces by
 * durable-objects/pacing.ts `LEASE_CALL_BUDGET` instead). A lease of {@link leaseTarget} tokens lasts an
 * isolate (its share of the key's traffic) × (1 s / budget), so the key's calls stay near the budget
 * whatever the number of isolates that share its traffic.
 */
export const WINDOW_LEASE_BUDGET = 1;
/**
 * The smallest lease sized by a target: a key with little traffic would otherwise be leased a token
 * at a time, and each of its requests would wait on the counter (doubling reached this size within
 * four calls).
 */
export const MIN_TARGET_LEASE = 8;
/** Most of a limit that standing shares may reserve in any one future window (the rest is leased as it comes). */
export const AHEAD_MAX_SHARE = 0.5;
/** Most windows after the current one a standing share covers (bounds each counter row). */
export const MAX_AHEAD_WINDOWS = 64;
/** Longest a standing share reaches past the current window (ms): how long an unspent share may stay reserved. */
export const MAX_AHEAD_MS = 600_000;
/** Standing shares are sized at this much of the isolate's measured rate (unspent slack only makes the limit stricter). */
export const AHEAD_SLACK = 1.25;

/** A standing share an isolate asks for: `perWindow` tokens in each of the next `windows` windows, the last one `last`. */
export interface AheadAsk {
  perWindow: number;
  windows: number;
  last: number;
}

/** A standing share as granted: the windows after the current one it covers (≥ 1), `last` in the final one. */
export interface AheadGrant {
  perWindow: number;
  windows: number;
  last: number;
}

/** What {@link grantAhead} decides. */
export type AheadDecision =
  | { kind: "reserved"; grant: AheadGrant; state: CounterState }
  /** Nothing reserved: not a window limit, a malformed ask, or the next window's reserved share is full. */
  | { kind: "none" };

/** The most windows a standing share of `spec` may cover: {@link MAX_AHEAD_WINDOWS}, and none past {@link MAX_AHEAD_MS} (0 for windows longer than that). */
export function maxAheadWindows(spec: LimitSpec): number {
  if (spec.algorithm === "token-bucket") return 0;
  return Math.min(MAX_AHEAD_WINDOWS, Math.floor(MAX_AHEAD_MS / (spec.periodSeconds * 1000)));
}

/** The end of the window that holds `now` (ms); windows are aligned to multiples of the period, as the counter's. */
export function windowEnd(spec: LimitSpec, now: number): number {
  return windowStart(spec, now) + spec.periodSeconds * 1000;
}

/**
 * Reserves a standing share in the windows after `state.at` (pure; `state` is the one `grant`
 * returned at the same time). Each window's reservations stay within {@link AHEAD_MAX_SHARE} of the
 * limit; a share that does not fit in full is shortened to the windows where it does (its last
 * window then holds `perWindow`). The ask comes from a proxy, so it is bounded here: at most
 * {@link leaseCap} per window, {@link MAX_AHEAD_WINDOWS} windows and {@link MAX_AHEAD_MS}.
 */
export function grantAhead(spec: LimitSpec, state: CounterState, ask: AheadAsk): AheadDecision {
  const perWindow = Math.min(leaseCap(spec), Math.floor(ask.perWindow));
  const windows = Math.min(maxAheadWindows(spec), Math.floor(ask.windows));
  const last = Math.min(perWindow, Math.floor(ask.last));
  if (!(perWindow >= 1) || !(windows >= 1) || !(last >= 1)) return { kind: "none" };
  const room = Math.floor(spec.limit * AHEAD_MAX_SHARE);
  const ahead = [...(state.ahead ?? [])];
  let granted = 0;
  let lastGranted = 0;
  for (let w = 0; w < windows; w++) {
    const amount = w === windows - 1 ? last : perWindow;
    if ((ahead[w] ?? 0) + amount > room) break;
    ahead[w] = (ahead[w] ?? 0) + amount;
    granted++;
    lastGranted = amount;
  }
  if (granted === 0) return { kind: "none" };
  return { kind: "reserved", grant: { perWindow, windows: granted, last: lastGranted }, state: { ...state, ahead } };
}

/**
 * The lease size a window counter suggests (pure): its key's rate divided by
 * {@link WINDOW_LEASE_BUDGET}, capped at {@link leaseCap}. The rate is the previous window's count
 * over the time it covered (from when this counter started, if later) — a whole window, so leases
 * granted ahead of spending weigh little — or, in a counter's first window, the count so far with
 * this window's standing shares taken only for the part of it that has elapsed. Undefined for a
 * token bucket, and when less than half the limit is left (near the limit, leases stay small and
 * nothing is reserved ahead: tokens held there would refuse other isolates' requests).
 */
export function leaseTarget(spec: LimitSpec, state: CounterState, now: number, remaining: number, budgetPerSec = WINDOW_LEASE_BUDGET): number | undefined {
  if (spec.algorithm === "token-bucket" || remaining < spec.limit * AHEAD_MAX_SHARE) return undefined;
  const period = spec.periodSeconds * 1000;
  let perSec: number;
  if (state.previous > 0) {
    perSec = (state.previous * 1000) / Math.max(1_000, state.at - Math.max(state.at - period, state.since ?? 0));
  } else {
    const elapsed = Math.min(1, Math.max(0, (now - state.at) / period));
    const counted = state.used - (state.base ?? 0) * (1 - elapsed);
    perSec = (Math.max(0, counted) * 1000) / Math.max(1_000, now - Math.max(state.at, state.since ?? 0));
  }
  return Math.min(leaseCap(spec), Math.max(1, Math.ceil(perSec / Math.max(0.01, budgetPerSec))));
}

/** Whether {@link planLease} sizes a lease by the counter's target (else by doubling). */
export function sizedByTarget(spec: LimitSpec, target: number, ratePerMs: number): boolean {
  return spec.algorithm !== "token-bucket" && target > 0 && ratePerMs > 0;
}

/** What an isolate's next lease call asks for. */
export type LeasePlan =
  /** Tokens for the current window only. */
  | { kind: "window"; want: number }
  /** Tokens for the rest of the current window and a standing share of the next ones. */
  | { kind: "span"; want: number; ahead: AheadAsk };

/** What {@link planLease} needs to know (one object: the isolate's view of one counter). */
export interface LeasePlanInput {
  spec: LimitSpec;
  now: number;
  /** The isolate's own doubling size (`nextLeaseSize`, or as many as requests wait): its lease without a target. */
  doubling: number;
  /** Requests waiting for this lease: with a target, a lease is at least that many tokens. */
  waiting: number;
  /** The isolate's measured rate of this key (tokens per ms; 0 when unknown). */
  ratePerMs: number;
  /** The counter's suggested lease size ({@link leaseTarget}; 0 when it gave none). */
  target: number;
  /** Whether a standing share already covers the window after this one (then only this window is topped up). */
  shareAhead: boolean;
  /**
   * What the target is multiplied by, in (0, {@link LEASE_JITTER}], so isolates' renewals do not all fall in the same
   * second: uniform in (0, 1] for an isolate's first lease sized by a target (a random phase: isolates
   * that learn a target together then renew spread over a lease's life), {@link leaseJitter} after.
   */
  jitter: number;
}

/** Widest factor {@link leaseJitter} gives (and its inverse the narrowest). */
export const LEASE_JITTER = 1.2;

/**
 * The factor a lease's size is multiplied by once its isolate's renewals have a random phase, from a
 * uniform `u` in [0, 1): log-uniform in [1/{@link LEASE_JITTER}, {@link LEASE_JITTER}], enough that
 * isolates with the same rate do not drift into step, while the mean number of calls (the mean of
 * 1/factor) grows by under 1% and the calls in any stretch of time stay close to their mean.
 */
export function leaseJitter(u: number): number {
  return Math.exp((2 * Math.min(1, Math.max(0, u)) - 1) * Math.log(LEASE_JITTER));
}

/**
 * An isolate's next lease (pure): the doubling size without a target or a known rate; else about
 * `target` tokens (jittered), which at the isolate's own rate may outlast the window: then the rest
 * of this window's need plus a standing share of the next windows (its rate × window × slack each,
 * the last window only what remains of the lease's life), so the isolate comes back once per
 * target / rate, not once per window. With a target an isolate no longer doubles past it: tokens
 * held beyond it would only be stranded at the window's end, making the limit stricter.
 */
export function planLease(input: LeasePlanInput): LeasePlan {
  const { spec, now, doubling, ratePerMs, target } = input;
  if (!sizedByTarget(spec, target, ratePerMs) || input.shareAhead) return { kind: "window", want: doubling };
  const cap = leaseCap(spec);
  const size = Math.min(cap, Math.max(MIN_TARGET_LEASE, Math.ceil(target * Math.min(LEASE_JITTER, Math.max(0.01, input.jitter)))));
  const end = windowEnd(spec, now);
  const lifeEnd = Math.min(now + size / ratePerMs, end + MAX_AHEAD_MS);
  const floor = Math.min(cap, Math.max(1, input.waiting));
  if (lifeEnd <= end) return { kind: "window", want: Math.max(floor, size) };
  const period = spec.periodSeconds * 1000;
  const windows = Math.min(maxAheadWindows(spec), Math.ceil((lifeEnd - end) / period));
  if (windows < 1) return { kind: "window", want: Math.max(floor, size) };
  const perWindow = Math.min(cap, Math.max(1, Math.ceil(ratePerMs * period * AHEAD_SLACK)));
  const lastStart = end + (windows - 1) * period;
  const last = Math.min(perWindow, Math.max(1, Math.ceil(ratePerMs * (lifeEnd - lastStart) * AHEAD_SLACK)));
  const thisWindow = Math.min(cap, Math.max(1, Math.ceil(ratePerMs * (end - now) * AHEAD_SLACK)));
  return { kind: "span", want: Math.max(floor, thisWindow), ahead: { perWindow, windows, last } };
}

/** A lease as plain data (what crosses the RPC boundary): the fields of `Grant` without its state, none dropped. */
export function plainLease(lease: Omit<Grant, "state">): Omit<Grant, "state"> {
  return {
    granted: lease.granted,
    validUntil: lease.validUntil,
    retryAt: lease.retryAt,
    remaining: lease.remaining,
    ...(lease.horizonMs ? { horizonMs: lease.horizonMs } : {}),
    ...(lease.target ? { target: lease.target } : {}),
    ...(lease.ahead ? { ahead: { perWindow: lease.ahead.perWindow, windows: lease.ahead.windows, last: lease.ahead.last } } : {}),
  };
}

/** `RateLimit-Policy` value (IETF httpapi ratelimit-headers draft): `"name";q=50;w=10`. */
export function policyHeader(name: string, spec: LimitSpec): string {
  return `"${name}";q=${spec.limit};w=${spec.periodSeconds}`;
}

/** `RateLimit` value: remaining quota and seconds until it resets, `"name";r=12;t=4`. */
export function rateLimitHeader(name: string, remaining: number, resetAt: number, now: number): string {
  return `"${name}";r=${Math.max(0, remaining)};t=${Math.max(0, Math.ceil((resetAt - now) / 1000))}`;
}
