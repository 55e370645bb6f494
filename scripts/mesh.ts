/**
 * Runs the whole mesh on workerd through Miniflare, from the same wrangler configs that deploy it:
 * every worker, every `[env.*]` instance, service bindings with their `props`, Durable Objects and
 * public routes. `npm start`, the end-to-end tests and the benchmark all boot the mesh through here.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type * as MiniflareModule from "miniflare";
import type { Miniflare, V4WorkerOptions as WorkerOptions } from "miniflare";
import { configPaths, CONTROL_PLANE_CONFIG, deploymentsOf, meshConfigPaths, ROOT, SHOP_DIR, SHOP_PROXY_CONFIG, type Deployment } from "./deployments.ts";

export { configPaths, CONTROL_PLANE_CONFIG, deploymentsOf, meshConfigPaths, ROOT, SHOP_DIR, SHOP_PROXY_CONFIG, type Deployment };
export { loadProjectSecrets, parseSecretsEnv, secretNamesOf, secretsFileIn } from "./secrets.ts";

/**
 * Miniflare, imported when a command first boots workerd: loading it takes about 0.8 s, which every
 * `weft` command (status, split, tap…) would otherwise pay before doing anything.
 */
export async function loadMiniflare(): Promise<typeof MiniflareModule> {
  return import("miniflare");
}

/** Bundles each distinct entry module once (a proxy's code is shared by all its instances). */
export async function bundleMains(mains: string[]): Promise<Map<string, string>> {
  const unique = [...new Set(mains)];
  const esbuild = await import("esbuild");
  const outputs = await Promise.all(
    unique.map((entry) =>
      esbuild.build({
        entryPoints: [entry],
        bundle: true,
        format: "esm",
        platform: "neutral",
        target: "es2023",
        conditions: ["workerd", "worker", "browser"],
        mainFields: ["browser", "module", "main"],
        external: ["cloudflare:*", "node:*"],
        // As wrangler's default module rules: HTML imports are text.
        loader: { ".html": "text" },
        write: false,
        logLevel: "error",
      }),
    ),
  );
  return new Map(unique.map((entry, i) => [entry, outputs[i]?.outputFiles[0]?.text ?? ""]));
}

/** Production route patterns (`shop.example.com/products/*`) bound to every local hostname. */
export function localRoute(pattern: string): string {
  const slash = pattern.indexOf("/");
  return slash < 0 ? "*/*" : `*${pattern.slice(slash)}`;
}

/** Options for {@link workerOptions}. */
export interface LocalOverrides {
  /** Vars set on every worker (e.g. WEFT_ENV=development). */
  vars?: Record<string, string>;
  /** Values for the secrets the configs require. */
  secrets?: Record<string, string>;
}

/** Miniflare options for one deployment. */
export function workerOptions(
  deployment: Deployment,
  code: string,
  all: Deployment[],
  overrides: LocalOverrides = {},
): WorkerOptions {
  const sqliteClassesOf = (scriptName: string | undefined): string[] =>
    scriptName ? (all.find((d) => d.name === scriptName)?.sqliteClasses ?? []) : deployment.sqliteClasses;
  const secrets = Object.fromEntries(
    deployment.secrets.flatMap((name) => (overrides.secrets?.[name] !== undefined ? [[name, overrides.secrets[name]]] : [])),
  );
  return {
    name: deployment.name,
    // Module names are taken relative to modulesRoot; the repository root works from any cwd.
    modulesRoot: ROOT,
    modules: [{ type: "ESModule", path: deployment.main.replace(/\.ts$/, ".js"), contents: code }],
    compatibilityDate: deployment.compatibilityDate,
    compatibilityFlags: deployment.compatibilityFlags,
    routes: deployment.routes.map(localRoute),
    bindings: {
      ...deployment.vars,
      ...Object.fromEntries(Object.entries(overrides.vars ?? {}).filter(([k]) => k in deployment.vars)),
      ...secrets,
    },
    serviceBindings: Object.fromEntries(
      deployment.services.map((s) => [s.binding, { name: s.service, ...(s.entrypoint ? { entrypoint: s.entrypoint } : {}), ...(s.props ? { props: s.props } : {}) }]),
    ),
    durableObjects: Object.fromEntries(
      deployment.durableObjects.map((d) => [
        d.name,
        {
          className: d.class_name,
          ...(d.script_name ? { scriptName: d.script_name } : {}),
          useSQLite: sqliteClassesOf(d.script_name).includes(d.class_name),
        },
      ]),
    ),
  };
}

