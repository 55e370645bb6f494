/**
 * `weft dev`: the project's workers behind one Weft proxy per service, with the control plane, on
 * workerd — locally, no account needed. The user's files are never written; Weft keeps its own
 * under `.weft/`.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { flag, stringOption } from "../args.ts";
import type { Command, Context } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { displayPath, findManifest, loadManifest } from "../manifest/load.ts";
import { localStateDir, projectAdminConfig, startCrons, startProject, workersToBoot, type RunningProject } from "../project/dev.ts";
import { loadWrangler, readProjectWorkers } from "../project/workers.ts";
import { ACCESS_LOG_PREFIX, ROLLOUT_LOG_PREFIX } from "../../scripts/mesh.ts";
import { loadProjectSecrets, secretNamesOf, secretsFileIn } from "../../scripts/secrets.ts";
import { MANIFEST_OPTION } from "./generate.ts";

/** A port from the environment (`WEFT_PORT`, `WEFT_ADMIN_PORT`), or the default. */
export function portFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  const value = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw new CliError(EXIT.usage, `${name} must be a port number (0-65535), got '${raw ?? ""}'`);
  return value;
}

/** The admin token: WEFT_ADMIN_TOKEN, else `.weft/admin-token` (generated once, mode 600). */
export function localAdminToken(env: NodeJS.ProcessEnv, stateDir: string): { token: string; source: string } {
  if (env.WEFT_ADMIN_TOKEN) return { token: env.WEFT_ADMIN_TOKEN, source: "WEFT_ADMIN_TOKEN" };
  const file = path.join(stateDir, "admin-token");
  if (existsSync(file)) return { token: readFileSync(file, "utf8").trim(), source: ".weft/admin-token" };
  const token = randomBytes(24).toString("base64url");
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { token, source: ".weft/admin-token (generated)" };
}

