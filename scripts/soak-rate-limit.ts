/**
 * `npm run soak:rate-limit`: what rate-limit keys chosen by clients cost the mesh (issue 14, Medium 1).
 *
 * Boots the control plane, a small upstream worker and one Weft proxy on one workerd (as
 * scripts/bench.ts does), with Durable Object state persisted to a temporary directory. The proxy's
 * service has a limit keyed on `header:x-api-key` that is never reached. Then, with autocannon:
 *
 *   repeated   every request carries the same API key
 *   new-keys   every request carries a key never seen before (25,000+ keys in all)
 *
 * in interleaved rounds, and reports the req/s of each, their ratio (target ≥ 0.5), workerd's RSS
 * before and after, and how many RateCounter objects (SQLite files) and counter rows the state holds.
 * Targets are reported, never enforced; exits non-zero only when requests fail.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import type { Instance, Result } from "autocannon";
import type { MeshConfigInput } from "../shared/config.ts";
import { RATE_SHARDS } from "../shared/rate-limit.ts";
import { onlyDeployment, round, sleep, workerdPids } from "./measure.ts";
import { bundleMains, CONTROL_PLANE_CONFIG, deploymentsOf, ROOT, SHOP_PROXY_CONFIG, startMesh, workerOptions, type Deployment, type RunningMesh } from "./mesh.ts";

const USAGE = `Usage: npm run soak:rate-limit [-- --json] [-- --keys N]

Drives one Weft proxy whose service limits per x-api-key with (a) one repeated key and (b) a new key
on every request, and reports req/s of each, their ratio (target >= 0.5), workerd memory and the
RateCounter objects in local state.

Options:
  --keys N    new keys sent in all (default 30000, at least 25000 to match the issue's measurement)
  --rounds N  interleaved rounds (default 3)
  --json      print only the results JSON on stdout (progress goes to stderr)
  --help      print this help
`;

const HOST = "127.0.0.1";
const CONNECTIONS = 32;
const SERVICE = "soak";
const TARGET_RATIO = 0.5;
const UPSTREAM_CONFIG = path.join(ROOT, "bench", "workers", "upstream", "wrangler.toml");
const PROXY_CONFIG = SHOP_PROXY_CONFIG;

interface Args {
  json: boolean;
  keys: number;
  rounds: number;
}

class UsageError extends Error {}

function parseCli(): Args | "help" {
  let values: { json?: boolean; help?: boolean; keys?: string; rounds?: string };
  try {
    ({ values } = parseArgs({
      options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" }, keys: { type: "string" }, rounds: { type: "string" } },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return "help";
  const keys = Number(values.keys ?? 30_000);
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(keys) || keys < 1_000 || keys > 1_000_000) throw new UsageError("--keys must be an integer between 1000 and 1000000");
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new UsageError("--rounds must be an integer between 1 and 20");
  return { json: values.json === true, keys, rounds };
}

let jsonMode = false;
function progress(line: string): void {
  (jsonMode ? process.stderr : process.stdout).write(`${line}\n`);
}


// ---------------------------------------------------------------------------------------------
// workerd process and state


/** Resident memory of workerd in MiB (null where /proc is missing). */
function workerdRssMiB(): number | null {
  const pids = workerdPids();
  if (pids.length === 0) return null;
  let kib = 0;
  for (const pid of pids) {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
    kib += Number(line?.replace(/\D+/g, "") ?? 0);
  }
  return round(kib / 1024, 1);
}

