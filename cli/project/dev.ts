/**
 * `weft dev`'s engine: a project's own workers, one Weft proxy per service and the control plane on
 * workerd (Miniflare), with the workers' service bindings rewired through the proxies in memory.
 *
 * Each worker's bindings come from wrangler's own config-to-Miniflare conversion
 * (`unstable_getMiniflareWorkerOptions`): KV, D1, R2, Durable Objects, queues, static assets, vars,
 * `.dev.vars`/`.env` secrets, compatibility flags — whatever `wrangler dev` supports locally. Weft
 * changes only the service bindings the manifest's `calls` name, and adds the proxies (from the same
 * wrangler config `weft deploy` deploys, written under `.weft/dev/`) and the control plane.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { setInterval } from "node:timers";
import type { Json, Miniflare, V4WorkerOptions as WorkerOptions } from "miniflare";
import type { SourcelessWorkerOptions } from "wrangler";
import { CONTROL_PLANE_CONFIG } from "../../scripts/deployments.ts";
import { bundleMains, loadMiniflare, localMeshVars, localRoute, type WorkerLog } from "../../scripts/mesh.ts";
import { adminConfigOf, type LoadedManifest } from "../manifest/load.ts";
import { callerProps, proxyConfig } from "../manifest/generate.ts";
import { proxyScript, type Manifest } from "../manifest/schema.ts";
import type { MeshConfigInput } from "../../shared/config.ts";
import { readProjectWorkers, type ProjectWorker, type WranglerApi } from "./workers.ts";

/** What {@link startProject} needs. */
export interface ProjectOptions {
  loaded: LoadedManifest;
  wrangler: WranglerApi;
  host: string;
  /** The public entry: every public service's routes (and the first route-less public service for the rest). */
  port: number;
  /** The control plane: admin API, dashboard, JWKS, metrics. */
  adminPort: number;
  adminToken: string;
  /** Where local data lives (Miniflare's persistence root); see {@link localStateDir}. Omitted: in memory (tests). */
  persistTo?: string;
  debugHeaders: boolean;
  accessLog: string;
  /**
   * Vendor secrets (`NAME` → value: the project's `.weft/secrets.env` and environment variables,
   * see loadProjectSecrets), bound to every proxy as `wrangler secret put` does in production; a
   * user's worker gets only those its config requires (`secrets.required`).
   */
  secrets?: Readonly<Record<string, string>>;
  onLog?: (log: WorkerLog) => void;
  /** Vars set on the control plane and every proxy over the local ones (e.g. a shorter key activation in tests). */
  vars?: Readonly<Record<string, string>>;
  /**
   * Workers booted beside the mesh that are not part of it: an outside party on its own port (the
   * demo shop's vendor), test fixtures.
   */
  extraWorkers?: WorkerOptions[];
}

/** One worker as booted: where it came from. */
export interface BootedWorker {
  name: string;
  kind: "control-plane" | "proxy" | "worker";
  /** The service it belongs to (proxies and backend workers). */
  service?: string;
  config: string;
  /** The `[env.*]` of its config it was booted with (a worker deployed with `--env`). */
  env?: string;
}

/** A running project mesh. */
export interface RunningProject {
  mf: Miniflare;
  url: string;
  adminUrl: string;
  workers: BootedWorker[];
  /** Service bindings rewired through a proxy: `gateway.API → weft-proxy-api (caller gateway)`. */
  rewired: string[];
  dispose(): Promise<void>;
}

/** What Weft sets on a worker's converted options itself (its module comes from the bundle). */
type OwnOptions = Omit<Partial<WorkerOptions>, "modules" | "modulesRoot" | "scriptPath">;

/**
 * The public entry's answer when no public route matches (Miniflare gives such requests to its
 * first worker, which would otherwise be whichever came first: the control plane's dashboard).
 */
