/**
 * Latency-aware load balancing across the origins of one external backend (a provider's regional
 * endpoints), as Linkerd does: power of two choices over a peak-EWMA of latency, weighted by
 * outstanding requests. Origins that fail are ejected through the same OutlierDetector the proxy uses for backends.
 *
 * Pure like the rest of shared/: time comes in as `now` (ms) and randomness as numbers in [0, 1), so the
 * proxy owns the clock and the dice and tests replay scenarios on a virtual clock.
 */
import { OutlierDetector } from "./resilience.ts";

/** Peak-EWMA tuning for one {@link OriginBalancer}. */
export interface BalancerSettings {
  /** Time constant of the moving average: after `decayMs` without samples, an estimate keeps 1/e of its weight. */
  decayMs: number;
  /** Latency assumed for an origin before its first answer. */
  initialLatencyMs: number;
}

/** Linkerd's defaults: a 10 s decay, and 50 ms for an origin nothing is known about yet. */
export const DEFAULT_BALANCER: BalancerSettings = { decayMs: 10_000, initialLatencyMs: 50 };

/**
 * Ceiling for the estimate. Failures double it, so an origin that keeps failing (e.g. in panic mode, where
 * requests go to ejected origins) would reach Infinity, which no decay brings back. A minute is longer than
 * any request the proxy lets run, and still decays to tens of ms within about a minute and a half at the defaults.
 */
const MAX_ESTIMATE_MS = 60_000;

/** What the balancer knows about one origin. */
interface OriginState {
  /** Peak-EWMA as of `sampledAt` (initialLatencyMs until the first answer). */
  estimate: number;
  /** Time of the last sample; undefined before the first one (then the balancer's first clock reading counts). */
  sampledAt: number | undefined;
  outstanding: number;
  readonly outlier: OutlierDetector;
}

/** Outcome of one request to an origin, as reported by the function {@link OriginBalancer.start} returns. */
export interface OriginOutcome {
  latencyMs: number;
  success: boolean;
  now: number;
}

/**
 * Picks among the origins of one backend with power of two choices over cost = peak-EWMA latency × (outstanding + 1).
 *
 * Why P2C rather than always taking the cheapest: every isolate would pile onto the same origin at once (herding),
 * and the estimates of the others would never be refreshed. Comparing two random candidates sends most traffic to
 * fast origins while every origin that is not the single worst still gets some.
 *
 * Why the estimate also decays between samples (towards 0, as Linkerd's/tower's does when it reads the load): an
 * origin that was slow once and then lost every comparison would otherwise keep its bad estimate forever under light
 * traffic, where outstanding requests never tip the balance. Decaying makes it cheap again after a while, so it gets
 * probed, and the next answer sets the estimate to what it really is now.
 */
export class OriginBalancer {
  private readonly settings: BalancerSettings;
  private readonly origins: ReadonlyMap<string, OriginState>;
  private readonly names: readonly string[];
  // Origins not yet heard from decay from the first time the balancer sees the clock: the constructor has no `now`.
  private epoch: number | undefined;

  constructor(origins: readonly string[], settings: BalancerSettings = DEFAULT_BALANCER) {
    const names = [...new Set(origins)];
    if (names.length === 0) throw new RangeError("OriginBalancer needs at least one origin");
    this.settings = {
      // A zero decay would divide by zero; 1 ms means "only the latest sample counts".
      decayMs: Number.isFinite(settings.decayMs) ? Math.max(1, settings.decayMs) : DEFAULT_BALANCER.decayMs,
      initialLatencyMs: clampLatency(settings.initialLatencyMs),
    };
    this.names = names;
    this.origins = new Map(
      names.map((name) => [
        name,
        { estimate: this.settings.initialLatencyMs, sampledAt: undefined, outstanding: 0, outlier: new OutlierDetector() },
      ]),
    );
  }

  /**
   * Picks an origin: two distinct random candidates among the non-ejected ones (r1, r2 in [0,1)), the lower cost wins;
   * cost = ewmaLatency × (outstanding + 1). One origin → it; all ejected → pick among all (panic).
   */
  pick(now: number, r1: number, r2: number): string {
    this.observe(now);
    const healthy = this.names.filter((name) => !this.state(name).outlier.isEjected(now));
    // Panic (as in Envoy): sending to an ejected origin beats sending nowhere.
    const candidates = healthy.length > 0 ? healthy : this.names;
    const n = candidates.length;
    const i = index(r1, n);
    const first = candidates[i] ?? this.names[0] ?? "";
    if (n === 1) return first;
    // Draw the second among the other n − 1 and skip over the first, so the pair is uniform and always distinct.
    const j = index(r2, n - 1);
    const second = candidates[j >= i ? j + 1 : j] ?? first;
    // Ties go to the first candidate, itself uniformly random, so no origin is favoured by its position.
    return this.cost(second, now) < this.cost(first, now) ? second : first;
  }

