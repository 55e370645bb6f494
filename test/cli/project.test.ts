/**
 * Weft added to a project it did not write (test/fixtures/projects/gateway: a gateway worker in
 * wrangler.jsonc, with static assets and the API's Durable Object class, in front of an auth worker
 * with a .dev.vars secret and an API worker with KV and D1, seeded with wrangler's own --local
 * commands), as a new user does it: `weft init --yes`,
 * `weft check`, `weft dev`, requests on the public entry compared with the same project run without
 * Weft, `weft status`, metrics naming the calling worker, `weft deploy --dry-run`, and the user's
 * files unchanged afterwards.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWithoutWeft } from "../../cli/project/dev.ts";
import { loadWrangler } from "../../cli/project/workers.ts";
import { ROOT } from "../../scripts/deployments.ts";
import { projectSnapshot, spawnWeft, weft, type LiveWeft } from "./run.ts";

const FIXTURE = path.join(ROOT, "test", "fixtures", "projects", "gateway");
const WRANGLER = path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const WORKERS = ["gateway/wrangler.jsonc", "auth/wrangler.toml", "api/wrangler.toml"];
const AUTH = { authorization: "Bearer let-me-in" };

/** The project's documented requests. */
const REQUESTS: Array<{ path: string; headers?: Record<string, string> }> = [
  { path: "/" },
  { path: "/about.html" },
  { path: "/visits" },
  { path: "/products/sku-1", headers: AUTH },
  { path: "/products", headers: AUTH },
  { path: "/products/nope", headers: AUTH },
  { path: "/products/sku-1" },
  { path: "/products/sku-1", headers: { authorization: "Bearer wrong" } },
  // MAILER binds a worker outside the project: it stays a direct binding, and workerd starts anyway.
  { path: "/newsletter" },
];

interface Answer {
  status: number;
  type: string | null;
  body: string;
}

let dir: string;
let before: Map<string, string>;


