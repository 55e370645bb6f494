/**
 * `npm start`: the demo shop (examples/shop/) with Weft in front of it on workerd, locally, no
 * account needed. It boots the shop the way `weft dev` boots a user's project (scripts/shop.ts) and
 * adds what a demo needs: the vendor on its own port, generated demo secrets, a URL table with the
 * shop's pages.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadManifest } from "../cli/manifest/load.ts";
import { startCrons } from "../cli/project/dev.ts";
import { ACCESS_LOG_PREFIX, demoConfig, loadProjectSecrets, parseSecretsEnv, ROLLOUT_LOG_PREFIX, ROOT, SHOP_DIR, secretNamesOf, secretsFileIn } from "./mesh.ts";
import { SHOP_MANIFEST, startShop, type RunningShop } from "./shop.ts";

const HELP = `Usage: npm start [-- options]

Boots the demo shop (examples/shop) with Weft in front of it on workerd (Miniflare), as
\`weft dev\` boots a project: its own wrangler configs, one proxy per service, the control plane; and
its outside party, the vendor, on a port of its own.

Options:
  --reset       delete local state (.weft/state) before starting: config history, carts, orders
  --no-seed     do not load examples/shop/config/mesh.json into an empty control plane
  --json        print the URLs as one JSON line instead of a table
  -h, --help    show this help

Environment:
  WEFT_PORT          shop port (default 8787)
  WEFT_ADMIN_PORT    control plane port (default 8788)
  WEFT_VENDOR_PORT   demo third-party vendor port (default 8789)
  WEFT_ADMIN_TOKEN   admin token (default: generated once, kept in .weft/admin-token)
  WEFT_DEBUG_HEADERS "false" runs the proxies exactly as deployed, without x-weft-* response headers
                     (default "true": x-weft-backend, x-weft-route, … added; the request path is the same)
  WEFT_ACCESS_LOG    proxies' access log: all (default here), errors (deployed default), sample:0.01, off
  <SECRET NAME>      a vendor secret the mesh config names (e.g. STRIPE_WEBHOOK_SECRET); wins over
                     the same name in .weft/secrets.env (NAME=value lines; demo values generated once)
`;

const { values: args } = parseArgs({
  options: {
    reset: { type: "boolean", default: false },
    "no-seed": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const stateDir = path.join(ROOT, ".weft");
const persistTo = path.join(stateDir, "state");
const tokenFile = path.join(stateDir, "admin-token");
/** Where the CLI (`npx weft`) finds this mesh's control plane without flags. */
const urlFile = path.join(stateDir, "admin-url");
const accessLogPath = path.join(stateDir, "access.log");
/** npm start's vendor secrets, beside its other local state (the CLI run from here finds them too). */
const SECRETS_FILE = secretsFileIn(ROOT);
const log = (line: string): void => {
  if (!args.json) process.stdout.write(`${line}\n`);
};

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    process.stderr.write(`${name} must be a port number (1-65535), got '${raw ?? ""}'\n`);
    process.exit(2);
  }
  return value;
}

function adminToken(): { token: string; source: string } {
  const fromEnv = process.env.WEFT_ADMIN_TOKEN;
  if (fromEnv) return { token: fromEnv, source: "WEFT_ADMIN_TOKEN" };
  if (existsSync(tokenFile)) return { token: readFileSync(tokenFile, "utf8").trim(), source: ".weft/admin-token" };
  const token = randomBytes(24).toString("base64url");
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  return { token, source: ".weft/admin-token (generated)" };
}

/**
 * Demo values for the secrets the demo config names, generated once into .weft/secrets.env (like
 * the admin token), so `npm start` works without setting any. Existing lines are never changed.
 */
const DEMO_SECRETS: Record<string, () => string> = {
  // A Stripe endpoint secret has this shape; sign test events with it (README, "Webhooks").
  STRIPE_WEBHOOK_SECRET: () => `whsec_${randomBytes(24).toString("base64url")}`,
  // The demo vendor's notifications API key (README, "Vendor credentials").
  NOTIFY_API_KEY: () => `demo_${randomBytes(18).toString("base64url")}`,
};

