/**
 * The mesh configuration: what operators write (JSON on the wire, `PUT /admin/config`) and what the
 * control plane stores. Shape checks live here as zod schemas; checks that need the whole document
 * (unknown backends, shadowed routes, loops) live in `validate.ts`.
 */
import * as z from "zod";
import { EgressDataPolicy, RouteAuth, RouteContract, RouteWebhook, VendorAuth } from "./policy-schemas.ts";
import { regexProblem } from "./regex.ts";

/** Adds an issue when a `RegularExpression` value is not valid RE2. */
function regexValue(m: { type: "Exact" | "RegularExpression"; value: string }, ctx: z.RefinementCtx): void {
  if (m.type !== "RegularExpression") return;
  const problem = m.value.length > MAX_REGEX_LENGTH ? `longer than ${MAX_REGEX_LENGTH} characters` : regexProblem(m.value);
  if (problem) ctx.addIssue({ code: "custom", path: ["value"], message: `not a valid RE2 regular expression: ${problem}` });
}

/** Adds an issue for each name listed twice (the Gateway API ignores repeats; Weft refuses them). */
function duplicates(names: string[], path: Array<string | number>, ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  names.forEach((name, i) => {
    if (seen.has(name)) ctx.addIssue({ code: "custom", path: [...path, i, "name"], message: `'${name}' is matched twice` });
    seen.add(name);
  });
}

/** Names of services, backends and routes: DNS-label-like so they are safe in URLs, metrics and logs. */
export const Name = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, "use lowercase letters, digits and '-' (like a DNS label)");

/** An env binding name as wrangler declares it (`PIM_V1`). */
const BindingName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid binding name such as PIM_V1");

