/**
 * One proxied service's state in this isolate, in one object: its config cache, its backends'
 * health, its rate-limit leases, its telemetry. The proxy keeps one per service it fronts (in
 * practice one per isolate); a test can start from fresh state by making a new one.
 */
import type { JWTVerifyGetKey } from "jose";
import type { OriginBalancer } from "../../shared/balancer.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { SliceCache } from "./config-cache.ts";
import type { EgressContext } from "./forward.ts";
import { ServiceHealth } from "./health.ts";
import type { CompiledSlice } from "./plan.ts";
import { RateLimiter } from "./rate-limit.ts";
import type { Sender } from "./send.ts";
import { ServiceTelemetry, telemetrySettings } from "./telemetry.ts";

/** `name` while fewer than `max` distinct names were seen (remembering it), else `(other)`. */
export function boundedLabel(seen: Set<string>, name: string, max: number): string {
  if (seen.has(name)) return name;
  if (seen.size >= max) return "(other)";
  seen.add(name);
  return name;
}

/** Distinct RPC method names an isolate reports as metric routes before it folds the rest into `(other)`. */
export const MAX_RPC_LABELS = 256;

/** A proxied service: everything the request path keeps between requests. */
export class ServiceProxy implements Sender {
  readonly health = new ServiceHealth();
  readonly config: SliceCache;
  readonly limiter: RateLimiter;
  readonly telemetry: ServiceTelemetry;
  /** Debug headers only add information to responses; they never change which code runs. */
  readonly debugHeaders: boolean;
  /** The proxy's env: RPC to a backend's named entrypoint looks its binding up here (workers/proxy/rpc.ts). */
  readonly bindings: object;
  /** RPC method names used as metric routes: bounded, since callers choose them (see {@link rpcRouteLabel}). */
  private readonly rpcLabels = new Set<string>();
  /** Remote JWKS and origin balancers outlive config versions, so their caches and latency estimates survive changes. */
  private readonly keySets = new Map<string, JWTVerifyGetKey>();
  private readonly balancers = new Map<string, OriginBalancer>();

  constructor(
    readonly service: string,
    readonly controlPlane: ControlPlaneApi,
    env: ProxyEnv,
  ) {
    this.debugHeaders = env.WEFT_DEBUG_HEADERS === "true";
    this.bindings = env;
    this.limiter = new RateLimiter(service, controlPlane);
    this.telemetry = new ServiceTelemetry(service, controlPlane, telemetrySettings(env));
    this.config = new SliceCache(service, controlPlane, {
      context: { bindings: env, keySets: this.keySets, balancers: this.balancers },
      onCompiled: (slice: CompiledSlice) => this.health.reconfigure(slice.backends),
    });
  }

  /** Records one attempt's outcome: outlier detection, the attempt counts rollouts judge on, ejection metrics. */
  recordOutcome(backend: string, success: boolean, startedAt: number, endedAt: number): void {
    this.telemetry.countAttempt(backend, !success, endedAt - startedAt);
    const change = this.health.record(backend, success, endedAt);
    if (change.kind === "ejected") {
      this.telemetry.countEjection(backend);
      console.warn(JSON.stringify({ event: "backend-ejected", service: this.service, backend, until: new Date(change.until).toISOString(), ejections: change.ejections }));
    }
  }

  /**
   * The metric route of an RPC call: its method, for the first {@link MAX_RPC_LABELS} method names
   * this isolate sees, then `(other)`. Callers choose method names, and each label is a series kept by
   * the service's TelemetryStore, so the names are bounded like any other value from outside.
   */
  rpcRouteLabel(method: string): string {
    return boundedLabel(this.rpcLabels, method, MAX_RPC_LABELS);
  }

  /** Who a call to a third party is made for (the egress token's subject). */
  egress(caller: string): EgressContext {
    return { service: this.service, caller, controlPlane: this.controlPlane, limiter: this.limiter };
  }
}