function noPublicRoute(routes: string[], compatibilityDate: string | undefined): WorkerOptions {
  const problem = { type: "urn:weft:problem:no-public-route", title: "No public route", status: 404, routes };
  return {
    name: "weft-dev-no-public-route",
    modules: true,
    ...(compatibilityDate ? { compatibilityDate } : {}),
    script: `const PROBLEM = ${JSON.stringify(problem)};
export default {
  fetch(request) {
    const detail = "no public route of this project matches " + new URL(request.url).pathname + (PROBLEM.routes.length ? "" : ": no service is public (mark one public in weft.manifest.json)");
    return new Response(JSON.stringify({ ...PROBLEM, detail }), { status: 404, headers: { "content-type": "application/problem+json" } });
  },
};
`,
  };
}

/**
 * Where `wrangler dev` keeps its dev registry: WRANGLER_REGISTRY_PATH, else `registry` in wrangler's
 * global config folder (~/.wrangler when it exists, else .wrangler under $XDG_CONFIG_HOME or
 * ~/.config). wrangler does not export its own lookup; this is the same rule.
 */
export function wranglerRegistryPath(env: NodeJS.ProcessEnv): string {
  if (env.WRANGLER_REGISTRY_PATH) return path.resolve(env.WRANGLER_REGISTRY_PATH);
  const legacy = path.join(homedir(), ".wrangler");
  const config = existsSync(legacy) ? legacy : path.join(env.XDG_CONFIG_HOME || path.join(homedir(), ".config"), ".wrangler");
  return path.join(config, "registry");
}

/** wrangler's converted options with the worker's module from `code` (see bundleMains): the shape Miniflare takes. */
export function withBundledModule(converted: SourcelessWorkerOptions, main: string | undefined, code: ReadonlyMap<string, string>, own: OwnOptions): WorkerOptions {
  const module = main ? { modulesRoot: path.dirname(main), modules: [{ type: "ESModule" as const, path: main.replace(/\.ts$/, ".js"), contents: code.get(main) ?? "" }] } : { script: "export default {}", modules: true };
  // wrangler's rootPath is relative to the directory it was called from; the module is placed by modulesRoot.
  const { rootPath: _rootPath, ...rest } = converted;
  return { ...rest, ...module, ...own };
}

/** What {@link startWithoutWeft} needs. */
export interface WithoutWeftOptions {
  wrangler: WranglerApi;
  /** The workers' wrangler configs (with `env`: that environment of it, as `wrangler dev --env`). */
  configs: ReadonlyArray<string | { config: string; env: string }>;
  host: string;
  /** Local data, as for `weft dev` (see {@link localStateDir}); default: Miniflare's in-memory storage. */
  persistTo?: string;
}

/**
 * A project's workers as they run without Weft: their own wrangler configs and bindings, nothing
 * rewired, no proxies, no control plane — what the mesh's answers are compared with. Its URL is
 * the first worker's.
 */
export async function startWithoutWeft(options: WithoutWeftOptions): Promise<{ url: string; dispose(): Promise<void> }> {
  const converted = options.configs.map((config) => {
    const { file, env } = typeof config === "string" ? { file: config, env: undefined } : { file: config.config, env: config.env };
    return { name: options.wrangler.readConfig(file, env).name ?? path.basename(path.dirname(file)), ...options.wrangler.miniflareWorkerOptions(file, env) };
  });
  const code = await bundleMains(converted.flatMap((c) => (c.main ? [c.main] : [])));
  const workers = converted.map((c) => withBundledModule(c.workerOptions, c.main, code, { name: c.name }));
  const { Miniflare, convertV4MiniflareOptions } = await loadMiniflare();
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: options.host,
      port: 0,
      unsafeDevRegistryPath: wranglerRegistryPath(process.env),
      ...(options.persistTo ? { resourcePersistencePath: path.join(options.persistTo, "v3") } : {}),
      workers,
    }),
  );
  return { url: (await mf.ready).href, dispose: () => mf.dispose() };
}

