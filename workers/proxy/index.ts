/**
 * The Weft proxy: one code base, deployed once per service (`wrangler deploy --env <service>`).
 * Every call into the service passes this chain, top to bottom, in this order:
 *
 *   identity → trace → authorization → route → redirect → authentication → rate limit → contract →
 *   rewrite + request headers → split → resilience + forward → response contract → response
 *   headers → telemetry
 *
 * Each step is one concern with one result shape: it continues with a value, or stops the chain
 * with a problem response. What a route needs is decided once per config version (plan.ts); a step
 * the route does not use costs a property read. Every request, whatever its route, leaves through
 * the one `send` (send.ts), which records each attempt's outcome for outlier detection, rollouts and
 * metrics. Debug headers only add headers to the response; they never change the path taken.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import type { JWTPayload } from "jose";
import { authorize } from "../../shared/authorize.ts";
import { isPreflight, preflightHeaders, responseHeaders as corsResponseHeaders } from "../../shared/cors.ts";
import { applyHeaderModifier, redirectLocation, rewrittenUrl, type FilterRequest } from "../../shared/filters.ts";
import { canonicalizePath, withCanonicalPath } from "../../shared/path.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { HeaderModifier } from "../../shared/config.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { CLAIMS_HEADER, encodeClaims } from "../../shared/user-auth.ts";
import { healthyOwners } from "../../shared/resilience.ts";
import { capped, pathOf } from "./bounded.ts";
import { authenticateUser, checkRequestContract, checkResponseContract } from "./checks.ts";
import type { SliceState } from "./config-cache.ts";
import { MAX_REQUEST_BYTES } from "./forward.ts";
import { deadlineOf, identify, identityEdits, INTERNET, type Identity } from "./identity.ts";
import { backendRequest, HeaderEdits, type Outbound } from "./outbound.ts";
import { findRoute, type CompiledBackend, type CompiledSlice, type RoutePlan } from "./plan.ts";
import { checkHealth, probeCandidate } from "./probes.ts";
import { mirror, send, type Delivery } from "./send.ts";
import { ServiceProxy } from "./service.ts";
import { place, type Placement } from "./split.ts";
import { beginHop, type Hop, type Trail } from "./telemetry.ts";
import { webhookStep, webhookVerification } from "./webhook.ts";
import { entrypointOf, fetchNamedEntrypoint, serveRpc, withRpcForwarding } from "./rpc.ts";

/** One proxied service per isolate in practice; keyed by service so a misconfigured env cannot mix two. */
const proxies = new Map<string, ServiceProxy>();

function proxyFor(env: ProxyEnv): ServiceProxy | Response {
  const service = env.WEFT_SERVICE;
  const known = service ? proxies.get(service) : undefined;
  if (known) return known;
  // The binding's RPC type comes from another script, which `wrangler types` cannot see from here.
  const controlPlane = env.CONTROL_PLANE as unknown as ControlPlaneApi | undefined;
  if (!service || !controlPlane) {
    return problemResponse(500, "proxy-misconfigured", "Proxy misconfigured", {
      detail: "deploy the proxy with `--env <service>` so WEFT_SERVICE and the CONTROL_PLANE binding are set",
    });
  }
  const proxy = new ServiceProxy(service, controlPlane, env);
  proxies.set(service, proxy);
  return proxy;
}

/** One request's way through the chain: what every step may read. */
interface Exchange {
  request: Request;
  /** Keeps background work (telemetry batches, config refreshes, health probes) alive after the response. */
  waitUntil: (promise: Promise<unknown>) => void;
  proxy: ServiceProxy;
  who: Identity;
  hop: Hop;
  trail: Trail;
}

/** An HTTP request into the service: the chain (see {@link serve}), then telemetry. */
function handleFetch(request: Request, env: ProxyEnv, ctx: ExecutionContext): Promise<Response> | Response {
  const proxy = proxyFor(env);
  if (proxy instanceof Response) return proxy;
  // identity: the peer from the binding's props (set by the deployer, else the internet), and the
  // origin a proxy peer relays
  const who = identify(ctx.props, request.headers);
  // trace: continue a mesh caller's trace, or sample one here
  const hop = beginHop(request, who.peer !== INTERNET, proxy.telemetry.settings.sampleRate, Date.now());
  const waitUntil = (promise: Promise<unknown>): void => ctx.waitUntil(promise);
  const exchange: Exchange = { request, waitUntil, proxy, who, hop, trail: { route: undefined, backend: undefined, attempts: 1, configVersion: undefined } };
  // telemetry: one record per request, whatever the outcome; its caller is the peer (graph edges are hops)
  const finish = (status: number): void => proxy.telemetry.finish(hop, request, who.peer, exchange.trail, status, waitUntil);
  return serve(exchange).then(
    (response) => {
      finish(response.status);
      return response;
    },
    (error: unknown) => {
      finish(500);
      throw error;
    },
  );
}

