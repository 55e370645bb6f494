/**
 * The weft CLI against a running mesh (every worker booted from its wrangler configs, as `npm
 * start` does), through the real bin as a child process: status, split, diff/apply with If-Match,
 * history, rollback, keys, tap, top, rollouts, and the errors an operator meets.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SHOP_DIR } from "../../scripts/deployments.ts";
import type { ManifestInput } from "../../cli/manifest/schema.ts";
import { bootTestMesh, setSplit, TOKEN, waitFor, type TestMesh } from "../mesh/harness.ts";
import { jsonLines, spawnWeft, weft as runWeft, type WeftOptions, type WeftRun } from "./run.ts";

let t: TestMesh;
let env: Record<string, string>;
let dir: string;
let manifestFile: string;

beforeAll(async () => {
  t = await bootTestMesh();
  env = { WEFT_URL: t.admin, WEFT_ADMIN_TOKEN: TOKEN };
  dir = mkdtempSync(path.join(tmpdir(), "weft-cli-"));
  manifestFile = path.join(dir, "weft.manifest.json");
  // The repository's manifest, with the demo vendor where this mesh runs it (as npm start seeds it).
  writeFileSync(manifestFile, readFileSync(path.join(SHOP_DIR, "weft.manifest.json"), "utf8").replaceAll("http://127.0.0.1:8789", t.vendor));
});
afterAll(async () => {
  await t?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function weft(args: ReadonlyArray<string>, options: WeftOptions = {}): Promise<WeftRun> {
  return runWeft(args, { ...options, env: { ...env, ...options.env } });
}

async function adminJson<T>(route: string): Promise<T> {
  const res = await t.adminFetch(route);
  expect(res.status, route).toBe(200);
  return (await res.json()) as T;
}

interface ServiceView {
  name: string;
  split: Record<string, number>;
  policy: unknown;
  version: number;
}

const pimSplit = async (): Promise<Record<string, number>> => (await adminJson<ServiceView>("/admin/services/pim")).split;

function editManifest(edit: (manifest: ManifestInput) => void): void {
  const manifest = JSON.parse(readFileSync(manifestFile, "utf8")) as ManifestInput;
  edit(manifest);
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
}

function service(manifest: ManifestInput, name: string): ManifestInput["services"][number] {
  const found = manifest.services.find((s) => s.name === name);
  if (!found) throw new Error(`no ${name}`);
  return found;
}

describe("weft status", () => {
  it("lists the shop's services with backends, splits and health (--json)", async () => {
    await fetch(`${t.shop}/products/sku-1`).then((r) => r.arrayBuffer());
    const run = await weft(["status", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const status = JSON.parse(run.stdout) as {
      configVersion: number;
      services: Array<{ name: string; health: string; backends: Array<{ name: string; type: string }>; routes: Array<{ name: string; split: Record<string, number>; sticky: string | null }> }>;
    };
    expect(status.services.map((s) => s.name).sort()).toEqual(["cart", "echo", "notify", "orders", "pim", "storefront"]);
    const pim = status.services.find((s) => s.name === "pim");
    expect(pim?.backends).toEqual([
      { name: "pim-v1", type: "worker" },
      { name: "pim-v2", type: "worker" },
      { name: "pim-v3", type: "worker" },
      { name: "pim-vendor", type: "external" },
    ]);
    expect(pim?.routes).toEqual([{ name: "products", path: "/*", methods: null, match: "/*", matches: 1, split: { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 }, sticky: "cookie:shopper" }]);
    expect(["ok", "idle"]).toContain(pim?.health);
    expect(status.configVersion).toBeGreaterThan(0);
  });

  it("prints tables a person reads, and names an unknown service", async () => {
    const run = await weft(["status"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^SERVICE +HEALTH +RPS +SUCCESS +P99 +POLICY +BACKENDS$/m);
    expect(run.stdout).toMatch(/^pim\/products +\/\* +pim-v1=100 pim-v2=0 pim-v3=0 pim-vendor=0 +cookie:shopper$/m);
    expect(run.stdout).not.toContain("\x1b[");
    const unknown = await weft(["status", "search"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("no service named 'search'");
  });
});

describe("weft split", () => {
  it("changes what the admin API reports, with If-Match, and says what changed", async () => {
    const before = await adminJson<ServiceView>("/admin/services/pim");
    const run = await weft(["split", "pim", "pim-v1=70", "pim-v2=30"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("pim/products: pim-v1 100 → 70, pim-v2 0 → 30, pim-v3 0, pim-vendor 0");
    const after = await adminJson<ServiceView>("/admin/services/pim");
    expect(after.split).toEqual({ "pim-v1": 70, "pim-v2": 30, "pim-v3": 0, "pim-vendor": 0 });
    expect(after.version).toBeGreaterThan(before.version);
    const json = JSON.parse((await weft(["split", "pim", "pim-v1=90", "pim-v2=10", "--json"])).stdout) as { before: Record<string, number>; after: Record<string, number> };
    expect(json).toMatchObject({ before: { "pim-v1": 70, "pim-v2": 30 }, after: { "pim-v1": 90, "pim-v2": 10, "pim-v3": 0, "pim-vendor": 0 } });
  });

  it("refuses weights that do not add up or name unknown backends before writing (exit 2), and unknown services (exit 1)", async () => {
    const version = (await adminJson<ServiceView>("/admin/services/pim")).version;
    const sum = await weft(["split", "pim", "pim-v1=70", "pim-v2=20"]);
    expect(sum.code).toBe(2);
    expect(sum.stderr).toContain("weights must sum to 100, got 90");
    const unknown = await weft(["split", "pim", "pim-v1=70", "pim-v9=30"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown backend 'pim-v9' (service 'pim' has: pim-v1, pim-v2, pim-v3, pim-vendor)");
    const malformed = await weft(["split", "pim", "pim-v1:70"]);
    expect(malformed.code).toBe(2);
    expect((await adminJson<ServiceView>("/admin/services/pim")).version).toBe(version);
    const nowhere = await weft(["split", "search", "search=100"]);
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toContain("no service named 'search'");
  });
});

describe("weft diff and apply", () => {
  let raceServer: Server | undefined;
  afterAll(async () => {
    await new Promise((resolve) => (raceServer ? raceServer.close(resolve) : resolve(undefined)));
  });

  it("diff shows what the manifest would change and exits 1; apply needs --yes without a terminal", async () => {
    await setSplit(t, "pim", { "pim-v1": 70, "pim-v2": 30, "pim-v3": 0, "pim-vendor": 0 });
    editManifest((m) => {
      const pim = service(m, "pim");
      const products = pim.routes[0];
      if (products) products.split.weights = { "pim-v1": 80, "pim-v2": 20, "pim-v3": 0, "pim-vendor": 0 };
      service(m, "cart").policy = { allow: [{ from: ["storefront", "orders"] }] };
    });
    const diff = await weft(["diff", "-f", manifestFile]);
    expect(diff.code, diff.stderr).toBe(1);
    expect(diff.stdout).toContain("~ pim\n    ~ route products › split.weights.pim-v1: 70 → 80\n    ~ route products › split.weights.pim-v2: 30 → 20");
    expect(diff.stdout).toContain('~ cart\n    + policy: {"allow":[{"from":["storefront","orders"]}],"deny":[]}');
    expect(diff.stdout).toContain("- echo  (service removed");
    expect(diff.stdout).toContain("services: 2 changed, 1 removed.");

    const refused = await weft(["apply", "-f", manifestFile]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("pass --yes");
    expect(await pimSplit()).toEqual({ "pim-v1": 70, "pim-v2": 30, "pim-v3": 0, "pim-vendor": 0 });
  });

  it("apply shows the diff and applies it; then there is nothing left to apply", async () => {
    const { current } = await adminJson<{ current: number }>("/admin/config/versions");
    const run = await weft(["apply", "-f", manifestFile, "--yes"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("~ route products › split.weights.pim-v1: 70 → 80");
    expect(run.stdout).toContain(`Applied: config version ${current} → ${current + 1}`);
    expect(await pimSplit()).toEqual({ "pim-v1": 80, "pim-v2": 20, "pim-v3": 0, "pim-vendor": 0 });
    expect((await adminJson<ServiceView>("/admin/services/cart")).policy).toEqual({ allow: [{ from: ["storefront", "orders"] }], deny: [] });
    expect((await t.adminFetch("/admin/services/echo")).status).toBe(404);

    const diff = await weft(["diff", "-f", manifestFile]);
    expect(diff.code).toBe(0);
    expect(diff.stdout).toContain("No differences");
    const again = await weft(["apply", "-f", manifestFile, "--yes", "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({ applied: false, version: current + 1, changes: [] });
  });

  it("applies nothing when the mesh changed after the diff was computed (412), and says to re-run", async () => {
    // A second operator changes pim right after this CLI has read the config it diffs against.
    raceServer = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        void (async () => {
          const headers = new Headers();
          for (const name of ["authorization", "content-type", "if-match", "x-weft-reason"]) {
            const value = req.headers[name];
            if (typeof value === "string") headers.set(name, value);
          }
          const upstream = await fetch(`${t.admin}${req.url ?? "/"}`, { method: req.method, headers, ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {}) });
          const body = await upstream.text();
          if (req.method === "GET" && req.url === "/admin/config") await setSplit(t, "pim", { "pim-v1": 50, "pim-v2": 50, "pim-v3": 0, "pim-vendor": 0 });
          res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json", etag: upstream.headers.get("etag") ?? "" });
          res.end(body);
        })();
      });
    });
    await new Promise<void>((resolve) => raceServer?.listen(0, "127.0.0.1", resolve));
    const address = raceServer.address();
    const raceUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    editManifest((m) => {
      const products = service(m, "pim").routes[0];
      if (products) products.split.weights = { "pim-v1": 60, "pim-v2": 40, "pim-v3": 0, "pim-vendor": 0 };
    });
    const run = await weft(["apply", "-f", manifestFile, "--yes", "--url", raceUrl]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain("~ route products › split.weights.pim-v1: 80 → 60");
    expect(run.stderr).toContain("If-Match does not match the current version");
    expect(run.stderr).toContain("The mesh changed since the diff was computed");
    expect(await pimSplit()).toEqual({ "pim-v1": 50, "pim-v2": 50, "pim-v3": 0, "pim-vendor": 0 });
  });

  it("refuses an invalid manifest with every problem and its line, changing nothing", async () => {
    const broken = path.join(dir, "broken.json");
    writeFileSync(broken, readFileSync(manifestFile, "utf8").replace('"pim-v2": 40', '"pim-v9": 40'));
    const apply = await weft(["apply", "-f", broken, "--yes"]);
    expect(apply.code).toBe(1);
    expect(apply.stderr).toMatch(/broken\.json:\d+ \/services\/1\/routes\/0\/split\/weights\/pim-v9: unknown backend 'pim-v9'/);
    expect((await weft(["diff", "-f", broken])).code).toBe(2);
    expect(await pimSplit()).toEqual({ "pim-v1": 50, "pim-v2": 50, "pim-v3": 0, "pim-vendor": 0 });
  });
});

describe("weft history and rollback", () => {
  it("lists versions with their reasons, and rolls back to one after showing the difference", async () => {
    const history = await weft(["history", "--json"]);
    expect(history.code).toBe(0);
    const { current, versions } = JSON.parse(history.stdout) as { current: number; versions: Array<{ version: number; reason: string; changed: string[] }> };
    const applied = versions.find((v) => v.reason === `weft apply -f ${manifestFile}`);
    expect(applied?.changed.sort()).toEqual(["cart", "echo", "pim"]);
    const human = await weft(["history", "--limit", "3"]);
    expect(human.stdout).toMatch(new RegExp(`^ +\\* ${current} +\\S+ \\S+ +pim +split pim/products: pim-v1=50 pim-v2=50 pim-v3=0 pim-vendor=0$`, "m"));

    const target = applied?.version ?? 0;
    const rollback = await weft(["rollback", String(target), "--yes"]);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(rollback.stdout).toContain("~ route products › split.weights.pim-v1: 50 → 80");
    expect(rollback.stdout).toContain(`Rolled back to version ${target} as config version ${current + 1}`);
    expect(await pimSplit()).toEqual({ "pim-v1": 80, "pim-v2": 20, "pim-v3": 0, "pim-vendor": 0 });

    const missing = await weft(["rollback", "999"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no config version 999");
    expect(missing.stderr).toContain("`weft history` lists the versions");
    expect((await weft(["rollback", "latest"])).code).toBe(2);
  });
});

describe("weft keys rotate", () => {
  it("adds a key to every egress service and the JWKS publishes it", async () => {
    const run = await weft(["keys", "rotate", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const { rotated } = JSON.parse(run.stdout) as { rotated: Array<{ service: string; kid: string; activatesAt: string }> };
    expect(rotated.map((r) => r.service).sort()).toEqual(["notify", "pim"]);
    const jwks = (await (await fetch(`${t.admin}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
    for (const r of rotated) expect(jwks.keys.map((k) => k.kid)).toContain(r.kid);
    const list = await weft(["keys", "list"]);
    expect(list.stdout).toContain(rotated[0]?.kid ?? "-");
  });
});

describe("weft tap and top", () => {
  it("tap prints a request as it happens and Ctrl-C exits 0", async () => {
    const tap = spawnWeft(["tap", "pim"], { env });
    await tap.waitFor(/Tapping pim/, "stderr");
    const marker = Math.random().toString(36).slice(2, 10);
    // The first requests of every batch are on the tap, even before the proxies learn someone is tapping.
    await fetch(`${t.shop}/products/sku-2?tap=${marker}`).then((r) => r.arrayBuffer());
    await tap.waitFor(new RegExp(`GET /products/sku-2\\?tap=${marker}  200 .* route=products from=internet`));
    expect(await tap.interrupt()).toBe(0);
  });

  it("tap --json --limit prints JSON lines and stops by itself", async () => {
    const tap = spawnWeft(["tap", "pim", "--json", "--limit", "1"], { env });
    await tap.waitFor(/Tapping pim/, "stderr");
    await fetch(`${t.shop}/products/sku-3`).then((r) => r.arrayBuffer());
    expect(await tap.exited()).toBe(0);
    expect(jsonLines(tap.stdout())).toMatchObject([{ service: "pim", path: "/products/sku-3", status: 200, caller: "internet" }]);
  });

  it("top --once --json is one snapshot of every service's golden metrics", async () => {
    // Fresh traffic, so the 60-second window still holds it when top runs (earlier tests' requests slide out).
    for (const sku of ["sku-1", "sku-2", "sku-3"]) await fetch(`${t.shop}/products/${sku}`).then((r) => r.arrayBuffer());
    await waitFor(async () => (await adminJson<{ total: { requests: number } }>("/admin/metrics?service=pim&window=60")).total.requests >= 3, 15_000, 100);
    const run = await weft(["top", "--once", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const docs = jsonLines<{ services: Array<{ service: string; requests: number; successRate: number | null; health: string }> }>(run.stdout);
    expect(docs).toHaveLength(1);
    const pim = docs[0]?.services.find((s) => s.service === "pim");
    expect(pim?.requests).toBeGreaterThanOrEqual(3);
    expect(pim?.successRate).toBe(1);
    expect(docs[0]?.services[0]?.service).toBe("pim");
    expect(docs[0]?.services.find((s) => s.service === "notify")).toMatchObject({ requests: 0, health: "idle", successRate: null });
  });
});

describe("weft rollout", () => {
  /** Shoppers browsing products until stopped. */
  function traffic(): () => Promise<void> {
    let running = true;
    let n = 0;
    const loops = Array.from({ length: 4 }, async () => {
      while (running) {
        await fetch(`${t.shop}/products/sku-1`, { headers: { cookie: `shopper=s${n++ % 40}` } }).then((r) => r.arrayBuffer());
      }
    });
    return async () => {
      running = false;
      await Promise.all(loops);
    };
  }

  it("starts a canary and follows it live until promoted (exit 0), as JSON lines", async () => {
    await setSplit(t, "pim", { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
    const stop = traffic();
    try {
      const start = await weft(["rollout", "start", "pim", "--backend", "pim-v2", "--steps", "30,60", "--step-seconds", "1", "--min-requests", "5", "--max-error-rate", "0.2", "--max-p99-ms", "5000"]);
      expect(start.code, start.stderr).toBe(0);
      expect(start.stdout).toMatch(/^Rollout \S+ of pim-v2 on pim\/products \(canary; steps 30 → 60%, 1 s each; baseline pim-v1\)$/m);
      expect(start.stdout).toContain("[#######-----------------]  30% → pim-v2  step 1/2 (30 · 60)  progressing");
      const follow = await weft(["rollout", "status", "pim", "--json", "--interval", "0.3"], { timeoutMs: 25_000 });
      expect(follow.code, follow.stderr).toBe(0);
      const statuses = jsonLines<{ state: string; weight: number }>(follow.stdout);
      expect(statuses.at(-1)).toMatchObject({ state: "promoted", weight: 100 });
      const weights = statuses.map((s) => s.weight);
      expect(weights).toEqual([...weights].sort((a, b) => a - b));
    } finally {
      await stop();
    }
    expect(await pimSplit()).toEqual({ "pim-v1": 0, "pim-v2": 100, "pim-v3": 0, "pim-vendor": 0 });
  });

  it("a running rollout owns the split (409 shown); pause, resume, abort (status then exits 1) and promote", async () => {
    await setSplit(t, "pim", { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
    const start = await weft(["rollout", "start", "pim", "--backend", "pim-v2", "--steps", "10,50", "--step-seconds", "60"]);
    expect(start.code, start.stderr).toBe(0);
    const split = await weft(["split", "pim", "pim-v1=50", "pim-v2=50"]);
    expect(split.code).toBe(1);
    expect(split.stderr).toMatch(/owns the split of pim\/products/);
    expect(split.stderr).toContain("weft rollout status pim");
    const second = await weft(["rollout", "start", "pim", "--backend", "pim-v2"]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain("Only one rollout per service at a time");

    const paused = await weft(["rollout", "pause", "pim", "--json"]);
    expect(JSON.parse(paused.stdout)).toMatchObject({ state: "paused", weight: 10 });
    const resumed = await weft(["rollout", "resume", "pim"]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain("rollout of pim-v2 resumed (progressing, pim-v2 at 10%)");

    const abort = await weft(["rollout", "abort", "pim", "--reason", "cli test"]);
    expect(abort.code, abort.stderr).toBe(0);
    expect(abort.stdout).toContain("rollout of pim-v2 aborted (aborted, pim-v2 at 0%)");
    expect(await pimSplit()).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
    const status = await weft(["rollout", "status", "pim"]);
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/aborted +aborted: .*cli test/);
    expect(status.stdout).toContain("Rollout aborted");
    const again = await weft(["rollout", "abort", "pim"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already ended");
    // promote skips the remaining steps.
    expect((await weft(["rollout", "start", "pim", "--backend", "pim-v2", "--steps", "10,50", "--step-seconds", "60"])).code).toBe(0);
    const promote = await weft(["rollout", "promote", "pim"]);
    expect(promote.code, promote.stderr).toBe(0);
    expect(promote.stdout).toContain("(promoted, pim-v2 at 100%)");
    expect((await weft(["rollout", "status", "pim", "--no-follow"])).code).toBe(0);
    expect(await pimSplit()).toEqual({ "pim-v1": 0, "pim-v2": 100, "pim-v3": 0, "pim-vendor": 0 });

    const none = await weft(["rollout", "status", "cart"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("weft rollout start cart --backend <candidate>");

    // History: newest first, each with how it ended and why.
    const history = await weft(["rollout", "history", "pim"]);
    expect(history.code, history.stderr).toBe(0);
    const rows = history.stdout.split("\n").filter((line) => line.startsWith("pim-"));
    expect(rows[0]).toMatch(/^pim-\d+\s+pim-v2\s+canary\s+.*\s+1\/2\s+promoted\s+-$/);
    expect(rows[1]).toMatch(/\saborted\s+aborted by operator: cli test$/);
    const json = JSON.parse((await weft(["rollout", "history", "pim", "--limit", "2", "--json"])).stdout) as { rollouts: Array<{ state: string }> };
    expect(json.rollouts.map((r) => r.state)).toEqual(["promoted", "aborted"]);
    expect((await weft(["rollout", "history", "cart"])).stdout).toContain("cart has had no rollout");
  });
});

describe("errors an operator meets", () => {
  it("a wrong token exits 3 and says which token to use", async () => {
    const run = await weft(["status"], { env: { WEFT_ADMIN_TOKEN: "wrong" } });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain("the control plane refused the admin token from WEFT_ADMIN_TOKEN");
    expect(run.stderr).toContain("hint: Use the control plane's WEFT_ADMIN_TOKEN");
    expect(run.stderr + run.stdout).not.toContain(TOKEN);
    const json = await weft(["status", "--json"], { env: { WEFT_ADMIN_TOKEN: "wrong" } });
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { exitCode: 3, status: 401 } });
  });

  it("an unreachable control plane exits 3 with what to check; the shop's URL is recognised as not a control plane", async () => {
    const run = await weft(["status"], { env: { WEFT_URL: "http://127.0.0.1:9" } });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain("cannot reach the control plane at http://127.0.0.1:9");
    const shop = await weft(["history"], { env: { WEFT_URL: t.shop } });
    expect(shop.code).toBe(3);
    expect(shop.stderr).toContain("did not answer like a Weft control plane");
  });

  it("an unknown service on the tap exits 1 naming it", async () => {
    const run = await weft(["tap", "search"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("no service named 'search'");
  });
});
