/**
 * `weft deploy`: the control plane and one proxy per service (and, with `--services`, the project's
 * own workers with their calls pointed at the proxies), each with the project's wrangler, in an
 * order Cloudflare accepts. Configs are generated under `.weft/deploy/` first.
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { flag, stringOption } from "../args.ts";
import type { Command, Context } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { displayPath, findManifest, loadManifest } from "../manifest/load.ts";
import { deployOrder, type DeployStep } from "../project/deploy.ts";
import { loadWrangler, readProjectWorkers } from "../project/workers.ts";
import { generatedFilesOf, MANIFEST_OPTION } from "./generate.ts";

/** The project's wrangler executable (its own 4.x: weft's peer dependency). */
function wranglerBin(projectDir: string): string {
  try {
    const require = createRequire(path.join(projectDir, "package.json"));
    return path.join(path.dirname(require.resolve("wrangler/package.json")), "bin", "wrangler.js");
  } catch (error) {
    throw new CliError(EXIT.failed, "wrangler is not installed in this project", "npm install --save-dev wrangler", { cause: error instanceof Error ? error.message : String(error) });
  }
}

/** Runs wrangler, streaming its output (or keeping it for --json); resolves to its exit code and output. */
function runWrangler(bin: string, args: string[], cwd: string, quiet: boolean): Promise<{ code: number; output: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd,
      env: { ...process.env, WRANGLER_SEND_METRICS: process.env.WRANGLER_SEND_METRICS ?? "false" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const take = (chunk: Buffer, stream: NodeJS.WriteStream): void => {
      output += chunk.toString();
      if (!quiet) stream.write(chunk);
    };
    child.stdout.on("data", (chunk: Buffer) => take(chunk, process.stderr));
    child.stderr.on("data", (chunk: Buffer) => take(chunk, process.stderr));
    child.on("close", (code) => resolve({ code: code ?? 1, output, ms: Date.now() - started }));
  });
}

export const deployCommand: Command = {
  name: "deploy",
  summary: "deploy the control plane and the proxies (and, with --services, your workers behind them)",
  description: `Generates the deploy configs under .weft/deploy/ (your wrangler configs are read, never
written), then runs your project's \`wrangler deploy\` for each worker in an order Cloudflare accepts
(every worker after the workers it binds to): the control plane, then each service's worker and
proxy. With --services your workers are deployed too, from copies of their configs whose calls go
to the callees' proxies, whose public routes move to their proxy, and with workers_dev = false (a
backend is reached only through its proxy). A worker backend from an [env.X] of its config
(e.g. api-v2 from name = "api" with [env.v2]) is deployed from a copy of that config with --env X.
Stops at the first failure; --from resumes there.

--dry-run bundles and validates every worker with \`wrangler deploy --dry-run\`: no account needed.
Before the first real deploy: \`wrangler login\`, then
\`wrangler secret put WEFT_ADMIN_TOKEN -c .weft/deploy/control-plane/wrangler.jsonc\`, and set
"controlPlane": {"vars": {"WEFT_PUBLIC_URL": "https://…"}} in the manifest.`,
  options: {
    ...MANIFEST_OPTION,
    "dry-run": { type: "boolean", description: "bundle and validate only (wrangler deploy --dry-run); no account needed" },
    services: { type: "boolean", description: "also deploy your workers, with their calls pointed at the proxies" },
    only: { type: "string", value: "<worker>", description: "deploy just this worker (e.g. weft-proxy-api)" },
    from: { type: "string", value: "<worker>", description: "start at this worker (after a failure)" },
  },
  examples: ["npx weft deploy --dry-run", "npx weft deploy --services", "npx weft deploy --from weft-proxy-api"],
  run: async (ctx) => runDeploy(ctx),
};

