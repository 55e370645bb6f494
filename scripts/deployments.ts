/**
 * The deployable workers of a repository, read from its wrangler configs: one per config, or one per
 * `[env.*]` of it. Kept apart from mesh.ts (which boots them on workerd) so tools that only read
 * configs, such as the weft CLI, load neither esbuild nor Miniflare.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseToml } from "smol-toml";

/**
 * Weft's package root (the repository checkout, or `node_modules/weft` where it is installed): the
 * nearest directory above this module with weft's package.json. Found by walking up because the CLI
 * runs this module from a bundle under `node_modules/.cache/weft/`.
 */
export const ROOT = packageRoot(path.dirname(fileURLToPath(import.meta.url)));

function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
      if (typeof pkg === "object" && pkg !== null && "name" in pkg && pkg.name === "weft") return dir;
    } catch {
      // No package.json here: keep walking.
    }
    if (path.dirname(dir) === dir) return path.resolve(from, "..");
  }
}

export interface RawService {
  binding: string;
  service: string;
  entrypoint?: string;
  props?: Record<string, unknown>;
}
export interface RawDurableObject {
  name: string;
  class_name: string;
  script_name?: string;
}
export interface RawRoute {
  pattern: string;
  custom_domain?: boolean;
}
export interface RawConfig {
  name?: string;
  main?: string;
  compatibility_date?: string;
  compatibility_flags?: string[];
  vars?: Record<string, string>;
  services?: RawService[];
  durable_objects?: { bindings?: RawDurableObject[] };
  routes?: Array<RawRoute | string>;
  migrations?: Array<{ new_sqlite_classes?: string[] }>;
  secrets?: { required?: string[] };
  env?: Record<string, RawConfig>;
}

/** One deployable worker: a wrangler config, or one `[env.*]` of it. */
export interface Deployment {
  name: string;
  configPath: string;
  env: string | undefined;
  main: string;
  compatibilityDate: string;
  compatibilityFlags: string[];
  vars: Record<string, string>;
  services: RawService[];
  durableObjects: RawDurableObject[];
  sqliteClasses: string[];
  routes: string[];
  secrets: string[];
}

function resolveDeployment(configPath: string, raw: RawConfig, envName: string | undefined): Deployment {
  // Mirrors wrangler: main, compatibility settings and migrations are inherited by environments;
  // vars, bindings and routes are not.
  const scoped = envName ? (raw.env?.[envName] ?? {}) : raw;
  if (!raw.main || !raw.name || !raw.compatibility_date) {
    throw new Error(`${configPath}: name, main and compatibility_date are required`);
  }
  return {
    name: scoped.name ?? (envName ? `${raw.name}-${envName}` : raw.name),
    configPath,
    env: envName,
    main: path.resolve(path.dirname(configPath), raw.main),
    compatibilityDate: raw.compatibility_date,
    compatibilityFlags: raw.compatibility_flags ?? [],
    vars: scoped.vars ?? {},
    services: scoped.services ?? [],
    durableObjects: scoped.durable_objects?.bindings ?? [],
    sqliteClasses: (raw.migrations ?? []).flatMap((m) => m.new_sqlite_classes ?? []),
    routes: (scoped.routes ?? []).flatMap((r) => (typeof r === "string" ? [r] : r.custom_domain ? [] : [r.pattern])),
    secrets: scoped.secrets?.required ?? raw.secrets?.required ?? [],
  };
}

/** The demo shop: an example project that runs Weft like a user's project does (examples/shop/). */
export const SHOP_DIR = path.join(ROOT, "examples", "shop");

/** The demo shop's generated proxy config: the proxy's deployments as `weft generate` writes them. */
export const SHOP_PROXY_CONFIG = path.join(SHOP_DIR, "workers", "proxy", "wrangler.toml");

/** The control plane's wrangler config: the one worker every mesh has once, at Weft's root. */
export const CONTROL_PLANE_CONFIG = path.join(ROOT, "wrangler.toml");

/** The wrangler configs of a project laid out as `dir`: `wrangler.toml` at its root (if any) and one per `workers/*`. */
export function configPaths(dir: string): string[] {
  const workers = path.join(dir, "workers");
  return [
    path.join(dir, "wrangler.toml"),
    ...(existsSync(workers) ? readdirSync(workers) : []).sort().map((sub) => path.join(workers, sub, "wrangler.toml")),
  ].filter((file) => existsSync(file));
}

/** The mesh the repository runs: Weft's control plane and the demo shop's workers (with its generated proxies). */
export function meshConfigPaths(): string[] {
  return [CONTROL_PLANE_CONFIG, ...configPaths(SHOP_DIR)];
}

/** Every deployment described by `configPath`: one per `[env.*]`, or the config itself. */
export function deploymentsOf(configPath: string): Deployment[] {
  const raw = parseToml(readFileSync(configPath, "utf8")) as RawConfig;
  const envs = Object.keys(raw.env ?? {});
  return envs.length > 0 ? envs.map((env) => resolveDeployment(configPath, raw, env)) : [resolveDeployment(configPath, raw, undefined)];
}
