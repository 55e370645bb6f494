/**
 * Boots the demo shop as `weft dev` boots a project (scripts/shop.ts: its manifest, its own wrangler
 * configs, a proxy per service, the control plane) plus the test fixtures, on workerd with in-memory
 * state, and seeds it with the demo config and a test-only echo service.
 */
import path from "node:path";
import type { V4WorkerOptions as WorkerOptions } from "miniflare";
import { accessLogOf, bundleMains, demoConfig, deploymentsOf, freePort, localMeshVars, ROOT, workerOptions } from "../../scripts/mesh.ts";
import { startShop, type RunningShop } from "../../scripts/shop.ts";
import type { MeshConfigInput } from "../../shared/config.ts";

export const TOKEN = "mesh-test-token";

export const ECHO_SERVICE = {
  name: "echo",
  backends: [
    { name: "echo-a", type: "worker", binding: "ECHO_A" },
    { name: "echo-b", type: "worker", binding: "ECHO_B" },
  ],
  routes: [
    { name: "sticky", match: { path: "/echo/sticky/*" }, split: { weights: { "echo-a": 100, "echo-b": 0 }, sticky: "header:x-shopper" } },
    { name: "all", match: { path: "/echo/*" }, split: { weights: { "echo-a": 100, "echo-b": 0 } } },
  ],
} satisfies MeshConfigInput["services"][number];

/**
 * A service whose only backend is the echo service, reached through echo's proxy (a `mesh`
 * backend, test/fixtures/mesh-fixture/proxy.wrangler.toml): what it relays keeps its origin
 * (issue 14). Seed it with {@link RELAYED_ECHO_SERVICE}, which serves what it relays.
 */
export const RELAY_SERVICE = {
  name: "relay",
  backends: [{ name: "echo", type: "mesh", service: "echo", binding: "ECHO_MESH" }],
  routes: [{ name: "all", match: { path: "/relay/*" }, split: { weights: { echo: 100 } } }],
} satisfies MeshConfigInput["services"][number];

/** The echo service with a route for the requests {@link RELAY_SERVICE} relays (/relay/*). */
export const RELAYED_ECHO_SERVICE = {
  ...ECHO_SERVICE,
  routes: [...ECHO_SERVICE.routes, { name: "relayed", match: { path: "/relay/*" }, split: { weights: { "echo-a": 100, "echo-b": 0 } } }],
} satisfies MeshConfigInput["services"][number];

/** What the test fixture's echo backend answers: which backend it is and the request it received. */
export interface EchoReply {
  backend: string;
  method: string;
  /** The Host the backend saw (URL authority), and the query string with its `?`. */
  host: string;
  path: string;
  query: string;
  headers: Record<string, string>;
}

export interface TestMesh {
  mesh: RunningShop;
  adminPort: number;
  vendorPort: number;
  shop: string;
  admin: string;
  vendor: string;
  /** Calls the admin API with the token. */
  adminFetch(route: string, init?: RequestInit): Promise<Response>;
  /** Access log lines the proxies wrote so far (parsed), oldest first. */
  accessLogs: Array<Record<string, unknown>>;
  /** Every console line of every worker so far (access lines included), for redaction checks. */
  logLines: string[];
  /** Fires a worker's cron trigger (as Cloudflare does every minute); resolves when its handler ends. */
  cron(worker: string): Promise<void>;
  /** The fixture that stands between the echo proxy and the control plane. */
  link(action: "up" | "down" | "hang"): Promise<void>;
  dispose(): Promise<void>;
}