export const HttpMethod = z.enum(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
export type HttpMethod = z.infer<typeof HttpMethod>;

/**
 * Active health checks: the proxy sends `GET path` to the backend every `intervalSeconds` while it
 * serves traffic; failures feed the same outlier ejection as real requests.
 */
export const HealthCheck = z.strictObject({
  path: z.string().regex(/^\/[^*?#\s]*$/, "an exact path starting with '/'"),
  intervalSeconds: z.int().min(1).max(300).default(10),
  timeoutMs: z.int().min(1).max(30_000).default(2_000),
});
export type HealthCheck = z.infer<typeof HealthCheck>;

/** An internal worker, reached through a service binding of the service's proxy. */
export const WorkerBackend = z.strictObject({
  name: Name,
  type: z.literal("worker"),
  binding: BindingName,
  healthCheck: HealthCheck.optional(),
});

/**
 * Another Weft service, reached through its proxy (a binding of this proxy). Declaring the target
 * service lets the control plane refuse routing loops before they are stored.
 */
export const MeshBackend = z.strictObject({
  name: Name,
  type: z.literal("mesh"),
  service: Name,
  binding: BindingName,
  healthCheck: HealthCheck.optional(),
});

/**
 * A third party. Only `origin` is ever contacted for this backend: the proxy builds every URL from
 * it. A path in `origin` is a base path the request path is appended to.
 */
export const ExternalBackend = z.strictObject({
  name: Name,
  type: z.literal("external"),
  /** One origin, or several (a provider's regional endpoints) balanced latency-aware. */
  origin: z.union([
    z.url({ protocol: /^https?$/ }).describe("https://host[:port][/base-path]"),
    z.array(z.url({ protocol: /^https?$/ })).min(1).max(16),
  ]),
  /** The provider's name: the `aud` of the tokens Weft signs for it. Defaults to the backend name. */
  provider: Name.optional(),
  /** JSON fields removed or masked before a request leaves for this provider. */
  egress: EgressDataPolicy.optional(),
  /** The credential the proxy presents to this provider (default: a Weft-signed JWT). */
  auth: VendorAuth.optional(),
  healthCheck: HealthCheck.optional(),
  /**
   * The provider's quota, shared by every service in the mesh that calls this provider (counted per
   * provider name, not per backend or caller): the mesh refuses (429) rather than exceed it.
   */
  quota: z
    .strictObject({
      limit: z.int().min(1).max(1_000_000_000),
      periodSeconds: z.int().min(1).max(86_400),
      algorithm: z.enum(["fixed-window", "sliding-window", "token-bucket"]).default("fixed-window"),
      burst: z.int().min(1).optional(),
    })
    .optional(),
});

export const Backend = z.discriminatedUnion("type", [WorkerBackend, MeshBackend, ExternalBackend]);
export type Backend = z.infer<typeof Backend>;

/**
 * A path pattern: either an exact path (`/health`) or a prefix ending in `*` (`/products/*`, `/orders*`,
 * `/*`). Prefix-only patterns keep "is this route shadowed?" decidable exactly.
 */
export const PathPattern = z
  .string()
  .regex(/^\/[^*?#\s]*\*?$/, "must start with '/' and may end with a single '*' (no '?', '#' or inner '*')");

/**
 * A Workers RPC method name (`getUser`), a prefix pattern (`get*`), or `*` for every method. RPC
 * calls (`env.USERS.getUser(id)` on a binding to the service's proxy) match routes by method name.
 */
export const RpcMethodPattern = z
  .string()
  .max(128)
  // A named entrypoint's methods are `Entrypoint.method` (Admin.purge, Admin.*): a name without a dot is the default entrypoint's.
  .regex(/^(\*|([A-Za-z_$][A-Za-z0-9_$]*\.)?([A-Za-z_$][A-Za-z0-9_$]*\*?|\*))$/, "an RPC method name such as getUser, a prefix such as get*, a named entrypoint's such as Admin.purge or Admin.*, or *");

/** Longest regular expression accepted in a match (RE2 syntax, compiled once per config version). */
export const MAX_REGEX_LENGTH = 1024;

/**
 * A regular expression in RE2 syntax (the dialect Envoy and the Gateway API's implementations use):
 * matched in linear time, so an admin's pattern cannot make a request backtrack for seconds. Matched
 * against the whole value (full match), as Envoy's `safe_regex` does.
 */
export const Regex = z
  .string()
  .min(1)
  .max(MAX_REGEX_LENGTH)
  .superRefine((source, ctx) => {
    const problem = regexProblem(source);
    if (problem) ctx.addIssue({ code: "custom", message: `not a valid RE2 regular expression: ${problem}` });
  });

/** How a header or query parameter value is compared: exactly, or as an RE2 full match. */
export const ValueMatchType = z.enum(["Exact", "RegularExpression"]);

/** One header condition of a match. Header names are case-insensitive. */
export const HeaderMatch = z
  .strictObject({
    name: z.string().min(1).max(256).regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, "must be an HTTP header name"),
    type: ValueMatchType.default("Exact"),
    value: z.string().max(4096),
  })
  .superRefine((m, ctx) => regexValue(m, ctx));
export type HeaderMatch = z.infer<typeof HeaderMatch>;

/** One query parameter condition of a match. Names are case-sensitive; the first value of the name is compared. */
export const QueryParamMatch = z
  .strictObject({
    name: z.string().min(1).max(256).regex(/^[^\s&=#]+$/, "must be a query parameter name"),
    type: ValueMatchType.default("Exact"),
    value: z.string().max(4096),
  })
  .superRefine((m, ctx) => regexValue(m, ctx));
export type QueryParamMatch = z.infer<typeof QueryParamMatch>;

/** A path written for the Gateway API's `Exact` and `PathPrefix` kinds: absolute, without query, fragment or `//`. */
const MatchPath = z
  .string()
  .max(1024)
  .regex(/^\/[^?#\s]*$/, "must be an absolute path without '?', '#' or spaces")
  .refine((p) => !p.includes("//") && !/\/\.\.?(\/|$)/.test(p), "must not contain '//', '/./' or '/../' (requests are matched on their canonical path)");

/**
 * Which requests a route takes. Every condition given must hold. The path is one of: `path` (an
 * exact path, or a raw prefix ending in `*`), `pathPrefix` (whole segments: `/abc` matches `/abc`
 * and `/abc/def`, not `/abcd`) or `pathRegex` (RE2, full match).
 */
export const RouteMatch = z
  .strictObject({
    path: PathPattern.default("/*"),
    /**
     * Makes this an RPC route: it matches Workers RPC calls to these methods and no HTTP requests.
     * RPC calls no `rpc` route matches take the first catch-all route (path `/*`, no other conditions).
     */
    rpc: RpcMethodPattern.optional(),
    /** Gateway API `PathPrefix`: matches whole path segments. */
    pathPrefix: MatchPath.optional(),
    /** Gateway API `RegularExpression` on the path (RE2, full match against the canonical path). */
    pathRegex: Regex.optional(),
    methods: z.array(HttpMethod).min(1).optional(),
    /**
     * Header conditions: an object of exact values (`{"x-env": "canary"}`), or a list of
     * `{name, type, value}` with `type` `Exact` or `RegularExpression`. Names are case-insensitive.
     */
    headers: z
      .union([
        z.record(z.string().regex(/^[A-Za-z0-9-]+$/, "must be an HTTP header name"), z.string().max(256)),
        z.array(HeaderMatch).min(1).max(16),
      ])
      .optional(),
    /** Query parameter conditions (`Exact` or `RegularExpression`). */
    query: z.array(QueryParamMatch).min(1).max(16).optional(),
  })
  .superRefine((m, ctx) => {
    const kinds = [m.path !== "/*", m.pathPrefix !== undefined, m.pathRegex !== undefined].filter(Boolean).length;
    if (kinds > 1) ctx.addIssue({ code: "custom", path: ["path"], message: "give one of 'path', 'pathPrefix' and 'pathRegex'" });
    if (Array.isArray(m.headers)) duplicates(m.headers.map((h) => h.name.toLowerCase()), ["headers"], ctx);
    if (m.query) duplicates(m.query.map((q) => q.name), ["query"], ctx);
  });
export type RouteMatch = z.infer<typeof RouteMatch>;

/** `cookie:NAME` or `header:NAME`; absent means every request is placed independently. */
export const StickyKey = z
  .string()
  .regex(/^(cookie|header):[A-Za-z0-9_.-]+$/, "must be 'cookie:NAME' or 'header:NAME'");
export type StickyKey = z.infer<typeof StickyKey>;

/** Integer percentages per backend name. The sum (100) is checked in `validate.ts`. */
export const Weights = z.record(Name, z.int().min(0, "weights are 0-100").max(100, "weights are 0-100"));
export type Weights = z.infer<typeof Weights>;

export const Split = z.strictObject({
  weights: Weights,
  sticky: StickyKey.optional(),
});
export type Split = z.infer<typeof Split>;

/** How a route retries: total attempts, on which backend statuses, and how long to wait between them. */
export const RetryPolicy = z.strictObject({
  /** Attempts in all, the first included. */
  attempts: z.int().min(1).max(5).default(3),
  /** Backend statuses worth another attempt (connect errors and timeouts always are). */
  statuses: z.array(z.int().min(500).max(599)).default([502, 503, 504]),
  /** `adaptive` waits about as long as this backend's failures have taken to clear; or fixed exponential backoff with jitter. */
  backoff: z
    .union([z.literal("adaptive"), z.strictObject({ baseMs: z.int().min(0).max(5_000), capMs: z.int().min(0).max(30_000) })])
    .default("adaptive"),
});
export type RetryPolicy = z.infer<typeof RetryPolicy>;

/** Fault injection for rehearsals: abort and/or delay a share of the requests to one backend. */
export const FaultRule = z
  .strictObject({
    backend: Name,
    abort: z.strictObject({ percent: z.number().min(0).max(100), status: z.int().min(400).max(599) }).optional(),
    delay: z.strictObject({ percent: z.number().min(0).max(100), ms: z.int().min(0).max(60_000) }).optional(),
  })
  .refine((rule) => rule.abort !== undefined || rule.delay !== undefined, "a fault needs `abort` or `delay`");
export type FaultRule = z.infer<typeof FaultRule>;

/** Copy a share of a route's requests to another backend; its responses are discarded. */
export const MirrorPolicy = z.strictObject({
  backend: Name,
  percent: z.number().min(0).max(100),
  /** Mirror requests that may not be sent twice (POST without Idempotency-Key) too. Off by default. */
  unsafe: z.boolean().default(false),
});
export type MirrorPolicy = z.infer<typeof MirrorPolicy>;

/**
 * Headers no route filter may set, add or remove: the mesh's own (`x-weft-*`: caller identity,
 * verified claims, deadlines), the trace context the proxy manages, and the framing headers the
 * runtime owns. A filter that could write `x-weft-caller` would let a route forge an identity.
 */
export function protectedHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return lower.startsWith("x-weft-") || PROTECTED_HEADERS.has(lower);
}
const PROTECTED_HEADERS = new Set([
  "traceparent",
  "tracestate",
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "proxy-connection",
]);

const ModifiedHeaderName = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, "must be an HTTP header name")
  .refine((name) => !protectedHeader(name), "x-weft-*, trace context, Host and framing headers are the mesh's: a filter may not change them");

const HeaderValue = z.strictObject({ name: ModifiedHeaderName, value: z.string().max(4096).regex(/^[^\r\n\0]*$/, "no CR, LF or NUL in header values") });

/** Gateway API `HTTPHeaderFilter`: set (replace), add (append) and remove headers, applied in that order's spirit: remove, then set, then add. */
const HeaderModifierShape = {
  set: z.array(HeaderValue).min(1).max(16).optional(),
  add: z.array(HeaderValue).min(1).max(16).optional(),
  remove: z.array(ModifiedHeaderName).min(1).max(16).optional(),
};

/** A hostname a redirect or rewrite may send to: a DNS name, without port or wildcard. */
const FilterHostname = z
  .string()
  .max(253)
  .regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, "must be a DNS hostname (no port, no wildcard)");

/** Gateway API `HTTPPathModifier`. `ReplacePrefixMatch` needs the route to match by path prefix. */
export const PathModifier = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("ReplaceFullPath"), replaceFullPath: MatchPath }),
  z.strictObject({ type: z.literal("ReplacePrefixMatch"), replacePrefixMatch: MatchPath }),
]);
export type PathModifier = z.infer<typeof PathModifier>;

export const RequestHeaderModifier = z.strictObject({ type: z.literal("RequestHeaderModifier"), ...HeaderModifierShape });
export const ResponseHeaderModifier = z.strictObject({ type: z.literal("ResponseHeaderModifier"), ...HeaderModifierShape });
/** Header changes of one filter. */
export type HeaderModifier = Omit<z.infer<typeof RequestHeaderModifier>, "type">;

/** Gateway API `HTTPRequestRedirectFilter`: answer with a redirect instead of forwarding. */
export const RequestRedirect = z.strictObject({
  type: z.literal("RequestRedirect"),
  scheme: z.enum(["http", "https"]).optional(),
  hostname: FilterHostname.optional(),
  port: z.int().min(1).max(65_535).optional(),
  path: PathModifier.optional(),
  statusCode: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)]).default(302),
});
export type RequestRedirect = z.infer<typeof RequestRedirect>;

