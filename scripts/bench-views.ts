/**
 * The "views" section of `npm run bench` (alone: `npm run bench -- --only views`): how long the
 * admin views take on the demo mesh (5 services) and on the same mesh after a config with 3,995
 * generated services is PUT into it (4,000 services), in one run on one workerd.
 *
 * Each view is timed once cold (the first call after the config changed) and then `WARM_CALLS`
 * times; the median of the warm calls is compared. Target: at 4,000 services each view takes at
 * most 5× its time at 5 services (800× the services). Also measured: the 4,000-service PUT (size,
 * time), and publishing a change of every service to 4,000 subscribed SliceStore shards. The
 * views' cost grows with the services that have traffic, not with all services: they are timed
 * once more with 400 generated services given telemetry ("busy"), reported, not held to the target.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import type { MeshConfigInput, ServiceInput } from "../shared/config.ts";
import { BUCKETS, type TelemetryBatch } from "../shared/metrics.ts";
import type { Browser } from "playwright-core";
import { pool } from "../shared/pool.ts";
import { round, sleep } from "./measure.ts";
import { demoConfig, freePort, ROOT, secretNamesOf } from "./mesh.ts";
import { startShop, type RunningShop } from "./shop.ts";

/** Services at the large end (the demo's plus generated ones). */
export const VIEWS_SERVICES = 4_000;
/** Target: the large mesh's view may take this many times the small mesh's. */
export const VIEWS_TARGET_RATIO = 5;
const WARM_CALLS = 7;
/** Generated services that get telemetry for the busy variant of the large mesh. */
const BUSY_SERVICES = 400;

/** One view's times at one mesh size. */
export interface ViewTiming {
  cold_ms: number;
  warm_median_ms: number;
  bytes: number;
}

/** What the views section reports (bench/results.json `views`). */
export interface ViewsResult {
  small_services: number;
  large_services: number;
  views: Record<string, { small: ViewTiming; large: ViewTiming; ratio: number; met: boolean; busy?: ViewTiming }>;
  /** Services given telemetry for the `busy` timings (the large mesh with that many services with traffic). */
  busy_services: number;
  target_ratio: number;
  met: boolean;
  put: { bytes: number; ms: number; changed: number };
  /** One service's split changed in the 4,000-service mesh (every write validates the whole mesh). */
  split_ms: number;
  /** A change to all 4,000 services while every service's SliceStore shard is subscribed. */
  publish_all: { shards: number; subscribe_ms: number; put_ms: number; published_ms: number } | null;
}

type View = { name: string; call: () => Promise<number> };

function generatedService(name: string, weight: number): ServiceInput {
  return {
    name,
    backends: [
      { name: `${name}-v1`, type: "worker", binding: "GEN_V1" },
      { name: `${name}-v2`, type: "worker", binding: "GEN_V2" },
    ],
    routes: [{ name: "all", match: { path: "/*" }, split: { weights: { [`${name}-v1`]: 100 - weight, [`${name}-v2`]: weight } } }],
  };
}

function largeConfig(demo: MeshConfigInput, weight: number): MeshConfigInput {
  const count = VIEWS_SERVICES - demo.services.length;
  return { services: [...demo.services, ...Array.from({ length: count }, (_, i) => generatedService(`gen-${String(i + 1).padStart(4, "0")}`, weight))] };
}

async function timed(run: () => Promise<number>): Promise<{ ms: number; bytes: number }> {
  const started = performance.now();
  const bytes = await run();
  return { ms: performance.now() - started, bytes };
}

async function measure(view: View): Promise<ViewTiming> {
  const cold = await timed(view.call);
  const warm: number[] = [];
  let bytes = cold.bytes;
  for (let i = 0; i < WARM_CALLS; i++) {
    const t = await timed(view.call);
    warm.push(t.ms);
    bytes = t.bytes;
  }
  warm.sort((a, b) => a - b);
  return { cold_ms: round(cold.ms, 1), warm_median_ms: round(warm[Math.floor(warm.length / 2)] ?? 0, 1), bytes };
}