/** The worker scripts the manifest's services name, with the project's workers they need (bindings, Durable Object scripts). */
export function workersToBoot(manifest: Manifest, project: ReadonlyArray<ProjectWorker>): { workers: ProjectWorker[]; missing: string[] } {
  // The mesh's own workers (the proxies, the control plane) are Weft's to boot, even when a config of
  // the project deploys them (Weft's repository layout: workers/proxy/wrangler.toml's [env.*]).
  const own = new Set([manifest.controlPlane.script, ...manifest.services.map((s) => proxyScript(manifest, s.name))]);
  const byName = new Map(project.filter((w) => !own.has(w.name)).map((w) => [w.name, w]));
  const wanted = manifest.services.flatMap((s) => s.backends.flatMap((b) => (b.type === "worker" ? [b.script] : [])));
  const missing = wanted.filter((name) => !byName.has(name));
  const booted = new Map<string, ProjectWorker>();
  const visit = (name: string): void => {
    const worker = byName.get(name);
    if (!worker || booted.has(name)) return;
    booted.set(name, worker);
    for (const s of worker.serviceBindings) visit(s.service);
    for (const script of worker.durableObjectScripts) visit(script);
  };
  for (const name of wanted) visit(name);
  return { workers: [...booted.values()], missing: [...new Set(missing)] };
}

/**
 * Where local data is: the `.wrangler/state` that `wrangler dev` and `wrangler … --local` use. They
 * keep it beside the wrangler config they run with, so a project with one folder per worker keeps a
 * worker's data in its folder; Miniflare takes one. In order: the project root's when a worker is
 * configured there, then the folders of workers with storage bindings (KV, D1, R2, queues, Durable
 * Objects), then the project root; the first that exists, else the first of them (created).
 */
export function localStateDir(projectDir: string, workers: ReadonlyArray<ProjectWorker>): { dir: string; others: string[] } {
  const dirOf = (w: ProjectWorker): string => path.dirname(w.configPath);
  const order = [
    ...new Set([...(workers.some((w) => dirOf(w) === projectDir) ? [projectDir] : []), ...workers.filter((w) => w.hasStorage).map(dirOf), projectDir]),
  ].map((d) => path.join(d, ".wrangler", "state"));
  const existing = order.filter((d) => existsSync(path.join(d, "v3")));
  const dir = existing[0] ?? order[0] ?? path.join(projectDir, ".wrangler", "state");
  return { dir, others: existing.filter((d) => d !== dir) };
}

