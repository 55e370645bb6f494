/**
 * The admin views of a mesh with a few hundred services, booted whole (as `npm start`), persisted to
 * disk so that which telemetry shards exist can be seen: paging and filtering over HTTP, the
 * mesh-wide views reading only shards of services with traffic (an idle service's shard never gets
 * a SQLite file), `weft status`/`weft top` cut to a summary and the busiest services, and the
 * dashboard searched and paged in Chromium.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServiceInput } from "../../shared/config.ts";
import { ROOT } from "../../scripts/mesh.ts";
import { bootTestMesh, ECHO_SERVICE, TOKEN, waitFor, type TestMesh } from "./harness.ts";

const CHROMIUM = process.env.WEFT_CHROMIUM ?? "/usr/bin/chromium";
const GENERATED = 300;
const gen = (i: number): string => `gen-${String(i).padStart(4, "0")}`;

function generated(name: string): ServiceInput {
  return {
    name,
    backends: [
      { name: `${name}-v1`, type: "worker", binding: "GEN_V1" },
      { name: `${name}-v2`, type: "worker", binding: "GEN_V2" },
    ],
    routes: [{ name: "all", match: { path: "/*" }, split: { weights: { [`${name}-v1`]: 100, [`${name}-v2`]: 0 } } }],
  };
}

/** Runs the real `weft` bin against this mesh (test/cli/run.ts does the same for the cli project). */
function weft(args: ReadonlyArray<string>, options: { env: Record<string, string> }): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, "bin", "weft.js"), ...args], { cwd: ROOT, env: { ...process.env, ...options.env }, timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

let t: TestMesh;
let dir: string;
let browser: Browser;
let serviceCount = 0;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-views-"));
  [t, browser] = await Promise.all([
    bootTestMesh({ persistTo: dir, services: [ECHO_SERVICE, ...Array.from({ length: GENERATED }, (_, i) => generated(gen(i)))] }),
    chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] }),
  ]);
  serviceCount = ((await (await t.adminFetch("/admin/services?limit=1")).json()) as { total: number }).total;
  // Shoppers on the storefront (which calls pim): these services have traffic, the generated ones none.
  for (let i = 0; i < 10; i++) await fetch(`${t.shop}/products/sku-${(i % 5) + 1}`).then((r) => r.arrayBuffer());
  await waitFor(async () => {
    const page = (await (await t.adminFetch("/admin/metrics?active=true&window=300")).json()) as { services: Array<{ service: string }> };
    return page.services.some((s) => s.service === "pim");
  }, 15_000, 200);
});
afterAll(async () => {
  await browser?.close();
  await t?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Ids (hex) of the TelemetryStore objects that have storage on disk. */
function telemetryShardsOnDisk(): Set<string> {
  const found = new Set<string>();
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (full.includes("TelemetryStore") && entry.name.endsWith(".sqlite")) found.add(entry.name.replace(/\.sqlite$/, ""));
    }
  };
  walk(dir);
  return found;
}

async function shardId(service: string): Promise<string> {
  const namespace = await t.mesh.mf.getDurableObjectNamespace("TELEMETRY", "weft-control-plane");
  return namespace.idFromName(service).toString();
}

describe("paged and filtered lists", () => {
  it("pages /admin/services with a cursor and a total, and searches by substring", async () => {
    expect(serviceCount).toBeGreaterThan(GENERATED);
    const names: string[] = [];
    let next: string | null = null;
    do {
      const res = await t.adminFetch(`/admin/services?limit=100${next ? `&cursor=${encodeURIComponent(next)}` : ""}`);
      const page = (await res.json()) as { services: Array<{ name: string }>; total: number; next: string | null };
      expect(page.total).toBe(serviceCount);
      names.push(...page.services.map((s) => s.name));
      next = page.next;
    } while (next !== null);
    expect(names).toHaveLength(serviceCount);
    expect(new Set(names).size).toBe(serviceCount);
    const search = (await (await t.adminFetch("/admin/services?q=gen-012")).json()) as { services: Array<{ name: string }>; total: number };
    expect(search.total).toBe(10);
    expect(search.services.map((s) => s.name)).toEqual(Array.from({ length: 10 }, (_, i) => gen(120 + i)));
    expect(search.total).toBe(10);
  });
});

