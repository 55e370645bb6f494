/**
 * A mesh for measuring the control plane's load per proxy isolate (`npm run bench:scale`,
 * test/mesh/scale.test.ts): the control plane, a small upstream worker and n instances of one
 * service's Weft proxy (n workers with the same code and config: n isolates), on one workerd.
 *
 * Every proxy's CONTROL_PLANE binding goes through a counting worker that forwards each call to the
 * real ConfigService entrypoint and counts it against the object it reaches. Each forwarded call is
 * exactly one call on one Durable Object: readSlice → the service's SliceStore, recordTelemetry →
 * its TelemetryStore, leaseTokens → one RateCounter shard, leaseTokensBatch → one call per shard it
 * touches, signEgress → its SigningKeys.
 *
 * One workerd is one data center: Miniflare gives all its workers one Cache API store (each of the
 * `default` and named caches is one object, whatever worker asks), as the isolates of one data
 * center share theirs in production.
 */
import type { V4WorkerOptions as WorkerOptions } from "miniflare";
import type { MeshConfigInput } from "../shared/config.ts";
import { counterName, shardOf } from "../shared/rate-limit.ts";
import { onlyDeployment } from "./measure.ts";
import { CONTROL_PLANE_CONFIG, deploymentsOf, ROOT, SHOP_PROXY_CONFIG, startMesh, type Deployment, type RunningMesh } from "./mesh.ts";

/** The service whose proxy runs as n isolates. */
export const SCALE_SERVICE = "scale";
/** Its two backends (both the upstream worker, so responses differ only in which one was picked). */
export const SCALE_BACKENDS = [`${SCALE_SERVICE}-v1`, `${SCALE_SERVICE}-v2`] as const;
/** API keys requests carry; each is one rate-limit counter. */
export const API_KEYS = 8;
const LIMIT_NAME = "api-key";
const COUNTER_WORKER = "weft-scale-counter";
const COUNTER_HOST = "counter.local";
const UPSTREAM_CONFIG = `${ROOT}/bench/workers/upstream/wrangler.toml`;
const PROXY_CONFIG = SHOP_PROXY_CONFIG;

/** The API key of request `i`. */
export function apiKey(i: number): string {
  return `key-${i % API_KEYS}`;
}

/**
 * The counting worker's code. It runs in one isolate, so its module-level counts see every proxy's
 * calls. Counter names map to shards through SHARDS (computed in Node with the real `shardOf`).
 */
const COUNTER_SOURCE = `
import { WorkerEntrypoint } from "cloudflare:workers";
const counts = new Map();
const count = (object) => counts.set(object, (counts.get(object) ?? 0) + 1);
export class CountingControlPlane extends WorkerEntrypoint {
  shard(counter) { return "RateCounter " + (JSON.parse(this.env.SHARDS)[counter] ?? "unmapped"); }
  readSlice(service, known) { count("SliceStore " + service); return this.env.UPSTREAM.readSlice(service, known); }
  signEgress(service, claims) { count("SigningKeys " + service); return this.env.UPSTREAM.signEgress(service, claims); }
  leaseTokens(counter, spec, want, ahead) { count(this.shard(counter)); return this.env.UPSTREAM.leaseTokens(counter, spec, want, ahead); }
  leaseTokensBatch(asks) {
    for (const shard of new Set(asks.map((ask) => this.shard(ask.counter)))) count(shard);
    return this.env.UPSTREAM.leaseTokensBatch(asks);
  }
  recordTelemetry(batch) { count("TelemetryStore " + batch.service); return this.env.UPSTREAM.recordTelemetry(batch); }
  claimWebhookDelivery(service, key, ttl) { count("WebhookDeliveries " + service); return this.env.UPSTREAM.claimWebhookDelivery(service, key, ttl); }
  vendorToken(service, request) { count("VendorTokens"); return this.env.UPSTREAM.vendorToken(service, request); }
}
export default {
  fetch() { return Response.json(Object.fromEntries(counts)); },
};
`;

function counterWorker(controlPlane: string): WorkerOptions {
  const shards = Object.fromEntries(
    Array.from({ length: API_KEYS }, (_, i) => {
      const counter = counterName(SCALE_SERVICE, LIMIT_NAME, apiKey(i));
      return [counter, shardOf(counter) ?? "unmapped"];
    }),
  );
  return {
    name: COUNTER_WORKER,
    modules: [{ type: "ESModule", path: "counter.js", contents: COUNTER_SOURCE }],
    compatibilityDate: "2026-11-01",
    routes: [`${COUNTER_HOST}/*`],
    bindings: { SHARDS: JSON.stringify(shards) },
    serviceBindings: { UPSTREAM: { name: controlPlane, entrypoint: "ConfigService", props: { service: SCALE_SERVICE } } },
  };
}

/** Isolate `i` of the service's proxy: the deployed proxy code, its CONTROL_PLANE through the counting worker. */
function proxyInstance(base: Deployment, i: number, upstream: string): Deployment {
  const name = `weft-proxy-${SCALE_SERVICE}-${i}`;
  return {
    ...base,
    name,
    env: name,
    vars: { WEFT_SERVICE: SCALE_SERVICE, WEFT_ENV: "production", WEFT_DEBUG_HEADERS: "false", WEFT_ACCESS_LOG: "errors", WEFT_TRACE_SAMPLE_RATE: "0.05", WEFT_OTLP_ENDPOINT: "" },
    services: [
      { binding: "CONTROL_PLANE", service: COUNTER_WORKER, entrypoint: "CountingControlPlane", props: { service: SCALE_SERVICE } },
      { binding: "SCALE_V1", service: upstream },
      { binding: "SCALE_V2", service: upstream },
    ],
    durableObjects: [],
    sqliteClasses: [],
    routes: [],
    secrets: [],
  };
}