/** The demo's outside party (vendor PIM and notifications provider), run beside the mesh. */
export const VENDOR_CONFIG = path.join(SHOP_DIR, "vendor", "wrangler.toml");
/** The vendor's URL as written in the shop's config/mesh.json; {@link demoConfig} points it at the real one. */
const DEMO_VENDOR_URL = "http://127.0.0.1:8789";

/** The demo shop's mesh config (examples/shop/config/mesh.json) with external origins pointed at `vendorUrl`. */
export function demoConfig(vendorUrl: string): string {
  return readFileSync(path.join(SHOP_DIR, "config", "mesh.json"), "utf8").replaceAll(DEMO_VENDOR_URL, vendorUrl);
}

/** A free TCP port on loopback (for tests, where URLs must be known before workerd starts). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** What {@link startMesh} needs. */
export interface MeshOptions {
  port: number;
  /** Control plane port (0: a free one). */
  adminPort: number;
  host?: string;
  adminToken: string;
  /** Directory for Durable Object state; omit for in-memory state. */
  persistTo?: string;
  /** Extra workers (test fixtures, benchmark workers) booted alongside the mesh. */
  extraWorkers?: WorkerOptions[];
  overrides?: Omit<LocalOverrides, "secrets">;
  /** Per-deployment direct sockets (ports), e.g. to reach one proxy without the route layer. */
  directPorts?: Record<string, number>;
  /** The workers to boot (the control plane among them, from CONTROL_PLANE_CONFIG). */
  deployments: Deployment[];
  /** Receives every console line of every worker (access logs included) instead of the terminal. */
  onLog?: (log: WorkerLog) => void;
  /**
   * Debug response headers on the proxies (default true locally). They only add headers; the
   * request path is the deployed one either way.
   */
  debugHeaders?: boolean;
  /** The proxies' access log mode (default `all` locally; deployed proxies log `errors`). */
  accessLog?: string;
  /** Open workerd's inspector (CPU profiles, debugger) on this port: `ws://host:port/core:user:<worker>`. */
  inspectorPort?: number;
  /**
   * Vendor secrets (`NAME` → value) bound to every proxy as its secrets, as `wrangler secret put`
   * does in production; workers that declare one of these names as a required secret get it too.
   */
  secrets?: Record<string, string>;
}

/**
 * The vars a local mesh sets on the control plane and the proxies (where they declare them): the
 * development environment, debug headers (they only add headers; the request path is the deployed
 * one), the access log mode, and the local control plane as token issuer and JWKS.
 */
export function localMeshVars(options: { issuer: string; debugHeaders?: boolean; accessLog?: string }): Record<string, string> {
  return {
    WEFT_ENV: "development",
    WEFT_DEBUG_HEADERS: options.debugHeaders === false ? "false" : "true",
    WEFT_ACCESS_LOG: options.accessLog ?? "all",
    WEFT_PUBLIC_URL: options.issuer,
    WEFT_ISSUER: options.issuer,
    WEFT_JWKS_URL: `${options.issuer}/.well-known/jwks.json`,
  };
}

/** Whether a deployment runs the Weft proxy (which holds the vendor secrets). */
function isProxy(deployment: Deployment): boolean {
  return path.resolve(deployment.main) === path.join(ROOT, "workers", "proxy", "index.ts");
}