/** Gateway API `HTTPURLRewriteFilter`: the backend receives another host and/or path. */
export const UrlRewrite = z
  .strictObject({
    type: z.literal("URLRewrite"),
    hostname: FilterHostname.optional(),
    path: PathModifier.optional(),
  })
  .refine((f) => f.hostname !== undefined || f.path !== undefined, "a URLRewrite needs 'hostname' or 'path'");
export type UrlRewrite = z.infer<typeof UrlRewrite>;

/**
 * Gateway API `HTTPRequestMirrorFilter`: a copy of a share of the requests (`percent`, or
 * `fraction` numerator/denominator; all when neither) goes to another backend of the service, its
 * answer discarded. Like the route's `mirror`, requests that may not be sent twice (a POST without
 * Idempotency-Key) are not copied unless `unsafe` is set. A route may have several.
 */
export const RequestMirror = z
  .strictObject({
    type: z.literal("RequestMirror"),
    backend: Name,
    percent: z.number().min(0).max(100).optional(),
    fraction: z.strictObject({ numerator: z.int().min(0), denominator: z.int().min(1).max(1_000_000).default(100) }).optional(),
    unsafe: z.boolean().optional(),
  })
  .refine((f) => f.percent === undefined || f.fraction === undefined, "give 'percent' or 'fraction', not both")
  .refine((f) => f.fraction === undefined || f.fraction.numerator <= f.fraction.denominator, "a fraction's numerator may not exceed its denominator");
