/**
 * `npm run bench:scale`: does the control plane's load grow with the number of proxy isolates?
 *
 * For each n (1, 10, 50 by default) it boots, on one workerd: the control plane, a small upstream
 * worker, and n instances of one service's Weft proxy (n workers with the same code and config:
 * n isolates). It drives the same total request rate through them, spread evenly, and counts the
 * calls each Durable Object receives: every proxy's CONTROL_PLANE binding goes through a counting
 * worker that forwards each call to the real ConfigService entrypoint, and each forwarded call is
 * exactly one call on one object (readSlice → the service's SliceStore, recordTelemetry → its
 * TelemetryStore, leaseTokens → one RateCounter shard, leaseTokensBatch → one call per shard it
 * touches). Figures are calls per second per object over the measured window, after a warm-up
 * (so each isolate's first config read, which it must make to learn the shared cache key, is not
 * in them), and `rateLeasesPerSec` is the busiest RateCounter shard.
 *
 * One workerd is one data center: Miniflare gives all its workers one Cache API store (the
 * `default` and named caches are one object each, whatever worker asks), as isolates of one data
 * center share theirs in production. So `configReadsPerSec` is the SliceStore's load from one data
 * center; production multiplies it by the data centers with traffic, never by the isolates.
 *
 * Writes bench/scale.json: `{ "isolates": [ { n, configReadsPerSec, telemetryWritesPerSec,
 * rateLeasesPerSec, rps }, … ] }`. Targets (printed, never enforced): each per-object figure grows
 * by at most 1.2× from the second n to the last (10 → 50).
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { V4WorkerOptions as WorkerOptions } from "miniflare";
import type { MeshConfigInput } from "../shared/config.ts";
import { counterName, shardOf } from "../shared/rate-limit.ts";
import { onlyDeployment, round, sleep } from "./measure.ts";
import { deploymentsOf, isControlPlane, loadDeployments, ROOT, startMesh, type Deployment, type RunningMesh } from "./mesh.ts";

const USAGE = `Usage: npm run bench:scale [-- --n 1,10,50] [--json]

Boots the control plane and n isolates (worker instances) of one service's proxy on workerd, drives
the same total load through them and counts the calls each Durable Object receives. Writes
bench/scale.json.

Options:
  --n <list>   isolate counts to measure, comma-separated (default 1,10,50; each 1-100)
  --json       print only the results JSON on stdout (progress goes to stderr)
  --help       print this help

Environment:
  SCALE_RPS              total requests per second, spread over the isolates (default 250)
  SCALE_SECONDS          seconds measured per n (default 20)
  SCALE_WARMUP_SECONDS   seconds of load before measuring, per n (default 15: the objects' pacing settles)
`;

const HOST = "127.0.0.1";
const RESULTS_PATH = path.join(ROOT, "bench", "scale.json");
const UPSTREAM_CONFIG = path.join(ROOT, "bench", "workers", "upstream", "wrangler.toml");
const PROXY_CONFIG = path.join(ROOT, "workers", "proxy", "wrangler.toml");
const SERVICE = "scale";
const COUNTER_WORKER = "weft-scale-counter";
const ADMIN_TOKEN = `scale-${Math.random().toString(36).slice(2)}`;
/** API keys the requests carry; each is one rate-limit counter. */
const API_KEYS = 8;
const SHOPPERS = 500;
const LIMIT_NAME = "api-key";
/** Requests in flight at most (the client must not become the bottleneck nor flood workerd). */
const MAX_IN_FLIGHT = 128;
/** Growth allowed from the second n to the last, per figure. */
const TARGET_GROWTH = 1.2;

/** One measured n, as bench/scale.json has it. */
interface Figures {
  n: number;
  configReadsPerSec: number;
  telemetryWritesPerSec: number;
  rateLeasesPerSec: number;
  rps: number;
}

interface Args {
  ns: number[];
  json: boolean;
  rps: number;
  seconds: number;
  warmupSeconds: number;
}

class UsageError extends Error {}

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`${name} must be a positive number, got '${raw}'`);
  return value;
}