/** One console line of a worker, as workerd reports it. */
export interface WorkerLog {
  level: string;
  message: string;
}

/** How every proxy access log line starts (workers/proxy/telemetry.ts writes them). */
export const ACCESS_LOG_PREFIX = '{"type":"weft.access"';

/** How every rollout event line starts (durable-objects/rollout-store.ts writes them). */
export const ROLLOUT_LOG_PREFIX = '{"type":"weft.rollout"';

/** A proxy's access log line, parsed; undefined for other lines. */
export function accessLogOf(message: string): Record<string, unknown> | undefined {
  if (!message.startsWith(ACCESS_LOG_PREFIX)) return undefined;
  try {
    const parsed: unknown = JSON.parse(message);
    return typeof parsed === "object" && parsed !== null ? Object.fromEntries(Object.entries(parsed)) : undefined;
  } catch {
    return undefined;
  }
}

/** A running local mesh. */
export interface RunningMesh {
  mf: Miniflare;
  shopUrl: string;
  adminUrl: string;
  deployments: Deployment[];
  dispose(): Promise<void>;
}

/** The control plane is the deployment from the root wrangler.toml. */
function isControlPlane(deployment: Deployment): boolean {
  return deployment.configPath === CONTROL_PLANE_CONFIG;
}

/**
 * Boots the given deployments on workerd: the benchmarks' runner (their own workers, the control
 * plane, proxies from a generated proxy config). A project, the demo shop included, boots with
 * `weft dev`'s engine instead (scripts/shop.ts).
 */
export async function startMesh(options: MeshOptions): Promise<RunningMesh> {
  const host = options.host ?? "127.0.0.1";
  const deployments = options.deployments;
  const directPorts: Record<string, number> = { ...options.directPorts };
  const issuer = `http://${host}:${options.adminPort}`;
  const code = await bundleMains(deployments.map((d) => d.main));
  const overrides: LocalOverrides = {
    ...options.overrides,
    vars: { ...localMeshVars({ issuer, debugHeaders: options.debugHeaders, accessLog: options.accessLog }), ...options.overrides?.vars },
    secrets: { ...options.secrets, WEFT_ADMIN_TOKEN: options.adminToken },
  };
  const workers: WorkerOptions[] = deployments.map((d) => {
    const base = workerOptions(d, code.get(d.main) ?? "", deployments, overrides);
    const opts = isProxy(d) && options.secrets ? { ...base, bindings: { ...base.bindings, ...options.secrets } } : base;
    const sockets = [
      ...(isControlPlane(d) ? [{ host, port: options.adminPort }] : []),
      ...(directPorts[d.name] !== undefined ? [{ host, port: directPorts[d.name] }] : []),
    ];
    return sockets.length > 0 ? { ...opts, unsafeDirectSockets: sockets } : opts;
  });
  // Miniflare 5 (the one wrangler ships) still accepts the v4 option shape through this converter;
  // the v4 shape maps one-to-one onto wrangler config, which is what we read.
  const { Miniflare, convertV4MiniflareOptions } = await loadMiniflare();
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host,
      port: options.port,
      ...(options.persistTo ? { resourcePersistencePath: options.persistTo } : {}),
      ...(options.inspectorPort !== undefined ? { inspectorPort: options.inspectorPort } : {}),
      ...(options.onLog ? { handleStructuredLogs: options.onLog } : {}),
      workers: [...workers, ...(options.extraWorkers ?? [])],
    }),
  );
  const shopUrl = (await mf.ready).origin;
  const controlPlane = deployments.find((d) => isControlPlane(d));
  const adminUrl = controlPlane ? (await mf.unsafeGetDirectURL(controlPlane.name)).origin : "";
  return {
    mf,
    shopUrl,
    adminUrl,
    deployments,
    dispose: () => mf.dispose(),
  };
}
