/**
 * One service's view of its backends' health in this isolate, as each Envoy keeps its own host
 * stats: passive outlier detection (every attempt's outcome), active health checks (probes a
 * backend's health endpoint while traffic flows), the retry budget and the adaptive retry delay.
 * Nothing here is shared between isolates or waits on a Durable Object.
 */
import { AdaptiveDelay, isRelativeOutlier, OutlierDetector, RetryBudget, type BackendHealth } from "../../shared/resilience.ts";

interface BackendState {
  outlier: OutlierDetector;
  delay: AdaptiveDelay;
  /** Active health check streaks (Envoy: 3 failed probes in a row → unhealthy, 2 passed → healthy). */
  failedProbes: number;
  passedProbes: number;
  probedAt: number;
}

const UNHEALTHY_THRESHOLD = 3;
const HEALTHY_THRESHOLD = 2;
const NONE: ReadonlySet<string> = new Set();

/** What happened to a backend as a result of one outcome: callers count and log ejections. */
export type HealthChange = { kind: "none" } | { kind: "ejected"; until: number; ejections: number };

const UNCHANGED: HealthChange = { kind: "none" };

/** Outlier detection, health checks and retry budget of one service's backends. */
export class ServiceHealth {
  private readonly backends = new Map<string, BackendState>();
  /** Backends currently ejected by outlier detection; empty (the usual case) means no work per request. */
  private readonly ejected = new Set<string>();
  /** Backends failing their active health check; kept apart so real traffic cannot hide a failing probe. */
  private readonly unhealthy = new Set<string>();
  /** Retries allowed relative to live traffic (Linkerd's retry budget: 20% + 10/s). */
  readonly budget = new RetryBudget();

  private state(backend: string): BackendState {
    let state = this.backends.get(backend);
    if (!state) {
      state = { outlier: new OutlierDetector(), delay: new AdaptiveDelay(), failedProbes: 0, passedProbes: 0, probedAt: 0 };
      this.backends.set(backend, state);
    }
    return state;
  }

  /** The backends requests must avoid right now: ejected or failing health checks. */
  avoiding(now: number): ReadonlySet<string> {
    if (this.ejected.size === 0 && this.unhealthy.size === 0) return NONE;
    for (const name of this.ejected) if (!this.state(name).outlier.isEjected(now)) this.ejected.delete(name);
    if (this.unhealthy.size === 0) return this.ejected;
    if (this.ejected.size === 0) return this.unhealthy;
    return new Set([...this.ejected, ...this.unhealthy]);
  }

  /** Feeds one attempt's outcome to outlier detection and the adaptive retry delay. */
  record(backend: string, success: boolean, now: number): HealthChange {
    const state = this.state(backend);
    if (success) state.delay.recordSuccess(now);
    else state.delay.recordFailure(now);
    let health: BackendHealth = state.outlier.record(success, now);
    if (health.state !== "ejected" && !success && this.outlierAmongPeers(backend, state.outlier, now)) health = state.outlier.ejectNow(now);
    if (health.state !== "ejected" || this.ejected.has(backend)) return UNCHANGED;
    this.ejected.add(backend);
    return { kind: "ejected", until: health.until, ejections: health.ejections };
  }

  /** The relative rule: is `backend` failing far more than the service's other backends in the same window? */
  private outlierAmongPeers(backend: string, detector: OutlierDetector, now: number): boolean {
    const own = detector.windowStats(now);
    const peers = { attempts: 0, failures: 0 };
    for (const [name, other] of this.backends) {
      if (name === backend || other.outlier.isEjected(now)) continue;
      const stats = other.outlier.windowStats(now);
      peers.attempts += stats.attempts;
      peers.failures += stats.failures;
    }
    return isRelativeOutlier(own, peers);
  }

  /** How long to wait before retrying `backend` (learned from how long its failures take to clear). */
  retryDelay(backend: string, random: number): number {
    return this.state(backend).delay.delay(random);
  }

  /** Is a health probe of `backend` due? Marks it as probed when it is. */
  probeDue(backend: string, intervalMs: number, now: number): boolean {
    const state = this.state(backend);
    if (now < state.probedAt + intervalMs) return false;
    state.probedAt = now;
    return true;
  }

  /** Records a health probe; answers "unhealthy"/"healthy" when the backend's state flips. */
  recordProbe(backend: string, passed: boolean): "unhealthy" | "healthy" | "unchanged" {
    const state = this.state(backend);
    if (passed) {
      state.passedProbes++;
      state.failedProbes = 0;
      if (state.passedProbes >= HEALTHY_THRESHOLD && this.unhealthy.delete(backend)) return "healthy";
    } else {
      state.failedProbes++;
      state.passedProbes = 0;
      if (state.failedProbes >= UNHEALTHY_THRESHOLD && !this.unhealthy.has(backend)) {
        this.unhealthy.add(backend);
        return "unhealthy";
      }
    }
    return "unchanged";
  }

  /** A new config: backends that lost their health check are no longer judged by one; removed backends are forgotten. */
  reconfigure(backends: ReadonlyMap<string, { healthCheck: unknown }>): void {
    for (const name of this.unhealthy) if (!backends.get(name)?.healthCheck) this.unhealthy.delete(name);
    for (const name of this.backends.keys()) {
      if (!backends.has(name)) {
        this.backends.delete(name);
        this.ejected.delete(name);
      }
    }
  }
}
