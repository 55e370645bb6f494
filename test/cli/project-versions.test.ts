/**
 * Weft added to a project whose API is one wrangler config deployed once per environment
 * (test/fixtures/projects/versions: `api` with [env.v1] and [env.v2] → api-v1, api-v2, whose
 * answers differ by a var) behind a gateway — the way the demo shop's pim runs three versions:
 * `weft init --yes` maps the environments to versions of one service, `weft dev` boots each with
 * wrangler's own env resolution, a split set through the admin API moves traffic between them,
 * and `weft deploy --dry-run --services` deploys each with its --env.
 *
 * The same project also holds a vendor secret: the manifest gives the gateway an external backend
 * whose credential names NOTIFY_API_KEY, set in the project's .weft/secrets.env. `weft dev` binds it
 * to the proxies (the call to an outside echo worker carries it), to no user worker that does not
 * require it, and never prints it.
 */
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/deployments.ts";
import { projectSnapshot, spawnWeft, weft, type LiveWeft } from "./run.ts";

const FIXTURE = path.join(ROOT, "test", "fixtures", "projects", "versions");
const SECRET = `notify-${randomBytes(12).toString("hex")}`;

let dir: string;
let before: Map<string, string>;
/** The notifications vendor: an echo outside the mesh, started by the test, answering with what it was sent. */
let vendor: Miniflare;
let vendorUrl: string;


interface ManifestFile {
  services: Array<{ name: string; backends: Array<Record<string, unknown>>; routes: Array<Record<string, unknown>> }>;
}

function readManifest(): ManifestFile {
  return JSON.parse(readFileSync(path.join(dir, "weft.manifest.json"), "utf8")) as ManifestFile;
}

async function checkCodes(): Promise<{ errors: number; findings: Array<{ code: string; message: string; fix: string }> }> {
  const run = await weft(["check", "--json"], { cwd: dir });
  const report = JSON.parse(run.stdout) as { summary: { errors: number }; findings: Array<{ code: string; message: string; fix: string }> };
  return { errors: report.summary.errors, findings: report.findings };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-versions-"));
  cpSync(FIXTURE, dir, { recursive: true });
  symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  before = projectSnapshot(dir);
  vendor = new Miniflare(convertV4MiniflareOptions({
    host: "127.0.0.1",
    port: 0,
    workers: [
      {
        name: "vendor",
        compatibilityDate: "2026-11-01",
        modules: true,
        script: `export default { fetch(request) { const url = new URL(request.url); return Response.json({ path: url.pathname, key: request.headers.get("x-api-key") }); } };`,
      },
    ],
  }));
  vendorUrl = (await vendor.ready).origin;
}, 60_000);