function parseCli(): Args | "help" {
  let values: { n?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ options: { n: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return "help";
  const ns = (values.n ?? "1,10,50").split(",").map((s) => Number(s.trim()));
  if (ns.length === 0 || ns.length > 6 || ns.some((n) => !Number.isInteger(n) || n < 1 || n > 100)) {
    throw new UsageError(`--n takes 1 to 6 comma-separated isolate counts between 1 and 100, got '${values.n ?? ""}'`);
  }
  return { ns, json: values.json === true, rps: positive("SCALE_RPS", 250), seconds: positive("SCALE_SECONDS", 20), warmupSeconds: positive("SCALE_WARMUP_SECONDS", 15) };
}

let jsonMode = false;
/** Progress lines: stdout normally, stderr with --json so stdout carries only the results. */
function progress(line: string): void {
  (jsonMode ? process.stderr : process.stdout).write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// The workers

/**
 * The counting worker: the ControlPlaneApi entrypoint the proxies bind to, forwarding every call to
 * the real ConfigService (bound with the same props) and counting it against the object it reaches.
 * It runs in one isolate, so its module-level counts see every proxy's calls. Counter names map to
 * shards through SHARDS (computed here with the real `shardOf`), so the worker needs no copy of it.
 */
const COUNTER_SOURCE = `
import { WorkerEntrypoint } from "cloudflare:workers";
const counts = new Map();
const count = (object) => counts.set(object, (counts.get(object) ?? 0) + 1);
export class CountingControlPlane extends WorkerEntrypoint {
  shard(counter) { return "RateCounter " + (JSON.parse(this.env.SHARDS)[counter] ?? "unmapped"); }
  readSlice(service, known) { count("SliceStore " + service); return this.env.UPSTREAM.readSlice(service, known); }
  signEgress(service, claims) { count("SigningKeys " + service); return this.env.UPSTREAM.signEgress(service, claims); }
  leaseTokens(counter, spec, want) { count(this.shard(counter)); return this.env.UPSTREAM.leaseTokens(counter, spec, want); }
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
      const counter = counterName(SERVICE, LIMIT_NAME, apiKey(i));
      return [counter, shardOf(counter) ?? "unmapped"];
    }),
  );
  return {
    name: COUNTER_WORKER,
    modules: [{ type: "ESModule", path: "counter.js", contents: COUNTER_SOURCE }],
    compatibilityDate: "2026-11-01",
    bindings: { SHARDS: JSON.stringify(shards) },
    serviceBindings: { UPSTREAM: { name: controlPlane, entrypoint: "ConfigService", props: { service: SERVICE } } },
  };
}

/** Isolate `i` of the service's proxy: the deployed proxy code, its CONTROL_PLANE through the counting worker. */
function proxyInstance(base: Deployment, i: number, upstream: string): Deployment {
  const name = `weft-proxy-${SERVICE}-${i}`;
  return {
    ...base,
    name,
    env: name,
    vars: { WEFT_SERVICE: SERVICE, WEFT_ENV: "production", WEFT_DEBUG_HEADERS: "false", WEFT_ACCESS_LOG: "errors", WEFT_TRACE_SAMPLE_RATE: "0.05", WEFT_OTLP_ENDPOINT: "" },
    services: [
      { binding: "CONTROL_PLANE", service: COUNTER_WORKER, entrypoint: "CountingControlPlane", props: { service: SERVICE } },
      { binding: "SCALE_V1", service: upstream },
      { binding: "SCALE_V2", service: upstream },
    ],
    durableObjects: [],
    sqliteClasses: [],
    routes: [],
    secrets: [],
  };
}

/** The service: a 90/10 split sticky per shopper and a per-API-key limit that counts but is never reached. */
function meshConfig(): MeshConfigInput {
  return {
    services: [
      {
        name: SERVICE,
        backends: [
          { name: `${SERVICE}-v1`, type: "worker", binding: "SCALE_V1" },
          { name: `${SERVICE}-v2`, type: "worker", binding: "SCALE_V2" },
        ],
        routes: [{ name: "products", match: { path: "/*" }, split: { weights: { [`${SERVICE}-v1`]: 90, [`${SERVICE}-v2`]: 10 }, sticky: "cookie:shopper" } }],
        rateLimits: [{ name: LIMIT_NAME, key: "header:x-api-key", limit: 1_000_000, periodSeconds: 60 }],
      },
    ],
  };
}

function apiKey(i: number): string {
  return `key-${i % API_KEYS}`;
}

// ---------------------------------------------------------------------------------------------
// Load

interface Driven {
  sent: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  seconds: number;
}

function shopperHeaders(i: number): Record<string, string> {
  return { accept: "application/json", cookie: `shopper=s-${i % SHOPPERS}`, "x-api-key": apiKey(i) };
}

/**
 * Sends `rps` requests per second for `seconds`, round-robin over `urls` (an open loop: the rate
 * does not follow the latency, as a shop's shoppers do not), at most {@link MAX_IN_FLIGHT} at once.
 */
async function drive(urls: URL[], rps: number, seconds: number): Promise<Driven> {
  const result: Driven = { sent: 0, ok: 0, failed: 0, statuses: {}, seconds: 0 };
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  let next = 0;
  while (performance.now() - started < seconds * 1000) {
    const due = Math.floor(((performance.now() - started) / 1000) * rps);
    while (next < due && inFlight.size < MAX_IN_FLIGHT) {
      const i = next++;
      const url = urls[i % urls.length];
      if (!url) break;
      result.sent++;
      const request = fetch(new URL(`/products/p-${i % 100}`, url), { headers: shopperHeaders(i) })
        .then(async (response) => {
          await response.arrayBuffer();
          result.statuses[response.status] = (result.statuses[response.status] ?? 0) + 1;
          if (response.status === 200) result.ok++;
          else result.failed++;
        })
        .catch(() => {
          result.failed++;
          result.statuses.error = (result.statuses.error ?? 0) + 1;
        })
        .finally(() => inFlight.delete(request));
      inFlight.add(request);
    }
    // Behind schedule with the window full: skip what cannot be sent rather than burst later.
    if (inFlight.size >= MAX_IN_FLIGHT) next = Math.max(next, due);
    await sleep(5);
  }
  await Promise.all(inFlight);
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

// ---------------------------------------------------------------------------------------------
// One n

async function putConfig(mesh: RunningMesh): Promise<void> {
  const response = await fetch(`${mesh.adminUrl}/admin/config`, {
    method: "PUT",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", "if-match": "*", "x-weft-reason": "bench:scale" },
    body: JSON.stringify(meshConfig()),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`PUT /admin/config answered ${response.status}: ${body.slice(0, 500)}`);
}

async function counts(mesh: RunningMesh): Promise<Record<string, number>> {
  const response = await mesh.mf.dispatchFetch("http://counter.local/", { headers: { host: "counter.local" }, cf: {} });
  const parsed: unknown = await response.json();
  if (typeof parsed !== "object" || parsed === null) throw new Error("the counting worker answered no counts");
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, Number(v)]));
}

/** Calls per second per object between two count snapshots. */
function rates(before: Record<string, number>, after: Record<string, number>, seconds: number): Map<string, number> {
  return new Map(Object.entries(after).map(([object, n]) => [object, (n - (before[object] ?? 0)) / seconds]));
}

/** Waits until every instance answers 200 (it has loaded its config). */
async function waitServing(urls: URL[]): Promise<void> {
  const deadline = performance.now() + 60_000;
  for (const [i, url] of urls.entries()) {
    for (;;) {
      const response = await fetch(new URL("/products/warm", url), { headers: shopperHeaders(i) });
      const body = await response.text();
      if (response.status === 200) break;
      if (performance.now() > deadline) throw new Error(`isolate ${i} still answers ${response.status}: ${body.slice(0, 300)}`);
      await sleep(100);
    }
  }
}

async function measure(n: number, args: Args, base: { controlPlane: Deployment; upstream: Deployment; proxy: Deployment }): Promise<Figures> {
  const proxies = Array.from({ length: n }, (_, i) => proxyInstance(base.proxy, i, base.upstream.name));
  progress(`n = ${n}: booting the control plane, the upstream and ${n} proxy isolate${n === 1 ? "" : "s"}…`);
  const mesh = await startMesh({
    port: 0,
    adminPort: 0,
    host: HOST,
    adminToken: ADMIN_TOKEN,
    deployments: [base.controlPlane, base.upstream, ...proxies],
    // The counting worker answers the bench on the mesh's entry URL; proxies get direct sockets.
    extraWorkers: [{ ...counterWorker(base.controlPlane.name), routes: ["counter.local/*"] }],
    directPorts: Object.fromEntries(proxies.map((p) => [p.name, 0])),
    debugHeaders: false,
    accessLog: "errors",
    onLog: () => undefined,
  });
  try {
    await putConfig(mesh);
    const urls = await Promise.all(proxies.map(async (p) => await mesh.mf.unsafeGetDirectURL(p.name)));
    await waitServing(urls);
    progress(`n = ${n}: warming up ${args.warmupSeconds} s at ${args.rps} req/s…`);
    const warm = await drive(urls, args.rps, args.warmupSeconds);
    if (warm.failed > 0) throw new Error(`n = ${n}: ${warm.failed} failed requests while warming up (${JSON.stringify(warm.statuses)})`);
    progress(`n = ${n}: measuring ${args.seconds} s…`);
    const before = await counts(mesh);
    const driven = await drive(urls, args.rps, args.seconds);
    // Counts are taken when the window ends: calls still in flight then fall in no window.
    const after = await counts(mesh);
    if (driven.failed > 0) throw new Error(`n = ${n}: ${driven.failed} failed requests (${JSON.stringify(driven.statuses)})`);
    const perObject = rates(before, after, driven.seconds);
    const leases = [...perObject].filter(([object]) => object.startsWith("RateCounter "));
    const busiest = leases.reduce((max, [, rate]) => Math.max(max, rate), 0);
    const figures: Figures = {
      n,
      configReadsPerSec: round(perObject.get(`SliceStore ${SERVICE}`) ?? 0, 2),
      telemetryWritesPerSec: round(perObject.get(`TelemetryStore ${SERVICE}`) ?? 0, 2),
      rateLeasesPerSec: round(busiest, 2),
      rps: round(driven.ok / driven.seconds, 0),
    };
    const leaseTotal = leases.reduce((sum, [, rate]) => sum + rate, 0);
    progress(
      `n = ${n}: ${figures.rps} req/s; calls/s per object: SliceStore ${figures.configReadsPerSec}, TelemetryStore ${figures.telemetryWritesPerSec}, ` +
        `busiest RateCounter ${figures.rateLeasesPerSec} (${round(leaseTotal, 2)}/s over ${leases.length} shards)`,
    );
    return figures;
  } finally {
    await mesh.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Main

function growth(results: Figures[]): Array<{ figure: keyof Omit<Figures, "n" | "rps">; from: number; to: number; ratio: number | null; ok: boolean }> {
  const from = results.at(-2);
  const to = results.at(-1);
  if (!from || !to) return [];
  return (["configReadsPerSec", "telemetryWritesPerSec", "rateLeasesPerSec"] as const).map((figure) => {
    const ratio = from[figure] > 0 ? to[figure] / from[figure] : null;
    return { figure, from: from.n, to: to.n, ratio: ratio === null ? null : round(ratio, 2), ok: ratio === null ? to[figure] === 0 : ratio <= TARGET_GROWTH };
  });
}

async function main(): Promise<void> {
  const args = parseCli();
  if (args === "help") {
    process.stdout.write(USAGE);
    return;
  }
  jsonMode = args.json;
  const controlPlane = loadDeployments().find((d) => isControlPlane(d));
  const [proxy] = deploymentsOf(PROXY_CONFIG);
  if (!controlPlane || !proxy) throw new Error("cannot find the control plane's or the proxy's wrangler config");
  const base = { controlPlane, upstream: onlyDeployment(UPSTREAM_CONFIG), proxy };
  const results: Figures[] = [];
  for (const n of args.ns) results.push(await measure(n, args, base));
  const output = { isolates: results };
  writeFileSync(RESULTS_PATH, `${JSON.stringify(output, null, 2)}\n`);
  for (const g of growth(results)) {
    progress(`${g.figure}: n = ${g.from} → ${g.to}: ${g.ratio === null ? "n/a" : `${g.ratio}×`} (target ≤ ${TARGET_GROWTH}×) ${g.ok ? "ok" : "MISSED"}`);
  }
  progress(`wrote ${path.relative(ROOT, RESULTS_PATH)}`);
  if (jsonMode) process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
}

main().catch((error: unknown) => {
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
