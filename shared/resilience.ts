/**
 * Resilience policies: which requests may be retried, how many retries a backend can take, when a
 * backend is ejected (circuit breaking), where its shoppers go meanwhile, how long to wait before a
 * retry, and fault injection for testing all of the above.
 *
 * Everything here is pure: time comes in as `now` (ms) and randomness as a number in [0, 1), so the
 * proxy owns the clock and the dice and tests can replay any scenario on a virtual clock.
 */
import { hash32 } from "./split.ts";

// ---------------------------------------------------------------------------------------------
// Retry safety
// ---------------------------------------------------------------------------------------------

/** Idempotent methods (RFC 9110 §9.2.2) that the mesh re-sends without asking; TRACE is never proxied. */
const RETRY_SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** HTTP methods that may be re-sent; any other request only with an Idempotency-Key the backend honours. */
export function isRetrySafe(method: string, hasIdempotencyKey: boolean): boolean {
  // fetch() upper-cases these methods case-insensitively too, so "get" and "GET" are the same request.
  return hasIdempotencyKey || RETRY_SAFE_METHODS.has(method.toUpperCase());
}

// ---------------------------------------------------------------------------------------------
// Sliding window counter (shared by the retry budget and outlier detection)
// ---------------------------------------------------------------------------------------------

/**
 * Two counters over a sliding window made of `buckets` buckets of `widthMs` each. Memory is fixed
 * whatever the request rate, at the price of the window edge moving in bucket-sized steps.
 */
class SlidingCounter {
  private readonly stamps: number[];
  private readonly first: number[];
  private readonly second: number[];
  // Workers' clocks only advance across I/O and callers may pass slightly stale times; clamping to the
  // latest period seen keeps an old timestamp from wiping a current bucket.
  private latest = Number.NEGATIVE_INFINITY;

  private readonly buckets: number;
  private readonly widthMs: number;

  constructor(buckets: number, widthMs: number) {
    this.buckets = buckets;
    this.widthMs = widthMs;
    this.stamps = new Array<number>(buckets).fill(Number.NEGATIVE_INFINITY);
    this.first = new Array<number>(buckets).fill(0);
    this.second = new Array<number>(buckets).fill(0);
  }

  private period(now: number): number {
    this.latest = Math.max(this.latest, Math.floor(now / this.widthMs));
    return this.latest;
  }

  add(now: number, first: number, second: number): void {
    const period = this.period(now);
    const index = ((period % this.buckets) + this.buckets) % this.buckets;
    if (this.stamps[index] !== period) {
      this.stamps[index] = period;
      this.first[index] = 0;
      this.second[index] = 0;
    }
    this.first[index] = (this.first[index] ?? 0) + first;
    this.second[index] = (this.second[index] ?? 0) + second;
  }

  sum(now: number): { first: number; second: number } {
    const period = this.period(now);
    let first = 0;
    let second = 0;
    for (let i = 0; i < this.buckets; i++) {
      const stamp = this.stamps[i] ?? Number.NEGATIVE_INFINITY;
      if (stamp > period - this.buckets && stamp <= period) {
        first += this.first[i] ?? 0;
        second += this.second[i] ?? 0;
      }
    }
    return { first, second };
  }

