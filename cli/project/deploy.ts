/**
 * What `weft deploy` deploys for a project Weft was added to (`files.workers` in the manifest): the
 * control plane and the proxies from the installed package, and — with `--services` — copies of the
 * project's worker configs whose calls point at the proxies. Every file goes under `.weft/deploy/`;
 * the user's own configs are read, never written.
 */
import path from "node:path";
import { CONTROL_PLANE_CONFIG, ROOT, type Deployment } from "../../scripts/deployments.ts";
import { orderByBindings } from "../../scripts/workers.ts";
import { displayPath, type LoadedManifest } from "../manifest/load.ts";
import { callerProps, type GeneratedFile } from "../manifest/generate.ts";
import { proxyScript } from "../manifest/schema.ts";
import type { ProjectWorker } from "./workers.ts";

/** A wrangler config as JSON (what `experimental_readRawConfig` returns). */
export type RawWranglerConfig = Record<string, unknown>;

/** Reads a config's raw form (environments not applied), as wrangler parses TOML, JSON and JSONC. */
export type RawConfigReader = (configPath: string) => RawWranglerConfig;

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * A config section (top level or one `env`) with its file paths re-based from `fromDir` to `toDir`,
 * so the copy names the same files as the original.
 */
function rebase(section: Record<string, unknown>, fromDir: string, toDir: string, topLevel: boolean): Record<string, unknown> {
  const move = (p: unknown): unknown => (typeof p === "string" && !path.isAbsolute(p) ? path.relative(toDir, path.resolve(fromDir, p)).split(path.sep).join("/") : p);
  const out: Record<string, unknown> = { ...section };
  for (const key of ["main", "tsconfig", "base_dir"]) if (key in out) out[key] = move(out[key]);
  if (isRecord(out.assets)) out.assets = { ...out.assets, ...(out.assets.directory !== undefined ? { directory: move(out.assets.directory) } : {}) };
  if (isRecord(out.site)) out.site = { ...out.site, ...(out.site.bucket !== undefined ? { bucket: move(out.site.bucket) } : {}) };
  if (isRecord(out.build)) out.build = { ...out.build, cwd: move(out.build.cwd ?? "."), ...(out.build.watch_dir !== undefined ? { watch_dir: move(out.build.watch_dir) } : {}) };
  for (const key of ["text_blobs", "data_blobs", "wasm_modules"]) {
    const blobs = out[key];
    if (isRecord(blobs)) out[key] = Object.fromEntries(Object.entries(blobs).map(([k, v]) => [k, move(v)]));
  }
  if (Array.isArray(out.d1_databases)) {
    // wrangler's default migrations folder is beside the config: name it, or the copy would look beside itself.
    out.d1_databases = out.d1_databases.map((db: unknown) => (isRecord(db) ? { ...db, migrations_dir: move(db.migrations_dir ?? "migrations") } : db));
  }
  if (topLevel && isRecord(out.env)) {
    out.env = Object.fromEntries(Object.entries(out.env).map(([name, env]) => [name, isRecord(env) ? rebase(env, fromDir, toDir, false) : env]));
  }
  return out;
}

/** Options for {@link workerDeployConfig}. */
export interface WorkerDeployInput {
  loaded: LoadedManifest;
  worker: ProjectWorker;
  raw: RawWranglerConfig;
  /** Where the copy is written. */
  file: string;
}

/**
 * A project worker's config as deployed behind Weft: its calls bound to the callees' proxies (with
 * `props.caller`, the identity their policies see), its public routes given to its proxy, and no
 * workers.dev URL — it is reached through its proxy only. A worker read from an `[env.X]` gets a
 * copy of the whole config with that section rewired, deployed with `--env X`.
 */
export function workerDeployConfig({ loaded, worker, raw, file }: WorkerDeployInput): RawWranglerConfig {
  const { manifest } = loaded;
  const owner = manifest.services.find((s) => s.backends.some((b) => b.type === "worker" && b.script === worker.name));
  const backend = owner?.backends.find((b) => b.type === "worker" && b.script === worker.name);
  const calls = backend?.type === "worker" ? (backend.calls ?? {}) : {};
  const config = rebase(raw, path.dirname(worker.configPath), path.dirname(file), true);
  // A worker deployed from an [env.X] (`wrangler deploy --env X`) takes its bindings and routes from
  // that section (wrangler does not inherit bindings into environments): rewire those.
  const envs = isRecord(config.env) ? config.env : {};
  const section = worker.env === undefined ? undefined : envs[worker.env];
  const scoped = isRecord(section) ? { ...section } : undefined;
  const target: Record<string, unknown> = scoped ?? config;
  const services = Array.isArray(target.services) ? target.services : [];
  if (services.length > 0 || target === config) {
    target.services = services.map((binding: unknown) => {
      if (!isRecord(binding) || typeof binding.binding !== "string" || !owner) return binding;
      const callee = calls[binding.binding];
      if (!callee) return binding;
      // A binding to a named entrypoint reaches the callee proxy's default one, with props.entrypoint saying which.
      const entrypoint = typeof binding.entrypoint === "string" && binding.entrypoint !== "default" ? binding.entrypoint : undefined;
      return { binding: binding.binding, service: proxyScript(manifest, callee), props: callerProps(owner.name, "worker", entrypoint) };
    });
  }
  const proxied = new Set((owner?.publicRoutes ?? []).map((r) => r.pattern));
  const keep = (route: unknown): boolean => !proxied.has(typeof route === "string" ? route : isRecord(route) && typeof route.pattern === "string" ? route.pattern : "");
  for (const part of scoped ? [config, scoped] : [config]) {
    if (Array.isArray(part.routes)) part.routes = part.routes.filter(keep);
    if (part.route !== undefined && !keep(part.route)) delete part.route;
    // In the environment too: an env's own workers_dev = true would win over the top level's.
    part.workers_dev = false;
    part.preview_urls = false;
  }
  if (scoped && worker.env !== undefined) config.env = { ...envs, [worker.env]: scoped };
  return config;
}

