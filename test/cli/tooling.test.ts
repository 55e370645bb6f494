/**
 * The CLI as it is installed and the configs it generates as wrangler takes them: `npx weft`
 * resolves the repository's own bin, the bin runs on every Node (≥ 20) on this machine, and
 * `wrangler deploy --dry-run` bundles a generated proxy env and a worker whose bindings the
 * manifest generated.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT, SHOP_DIR, type Deployment } from "../../scripts/deployments.ts";
import { SHOP_MANIFEST } from "../../scripts/shop.ts";
import { loadManifest } from "../../cli/manifest/load.ts";
import { deployOrder } from "../../cli/project/deploy.ts";
import { loadWrangler, readProjectWorkers } from "../../cli/project/workers.ts";
import { orderByBindings, pool, wrangler } from "../../scripts/workers.ts";
import { weft } from "./run.ts";

const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

/** Runs a command to completion, capturing its output. */
function run(command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

describe("installing and running weft", () => {
  it("npx weft runs the repository's own bin", async () => {
    const result = await run("npx", ["--no-install", "weft", "--version"], { ...process.env, npm_config_update_notifier: "false" });
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/weft 0\.1\.0 \(Node v\d+/);
  });

  it("runs on every Node of at least version 20 on this machine (the system's and the node@22 dev dependency)", async () => {
    const candidates = [process.execPath, "/usr/bin/node", "/usr/local/bin/node", path.join(ROOT, "node_modules", ".bin", "node")].filter((p) => existsSync(p));
    const seen = new Map<string, string>();
    for (const node of candidates) {
      const version = await run(node, ["--version"], process.env);
      const major = Number(/^v(\d+)/.exec(version.output.trim())?.[1] ?? 0);
      if (major >= 20 && !seen.has(version.output.trim())) seen.set(version.output.trim(), node);
    }
    expect(seen.size).toBeGreaterThan(0);
    for (const [version, node] of seen) {
      const result = await weft(["--version"], { node });
      expect(result.stdout, `${node}: ${result.stderr}`).toBe(`weft 0.1.0 (Node ${version})\n`);
      const help = await weft(["rollout", "start", "--help"], { node });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain("Usage: weft rollout start <service> --backend <candidate> [options]");
    }
  });

  it("every command has --help, and a missing subcommand or unknown command is a usage error", async () => {
    const commands = ["status", "split", "rollout start", "rollout status", "rollout pause", "rollout resume", "rollout abort", "rollout promote", "apply", "diff", "history", "rollback", "keys list", "keys rotate", "top", "tap", "check", "generate"];
    const results = await pool(commands, 4, (command) => weft([...command.split(" "), "--help"]));
    results.forEach((result, i) => {
      expect(result.code, commands[i]).toBe(0);
      expect(result.stdout).toContain(`Usage: weft ${commands[i] ?? ""}`);
      expect(result.stdout).toContain("--json");
    });
    const group = await weft(["rollout"]);
    expect(group.code).toBe(2);
    expect(group.stderr).toContain("Commands:");
    const top = await weft(["--help"]);
    expect(top.stdout).toContain("Exit codes:");
    expect(top.stdout).toContain("WEFT_ADMIN_TOKEN");
    // 20 Node processes: ~10 s on a quiet 2-core machine, three times that when it is busy.
  }, 90_000);

  it("the project commands (init, dev, deploy) have --help and take --json", async () => {
    const commands = ["init", "dev", "deploy"];
    const results = await pool(commands, 3, (command) => weft([command, "--help"]));
    results.forEach((result, i) => {
      expect(result.code, commands[i]).toBe(0);
      expect(result.stdout).toContain(`Usage: weft ${commands[i] ?? ""}`);
      expect(result.stdout).toContain("--json");
      expect(result.stdout).toContain(`npx weft ${commands[i] ?? ""}`);
    });
  });
});

describe("npm run deploy's order (weft deploy --services on the demo shop)", () => {
  it("deploys the control plane first and every worker after the workers it binds to", async () => {
    const loaded = loadManifest(SHOP_MANIFEST, SHOP_DIR);
    const { workers } = readProjectWorkers(await loadWrangler(), SHOP_DIR);
    const steps = deployOrder(loaded, workers, { services: true, proxyFile: "proxy.toml", controlPlaneFile: "control-plane.jsonc" });
    expect(steps[0]?.name).toBe("weft-control-plane");
    const position = new Map(steps.map((s, i) => [s.name, i]));
    // Every shop worker and every proxy, once: pim's three versions from one config, each with its --env.
    expect([...position.keys()].sort()).toEqual(
      ["weft-control-plane", "weft-cart", "weft-orders", "weft-pim-v1", "weft-pim-v2", "weft-pim-v3", "weft-storefront", ...loaded.manifest.services.map((s) => `weft-proxy-${s.name}`)].sort(),
    );
    expect(steps.find((s) => s.name === "weft-pim-v3")?.env).toBe("v3");
    const before = (first: string, then: string): void => expect(position.get(first), `${first} before ${then}`).toBeLessThan(position.get(then) ?? -1);
    // A proxy after its backends; a caller after the proxies it calls through.
    before("weft-pim-v1", "weft-proxy-pim");
    before("weft-proxy-pim", "weft-cart");
    before("weft-proxy-cart", "weft-orders");
    before("weft-proxy-orders", "weft-storefront");
    before("weft-storefront", "weft-proxy-storefront");
  });

  it("reports workers that bind to each other, which a first deploy cannot order", () => {
    const worker = (name: string, binds: string[]): Deployment => ({
      name,
      configPath: path.join(ROOT, "workers", name, "wrangler.toml"),
      env: undefined,
      main: "index.ts",
      compatibilityDate: "2026-11-01",
      compatibilityFlags: [],
      vars: {},
      services: binds.map((service) => ({ binding: service.toUpperCase(), service })),
      durableObjects: [],
      sqliteClasses: [],
      routes: [],
      secrets: [],
    });
    const { order, cycles } = orderByBindings([worker("a", ["b"]), worker("b", ["a"]), worker("c", [])]);
    expect(order.map((d) => d.name)).toEqual(["c", "a", "b"]);
    expect(cycles).toEqual([{ worker: "a", before: ["b"] }]);
  });
});

describe("generated wrangler configs", () => {
  it("wrangler deploy --dry-run bundles the generated proxy env and a worker with generated bindings", async () => {
    const outdir = mkdtempSync(path.join(tmpdir(), "weft-dry-run-"));
    temporary.push(outdir);
    const targets = [
      ["-c", "examples/shop/workers/proxy/wrangler.toml", "--env", "pim"],
      ["-c", "examples/shop/workers/orders/wrangler.toml"],
    ];
    const results = await pool(targets, 2, (target) => wrangler(["deploy", "--dry-run", "--outdir", path.join(outdir, target[1] ?? ""), ...target]));
    results.forEach((result, i) => {
      expect(result.code, result.output).toBe(0);
      expect(readdirSync(path.join(outdir, targets[i]?.[1] ?? ""))).toContain("index.js");
    });
    // What wrangler would deploy: the bindings and identity the manifest generated.
    expect(results[0]?.output).toMatch(/env\.PIM_V1 \(weft-pim-v1\)/);
    expect(results[1]?.output).toMatch(/env\.NOTIFY \(weft-proxy-notify\)/);
  });
});