function localSecrets(): { secrets: Record<string, string>; generated: string[] } {
  const existing = existsSync(SECRETS_FILE) ? parseSecretsEnv(readFileSync(SECRETS_FILE, "utf8")) : {};
  const generated = Object.keys(DEMO_SECRETS).filter((name) => existing[name] === undefined && !process.env[name]);
  if (generated.length > 0) {
    const header = existsSync(SECRETS_FILE) ? "" : "# Vendor secrets for the local mesh: NAME=value, one per line. Environment variables of the same name win.\n";
    appendFileSync(SECRETS_FILE, header + generated.map((name) => `${name}=${DEMO_SECRETS[name]?.() ?? ""}\n`).join(""), { mode: 0o600 });
    chmodSync(SECRETS_FILE, 0o600);
  }
  const names = [...Object.keys(DEMO_SECRETS), ...secretNamesOf(JSON.parse(readFileSync(path.join(SHOP_DIR, "config", "mesh.json"), "utf8")))];
  return { secrets: loadProjectSecrets(ROOT, names), generated };
}

async function seed(adminUrl: string, vendorUrl: string, token: string): Promise<string> {
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const current = await fetch(`${adminUrl}/admin/config`, { headers, signal: AbortSignal.timeout(10_000) });
  const { version } = (await current.json()) as { version: number };
  if (version > 0) return `config version ${version} (kept from the last run)`;
  const body = demoConfig(vendorUrl);
  const put = await fetch(`${adminUrl}/admin/config`, {
    method: "PUT",
    // If-Match: the version just read (0), so a config written meanwhile is never overwritten.
    headers: { ...headers, "if-match": `"${version}"`, "x-weft-reason": "seeded from examples/shop/config/mesh.json by npm start" },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  if (!put.ok) throw new Error(`seeding examples/shop/config/mesh.json failed: ${put.status} ${await put.text()}`);
  const result = (await put.json()) as { version: number };
  return `config version ${result.version} (seeded from examples/shop/config/mesh.json)`;
}

async function main(): Promise<void> {
  const shopPort = port("WEFT_PORT", 8787);
  const adminPort = port("WEFT_ADMIN_PORT", 8788);
  const vendorPort = port("WEFT_VENDOR_PORT", 8789);
  mkdirSync(stateDir, { recursive: true });
  if (args.reset) {
    rmSync(persistTo, { recursive: true, force: true });
    log("Local state reset.");
  }
  const { token, source } = adminToken();
  const vendorSecrets = localSecrets();

  // Registered before workerd starts so Ctrl-C always stops it cleanly (Miniflare's own exit hook
  // would otherwise kill the process without disposing).
  const running: { mesh?: RunningShop } = {};
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log(`\n${signal}: stopping workerd (local state stays in .weft/state)…`);
    (running.mesh ? running.mesh.dispose() : Promise.resolve())
      .then(() => {
        log("Stopped.");
        process.exit(0);
      })
      .catch((error: unknown) => {
        process.stderr.write(`error while stopping: ${String(error)}\n`);
        process.exit(1);
      });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  log("Bundling workers and starting workerd…");
  const started = Date.now();
  // Access lines (one per proxied request) go to a file to tail or grep; everything else to the terminal.
  const accessLog = createWriteStream(accessLogPath, { flags: "a" });
  const mesh = await startShop({
    port: shopPort,
    adminPort,
    vendorPort,
    adminToken: token,
    persistTo,
    // `WEFT_DEBUG_HEADERS=false npm start` runs the proxies exactly as deployed (no x-weft-* response headers).
    debugHeaders: process.env.WEFT_DEBUG_HEADERS !== "false",
    accessLog: process.env.WEFT_ACCESS_LOG ?? "all",
    secrets: vendorSecrets.secrets,
    onLog: (line) => {
      if (line.message.startsWith(ACCESS_LOG_PREFIX)) accessLog.write(`${line.message}\n`);
      else if (line.message.startsWith(ROLLOUT_LOG_PREFIX)) {
        // Rollout events go beside the access lines, and as one readable line to the terminal.
        accessLog.write(`${line.message}\n`);
        process.stdout.write(`${rolloutLine(line.message)}\n`);
      } else (line.level === "error" || line.level === "warn" ? process.stderr : process.stdout).write(`${line.message}\n`);
    },
  });
  const vendorUrl = mesh.vendorUrl;
  running.mesh = mesh;
  const configState = args["no-seed"] ? "not seeded (--no-seed)" : await seed(mesh.adminUrl, vendorUrl, token);
  // workerd does not run cron triggers; the proxies' run every minute here, as on Cloudflare.
  startCrons(mesh, loadManifest(SHOP_MANIFEST, SHOP_DIR).manifest, new AbortController().signal);
  writeFileSync(urlFile, `${mesh.adminUrl}\n`);

  if (args.json) {
    process.stdout.write(
      `${JSON.stringify({ shop: mesh.shopUrl, admin: mesh.adminUrl, dashboard: `${mesh.adminUrl}/`, metrics: `${mesh.adminUrl}/metrics`, vendor: vendorUrl, jwks: `${mesh.adminUrl}/.well-known/jwks.json`, accessLog: accessLogPath, tokenSource: source, state: persistTo, workers: [...mesh.workers.map((w) => w.name), "weft-vendor"] })}\n`,
    );
  } else {
    const rows: Array<[string, string]> = [
      ["Shop", `${mesh.shopUrl}/`],
      ["  products (pim)", `${mesh.shopUrl}/products/sku-1`],
      ["  cart", `${mesh.shopUrl}/cart/{cartId}`],
      ["  orders", `${mesh.shopUrl}/orders`],
      ["Dashboard", `${mesh.adminUrl}/   (sign in with the admin token)`],
      ["Admin API", `${mesh.adminUrl}/admin/services`],
      ["Metrics", `${mesh.adminUrl}/metrics   (Prometheus; ${mesh.adminUrl}/admin/metrics?service=pim&window=60)`],
      ["Live tap", `${mesh.adminUrl}/admin/tap?service=pim   (server-sent events)`],
      ["Access log", `${path.relative(process.cwd(), accessLogPath) || accessLogPath}   (one JSON line per proxied request)`],
      ["JWKS", `${mesh.adminUrl}/.well-known/jwks.json`],
      ["Demo vendor", `${vendorUrl}/pim/products/sku-1  ${vendorUrl}/notify/received`],
      [
        "Vendor secrets",
        `${path.relative(process.cwd(), SECRETS_FILE) || SECRETS_FILE}   (${Object.keys(vendorSecrets.secrets).join(", ") || "none"}${vendorSecrets.generated.length > 0 ? `; generated ${vendorSecrets.generated.join(", ")}` : ""})`,
      ],
      ["Admin token", source === "WEFT_ADMIN_TOKEN" ? "(from WEFT_ADMIN_TOKEN)" : `${token}   (${source})`],
      ["Config", configState],
      ["State", `${path.relative(process.cwd(), persistTo) || persistTo}   (reset: npm start -- --reset)`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    log(`\nWeft is running on workerd (${mesh.workers.length} workers and the vendor, ready in ${Date.now() - started} ms)\n`);
    for (const [key, value] of rows) log(`  ${key.padEnd(width)}   ${value}`);
    log(`\nThe shop's service bindings, through the mesh (rewired in memory; its wrangler configs are unchanged):`);
    for (const line of mesh.rewired) log(`  ${line}`);
    log(`\nTry:\n  curl -i ${mesh.shopUrl}/products/sku-1`);
    log(`  curl -H "Authorization: Bearer <token>" ${mesh.adminUrl}/admin/services`);
    log(`  npx weft status            (the CLI finds this mesh and its token by itself; npx weft --help)`);
    log(`\nPress Ctrl-C to stop.`);
  }

}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`weft: could not start: ${message}\n`);
  if (/EADDRINUSE|address in use/i.test(message)) {
    process.stderr.write("A port is taken: stop the other process or set WEFT_PORT / WEFT_ADMIN_PORT.\n");
  }
  process.exit(1);
});

/** `rollout pim-1 [progressing] step 1 of 2: pim-v2 at 20%` from a rollout event line. */
function rolloutLine(message: string): string {
  try {
    const event = JSON.parse(message) as { rollout?: string; state?: string; message?: string };
    return `rollout ${event.rollout ?? "?"} [${event.state ?? "?"}] ${event.message ?? ""}`;
  } catch {
    return message;
  }
}
