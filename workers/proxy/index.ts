/**
 * The Weft proxy: one code base, deployed once per service (`wrangler deploy --env <service>`).
 * Every call into the service passes this filter chain:
 *
 *   trace → identity → authorization → route → authentication → rate limit → contract → split →
 *   resilience/forward → contract → headers → telemetry
 *
 * Each step is a small function; this file only wires them. Steps a route does not use cost
 * nothing: config comes synchronously from the isolate cache, a request that needs no body work is
 * handed to its backend with only its headers rewritten, and its response is returned untouched.
 * Telemetry is one push per request; metrics, logs and spans are built in batches after responses.
 */
import { authorize } from "../../shared/authorize.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { pathOf } from "./bounded.ts";
import { authenticateUser, checkRequestContract, checkResponseContract } from "./checks.ts";
import type { CompiledBackend, CompiledRoute, CompiledSlice } from "./compile.ts";
import { SliceCache, type SliceState } from "./config-cache.ts";
import { MAX_REQUEST_BYTES } from "./forward.ts";
import { healthyOwners } from "../../shared/resilience.ts";
import { ejectedBackends, mirrorRequest, probeCandidate, probeHealth, sendFast, sendResiliently, type Delivery } from "./resilience.ts";
import { checkRateLimits, type RateDecision } from "./rate-limit.ts";
import { CLAIMS_HEADER, decodeClaims } from "../../shared/user-auth.ts";
import { callerOf, DEADLINE_HEADER, deadlineOf, inboundHeaders, INTERNET, outboundRequest } from "./identity.ts";
import { place, type Placement } from "./split.ts";
import { routeWebhook } from "./webhook.ts";
import { beginHop, ServiceTelemetry, telemetrySettings, type Hop, type Trail } from "./telemetry.ts";

interface Proxy {
  cache: SliceCache;
  controlPlane: ControlPlaneApi;
  debug: boolean;
  telemetry: ServiceTelemetry;
}
const proxies = new Map<string, Proxy>();

function setup(env: ProxyEnv): Proxy | Response {
  const service = env.WEFT_SERVICE;
  // The binding's RPC type comes from another script, which `wrangler types` cannot see from here.
  const controlPlane = env.CONTROL_PLANE as unknown as ControlPlaneApi | undefined;
  if (!service || !controlPlane) {
    return problemResponse(500, "proxy-misconfigured", "Proxy misconfigured", {
      detail: "deploy the proxy with `--env <service>` so WEFT_SERVICE and the CONTROL_PLANE binding are set",
    });
  }
  let proxy = proxies.get(service);
  if (!proxy) {
    proxy = {
      cache: new SliceCache(service, controlPlane, env),
      controlPlane,
      debug: env.WEFT_DEBUG_HEADERS === "true",
      telemetry: new ServiceTelemetry(service, controlPlane, telemetrySettings(env)),
    };
    proxies.set(service, proxy);
  }
  return proxy;
}

export default {
  fetch(request, env, ctx): Response | Promise<Response> {
    const proxy = setup(env);
    if (proxy instanceof Response) return proxy;
    // trace: continue the caller's trace or start one here
    const hop = beginHop(request, proxy.telemetry.settings.sampleRate, Date.now());
    const trail: Trail = { route: undefined, backend: undefined, attempts: 1, counted: false };
    const caller = callerOf(ctx.props);
    const state = proxy.cache.current((p) => ctx.waitUntil(p));
    const response = state instanceof Promise ? state.then((s) => chain(request, ctx, proxy, s, hop, caller, trail)) : chain(request, ctx, proxy, state, hop, caller, trail);
    // telemetry: one record per request, whatever the outcome
    const finish = (status: number): void => proxy.telemetry.finish(hop, request, caller, trail, status, (p) => ctx.waitUntil(p));
    if (response instanceof Response) {
      finish(response.status);
      return response;
    }
    return response.then(
      (r) => {
        finish(r.status);
        return r;
      },
      (error: unknown) => {
        finish(500);
        throw error;
      },
    );
  },

  /**
   * The cron trigger (every minute): while a rollout of this service has a probe, send its
   * synthetic requests to the candidate for most of the minute, so quiet hours still give the
   * rollout traffic to judge. Cloudflare runs one invocation per trigger, not one per isolate.
   */
  async scheduled(_controller, env, ctx): Promise<void> {
    const proxy = setup(env);
    if (proxy instanceof Response) return;
    let first = true;
    const sliceNow = async (): Promise<CompiledSlice | undefined> => {
      const state = first ? await proxy.cache.fresh() : await proxy.cache.current((p) => ctx.waitUntil(p));
      first = false;
      return state.kind === "ready" ? state.slice : undefined;
    };
    const sent = await probeCandidate(sliceNow, proxy.controlPlane, Date.now() + PROBE_WINDOW_MS, () => proxy.telemetry.flush());
    if (sent > 0) console.log(JSON.stringify({ event: "rollout-probes", service: env.WEFT_SERVICE, sent }));
  },
} satisfies ExportedHandler<ProxyEnv>;