/** Runs `weft <args>` (the real bin) against the mesh; resolves to the bytes it printed. */
function weft(mesh: RunningShop, token: string, args: ReadonlyArray<string>): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(ROOT, "bin", "weft.js"), ...args],
      { cwd: ROOT, env: { ...process.env, WEFT_URL: mesh.adminUrl, WEFT_ADMIN_TOKEN: token, NO_COLOR: "1" }, maxBuffer: 256 * 1024 * 1024, timeout: 120_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`weft ${args.join(" ")} failed: ${stderr.slice(0, 500)}`)) : resolve(Buffer.byteLength(stdout))),
    );
  });
}

/** Debian's Chromium (override with WEFT_CHROMIUM); without it the dashboard is not measured. */
const CHROMIUM = process.env.WEFT_CHROMIUM ?? "/usr/bin/chromium";

/** A headless browser for the dashboard view, or null when there is no Chromium. */
async function launchBrowser(): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) return null;
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
}

/**
 * The dashboard as an operator opens it: a fresh tab, sign in, until the first page of cards is
 * counted ("Showing 1–…") and the graph is drawn, then a screenshot. Resolves to the PNG's size.
 */
function dashboardView(mesh: RunningShop, token: string, browser: Browser): View {
  return {
    name: "dashboard (sign-in → screenshot)",
    call: async () => {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      try {
        await page.goto(`${mesh.adminUrl}/`);
        await page.fill("#token-input", token);
        await page.click("#signin-button");
        await page.waitForFunction(() => (document.querySelector("#services-meta")?.textContent ?? "").startsWith("Showing"), undefined, { timeout: 60_000 });
        await page.waitForSelector('#graph-svg [data-node="internet"]', { timeout: 60_000 });
        return (await page.screenshot({ timeout: 60_000 })).byteLength;
      } finally {
        await page.close();
      }
    },
  };
}

function views(mesh: RunningShop, token: string, browser: Browser | null): View[] {
  const http = (route: string) => async (): Promise<number> => {
    const res = await fetch(`${mesh.adminUrl}${route}`, { headers: { authorization: `Bearer ${token}` } });
    const body = await res.arrayBuffer();
    if (!res.ok) throw new Error(`${route} answered ${res.status}`);
    return body.byteLength;
  };
  return [
    { name: "/metrics", call: http("/metrics") },
    { name: "/admin/graph", call: http("/admin/graph?window=60") },
    { name: "/admin/services", call: http("/admin/services") },
    { name: "/admin/metrics (list)", call: http("/admin/metrics?active=true&window=60") },
    { name: "weft status", call: () => weft(mesh, token, ["status"]) },
    { name: "weft top --once", call: () => weft(mesh, token, ["top", "--once"]) },
    ...(browser ? [dashboardView(mesh, token, browser)] : []),
  ];
}

async function adminJson<T>(mesh: RunningShop, token: string, route: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${mesh.adminUrl}${route}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...(init.headers ?? {}) },
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${route} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** Shop traffic, so the views have services with telemetry (the demo's storefront, pim, cart…). */
async function traffic(mesh: RunningShop, requests: number): Promise<void> {
  for (let i = 0; i < requests; i++) {
    await fetch(`${mesh.shopUrl}/products/sku-${(i % 5) + 1}`).then((r) => r.arrayBuffer());
  }
}

async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`${what} did not happen within ${ms} ms`);
}

/**
 * Gives `names` telemetry, straight into their shards (as their proxies' batches would arrive),
 * so the large mesh has that many services with traffic.
 */
async function busy(mesh: RunningShop, token: string, names: ReadonlyArray<string>): Promise<void> {
  const telemetry = await mesh.mf.getDurableObjectNamespace("TELEMETRY", "weft-control-plane");
  await pool(names, 16, async (name) => {
    const shard = telemetry.get(telemetry.idFromName(name)) as unknown as { ingest(batch: TelemetryBatch): Promise<unknown> };
    const buckets = new Array<number>(BUCKETS).fill(0);
    buckets[3] = 20;
    await shard.ingest({
      service: name,
      batchId: randomBytes(8).toString("hex"),
      at: Date.now(),
      series: [{ route: "all", backend: `${name}-v1`, caller: "internet", code: 200, count: 20, attempts: 20, sumMs: 100, buckets }],
      ejections: 0,
      events: [],
      attempts: [{ backend: `${name}-v1`, count: 20, failures: 0, buckets }],
    });
  });
  await until(async () => (await adminJson<{ active: number }>(mesh, token, "/admin/metrics?active=true&limit=1&window=60")).active >= names.length, 60_000, "the index listing the busy services");
}