/** Boots the project's mesh. */
export async function startProject(options: ProjectOptions): Promise<RunningProject> {
  const { loaded, wrangler } = options;
  const secrets = options.secrets ?? {};
  const manifest = loaded.manifest;
  const projectDir = loaded.dir;
  const { workers: project } = readProjectWorkers(wrangler, projectDir);
  const { workers: userWorkers, missing } = workersToBoot(manifest, project);
  if (missing.length > 0) {
    throw new Error(`the manifest names worker${missing.length === 1 ? "" : "s"} ${missing.map((m) => `'${m}'`).join(", ")}, but no wrangler config under ${projectDir} defines ${missing.length === 1 ? "it" : "them"}`);
  }

  // The proxies' wrangler config, as `weft generate` writes it for deploy, read back by wrangler.
  const devDir = path.join(projectDir, ".weft", "dev");
  const proxyFile = path.join(devDir, "proxy", "wrangler.toml");
  mkdirSync(path.dirname(proxyFile), { recursive: true });
  // Written whole then renamed: two meshes of one project booting at once (tests) never read half a file.
  const partial = `${proxyFile}.${process.pid}.${Date.now()}`;
  writeFileSync(partial, proxyConfig(withProxyMainFrom(loaded, proxyFile), proxyFile));
  renameSync(partial, proxyFile);

  const issuer = `http://${options.host}:${options.adminPort}`;
  const meshVars = { ...localMeshVars({ issuer, debugHeaders: options.debugHeaders, accessLog: options.accessLog }), ...options.vars };
  const withMeshVars = (bindings: unknown): Record<string, Json> => {
    const entries = typeof bindings === "object" && bindings !== null ? Object.entries(bindings) : [];
    return Object.fromEntries(entries.map(([k, v]: [string, Json]) => [k, k in meshVars ? (meshVars[k] ?? v) : v]));
  };

  const controlPlaneFile = CONTROL_PLANE_CONFIG;
  // The control plane's config requires WEFT_ADMIN_TOKEN; wrangler reads required secrets from the
  // environment, so it is there (for this call only) rather than reported missing.
  const controlPlane = withEnv({ WEFT_ADMIN_TOKEN: options.adminToken }, () => wrangler.miniflareWorkerOptions(controlPlaneFile));
  const publicServices = manifest.services.filter((s) => s.public || (s.publicRoutes?.length ?? 0) > 0);
  const catchAll = publicServices.find((s) => !s.publicRoutes?.length);
  const proxies = manifest.services.map((service) => ({ service, options: wrangler.miniflareWorkerOptions(proxyFile, service.name) }));

  // Which proxy each worker's calls go to, and as whom.
  const serviceOfScript = new Map(manifest.services.flatMap((s) => s.backends.flatMap((b) => (b.type === "worker" ? [[b.script, { service: s.name, calls: b.calls ?? {} }] as const] : []))));
  const rewired: string[] = [];

  const mains = [
    controlPlane.main ?? "",
    ...proxies.map((p) => p.options.main ?? ""),
    ...userWorkers.map((w) => w.main ?? ""),
  ].filter(Boolean);
  const code = await bundleMains(mains);
  const withSource = (converted: SourcelessWorkerOptions, main: string | undefined, own: OwnOptions): WorkerOptions => withBundledModule(converted, main, code, own);

  const workers: WorkerOptions[] = [
    noPublicRoute(publicServices.flatMap((s) => (s.publicRoutes ?? []).map((r) => `${r.pattern} → ${s.name}`)), manifest.proxy.compatibilityDate),
    withSource(controlPlane.workerOptions, controlPlane.main, {
      name: manifest.controlPlane.script,
      bindings: { ...withMeshVars(controlPlane.workerOptions.bindings), WEFT_ADMIN_TOKEN: options.adminToken },
      unsafeDirectSockets: [{ host: options.host, port: options.adminPort }],
    }),
    ...proxies.map(({ service, options: p }): WorkerOptions => {
      const routes = [
        // A custom domain is the whole host: locally, every path.
        ...(service.publicRoutes ?? []).map((r) => localRoute(r.pattern)),
        ...(service === catchAll ? ["*/*"] : []),
      ];
      // The local settings (access log, debug headers, development mode, the local issuer) are added,
      // not only replaced: a project's generated proxy config sets none of them (they are deploy-time
      // defaults), so replacing alone left weft dev's proxies without an access log. A vendor secret
      // never overrides the proxy's own settings (a stray WEFT_SERVICE line in secrets.env).
      return withSource(p.workerOptions, p.main, { name: proxyScript(manifest, service.name), bindings: { ...secrets, ...withMeshVars(p.workerOptions.bindings), ...meshVars }, routes });
    }),
    ...userWorkers.map((worker): WorkerOptions => {
      // wrangler reads a config's required secrets from the environment too: a vendor secret the
      // worker declares is there for this call only; the others never reach the user's workers.
      const required = Object.fromEntries(worker.requiredSecrets.flatMap((name) => (secrets[name] !== undefined ? [[name, secrets[name]]] : [])));
      const converted = withEnv(required, () => wrangler.miniflareWorkerOptions(worker.configPath, worker.env));
      const owner = serviceOfScript.get(worker.name);
      const serviceBindings = Object.fromEntries(
        Object.entries(converted.workerOptions.serviceBindings ?? {}).map(([binding, target]) => {
          const callee = owner?.calls[binding];
          if (!owner || !callee) return [binding, target];
          // A binding to a named entrypoint reaches the callee proxy's default one, with props.entrypoint saying which.
          const entrypoint = namedEntrypointOf(target);
          rewired.push(`${worker.name}.${binding} → ${proxyScript(manifest, callee)} (caller ${owner.service}${entrypoint ? `, entrypoint ${entrypoint}` : ""})`);
          return [binding, { name: proxyScript(manifest, callee), props: callerProps(owner.service, "worker", entrypoint) }];
        }),
      );
      // The proxy now takes the worker's public routes; the worker itself is reached through it.
      return withSource(converted.workerOptions, worker.main, { name: worker.name, serviceBindings, routes: [] });
    }),
  ];

  // Miniflare's exit hook answers Ctrl-C with process.exit(130) before `weft dev` can dispose and say
  // so; its 'exit' hook (which stops workerd whatever happens) stays, its signal handlers go.
  const signals = ["SIGINT", "SIGTERM"] as const;
  const ours = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { Miniflare, convertV4MiniflareOptions } = await loadMiniflare();
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: options.host,
      port: options.port,
      // As `wrangler dev` does: a binding to a worker outside the project reaches it in another local
      // session (wrangler dev elsewhere) through wrangler's dev registry, and fails only when called
      // while none runs; without it workerd refuses to start ("no such service is defined").
      unsafeDevRegistryPath: wranglerRegistryPath(process.env),
      ...(options.persistTo !== undefined ? { resourcePersistencePath: path.join(options.persistTo, "v3") } : {}),
      ...(options.onLog ? { handleStructuredLogs: options.onLog } : {}),
      workers: [...workers, ...(options.extraWorkers ?? [])],
    }),
  );
  const url = (await mf.ready).origin;
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) if (!ours.get(signal)?.has(listener)) process.removeListener(signal, listener);
  }
  const adminUrl = (await mf.unsafeGetDirectURL(manifest.controlPlane.script)).origin;
  return {
    mf,
    url,
    adminUrl,
    rewired,
    workers: [
      { name: manifest.controlPlane.script, kind: "control-plane", config: controlPlaneFile },
      ...manifest.services.map((s): BootedWorker => ({ name: proxyScript(manifest, s.name), kind: "proxy", service: s.name, config: `${proxyFile} [env.${s.name}]` })),
      ...userWorkers.map((w): BootedWorker => ({ name: w.name, kind: "worker", ...(serviceOfScript.get(w.name) ? { service: serviceOfScript.get(w.name)?.service } : {}), config: w.configPath, ...(w.env ? { env: w.env } : {}) })),
    ],
    dispose: () => mf.dispose(),
  };
}

