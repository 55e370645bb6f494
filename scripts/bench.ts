/**
 * `npm run bench`: what the Weft proxy costs, measured on workerd over loopback.
 *
 * Boots once, on one workerd (through scripts/mesh.ts): the control plane, a small upstream worker,
 * a bare pass-through proxy (the floor for any proxy on Workers) and three instances of the real
 * Weft proxy. Every case gets its own direct socket, so no Miniflare routing layer is measured.
 * Cases run one after another with autocannon (16 connections, one client thread):
 *
 *   direct       client → upstream
 *   bare         client → bare proxy → upstream                       (service binding, nothing else)
 *   weft         client → Weft proxy → upstream                       (route, 90/10 split sticky on cookie:shopper,
 *                telemetry as deployed: metrics, access log lines for notable requests, 5% of traces sampled)
 *   weft-debug   as weft, with WEFT_DEBUG_HEADERS="true"              (reported, not part of the ratios)
 *   weft-4000    as weft, for one service deep inside a 4,000-service mesh config
 *
 * Prints a table and writes bench/results.json. Exits non-zero if any request failed; speed targets
 * are reported, never enforced.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { convertV4MiniflareOptions, Miniflare, type V4WorkerOptions } from "miniflare";
import type { Instance, RequestSpec, Result } from "autocannon";
import type { MeshConfigInput, ServiceInput } from "../shared/config.ts";
import { benchViews, viewsTable, type ViewsResult } from "./bench-views.ts";
import { cpuTicks, onlyDeployment, round, sleep, workerdPids } from "./measure.ts";
import { ACCESS_LOG_PREFIX, bundleMains, deploymentsOf, CONTROL_PLANE_CONFIG, freePort, localMeshVars, ROOT, SHOP_PROXY_CONFIG, startMesh, workerOptions, type Deployment, type RunningMesh, type WorkerLog } from "./mesh.ts";

const USAGE = `Usage: npm run bench [-- --json] [-- --only views]

Measures the Weft proxy on workerd over loopback against a direct call and a bare pass-through proxy,
then how it behaves in a 4,000-service mesh, then the admin views (/metrics, /admin/graph,
/admin/services, weft status, weft top) at 5 and at 4,000 services. Writes bench/results.json.

Options:
  --json             print only the results JSON on stdout (progress goes to stderr)
  --only views       run only the views section; its results replace \`views\` in bench/results.json
  --compare <case>   measure only the bare proxy and one case (weft, weft-retries, weft-limited,
                     weft-debug; rpc-weft against rpc-bare), interleaved, and print the ratio;
                     nothing is written
  --baseline <ref>   with --compare: also measure the same case through a proxy built from the
                     git commit <ref> (e.g. HEAD), interleaved in the same workerd, and print the
                     working tree's CPU µs per request against it: the way to judge a change of a
                     few µs on a noisy machine
  --profile <case>   instead of measuring, take a CPU profile of one case's proxy worker under load
                     (weft, weft-retries, weft-limited, weft-debug, bare) and print where its time goes;
                     the profile is written to bench/<case>.cpuprofile (open it in Chrome DevTools)
  --separate-control-plane
                     run the control plane and its Durable Objects in a workerd process of their own
                     (in production they run elsewhere); the proxies reach it over their unchanged
                     CONTROL_PLANE binding through Miniflare's dev registry. CPU per request is then
                     printed for the proxies' workerd and the control plane's separately. On a
                     2-core machine the third process competes for the cores: both runs are
                     approximations of production, and neither is the default for that reason alone
  --help             print this help

Environment:
  BENCH_SECONDS          seconds measured per case (default 10)
  BENCH_WARMUP_SECONDS   seconds of warm-up per case, not measured (default 2)
  BENCH_ROUNDS           interleaved rounds the measured seconds are split into (default 5); each
                         ratio is also given per round (same minute, paired), to show the noise
  BENCH_RATE             send at most this many requests/s in all (default: as fast as answered);
                         CPU per request compares best at one fixed rate below saturation
`;

const CONNECTIONS = 16;
const SHOPPERS = 300;
const SCALE_SERVICES = 4_000;
/** Targets, printed next to the ratios; never enforced. */
const TARGETS = {
  weft_vs_bare: { min: 0.9 },
  weft_retries_vs_bare: { min: 0.9 },
  weft_limited_vs_bare: { min: 0.85 },
  weft_debug_vs_bare: { min: 0.8 },
  weft_p99_vs_bare: { max: 1.5 },
  weft_rpc_vs_bare_rpc: { min: 0.85 },
} as const;
type Ratios = Record<"weft_rpc_vs_bare_rpc" | "weft_vs_bare" | "weft_4000_vs_bare" | "weft_retries_vs_bare" | "weft_limited_vs_bare" | "weft_debug_vs_bare" | "weft_p99_vs_bare" | "weft_vs_direct" | "bare_vs_direct", number>;

/** Is `ratio` within its target (true when it has none)? */
function meets(name: keyof Ratios, value: number): boolean {
  const target: { min?: number; max?: number } | undefined = name in TARGETS ? TARGETS[name as keyof typeof TARGETS] : undefined;
  if (!target) return true;
  return (target.min === undefined || value >= target.min) && (target.max === undefined || value <= target.max);
}
const HOST = "127.0.0.1";
const RESULTS_PATH = path.join(ROOT, "bench", "results.json");

const UPSTREAM_CONFIG = path.join(ROOT, "bench", "workers", "upstream", "wrangler.toml");
const BARE_CONFIG = path.join(ROOT, "bench", "workers", "bare-proxy", "wrangler.toml");
const RPC_FORWARDER_CONFIG = path.join(ROOT, "bench", "workers", "rpc-forwarder", "wrangler.toml");
const RPC_CALLER_CONFIG = path.join(ROOT, "bench", "workers", "rpc-caller", "wrangler.toml");
const PROXY_CONFIG = SHOP_PROXY_CONFIG;

/** The service every bench proxy but the 4k one fronts, and the one the 4k proxy fronts. */
const BENCH_SERVICE = "bench";
const SCALE_SERVICE = "svc-3000";
const RETRIES_SERVICE = "bench-retries";
const LIMITED_SERVICE = "bench-limited";
/** API keys the requests carry (the rate-limited case counts per key). */
const API_KEYS = 8;

// ---------------------------------------------------------------------------------------------
// Arguments and output

interface Args {
  json: boolean;
  only: "views" | undefined;
  profile: BenchCase["name"] | undefined;
  /** Measure only the bare proxy and this case, interleaved; print the ratio, write nothing. */
  compare: BenchCase["name"] | undefined;
  /** The control plane in a workerd process of its own (see startSeparated). */
  separateControlPlane: boolean;
  /** With `compare`: a git ref whose proxy code is measured beside the working tree's. */
  baseline: string | undefined;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
}

