/**
 * `npm run build`: bundles every deployable worker with `wrangler deploy --dry-run`, exactly as a
 * deploy would, into dist/<worker>/. No account needed. Fails if any worker does not bundle.
 */
import { statSync, readdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "./mesh.ts";
import { deployOrder, pool, targetArgs, wrangler } from "./workers.ts";

const { values: args } = parseArgs({ options: { json: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } } });
if (args.help) {
  process.stdout.write("Usage: npm run build [-- --json]\n\nBundles every worker (wrangler deploy --dry-run) into dist/<worker>/.\n");
  process.exit(0);
}

function bundleBytes(dir: string): number {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".js"))
    .reduce((sum, f) => sum + statSync(path.join(dir, f)).size, 0);
}

const deployments = deployOrder();
if (!args.json) process.stdout.write(`Bundling ${deployments.length} workers with wrangler deploy --dry-run…\n`);
const results = await pool(deployments, 2, async (d) => {
  const outdir = path.join(ROOT, "dist", d.name);
  const result = await wrangler(["deploy", "--dry-run", "--outdir", outdir, ...targetArgs(d)]);
  const ok = result.code === 0;
  const kib = ok ? Math.round(bundleBytes(outdir) / 1024) : 0;
  if (!args.json) {
    process.stdout.write(`${ok ? "ok  " : "FAIL"} ${d.name.padEnd(24)} ${ok ? `${String(kib).padStart(5)} KiB` : ""}  ${(result.ms / 1000).toFixed(1)} s\n`);
    if (!ok) process.stdout.write(`${result.output}\n`);
  }
  return { name: d.name, ok, kib, seconds: result.ms / 1000 };
});
if (args.json) process.stdout.write(`${JSON.stringify({ workers: results })}\n`);
if (results.some((r) => !r.ok)) process.exit(1);
