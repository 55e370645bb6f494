/**
 * The route plan: a service slice compiled once per config version into what the request path
 * reads. Which steps a route needs (authentication, rate limits, contract, retries, failover,
 * mirror, timeout, faults, response headers) is decided here, so a request only looks at what truly
 * varies per request: its caller, ejected backends, a new shopper's cookie, the caller's deadline.
 */
import { createLocalJWKSet, createRemoteJWKSet, type JWTVerifyGetKey } from "jose";
import type { Backend, FaultRule, HeaderModifier, HealthCheck, MirrorPolicy, Policy, RateLimitRule, RequestRedirect, RetryPolicy, RouteConfig, RouteFilter, UrlRewrite } from "../../shared/config.ts";
import { compileContract, type CompiledContract } from "../../shared/contract.ts";
import type { EgressDataPolicy, RouteAuth, RouteWebhook, VendorAuth } from "../../shared/policy-schemas.ts";
import { OriginBalancer } from "../../shared/balancer.ts";
import { egressBase } from "../../shared/egress.ts";
import type { LimitSpec } from "../../shared/rate-limit.ts";
import type { ProbeSlice, ServiceSlice } from "../../shared/slice.ts";
import type { CorsPolicy } from "../../shared/cors.ts";
import { mirrorPercent } from "../../shared/filters.ts";
import { compileMatch, orderMatches, type CompiledMatch, type MatchInput } from "../../shared/route-match.ts";
import { expandLayout } from "../../shared/split.ts";
import type { MirrorTarget } from "./send.ts";

/** Where a backend's traffic goes, resolved against this proxy's bindings. */
export type Target =
  | { kind: "binding"; fetcher: Fetcher }
  | { kind: "external"; balancer: OriginBalancer; provider: string; egress: EgressDataPolicy | undefined; quota: LimitSpec | undefined; auth: VendorAuth | undefined }
  | { kind: "missing"; reason: string };

export interface CompiledBackend {
  name: string;
  target: Target;
  healthCheck: HealthCheck | undefined;
  /** The rehearsal fault for this backend, if one is configured. */
  fault: FaultRule | undefined;
  /** Another service's proxy (a `mesh` backend): requests to it carry their origin. */
  mesh: boolean;
  /** The proxy's binding to it (workers and mesh backends): RPC to a named entrypoint uses `<binding>__<Entrypoint>` (workers/proxy/rpc.ts). */
  binding: string | undefined;
}

/** Header changes for the request and the response (a route's, or one backend's). */
export interface HeaderFilters {
  request: HeaderModifier | undefined;
  response: HeaderModifier | undefined;
}

/** A route's filters, sorted by the step that runs them. */
export interface RouteFilters extends HeaderFilters {
  redirect: RequestRedirect | undefined;
  rewrite: UrlRewrite | undefined;
  /** RequestMirror filters (several may copy the same request). */
  mirrors: MirrorTarget[];
  cors: CorsPolicy | undefined;
  /** Header filters of one backend, applied when the split picks it. */
  perBackend: ReadonlyMap<string, HeaderFilters>;
}

/** Everything the request path needs to know about one route, fixed for a config version. */
export interface RoutePlan {
  name: string;
  /**
   * Which Workers RPC calls the route takes: `"route"` for an RPC route (`match.rpc`), `"fallback"`
   * for the catch-all route RPC calls without an RPC route of their own take, `undefined` for none.
   */
  rpc: { kind: "route"; pattern: string } | { kind: "fallback" } | undefined;
  /** The route's filters; undefined when it has none (the common case: the steps cost a property read). */
  filters: RouteFilters | undefined;
  /** Slot owners: index = slot, value = backend name. */
  owners: string[];
  weights: Readonly<Record<string, number>>;
  /** Salt for sticky hashing, so one shopper's slot differs between routes and services. */
  salt: string;
  sticky: { from: "cookie" | "header"; name: string } | undefined;
  auth: { settings: RouteAuth; keys: JWTVerifyGetKey } | undefined;
  /** The service's rate limits that cover this route (empty: the step does nothing). */
  rateLimits: RateLimitRule[];
  /** Inbound webhook verification (workers/proxy/webhook.ts). */
  webhook: RouteWebhook | undefined;
  contract: CompiledContract | undefined;
  timeoutMs: number | undefined;
  /** One attempt's timeout (within `timeoutMs`). */
  attemptTimeoutMs: number | undefined;
  retries: RetryPolicy | undefined;
  /** Backend statuses worth another attempt. */
  retryStatuses: ReadonlySet<number>;
  /** Failover backends, in order. */
  failover: CompiledBackend[];
  mirror: MirrorPolicy | undefined;
  /** The backend deduplicates by Idempotency-Key, so keyed POSTs may be sent twice. */
  honoursIdempotencyKey: boolean;
  /** RPC calls on this route may be made twice: retries and failover apply to them. */
  idempotent: boolean;
  /** Some backend of this route (split, failover or mirror) is another service's proxy: requests carry `x-weft-origin`. */
  relays: boolean;
}