/** Options for {@link bootTestMesh}. */
export interface TestMeshOptions {
  /** Proxy vars to override, e.g. WEFT_OTLP_ENDPOINT or WEFT_TRACE_SAMPLE_RATE. */
  vars?: Record<string, string>;
  /** Keep Durable Object state in this directory (to boot the same mesh again after a restart). */
  persistTo?: string;
  /** Seed the demo config (default true); a mesh booted again from persisted state already has it. */
  seed?: boolean;
  /**
   * Debug response headers on the proxies (default true). Off, the proxies run exactly as deployed:
   * tests then learn backends, attempts and config versions from the access log.
   */
  debugHeaders?: boolean;
  /** Control plane port to reuse (a restarted mesh keeps its issuer URL). */
  adminPort?: number;
  vendorPort?: number;
  /** The test services seeded after the demo's (default: the echo service). */
  services?: MeshConfigInput["services"];
  /** Vendor secrets bound to every proxy (default {@link TEST_SECRETS}). */
  secrets?: Record<string, string>;
}

/** The vendor secrets test meshes run with: the ones the demo config names. */
export const TEST_SECRETS: Record<string, string> = {
  STRIPE_WEBHOOK_SECRET: "whsec_mesh_test_7f3a9c",
  NOTIFY_API_KEY: "mesh-test-notify-key",
};

export async function bootTestMesh(options: TestMeshOptions = {}): Promise<TestMesh> {
  // Tokens name the control plane's URL as issuer, so its port is chosen before workerd starts.
  const adminPort = options.adminPort ?? (await freePort());
  const vendorPort = options.vendorPort ?? (await freePort());
  const vars = { WEFT_KEY_ACTIVATION_SECONDS: "2", WEFT_TRACE_SAMPLE_RATE: "0", ...options.vars };
  const secrets = options.secrets ?? TEST_SECRETS;
  const accessLogs: Array<Record<string, unknown>> = [];
  const logLines: string[] = [];
  const mesh = await startShop({
    port: 0,
    adminPort,
    vendorPort,
    adminToken: TOKEN,
    secrets,
    ...(options.persistTo ? { persistTo: options.persistTo } : {}),
    ...(options.debugHeaders === false ? { debugHeaders: false } : {}),
    vars,
    extraWorkers: await fixtureWorkers({ issuer: `http://127.0.0.1:${adminPort}`, debugHeaders: options.debugHeaders, vars, secrets }),
    onLog: (log) => {
      logLines.push(log.message);
      const access = accessLogOf(log.message);
      if (access) accessLogs.push(access);
      else process.stderr.write(`${log.message}\n`);
    },
  });
  const linkUrl = (await mesh.mf.unsafeGetDirectURL("weft-test-link")).origin;
  const adminFetch = (route: string, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${TOKEN}`);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    return fetch(`${mesh.adminUrl}${route}`, { ...init, headers, signal: AbortSignal.timeout(10_000) });
  };
  if (options.seed ?? true) {
    const demo = JSON.parse(demoConfig(mesh.vendorUrl ?? "")) as MeshConfigInput;
    const seeded = await adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: [...demo.services, ...(options.services ?? [ECHO_SERVICE])] }) });
    if (!seeded.ok) throw new Error(`seeding failed: ${seeded.status} ${await seeded.text()}`);
  }
  return {
    mesh,
    adminPort,
    vendorPort,
    shop: mesh.shopUrl,
    admin: mesh.adminUrl,
    vendor: mesh.vendorUrl ?? "",
    adminFetch,
    accessLogs,
    logLines,
    async cron(worker) {
      const fetcher = await mesh.mf.getWorker(worker);
      const result = await fetcher.scheduled({ cron: "* * * * *" });
      if (result.outcome !== "ok") throw new Error(`${worker} cron handler ended with ${result.outcome}`);
    },
    async link(action) {
      const res = await fetch(`${linkUrl}/link/${action}`, { method: "POST" });
      if (!res.ok) throw new Error(`link ${action} failed`);
    },
    dispose: () => mesh.dispose(),
  };
}

/** Workers with a direct port of their own (tests reach them without the route layer). */
const DIRECT = new Set(["weft-test-link", "weft-test-echo-b", "weft-test-echo-c"]);

/**
 * The test fixtures beside the shop (test/fixtures/mesh-fixture): the echo backends, the link that
 * stands between echo's proxy and the control plane, and the echo and relay proxies, which run Weft's
 * proxy code with the local settings the shop's proxies get.
 */
async function fixtureWorkers(options: { issuer: string; debugHeaders: boolean | undefined; vars: Record<string, string>; secrets: Record<string, string> }): Promise<WorkerOptions[]> {
  const fixtures = path.join(ROOT, "test", "fixtures", "mesh-fixture");
  const deployments = [...deploymentsOf(path.join(fixtures, "wrangler.toml")), ...deploymentsOf(path.join(fixtures, "proxy.wrangler.toml"))];
  const code = await bundleMains(deployments.map((d) => d.main));
  const vars = { ...localMeshVars({ issuer: options.issuer, ...(options.debugHeaders === false ? { debugHeaders: false } : {}) }), ...options.vars };
  const proxyMain = path.join(ROOT, "workers", "proxy", "index.ts");
  return deployments.map((d) => {
    const base = workerOptions(d, code.get(d.main) ?? "", deployments, { vars, secrets: options.secrets });
    // Proxies hold the vendor secrets, as the shop's do.
    const worker = path.resolve(d.main) === proxyMain ? { ...base, bindings: { ...base.bindings, ...options.secrets } } : base;
    return DIRECT.has(d.name) ? { ...worker, unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : worker;
  });
}

/** Sets a split through the admin API and fails loudly if it is refused. */
export async function setSplit(t: TestMesh, service: string, weights: Record<string, number>, route?: string): Promise<number> {
  const res = await t.adminFetch(`/admin/services/${service}/split${route ? `?route=${route}` : ""}`, {
    method: "PUT",
    body: JSON.stringify({ weights }),
  });
  if (res.status !== 200) throw new Error(`split refused: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { version: number }).version;
}

