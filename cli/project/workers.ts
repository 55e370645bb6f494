/**
 * The workers of a user's project, read with wrangler's own config reader (`unstable_readConfig`):
 * `wrangler.toml`, `wrangler.json` and `wrangler.jsonc`, environments and defaults resolved exactly as
 * `wrangler dev` and `wrangler deploy` resolve them. Weft never parses a user's wrangler config by hand.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync } from "node:fs";
import path from "node:path";
import type * as WranglerModuleNs from "wrangler";
import type { Unstable_MiniflareWorkerOptions } from "wrangler";
import * as z from "zod";
import { GENERATED_NOTICE } from "../manifest/generate.ts";
import { PublicRoute } from "../manifest/schema.ts";

type WranglerModule = typeof WranglerModuleNs;

/** The wrangler config file names wrangler itself looks for, in its order of preference. */
export const WRANGLER_CONFIG_NAMES = ["wrangler.json", "wrangler.jsonc", "wrangler.toml"] as const;

/** Directories never searched for configs: dependencies, build output, local state, VCS. */
const SKIPPED_DIRS = new Set(["node_modules", ".git", ".wrangler", ".weft", "dist", ".next", ".svelte-kit", "coverage"]);
/** A project deeper than this is not searched further (bounds the walk on huge trees). */
const MAX_DEPTH = 6;
/** At most this many directories are visited. */
const MAX_DIRS = 5_000;

/** Every wrangler config under `dir` (outside node_modules and dot-directories), sorted. */
export function findWranglerConfigs(dir: string): string[] {
  const found: string[] = [];
  let visited = 0;
  const walk = (current: string, depth: number): void => {
    if (depth > MAX_DEPTH || visited++ > MAX_DIRS) return;
    let entries;
    try {
      entries = readdirSync(current, { withFileTypes: true });
    } catch {
      return;
    }
    // One config per directory, as wrangler picks it when run there.
    const config = WRANGLER_CONFIG_NAMES.find((name) => entries.some((e) => e.isFile() && e.name === name));
    if (config && !isGeneratedProxyConfig(path.join(current, config))) found.push(path.join(current, config));
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isDirectory() && !SKIPPED_DIRS.has(entry.name) && !entry.name.startsWith(".")) walk(path.join(current, entry.name), depth + 1);
    }
  };
  walk(dir, 0);
  return found.sort();
}

/** How the proxy config `weft generate` writes starts: its notice, as a TOML comment. */
const GENERATED_PROXY_MARK = `# ${GENERATED_NOTICE}`;

/**
 * Whether a config is the proxies' config `weft generate` wrote (a project may commit it, as the demo
 * shop does): Weft's own workers, never one of the project's.
 */
