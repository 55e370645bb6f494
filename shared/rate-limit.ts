/**
 * Rate limiting: what a counter grants, and where a counter lives. A counter is one (scope, limit,
 * key) triple; its key is stored as a fixed-size digest of the outside value (a 600-character API key
 * costs what a 6-character one does), and the counters of one limit live in {@link RATE_SHARDS}
 * Durable Objects chosen by that digest, so the number of objects is bounded whatever the keys are.
 * Proxies lease small batches of tokens, so a request rarely waits on an object and the total
 * granted across every isolate never exceeds the limit (unused leased tokens can only make the limit
 * stricter, by at most one lease per isolate); see workers/proxy/rate-limit.ts for the one bounded
 * exception (a key new to an isolate).
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
  return state.at + (spec.algorithm === "sliding-window" ? 2 * period : period);
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
}

/** Most leases one batch call may ask for. */
export const MAX_LEASE_BATCH = 4_096;

/** A counter's stored state. */
export interface CounterState {
  /** Fixed/sliding window: start of the current window (ms). Token bucket: time of the last refill. */
  at: number;
  /** Fixed/sliding: requests granted in the current window. Token bucket: tokens left (fractional). */
  used: number;
  /** Sliding window: requests granted in the previous window. */
  previous: number;
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
}

/** A fresh counter. */
export function initialState(spec: LimitSpec, now: number): CounterState {
  return spec.algorithm === "token-bucket" ? { at: now, used: spec.burst ?? spec.limit, previous: 0 } : { at: windowStart(spec, now), used: 0, previous: 0 };
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
  const start = windowStart(spec, now);
  if (start !== at) {
    previous = start - at === period ? used : 0;
    used = 0;
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
  return { granted, validUntil: end, retryAt: granted > 0 ? now : retryAt, remaining: available - granted, state: { at, used: used + granted, previous } };
}

/** How many tokens a proxy isolate asks for next: doubling while it keeps needing more, capped so few tokens are ever stranded. */
export function nextLeaseSize(previous: number, spec: LimitSpec): number {
  const cap = Math.max(1, Math.floor(spec.limit / 20));
  return Math.min(cap, Math.max(1, previous * 2));
}

/** `RateLimit-Policy` value (IETF httpapi ratelimit-headers draft): `"name";q=50;w=10`. */
export function policyHeader(name: string, spec: LimitSpec): string {
  return `"${name}";q=${spec.limit};w=${spec.periodSeconds}`;
}

/** `RateLimit` value: remaining quota and seconds until it resets, `"name";r=12;t=4`. */
export function rateLimitHeader(name: string, remaining: number, resetAt: number, now: number): string {
  return `"${name}";r=${Math.max(0, remaining)};t=${Math.max(0, Math.ceil((resetAt - now) / 1000))}`;
}