/**
 * Subscribes every service's SliceStore shard (as 4,000 running proxies would, by reading their
 * slice), then changes every service and times until the last shard has the new version.
 */
async function publishAll(mesh: RunningShop, token: string, demo: MeshConfigInput, names: ReadonlyArray<string>): Promise<ViewsResult["publish_all"]> {
  const configStores = await mesh.mf.getDurableObjectNamespace("CONFIG_STORE", "weft-control-plane");
  const sliceStores = await mesh.mf.getDurableObjectNamespace("SLICE_STORE", "weft-control-plane");
  const configStore = configStores.get(configStores.idFromName("mesh")) as unknown as { readSlice(service: string): Promise<unknown> };
  const subscribed = performance.now();
  await pool(names, 16, (name) => configStore.readSlice(name));
  const subscribeMs = performance.now() - subscribed;
  let changed: string[] = [];
  const put = await timed(async () => {
    changed = (await adminJson<{ changed: string[] }>(mesh, token, "/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify(largeConfig(demo, 5)) })).changed;
    return changed.length;
  });
  // Every 200th changed service, and the last: the outbox is drained in no particular order.
  const sample = changed.filter((_, i) => i % 200 === 0 || i === changed.length - 1);
  const target = (await adminJson<{ current: number }>(mesh, token, "/admin/config/versions?limit=1")).current;
  const started = performance.now() - put.ms;
  await until(
    async () => {
      const versions = await Promise.all(
        sample.map(async (name) => {
          const shard = sliceStores.get(sliceStores.idFromName(name)) as unknown as { read(service: string, known: number): Promise<{ status: string; slice?: { version: number } }> };
          const read = await shard.read(name, -1);
          return read.slice?.version ?? 0;
        }),
      );
      return versions.every((v) => v >= target);
    },
    600_000,
    "publishing to every shard",
  );
  return { shards: changed.length, subscribe_ms: round(subscribeMs, 0), put_ms: round(put.ms, 0), published_ms: round(performance.now() - started, 0) };
}

/** The views section: boots its own fresh mesh, measures, and disposes of it. */
export async function benchViews(progress: (line: string) => void, options: { publishAll: boolean } = { publishAll: true }): Promise<ViewsResult> {
  const token = randomBytes(18).toString("base64url");
  const adminPort = await freePort();
  const vendorPort = await freePort();
  progress("views: booting a fresh demo mesh…");
  const probe = JSON.parse(demoConfig("http://127.0.0.1:1")) as unknown;
  const secrets = Object.fromEntries(secretNamesOf(probe).map((name) => [name, `bench_${randomBytes(12).toString("hex")}`]));
  const mesh = await startShop({ port: 0, adminPort, vendorPort, adminToken: token, secrets, accessLog: "errors", onLog: () => undefined });
  const browser = await launchBrowser();
  if (!browser) progress(`views: no Chromium at ${CHROMIUM}: the dashboard is not measured`);
  try {
    const demo = JSON.parse(demoConfig(mesh.vendorUrl)) as MeshConfigInput;
    await adminJson(mesh, token, "/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify(demo) });
    await traffic(mesh, 40);
    await until(async () => (await adminJson<{ active: number }>(mesh, token, "/admin/metrics?active=true&window=60")).active > 0, 30_000, "telemetry from the shop");
    const small: Record<string, ViewTiming> = {};
    for (const view of views(mesh, token, browser)) {
      small[view.name] = await measure(view);
      progress(`views: ${demo.services.length} services  ${view.name.padEnd(34)} cold ${small[view.name]?.cold_ms} ms, warm ${small[view.name]?.warm_median_ms} ms`);
    }

    const config = largeConfig(demo, 0);
    const body = JSON.stringify(config);
    progress(`views: PUT a ${config.services.length.toLocaleString("en-US")}-service config (${(Buffer.byteLength(body) / 1024).toFixed(0)} KiB)…`);
    const put = await timed(async () => (await adminJson<{ changed: string[] }>(mesh, token, "/admin/config", { method: "PUT", headers: { "if-match": "*" }, body })).changed.length);
    await traffic(mesh, 40);
    const large: Record<string, ViewTiming> = {};
    for (const view of views(mesh, token, browser)) {
      large[view.name] = await measure(view);
      progress(`views: ${config.services.length} services  ${view.name.padEnd(34)} cold ${large[view.name]?.cold_ms} ms, warm ${large[view.name]?.warm_median_ms} ms`);
    }
    const split = await timed(async () => {
      await adminJson(mesh, token, "/admin/services/gen-0001/split", { method: "PUT", body: JSON.stringify({ weights: { "gen-0001-v1": 90, "gen-0001-v2": 10 } }) });
      return 0;
    });
    progress(`views: giving ${BUSY_SERVICES} generated services telemetry…`);
    await busy(mesh, token, config.services.slice(demo.services.length, demo.services.length + BUSY_SERVICES).map((s) => s.name));
    const busyTimings: Record<string, ViewTiming> = {};
    for (const view of views(mesh, token, browser)) {
      busyTimings[view.name] = await measure(view);
      progress(`views: ${config.services.length} services, ${BUSY_SERVICES} busy  ${view.name.padEnd(34)} cold ${busyTimings[view.name]?.cold_ms} ms, warm ${busyTimings[view.name]?.warm_median_ms} ms`);
    }
    const compared: ViewsResult["views"] = {};
    for (const [name, s] of Object.entries(small)) {
      const l = large[name];
      if (!l) continue;
      const ratio = round(l.warm_median_ms / Math.max(0.1, s.warm_median_ms), 2);
      const b = busyTimings[name];
      compared[name] = { small: s, large: l, ratio, met: ratio <= VIEWS_TARGET_RATIO, ...(b ? { busy: b } : {}) };
    }
    let publish: ViewsResult["publish_all"] = null;
    if (options.publishAll) {
      progress(`views: subscribing all ${config.services.length.toLocaleString("en-US")} slice shards, then changing every service…`);
      publish = await publishAll(mesh, token, demo, config.services.map((s) => s.name));
    }
    return {
      small_services: demo.services.length,
      large_services: config.services.length,
      views: compared,
      busy_services: BUSY_SERVICES,
      target_ratio: VIEWS_TARGET_RATIO,
      met: Object.values(compared).every((v) => v.met),
      put: { bytes: Buffer.byteLength(body), ms: round(put.ms, 0), changed: put.bytes },
      split_ms: round(split.ms, 0),
      publish_all: publish,
    };
  } finally {
    await browser?.close();
    await mesh.dispose();
  }
}

/** The section as text, for the bench's table. */
export function viewsTable(r: ViewsResult): string {
  const lines = [
    `views at ${r.small_services} and ${r.large_services.toLocaleString("en-US")} services (warm median of ${WARM_CALLS} calls; target ≤ ${r.target_ratio}×):`,
    `  ${"view".padEnd(36)}${"cold small".padStart(12)}${"warm small".padStart(12)}${"cold large".padStart(12)}${"warm large".padStart(12)}${"ratio".padStart(8)}${`${r.busy_services} busy`.padStart(12)}  bytes (large)`,
  ];
  for (const [name, v] of Object.entries(r.views)) {
    lines.push(
      `  ${name.padEnd(36)}${`${v.small.cold_ms}`.padStart(12)}${`${v.small.warm_median_ms}`.padStart(12)}${`${v.large.cold_ms}`.padStart(12)}${`${v.large.warm_median_ms}`.padStart(12)}${`${v.ratio}×`.padStart(8)}${`${v.busy?.warm_median_ms ?? "-"}`.padStart(12)}  ${v.large.bytes}${v.met ? "" : "  MISSED"}`,
    );
  }
  lines.push(`  PUT of the ${r.large_services.toLocaleString("en-US")}-service config: ${(r.put.bytes / 1024).toFixed(0)} KiB in ${r.put.ms} ms (${r.put.changed} services changed); one service's split then took ${r.split_ms} ms`);
  if (r.publish_all) {
    const p = r.publish_all;
    lines.push(`  a change to all ${p.shards.toLocaleString("en-US")} services with every slice shard subscribed: PUT ${p.put_ms} ms, every shard had it ${(p.published_ms / 1000).toFixed(1)} s after the PUT began (subscribing took ${(p.subscribe_ms / 1000).toFixed(1)} s)`);
  }
  return lines.join("\n");
}