function wrangler(args: string[], cwd: string): void {
  const run = spawnSync(process.execPath, [WRANGLER, ...args], { cwd, encoding: "utf8", env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" } });
  if (run.status !== 0) throw new Error(`wrangler ${args.join(" ")} failed: ${run.stdout}${run.stderr}`);
}

async function ask(base: string): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (const r of REQUESTS) {
    const res = await fetch(new URL(r.path, base), { headers: r.headers ?? {} });
    answers.push({ status: res.status, type: res.headers.get("content-type"), body: await res.text() });
  }
  return answers;
}

/** The project as it runs without Weft: its three workers, their own bindings, the same local data. */
async function askWithoutWeft(): Promise<Answer[]> {
  const configs = WORKERS.map((w) => path.join(dir, w));
  const project = await startWithoutWeft({ wrangler: await loadWrangler(), configs, host: "127.0.0.1", persistTo: path.join(dir, "api", ".wrangler", "state") });
  try {
    return await ask(project.url);
  } finally {
    await project.dispose();
  }
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-project-"));
  cpSync(FIXTURE, dir, { recursive: true });
  // The project's own wrangler (weft's peer dependency), as `npm install` would give it.
  symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  // Seeded as the project's README says: wrangler's local commands, in the API's folder.
  wrangler(["d1", "migrations", "apply", "products", "--local"], path.join(dir, "api"));
  wrangler(["kv", "key", "put", "--binding", "SETTINGS", "currency", "EUR", "--local"], path.join(dir, "api"));
  before = projectSnapshot(dir);
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("weft in a project it did not write", () => {
  it("init --yes maps one service per worker, the bindings between them as calls, the entry as public", async () => {
    const run = await weft(["init", "--yes", "--json"], { cwd: dir });
    expect(run.code, run.stderr).toBe(0);
    const plan = JSON.parse(run.stdout) as { written: boolean; services: Array<{ service: string; config: string; public: boolean; calls: Record<string, string> }> };
    expect(plan.written).toBe(true);
    expect(plan.services.map((s) => [s.service, s.config, s.public, s.calls])).toEqual([
      ["api", "api/wrangler.toml", false, {}],
      ["auth", "auth/wrangler.toml", false, {}],
      ["gateway", "gateway/wrangler.jsonc", true, { AUTH: "auth", API: "api" }],
    ]);
    expect(existsSync(path.join(dir, "weft.manifest.json"))).toBe(true);
    // A second init does not overwrite the manifest the user may have edited.
    const again = await weft(["init", "--yes"], { cwd: dir });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });

  it("check reads the project's configs with wrangler: no errors", async () => {
    const run = await weft(["check", "--json"], { cwd: dir });
    const report = JSON.parse(run.stdout) as { summary: { errors: number }; findings: Array<{ code: string }> };
    expect(report.summary.errors, JSON.stringify(report.findings)).toBe(0);
    expect(report.findings.map((f) => f.code)).not.toContain("unknown-script");
  });

  describe("weft dev", () => {
    let dev: LiveWeft;
    let urls: { url: string; admin: string; state: string; rewired: string[] };
    let without: Answer[];

    beforeAll(async () => {
      without = await askWithoutWeft();
      dev = spawnWeft(["dev", "--json"], { cwd: dir, env: { WEFT_PORT: "0", WEFT_ADMIN_PORT: "0", WEFT_DEBUG_HEADERS: "false" } });
      await dev.waitFor(/"url":/, "stdout", 60_000);
      urls = JSON.parse(dev.stdout()) as typeof urls;
    }, 90_000);
    afterAll(async () => {
      if (dev) expect(await dev.interrupt()).toBe(0);
    });

    it("finds the data wrangler seeded, and rewires only the calls", () => {
      expect(urls.state).toBe(path.join(dir, "api", ".wrangler", "state"));
      expect(urls.rewired).toEqual(["gateway.AUTH → weft-proxy-auth (caller gateway)", "gateway.API → weft-proxy-api (caller gateway)"]);
    });

    it("answers every documented request exactly as the project does without Weft", async () => {
      expect(without[3]?.body).toContain('"currency":"EUR"');
      expect(without[1]?.body).toContain("A gateway in front of");
      expect(without[2]?.body).toBe('{"object":"Visits","last":"gateway"}');
      expect(await ask(urls.url)).toEqual(without);
    });

    it("status lists one service per worker; the callee's metrics name the calling worker", async () => {
      const status = await weft(["status", "--json"], { cwd: dir });
      expect(status.code, status.stderr).toBe(0);
      expect((JSON.parse(status.stdout) as { services: Array<{ name: string }> }).services.map((s) => s.name).sort()).toEqual(["api", "auth", "gateway"]);
      const token = readFileSync(path.join(dir, ".weft", "admin-token"), "utf8").trim();
      let metrics = "";
      for (let i = 0; i < 20 && !/service="api"[^\n]*caller="gateway"/.test(metrics); i++) {
        await new Promise((r) => setTimeout(r, 500));
        metrics = await (await fetch(`${urls.admin}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      }
      expect(metrics).toMatch(/weft_requests_total\{service="api",route="all",backend="api",caller="gateway",code="200"\} [1-9]/);
      expect(metrics).toMatch(/weft_requests_total\{service="gateway",[^}]*caller="internet"/);
    });
  });

  it("deploy --dry-run bundles the control plane, the proxies and the workers behind them", async () => {
    const run = await weft(["deploy", "--dry-run", "--services", "--json"], { cwd: dir, timeoutMs: 180_000 });
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    const result = JSON.parse(run.stdout) as { ok: boolean; steps: Array<{ name: string; ok: boolean }> };
    const order = result.steps.map((s) => s.name);
    expect(order[0]).toBe("weft-control-plane");
    expect(new Set(order)).toEqual(new Set(["weft-control-plane", "api", "auth", "gateway", "weft-proxy-api", "weft-proxy-auth", "weft-proxy-gateway"]));
    // Every worker after what it binds to: a callee's proxy before the worker that calls it.
    expect(order.indexOf("weft-proxy-api")).toBeLessThan(order.indexOf("gateway"));
    expect(order.indexOf("api")).toBeLessThan(order.indexOf("weft-proxy-api"));
    const gateway = readFileSync(path.join(dir, ".weft", "deploy", "workers", "gateway", "wrangler.jsonc"), "utf8");
    expect(gateway).toContain('"service": "weft-proxy-api"');
    expect(gateway).toContain('"workers_dev": false');
  }, 200_000);

  it("leaves the user's files as they were", () => {
    expect(projectSnapshot(dir)).toEqual(before);
  });
});