/** How long one cron invocation probes: most of the minute until the next one. */
const PROBE_WINDOW_MS = 55_000;

function chain(request: Request, ctx: ExecutionContext, proxy: Proxy, state: SliceState, hop: Hop, caller: string, trail: Trail): Response | Promise<Response> {
  if (state.kind !== "ready") return problemResponse(503, "no-config", "Service not configured", { detail: state.detail });
  const slice = state.slice;
  if (Number(request.headers.get("content-length") ?? 0) > MAX_REQUEST_BYTES) {
    return problemResponse(413, "too-large", "Request body too large", { detail: `limit is ${MAX_REQUEST_BYTES} bytes` });
  }

  // identity: from the binding's props (set by the deployer), else the internet
  const path = pathOf(request.url);

  // authorization
  const decision = authorize(slice.policy, { caller, method: request.method, path });
  if (decision.kind === "deny") {
    return problemResponse(403, "forbidden", "Forbidden", {
      detail: `'${caller}' may not ${request.method} ${path} on service '${slice.service}'`,
      reason: decision.reason,
    });
  }

  // route
  const route = slice.routes.find((r) => r.matches(request.method, path, request.headers));
  if (!route) {
    return problemResponse(404, "no-route", "No route", { detail: `service '${slice.service}' has no route for ${request.method} ${path}` });
  }
  trail.route = route.name;

  // active health checks (due ones run in waitUntil; usually a single comparison)
  probeHealth(slice, proxy.controlPlane, (p) => ctx.waitUntil(p));

  // split (ejected backends' share lent to healthy ones)
  const ejected = ejectedBackends(slice.service, Date.now());
  const owners = ejected.size === 0 ? route.owners : healthyOwners(route.owners, route.weights, ejected);
  const placement = place(route, owners, request, caller);
  const backend = slice.backends.get(placement.decision.backend);
  if (!backend) return problemResponse(502, "no-backend", "No backend", { detail: `route '${route.name}' has no backend for this request` });

  // rate limits (routes with end-user auth count after it, so a verified claim can be the key)
  const limited = route.auth ? undefined : checkRateLimits(slice.service, route.rateLimits, request, caller, undefined, proxy.controlPlane);
  if (limited && !(limited instanceof Promise) && limited.kind === "deny") return limited.response;

  const headers = inboundHeaders(request, caller, hop);
  const simple =
    backend.target.kind === "binding" && !route.auth && !route.webhook && !route.contract && route.timeoutMs === undefined && !route.mirror &&
    (limited === undefined || (!(limited instanceof Promise) && limited.kind === "allow" && limited.headers.length === 0)) &&
    slice.faults.length === 0 && (caller === INTERNET || !request.headers.has(DEADLINE_HEADER));
  if (simple && backend.target.kind === "binding") {
    // Nothing to check or add: hand the request over and return the backend's response as is.
    if (!route.retries && route.failover.length === 0 && !proxy.debug && !placement.setCookie) {
      trail.backend = backend.name;
      return backend.target.fetcher.fetch(outboundRequest(request, headers));
    }
    // Retries configured: still one plain call; only a failure takes the full resilience path.
    if ((request.method === "GET" || request.method === "HEAD") && !ejected.has(backend.name)) {
      const egress = { service: slice.service, caller, controlPlane: proxy.controlPlane };
      return sendFast(slice, route, backend, backend.target.fetcher, outboundRequest(request, headers), egress).then((d) => {
        trail.backend = d.backend.name;
        trail.attempts = d.attempts;
        trail.counted = true;
        return !proxy.debug && !placement.setCookie ? d.response : decorate(d, proxy, slice, route, placement);
      });
    }
  }
  return checkedChain(request, ctx, proxy, slice, route, backend, placement, caller, headers, limited, trail);
}

