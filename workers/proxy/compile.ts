/**
 * Turns a service slice into the structures the hot path reads: route predicates, a slot table per
 * route, compiled contracts, key sets and resolved backend targets. Done once per config version,
 * never per request.
 */
import { createLocalJWKSet, createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import type { Backend, FaultRule, HealthCheck, MirrorPolicy, Policy, RateLimitRule, RetryPolicy, RouteMatch } from "../../shared/config.ts";
import { compileContract, type CompiledContract } from "../../shared/contract.ts";
import type { EgressDataPolicy, RouteAuth, RouteWebhook, VendorAuth } from "../../shared/policy-schemas.ts";
import { OriginBalancer } from "../../shared/balancer.ts";
import { egressBase } from "../../shared/egress.ts";
import type { LimitSpec } from "../../shared/rate-limit.ts";
import type { ProbeSlice, ServiceSlice } from "../../shared/slice.ts";
import { expandLayout } from "../../shared/split.ts";

/** Where a backend's traffic goes, resolved against this proxy's bindings. */
export type Target =
  | { kind: "binding"; fetcher: Fetcher }
  | { kind: "external"; balancer: OriginBalancer; provider: string; egress: EgressDataPolicy | undefined; quota: LimitSpec | undefined; auth: VendorAuth | undefined }
  | { kind: "missing"; reason: string };

export interface CompiledBackend {
  name: string;
  target: Target;
  healthCheck: HealthCheck | undefined;
}

export interface CompiledRoute {
  name: string;
  matches(method: string, path: string, headers: Headers): boolean;
  /** Slot owners: index = slot, value = backend name. */
  owners: string[];
  /** Salt for sticky hashing, so one shopper's slot differs between routes and services. */
  salt: string;
  sticky: { from: "cookie" | "header"; name: string } | undefined;
  auth: { settings: RouteAuth; keys: JWTVerifyGetKey } | undefined;
  /** Inbound webhook verification (workers/proxy/webhook.ts). */
  webhook: RouteWebhook | undefined;
  contract: CompiledContract | undefined;
  timeoutMs: number | undefined;
  retries: RetryPolicy | undefined;
  failover: string[];
  mirror: MirrorPolicy | undefined;
  weights: Readonly<Record<string, number>>;
  /** The service's rate limits that cover this route. */
  rateLimits: RateLimitRule[];
}

export interface CompiledSlice {
  service: string;
  version: number;
  routes: CompiledRoute[];
  backends: Map<string, CompiledBackend>;
  policy: Policy | undefined;
  faults: FaultRule[];
  /** A running rollout's synthetic requests to its candidate. */
  probe: ProbeSlice | undefined;
}

/** Remote key sets live as long as the isolate, so their cache survives config changes. */
const remoteKeySets = new Map<string, JWTVerifyGetKey>();

function keysFor(auth: RouteAuth): JWTVerifyGetKey {
  if (auth.jwks) return createLocalJWKSet({ keys: auth.jwks.keys });
  const url = auth.jwksUrl ?? "";
  let keys = remoteKeySets.get(url);
  if (!keys) {
    keys = createRemoteJWKSet(new URL(url), { timeoutDuration: 3_000, cooldownDuration: 5_000, cacheMaxAge: 600_000 });
    remoteKeySets.set(url, keys);
  }
  return keys;
}

function isFetcher(value: unknown): value is Fetcher {
  return typeof value === "object" && value !== null && typeof (value as { fetch?: unknown }).fetch === "function";
}

/** Balancers outlive config versions (per isolate), so latency estimates survive config changes. */
const balancers = new Map<string, OriginBalancer>();

function balancerFor(service: string, backend: string, origins: readonly string[]): OriginBalancer {
  const bases = origins.map(egressBase);
  const key = `${service}/${backend}/${bases.join(" ")}`;
  let balancer = balancers.get(key);
  if (!balancer) balancers.set(key, (balancer = new OriginBalancer(bases)));
  return balancer;
}

function compileTarget(service: string, backend: Backend, bindings: object): Target {
  if (backend.type === "external") {
    const origins = typeof backend.origin === "string" ? [backend.origin] : backend.origin;
    const quota: LimitSpec | undefined = backend.quota
      ? { algorithm: backend.quota.algorithm, limit: backend.quota.limit, periodSeconds: backend.quota.periodSeconds, ...(backend.quota.burst ? { burst: backend.quota.burst } : {}) }
      : undefined;
    return { kind: "external", balancer: balancerFor(service, backend.name, origins), provider: backend.provider ?? backend.name, egress: backend.egress, quota, auth: backend.auth };
  }
  const fetcher: unknown = Reflect.get(bindings, backend.binding);
  return isFetcher(fetcher)
    ? { kind: "binding", fetcher }
    : {
        kind: "missing",
        reason: `backend '${backend.name}' needs service binding '${backend.binding}' on this proxy; add it to the proxy's wrangler config`,
      };
}

function compileMatch(match: RouteMatch): CompiledRoute["matches"] {
  const prefix = match.path.endsWith("*") ? match.path.slice(0, -1) : undefined;
  const exact = match.path;
  const methods = match.methods ? new Set<string>(match.methods) : undefined;
  const headers = Object.entries(match.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  return (method, path, requestHeaders) =>
    (prefix === undefined ? path === exact : path.startsWith(prefix)) &&
    (methods === undefined || methods.has(method)) &&
    headers.every(([k, v]) => requestHeaders.get(k) === v);
}

/** Compiles a slice against the proxy's env (where service bindings live). */
export function compileSlice(slice: ServiceSlice, bindings: object): CompiledSlice {
  return {
    service: slice.service,
    version: slice.version,
    policy: slice.policy,
    faults: slice.faults ?? [],
    probe: slice.probe,
    backends: new Map(
      slice.backends.map((b) => [b.name, { name: b.name, target: compileTarget(slice.service, b, bindings), healthCheck: b.healthCheck }]),
    ),
    routes: slice.routes.map((route) => {
      const [from, name] = route.split.sticky?.split(":", 2) ?? [];
      return {
        name: route.name,
        matches: compileMatch(route.match),
        owners: expandLayout(route.layout),
        salt: `${slice.service}/${route.name}`,
        sticky: (from === "cookie" || from === "header") && name ? { from, name } : undefined,
        auth: route.auth ? { settings: route.auth, keys: keysFor(route.auth) } : undefined,
        webhook: route.webhook,
        contract: route.contract ? compileContract(route.contract) : undefined,
        timeoutMs: route.timeoutMs,
        retries: route.retries,
        failover: route.failover ?? [],
        mirror: route.mirror,
        rateLimits: (slice.rateLimits ?? []).filter((rule) => !rule.routes || rule.routes.includes(route.name)),
        weights: route.split.weights,
      };
    }),
  };
}