/** The control plane's config, from the installed package, with its entry module re-based to `file`. */
export function controlPlaneDeployConfig(raw: RawWranglerConfig, file: string, manifestVars: Record<string, string>): RawWranglerConfig {
  const config = rebase(raw, ROOT, path.dirname(file), true);
  if (Object.keys(manifestVars).length > 0) config.vars = { ...(isRecord(config.vars) ? config.vars : {}), ...manifestVars };
  return config;
}

function jsonc(config: RawWranglerConfig, notice: string): string {
  return `// ${notice}\n${JSON.stringify(config, null, 2)}\n`;
}

/** Every deploy config Weft writes for a project under `files.workers` (besides the proxy and admin config). */
export function projectDeployFiles(loaded: LoadedManifest, project: ReadonlyArray<ProjectWorker>, readRaw: RawConfigReader, cwd: string): GeneratedFile[] {
  const folder = path.resolve(loaded.dir, loaded.manifest.files.workers ?? ".weft/deploy/workers");
  const notice = `generated by weft from ${path.relative(folder, loaded.file)} and the worker's own config; edit those, not this`;
  const scripts = new Set(loaded.manifest.services.flatMap((s) => s.backends.flatMap((b) => (b.type === "worker" ? [b.script] : []))));
  const files: GeneratedFile[] = [];
  const controlPlaneFile = path.join(path.dirname(folder), "control-plane", "wrangler.jsonc");
  files.push({
    file: controlPlaneFile,
    display: displayPath(controlPlaneFile, cwd),
    content: jsonc(controlPlaneDeployConfig(readRaw(CONTROL_PLANE_CONFIG), controlPlaneFile, loaded.manifest.controlPlane.vars ?? {}), notice),
    owns: "whole file",
  });
  for (const worker of project) {
    if (!scripts.has(worker.name)) continue;
    const file = path.join(folder, worker.name, "wrangler.jsonc");
    files.push({ file, display: displayPath(file, cwd), content: jsonc(workerDeployConfig({ loaded, worker, raw: readRaw(worker.configPath), file }), notice), owns: "whole file" });
  }
  return files;
}

/** One `wrangler deploy` of the plan. */
export interface DeployStep {
  name: string;
  kind: "control-plane" | "proxy" | "worker";
  config: string;
  env?: string;
}

/**
 * The order to deploy in: the control plane, then every worker after the workers it binds to
 * (Cloudflare refuses a binding to a worker that does not exist yet): a callee's worker, its proxy,
 * then the callers.
 */
export function deployOrder(loaded: LoadedManifest, project: ReadonlyArray<ProjectWorker>, options: { services: boolean; proxyFile: string; controlPlaneFile: string }): DeployStep[] {
  const { manifest } = loaded;
  const folder = path.resolve(loaded.dir, manifest.files.workers ?? ".weft/deploy/workers");
  const deployment = (name: string, configPath: string, env: string | undefined, targets: string[]): Deployment => ({
    name,
    configPath,
    env,
    main: "",
    compatibilityDate: "",
    compatibilityFlags: [],
    vars: {},
    services: targets.map((service) => ({ binding: service, service })),
    durableObjects: [],
    sqliteClasses: [],
    routes: [],
    secrets: [],
  });
  const kinds = new Map<string, DeployStep["kind"]>();
  const all: Deployment[] = [deployment(manifest.controlPlane.script, options.controlPlaneFile, undefined, [])];
  kinds.set(manifest.controlPlane.script, "control-plane");
  for (const service of manifest.services) {
    const name = proxyScript(manifest, service.name);
    kinds.set(name, "proxy");
    const targets = [manifest.controlPlane.script, ...service.backends.flatMap((b) => (b.type === "worker" ? [b.script] : b.type === "mesh" ? [proxyScript(manifest, b.service)] : []))];
    all.push(deployment(name, options.proxyFile, service.name, targets));
  }
  if (options.services) {
    const scripts = new Set(manifest.services.flatMap((s) => s.backends.flatMap((b) => (b.type === "worker" ? [b.script] : []))));
    for (const worker of project.filter((w) => scripts.has(w.name))) {
      kinds.set(worker.name, "worker");
      const owner = manifest.services.find((s) => s.backends.some((b) => b.type === "worker" && b.script === worker.name));
      const calls = owner?.backends.find((b) => b.type === "worker" && b.script === worker.name);
      const callees = calls?.type === "worker" ? Object.values(calls.calls ?? {}).map((c) => proxyScript(manifest, c)) : [];
      all.push(deployment(worker.name, path.join(folder, worker.name, "wrangler.jsonc"), worker.env, [...callees, ...worker.serviceBindings.map((s) => s.service), ...worker.durableObjectScripts]));
    }
  }
  // orderByBindings puts the config at <root>/wrangler.toml first; the control plane is first here by construction.
  return orderByBindings(all, path.dirname(options.controlPlaneFile)).order.map((d) => ({ name: d.name, kind: kinds.get(d.name) ?? "worker", config: d.configPath, ...(d.env ? { env: d.env } : {}) }));
}