/**
 * The cron trigger (every minute): while a rollout of this service has a probe, send its
 * synthetic requests to the candidate for most of the minute, so quiet hours still give the
 * rollout traffic to judge. Cloudflare runs one invocation per trigger, not one per isolate.
 */
async function handleScheduled(env: ProxyEnv, ctx: ExecutionContext): Promise<void> {
  const proxy = proxyFor(env);
  if (proxy instanceof Response) return;
  let first = true;
  const sliceNow = async (): Promise<CompiledSlice | undefined> => {
    const state = first ? await proxy.config.fresh() : await proxy.config.current((p) => ctx.waitUntil(p));
    first = false;
    return state.kind === "ready" ? state.slice : undefined;
  };
  // Probes are the proxy's own calls: to a third party they are signed as the service itself.
  const sent = await probeCandidate(proxy, sliceNow, (slice) => proxy.egress(slice.service), { until: Date.now() + PROBE_WINDOW_MS, onBatch: () => proxy.telemetry.flush() });
  if (sent > 0) console.log(JSON.stringify({ event: "rollout-probes", service: env.WEFT_SERVICE, sent }));
}

/**
 * The proxy's entrypoint. `fetch` takes HTTP requests, `scheduled` the cron trigger, and every other
 * method name is a Workers RPC call into the service (workers/proxy/rpc.ts), forwarded after the
 * same identity, authorization, route and split steps.
 */
export default class ProxyEntrypoint extends WorkerEntrypoint<ProxyEnv> {
  override fetch(request: Request): Promise<Response> | Response {
    // A caller's binding to a backend's named entrypoint (props.entrypoint): fetch() is that entrypoint's.
    if (entrypointOf(this.ctx.props) !== undefined) return fetchNamedEntrypoint(ProxyEntrypoint.serveRpc(this, "fetch", [request]));
    return handleFetch(request, this.env, this.ctx);
  }

  /**
   * The cron trigger has no caller; `scheduled()` called on a binding to this proxy (a mesh worker's
   * `env.API.scheduled({ cron })`) does, and is forwarded to the backend like any RPC call.
   */
  override async scheduled(controller: ScheduledController): Promise<void> {
    if (identify(this.ctx.props, new Headers()).peer === INTERNET) return handleScheduled(this.env, this.ctx);
    // A cron controller carries a number; an RPC caller passes its own object (often just { cron }).
    const at: unknown = controller.scheduledTime;
    const forwarded = { cron: controller.cron, ...(typeof at === "number" ? { scheduledTime: new Date(at) } : {}) };
    const result: unknown = await ProxyEntrypoint.serveRpc(this, "scheduled", [forwarded]);
    // The backend's handler failed: so does this one, and the caller sees the same outcome.
    if (typeof result === "object" && result !== null && "outcome" in result && result.outcome !== "ok") throw new Error(`weft: the backend's scheduled handler ended with ${String(result.outcome)}`);
  }

  /** One RPC call (static: not itself a method callers could reach over RPC). */
  static serveRpc(self: ProxyEntrypoint, method: string, args: unknown[]): Promise<unknown> {
    const proxy = proxyFor(self.env);
    if (proxy instanceof Response) return Promise.reject(new Error("weft: proxy misconfigured: deploy it with `--env <service>` so WEFT_SERVICE and CONTROL_PLANE are set"));
    return serveRpc({ proxy, props: self.ctx.props, method, args, waitUntil: (p) => self.ctx.waitUntil(p) });
  }
}
withRpcForwarding(ProxyEntrypoint, (self, method, args) => ProxyEntrypoint.serveRpc(self, method, args));

/** How long one cron invocation probes: most of the minute until the next one. */
const PROBE_WINDOW_MS = 55_000;

