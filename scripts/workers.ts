/**
 * Runs wrangler over every worker of the repository. wrangler needs Node >= 22.12; `npm run` puts the
 * node@22 devDependency first on PATH, so these scripts always get a wrangler that runs.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { deploymentsOf, meshConfigPaths, ROOT, type Deployment } from "./mesh.ts";

export { pool } from "../shared/pool.ts";

/** Environment for every wrangler call: no telemetry, no network lookups this machine cannot make. */
export const WRANGLER_ENV = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };

/** Every wrangler config whose worker has its own `Env` types: the mesh, demo parties, test fixtures, bench workers. */
export function typedConfigPaths(): string[] {
  const under = (dir: string): string[] =>
    existsSync(path.join(ROOT, dir))
      ? readdirSync(path.join(ROOT, dir))
          .sort()
          .map((d) => path.join(ROOT, dir, d, "wrangler.toml"))
          .filter((f) => existsSync(f))
      : [];
  return [...meshConfigPaths(), path.join(ROOT, "examples", "shop", "vendor", "wrangler.toml"), ...under("test/fixtures"), ...under("bench/workers")];
}

/** Where a config's generated types go (beside its main module) and the interface they declare. */
export function typesTarget(configPath: string): { out: string; envInterface: string } {
  const raw = parseToml(readFileSync(configPath, "utf8")) as { main?: string };
  const mainDir = path.dirname(path.resolve(path.dirname(configPath), raw.main ?? "index.ts"));
  const pascal = path
    .basename(mainDir)
    .split(/[^A-Za-z0-9]+/)
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("");
  return { out: path.join(mainDir, "worker-configuration.d.ts"), envInterface: `${pascal}Env` };
}

/** Result of one wrangler run. */
export interface RunResult {
  code: number;
  output: string;
  ms: number;
}

/** Runs wrangler with `args`, capturing its output. */
export function wrangler(args: string[], options: { inherit?: boolean } = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js"), ...args], {
      cwd: ROOT,
      env: WRANGLER_ENV,
      stdio: options.inherit ? "inherit" : ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("close", (code) => resolve({ code: code ?? 1, output, ms: Date.now() - started }));
  });
}

/** `-c <config> [--env <env>]` for a deployment. */
export function targetArgs(d: Deployment): string[] {
  return ["-c", path.relative(ROOT, d.configPath), ...(d.env ? ["--env", d.env] : [])];
}

/** A worker deployed before one of the workers it binds to, because they bind to each other. */
export interface CycleBreak {
  worker: string;
  /** Workers it binds to that are deployed after it. */
  before: string[];
}

/**
 * Orders deployments so that each comes after every worker its service bindings and Durable Object
 * bindings point to: Cloudflare refuses to deploy a binding to a worker that does not exist yet
 * (code 10143). Among workers that are ready, the control plane goes first, then services, then
 * proxies, then config order. Workers that bind to each other in a cycle cannot all be ordered; the
 * first of them is placed anyway and reported, since a first deploy of that cycle needs a stub.
 */
export function orderByBindings(all: ReadonlyArray<Deployment>, root = ROOT): { order: Deployment[]; cycles: CycleBreak[] } {
  const rank = (d: Deployment): number =>
    d.configPath === path.join(root, "wrangler.toml") ? 0 : d.configPath.includes(`${path.sep}proxy${path.sep}`) ? 2 : 1;
  const names = new Set(all.map((d) => d.name));
  const needs = new Map(
    all.map((d) => [
      d.name,
      new Set([...d.services.map((s) => s.service), ...d.durableObjects.flatMap((o) => (o.script_name ? [o.script_name] : []))].filter((n) => n !== d.name && names.has(n))),
    ]),
  );
  const waiting = all.map((d, index) => ({ d, index })).sort((a, b) => rank(a.d) - rank(b.d) || a.index - b.index);
  const done = new Set<string>();
  const order: Deployment[] = [];
  const cycles: CycleBreak[] = [];
  while (waiting.length > 0) {
    let next = waiting.findIndex(({ d }) => [...(needs.get(d.name) ?? [])].every((n) => done.has(n)));
    if (next < 0) {
      next = 0;
      const first = waiting[0]?.d;
      if (first) cycles.push({ worker: first.name, before: [...(needs.get(first.name) ?? [])].filter((n) => !done.has(n)) });
    }
    const picked = waiting.splice(next, 1)[0];
    if (!picked) break;
    done.add(picked.d.name);
    order.push(picked.d);
  }
  return { order, cycles };
}

/** Deployments in deploy order: every worker after the workers it binds to (see {@link orderByBindings}). */
export function deployOrder(): Deployment[] {
  return orderByBindings(meshConfigPaths().flatMap(deploymentsOf)).order;
}
