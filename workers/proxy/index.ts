/**
 * The Weft proxy: one code base, deployed once per service (`wrangler deploy --env <service>`).
 * Every call into the service passes this filter chain:
 *
 *   identity → route → split → forward → response headers
 *
 * Later policies (authorization, rate limits, contract checks, resilience, telemetry) slot into the
 * same chain. Config comes from the isolate cache; no request waits on a Durable Object while the
 * cached config is fresh.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { problemResponse } from "../../shared/problem.ts";
import { SliceCache, type SliceSource } from "./config-cache.ts";
import { forward, forwardProblem, MAX_REQUEST_BYTES } from "./forward.ts";
import { callerOf, inboundRequest } from "./identity.ts";
import { place } from "./split.ts";

const caches = new Map<string, SliceCache>();

function sliceCache(env: ProxyEnv): SliceCache | Response {
  const service = env.WEFT_SERVICE;
  // The binding's RPC type comes from another script, which `wrangler types` cannot see from here.
  const source = env.CONTROL_PLANE as unknown as SliceSource | undefined;
  if (!service || !source) {
    return problemResponse(500, "proxy-misconfigured", "Proxy misconfigured", {
      detail: "deploy the proxy with `--env <service>` so WEFT_SERVICE and the CONTROL_PLANE binding are set",
    });
  }
  let cache = caches.get(service);
  if (!cache) caches.set(service, (cache = new SliceCache(service, source, env)));
  return cache;
}

export default class Proxy extends WorkerEntrypoint<ProxyEnv> {
  override async fetch(request: Request): Promise<Response> {
    const cache = sliceCache(this.env);
    if (cache instanceof Response) return cache;
    const config = await cache.current((p) => this.ctx.waitUntil(p));
    if (config.kind !== "ready") return problemResponse(503, "no-config", "Service not configured", { detail: config.detail });
    const slice = config.slice;

    // identity
    const caller = callerOf(this.ctx.props);
    const declared = Number(request.headers.get("content-length") ?? 0);
    if (declared > MAX_REQUEST_BYTES) {
      return problemResponse(413, "too-large", "Request body too large", { detail: `limit is ${MAX_REQUEST_BYTES} bytes` });
    }

    // route
    const path = new URL(request.url).pathname;
    const route = slice.routes.find((r) => r.matches(request.method, path, request.headers));
    if (!route) {
      return problemResponse(404, "no-route", "No route", { detail: `service '${slice.service}' has no route for ${request.method} ${path}` });
    }

    // split
    const placement = place(route, request, caller);
    const backend = slice.backends.get(placement.decision.backend);
    if (!backend) return problemResponse(502, "no-backend", "No backend", { detail: `route '${route.name}' has no backend for this request` });

    // forward
    const result = await forward(backend, inboundRequest(request, caller));
    const response = result.kind === "response" ? result.response : forwardProblem(result, backend.name);

    // response headers
    const debug = this.env.WEFT_DEBUG_HEADERS === "true";
    if ((!debug && !placement.setCookie) || response.webSocket) return response;
    const decorated = new Response(response.body, response);
    if (debug) {
      decorated.headers.set("x-weft-backend", backend.name);
      decorated.headers.set("x-weft-route", route.name);
      decorated.headers.set("x-weft-config-version", String(slice.version));
    }
    if (placement.setCookie) decorated.headers.append("set-cookie", placement.setCookie);
    return decorated;
  }
}