/** The chain's steps that read bodies, verify tokens or decorate the response. */
async function checkedChain(
  request: Request,
  ctx: ExecutionContext,
  proxy: Proxy,
  slice: CompiledSlice,
  route: CompiledRoute,
  backend: CompiledBackend,
  placement: Placement,
  caller: string,
  inbound: Headers,
  limitedBefore: RateDecision | Promise<RateDecision> | undefined,
  trail: Trail,
): Promise<Response> {
  // authentication (end-user JWT, per route)
  const authenticated = route.auth ? await authenticateUser(route, request, inbound) : { kind: "continue" as const, value: inbound };
  if (authenticated.kind === "stop") return authenticated.response;
  const hooked = await routeWebhook(route, request, authenticated.value, proxy.controlPlane, slice.service);
  if (hooked.kind === "stop") return hooked.response;

  // rate limits: counted before the split, or here after authentication (a verified claim can be the key)
  const claims = authenticated.value.get(CLAIMS_HEADER);
  const limited = await (limitedBefore ??
    checkRateLimits(slice.service, route.rateLimits, request, caller, claims ? decodeClaims(claims) : undefined, proxy.controlPlane));
  if (limited.kind === "deny") return limited.response;

  // contract (request body)
  const checked = route.contract ? await checkRequestContract(slice.service, route, hooked.value) : { kind: "continue" as const, value: hooked.value };
  if (checked.kind === "stop") return checked.response;

  // resilience + forward (deadline, retries, failover, faults, outlier detection, mirroring)
  const outbound = outboundRequest(checked.value, authenticated.value);
  const egress = { service: slice.service, caller, controlPlane: proxy.controlPlane };
  mirrorRequest(slice, route, outbound, egress, (p) => ctx.waitUntil(p));
  const deadlineAt = deadlineOf(request, caller, route.timeoutMs, Date.now());
  const delivery = await sendResiliently(slice, route, backend, outbound, egress, deadlineAt);
  trail.backend = delivery.backend.name;
  trail.attempts = delivery.attempts;
  trail.counted = true;
  const response = route.contract && !delivery.response.headers.has("x-weft-fault") ? await checkResponseContract(slice.service, route, delivery.response) : delivery.response;

  return decorate({ ...delivery, response }, proxy, slice, route, placement, limited.headers);
}

/** The response headers step: debug headers (local development) and a new shopper's sticky cookie. */
function decorate(
  delivery: Delivery,
  proxy: Proxy,
  slice: CompiledSlice,
  route: CompiledRoute,
  placement: Placement,
  extra: ReadonlyArray<[string, string]> = [],
): Response {
  const response = delivery.response;
  if ((!proxy.debug && !placement.setCookie && extra.length === 0) || response.webSocket) return response;
  const decorated = new Response(response.body, response);
  for (const [name, value] of extra) decorated.headers.set(name, value);
  if (proxy.debug) {
    decorated.headers.set("x-weft-backend", delivery.backend.name);
    decorated.headers.set("x-weft-attempts", String(delivery.attempts));
    decorated.headers.set("x-weft-route", route.name);
    decorated.headers.set("x-weft-config-version", String(slice.version));
  }
  if (placement.setCookie) decorated.headers.append("set-cookie", placement.setCookie);
  return decorated;
}