/** The chain. Each step continues or returns its response; nothing below a step runs once it stops. */
async function serve(exchange: Exchange): Promise<Response> {
  const { request, waitUntil, proxy, who, trail } = exchange;
  // The config is at hand almost always: awaited only when it must be loaded (an await costs a turn).
  const current = proxy.config.current(waitUntil);
  const state: SliceState = current instanceof Promise ? await current : current;
  if (state.kind !== "ready") return problemResponse(503, "no-config", "Service not configured", { detail: state.detail });
  const slice = state.slice;
  trail.configVersion = slice.version;
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > MAX_REQUEST_BYTES) return problemResponse(413, "too-large", "Request body too large", { detail: `limit is ${MAX_REQUEST_BYTES} bytes` });
  // The path, canonicalised once: authorization, routing and the backend all see this same path.
  const canonical = canonicalizePath(pathOf(request.url));
  if (canonical.kind === "refuse") return problemResponse(400, "invalid-path", "Invalid request path", { detail: canonical.reason });
  const path = canonical.path;
  if (slice.checked.length > 0) checkHealth(proxy, slice, proxy.egress(slice.service), waitUntil);

  // authorization: `from` matches the origin, `peers` the immediate caller
  const decision = authorize(slice.policy, { origin: who.origin, peer: who.peer, method: request.method, path });
  if (decision.kind === "deny") {
    const through = who.peer === who.origin ? "" : ` (through '${who.peer}')`;
    return problemResponse(403, "forbidden", "Forbidden", { detail: `'${who.origin}'${through} may not ${request.method} ${path} on service '${slice.service}'`, reason: decision.reason });
  }

  // route: the first match of the route table (listed order, or the Gateway API's precedence)
  let query: URLSearchParams | undefined;
  const entry = findRoute(slice, { method: request.method, path, headers: request.headers, query: () => (query ??= new URL(request.url).searchParams) });
  if (!entry) return problemResponse(404, "no-route", "No route", { detail: `service '${slice.service}' has no route for ${request.method} ${path}` });
  const route = entry.route;
  trail.route = route.name;
  const filters = route.filters;
  const matched: FilterRequest | undefined = filters ? { url: new URL(request.url), path, prefix: entry.match.prefix } : undefined;

  // redirect and CORS preflight: the route answers itself; nothing is forwarded
  if (filters?.redirect && matched) return redirected(filters.redirect.statusCode, redirectLocation(filters.redirect, matched), filters.response);
  if (filters?.cors && isPreflight(request.method, request.headers)) return new Response(null, { status: 204, headers: preflightHeaders(filters.cors, request.headers) ?? [] });
  const edits = backendHeaders(exchange, route);

  // authentication: a verified end-user token, whose claims reach the service in x-weft-claims
  let claims: JWTPayload | undefined;
  if (route.auth) {
    const authenticated = await authenticateUser(route.auth, request);
    if (authenticated.kind === "stop") return authenticated.response;
    claims = authenticated.value;
    edits.set(CLAIMS_HEADER, encodeClaims(claims));
  }

  // webhook: a provider's signature over the raw body, verified before anything else reads it
  const outbound: Outbound = { url: canonical.changed ? withCanonicalPath(new URL(request.url), path) : undefined, body: undefined };
  if (route.webhook) {
    const hooked = await webhookStep(route.webhook, request, edits, webhookVerification(proxy.controlPlane, slice.service));
    if (hooked.kind === "stop") return hooked.response;
    outbound.body = hooked.value;
  }

  // rate limit: after authentication, so a verified claim can be the key
  const limited = route.rateLimits.length === 0 ? undefined : await proxy.limiter.check(route.rateLimits, request, who.origin, claims, waitUntil);
  if (limited?.kind === "deny") return limited.response;

  // contract (request body)
  if (route.contract) {
    const read = outbound.body instanceof ArrayBuffer ? new Request(request.url, { method: request.method, headers: request.headers, body: outbound.body }) : request;
    const checked = await checkRequestContract(slice.service, route, read);
    if (checked.kind === "stop") return checked.response;
    outbound.body = checked.value;
  }

  // rewrite + request headers: the backend gets the rewritten URL; header filters edit its copy
  if (filters?.rewrite && matched) outbound.url = rewrittenUrl(filters.rewrite, matched);
  if (filters?.request) applyHeaderModifier(filters.request, edits);

  // split: the route's weighted, sticky split; ejected backends' slots lent to healthy ones
  const avoid = proxy.health.avoiding(Date.now());
  const owners = avoid.size === 0 ? route.owners : healthyOwners(route.owners, route.weights, avoid);
  const placement = place(route, owners, request, who.peer);
  const backend = slice.backends.get(placement.decision.backend);
  if (!backend) return problemResponse(502, "no-backend", "No backend", { detail: `route '${route.name}' has no backend for this request` });
  trail.backend = backend.name;
  const backendFilters = filters?.perBackend.get(backend.name);
  if (backendFilters?.request) applyHeaderModifier(backendFilters.request, edits);

  // resilience + forward: deadline, retries, failover, faults, outlier detection, mirroring
  // A chunked body (no Content-Length) is capped as it flows.
  const stream: ReadableStream<Uint8Array> | null = request.body;
  const chunked = !outbound.body && stream && request.headers.get("content-length") === null ? capped(stream, MAX_REQUEST_BYTES) : undefined;
  if (chunked) outbound.body = chunked.stream;
  const forwarded = backendRequest(request, edits, outbound);
  // A third party's token names the service the call is for: the origin when it is one.
  const egress = proxy.egress(who.origin);
  if (route.mirror) mirror(route.mirror, route, slice.backends, forwarded, egress, waitUntil);
  for (const target of filters?.mirrors ?? []) mirror(target, route, slice.backends, forwarded, egress, waitUntil);
  const delivery = await send(proxy, route, backend, forwarded, { egress, deadlineAt: deadlineOf(request, who, route.timeoutMs, Date.now()) });
  trail.backend = delivery.backend.name;
  trail.attempts = delivery.attempts;
  if (chunked?.exceeded()) return problemResponse(413, "too-large", "Request body too large", { detail: `limit is ${MAX_REQUEST_BYTES} bytes` });

  // response contract: only the backend's own answers are checked
  const response = route.contract && delivery.fromBackend ? await checkResponseContract(slice.service, route, delivery.response) : delivery.response;

  // response headers
  const modifiers = filters ? [filters.response, filters.perBackend.get(delivery.backend.name)?.response].filter((m) => m !== undefined) : NOTHING;
  const corsHeaders = filters?.cors ? corsResponseHeaders(filters.cors, request.headers.get("origin")) : NOTHING;
  const extraHeaders = limited?.headers === undefined ? corsHeaders : corsHeaders.length === 0 ? limited.headers : [...limited.headers, ...corsHeaders];
  return respond(response, { proxy, slice, route, delivery, placement, extraHeaders, modifiers });
}