function isGeneratedProxyConfig(file: string): boolean {
  try {
    const fd = openSync(file, "r");
    try {
      const head = Buffer.alloc(GENERATED_PROXY_MARK.length);
      return readSync(fd, head, 0, head.length, 0) === head.length && head.toString("utf8") === GENERATED_PROXY_MARK;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** A service binding of a worker, as its config declares it. */
export interface WorkerServiceBinding {
  binding: string;
  service: string;
  entrypoint?: string;
}

/** What Weft needs to know of one of the project's workers. */
export interface ProjectWorker {
  /** The worker's name (`name` in its config). */
  name: string;
  /** Absolute path of its wrangler config. */
  configPath: string;
  /** Absolute path of its entry module (undefined for an assets-only worker). */
  main: string | undefined;
  serviceBindings: WorkerServiceBinding[];
  /** Its routes (`routes`, `route`; custom domains included) as wrangler takes them: the proxy deploys them as they are, zone included. */
  routes: PublicRoute[];
  /** Workers whose Durable Object classes it binds (`script_name`). */
  durableObjectScripts: string[];
  /**
   * Set on a worker read from one `[env.X]` of its config: X. Its `name` is then the env-resolved
   * one (`<name>-X`, or the env's own `name`), and wrangler resolves its bindings with `--env X`.
   */
  env?: string;
  /** Its config's `[env.*]` names (on the top-level worker; empty on an env's). */
  environments: string[];
  /** The secrets its config requires (`secrets.required`): the only vendor secrets `weft dev` gives a user's worker. */
  requiredSecrets: string[];
  /** It has bindings with local data (KV, D1, R2, queues, its own Durable Objects): where `wrangler … --local` seeds them matters. */
  hasStorage: boolean;
  /** Binding kinds Weft does not route through the mesh (they keep working as they are), e.g. `tail_consumers`. */
  otherBindings: string[];
}

/** A route object of a wrangler config, read as the manifest's public route (other wrangler fields pass, unused). */
const RouteObject = z.looseObject(PublicRoute.shape);

/**
 * The fields of wrangler's resolved config that Weft reads, checked at the boundary (wrangler's own
 * `Config` type lives in a package it bundles, so TypeScript cannot see it).
 */
const WranglerConfig = z.looseObject({
  name: z.string().optional(),
  main: z.string().optional(),
  services: z.array(z.object({ binding: z.string(), service: z.string(), entrypoint: z.string().optional() })).optional(),
  routes: z.array(z.union([z.string(), RouteObject])).optional(),
  route: z.union([z.string(), RouteObject]).optional(),
  durable_objects: z.object({ bindings: z.array(z.object({ script_name: z.string().optional() })).optional() }).optional(),
  tail_consumers: z.array(z.unknown()).optional(),
  browser: z.unknown().optional(),
  dispatch_namespaces: z.array(z.unknown()).optional(),
  env: z.record(z.string(), z.unknown()).optional(),
  secrets: z.object({ required: z.array(z.string()).optional() }).optional(),
  kv_namespaces: z.array(z.unknown()).optional(),
  d1_databases: z.array(z.unknown()).optional(),
  r2_buckets: z.array(z.unknown()).optional(),
  queues: z.object({ producers: z.array(z.unknown()).optional() }).optional(),
});
export type WranglerConfig = z.infer<typeof WranglerConfig>;

const RawConfigResult = z.object({ rawConfig: z.record(z.string(), z.unknown()) });

/** What Weft uses of wrangler: the project's own wrangler 4.x (a peer dependency of weft). */
export interface WranglerApi {
  /** wrangler's `unstable_readConfig`: a config file read and validated, environment applied. */
  readConfig(configPath: string, env?: string): WranglerConfig;
  /** wrangler's `experimental_readRawConfig`: a config as written (TOML, JSON or JSONC), environments not applied. */
  readRawConfig(configPath: string): Record<string, unknown>;
  /** wrangler's `unstable_getMiniflareWorkerOptions`: every binding of a config as Miniflare options. */
  miniflareWorkerOptions(configPath: string, env?: string): Unstable_MiniflareWorkerOptions;
}

/** wrangler, loaded from the project, with a clear message when it is missing. */
export async function loadWrangler(): Promise<WranglerApi> {
  let wrangler: WranglerModule;
  // wrangler's informational lines ("Using secrets defined in …") would mix into weft's own output
  // (and break --json); its warnings and errors still show.
  process.env.WRANGLER_LOG ??= "warn";
  try {
    wrangler = await import("wrangler");
  } catch (error) {
    throw new Error("wrangler 4.x is needed next to weft: npm install --save-dev wrangler", { cause: error });
  }
  return {
    readConfig: (configPath, env) => {
      const config: unknown = wrangler.unstable_readConfig({ config: configPath, ...(env ? { env } : {}) }, { hideWarnings: true });
      return WranglerConfig.parse(config);
    },
    readRawConfig: (configPath) => {
      // Re-exported by wrangler from a package it bundles, so its type is not visible: checked here.
      const read: unknown = Reflect.get(wrangler, "experimental_readRawConfig");
      if (typeof read !== "function") throw new Error("this wrangler has no experimental_readRawConfig (wrangler 4.x is needed)");
      const result: unknown = Reflect.apply(read, wrangler, [{ config: configPath }]);
      return RawConfigResult.parse(result).rawConfig;
    },
    miniflareWorkerOptions: (configPath, env) => wrangler.unstable_getMiniflareWorkerOptions(configPath, env),
  };
}

function routesOf(config: WranglerConfig): PublicRoute[] {
  const all = [...(config.routes ?? []), ...(config.route ? [config.route] : [])];
  return all.map((r) =>
    typeof r === "string"
      ? { pattern: r }
      : { pattern: r.pattern, ...(r.zone_name ? { zone_name: r.zone_name } : {}), ...(r.zone_id ? { zone_id: r.zone_id } : {}), ...(r.custom_domain ? { custom_domain: true } : {}) },
  );
}

/** The `[env.*]` names of a config as written, in file order (wrangler's resolved config does not keep them). */
export function environmentsOf(wrangler: WranglerApi, configPath: string): string[] {
  let env: unknown;
  try {
    env = wrangler.readRawConfig(configPath).env;
  } catch {
    // readConfig has already accepted this config; a wrangler without the raw reader still runs its top level.
    return [];
  }
  return typeof env === "object" && env !== null && !Array.isArray(env) ? Object.keys(env) : [];
}

/**
 * Reads one worker's config with wrangler (with `env`: that environment, resolved as `wrangler
 * --env` resolves it). Throws wrangler's own message for a config it refuses.
 */
export function readProjectWorker(wrangler: WranglerApi, configPath: string, env?: string): ProjectWorker {
  const config = wrangler.readConfig(configPath, env);
  if (!config.name) throw new Error(`${configPath}${env ? ` [env.${env}]` : ""}: no \`name\`; a worker needs one to be deployed and bound`);
  const other = [
    ...(config.tail_consumers?.length ? ["tail_consumers"] : []),
    ...(config.browser ? ["browser"] : []),
    ...(config.dispatch_namespaces?.length ? ["dispatch_namespaces"] : []),
  ];
  return {
    name: config.name,
    configPath: path.resolve(configPath),
    main: config.main ? path.resolve(config.main) : undefined,
    serviceBindings: (config.services ?? []).map((s) => ({ binding: s.binding, service: s.service, ...(s.entrypoint ? { entrypoint: s.entrypoint } : {}) })),
    routes: routesOf(config),
    durableObjectScripts: [...new Set((config.durable_objects?.bindings ?? []).flatMap((b) => (b.script_name ? [b.script_name] : [])))],
    ...(env ? { env } : {}),
    environments: env ? [] : environmentsOf(wrangler, configPath),
    requiredSecrets: config.secrets?.required ?? [],
    otherBindings: other,
    hasStorage:
      (config.kv_namespaces?.length ?? 0) + (config.d1_databases?.length ?? 0) + (config.r2_buckets?.length ?? 0) + (config.queues?.producers?.length ?? 0) > 0 ||
      (config.durable_objects?.bindings ?? []).some((b) => !b.script_name),
  };
}

/** A config that could not be read, and why. */
export interface UnreadableConfig {
  configPath: string;
  reason: string;
}

/** At most this many `[env.*]` of one config are read as workers (bounds the work on odd configs). */
const MAX_ENVIRONMENTS = 32;

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message.split("\n")[0] ?? "" : String(error));

/**
 * Every worker of the project under `dir`, read with wrangler; configs it refuses are listed apart.
 * A config with `[env.*]` sections gives its top-level worker and, after it, one worker per
 * environment under the env-resolved name (`weft-pim` with `[env.v1]` → `weft-pim-v1`), as
 * `wrangler deploy --env` would deploy it; an environment resolving to a name already given by the
 * same config is left out (it would deploy over that worker).
 */
export function readProjectWorkers(wrangler: WranglerApi, dir: string, configs = findWranglerConfigs(dir)): { workers: ProjectWorker[]; unreadable: UnreadableConfig[] } {
  const workers: ProjectWorker[] = [];
  const unreadable: UnreadableConfig[] = [];
  for (const configPath of configs) {
    if (!existsSync(configPath)) continue;
    let top: ProjectWorker;
    try {
      top = readProjectWorker(wrangler, configPath);
    } catch (error) {
      unreadable.push({ configPath, reason: reasonOf(error) });
      continue;
    }
    workers.push(top);
    const names = new Set([top.name]);
    for (const env of top.environments.slice(0, MAX_ENVIRONMENTS)) {
      try {
        const worker = readProjectWorker(wrangler, configPath, env);
        if (names.has(worker.name)) continue;
        names.add(worker.name);
        workers.push(worker);
      } catch (error) {
        unreadable.push({ configPath, reason: `[env.${env}]: ${reasonOf(error)}` });
      }
    }
  }
  return { workers, unreadable };
}