/** Polls until `check` passes or `ms` elapse; returns the elapsed time. */
export async function waitFor(check: () => Promise<boolean>, ms: number, every = 25): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (await check()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, every));
  }
  throw new Error(`condition not met within ${ms} ms`);
}

/** Waits until an access line of `service` shows it served config `version` or newer, sending `path` meanwhile. */
export async function servedVersion(t: TestMesh, service: string, path: string, version: number, ms = 8_000): Promise<void> {
  await waitFor(async () => {
    await (await fetch(`${t.shop}${path}`)).body?.cancel();
    return t.accessLogs.some((l) => l.service === service && Number(l.configVersion) >= version);
  }, ms, 100);
}

/** The access line of the one request whose path starts with `path` (waits for its batch). */
export async function accessLineOf(t: TestMesh, path: string): Promise<Record<string, unknown>> {
  await waitFor(async () => t.accessLogs.some((l) => String(l.path).startsWith(path)), 10_000, 50);
  const line = t.accessLogs.find((l) => String(l.path).startsWith(path));
  if (!line) throw new Error(`no access line for ${path}`);
  return line;
}

/** A cart of the demo shop: its public id and the `cart-token` header every call on it carries. */
export interface ShopCart {
  cartId: string;
  headers: Record<string, string>;
}

/** Opens a new cart through the shop's public cart API (`POST /cart/new`), as a shopper would. */
export async function newCart(t: TestMesh): Promise<ShopCart> {
  const res = await fetch(`${t.shop}/cart/new`, { method: "POST", signal: AbortSignal.timeout(10_000) });
  if (res.status !== 201) throw new Error(`opening a cart failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { cartId: string; cartToken: string };
  return { cartId: body.cartId, headers: { "cart-token": body.cartToken } };
}

/**
 * Every stored order, asked of the orders service itself: the list is closed to the internet by
 * the demo's policy, so a test reads it the way an internal caller would.
 */
export async function listOrders(t: TestMesh): Promise<Array<{ orderId: string }>> {
  const orders = await t.mesh.mf.getWorker("weft-orders");
  const res = await orders.fetch("https://orders.mesh/orders");
  if (res.status !== 200) throw new Error(`listing orders failed: ${res.status}`);
  return ((await res.json()) as { orders: Array<{ orderId: string }> }).orders;
}