async function runDeploy(ctx: Context): Promise<number> {
  const loaded = loadManifest(findManifest(stringOption(ctx.args, "file"), ctx.cwd, ctx.root), ctx.cwd);
  if (loaded.manifest.files.workers === undefined) {
    throw new CliError(EXIT.usage, `${loaded.display} is Weft's own repository layout (no "files.workers")`, "Use `npm run deploy` in Weft's repository; in your project, `weft init` writes a manifest weft deploy takes.");
  }
  const dryRun = flag(ctx.args, "dry-run");
  const progress = (line: string): void => ctx.out.note(line);
  const wrangler = await loadWrangler().catch((error: unknown) => {
    throw new CliError(EXIT.failed, error instanceof Error ? error.message : String(error));
  });
  const files = await generatedFilesOf(loaded, ctx.cwd);
  for (const f of files) {
    mkdirSync(path.dirname(f.file), { recursive: true });
    writeFileSync(f.file, f.content);
  }
  progress(`Generated ${files.length} files under ${displayPath(path.join(loaded.dir, ".weft", "deploy"), ctx.cwd)} from ${loaded.display}.`);
  const { workers } = readProjectWorkers(wrangler, loaded.dir);
  const proxyFile = path.resolve(loaded.dir, loaded.manifest.files.proxy);
  const controlPlaneFile = files.find((f) => f.file.endsWith(path.join("control-plane", "wrangler.jsonc")))?.file ?? "";
  const all = deployOrder(loaded, workers, { services: flag(ctx.args, "services"), proxyFile, controlPlaneFile });
  const from = stringOption(ctx.args, "from");
  const only = stringOption(ctx.args, "only");
  const start = from === undefined ? 0 : all.findIndex((s) => s.name === from);
  const steps = all.slice(Math.max(0, start)).filter((s) => !only || s.name === only);
  if (start < 0 || steps.length === 0) {
    throw new CliError(EXIT.usage, `no worker named '${only ?? from ?? ""}'`, `Workers, in deploy order: ${all.map((s) => s.name).join(", ")}`);
  }
  const bin = wranglerBin(loaded.dir);
  const outDir = path.join(loaded.dir, ".weft", "deploy", "build");
  progress(`${dryRun ? "Checking" : "Deploying"} ${steps.length} worker${steps.length === 1 ? "" : "s"}${dryRun ? " (wrangler deploy --dry-run)" : ""}, each after the workers it binds to:`);
  const results: Array<DeployStep & { ok: boolean; ms: number }> = [];
  for (const [i, step] of steps.entries()) {
    progress(`\n[${i + 1}/${steps.length}] ${step.name}  (${step.kind}: ${displayPath(step.config, ctx.cwd)}${step.env ? ` --env ${step.env}` : ""})`);
    const args = ["deploy", "-c", step.config, ...(step.env ? ["--env", step.env] : []), ...(dryRun ? ["--dry-run", "--outdir", path.join(outDir, step.name)] : [])];
    const result = await runWrangler(bin, args, loaded.dir, ctx.out.json);
    results.push({ ...step, ok: result.code === 0, ms: result.ms });
    if (result.code !== 0) {
      if (ctx.out.json) ctx.out.document({ ok: false, dryRun, steps: results, failed: step.name, output: result.output.slice(-4000) });
      throw new CliError(
        EXIT.failed,
        `${dryRun ? "check" : "deploy"} stopped at [${i + 1}/${steps.length}] ${step.name}: wrangler exited ${result.code} (its output is above)`,
        `Fix it, then continue with: npx weft deploy --from ${step.name}${dryRun ? " --dry-run" : ""}${flag(ctx.args, "services") ? " --services" : ""}`,
      );
    }
    progress(`[${i + 1}/${steps.length}] ${step.name} ${dryRun ? "checked" : "deployed"} in ${(result.ms / 1000).toFixed(1)} s`);
  }
  if (ctx.out.json) ctx.out.document({ ok: true, dryRun, steps: results });
  else {
    ctx.out.line(`\n${dryRun ? "Checked" : "Deployed"} ${steps.length} worker${steps.length === 1 ? "" : "s"}.`);
    if (!dryRun) ctx.out.line("Next: load the mesh config with `npx weft apply -f weft.manifest.json --url <control plane URL>`, then `npx weft status`.");
  }
  return EXIT.ok;
}