/**
 * The service: a split sticky per shopper (90/10 unless given) and a per-API-key fixed-window limit
 * (`periodSeconds` long) that counts but is never reached.
 */
export function scaleConfig(weights: Readonly<Record<string, number>> = { [SCALE_BACKENDS[0]]: 90, [SCALE_BACKENDS[1]]: 10 }, periodSeconds = 60): MeshConfigInput {
  return {
    services: [
      {
        name: SCALE_SERVICE,
        backends: SCALE_BACKENDS.map((name, i) => ({ name, type: "worker" as const, binding: `SCALE_V${i + 1}` })),
        routes: [{ name: "products", match: { path: "/*" }, split: { weights: { ...weights }, sticky: "cookie:shopper" } }],
        rateLimits: [{ name: LIMIT_NAME, key: "header:x-api-key", limit: 1_000_000, periodSeconds }],
      },
    ],
  };
}

/** A booted scale mesh. */
export interface ScaleMesh {
  mesh: RunningMesh;
  /** Each proxy isolate's direct URL. */
  urls: URL[];
  /** Calls each Durable Object received so far, by "Class name" (e.g. "SliceStore scale", "RateCounter scale/api-key/#7"). */
  counts(): Promise<Record<string, number>>;
  /** Calls the admin API with the token. */
  adminFetch(route: string, init?: RequestInit): Promise<Response>;
  dispose(): Promise<void>;
}

/** Options for {@link bootScaleMesh}. */
export interface ScaleMeshOptions {
  isolates: number;
  adminToken: string;
  /** x-weft-backend and friends on responses (they only add headers). */
  debugHeaders?: boolean;
  /** The rate limit's window (default 60 s). */
  limitPeriodSeconds?: number;
}

/** Boots the control plane, the upstream, the counting worker and `isolates` proxy instances; seeds the service's config. */
export async function bootScaleMesh(options: ScaleMeshOptions): Promise<ScaleMesh> {
  const controlPlane = deploymentsOf(CONTROL_PLANE_CONFIG)[0];
  const [proxy] = deploymentsOf(PROXY_CONFIG);
  if (!controlPlane || !proxy) throw new Error("cannot find the control plane's or the proxy's wrangler config");
  const upstream = onlyDeployment(UPSTREAM_CONFIG);
  const proxies = Array.from({ length: options.isolates }, (_, i) => proxyInstance(proxy, i, upstream.name));
  const mesh = await startMesh({
    port: 0,
    adminPort: 0,
    adminToken: options.adminToken,
    deployments: [controlPlane, upstream, ...proxies],
    extraWorkers: [counterWorker(controlPlane.name)],
    directPorts: Object.fromEntries(proxies.map((p) => [p.name, 0])),
    debugHeaders: options.debugHeaders ?? false,
    accessLog: "errors",
    onLog: () => undefined,
  });
  const adminFetch = (route: string, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${options.adminToken}`);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    return fetch(`${mesh.adminUrl}${route}`, { ...init, headers });
  };
  try {
    const seeded = await adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*", "x-weft-reason": "scale mesh" }, body: JSON.stringify(scaleConfig(undefined, options.limitPeriodSeconds)) });
    if (!seeded.ok) throw new Error(`PUT /admin/config answered ${seeded.status}: ${(await seeded.text()).slice(0, 500)}`);
    const urls = await Promise.all(proxies.map(async (p) => await mesh.mf.unsafeGetDirectURL(p.name)));
    return {
      mesh,
      urls,
      adminFetch,
      counts: async () => {
        const response = await mesh.mf.dispatchFetch(`http://${COUNTER_HOST}/`);
        const parsed: unknown = await response.json();
        if (typeof parsed !== "object" || parsed === null) throw new Error("the counting worker answered no counts");
        return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, Number(v)]));
      },
      dispose: () => mesh.dispose(),
    };
  } catch (error) {
    await mesh.dispose();
    throw error;
  }
}

/** Headers of request `i`: its shopper (sticky split) and its API key (rate limit). */
export function shopperHeaders(i: number, shoppers = 500): Record<string, string> {
  return { accept: "application/json", cookie: `shopper=s-${i % shoppers}`, "x-api-key": apiKey(i) };
}

/** Waits until every instance answers 200 (it has loaded its config); throws after `timeoutMs`. Returns the requests it sent. */
export async function waitServing(urls: URL[], timeoutMs = 60_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let sent = 0;
  for (const [i, url] of urls.entries()) {
    for (;;) {
      const response = await fetch(new URL("/products/warm", url), { headers: shopperHeaders(i) });
      sent++;
      const body = await response.text();
      if (response.status === 200) break;
      if (performance.now() > deadline) throw new Error(`isolate ${i} still answers ${response.status}: ${body.slice(0, 300)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return sent;
}
