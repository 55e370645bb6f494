/**
 * What the control plane stores per service and what a proxy loads: only its own service's slice,
 * so a proxy in a mesh of thousands of services does the same work as in a mesh of five.
 */
import type { Backend, FaultRule, Policy, RateLimitRule, RouteConfig, ServiceConfig } from "./config.ts";
import type { IngestReply, TelemetryBatch } from "./metrics.ts";
import type { AheadAsk, Grant, LeaseAsk, LimitSpec } from "./rate-limit.ts";
import type { RolloutProbe } from "./rollout.ts";
import type { RegexProgram } from "./regex-program.ts";
import { regexSources } from "./route-match.ts";
import type { Layout } from "./split.ts";

/** A service as stored: the operator's config plus the sticky slot layout of every route. */
export interface StoredService {
  config: ServiceConfig;
  /** Slot layouts by route name; managed by the control plane, never written by operators. */
  layouts: Record<string, Layout>;
  /** The rollout that owns one route's split while it runs; only that rollout may change it. */
  rollout?: RolloutLock;
}

/** A running rollout's hold on a route's split. */
export interface RolloutLock {
  id: string;
  route: string;
  /** The candidate backend. */
  backend: string;
  probe?: RolloutProbe;
}

/** Synthetic requests the proxy sends to a rollout's candidate (see `RolloutProbe`). */
export interface ProbeSlice extends RolloutProbe {
  rollout: string;
  backend: string;
}

/** A route as a proxy sees it. */
export interface RouteSlice extends RouteConfig {
  layout: Layout;
}

/** Everything one service's proxy needs. `version` is the config version that last changed it. */
export interface ServiceSlice {
  service: string;
  version: number;
  backends: Backend[];
  routes: RouteSlice[];
  policy?: Policy;
  faults?: FaultRule[];
  rateLimits?: RateLimitRule[];
  probe?: ProbeSlice;
  /** How the proxy orders the routes' matches (absent: as listed). */
  precedence?: "listed" | "gateway-api";
  /** The routes' regular expressions compiled, by source: the proxy runs these and never parses a pattern. */
  regexes?: Record<string, RegexProgram>;
}

/**
 * Builds the slice a proxy receives from a stored service. `compileRegex` is shared/regex.ts's
 * `compileProgram` (passed in so that this module, which the proxy imports, does not pull re2js in).
 */
export function toSlice(stored: StoredService, version: number, compileRegex: (source: string) => RegexProgram): ServiceSlice {
  const sources = regexSources(stored.config.routes);
  return {
    service: stored.config.name,
    version,
    backends: stored.config.backends,
    routes: stored.config.routes.map((route) => ({ ...route, layout: stored.layouts[route.name] ?? [] })),
    ...(stored.config.policy ? { policy: stored.config.policy } : {}),
    ...(stored.config.faults ? { faults: stored.config.faults } : {}),
    ...(stored.config.rateLimits ? { rateLimits: stored.config.rateLimits } : {}),
    ...(stored.config.precedence ? { precedence: stored.config.precedence } : {}),
    ...(sources.length > 0 ? { regexes: Object.fromEntries(sources.map((source) => [source, compileRegex(source)])) } : {}),
    ...(stored.rollout?.probe ? { probe: { ...stored.rollout.probe, rollout: stored.rollout.id, backend: stored.rollout.backend } } : {}),
  };
}

/** Claims a proxy binds to one egress request; the signer adds iss, iat, exp and jti. */
export interface EgressClaims {
  sub: string;
  aud: string;
  htm: string;
  htu: string;
  body_sha256: string;
}

/**
 * What a proxy may ask of the control plane (the ConfigService entrypoint, over its CONTROL_PLANE
 * binding): its own slice, tokens for its calls to third parties and rate limits, and a place for
 * its telemetry.
 */
export interface ControlPlaneApi {
  readSlice(service: string, knownVersion: number): Promise<SliceRead>;
  signEgress(service: string, claims: EgressClaims): Promise<{ token: string; kid: string }>;
  /**
   * Leases up to `want` tokens of one rate-limit counter (`counter` = service/limit/key digest, see
   * `counterName`), and a standing share of its next windows when `ahead` asks for one.
   */
  leaseTokens(counter: string, spec: LimitSpec, want: number, ahead?: AheadAsk): Promise<Omit<Grant, "state">>;
  /** Several leases in one call (at most `MAX_LEASE_BATCH`), answered in order. */
  leaseTokensBatch(asks: LeaseAsk[]): Promise<Array<Omit<Grant, "state">>>;
  /** Hands a batch of golden metrics and tap events to the service's telemetry shard. */
  recordTelemetry(batch: TelemetryBatch): Promise<IngestReply>;
  /**
   * Records a verified webhook delivery of `service` (`key`: SHA-256 hex of its replay key) for
   * `ttlSeconds`; "replay" when it was already recorded, "full" when the store is at its bound.
   */
  claimWebhookDelivery(service: string, key: string, ttlSeconds: number): Promise<"first" | "replay" | "full">;
  /** An OAuth 2.0 client-credentials token, shared by every isolate of every proxy using that client. */
  vendorToken(service: string, request: VendorTokenRequest): Promise<{ accessToken: string; expiresAt: number }>;
}

/** What a proxy sends to get a client-credentials token; the secret is used, never stored. */
export interface VendorTokenRequest {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
  audience?: string;
  authMethod: "client_secret_basic" | "client_secret_post";
  /** The token a provider just refused with 401: replaced unless already replaced. */
  rejected?: string;
}

/**
 * How the isolates of one data center share a slice read through the Cache API (see
 * workers/proxy/config-cache.ts): under which secret cache key, and how long the entry is fresh.
 * Set by the service's SliceStore; absent from control planes older than shared reads.
 */
export interface SliceShare {
  /** 128-bit random hex, handed only to the service's own bound proxies: other workers of the zone can neither read nor overwrite the entry. */
  key: string;
  /** How long after the SliceStore answered the shared entry may be used without asking it again. */
  freshForMs: number;
}

/** Answer to "give me my slice if it changed since `knownVersion`". */
export type SliceRead =
  | { status: "unchanged"; version: number; share?: SliceShare }
  | { status: "slice"; slice: ServiceSlice; share?: SliceShare }
  | { status: "absent"; version: number; share?: SliceShare };

/**
 * The route `PUT /admin/services/{service}/split` changes when no route is named, and whose split
 * `GET /admin/services` reports: the catch-all route if there is one, else the first.
 */
export function defaultRoute<R extends RouteConfig>(routes: ReadonlyArray<R>): R | undefined {
  return (
    routes.find((r) => r.match.path === "/*" && !r.matches && !r.match.pathPrefix && !r.match.pathRegex && !r.match.methods && !r.match.headers && !r.match.query) ?? routes[0]
  );
}

/**
 * Releases an RPC result. Workers RPC results carry a disposer; calling it as soon as the plain data
 * has been used keeps the runtime from holding (and warning about) the result until GC.
 */
export function disposeRpcResult(value: unknown): void {
  if (typeof value === "object" && value !== null && Symbol.dispose in value) {
    const dispose: unknown = Reflect.get(value, Symbol.dispose);
    if (typeof dispose === "function") dispose.call(value);
  }
}