/**
 * The manifest with its `proxy.main` (written relative to the manifest's own proxy config,
 * `files.proxy`) re-based for a proxy config written to `file`, so a manifest naming its own proxy
 * entry module (as Weft's repository layout does) boots from `.weft/dev/` too.
 */
export function withProxyMainFrom(loaded: LoadedManifest, file: string): LoadedManifest {
  const main = loaded.manifest.proxy.main;
  if (main === undefined || path.isAbsolute(main)) return loaded;
  const absolute = path.resolve(path.dirname(path.resolve(loaded.dir, loaded.manifest.files.proxy)), main);
  const rebased = path.relative(path.dirname(file), absolute).split(path.sep).join("/");
  return { ...loaded, manifest: { ...loaded.manifest, proxy: { ...loaded.manifest.proxy, main: rebased } } };
}

/** The named entrypoint a converted service binding targets (`{ name, entrypoint }`), if any. */
export function namedEntrypointOf(target: unknown): string | undefined {
  if (typeof target !== "object" || target === null || !("entrypoint" in target)) return undefined;
  const entrypoint = target.entrypoint;
  return typeof entrypoint === "string" && entrypoint !== "default" && entrypoint !== "" ? entrypoint : undefined;
}

function withEnv<T>(vars: Record<string, string>, run: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return run();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** The admin config the manifest describes (what `weft dev` loads into an empty control plane). */
export function projectAdminConfig(loaded: LoadedManifest): MeshConfigInput {
  return adminConfigOf(loaded.raw);
}

/** workerd does not run cron triggers; Cloudflare runs the proxies' every minute (a rollout's probes). Do the same. */
export function startCrons(running: { mf: Miniflare }, manifest: Manifest, stop: AbortSignal): void {
  const crons = manifest.proxy.crons ?? [];
  const proxies = manifest.services.map((s) => proxyScript(manifest, s.name));
  if (crons.length === 0) return;
  const fire = (): void => {
    for (const worker of proxies) {
      for (const cron of crons) {
        void running.mf
          .getWorker(worker)
          .then((fetcher) => fetcher.scheduled({ cron }))
          .catch((error: unknown) => {
            if (!stop.aborted) process.stderr.write(`weft: cron trigger of ${worker} failed: ${error instanceof Error ? error.message : String(error)}\n`);
          });
      }
    }
  };
  const timer = setInterval(fire, 60_000);
  timer.unref();
  stop.addEventListener("abort", () => clearInterval(timer), { once: true });
}
