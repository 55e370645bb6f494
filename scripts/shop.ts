/**
 * The demo shop (examples/shop/) booted the way a user's project boots: `weft dev`'s engine
 * (cli/project/dev.ts) reads the shop's manifest and its own wrangler configs, puts a proxy in front
 * of every service and rewires the shop's service bindings through them in memory. The shop's
 * outside party, the vendor (an external PIM and a notifications provider), runs beside it on a
 * port of its own, as a third party would: the mesh reaches it only by URL.
 *
 * `npm start`, the end-to-end tests and the views benchmark all boot the shop through here.
 */
import path from "node:path";
import type { V4WorkerOptions as WorkerOptions } from "miniflare";
import type { Miniflare } from "miniflare";
import { loadManifest } from "../cli/manifest/load.ts";
import { MANIFEST_FILE } from "../cli/manifest/schema.ts";
import { startProject, type BootedWorker } from "../cli/project/dev.ts";
import { loadWrangler } from "../cli/project/workers.ts";
import { bundleMains, deploymentsOf, localMeshVars, SHOP_DIR, VENDOR_CONFIG, workerOptions, type WorkerLog } from "./mesh.ts";

/** The shop's manifest. */
export const SHOP_MANIFEST = path.join(SHOP_DIR, MANIFEST_FILE);

/** The vendor's worker name (examples/shop/vendor/wrangler.toml). */
export const VENDOR_WORKER = "weft-vendor";

/** What {@link startShop} needs. */
export interface ShopOptions {
  host?: string;
  /** The public entry (the shop); 0 picks a free port. */
  port: number;
  /** The control plane; a real port (not 0), since egress tokens name it as issuer. */
  adminPort: number;
  /** The vendor's port; a real port when the config names the vendor's URL. */
  vendorPort: number;
  adminToken: string;
  /** Local data (Miniflare's persistence root); omitted: in memory. */
  persistTo?: string;
  /** Vendor secrets: bound to every proxy (as `wrangler secret put`), and to the vendor where it requires them. */
  secrets?: Readonly<Record<string, string>>;
  /** Debug response headers (default true); they only add headers, the request path is the deployed one. */
  debugHeaders?: boolean;
  /** The proxies' access log mode (default `all`). */
  accessLog?: string;
  /** Vars over the local ones on the control plane and the proxies. */
  vars?: Readonly<Record<string, string>>;
  /** More workers beside the shop (test fixtures). */
  extraWorkers?: WorkerOptions[];
  onLog?: (log: WorkerLog) => void;
}

/** The running shop. */
export interface RunningShop {
  mf: Miniflare;
  shopUrl: string;
  adminUrl: string;
  vendorUrl: string;
  /** What was booted, from which config (control plane, proxies, the shop's workers). */
  workers: BootedWorker[];
  /** The shop's service bindings as rewired through the proxies. */
  rewired: string[];
  dispose(): Promise<void>;
}

/** Boots the demo shop with Weft in front of it, and its vendor. */
export async function startShop(options: ShopOptions): Promise<RunningShop> {
  const host = options.host ?? "127.0.0.1";
  const [wrangler, vendor] = await Promise.all([loadWrangler(), vendorWorker(options, host)]);
  const running = await startProject({
    loaded: loadManifest(SHOP_MANIFEST, SHOP_DIR),
    wrangler,
    host,
    port: options.port,
    adminPort: options.adminPort,
    adminToken: options.adminToken,
    ...(options.persistTo !== undefined ? { persistTo: options.persistTo } : {}),
    ...(options.secrets ? { secrets: options.secrets } : {}),
    ...(options.vars ? { vars: options.vars } : {}),
    ...(options.onLog ? { onLog: options.onLog } : {}),
    debugHeaders: options.debugHeaders ?? true,
    accessLog: options.accessLog ?? "all",
    extraWorkers: [vendor, ...(options.extraWorkers ?? [])],
  });
  return {
    mf: running.mf,
    shopUrl: running.url,
    adminUrl: running.adminUrl,
    vendorUrl: (await running.mf.unsafeGetDirectURL(VENDOR_WORKER)).origin,
    workers: running.workers,
    rewired: running.rewired,
    dispose: () => running.dispose(),
  };
}

/** The vendor on its own port, trusting this control plane's JWKS. */
async function vendorWorker(options: ShopOptions, host: string): Promise<WorkerOptions> {
  const deployments = deploymentsOf(VENDOR_CONFIG);
  const code = await bundleMains(deployments.map((d) => d.main));
  const [vendor] = deployments;
  if (!vendor) throw new Error(`${VENDOR_CONFIG} deploys no worker`);
  const issuer = `http://${host}:${options.adminPort}`;
  return {
    ...workerOptions(vendor, code.get(vendor.main) ?? "", deployments, { vars: localMeshVars({ issuer }), secrets: { ...options.secrets } }),
    unsafeDirectSockets: [{ host, port: options.vendorPort }],
  };
}