  reset(): void {
    this.stamps.fill(Number.NEGATIVE_INFINITY);
    this.first.fill(0);
    this.second.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Retry budget
// ---------------------------------------------------------------------------------------------

/** Linkerd-style retry budget: retries may add at most `ratio` of live requests plus `minPerSecond` per second, over a sliding window. */
export interface RetryBudgetSettings {
  ratio: number;
  minPerSecond: number;
  windowSeconds: number;
}

/** Linkerd's defaults: 20% extra load, plus 10 retries/s so a quiet service can still retry. */
export const DEFAULT_RETRY_BUDGET: RetryBudgetSettings = { ratio: 0.2, minPerSecond: 10, windowSeconds: 10 };

/**
 * Caps retries relative to live traffic, so a failing backend sees at most (1 + ratio)× its load plus
 * a small floor instead of a retry storm. Window: one bucket per second over `windowSeconds`;
 * allowed = ratio × requests in window + minPerSecond × windowSeconds.
 */
export class RetryBudget {
  private readonly settings: RetryBudgetSettings;
  private readonly window: SlidingCounter;

  constructor(settings: RetryBudgetSettings = DEFAULT_RETRY_BUDGET) {
    const windowSeconds = Math.max(1, Math.floor(settings.windowSeconds));
    this.settings = { ratio: Math.max(0, settings.ratio), minPerSecond: Math.max(0, settings.minPerSecond), windowSeconds };
    this.window = new SlidingCounter(windowSeconds, 1_000);
  }

  /** Counts one original (non-retry) request. */
  recordRequest(now: number): void {
    this.window.add(now, 1, 0);
  }

  /** Takes one retry from the budget if there is room; false means "do not retry". */
  tryRetry(now: number): boolean {
    const { retries, allowed } = this.snapshot(now);
    if (retries >= allowed) return false;
    this.window.add(now, 0, 1);
    return true;
  }

  /** For metrics/tests. */
  snapshot(now: number): { requests: number; retries: number; allowed: number } {
    const { first: requests, second: retries } = this.window.sum(now);
    const { ratio, minPerSecond, windowSeconds } = this.settings;
    return { requests, retries, allowed: ratio * requests + minPerSecond * windowSeconds };
  }
}

// ---------------------------------------------------------------------------------------------
// Outlier detection
// ---------------------------------------------------------------------------------------------

/** Outlier detection / circuit breaking for one backend, Envoy-style. */
export interface OutlierSettings {
  /** Failures in a row that eject (default 5). */
  consecutiveFailures: number;
  /** Failure percentage within the window that ejects (default 50). */
  errorRatePercent: number;
  /** Attempts the window must hold before the error-rate rule applies (default 10). */
  minRequests: number;
  /** Error-rate window (default 10 000 ms). */
  windowMs: number;
  /** First ejection's length; doubles per consecutive ejection (default 5 000 ms). */
  baseEjectionMs: number;
  /** Longest ejection (default 300 000 ms). */
  maxEjectionMs: number;
  /**
   * Relative rule (Envoy's success-rate ejection, for services with few backends): a backend with at
   * least `relativeMinRequests` attempts in the window whose error rate is at least
   * `relativeErrorRatePercent` and at least `relativeMarginPercent` points above its peers' is
   * ejected. A backend failing a third of its requests next to healthy ones is an outlier even though
   * it never fails five times in a row; one failing like its peers (a shared dependency down) is not,
   * since moving its traffic would not help.
   */
  relativeMinRequests: number;
  relativeErrorRatePercent: number;
  relativeMarginPercent: number;
}

/** Envoy's defaults for consecutive-5xx and failure-percentage detection. */
export const DEFAULT_OUTLIER: OutlierSettings = {
  consecutiveFailures: 5,
  errorRatePercent: 50,
  minRequests: 10,
  windowMs: 10_000,
  baseEjectionMs: 5_000,
  maxEjectionMs: 300_000,
  relativeMinRequests: 20,
  relativeErrorRatePercent: 20,
  relativeMarginPercent: 15,
};

/** Attempts and failures of one backend within the outlier window. */
export interface WindowStats {
  attempts: number;
  failures: number;
}

/**
 * Is `backend` an outlier among its peers (the service's other backends, pooled)? Pure: see
 * {@link OutlierSettings.relativeMinRequests} for the rule. False without peer traffic to compare.
 */
export function isRelativeOutlier(backend: WindowStats, peers: WindowStats, settings: OutlierSettings = DEFAULT_OUTLIER): boolean {
  if (backend.attempts < settings.relativeMinRequests || peers.attempts === 0) return false;
  const rate = (backend.failures * 100) / backend.attempts;
  const peerRate = (peers.failures * 100) / peers.attempts;
  return rate >= settings.relativeErrorRatePercent && rate - peerRate >= settings.relativeMarginPercent;
}

/** A backend's health as outlier detection sees it; `ejections` counts consecutive ejections. */
export type BackendHealth =
  | { state: "healthy" }
  | { state: "ejected"; until: number; ejections: number }
  | { state: "probing"; ejections: number };

/** Error-rate window resolution: the window slides in tenths. */
const OUTLIER_BUCKETS = 10;

/** Outlier detection for one backend: ejects on consecutive failures or a high error rate, then probes (half-open). */
export class OutlierDetector {
  private readonly settings: OutlierSettings;
  private readonly window: SlidingCounter;
  private consecutive = 0;
  private ejections = 0;
  private until: number | undefined;
  private probing = false;

  constructor(settings: OutlierSettings = DEFAULT_OUTLIER) {
    this.settings = settings;
    this.window = new SlidingCounter(OUTLIER_BUCKETS, Math.max(1, settings.windowMs / OUTLIER_BUCKETS));
  }

  /** Records the outcome of one attempt (success = the backend answered with a non-retryable result). Returns the new health. */
  record(success: boolean, now: number): BackendHealth {
    const current = this.health(now);
    // Answers to requests sent before the ejection say nothing new: the backend is already out.
    if (current.state === "ejected") return current;
    if (current.state === "probing") {
      if (success) {
        this.probing = false;
        this.ejections = 0;
        return this.health(now);
      }
      return this.eject(now);
    }
    this.consecutive = success ? 0 : this.consecutive + 1;
    this.window.add(now, 1, success ? 0 : 1);
    const { first: total, second: failures } = this.window.sum(now);
    const { consecutiveFailures, errorRatePercent, minRequests } = this.settings;
    const tooManyInARow = this.consecutive >= consecutiveFailures;
    const errorRateTooHigh = total >= minRequests && failures * 100 >= errorRatePercent * total;
    return tooManyInARow || errorRateTooHigh ? this.eject(now) : current;
  }

  /**
   * Current health; an ejection whose time is up turns into "probing" (half-open): requests may go again, the next
   * outcome decides (success → healthy and ejection count decays to 0; failure → ejected again for base * 2^ejections, capped).
   */
  health(now: number): BackendHealth {
    if (this.until !== undefined && now >= this.until) {
      this.until = undefined;
      this.probing = true;
    }
    if (this.until !== undefined) return { state: "ejected", until: this.until, ejections: this.ejections };
    if (this.probing) return { state: "probing", ejections: this.ejections };
    return { state: "healthy" };
  }

  /** True while requests must avoid this backend. */
  isEjected(now: number): boolean {
    return this.health(now).state === "ejected";
  }

  /** Attempts and failures in the current window (for the relative rule across a service's backends). */
  windowStats(now: number): WindowStats {
    const { first: attempts, second: failures } = this.window.sum(now);
    return { attempts, failures };
  }

  /** Ejects now, for a reason decided outside this backend (the relative rule); no-op while ejected. */
  ejectNow(now: number): BackendHealth {
    const current = this.health(now);
    return current.state === "ejected" ? current : this.eject(now);
  }

  private eject(now: number): BackendHealth {
    const { baseEjectionMs, maxEjectionMs } = this.settings;
    this.until = now + Math.min(maxEjectionMs, baseEjectionMs * 2 ** this.ejections);
    this.ejections++;
    this.probing = false;
    // A fresh start after the ejection: failures from before it must not eject the backend again
    // the moment it is back.
    this.consecutive = 0;
    this.window.reset();
    return { state: "ejected", until: this.until, ejections: this.ejections };
  }
}

// ---------------------------------------------------------------------------------------------
// Slot substitution
// ---------------------------------------------------------------------------------------------

/** 2^32, to turn a 32-bit hash into (0, 1). */
const HASH_RANGE = 4294967296;

/**
 * Slot owners with ejected backends replaced by healthy ones. `owners` is one backend per slot (see shared/split.ts
 * expandLayout); `weights` the route's weights; `ejected` the backends to avoid. Each slot of an ejected backend goes to a
 * healthy backend chosen deterministically from the slot index (weighted by the healthy backends' weights, e.g. highest-
 * random-weight over a hash of `${slot}/${backend}`), so the same shopper lands on the same substitute, and returns to
 * their own backend when it recovers. Panic threshold (as in Envoy): if every backend with weight > 0 is ejected, return
 * `owners` unchanged — a route's last healthy backend is never ejected. Returns the same array instance when nothing
 * is ejected (cheap hot path).
 */
export function healthyOwners(
  owners: readonly string[],
  weights: Readonly<Record<string, number>>,
  ejected: ReadonlySet<string>,
): readonly string[] {
  if (ejected.size === 0 || !owners.some((owner) => ejected.has(owner))) return owners;
  const healthy = Object.entries(weights).filter(([backend, weight]) => weight > 0 && !ejected.has(backend));
  // Panic: sending everything to ejected backends beats sending it nowhere.
  if (healthy.length === 0) return owners;
  return owners.map((owner, slot) => {
    if (!ejected.has(owner)) return owner;
    // Weighted rendezvous hashing: score = ln(u) / w, highest wins. A backend wins a slot with
    // probability w / Σw, and removing or adding a candidate only moves the slots it wins.
    let best = owner;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const [backend, weight] of healthy) {
      const u = (hash32(`${slot}/${backend}`) + 0.5) / HASH_RANGE;
      const score = Math.log(u) / weight;
      if (score > bestScore) {
        best = backend;
        bestScore = score;
      }
    }
    return best;
  });
}

// ---------------------------------------------------------------------------------------------
// Retry delay
// ---------------------------------------------------------------------------------------------

/**
 * Adaptive retry delay: learns per backend how long failures take to clear (time from a failed attempt to the next
 * success, as an exponentially weighted moving average) and waits about that long, within [minMs, maxMs], with ±20%
 * jitter from `random`. Before anything is learned it uses `initialMs`.
 */
export interface AdaptiveDelaySettings {
  initialMs: number;
  minMs: number;
  maxMs: number;
  /** EWMA weight of the newest sample, in (0, 1]. */
  alpha: number;
}

/** Defaults: a short first guess, then whatever the backend teaches, never under 5 ms nor over 2 s. */
export const DEFAULT_ADAPTIVE_DELAY: AdaptiveDelaySettings = { initialMs: 50, minMs: 5, maxMs: 2_000, alpha: 0.3 };

/** Jitter half-width: spreads retries of many callers so they do not land on a recovering backend at once. */
const ADAPTIVE_JITTER = 0.2;

/**
 * Shrink applied to a sample from a streak whose first retry already succeeded: such a sample is only an upper
 * bound on how long failures lasted (the backend may have been back well before), so taken as is the average could
 * only ratchet upwards — a learned 450 ms would keep waiting 450 ms for a 300 ms outage and keep "confirming" it.
 * Shrinking those samples a little keeps probing shorter until a retry fails, and a failed retry brackets the
 * recovery tightly (its sample is kept as is). Measured on a fixed-length outage: learns ≈1.03× its length, where
 * the unshrunk average drifted to anywhere between 1.3× and 2.6× depending on the dice.
 */
const UPPER_BOUND_SHRINK = 0.9;

/**
 * Learns how long one backend's failures last and waits about that long before retrying.
 *
 * The wait is measured from the start of the failure streak, not from the last failure: a retry after a failed
 * retry (or a request that failed late in the streak) waits for what is left of the learned duration, so every
 * caller aims at the moment the backend is expected back. Once that moment has passed without recovery the
 * estimate is too short: the wait becomes the overrun so far (at least a quarter of the estimate), which backs
 * off exponentially. Before anything is learned, the wait is as long as the streak has lasted (at least
 * `initialMs`), which also doubles.
 */
export class AdaptiveDelay {
  private readonly settings: AdaptiveDelaySettings;
  private streakStart: number | undefined;
  private lastFailure = 0;
  private streakFailures = 0;
  private ewma: number | undefined;