/** One match of the route table, in the order matches are tried. */
export interface TableEntry {
  route: RoutePlan;
  match: CompiledMatch;
}

export interface CompiledSlice {
  service: string;
  version: number;
  routes: RoutePlan[];
  /** Every route's matches in the order they are tried (listed, or Gateway API precedence). */
  table: TableEntry[];
  backends: Map<string, CompiledBackend>;
  policy: Policy | undefined;
  /** A running rollout's synthetic requests to its candidate. */
  probe: ProbeSlice | undefined;
  /** Backends with an active health check (usually none). */
  checked: CompiledBackend[];
}

/** What compiling needs from outside the slice: the proxy's bindings and its isolate-lived caches. */
export interface CompileContext {
  /** The proxy's env, where service bindings live. */
  bindings: object;
  /** Remote key sets and origin balancers outlive config versions, so their state survives changes. */
  keySets: Map<string, JWTVerifyGetKey>;
  balancers: Map<string, OriginBalancer>;
}

const DEFAULT_RETRY_STATUSES = [502, 503, 504];

function keysFor(auth: RouteAuth, keySets: Map<string, JWTVerifyGetKey>): JWTVerifyGetKey {
  if (auth.jwks) return createLocalJWKSet({ keys: auth.jwks.keys });
  const url = auth.jwksUrl ?? "";
  let keys = keySets.get(url);
  if (!keys) {
    keys = createRemoteJWKSet(new URL(url), { timeoutDuration: 3_000, cooldownDuration: 5_000, cacheMaxAge: 600_000 });
    keySets.set(url, keys);
  }
  return keys;
}

function isFetcher(value: unknown): value is Fetcher {
  return typeof value === "object" && value !== null && typeof Reflect.get(value, "fetch") === "function";
}

function compileTarget(service: string, backend: Backend, context: CompileContext): Target {
  if (backend.type === "external") {
    const origins = typeof backend.origin === "string" ? [backend.origin] : backend.origin;
    const quota: LimitSpec | undefined = backend.quota
      ? { algorithm: backend.quota.algorithm, limit: backend.quota.limit, periodSeconds: backend.quota.periodSeconds, ...(backend.quota.burst ? { burst: backend.quota.burst } : {}) }
      : undefined;
    const bases = origins.map(egressBase);
    const key = `${service}/${backend.name}/${bases.join(" ")}`;
    let balancer = context.balancers.get(key);
    if (!balancer) context.balancers.set(key, (balancer = new OriginBalancer(bases)));
    return { kind: "external", balancer, provider: backend.provider ?? backend.name, egress: backend.egress, quota, auth: backend.auth };
  }
  const fetcher: unknown = Reflect.get(context.bindings, backend.binding);
  return isFetcher(fetcher)
    ? { kind: "binding", fetcher }
    : {
        kind: "missing",
        reason: `backend '${backend.name}' needs service binding '${backend.binding}' on this proxy; add it to the proxy's wrangler config`,
      };
}

function headerFilters(filters: ReadonlyArray<RouteFilter>): HeaderFilters {
  let request: HeaderModifier | undefined;
  let response: HeaderModifier | undefined;
  for (const filter of filters) {
    if (filter.type === "RequestHeaderModifier") request = filter;
    if (filter.type === "ResponseHeaderModifier") response = filter;
  }
  return { request, response };
}