afterAll(async () => {
  await vendor?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a service whose versions are the environments of one wrangler config", () => {
  it("init --yes maps the environments to one service with a worker backend per environment (first at 100) and says so", async () => {
    const run = await weft(["init", "--yes"], { cwd: dir, timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    // --yes still shows the plan: the service, its versions and the note on how they were mapped.
    expect(run.stdout).toMatch(/^ {2}api +api\/wrangler\.toml/m);
    expect(run.stdout).toMatch(/^ {4}version +api-v1 = api-v1 \(--env v1\), weight 100$/m);
    expect(run.stdout).toMatch(/^ {4}version +api-v2 = api-v2 \(--env v2\), weight 0$/m);
    expect(run.stdout).toContain("environments (v1, v2) mapped as versions of one service 'api'");
    const api = readManifest().services.find((s) => s.name === "api");
    expect(api?.backends.map((b) => [b.name, b.script])).toEqual([
      ["api-v1", "api-v1"],
      ["api-v2", "api-v2"],
    ]);
    expect(api?.routes[0]?.split).toEqual({ weights: { "api-v1": 100, "api-v2": 0 } });
    expect(readManifest().services.find((s) => s.name === "gateway")?.backends[0]?.calls).toEqual({ API: "api" });
  }, 60_000);

  it("check finds every environment's worker, and the vendor secret in the project's .weft/secrets.env", async () => {
    const clean = await checkCodes();
    expect(clean.errors, JSON.stringify(clean.findings)).toBe(0);
    expect(clean.findings.map((f) => f.code)).not.toContain("unknown-script");

    // The user gives the gateway a way out to the notifications vendor, with an API key.
    const manifest = readManifest();
    const gateway = manifest.services.find((s) => s.name === "gateway");
    gateway?.backends.push({ name: "notify", type: "external", origin: `${vendorUrl}/v1`, provider: "notify", auth: { type: "header", name: "x-api-key", secret: "NOTIFY_API_KEY" } });
    gateway?.routes.unshift({ name: "notify", match: { path: "/notify/*" }, split: { weights: { notify: 100 } } });
    writeFileSync(path.join(dir, "weft.manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);

    const unset = (await checkCodes()).findings.filter((f) => f.code === "unset-secret");
    expect(unset).toHaveLength(1);
    expect(unset[0]?.fix).toContain("for weft dev; in production run `wrangler secret put NOTIFY_API_KEY --env gateway -c .weft/deploy/proxy/wrangler.toml`");
    mkdirSync(path.join(dir, ".weft"), { recursive: true });
    writeFileSync(path.join(dir, ".weft", "secrets.env"), `# the vendor's key\nNOTIFY_API_KEY=${SECRET}\n`);
    const set = await checkCodes();
    expect(set.errors).toBe(0);
    expect(set.findings.map((f) => f.code)).not.toContain("unset-secret");
  }, 60_000);

  describe("weft dev", () => {
    let dev: LiveWeft;
    let summary: { url: string; admin: string; workers: Array<{ name: string; kind: string; service?: string; env?: string }>; secrets: { names: string[]; unset: string[] } };
    let token: string;

    const version = async (): Promise<{ via: string; version: string; notifyKey: boolean }> => (await fetch(`${summary.url}/version`)).json() as Promise<{ via: string; version: string; notifyKey: boolean }>;
    const split = async (weights: Record<string, number>): Promise<void> => {
      const res = await fetch(`${summary.admin}/admin/services/api/split`, {
        method: "PUT",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ weights }),
      });
      expect(res.status, await res.clone().text()).toBe(200);
    };
    /** The version the gateway reaches once the proxy has the new split (it refreshes its config; bounded). */
    const settleOn = async (wanted: string): Promise<{ version: string; notifyKey: boolean }> => {
      let last = await version();
      for (let i = 0; i < 40 && last.version !== wanted; i++) {
        await new Promise((r) => setTimeout(r, 250));
        last = await version();
      }
      return last;
    };

    beforeAll(async () => {
      dev = spawnWeft(["dev", "--json"], { cwd: dir, env: { WEFT_PORT: "0", WEFT_ADMIN_PORT: "0" } });
      await dev.waitFor(/"rewired":[^\n]*\n/, "stdout", 60_000);
      summary = JSON.parse(dev.stdout()) as typeof summary;
      token = readFileSync(path.join(dir, ".weft", "admin-token"), "utf8").trim();
    }, 90_000);
    afterAll(async () => {
      if (dev) expect(await dev.interrupt()).toBe(0);
    });

    it("boots each environment as its own worker, from the one config with its --env", () => {
      expect(summary.workers.filter((w) => w.kind === "worker").map((w) => [w.name, w.service, w.env])).toEqual([
        ["api-v1", "api", "v1"],
        ["api-v2", "api", "v2"],
        ["gateway", "gateway", undefined],
      ]);
      expect(summary.secrets).toEqual({ file: path.join(dir, ".weft", "secrets.env"), names: ["NOTIFY_API_KEY"], unset: [] });
    });

    it("a split set through the admin API moves the gateway's calls between the environments' versions", async () => {
      // weft dev's proxies run with the local settings (debug headers on by default), their generated config has none.
      const first = await fetch(`${summary.url}/version`);
      expect(first.headers.get("x-weft-backend")).toBe("gateway");
      expect(await first.json()).toEqual({ via: "gateway", version: "v1", notifyKey: false });
      await split({ "api-v1": 0, "api-v2": 100 });
      // api-v2's config requires the vendor key: it gets it; api-v1 and the gateway do not.
      expect(await settleOn("v2")).toEqual({ via: "gateway", version: "v2", notifyKey: true });
      await split({ "api-v1": 100, "api-v2": 0 });
      expect((await settleOn("v1")).version).toBe("v1");
    });

    it("binds the vendor secret to the proxies: the outbound call carries it; a worker that does not require it never sees it", async () => {
      const res = await fetch(`${summary.url}/notify/hello`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ path: "/v1/notify/hello", key: SECRET });
      expect(await (await fetch(`${summary.url}/secrets`)).json()).toEqual({ notifyKey: false });
    });

    it("never prints the secret's value: not in its output, not in the access log", async () => {
      // The access log has the calls above (so the check below looks at real lines).
      let log = "";
      for (let i = 0; i < 40 && !log.includes("notify"); i++) {
        await new Promise((r) => setTimeout(r, 250));
        log = readFileSync(path.join(dir, ".weft", "access.log"), "utf8");
      }
      expect(log).toContain('"backend":"notify"');
      expect(log).not.toContain(SECRET);
      expect(dev.stdout()).not.toContain(SECRET);
      expect(dev.stderr()).not.toContain(SECRET);
    });
  });

  it("deploy --dry-run --services checks both versions, each from the one config with its --env", async () => {
    const run = await weft(["deploy", "--dry-run", "--services", "--json"], { cwd: dir, timeoutMs: 180_000 });
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    const result = JSON.parse(run.stdout) as { ok: boolean; steps: Array<{ name: string; ok: boolean; env?: string; config: string }> };
    const versions = result.steps.filter((s) => s.name.startsWith("api-")).map((s) => [s.name, s.env, path.relative(dir, s.config), s.ok]);
    expect(versions).toEqual([
      ["api-v1", "v1", ".weft/deploy/workers/api-v1/wrangler.jsonc", true],
      ["api-v2", "v2", ".weft/deploy/workers/api-v2/wrangler.jsonc", true],
    ]);
    const order = result.steps.map((s) => s.name);
    expect(order.indexOf("api-v2")).toBeLessThan(order.indexOf("weft-proxy-api"));
    expect(order.indexOf("weft-proxy-api")).toBeLessThan(order.indexOf("gateway"));
  }, 200_000);

  it("leaves the user's files as they were", () => {
    expect(projectSnapshot(dir)).toEqual(before);
  });
});