  constructor(settings: AdaptiveDelaySettings = DEFAULT_ADAPTIVE_DELAY) {
    this.settings = settings;
  }

  /** Remembers the first failure of a streak (and the latest one, to know how long the streak has lasted). */
  recordFailure(now: number): void {
    if (this.streakStart === undefined) {
      this.streakStart = now;
      this.lastFailure = now;
      this.streakFailures = 0;
    }
    this.lastFailure = Math.max(this.lastFailure, now);
    this.streakFailures++;
  }

  /** Closes an open streak: its length (now − first failure) is one sample of how long failures take to clear. */
  recordSuccess(now: number): void {
    if (this.streakStart === undefined) return;
    const length = Math.max(0, now - this.streakStart);
    const sample = this.streakFailures > 1 ? length : length * UPPER_BOUND_SHRINK;
    const { alpha } = this.settings;
    this.ewma = this.ewma === undefined ? sample : alpha * sample + (1 - alpha) * this.ewma;
    this.streakStart = undefined;
  }

  /** Milliseconds to wait before the next retry (call after {@link recordFailure}); `random` in [0, 1) picks the jitter. */
  delay(random: number): number {
    const { initialMs, minMs, maxMs } = this.settings;
    const elapsed = this.streakStart === undefined ? 0 : Math.max(0, this.lastFailure - this.streakStart);
    const learned = this.ewma;
    let base: number;
    if (learned === undefined) base = Math.max(initialMs, elapsed);
    else if (elapsed < learned) base = learned - elapsed;
    else base = Math.max(learned / 4, elapsed - learned);
    const jitter = 1 - ADAPTIVE_JITTER + 2 * ADAPTIVE_JITTER * random;
    return clamp(clamp(base, minMs, maxMs) * jitter, minMs, maxMs);
  }