function compileFilters(route: RouteConfig): RouteFilters | undefined {
  if (!route.filters && !route.backendFilters) return undefined;
  const filters = route.filters ?? [];
  let redirect: RequestRedirect | undefined;
  let rewrite: UrlRewrite | undefined;
  let cors: CorsPolicy | undefined;
  for (const filter of filters) {
    if (filter.type === "RequestRedirect") redirect = filter;
    if (filter.type === "URLRewrite") rewrite = filter;
    if (filter.type === "CORS") cors = filter;
  }
  const perBackend = new Map(Object.entries(route.backendFilters ?? {}).map(([backend, list]) => [backend, headerFilters(list)]));
  const mirrors = filters.flatMap((f) => (f.type === "RequestMirror" ? [{ backend: f.backend, percent: mirrorPercent(f), unsafe: f.unsafe === true }] : []));
  return { ...headerFilters(filters), redirect, rewrite, mirrors, cors, perBackend };
}

/** The route and match taking a request, or undefined (404). */
export function findRoute(slice: CompiledSlice, input: MatchInput): TableEntry | undefined {
  for (const entry of slice.table) if (entry.match.test(input)) return entry;
  return undefined;
}

function rpcMatch(route: RouteConfig): RoutePlan["rpc"] {
  const { match } = route;
  if (match.rpc !== undefined) return { kind: "route", pattern: match.rpc };
  const catchAll =
    (route.matches === undefined || route.matches.length <= 1) &&
    match.path === "/*" &&
    match.pathPrefix === undefined &&
    match.pathRegex === undefined &&
    !match.methods &&
    !match.query &&
    (match.headers === undefined || (Array.isArray(match.headers) ? match.headers.length === 0 : Object.keys(match.headers).length === 0));
  return catchAll ? { kind: "fallback" } : undefined;
}

/** Compiles a slice against the proxy's bindings: done once per config version, never per request. */
export function compileSlice(slice: ServiceSlice, context: CompileContext): CompiledSlice {
  const faults = slice.faults ?? [];
  const backends = new Map<string, CompiledBackend>(
    slice.backends.map((b) => [
      b.name,
      // The first rule for a backend wins, as decideFault reads them.
      { name: b.name, target: compileTarget(slice.service, b, context), healthCheck: b.healthCheck, fault: faults.find((f) => f.backend === b.name), mesh: b.type === "mesh", binding: b.type === "external" ? undefined : b.binding },
    ]),
  );
  const routes = slice.routes.map((route): RoutePlan => {
      const [from, name] = route.split.sticky?.split(":", 2) ?? [];
      const mirrored = (route.filters ?? []).flatMap((f) => (f.type === "RequestMirror" ? [f.backend] : []));
      const reached = [...Object.keys(route.split.weights), ...(route.failover ?? []), ...(route.mirror ? [route.mirror.backend] : []), ...mirrored];
      return {
        name: route.name,
        rpc: rpcMatch(route),
        filters: compileFilters(route),
        owners: expandLayout(route.layout),
        weights: route.split.weights,
        salt: `${slice.service}/${route.name}`,
        sticky: (from === "cookie" || from === "header") && name ? { from, name } : undefined,
        auth: route.auth ? { settings: route.auth, keys: keysFor(route.auth, context.keySets) } : undefined,
        rateLimits: (slice.rateLimits ?? []).filter((rule) => !rule.routes || rule.routes.includes(route.name)),
        webhook: route.webhook,
        contract: route.contract ? compileContract(route.contract) : undefined,
        timeoutMs: route.timeoutMs,
        attemptTimeoutMs: route.attemptTimeoutMs,
        retries: route.retries,
        retryStatuses: new Set(route.retries?.statuses ?? DEFAULT_RETRY_STATUSES),
        failover: (route.failover ?? []).flatMap((backend) => backends.get(backend) ?? []),
        mirror: route.mirror,
        honoursIdempotencyKey: route.honoursIdempotencyKey === true,
        idempotent: route.idempotent === true,
        relays: reached.some((backend) => backends.get(backend)?.mesh === true),
      };
    });
  return {
    service: slice.service,
    version: slice.version,
    policy: slice.policy,
    probe: slice.probe,
    backends,
    checked: [...backends.values()].filter((b) => b.healthCheck !== undefined),
    routes,
    // An RPC route's match takes RPC calls only: HTTP requests never see it.
    table: orderMatches(slice.routes, slice.precedence).flatMap((entry) => {
      const route = routes[entry.routeIndex];
      return route && entry.match.rpc === undefined ? [{ route, match: compileMatch(entry.match, slice.regexes ?? {}) }] : [];
    }),
  };
}