async function seed(adminUrl: string, token: string, body: unknown): Promise<{ version: number; seeded: boolean }> {
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const current = await fetch(`${adminUrl}/admin/config`, { headers, signal: AbortSignal.timeout(10_000) });
  const { version } = (await current.json()) as { version: number };
  if (version > 0) return { version, seeded: false };
  const put = await fetch(`${adminUrl}/admin/config`, {
    method: "PUT",
    headers: { ...headers, "if-match": `"${version}"`, "x-weft-reason": "seeded from weft.manifest.json by weft dev" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!put.ok) throw new CliError(EXIT.failed, `loading the manifest's config into the control plane failed: ${put.status} ${await put.text()}`);
  return { version: ((await put.json()) as { version: number }).version, seeded: true };
}

export const devCommand: Command = {
  name: "dev",
  summary: "run your workers behind Weft locally (workerd): one proxy per service and the control plane",
  description: `Boots, on workerd (Miniflare), every worker the manifest names, one Weft proxy per service
and the control plane. Each worker keeps every binding its wrangler config gives it — KV, D1, R2,
Durable Objects, queues, static assets, vars, .dev.vars and .env secrets, compatibility flags — read
with wrangler's own conversion; only the service bindings the manifest's "calls" name are pointed at
the callee's proxy (in memory: your files are not written).

Local data is where wrangler keeps it (.wrangler/state), so data seeded with
\`wrangler kv key put --local\` or \`wrangler d1 execute --local\` is there. An empty control plane
gets the manifest's config; after that, change it with \`weft split\`, \`weft apply\`, the dashboard.

Environment: WEFT_PORT (public entry, default 8787), WEFT_ADMIN_PORT (control plane, default 8788),
WEFT_ADMIN_TOKEN (default: generated once into .weft/admin-token), WEFT_DEBUG_HEADERS=false (no
x-weft-* response headers: exactly the deployed behaviour; debug headers only add headers),
WEFT_ACCESS_LOG (all | errors | sample:0.1 | off; default all, lines go to .weft/access.log).

Vendor secrets — the credentials the proxies present to third parties (an external backend's
"auth.secret") and webhook secrets — are read from .weft/secrets.env (NAME=value lines, like
.dev.vars) and from environment variables of the names the config uses (which win), and bound to
every proxy, as \`wrangler secret put\` does in production. Your workers get one only if their
config requires it (secrets.required). Values are never printed.

A worker backend whose script is the env-resolved name of an [env.X] of a wrangler config here
(e.g. "api-v2" for name = "api" with [env.v2]) is booted from that config with --env X.`,
  options: {
    ...MANIFEST_OPTION,
    "persist-to": { type: "string", value: "<dir>", description: "where local data is (default: the .wrangler/state wrangler uses)" },
    "no-seed": { type: "boolean", description: "do not load the manifest's config into an empty control plane" },
  },
  examples: ["npx weft dev", "WEFT_PORT=9000 npx weft dev", "npx weft dev --json"],
  run: async (ctx) => runDev(ctx),
};

async function runDev(ctx: Context): Promise<number> {
  const started = Date.now();
  const loaded = loadManifest(findManifest(stringOption(ctx.args, "file"), ctx.cwd, ctx.root), ctx.cwd);
  const projectDir = loaded.dir;
  const stateDir = path.join(projectDir, ".weft");
  mkdirSync(stateDir, { recursive: true });
  const host = "127.0.0.1";
  const port = portFrom(ctx.env, "WEFT_PORT", 8787);
  const adminPort = portFrom(ctx.env, "WEFT_ADMIN_PORT", 8788);
  const { token, source } = localAdminToken(ctx.env, stateDir);
  const wrangler = await loadWrangler().catch((error: unknown) => {
    throw new CliError(EXIT.failed, error instanceof Error ? error.message : String(error));
  });
  const progress = (line: string): void => ctx.out.note(ctx.out.paintErr("dim", line));
  progress(`Reading ${loaded.display} and the wrangler configs it names…`);
  const explicitPersist = stringOption(ctx.args, "persist-to");
  const { workers: project } = readProjectWorkers(wrangler, projectDir);
  const state = explicitPersist ? { dir: path.resolve(ctx.cwd, explicitPersist), others: [] } : localStateDir(projectDir, workersToBoot(loaded.manifest, project).workers);
  // Vendor secrets for the proxies' egress credentials and webhooks, as `wrangler secret put` gives
  // them in production: the project's .weft/secrets.env, environment variables of the names the
  // config uses winning. Only their names are ever printed.
  const secretsFile = secretsFileIn(projectDir);
  const secretNames = secretNamesOf(projectAdminConfig(loaded));
  const secrets = loadProjectSecrets(projectDir, secretNames, ctx.env);
  const accessLogPath = path.join(stateDir, "access.log");
  const accessLog = createWriteStream(accessLogPath, { flags: "a" });

  progress("Bundling workers and starting workerd…");
  let running: RunningProject;
  try {
    running = await startProject({
      loaded,
      wrangler,
      host,
      port,
      adminPort,
      adminToken: token,
      persistTo: state.dir,
      secrets,
      debugHeaders: ctx.env.WEFT_DEBUG_HEADERS !== "false",
      accessLog: ctx.env.WEFT_ACCESS_LOG ?? "all",
      onLog: (line) => {
        if (line.message.startsWith(ACCESS_LOG_PREFIX) || line.message.startsWith(ROLLOUT_LOG_PREFIX)) accessLog.write(`${line.message}\n`);
        else (line.level === "error" || line.level === "warn" ? process.stderr : process.stdout).write(`${line.message}\n`);
      },
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new CliError(EXIT.failed, `could not start: ${message}`, /EADDRINUSE|address in use/i.test(message) ? "A port is taken: stop the other process or set WEFT_PORT / WEFT_ADMIN_PORT." : undefined);
  }
  const stop = async (): Promise<void> => {
    await running.dispose();
    accessLog.end();
  };
  try {
    const config = flag(ctx.args, "no-seed") ? undefined : await seed(running.adminUrl, token, projectAdminConfig(loaded));
    writeFileSync(path.join(stateDir, "admin-url"), `${running.adminUrl}\n`);
    startCrons(running, loaded.manifest, ctx.interrupt);
    const summary = {
      url: running.url,
      admin: running.adminUrl,
      dashboard: `${running.adminUrl}/`,
      metrics: `${running.adminUrl}/metrics`,
      jwks: `${running.adminUrl}/.well-known/jwks.json`,
      tokenSource: source,
      state: state.dir,
      accessLog: accessLogPath,
      secrets: { file: secretsFile, names: Object.keys(secrets).sort(), unset: secretNames.filter((n) => !(n in secrets)) },
      config: config ? { version: config.version, seeded: config.seeded } : { seeded: false },
      workers: running.workers,
      rewired: running.rewired,
    };
    if (ctx.out.json) {
      ctx.out.document(summary);
    } else {
      const p = ctx.out.paint;
      const rel = (file: string): string => displayPath(file, ctx.cwd);
      const services = loaded.manifest.services;
      ctx.out.line(`\n${p("bold", "Weft is running on workerd")} (${running.workers.length} workers: ${services.length} services, ${services.length} proxies, the control plane; ready in ${Date.now() - started} ms)\n`);
      const rows: Array<[string, string]> = [
        ["Public entry", `${running.url}/`],
        ...services.filter((s) => s.public || s.publicRoutes?.length).map((s): [string, string] => [`  ${s.name}`, s.publicRoutes?.length ? s.publicRoutes.map((r) => r.pattern).join(", ") : "every other path"]),
        ["Dashboard", `${running.adminUrl}/   (sign in with the admin token)`],
        ["Admin API", `${running.adminUrl}/admin/services`],
        ["Metrics", `${running.adminUrl}/metrics`],
        ["Admin token", source === "WEFT_ADMIN_TOKEN" ? "(from WEFT_ADMIN_TOKEN)" : `${token}   (${source})`],
        ["Config", config ? (config.seeded ? `version ${config.version} (loaded from ${loaded.display})` : `version ${config.version} (kept from the last run; \`weft apply\` loads the manifest)`) : "not loaded (--no-seed)"],
        ["Local data", `${rel(state.dir)}${state.others.length > 0 ? p("yellow", `   (also found, not used: ${state.others.map(rel).join(", ")}; --persist-to picks one)`) : ""}`],
        ["Access log", `${rel(accessLogPath)}   (one JSON line per proxied request)`],
        ...(secretNames.length > 0 || Object.keys(secrets).length > 0 ? [secretsRow(rel(secretsFile), Object.keys(secrets).sort(), secretNames.filter((n) => !(n in secrets)), p)] : []),
      ];
      const width = Math.max(...rows.map(([k]) => k.length));
      for (const [key, value] of rows) ctx.out.line(`  ${key.padEnd(width)}   ${value}`);
      if (running.rewired.length > 0) {
        ctx.out.line(`\nThrough the mesh (service bindings rewired in memory):`);
        for (const line of running.rewired) ctx.out.line(`  ${line}`);
      }
      ctx.out.line(`\nTry:\n  curl -i ${running.url}/\n  npx weft status\n  npx weft split <service> <backend>=90 <backend>=10\n\nPress Ctrl-C to stop.`);
    }
    await new Promise<void>((resolve) => {
      if (ctx.interrupt.aborted) resolve();
      ctx.interrupt.addEventListener("abort", () => resolve(), { once: true });
    });
    progress("\nStopping workerd…");
  } finally {
    await stop();
  }
  progress("Stopped.");
  return EXIT.ok;
}

/** The summary's line about vendor secrets: where they are read from and their names (never their values). */
function secretsRow(file: string, names: ReadonlyArray<string>, unset: ReadonlyArray<string>, p: Context["out"]["paint"]): [string, string] {
  const bound = names.length > 0 ? `${names.join(", ")} → every proxy` : "none set";
  const missing = unset.length > 0 ? p("yellow", `   (not set: ${unset.join(", ")}; add NAME=value lines to ${file} or export them)`) : "";
  return ["Vendor secrets", `${file}   (${bound})${missing}`];
}

