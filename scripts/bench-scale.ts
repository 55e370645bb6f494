/**
 * `npm run bench:scale`: does the control plane's load grow with the number of proxy isolates?
 *
 * For each n (1, 10, 50 by default) it boots the scale mesh (scripts/scale-mesh.ts: the control
 * plane, an upstream worker and n instances of one service's Weft proxy, their CONTROL_PLANE through
 * a worker that counts the calls each Durable Object receives), drives the same total request rate
 * through the n isolates, spread evenly, and reports calls per second per object over the measured
 * window, after a warm-up (so each isolate's first config read, which it must make to learn the
 * shared cache key, and the objects' pacing settling are not in them). `rateLeasesPerSec` is the
 * busiest RateCounter shard; the bench's limit is a fixed window (20 s) and the measurement spans a
 * whole number of them (2), so it holds as many window boundaries as windows, where an isolate
 * without a standing share must lease each key again: the figure is the long-run rate, not an
 * accident of where a boundary fell. Two windows rather than one because rate-limit leases may now
 * last longer than a window (at 50 isolates about a minute): one window samples a third of a lease
 * per isolate, and the count then swings ±30% from run to run; the warm-up (30 s) lets the first
 * leases, sized before each isolate knew its rate, run out.
 *
 * One workerd is one data center (Miniflare gives all its workers one Cache API store), so
 * `configReadsPerSec` is the SliceStore's load from one data center; production multiplies it by
 * the data centers with traffic, never by the isolates.
 *
 * Writes bench/scale.json: `{ "isolates": [ { n, configReadsPerSec, telemetryWritesPerSec,
 * rateLeasesPerSec, rps }, … ] }`. Targets (printed, never enforced): each per-object figure grows
 * by at most 1.2× from the second n to the last (10 → 50).
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { round, sleep } from "./measure.ts";
import { ROOT } from "./mesh.ts";
import { bootScaleMesh, SCALE_SERVICE, shopperHeaders, waitServing } from "./scale-mesh.ts";

const USAGE = `Usage: npm run bench:scale [-- --n 1,10,50] [--json]

Boots the control plane and n isolates (worker instances) of one service's proxy on workerd, drives
the same total load through them and counts the calls each Durable Object receives. Writes
bench/scale.json.

Options:
  --n <list>   isolate counts to measure, comma-separated (default 1,10,50; each 1-100)
  --json       print only the results JSON on stdout (progress goes to stderr)
  --help       print this help

Environment:
  SCALE_RPS              total requests per second, spread over the isolates (default 200)
  SCALE_SECONDS          the rate limit's window in seconds (default 20)
  SCALE_WINDOWS          windows measured per n (default 2)
  SCALE_WARMUP_SECONDS   seconds of load before measuring, per n (default 30: the objects' pacing settles)
`;

const RESULTS_PATH = path.join(ROOT, "bench", "scale.json");
const ADMIN_TOKEN = `scale-${Math.random().toString(36).slice(2)}`;
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
  windows: number;
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
  return {
    ns,
    json: values.json === true,
    rps: positive("SCALE_RPS", 200),
    seconds: positive("SCALE_SECONDS", 20),
    windows: Math.max(1, Math.round(positive("SCALE_WINDOWS", 2))),
    warmupSeconds: positive("SCALE_WARMUP_SECONDS", 30),
  };
}

let jsonMode = false;
/** Progress lines: stdout normally, stderr with --json so stdout carries only the results. */
function progress(line: string): void {
  (jsonMode ? process.stderr : process.stdout).write(`${line}\n`);
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

/** Calls per second per object between two count snapshots. */
function rates(before: Record<string, number>, after: Record<string, number>, seconds: number): Map<string, number> {
  return new Map(Object.entries(after).map(([object, n]) => [object, (n - (before[object] ?? 0)) / seconds]));
}

async function measure(n: number, args: Args): Promise<Figures> {
  progress(`n = ${n}: booting the control plane, the upstream and ${n} proxy isolate${n === 1 ? "" : "s"}…`);
  // The measurement spans a whole number of the limit's windows: it then holds as many window
  // boundaries (where isolates without a standing share lease each key again) as the long run does.
  const scale = await bootScaleMesh({ isolates: n, adminToken: ADMIN_TOKEN, limitPeriodSeconds: Math.max(1, Math.round(args.seconds)) });
  const { urls } = scale;
  try {
    await waitServing(urls);
    progress(`n = ${n}: warming up ${args.warmupSeconds} s at ${args.rps} req/s…`);
    const warm = await drive(urls, args.rps, args.warmupSeconds);
    if (warm.failed > 0) throw new Error(`n = ${n}: ${warm.failed} failed requests while warming up (${JSON.stringify(warm.statuses)})`);
    progress(`n = ${n}: measuring ${args.windows * args.seconds} s…`);
    const before = await scale.counts();
    const driven = await drive(urls, args.rps, args.windows * args.seconds);
    // Counts are taken when the window ends: calls still in flight then fall in no window.
    const after = await scale.counts();
    if (driven.failed > 0) throw new Error(`n = ${n}: ${driven.failed} failed requests (${JSON.stringify(driven.statuses)})`);
    const perObject = rates(before, after, driven.seconds);
    const leases = [...perObject].filter(([object]) => object.startsWith("RateCounter "));
    const busiest = leases.reduce((max, [, rate]) => Math.max(max, rate), 0);
    const figures: Figures = {
      n,
      configReadsPerSec: round(perObject.get(`SliceStore ${SCALE_SERVICE}`) ?? 0, 2),
      telemetryWritesPerSec: round(perObject.get(`TelemetryStore ${SCALE_SERVICE}`) ?? 0, 2),
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
    await scale.dispose();
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
  const results: Figures[] = [];
  for (const n of args.ns) results.push(await measure(n, args));
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