/** No response headers to add or filters to apply (shared, never changed: most requests have none). */
const NOTHING: readonly never[] = [];

/** A route's redirect: no body, the Location, and the route's response header filter. */
function redirected(status: number, location: string, modifier: HeaderModifier | undefined): Response {
  const headers = new Headers({ location });
  if (modifier) applyHeaderModifier(modifier, headers);
  return new Response(null, { status, headers });
}

/** The backend's headers so far: the identity step's (see identityEdits) and the trace step's, when the trace changed. */
function backendHeaders({ request, who, hop }: Exchange, route: RoutePlan): HeaderEdits {
  const edits = new HeaderEdits();
  identityEdits(edits, request.headers, who, route.relays);
  if (hop.dropTrace) {
    edits.remove("traceparent");
    edits.remove("tracestate");
  }
  if (hop.traceparent !== undefined) edits.set("traceparent", hop.traceparent);
  return edits;
}

/** What the response headers step adds. */
interface Decoration {
  proxy: ServiceProxy;
  slice: CompiledSlice;
  route: RoutePlan;
  delivery: Delivery & { backend: CompiledBackend };
  placement: Placement;
  /** RateLimit headers and the route's CORS headers. */
  extraHeaders: ReadonlyArray<[string, string]>;
  /** The route's and the chosen backend's ResponseHeaderModifier filters. */
  modifiers: ReadonlyArray<HeaderModifier>;
}

/**
 * The response headers step: the route's response header filters, RateLimit headers, a new
 * shopper's sticky cookie, and debug headers when on (after the filters, so no filter hides them).
 */
function respond(response: Response, d: Decoration): Response {
  if ((!d.proxy.debugHeaders && !d.placement.setCookie && d.extraHeaders.length === 0 && d.modifiers.length === 0) || response.webSocket) return response;
  const decorated = new Response(response.body, response);
  for (const modifier of d.modifiers) applyHeaderModifier(modifier, decorated.headers);
  // Vary lists what the answer depends on: the backend's reasons stay, the mesh's are added.
  for (const [name, value] of d.extraHeaders) if (name === "vary") decorated.headers.append(name, value);
  else decorated.headers.set(name, value);
  if (d.placement.setCookie) decorated.headers.append("set-cookie", d.placement.setCookie);
  if (d.proxy.debugHeaders) {
    decorated.headers.set("x-weft-backend", d.delivery.backend.name);
    decorated.headers.set("x-weft-attempts", String(d.delivery.attempts));
    decorated.headers.set("x-weft-route", d.route.name);
    decorated.headers.set("x-weft-config-version", String(d.slice.version));
  }
  return decorated;
}