export type RequestMirror = z.infer<typeof RequestMirror>;

const CorsOrigin = z
  .string()
  .max(253)
  .regex(/^(\*|https?:\/\/(\*|\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?)$/, "must be '*' or scheme://host[:port], the host optionally starting with '*.'");
const CorsToken = z.string().min(1).max(256).regex(/^(\*|[A-Za-z0-9!#$%&'*+.^_`|~-]+)$/, "must be '*' or an HTTP token");

/**
 * Gateway API `HTTPCORSFilter`: the proxy answers preflights for allowed origins itself and adds
 * `Access-Control-Allow-Origin` (always the request's origin, never `*`) to their answers.
 */
export const Cors = z
  .strictObject({
    type: z.literal("CORS"),
    allowOrigins: z.array(CorsOrigin).min(1).max(64),
    allowCredentials: z.boolean().optional(),
    allowMethods: z.array(CorsToken).min(1).max(16).optional(),
    allowHeaders: z.array(CorsToken).min(1).max(64).optional(),
    exposeHeaders: z.array(CorsToken).min(1).max(64).optional(),
    maxAge: z.int().min(1).max(86_400).optional(),
  })
  .refine((f) => !(f.allowOrigins.includes("*") && f.allowOrigins.length > 1), "'*' may not be listed with other origins");
export type Cors = z.infer<typeof Cors>;

/** A route's filters, run in the proxy after the route matched (workers/proxy/index.ts). */
export const RouteFilter = z.union([RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, UrlRewrite, RequestMirror, Cors]);
export type RouteFilter = z.infer<typeof RouteFilter>;

/** Filters that may be given per backend (applied only when that backend is chosen). */
export const BackendFilter = z.union([RequestHeaderModifier, ResponseHeaderModifier]);
export type BackendFilter = z.infer<typeof BackendFilter>;

/** Whether a match selects a path prefix, so that `ReplacePrefixMatch` has a prefix to replace. */
export function matchPrefix(match: RouteMatch): string | undefined {
  if (match.pathPrefix !== undefined) return match.pathPrefix;
  if (match.pathRegex === undefined && match.path.endsWith("*")) return match.path.slice(0, -1);
  return undefined;
}

function checkFilters(route: { match?: RouteMatch | undefined; matches?: RouteMatch[] | undefined; filters?: RouteFilter[] | undefined }, ctx: z.RefinementCtx): void {
  const filters = route.filters ?? [];
  const seen = new Set<string>();
  filters.forEach((filter, i) => {
    // Several mirrors are allowed; every other filter type at most once (as the Gateway API says).
    if (seen.has(filter.type) && filter.type !== "RequestMirror") ctx.addIssue({ code: "custom", path: ["filters", i, "type"], message: `at most one ${filter.type} filter per route` });
    seen.add(filter.type);
    if (filter.type !== "RequestRedirect" && filter.type !== "URLRewrite") return;
    if (filter.path?.type !== "ReplacePrefixMatch") return;
    const matches = route.matches ?? [route.match ?? { path: "/*" }];
    if (!matches.every((m) => matchPrefix(m) !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["filters", i, "path"], message: "ReplacePrefixMatch needs every match of the route to be a path prefix ('pathPrefix' or a 'path' ending in '*')" });
    }
  });
  if (seen.has("RequestRedirect") && seen.has("URLRewrite")) {
    ctx.addIssue({ code: "custom", path: ["filters"], message: "a route may not both redirect and rewrite (the Gateway API forbids it)" });
  }
}

export const Route = z.strictObject({
  /** Stable identity of the route across config versions (sticky layouts follow it). */
  name: Name.optional(),
  /** Which requests the route takes (default: every path). */
  match: RouteMatch.optional(),
  /**
   * Several matches, any of which selects the route (the Gateway API's `matches`). When `match` is
   * given too it must equal the first, as the stored form has both.
   */
  matches: z.array(RouteMatch).min(1).max(16).optional(),
  /** Request and response changes, redirects and rewrites, in the Gateway API's terms. */
  filters: z.array(RouteFilter).min(1).max(16).optional(),
  /** Filters applied only when the split picks that backend. */
  backendFilters: z.record(Name, z.array(BackendFilter).min(1).max(4)).optional(),
  split: Split,
  /** End-user JWT authentication for this route. */
  auth: RouteAuth.optional(),
  /** JSON Schemas for request and/or response bodies, logged or enforced. */
  contract: RouteContract.optional(),
  /** Inbound webhook signature verification (the provider calls this route). */
  webhook: RouteWebhook.optional(),
  /**
   * How long the proxy waits for the backend. Third parties always get one (default 15 s); for
   * internal workers it is opt-in, because a timer costs ~25 µs per request on the hot path and the
   * platform already bounds every invocation.
   */
  timeoutMs: z.int().min(1).max(300_000).optional(),
  /**
   * How long one attempt may take (the Gateway API's `timeouts.backendRequest`): an attempt that
   * takes longer ends with 504 and, when the route retries 504, is retried within `timeoutMs`.
   */
  attemptTimeoutMs: z.int().min(1).max(300_000).optional(),
  /** Retries of requests that may be sent twice (GET, HEAD, OPTIONS, PUT, DELETE; see `honoursIdempotencyKey`). */
  retries: RetryPolicy.optional(),
  /**
   * The backend deduplicates requests by their `Idempotency-Key` header (as Stripe's API does), so a
   * POST or PATCH carrying one may be retried and failed over. Off by default: a client can put a key
   * on any request, and a backend that ignores it would act twice.
   */
  honoursIdempotencyKey: z.boolean().optional(),
  /**
   * Workers RPC calls on this route may be made twice (the methods are idempotent): only then do its
   * `retries` and `failover` apply to RPC calls. HTTP requests follow their methods' own rules.
   */
  idempotent: z.boolean().optional(),
  /** Backends to try, in order, when the chosen one is ejected or out of retries. */
  failover: z.array(Name).min(1).optional(),
  /** Copy a share of requests to another backend (responses discarded, off the response path). */
  mirror: MirrorPolicy.optional(),
}).superRefine((route, ctx) => {
  if (route.match && route.matches && JSON.stringify(route.match) !== JSON.stringify(route.matches[0])) {
    ctx.addIssue({ code: "custom", path: ["match"], message: "give 'match' or 'matches' (when both are given, 'match' must equal the first of 'matches')" });
  }
  checkFilters(route, ctx);
  if (route.attemptTimeoutMs !== undefined && route.timeoutMs !== undefined && route.attemptTimeoutMs > route.timeoutMs) {
    ctx.addIssue({ code: "custom", path: ["attemptTimeoutMs"], message: "an attempt's timeout may not exceed the request's (timeoutMs)" });
  }
});
export type RouteInput = z.input<typeof Route>;

/** A caller identity in a policy: a service name, `internet`, or `*` for anyone. */
const Identity = z.string().max(63).regex(/^(\*|[a-z0-9]([a-z0-9-]*[a-z0-9])?)$/, "use a service name, 'internet' or '*'");

/**
 * One authorization rule; an absent field matches everything. `from` matches the request's origin
 * (on whose behalf it is made: an internet request relayed by another service's proxy is still
 * `internet`); `peers` matches the immediate caller (the relaying proxy's service, or the origin
 * itself on a direct call). `methods` listing GET also match HEAD (see shared/authorize.ts).
 */
export const PolicyRule = z.strictObject({
  from: z.array(Identity).min(1).optional(),
  peers: z.array(Identity).min(1).optional(),
  methods: z.array(HttpMethod).min(1).optional(),
  paths: z.array(PathPattern).min(1).optional(),
  /** Workers RPC methods (names or `prefix*`). A rule with `rpc` matches only RPC calls; one with `methods` or `paths` only HTTP requests. */
  rpc: z.array(RpcMethodPattern).min(1).optional(),
});
export type PolicyRule = z.infer<typeof PolicyRule>;

/** Who may call a service. With a policy, anything not allowed is denied; a deny rule always wins. */
export const Policy = z.strictObject({
  allow: z.array(PolicyRule).default([]),
  deny: z.array(PolicyRule).default([]),
});
export type Policy = z.infer<typeof Policy>;

/** One rate limit of a service: per key, per period (or a token bucket), optionally for some routes only. */
export const RateLimitRule = z.strictObject({
  /** Names the counter and the RateLimit headers; defaults to `limit-<index>`. */
  name: Name.optional(),
  /** What is counted: the caller identity, the client IP, a request header, or a verified JWT claim. */
  key: z.string().regex(/^(caller|ip|header:[A-Za-z0-9-]+|claim:[A-Za-z0-9_.-]+)$/, "use 'caller', 'ip', 'header:NAME' or 'claim:NAME'"),
  limit: z.int().min(1).max(1_000_000_000),
  periodSeconds: z.int().min(1).max(86_400),
  algorithm: z.enum(["fixed-window", "sliding-window", "token-bucket"]).default("fixed-window"),
  /** Token bucket size (defaults to `limit`). */
  burst: z.int().min(1).optional(),
  /** Limit only these routes (default: every route of the service). */
  routes: z.array(Name).min(1).optional(),
  /** When the counters cannot be reached: let requests through (default) or refuse them. */
  failMode: z.enum(["open", "closed"]).default("open"),
});
export type RateLimitRule = z.infer<typeof RateLimitRule>;

/** The body of `PUT /admin/services/{service}/ratelimit`. */
export const RateLimitsUpdate = z.strictObject({ limits: z.array(RateLimitRule).max(16) });

/**
 * A service's name: a {@link Name} other than `internet`, which is the identity the mesh gives every
 * caller from outside (policies' `from: ["internet"]`): a service of that name would be
 * indistinguishable from the internet in policies, metrics and the service graph.
 */
const ServiceName = Name.refine((name) => name !== "internet", { message: "'internet' is reserved: it names callers from outside the mesh" });

export const Service = z.strictObject({
  name: ServiceName,
  backends: z.array(Backend).min(1, "a service needs at least one backend"),
  routes: z.array(Route).min(1, "a service needs at least one route"),
  policy: Policy.optional(),
  faults: z.array(FaultRule).optional(),
  rateLimits: z.array(RateLimitRule).max(16).optional(),
  /**
   * How a request's route is chosen: `listed` (default) takes the first route in the list that
   * matches; `gateway-api` orders every match by the Gateway API's HTTPRoute precedence (exact path,
   * then longest prefix, method, most headers, most query parameters; ties in list order).
   */
  precedence: z.enum(["listed", "gateway-api"]).optional(),
});
export type ServiceInput = z.input<typeof Service>;

export const MeshConfig = z.strictObject({
  services: z.array(Service),
});
export type MeshConfigInput = z.input<typeof MeshConfig>;

/** A route after parsing: defaults applied and a name always present. */
export interface RouteConfig {
  name: string;
  /** The route's (first) match. */
  match: RouteMatch;
  /** Every match of a route with several (the first equals `match`); absent for one. */
  matches?: RouteMatch[];
  filters?: RouteFilter[];
  backendFilters?: Record<string, BackendFilter[]>;
  split: Split;
  auth?: RouteAuth;
  contract?: RouteContract;
  webhook?: RouteWebhook;
  timeoutMs?: number;
  attemptTimeoutMs?: number;
  retries?: RetryPolicy;
  failover?: string[];
  mirror?: MirrorPolicy;
  honoursIdempotencyKey?: boolean;
  idempotent?: boolean;
}
/** A service after parsing. */
export interface ServiceConfig {
  name: string;
  backends: Backend[];
  routes: RouteConfig[];
  policy?: Policy;
  faults?: FaultRule[];
  rateLimits?: RateLimitRule[];
  precedence?: "listed" | "gateway-api";
}
/** A whole mesh after parsing. */
export interface MeshConfig {
  services: ServiceConfig[];
}

/** The name a route gets when the operator gave none: readable and stable while its match is. */
export function defaultRouteName(match: RouteMatch, index: number): string {
  const slug = (match.pathPrefix ?? (match.pathRegex !== undefined ? "regex" : match.path))
    .toLowerCase()
    .replace(/\*/g, "")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return `${slug || "root"}-${index}`;
}

/** Fills in route names so every later step can rely on them. */
export function normalizeService(service: z.infer<typeof Service>): ServiceConfig {
  return {
    name: service.name,
    backends: service.backends,
    routes: service.routes.map((route, i) => {
      const { match, matches, ...rest } = route;
      const first = match ?? matches?.[0] ?? { path: "/*" };
      return {
        ...rest,
        name: route.name ?? defaultRouteName(first, i),
        match: first,
        ...(matches && matches.length > 1 ? { matches } : {}),
      };
    }),
    ...(service.policy ? { policy: service.policy } : {}),
    ...(service.faults ? { faults: service.faults } : {}),
    ...(service.rateLimits ? { rateLimits: service.rateLimits.map((rule, i) => ({ ...rule, name: rule.name ?? `limit-${i}` })) } : {}),
    ...(service.precedence ? { precedence: service.precedence } : {}),
  };
}

/** The request body of `PUT /admin/services/{service}/split`. */
export const SplitUpdate = z.strictObject({
  weights: Weights,
  sticky: StickyKey.nullable().optional(),
});
export type SplitUpdate = z.infer<typeof SplitUpdate>;

/** The request body of `POST /admin/config/rollback`. */
export const RollbackRequest = z.strictObject({
  version: z.int().min(1),
});

/** A route's resilience settings, as `PUT /admin/services/{service}/resilience` reads and writes them. */
export const RouteResilience = z.strictObject({
  timeoutMs: z.int().min(1).max(300_000).optional(),
  retries: RetryPolicy.optional(),
  failover: z.array(Name).min(1).optional(),
  mirror: MirrorPolicy.optional(),
  honoursIdempotencyKey: z.boolean().optional(),
  idempotent: z.boolean().optional(),
});
export type RouteResilience = z.infer<typeof RouteResilience>;

/** The body of `PUT /admin/services/{service}/resilience`: settings by route name (others are cleared). */
export const ServiceResilience = z.strictObject({
  routes: z.record(Name, RouteResilience),
});
export type ServiceResilience = z.infer<typeof ServiceResilience>;

/** The body of `PUT /admin/services/{service}/faults`. */
export const FaultsUpdate = z.strictObject({
  faults: z.array(FaultRule),
});