/** BENCH_RATE: requests/s for all connections together; undefined: as fast as the workers answer (set by parseCli). */
let rate: number | undefined;

class UsageError extends Error {}

function positiveSeconds(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`${name} must be a positive number of seconds, got '${raw}'`);
  return value;
}

function parseCli(): Args | "help" {
  let values: { json?: boolean; help?: boolean; profile?: string; only?: string; compare?: string; baseline?: string; "separate-control-plane"?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        profile: { type: "string" },
        only: { type: "string" },
        compare: { type: "string" },
        baseline: { type: "string" },
        "separate-control-plane": { type: "boolean" },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return "help";
  const profiled = PROFILED.find((name) => name === values.profile);
  if (values.profile !== undefined && !profiled) throw new UsageError(`--profile takes one of ${PROFILED.join(", ")}, got '${values.profile}'`);
  const compared = PROFILED.find((name) => name === values.compare && name !== "bare");
  if (values.compare !== undefined && !compared) throw new UsageError(`--compare takes one of ${PROFILED.filter((n) => n !== "bare").join(", ")}, got '${values.compare}'`);
  if (values.baseline !== undefined && (!compared || !(compared in PROXY_OF))) throw new UsageError(`--baseline needs --compare with one of ${Object.keys(PROXY_OF).join(", ")}`);
  if (values.baseline !== undefined && !/^[\w./^~-]{1,100}$/.test(values.baseline)) throw new UsageError(`--baseline takes a git ref, got '${values.baseline}'`);
  // A rate is a number of requests per second, bounded by what one client thread can send.
  const rawRate = process.env.BENCH_RATE;
  if (rawRate !== undefined && rawRate !== "") {
    const value = Number(rawRate);
    if (!Number.isInteger(value) || value < 1 || value > 100_000) throw new UsageError(`BENCH_RATE must be a whole number of requests per second (1-100000), got '${rawRate}'`);
    rate = value;
  }
  if (values.only !== undefined && values.only !== "views") throw new UsageError(`--only takes 'views', got '${values.only}'`);
  return {
    json: values.json === true,
    only: values.only === "views" ? "views" : undefined,
    profile: profiled,
    compare: compared,
    separateControlPlane: values["separate-control-plane"] === true,
    baseline: values.baseline,
    seconds: positiveSeconds("BENCH_SECONDS", 10),
    warmupSeconds: positiveSeconds("BENCH_WARMUP_SECONDS", 2),
    rounds: Math.max(1, Math.round(positiveSeconds("BENCH_ROUNDS", 5))),
  };
}

let jsonMode = false;
/** Progress lines: stdout normally, stderr with --json so stdout carries only the results. */
function progress(line: string): void {
  (jsonMode ? process.stderr : process.stdout).write(`${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// The workers

interface BenchCase {
  name: "direct" | "bare" | "weft" | "weft-retries" | "weft-limited" | "weft-debug" | "weft-4000" | "rpc-bare" | "rpc-weft" | "baseline";
  worker: string;
}

/** The Weft proxy worker each case goes through (the RPC case through its caller's binding). */
const PROXY_OF: Partial<Record<BenchCase["name"], string>> = {
  weft: "weft-proxy-bench",
  "weft-retries": "weft-proxy-bench-retries",
  "weft-limited": "weft-proxy-bench-limited",
  "weft-debug": "weft-proxy-bench-debug",
  "rpc-weft": "weft-proxy-bench",
};

/**
 * Writes the proxy's code (workers/ and shared/) as of git commit `ref` under .weft/ (ignored by
 * git, and inside the repository so its imports resolve node_modules) and returns its entry module.
 */
function extractBaseline(ref: string): string {
  const dir = path.join(ROOT, ".weft", "bench-baseline");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const tar = execFileSync("git", ["-C", ROOT, "archive", "--format=tar", ref, "workers", "shared"], { maxBuffer: 256 * 1024 * 1024 });
  execFileSync("tar", ["-x", "-C", dir], { input: tar });
  return path.join(dir, "workers", "proxy", "index.ts");
}

/** Cases whose worker `--profile` can profile. */
const PROFILED = ["weft", "weft-retries", "weft-limited", "weft-debug", "bare", "rpc-weft", "rpc-bare"] as const satisfies ReadonlyArray<BenchCase["name"]>;


/** A Weft proxy instance as a `[env.*]` of workers/proxy/wrangler.toml would declare it. */
function proxyDeployment(base: Deployment, name: string, service: string, debug: boolean, upstream: string): Deployment {
  return {
    ...base,
    name,
    env: name,
    // Telemetry as deployed: metrics, access lines for failed/retried/limited/slow requests, 5% of traces sampled.
    vars: {
      WEFT_SERVICE: service,
      WEFT_ENV: "production",
      WEFT_DEBUG_HEADERS: debug ? "true" : "false",
      WEFT_ACCESS_LOG: "errors",
      WEFT_TRACE_SAMPLE_RATE: "0.05",
      WEFT_OTLP_ENDPOINT: "",
    },
    services: [
      { binding: "CONTROL_PLANE", service: "weft-control-plane", entrypoint: "ConfigService", props: { service } },
      { binding: "BENCH_V1", service: upstream },
      { binding: "BENCH_V2", service: upstream },
    ],
    durableObjects: [],
    sqliteClasses: [],
    routes: [],
    secrets: [],
  };
}

/** One service shaped like the demo's catalogue: two worker backends split 90/10, sticky per shopper. */
function benchService(name: string, resilient = false, limited = false): ServiceInput {
  return {
    // A limit that is configured but never reached: the cost of counting, not of refusing.
    ...(limited ? { rateLimits: [{ name: "api-key", key: "header:x-api-key", limit: 1_000_000_000, periodSeconds: 60 }] } : {}),
    name,
    backends: [
      { name: `${name}-v1`, type: "worker", binding: "BENCH_V1" },
      { name: `${name}-v2`, type: "worker", binding: "BENCH_V2" },
    ],
    routes: [
      {
        name: "products",
        match: { path: "/*" },
        split: { weights: { [`${name}-v1`]: 90, [`${name}-v2`]: 10 }, sticky: "cookie:shopper" },
        // The demo's resilience defaults: retries and a failover backend (nothing fails in the bench).
        ...(resilient ? { retries: { attempts: 3 }, failover: [`${name}-v2`] } : {}),
      },
    ],
  };
}

/** `bench` plus `count - 1` generated services `svc-0001`, `svc-0002`, … */
function meshConfig(count: number): MeshConfigInput {
  const generated = Array.from({ length: count - 3 }, (_, i) => benchService(`svc-${String(i + 1).padStart(4, "0")}`));
  return { services: [benchService(BENCH_SERVICE), benchService(RETRIES_SERVICE, true), benchService(LIMITED_SERVICE, false, true), ...generated] };
}

// ---------------------------------------------------------------------------------------------
// Requests

/** The request mix: one product page per shopper, each shopper with their own sticky cookie. */
function shopperRequests(): RequestSpec[] {
  const run = Math.random().toString(36).slice(2, 8);
  return Array.from({ length: SHOPPERS }, (_, i) => ({
    method: "GET",
    path: `/products/bench-${String(i % 50).padStart(4, "0")}`,
    headers: {
      accept: "application/json",
      cookie: `session=s${i}${run}; shopper=${run}-${i.toString(36)}-${(i * 2654435761).toString(36)}; theme=light`,
      "x-api-key": `key-${i % API_KEYS}`,
    },
  }));
}

async function get(url: URL, request: RequestSpec): Promise<Response> {
  const response = await fetch(new URL(request.path ?? "/", url), { method: request.method ?? "GET", headers: request.headers ?? {} });
  await response.arrayBuffer();
  return response;
}

async function expectOk(name: string, url: URL, request: RequestSpec): Promise<void> {
  const response = await fetch(new URL(request.path ?? "/", url), { headers: request.headers ?? {} });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`${name} (${url.origin}) answered ${response.status}: ${body.slice(0, 300)}`);
  JSON.parse(body);
}

/** Checks through the debug proxy that the split spreads shoppers ~90/10 and keeps each one sticky. */
async function checkSplit(url: URL, requests: RequestSpec[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const first = new Map<number, string>();
  for (const [i, request] of requests.entries()) {
    const response = await get(url, request);
    const backend = response.headers.get("x-weft-backend") ?? `status ${response.status}`;
    counts[backend] = (counts[backend] ?? 0) + 1;
    first.set(i, backend);
  }
  for (const [i, request] of requests.slice(0, 50).entries()) {
    const again = (await get(url, request)).headers.get("x-weft-backend");
    if (again !== first.get(i)) throw new Error(`split is not sticky: shopper ${i} went to ${first.get(i)} then ${again}`);
  }
  const v1 = counts[`${BENCH_SERVICE}-v1`] ?? 0;
  const v2 = counts[`${BENCH_SERVICE}-v2`] ?? 0;
  if (v1 + v2 !== requests.length || v2 < requests.length * 0.02 || v2 > requests.length * 0.25) {
    throw new Error(`split does not spread shoppers ~90/10: ${JSON.stringify(counts)}`);
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Load

interface Measured {
  name: string;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  /** workerd CPU time per request (all isolates: client-facing worker, upstream, control plane); Linux only. */
  workerd_cpu_us_per_req: number | null;
  /** The control plane's share of `workerd_cpu_us_per_req` when it runs in its own workerd (--separate-control-plane). */
  control_plane_cpu_us_per_req: number | null;
  requests: number;
  /** Requests/s in each interleaved round, in order: a ratio per round pairs cases measured minutes apart at most. */
  rps_rounds: number[];
  errors: number;
  timeouts: number;
  non2xx: number;
  status_codes: Record<string, number>;
}

let running: Instance | undefined;
/** Access log lines the proxies wrote. */
let accessLines = 0;

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}


/** One autocannon run; latencies are taken per response (autocannon's own histogram has 1 ms resolution). */
async function load(url: URL, requests: RequestSpec[], seconds: number): Promise<{ result: Result; latencies: Float64Array }> {
  const latencies: number[] = [];
  const instance = autocannon({
    url: url.origin,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
    requests,
    ...(rate !== undefined ? { overallRate: rate } : {}),
  });
  instance.on("response", (_client, status, _bytes, responseTime) => {
    if (status >= 200 && status < 300) latencies.push(responseTime);
  });
  running = instance;
  try {
    const result = await instance;
    return { result, latencies: Float64Array.from(latencies).sort() };
  } finally {
    running = undefined;
  }
}

function failures(result: Result): number {
  return result.errors + result.timeouts + result.non2xx + result.mismatches;
}

/** One measured run of one case. */
interface Sample {
  latencies: Float64Array;
  seconds: number;
  ticks: number | null;
  /** The part of `ticks` the control plane's own workerd used (--separate-control-plane only). */
  controlTicks: number | null;
  result: Result;
}

async function sample(benchCase: BenchCase, url: URL, requests: RequestSpec[], seconds: number, warmupSeconds: number): Promise<Sample> {
  await settle();
  if (warmupSeconds > 0) {
    progress(`  warming up ${benchCase.name}…`);
    const warm = await load(url, requests, warmupSeconds);
    if (failures(warm.result) > 0) {
      throw new Error(`${benchCase.name}: ${failures(warm.result)} failed requests while warming up (${JSON.stringify(warm.result.statusCodeStats)})`);
    }
  }
  progress(`  measuring ${benchCase.name} (${seconds.toFixed(1)} s)…`);
  const pids = workerdPids();
  const ticksBefore = cpuTicks(pids);
  const controlBefore = cpuTicks(controlPlanePids);
  const { result, latencies } = await load(url, requests, seconds);
  return {
    latencies,
    seconds: result.duration,
    ticks: pids.length > 0 ? cpuTicks(pids) - ticksBefore : null,
    controlTicks: controlPlanePids.length > 0 ? cpuTicks(controlPlanePids) - controlBefore : null,
    result,
  };
}

/**
 * Measures `cases` in `rounds` interleaved rounds (the order rotates every round) and pools each
 * case's samples. Cases measured side by side share the machine's drift, so their ratios are far
 * steadier than back-to-back runs (±15% between single runs was seen on a shared 2-core machine).
 */
async function measureRounds(cases: Array<{ benchCase: BenchCase; url: URL }>, requests: RequestSpec[], args: Args): Promise<Measured[]> {
  const samples = new Map<string, Sample[]>(cases.map((c) => [c.benchCase.name, []]));
  const perRound = args.seconds / args.rounds;
  for (let r = 0; r < args.rounds; r++) {
    progress(`round ${r + 1}/${args.rounds}`);
    const order = cases.map((_, i) => cases[(i + r) % cases.length]).filter((c) => c !== undefined);
    for (const { benchCase, url } of order) {
      samples.get(benchCase.name)?.push(await sample(benchCase, url, requests, perRound, r === 0 ? args.warmupSeconds : 0));
    }
  }
  return cases.map(({ benchCase }) => pool(benchCase.name, samples.get(benchCase.name) ?? []));
}

function pool(name: string, runs: Sample[]): Measured {
  const latencies = Float64Array.from(runs.flatMap((r) => [...r.latencies])).sort();
  const seconds = runs.reduce((sum, r) => sum + r.seconds, 0);
  const ticks = runs.every((r) => r.ticks !== null) ? runs.reduce((sum, r) => sum + (r.ticks ?? 0), 0) : null;
  const controlTicks = runs.every((r) => r.controlTicks !== null) ? runs.reduce((sum, r) => sum + (r.controlTicks ?? 0), 0) : null;
  const codes: Record<string, number> = {};
  for (const run of runs) {
    for (const [code, stat] of Object.entries(run.result.statusCodeStats)) codes[code] = (codes[code] ?? 0) + stat.count;
  }
  return {
    name,
    rps: round(latencies.length / seconds, 0),
    p50_ms: round(percentile(latencies, 0.5), 3),
    p90_ms: round(percentile(latencies, 0.9), 3),
    p99_ms: round(percentile(latencies, 0.99), 3),
    workerd_cpu_us_per_req: ticks !== null && latencies.length > 0 ? round((ticks * 10_000) / latencies.length, 1) : null,
    control_plane_cpu_us_per_req: controlTicks !== null && runs.length > 0 && latencies.length > 0 ? round((controlTicks * 10_000) / latencies.length, 1) : null,
    requests: latencies.length,
    rps_rounds: runs.map((r) => round(r.latencies.length / r.seconds, 0)),
    errors: runs.reduce((sum, r) => sum + r.result.errors, 0),
    timeouts: runs.reduce((sum, r) => sum + r.result.timeouts, 0),
    non2xx: runs.reduce((sum, r) => sum + r.result.non2xx + r.result.mismatches, 0),
    status_codes: codes,
  };
}

// ---------------------------------------------------------------------------------------------
// Quiet machine: wait until workerd (our child) stops burning CPU, e.g. after a config publication




/** Waits until workerd uses under 10% of a core for two 250 ms windows in a row; returns the wait. */
async function settle(maxMs = 120_000): Promise<number> {
  const started = performance.now();
  const pids = workerdPids();
  if (pids.length === 0) {
    await sleep(1_000);
    return performance.now() - started;
  }
  let quiet = 0;
  let last = cpuTicks(pids);
  while (quiet < 2 && performance.now() - started < maxMs) {
    await sleep(250);
    const now = cpuTicks(pids);
    quiet = now - last <= 2 ? quiet + 1 : 0;
    last = now;
  }
  return performance.now() - started;
}

// ---------------------------------------------------------------------------------------------
// Control plane

/** The answer to `PUT /admin/config` (durable-objects/config-store.ts `ConfigWrite`). */
interface ConfigWrite {
  version: number;
  changed: string[];
}

async function putConfig(mesh: RunningMesh, token: string, config: MeshConfigInput): Promise<ConfigWrite> {
  const response = await fetch(`${mesh.adminUrl}/admin/config`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "if-match": "*", "x-weft-reason": "bench" },
    body: JSON.stringify(config),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`PUT /admin/config answered ${response.status}: ${body.slice(0, 500)}`);
  return JSON.parse(body) as ConfigWrite;
}

interface Scale {
  services: number;
  proxy_service: string;
  config_bytes: number;
  put_ms: number;
  first_request_ms: number;
  /** Slowest of the requests sent straight to the upstream (every 100 ms) meanwhile: does publication stall workerd? */
  direct_max_ms_during_propagation: number;
  published_ms: number;
}

/** PUTs the 4,000-service config, then times how soon the 4k proxy serves from it. */
/** Polls `url` until it answers 200 (503 meaning "not configured yet"); returns ms since `since`. */
async function firstServed(name: string, url: URL, request: RequestSpec, since: number): Promise<number> {
  while (performance.now() - since < 120_000) {
    const response = await get(url, request);
    if (response.status === 200) return performance.now() - since;
    if (response.status !== 503) throw new Error(`${name} answered ${response.status} while its config propagated`);
    await sleep(5);
  }
  throw new Error(`${name} did not serve from the new config within 120 s`);
}

async function scaleUp(mesh: RunningMesh, token: string, url: URL, directUrl: URL, request: RequestSpec): Promise<Scale> {
  // Before: the 4k proxy's service does not exist yet, so it must refuse (this also starts its isolate).
  const before = await get(url, request);
  if (before.status !== 503) throw new Error(`weft-4000 answered ${before.status} before its service was configured (expected 503)`);

  const config = meshConfig(SCALE_SERVICES);
  const bytes = Buffer.byteLength(JSON.stringify(config));
  progress(`putting a ${SCALE_SERVICES.toLocaleString("en-US")}-service config (${(bytes / 1024).toFixed(0)} KiB)…`);
  const started = performance.now();
  const write = await putConfig(mesh, token, config);
  const putMs = performance.now() - started;
  const acknowledged = performance.now();
  if (!write.changed.includes(SCALE_SERVICE)) throw new Error(`the 4,000-service config did not change ${SCALE_SERVICE}`);

  // The weft-4000 proxy already asked (and was told "no such service"), so it serves once the control
  // plane has published its slice to its shard and the proxy's cache has refreshed.
  let propagated = false;
  const probeDirect = async (): Promise<number> => {
    let slowest = 0;
    while (!propagated) {
      const sent = performance.now();
      const response = await get(directUrl, request);
      if (response.status !== 200) throw new Error(`direct answered ${response.status} after the PUT`);
      slowest = Math.max(slowest, performance.now() - sent);
      await sleep(100);
    }
    return slowest;
  };
  const [firstMs, directMs] = await Promise.all([
    firstServed("weft-4000", url, request, acknowledged).finally(() => (propagated = true)),
    probeDirect(),
  ]);
  progress(`waiting for workerd to settle (the control plane pushes slices only to shards a proxy has read)…`);
  await settle();
  const publishedMs = performance.now() - acknowledged;
  return {
    services: SCALE_SERVICES,
    proxy_service: SCALE_SERVICE,
    config_bytes: bytes,
    put_ms: round(putMs, 1),
    first_request_ms: round(firstMs, 1),
    direct_max_ms_during_propagation: round(directMs, 1),
    published_ms: round(publishedMs, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Profile: where one case's worker spends its CPU time (V8's sampling profiler over the inspector)

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

/** One Chrome DevTools Protocol session on a worker's inspector socket. */
async function inspector(port: number, worker: string): Promise<{ call(method: string, params?: object): Promise<unknown>; close(): void }> {
  const socket = new WebSocket(`ws://${HOST}:${port}/core:user:${worker}`);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("error", () => reject(new Error(`cannot open the inspector of ${worker}`)), { once: true });
  });
  let next = 0;
  const waiting = new Map<number, (result: unknown) => void>();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
    if (message.id !== undefined) waiting.get(message.id)?.(message.result);
  });
  return {
    call: (method, params = {}) =>
      new Promise((resolve) => {
        const id = ++next;
        waiting.set(id, resolve);
        socket.send(JSON.stringify({ id, method, params }));
      }),
    close: () => socket.close(),
  };
}