/** SQLite files under `dir` whose path names the RateCounter class, and their total size. */
function rateCounterFiles(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (full.includes("RateCounter") && entry.name.endsWith(".sqlite")) {
        files++;
        bytes += statSync(full).size;
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

// ---------------------------------------------------------------------------------------------
// Load

interface Measured {
  rps: number;
  requests: number;
  failed: number;
  statuses: Record<string, number>;
}

let running: Instance | undefined;

/** Sends `amount` requests over CONNECTIONS connections; `key(i)` is the API key of request i. */
async function drive(url: URL, amount: number, key: (i: number) => string): Promise<Result> {
  let sent = 0;
  const instance = autocannon({
    url: url.origin,
    connections: CONNECTIONS,
    pipelining: 1,
    amount,
    timeout: 10,
    requests: [
      {
        method: "GET",
        path: "/products/soak-1",
        setupRequest: (request) => ({ ...request, headers: { ...request.headers, accept: "application/json", "x-api-key": key(sent++) } }),
      },
    ],
  });
  running = instance;
  try {
    return await instance;
  } finally {
    running = undefined;
  }
}

function measured(results: Result[]): Measured {
  const requests = results.reduce((sum, r) => sum + r.requests.total, 0);
  const seconds = results.reduce((sum, r) => sum + r.duration, 0);
  const statuses: Record<string, number> = {};
  for (const r of results) for (const [code, stat] of Object.entries(r.statusCodeStats)) statuses[code] = (statuses[code] ?? 0) + stat.count;
  const failed = results.reduce((sum, r) => sum + r.errors + r.timeouts + r.non2xx + r.mismatches, 0);
  return { rps: round(requests / seconds, 0), requests, failed, statuses };
}

// ---------------------------------------------------------------------------------------------
// Main


function proxyDeployment(base: Deployment, upstream: string): Deployment {
  return {
    ...base,
    name: "weft-proxy-soak",
    env: "soak",
    vars: { WEFT_SERVICE: SERVICE, WEFT_ENV: "production", WEFT_DEBUG_HEADERS: "false", WEFT_ACCESS_LOG: "off", WEFT_TRACE_SAMPLE_RATE: "0", WEFT_OTLP_ENDPOINT: "" },
    services: [
      { binding: "CONTROL_PLANE", service: "weft-control-plane", entrypoint: "ConfigService", props: { service: SERVICE } },
      { binding: "SOAK_V1", service: upstream },
    ],
    durableObjects: [],
    sqliteClasses: [],
    routes: [],
    secrets: [],
  };
}

/** One service, one route, a limit per API key that is never reached (the cost of counting, not of refusing). */
const CONFIG: MeshConfigInput = {
  services: [
    {
      name: SERVICE,
      backends: [{ name: `${SERVICE}-v1`, type: "worker", binding: "SOAK_V1" }],
      routes: [{ name: "products", match: { path: "/*" }, split: { weights: { [`${SERVICE}-v1`]: 100 } } }],
      // An hour-long window, so the counters of every key sent are still there to be sampled at the end.
      rateLimits: [{ name: "api-key", key: "header:x-api-key", limit: 1_000_000_000, periodSeconds: 3_600 }],
    },
  ],
};

interface Results {
  repeated: Measured;
  new_keys: Measured;
  ratio_new_vs_repeated: number;
  target: { ratio: number; met: boolean };
  keys_sent: number;
  workerd_rss_mib: { before: number | null; by_round: Array<number | null>; after: number | null; after_settle: number | null };
  /** Sampled new keys whose one request their counter counted (charged in the background). */
  charged_sample: { sampled: number; counted: number };
  /** Live counter rows in the shards the sample touched. */
  counter_rows_in_sampled_shards: { shards: number; rows: number };
  rate_counter_sqlite_files: { before: number; after: number; bytes_after: number; shards_per_limit: number };
  connections: number;
  rounds: number;
  machine: { cpus: number; node: string };
  date: string;
}

async function soak(args: Args, setMesh: (mesh: RunningMesh) => void, stateDir: string): Promise<number> {
  const controlPlane = deploymentsOf(CONTROL_PLANE_CONFIG);
  const upstream = onlyDeployment(UPSTREAM_CONFIG);
  const proxyBase = deploymentsOf(PROXY_CONFIG)[0];
  if (controlPlane.length !== 1 || !proxyBase) throw new Error("cannot find the control plane or the proxy's wrangler config");
  const proxy = proxyDeployment(proxyBase, upstream.name);
  const extra = [upstream, proxy];
  const code = await bundleMains(extra.map((d) => d.main));
  const token = crypto.randomUUID();
  progress("booting workerd (control plane, upstream, one Weft proxy)…");
  const mesh = await startMesh({
    port: 0,
    adminPort: 0,
    host: HOST,
    adminToken: token,
    persistTo: stateDir,
    deployments: controlPlane,
    onLog: (log) => process.stderr.write(`${log.message}\n`),
    extraWorkers: extra.map((d) => ({ ...workerOptions(d, code.get(d.main) ?? "", [...controlPlane, ...extra]), unsafeDirectSockets: [{ host: HOST, port: 0 }] })),
  });
  setMesh(mesh);
  const url = await mesh.mf.unsafeGetDirectURL(proxy.name);
  const put = await fetch(`${mesh.adminUrl}/admin/config`, {
    method: "PUT",
    // A fresh mesh: overwrite whatever is there (If-Match: *), as the bench does.
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "if-match": "*", "x-weft-reason": "soak" },
    body: JSON.stringify(CONFIG),
  });
  if (!put.ok) throw new Error(`PUT /admin/config answered ${put.status}: ${(await put.text()).slice(0, 300)}`);
  for (let i = 0; ; i++) {
    const probe = await fetch(new URL("/products/soak-1", url), { headers: { "x-api-key": "probe" } });
    await probe.arrayBuffer();
    if (probe.status === 200) break;
    if (i > 200) throw new Error(`the proxy answered ${probe.status} after its config was written`);
    await sleep(50);
  }

  progress("warming up…");
  const run = Math.random().toString(36).slice(2, 8);
  await drive(url, 3_000, () => "warm-repeated");
  await drive(url, 3_000, (i) => `warm-${run}-${i}`);
  await sleep(1_000);
  const rssBefore = workerdRssMiB();
  const filesBefore = rateCounterFiles(stateDir).files;

  const perRound = Math.ceil(args.keys / args.rounds);
  const repeated: Result[] = [];
  const fresh: Result[] = [];
  let keysSent = 0;
  const rssByRound: Array<number | null> = [];
  const sampleKeys: string[] = [];
  for (let r = 0; r < args.rounds; r++) {
    // Alternate which case goes first, so drift over the run does not favour one.
    const order = r % 2 === 0 ? (["repeated", "new-keys"] as const) : (["new-keys", "repeated"] as const);
    for (const which of order) {
      progress(`round ${r + 1}/${args.rounds}: ${which} (${perRound.toLocaleString("en-US")} requests)…`);
      if (which === "repeated") repeated.push(await drive(url, perRound, () => "the-one-key"));
      else {
        const keyOf = (i: number): string => `${run}-${r}-${i}-${"k".repeat(40)}`;
        fresh.push(await drive(url, perRound, keyOf));
        keysSent += perRound;
        for (let i = 0; i < 10; i++) sampleKeys.push(keyOf(Math.floor((i * perRound) / 10)));
      }
    }
    rssByRound.push(workerdRssMiB());
  }
  const rssAfter = workerdRssMiB();
  await sleep(5_000);
  const rssSettled = workerdRssMiB();
  const filesAfter = rateCounterFiles(stateDir);
  // Each new key's one request must have reached its counter (charged in the background).
  let charged = 0;
  let keysInShards = 0;
  const shardsSeen = new Set<string>();
  for (const key of sampleKeys) {
    const res = await fetch(`${mesh.adminUrl}/admin/services/${SERVICE}/ratelimit/counters?limit=api-key&key=${encodeURIComponent(key)}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const body = (await res.json()) as { counter: { used: number } | null; shard: string; keysInShard: number };
    if (body.counter?.used === 1) charged++;
    if (!shardsSeen.has(body.shard)) {
      shardsSeen.add(body.shard);
      keysInShards += body.keysInShard;
    }
  }

  const a = measured(repeated);
  const b = measured(fresh);
  const ratio = round(b.rps / a.rps, 3);
  const results: Results = {
    repeated: a,
    new_keys: b,
    ratio_new_vs_repeated: ratio,
    target: { ratio: TARGET_RATIO, met: ratio >= TARGET_RATIO },
    keys_sent: keysSent,
    workerd_rss_mib: { before: rssBefore, by_round: rssByRound, after: rssAfter, after_settle: rssSettled },
    charged_sample: { sampled: sampleKeys.length, counted: charged },
    counter_rows_in_sampled_shards: { shards: shardsSeen.size, rows: keysInShards },
    rate_counter_sqlite_files: { before: filesBefore, after: filesAfter.files, bytes_after: filesAfter.bytes, shards_per_limit: RATE_SHARDS },
    connections: CONNECTIONS,
    rounds: args.rounds,
    machine: { cpus: os.cpus().length, node: process.version },
    date: new Date().toISOString(),
  };
  if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else {
    process.stdout.write(
      [
        "",
        `repeated key   ${a.rps.toLocaleString("en-US")} req/s  (${a.requests.toLocaleString("en-US")} requests, ${a.failed} failed)`,
        `new key each   ${b.rps.toLocaleString("en-US")} req/s  (${b.requests.toLocaleString("en-US")} requests, ${keysSent.toLocaleString("en-US")} keys, ${b.failed} failed)`,
        `ratio          ${ratio.toFixed(3)}   target ≥ ${TARGET_RATIO}${results.target.met ? "  (met)" : "  (NOT met)"}`,
        `workerd RSS    ${rssBefore ?? "n/a"} MiB before, after each round ${rssByRound.map((v) => v ?? "n/a").join(" / ")} MiB, ${rssSettled ?? "n/a"} MiB 5 s later`,
        `charged        ${charged} of ${sampleKeys.length} sampled new keys counted by their counter; ${keysInShards} live rows in the ${shardsSeen.size} shards sampled`,
        `RateCounter    ${filesBefore} SQLite files before, ${filesAfter.files} after (${(filesAfter.bytes / 1024).toFixed(0)} KiB); at most ${RATE_SHARDS} per limit`,
        `${CONNECTIONS} connections, ${args.rounds} interleaved rounds; ${results.machine.cpus} CPUs, Node ${results.machine.node}.`,
        "",
      ].join("\n"),
    );
  }
  return a.failed + b.failed > 0 ? 1 : 0;
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
  if (jsonMode) console.log = console.info = console.debug = (...data: unknown[]) => console.error(...data);

  const stateDir = mkdtempSync(path.join(os.tmpdir(), "weft-soak-"));
  let mesh: RunningMesh | undefined;
  let disposing: Promise<void> | undefined;
  const dispose = (): Promise<void> => (disposing ??= (mesh ? mesh.dispose() : Promise.resolve()).finally(() => rmSync(stateDir, { recursive: true, force: true })));
  process.once("SIGINT", () => {
    process.stderr.write("\nsoak: interrupted, stopping workerd…\n");
    running?.stop();
    void dispose().finally(() => process.exit(130));
  });
  try {
    process.exitCode = await soak(args, (m) => (mesh = m), stateDir);
  } catch (error) {
    process.stderr.write(`soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  } finally {
    await dispose();
  }
}

await main();