  /** The learned failure duration (ms), or undefined before the first streak closed. */
  learnedMs(): number | undefined {
    return this.ewma;
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

/** Fixed backoff with full jitter, for comparison and for routes that ask for it: base * 2^(attempt-1) * random, capped. */
export function fixedBackoff(attempt: number, baseMs: number, capMs: number, random: number): number {
  // Capping before the jitter (as in AWS's "full jitter") keeps late retries spread over [0, cap).
  return Math.min(capMs, baseMs * 2 ** (Math.max(1, attempt) - 1)) * random;
}

// ---------------------------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------------------------

/** Fault injection: what to do to one request to `backend`. Percentages are 0–100. */
export interface FaultRule {
  backend: string;
  abort?: { percent: number; status: number };
  delay?: { percent: number; ms: number };
}

/** What {@link decideFault} tells the proxy to do to one request. */
export type FaultDecision =
  | { kind: "none" }
  | { kind: "abort"; status: number }
  | { kind: "delay"; ms: number }
  | { kind: "delay-then-abort"; ms: number; status: number };

/**
 * Fault injection: what to do to one request to `backend`. `random` decides abort, `random2` decides delay
 * (independent draws, so abort and delay percentages hold on their own). The first rule for `backend` wins.
 */
export function decideFault(rules: readonly FaultRule[], backend: string, random: number, random2: number): FaultDecision {
  const rule = rules.find((r) => r.backend === backend);
  if (!rule) return { kind: "none" };
  const abort = rule.abort && random * 100 < rule.abort.percent ? rule.abort : undefined;
  const delay = rule.delay && random2 * 100 < rule.delay.percent ? rule.delay : undefined;
  if (abort && delay) return { kind: "delay-then-abort", ms: delay.ms, status: abort.status };
  if (abort) return { kind: "abort", status: abort.status };
  if (delay) return { kind: "delay", ms: delay.ms };
  return { kind: "none" };
}