/** Profiles `benchCase`'s worker while load runs, writes the profile and prints the heaviest functions by self time. */
async function profileCase(benchCase: BenchCase, url: URL, requests: RequestSpec[], options: { inspectorPort: number; seconds: number; warmupSeconds: number }): Promise<void> {
  progress(`  warming up ${benchCase.name}…`);
  await load(url, requests, options.warmupSeconds);
  const session = await inspector(options.inspectorPort, benchCase.worker);
  await session.call("Profiler.enable");
  await session.call("Profiler.setSamplingInterval", { interval: 50 });
  await session.call("Profiler.start");
  progress(`  profiling ${benchCase.name} (${options.seconds} s under load)…`);
  const { result } = await load(url, requests, options.seconds);
  const stopped = (await session.call("Profiler.stop")) as { profile: CpuProfile };
  session.close();
  const profile = stopped.profile;
  const file = path.join(ROOT, "bench", `${benchCase.name}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  const requestsServed = result.requests.total;
  const sampleUs = (profile.endTime - profile.startTime) / Math.max(1, profile.samples?.length ?? 1);
  const self = new Map<string, number>();
  for (const node of profile.nodes) {
    const frame = node.callFrame;
    const where = frame.url ? `${path.basename(frame.url)}:${frame.lineNumber + 1}` : "";
    const name = `${frame.functionName || "(anonymous)"} ${where}`.trim();
    self.set(name, (self.get(name) ?? 0) + (node.hitCount ?? 0));
  }
  const idle = new Set(["(idle)", "(program)", "(garbage collector)"]);
  const busy = [...self].filter(([name]) => !idle.has(name)).reduce((sum, [, hits]) => sum + hits, 0);
  progress(`\n${benchCase.name}: ${requestsServed} requests; JS self time per request (µs), heaviest first:`);
  for (const [name, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    progress(`  ${((hits * sampleUs) / Math.max(1, requestsServed)).toFixed(2).padStart(7)}  ${name}`);
  }
  progress(`  busy JS total: ${((busy * sampleUs) / Math.max(1, requestsServed)).toFixed(1)} µs/request. Profile: ${path.relative(process.cwd(), file)}`);
}

// ---------------------------------------------------------------------------------------------
// Report

interface Results {
  cases: Measured[];
  ratios: Ratios;
  /** The throughput ratios in each interleaved round (case and reference measured back to back): their spread is this run's noise. */
  ratio_rounds: Partial<Record<keyof Ratios, number[]>>;
  targets: typeof TARGETS;
  /** Every ratio within its target. */
  met: boolean;
  seconds: number;
  rounds: number;
  warmup_seconds: number;
  /** Where the control plane and its Durable Objects ran: the proxies' workerd (the default) or their own (--separate-control-plane). */
  control_plane: "own workerd" | "proxies' workerd";
  connections: number;
  machine: { cpus: number; cpu_model: string; node: string; platform: string };
  scale: Scale;
  split: Record<string, number>;
  /** Rate-limit lease calls per measured request of weft-limited (an upper bound: warm-up requests also leased). */
  rate_limit_do_calls_per_request: number | null;
  /** Access log lines the Weft proxies wrote during the whole run (one per proxied request). */
  access_log_lines: number;
  /** The admin views at 5 and at 4,000 services (scripts/bench-views.ts). */
  views?: ViewsResult;
  date: string;
}

/** A throughput ratio in each round: the case's req/s over the reference's in the same round. */
function perRound(of: Measured | undefined, reference: Measured | undefined): number[] {
  if (!of || !reference) return [];
  return of.rps_rounds.map((rps, i) => round(rps / (reference.rps_rounds[i] ?? Number.NaN), 3));
}

function table(results: Results): string {
  const bare = results.cases.find((c) => c.name === "bare")?.rps ?? Number.NaN;
  const rows = results.cases.map((c) => [
    c.name,
    Math.round(c.rps).toLocaleString("en-US"),
    c.p50_ms.toFixed(2),
    c.p99_ms.toFixed(2),
    (c.rps / bare).toFixed(2),
    c.workerd_cpu_us_per_req === null ? "n/a" : c.workerd_cpu_us_per_req.toFixed(0),
    String(c.errors + c.timeouts + c.non2xx),
  ]);
  const header = ["case", "req/s", "p50 ms", "p99 ms", "vs bare", "workerd µs/req", "errors/non-2xx"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]): string => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join("  ");
  const r = results.ratios;
  const s = results.scale;
  return [
    "",
    line(header),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map(line),
    "",
    ...(Object.entries(r) as Array<[keyof Ratios, number]>).map(([name, value]) => {
      const target: { min?: number; max?: number } | undefined = name in TARGETS ? TARGETS[name as keyof typeof TARGETS] : undefined;
      const goal = target?.min !== undefined ? `target ≥ ${target.min.toFixed(2)}` : target?.max !== undefined ? `target ≤ ${target.max.toFixed(2)}` : "";
      const verdict = target ? (meets(name, value) ? "  (met)" : "  (NOT met)") : "";
      const rounds = results.ratio_rounds[name];
      const spread = rounds && rounds.length > 1 ? `   rounds ${rounds.map((x) => x.toFixed(2)).join(" · ")}` : "";
      return `${name.padEnd(22)} ${value.toFixed(3)}   ${goal}${verdict}${spread}`;
    }),
    `rate limit: ${results.rate_limit_do_calls_per_request ?? "?"} Durable Object calls per request of weft-limited (a limit per API key, not reached)`,
    "",
    `scale: PUT of a ${s.services.toLocaleString("en-US")}-service config (${(s.config_bytes / 1024).toFixed(0)} KiB) took ${s.put_ms.toFixed(0)} ms;` +
      ` the ${s.proxy_service} proxy served its first request from it ${s.first_request_ms.toFixed(0)} ms after the PUT returned;` +
      ` workerd was quiet again ${(s.published_ms / 1000).toFixed(1)} s after the PUT.` +
      (s.direct_max_ms_during_propagation > 1_000
        ? `\n  NOTE: meanwhile a request straight to the upstream took up to ${s.direct_max_ms_during_propagation.toFixed(0)} ms:` +
          ` publishing the slices stalls the whole local workerd, so these times measure that stall.`
        : ""),
    `split check (debug proxy, ${SHOPPERS} shoppers): ${Object.entries(results.split).map(([b, n]) => `${b} ${n}`).join(", ")}`,
    ...(results.views ? [viewsTable(results.views)] : []),
    `${results.seconds} s per case in ${results.rounds} interleaved rounds after ${results.warmup_seconds} s warm-up, ${results.connections} connections, 1 client thread;` +
      ` the control plane in ${results.control_plane === "own workerd" ? "a workerd of its own (--separate-control-plane)" : "the proxies' workerd"};` +
      ` ${results.machine.cpus} CPUs, Node ${results.machine.node}. Results in ${path.relative(process.cwd(), RESULTS_PATH)}.`,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// The control plane in a workerd process of its own

/** PIDs of the control plane's own workerd with --separate-control-plane (empty otherwise). */
let controlPlanePids: number[] = [];

/**
 * Boots the control plane (and its Durable Objects) in one workerd process and `workers` (upstream,
 * bare proxy, Weft proxies, RPC workers) in another, as in production, where the objects run in
 * other machines than the proxies' isolates. Both instances share a private Miniflare dev registry:
 * a proxy's `CONTROL_PLANE` binding names a worker the second instance does not run, so Miniflare
 * binds it to its registry proxy, which calls the `ConfigService` entrypoint (with the binding's
 * props) in the first process over workerd's debug port. The proxy's code and its request path are
 * the deployed ones; only where the binding leads changes (one local hop more per control-plane call,
 * which the proxy makes in the background: config reads, telemetry batches, rate-limit leases).
 */
async function startSeparated(options: {
  controlPlane: Deployment;
  workers: V4WorkerOptions[];
  token: string;
  onLog: (log: WorkerLog) => void;
  inspectorPort: number | undefined;
}): Promise<RunningMesh> {
  const registry = mkdtempSync(path.join(os.tmpdir(), "weft-bench-registry-"));
  const cp = options.controlPlane;
  const code = await bundleMains([cp.main]);
  const before = new Set(workerdPids());
  // The same vars and secret startMesh gives the control plane (its issuer is never used here).
  const overrides = { vars: localMeshVars({ issuer: `http://${HOST}:0` }), secrets: { WEFT_ADMIN_TOKEN: options.token } };
  const control = new Miniflare(
    convertV4MiniflareOptions({
      host: HOST,
      port: 0,
      unsafeDevRegistryPath: registry,
      handleStructuredLogs: options.onLog,
      workers: [{ ...workerOptions(cp, code.get(cp.main) ?? "", [cp], overrides), unsafeDirectSockets: [{ host: HOST, port: 0 }] }],
    }),
  );
  let data: Miniflare | undefined;
  try {
    await control.ready;
    controlPlanePids = workerdPids().filter((pid) => !before.has(pid));
    const adminUrl = (await control.unsafeGetDirectURL(cp.name)).origin;
    data = new Miniflare(
      convertV4MiniflareOptions({
        host: HOST,
        port: 0,
        unsafeDevRegistryPath: registry,
        ...(options.inspectorPort !== undefined ? { inspectorPort: options.inspectorPort } : {}),
        handleStructuredLogs: options.onLog,
        workers: options.workers,
      }),
    );
    const shopUrl = (await data.ready).origin;
    const dataPlane = data;
    return {
      mf: dataPlane,
      shopUrl,
      adminUrl,
      deployments: [cp],
      dispose: async () => {
        await Promise.allSettled([dataPlane.dispose(), control.dispose()]);
        rmSync(registry, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.allSettled([data?.dispose(), control.dispose()]);
    rmSync(registry, { recursive: true, force: true });
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function bench(args: Args, setMesh: (mesh: RunningMesh) => void): Promise<number> {
  const controlPlane = deploymentsOf(CONTROL_PLANE_CONFIG);
  const upstream = onlyDeployment(UPSTREAM_CONFIG);
  const bare = onlyDeployment(BARE_CONFIG);
  const proxyBase = deploymentsOf(PROXY_CONFIG)[0];
  if (controlPlane.length !== 1 || !proxyBase) throw new Error("cannot find the control plane or the proxy's wrangler config");
  const proxies = [
    proxyDeployment(proxyBase, "weft-proxy-bench", BENCH_SERVICE, false, upstream.name),
    proxyDeployment(proxyBase, "weft-proxy-bench-debug", BENCH_SERVICE, true, upstream.name),
    proxyDeployment(proxyBase, "weft-proxy-bench-4k", SCALE_SERVICE, false, upstream.name),
    proxyDeployment(proxyBase, "weft-proxy-bench-retries", RETRIES_SERVICE, false, upstream.name),
    proxyDeployment(proxyBase, "weft-proxy-bench-limited", LIMITED_SERVICE, false, upstream.name),
  ];
  // Workers RPC: one caller per case, its TARGET bound to the bare RPC forwarder or to Weft's proxy
  // (as a worker of the mesh whose `calls` name the bench service: props.caller).
  const rpcForwarder = onlyDeployment(RPC_FORWARDER_CONFIG);
  const rpcCaller = onlyDeployment(RPC_CALLER_CONFIG);
  const rpcCallers = [
    { ...rpcCaller, name: "weft-bench-rpc-caller-bare", services: [{ binding: "TARGET", service: rpcForwarder.name }] },
    { ...rpcCaller, name: "weft-bench-rpc-caller-weft", services: [{ binding: "TARGET", service: "weft-proxy-bench", props: { caller: "bench-client" } }] },
  ];
  // --baseline: the compared case's proxy once more, built from another commit (and its RPC caller).
  const baselineOf = args.baseline !== undefined && args.compare ? PROXY_OF[args.compare] : undefined;
  const baselineProxy = proxies.find((p) => p.name === baselineOf);
  if (args.baseline !== undefined && baselineProxy) {
    const main = extractBaseline(args.baseline);
    progress(`baseline: ${baselineProxy.name} as of ${args.baseline} (${execFileSync("git", ["-C", ROOT, "rev-parse", "--short", args.baseline], { encoding: "utf8" }).trim()})`);
    proxies.push({ ...baselineProxy, name: "weft-proxy-baseline", env: "weft-proxy-baseline", main });
    if (args.compare === "rpc-weft") rpcCallers.push({ ...rpcCaller, name: "weft-bench-rpc-caller-baseline", services: [{ binding: "TARGET", service: "weft-proxy-baseline", props: { caller: "bench-client" } }] });
  }
  const baselineWorker = args.compare === "rpc-weft" ? "weft-bench-rpc-caller-baseline" : "weft-proxy-baseline";
  const cases: BenchCase[] = [
    ...(baselineProxy ? [{ name: "baseline" as const, worker: baselineWorker }] : []),
    { name: "rpc-bare", worker: "weft-bench-rpc-caller-bare" },
    { name: "rpc-weft", worker: "weft-bench-rpc-caller-weft" },
    { name: "direct", worker: upstream.name },
    { name: "bare", worker: bare.name },
    { name: "weft", worker: "weft-proxy-bench" },
    { name: "weft-retries", worker: "weft-proxy-bench-retries" },
    { name: "weft-limited", worker: "weft-proxy-bench-limited" },
    { name: "weft-debug", worker: "weft-proxy-bench-debug" },
    { name: "weft-4000", worker: "weft-proxy-bench-4k" },
  ];

  // The bench workers are extra workers rather than `deployments` because startMesh's local
  // overrides would force WEFT_DEBUG_HEADERS="true" on every proxy; each gets its own direct socket.
  progress(`booting workerd (control plane, upstream, bare proxy, ${proxies.length} Weft proxies)…`);
  const extra = [upstream, bare, rpcForwarder, ...rpcCallers, ...proxies];
  const all = [...controlPlane, ...extra];
  const code = await bundleMains(extra.map((d) => d.main));
  const token = crypto.randomUUID();
  const inspectorPort = args.profile ? await freePort() : undefined;
  // Access log lines are counted (one per proxied request is expected), not printed.
  const onLog = (log: WorkerLog): void => {
    if (log.message.startsWith(ACCESS_LOG_PREFIX)) accessLines++;
    else process.stderr.write(`${log.message}\n`);
  };
  const extraWorkers = extra.map((d) => ({
    ...workerOptions(d, code.get(d.main) ?? "", all),
    unsafeDirectSockets: [{ host: HOST, port: 0 }],
  }));
  const [controlPlaneDeployment] = controlPlane;
  const mesh =
    args.separateControlPlane && controlPlaneDeployment
      ? await startSeparated({ controlPlane: controlPlaneDeployment, workers: extraWorkers, token, onLog, inspectorPort })
      : await startMesh({
          port: 0,
          adminPort: 0,
          host: HOST,
          ...(inspectorPort !== undefined ? { inspectorPort } : {}),
          adminToken: token,
          deployments: controlPlane,
          onLog,
          extraWorkers,
        });
  setMesh(mesh);
  if (args.separateControlPlane) progress(`control plane in its own workerd (pid ${controlPlanePids.join(", ")}); the proxies reach it through the dev registry`);
  const urls = new Map<string, URL>();
  for (const c of cases) urls.set(c.name, await mesh.mf.unsafeGetDirectURL(c.worker));
  const urlOf = (name: BenchCase["name"]): URL => {
    const url = urls.get(name);
    if (!url) throw new Error(`no direct URL for ${name}`);
    return url;
  };

  // The mesh of five: bench plus four services.
  await putConfig(mesh, token, meshConfig(5));
  const requests = shopperRequests();
  const probe = requests[0];
  if (!probe) throw new Error("no requests");
  for (const c of cases.filter((c) => c.name !== "weft-4000")) await expectOk(c.name, urlOf(c.name), probe);
  // A shopper without a cookie is given one (the sticky path's other branch).
  const fresh = await get(urlOf("weft"), { path: "/products/bench-0001" });
  if (fresh.status !== 200 || !fresh.headers.get("set-cookie")?.startsWith("shopper=")) {
    throw new Error(`weft did not set a sticky cookie for a new shopper (status ${fresh.status})`);
  }
  if ((await get(urlOf("weft"), probe)).headers.has("x-weft-backend")) throw new Error("weft sends debug headers; WEFT_DEBUG_HEADERS must be \"false\"");
  const split = await checkSplit(urlOf("weft-debug"), requests);
  progress(`checked: every case answers 200; split over ${SHOPPERS} shoppers: ${JSON.stringify(split)}`);

  const caseNamed = (name: BenchCase["name"]): { benchCase: BenchCase; url: URL } => {
    const benchCase = cases.find((c) => c.name === name);
    if (!benchCase) throw new Error(`no case ${name}`);
    return { benchCase, url: urlOf(name) };
  };
  if (args.profile && inspectorPort !== undefined) {
    const { benchCase, url } = caseNamed(args.profile);
    // The RPC cases are loaded through their caller, but what is profiled is the worker that forwards the calls.
    const worker = args.profile === "rpc-weft" ? "weft-proxy-bench" : args.profile === "rpc-bare" ? rpcForwarder.name : benchCase.worker;
    await profileCase({ ...benchCase, worker }, url, requests, { inspectorPort, seconds: args.seconds, warmupSeconds: args.warmupSeconds });
    return 0;
  }
  if (args.compare) {
    // A quick A/B while working on the proxy: the two cases side by side (three with --baseline), nothing written.
    const reference = args.compare === "rpc-weft" ? "rpc-bare" : "bare";
    const pair = await measureRounds([caseNamed(reference), caseNamed(args.compare), ...(baselineProxy ? [caseNamed("baseline")] : [])], requests, args);
    const [bareRun, other, base] = pair;
    for (const m of pair) {
      const split = m.control_plane_cpu_us_per_req !== null ? ` (control plane's workerd ${m.control_plane_cpu_us_per_req})` : "";
      progress(`${m.name}: ${m.rps.toFixed(0)} req/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, workerd CPU ${m.workerd_cpu_us_per_req ?? "n/a"} µs/req${split}`);
    }
    if (bareRun && other) progress(`${other.name} vs ${bareRun.name}: ${round(other.rps / bareRun.rps, 3)} (p99 ${round(other.p99_ms / bareRun.p99_ms, 2)}×); per round ${perRound(other, bareRun).join(" · ")}`);
    if (bareRun && other && base) {
      // CPU the proxy adds over the bare proxy, working tree against the baseline commit.
      // With --separate-control-plane, the proxies' workerd only: the control plane's work is shared by both proxies.
      const own = (m: Measured): number => (m.workerd_cpu_us_per_req ?? Number.NaN) - (m.control_plane_cpu_us_per_req ?? 0);
      const added = (m: Measured): number => own(m) - own(bareRun);
      progress(`baseline (${args.baseline ?? ""}) vs ${bareRun.name}: ${round(base.rps / bareRun.rps, 3)} (p99 ${round(base.p99_ms / bareRun.p99_ms, 2)}×)`);
      progress(`CPU added over ${bareRun.name}: working tree ${round(added(other), 1)} µs/req, baseline ${round(added(base), 1)} µs/req`);
    }
    return 0;
  }
  const measured = await measureRounds((["direct", "bare", "weft", "weft-retries", "weft-limited", "weft-debug"] as const).map(caseNamed), requests, args);

  // RPC through the proxy against the bare RPC forwarder, side by side.
  measured.push(...(await measureRounds((["rpc-bare", "rpc-weft"] as const).map(caseNamed), requests, args)));

  const scale = await scaleUp(mesh, token, urlOf("weft-4000"), urlOf("direct"), probe);
  progress(
    `PUT took ${scale.put_ms.toFixed(0)} ms; weft-4000 served from it after ${scale.first_request_ms.toFixed(0)} ms; ` +
      `workerd quiet after ${(scale.published_ms / 1000).toFixed(1)} s`,
  );
  // How often the rate-limited proxy had to ask its counters (the leases each counter served).
  let leases = 0;
  for (let k = 0; k < API_KEYS; k++) {
    const res = await fetch(`${mesh.adminUrl}/admin/services/${LIMITED_SERVICE}/ratelimit/counters?limit=api-key&key=key-${k}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    leases += res.ok ? ((await res.json()) as { leases: number }).leases : 0;
  }
  const limitedRequests = measured.find((m) => m.name === "weft-limited")?.requests ?? 0;
  const doCallsPerRequest = limitedRequests > 0 ? round(leases / limitedRequests, 5) : null;

  // The 4,000-service case is interleaved with its own bare runs, measured in the same stretch.
  const [bareAgain, scaled] = await measureRounds([caseNamed("bare"), caseNamed("weft-4000")], requests, args);
  if (scaled) measured.push(scaled);

  const named = (name: BenchCase["name"]): Measured | undefined => measured.find((m) => m.name === name);
  const rps = (name: BenchCase["name"]): number => named(name)?.rps ?? Number.NaN;
  const p99 = (name: BenchCase["name"]): number => measured.find((m) => m.name === name)?.p99_ms ?? Number.NaN;
  const ratios: Ratios = {
    weft_vs_bare: round(rps("weft") / rps("bare"), 3),
    weft_4000_vs_bare: round(rps("weft-4000") / (bareAgain?.rps ?? Number.NaN), 3),
    weft_retries_vs_bare: round(rps("weft-retries") / rps("bare"), 3),
    weft_limited_vs_bare: round(rps("weft-limited") / rps("bare"), 3),
    weft_debug_vs_bare: round(rps("weft-debug") / rps("bare"), 3),
    weft_p99_vs_bare: round(p99("weft") / p99("bare"), 3),
    weft_rpc_vs_bare_rpc: round(rps("rpc-weft") / rps("rpc-bare"), 3),
    weft_vs_direct: round(rps("weft") / rps("direct"), 3),
    bare_vs_direct: round(rps("bare") / rps("direct"), 3),
  };
  const ratioRounds: Results["ratio_rounds"] = {
    weft_vs_bare: perRound(named("weft"), named("bare")),
    weft_4000_vs_bare: perRound(scaled, bareAgain),
    weft_retries_vs_bare: perRound(named("weft-retries"), named("bare")),
    weft_limited_vs_bare: perRound(named("weft-limited"), named("bare")),
    weft_debug_vs_bare: perRound(named("weft-debug"), named("bare")),
    weft_rpc_vs_bare_rpc: perRound(named("rpc-weft"), named("rpc-bare")),
  };
  const views = await benchViews(progress);
  const results: Results = {
    cases: measured,
    ratios,
    ratio_rounds: ratioRounds,
    targets: TARGETS,
    met: (Object.entries(ratios) as Array<[keyof Ratios, number]>).every(([name, value]) => meets(name, value)),
    seconds: args.seconds,
    rounds: args.rounds,
    warmup_seconds: args.warmupSeconds,
    control_plane: args.separateControlPlane ? "own workerd" : "proxies' workerd",
    connections: CONNECTIONS,
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? "unknown", node: process.version, platform: `${os.platform()}-${os.arch()}` },
    scale,
    split,
    rate_limit_do_calls_per_request: doCallsPerRequest,
    access_log_lines: accessLines,
    views,
    date: new Date().toISOString(),
  };
  writeFileSync(RESULTS_PATH, `${JSON.stringify(results, null, 2)}\n`);
  if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else process.stdout.write(`${table(results)}\n`);

  const failed = measured.filter((m) => m.errors + m.timeouts + m.non2xx > 0);
  for (const m of failed) {
    process.stderr.write(
      `bench: ${m.name} had ${m.errors} errors, ${m.timeouts} timeouts and ${m.non2xx} non-2xx responses ${JSON.stringify(m.status_codes)}\n`,
    );
  }
  return failed.length > 0 ? 1 : 0;
}

/** `--only views`: the views section alone, merged into bench/results.json as `views`. */
async function onlyViews(args: Args): Promise<number> {
  const views = await benchViews(progress);
  const previous: unknown = existsSync(RESULTS_PATH) ? JSON.parse(readFileSync(RESULTS_PATH, "utf8")) : {};
  const merged = { ...(typeof previous === "object" && previous !== null ? previous : {}), views, views_date: new Date().toISOString() };
  writeFileSync(RESULTS_PATH, `${JSON.stringify(merged, null, 2)}\n`);
  if (args.json) process.stdout.write(`${JSON.stringify(views, null, 2)}\n`);
  else process.stdout.write(`${viewsTable(views)}\n`);
  return 0;
}

async function main(): Promise<void> {
  let args: Args | "help";
  try {
    args = parseCli();
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (args === "help") {
    process.stdout.write(USAGE);
    return;
  }
  jsonMode = args.json;
  if (jsonMode) {
    // Miniflare prints the workers' console output with console.log; keep stdout for the results.
    console.log = console.info = console.debug = (...data: unknown[]) => console.error(...data);
  }

  let mesh: RunningMesh | undefined;
  let disposing: Promise<void> | undefined;
  const dispose = (): Promise<void> => (disposing ??= mesh ? mesh.dispose() : Promise.resolve());
  process.once("SIGINT", () => {
    process.stderr.write("\nbench: interrupted, stopping workerd…\n");
    running?.stop();
    void dispose().finally(() => process.exit(130));
  });

  try {
    process.exitCode = args.only === "views" ? await onlyViews(args) : await bench(args, (m) => (mesh = m));
  } catch (error) {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  } finally {
    await dispose();
  }
}

await main();
