/**
 * The Weft proxy: one code base, deployed once per service (`wrangler deploy --env <service>`).
 * Every call into the service passes this filter chain:
 *
 *   identity → authorization → route → authentication → contract → split → forward → contract → headers
 *
 * Config comes from the isolate cache (config-cache.ts); no request waits on a Durable Object while
 * the cached config is fresh. Each step is a small function; this file only wires them.
 */
import { authorize } from "../../shared/authorize.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { pathOf } from "./bounded.ts";
import { authenticateUser, checkRequestContract, checkResponseContract } from "./checks.ts";
import { SliceCache } from "./config-cache.ts";
import { forward, MAX_REQUEST_BYTES } from "./forward.ts";
import { callerOf, inboundHeaders } from "./identity.ts";
import { place } from "./split.ts";

const caches = new Map<string, { cache: SliceCache; controlPlane: ControlPlaneApi }>();

function setup(env: ProxyEnv): { service: string; cache: SliceCache; controlPlane: ControlPlaneApi } | Response {
  const service = env.WEFT_SERVICE;
  // The binding's RPC type comes from another script, which `wrangler types` cannot see from here.
  const controlPlane = env.CONTROL_PLANE as unknown as ControlPlaneApi | undefined;
  if (!service || !controlPlane) {
    return problemResponse(500, "proxy-misconfigured", "Proxy misconfigured", {
      detail: "deploy the proxy with `--env <service>` so WEFT_SERVICE and the CONTROL_PLANE binding are set",
    });
  }
  let entry = caches.get(service);
  if (!entry) caches.set(service, (entry = { cache: new SliceCache(service, controlPlane, env), controlPlane }));
  return { service, ...entry };
}

export default {
  async fetch(request, env, ctx): Promise<Response> {
    const proxy = setup(env);
    if (proxy instanceof Response) return proxy;
    const config = await proxy.cache.current((p) => ctx.waitUntil(p));
    if (config.kind !== "ready") return problemResponse(503, "no-config", "Service not configured", { detail: config.detail });
    const slice = config.slice;
    if (Number(request.headers.get("content-length") ?? 0) > MAX_REQUEST_BYTES) {
      return problemResponse(413, "too-large", "Request body too large", { detail: `limit is ${MAX_REQUEST_BYTES} bytes` });
    }

    // identity: from the binding's props (set by the deployer), else the internet
    const caller = callerOf(ctx.props);
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

    // authentication (end-user JWT, per route)
    const authenticated = await authenticateUser(route, request, inboundHeaders(request, caller));
    if (authenticated.kind === "stop") return authenticated.response;

    // contract (request body)
    const checked = await checkRequestContract(slice.service, route, request);
    if (checked.kind === "stop") return checked.response;

    // split
    const placement = place(route, request, caller);
    const backend = slice.backends.get(placement.decision.backend);
    if (!backend) return problemResponse(502, "no-backend", "No backend", { detail: `route '${route.name}' has no backend for this request` });

    // forward
    const outbound = authenticated.value ? new Request(checked.value, { headers: authenticated.value }) : checked.value;
    const result = await forward(backend, outbound, { service: slice.service, caller, controlPlane: proxy.controlPlane });
    const response = result.kind === "response" ? await checkResponseContract(slice.service, route, result.response) : result.response;

    // response headers
    const debug = env.WEFT_DEBUG_HEADERS === "true";
    if ((!debug && !placement.setCookie) || response.webSocket) return response;
    const decorated = new Response(response.body, response);
    if (debug) {
      decorated.headers.set("x-weft-backend", backend.name);
      decorated.headers.set("x-weft-route", route.name);
      decorated.headers.set("x-weft-config-version", String(slice.version));
    }
    if (placement.setCookie) decorated.headers.append("set-cookie", placement.setCookie);
    return decorated;
  },
} satisfies ExportedHandler<ProxyEnv>;