describe("mesh-wide views read only services with recent telemetry", () => {
  it("scrapes, graphs and lists without creating the shard of any idle service", async () => {
    const metrics = await (await t.adminFetch("/metrics")).text();
    expect(metrics).toContain('weft_requests_total{service="pim"');
    expect(metrics).not.toContain('service="gen-');
    const graph = (await (await t.adminFetch("/admin/graph?window=300&limit=1000")).json()) as { nodes: Array<{ id: string; rps: number }>; total: number; active: number };
    expect(graph.total).toBe(serviceCount);
    expect(graph.nodes.find((n) => n.id === "pim")?.rps).toBeGreaterThan(0);
    expect(graph.nodes.find((n) => n.id === gen(5))).toMatchObject({ rps: 0, successRate: null });
    const list = (await (await t.adminFetch("/admin/metrics?q=gen-&limit=1000&detail=full")).json()) as { total: number; active: number; services: Array<{ active: boolean }> };
    expect(list.total).toBe(GENERATED);
    expect(list.active).toBe(0);
    expect(list.services.every((s) => !s.active)).toBe(true);
    expect((await t.adminFetch("/admin/errors?limit=10")).status).toBe(200);

    const onDisk = telemetryShardsOnDisk();
    expect(onDisk.has(await shardId("pim")), "pim's shard is on disk").toBe(true);
    for (const name of [gen(0), gen(5), gen(150), gen(GENERATED - 1)]) {
      expect(onDisk.has(await shardId(name)), `${name}'s shard was created`).toBe(false);
    }
    // Every shard on disk belongs to a service that had traffic: at most the demo's few.
    expect(onDisk.size).toBeLessThan(10);
  });
});

describe("weft status and weft top on a few hundred services", () => {
  const env = (): Record<string, string> => ({ WEFT_URL: t.admin, WEFT_ADMIN_TOKEN: TOKEN });

  it("status prints a summary, the services with traffic first, and says how to see the rest", async () => {
    const run = await weft(["status"], { env: env() });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^${serviceCount} services: \\d+ with traffic.*, \\d+ idle$`, "m"));
    expect(run.stdout).toContain(`Showing 25 of ${serviceCount} services`);
    const serviceRows = run.stdout.split("\n").filter((l) => /^\S+ +(ok|idle|degraded|failing|unknown) /.test(l));
    expect(serviceRows).toHaveLength(25);
    expect(serviceRows[0]).not.toMatch(/ idle /);
    expect(run.stdout.split("\n").length).toBeLessThan(120);
  });

  it("status --json --search and --all page through the admin API", async () => {
    const search = await weft(["status", "--json", "--search", "gen-01", "--limit", "5"], { env: env() });
    const doc = JSON.parse(search.stdout) as { total: number; shown: number; services: Array<{ name: string; health: string }> };
    expect(doc.total).toBe(100);
    expect(doc.services.map((s) => s.name)).toEqual([100, 101, 102, 103, 104].map(gen));
    expect(doc.services.every((s) => s.health === "idle")).toBe(true);
    const all = await weft(["status", "--json", "--all"], { env: env() });
    expect((JSON.parse(all.stdout) as { services: unknown[] }).services).toHaveLength(serviceCount);
    const one = await weft(["status", "--service", gen(42), "--json"], { env: env() });
    expect((JSON.parse(one.stdout) as { services: Array<{ name: string }> }).services.map((s) => s.name)).toEqual([gen(42)]);
  });

  it("top --once lists the busiest first and cuts the idle ones", async () => {
    const run = await weft(["top", "--once", "--json", "--limit", "10"], { env: env() });
    expect(run.code, run.stderr).toBe(0);
    const doc = JSON.parse(run.stdout) as { total: number; withTraffic: number; services: Array<{ service: string; rps: number }> };
    expect(doc.total).toBe(serviceCount);
    expect(doc.services).toHaveLength(10);
    expect(doc.services[0]?.rps).toBeGreaterThan(0);
    expect(doc.withTraffic).toBeGreaterThan(0);
  });
});

describe("the dashboard on a few hundred services", () => {
  it("shows one page of cards with its count, pages forward and back, and searches", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${t.admin}/`);
    await page.fill("#token-input", TOKEN);
    await page.click("#signin-button");
    await page.waitForSelector("#app", { state: "visible" });
    await page.waitForFunction((total) => (document.querySelector("#services-meta")?.textContent ?? "").includes(`Showing 1–50 of ${total} services`), serviceCount.toLocaleString("en-US"));
    expect(await page.locator(".service-card").count()).toBe(50);
    // The graph shows the services with traffic, not the idle generated ones.
    await page.waitForSelector('#graph [data-node="pim"]', { timeout: 15_000 });
    expect(await page.locator('#graph [data-node^="gen-"]').count()).toBe(0);

    await page.click("#page-next");
    await page.waitForFunction(() => (document.querySelector("#services-meta")?.textContent ?? "").startsWith("Showing 51–100"));
    expect(await page.locator(".service-card").count()).toBe(50);
    await page.click("#page-prev");
    await page.waitForFunction(() => (document.querySelector("#services-meta")?.textContent ?? "").startsWith("Showing 1–50"));

    await page.fill("#service-search", "gen-02");
    await page.waitForFunction(() => (document.querySelector("#services-meta")?.textContent ?? "").includes("of 100 services matching"));
    const cards = await page.$$eval(".service-card", (els) => els.map((e) => e.getAttribute("data-service")));
    expect(cards).toHaveLength(50);
    expect(cards[0]).toBe(gen(200));
    // Idle services' cards say so; their metrics came from the page's one list call.
    await page.waitForFunction((name) => /no traffic/.test(document.querySelector(`.service-card[data-service="${name}"] .pill`)?.textContent ?? ""), gen(200));
    await page.screenshot({ path: path.join(dir, "dashboard.png") });
    expect(existsSync(path.join(dir, "dashboard.png"))).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });
});