  /**
   * Call when a request to `origin` starts; returns a function to call when it ends with its outcome (latencyMs
   * measured by the caller, success = the origin answered with a non-5xx). Calling that function more than once has
   * no further effect. An origin this balancer does not know gets a no-op, so a request that outlives a config
   * change cannot break the proxy.
   */
  start(origin: string, now: number): (outcome: OriginOutcome) => void {
    this.observe(now);
    const state = this.origins.get(origin);
    if (!state) return () => undefined;
    state.outstanding++;
    let ended = false;
    return (outcome) => {
      if (ended) return;
      ended = true;
      state.outstanding = Math.max(0, state.outstanding - 1);
      this.observe(outcome.now);
      const latency = clampLatency(outcome.latencyMs);
      // A failure is a sample of at least twice the current estimate, so a failing origin quickly looks expensive
      // even when it fails fast (a quick 503 must not make it look like the best origin).
      const sample = outcome.success ? latency : Math.min(MAX_ESTIMATE_MS, Math.max(latency, state.estimate * 2));
      this.sample(state, sample, outcome.now);
      state.outlier.record(outcome.success, outcome.now);
    };
  }

  /** For metrics and tests: per origin { ewmaMs, outstanding, ejected }; ewmaMs is the estimate as decayed to `now`. */
  snapshot(now: number): Record<string, { ewmaMs: number; outstanding: number; ejected: boolean }> {
    this.observe(now);
    const result: Record<string, { ewmaMs: number; outstanding: number; ejected: boolean }> = {};
    for (const name of this.names) {
      const state = this.state(name);
      result[name] = { ewmaMs: this.estimate(state, now), outstanding: state.outstanding, ejected: state.outlier.isEjected(now) };
    }
    return result;
  }

  private state(name: string): OriginState {
    const state = this.origins.get(name);
    // Only called with names from this.names, which are exactly the map's keys.
    if (!state) throw new Error(`unknown origin ${name}`);
    return state;
  }

  private observe(now: number): void {
    if (this.epoch === undefined && Number.isFinite(now)) this.epoch = now;
  }

  private cost(name: string, now: number): number {
    const state = this.state(name);
    return this.estimate(state, now) * (state.outstanding + 1);
  }

  /** Weight the stored estimate still has at `now`: exp(−elapsed / decayMs); clocks running backwards count as 0 elapsed. */
  private weight(state: OriginState, now: number): number {
    const since = state.sampledAt ?? this.epoch ?? now;
    return Math.exp(-Math.max(0, now - since) / this.settings.decayMs);
  }

  private estimate(state: OriginState, now: number): number {
    return state.estimate * this.weight(state, now);
  }

  /** Peak-EWMA: a worse sample is taken at once (react to trouble immediately), a better one only gradually. */
  private sample(state: OriginState, sample: number, now: number): void {
    // The first answer replaces the initial guess outright (as TCP's SRTT starts from the first measurement):
    // otherwise a 10 ms origin would still look like ~25 ms a full decay period later, because of a number nobody measured.
    if (state.sampledAt === undefined || sample > state.estimate) {
      state.estimate = sample;
    } else {
      const w = this.weight(state, now);
      state.estimate = state.estimate * w + sample * (1 - w);
    }
    // Answers may arrive out of order; the latest time seen is when the estimate was last current.
    state.sampledAt = state.sampledAt === undefined ? now : Math.max(state.sampledAt, now);
  }
}

/** A latency as a usable number: negative or NaN → 0, anything huge (or Infinity) → the ceiling. */
function clampLatency(ms: number): number {
  return Number.isNaN(ms) ? 0 : Math.min(MAX_ESTIMATE_MS, Math.max(0, ms));
}

/** floor(r × n), kept within [0, n) even if a caller passes r = 1 or something outside [0, 1). */
function index(r: number, n: number): number {
  const i = Math.floor((Number.isFinite(r) ? r : 0) * n);
  return Math.min(n - 1, Math.max(0, i));
}
