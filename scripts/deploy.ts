/**
 * `npm run deploy`: deploys the mesh in dependency order (control plane first, then every worker
 * after the workers it binds to) and stops at the first failure. Needs `wrangler login` or
 * CLOUDFLARE_API_TOKEN; `-- --dry-run` shows what would be deployed without an account.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { parseArgs } from "node:util";
import { deploymentsOf, meshConfigPaths, ROOT, SHOP_DIR } from "./deployments.ts";
import { orderByBindings, targetArgs, wrangler } from "./workers.ts";

const { values: args } = parseArgs({
  options: {
    "dry-run": { type: "boolean", default: false },
    only: { type: "string" },
    from: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  process.stdout.write(`Usage: npm run deploy [-- options]

Deploys every worker in dependency order: the control plane first, then each service and proxy
after the workers its bindings point to (Cloudflare refuses a binding to a worker that does not
exist yet). Stops at the first failure; the workers before it stay deployed, and --from resumes at
the one that failed.

Options:
  --dry-run       bundle and validate only (wrangler deploy --dry-run); no account needed
  --only <name>   deploy just this worker (e.g. weft-proxy-pim)
  --from <name>   start at this worker and deploy the ones after it
  -h, --help      show this help

Before the first deploy: wrangler login, then
  wrangler secret put WEFT_ADMIN_TOKEN            (control plane)
and set your hostnames in examples/shop/weft.manifest.json ("publicRoutes"), then \`npx weft generate -f examples/shop/weft.manifest.json\`.
`);
  process.exit(0);
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

// Wrangler configs generated from the manifest must match it, or the mesh deployed would not be
// the one the manifest (and `weft apply`) describes.
const generated = spawnSync(process.execPath, [path.join(ROOT, "bin", "weft.js"), "generate", "--check", "--no-color", "-f", path.join(SHOP_DIR, "weft.manifest.json")], { cwd: ROOT, encoding: "utf8" });
if (generated.status !== 0) {
  process.stderr.write(`${generated.stdout}${generated.stderr}\nNot deployed: run \`npx weft generate -f examples/shop/weft.manifest.json\` first (and commit the result).\n`);
  process.exit(1);
}

const { order: all, cycles } = orderByBindings(meshConfigPaths().flatMap(deploymentsOf));
for (const cycle of cycles) {
  process.stderr.write(
    `warning: ${cycle.worker} binds to ${cycle.before.join(", ")}, which bind back to it: on a first deploy, create ${cycle.before.join(", ")} first (any worker of that name, e.g. \`wrangler deploy\` of an empty one), then deploy again.\n`,
  );
}
const start = args.from === undefined ? 0 : all.findIndex((d) => d.name === args.from);
const deployments = all.slice(Math.max(0, start)).filter((d) => !args.only || d.name === args.only);
if (start < 0 || deployments.length === 0) {
  process.stderr.write(`No worker named '${args.only ?? args.from ?? ""}'. Workers, in deploy order: ${all.map((d) => d.name).join(", ")}\n`);
  process.exit(2);
}
const total = deployments.length;
process.stdout.write(`Deploying ${total} worker${total === 1 ? "" : "s"}${args["dry-run"] ? " (dry run)" : ""}, each after the workers it binds to: control plane first, then services and proxies.\n`);
const started = Date.now();
for (const [i, d] of deployments.entries()) {
  process.stdout.write(`\n[${i + 1}/${total}] ${d.name}  (${path.relative(ROOT, d.configPath)}${d.env ? ` --env ${d.env}` : ""})\n`);
  const result = await wrangler(["deploy", ...(args["dry-run"] ? ["--dry-run"] : []), ...targetArgs(d)], { inherit: true });
  if (result.code !== 0) {
    const rest = deployments.slice(i + 1).map((x) => x.name);
    process.stderr.write(
      `\nDeploy stopped at [${i + 1}/${total}] ${d.name}: wrangler exited ${result.code} after ${seconds(result.ms)} (its output is above).\n` +
        (i > 0 ? `Deployed before it: ${deployments.slice(0, i).map((x) => x.name).join(", ")}.\n` : "") +
        (rest.length > 0 ? `Not deployed: ${rest.join(", ")}.\n` : "") +
        `Fix it, then continue with: npm run deploy -- --from ${d.name}${args["dry-run"] ? " --dry-run" : ""}\n`,
    );
    process.exit(result.code);
  }
  process.stdout.write(`[${i + 1}/${total}] ${d.name} ${args["dry-run"] ? "checked" : "deployed"} in ${seconds(result.ms)}\n`);
}
process.stdout.write(`\n${args["dry-run"] ? "Checked" : "Deployed"} ${total} worker${total === 1 ? "" : "s"} in ${seconds(Date.now() - started)}.\n`);
if (!args["dry-run"]) process.stdout.write("Next: load the mesh config with `npx weft apply -f examples/shop/weft.manifest.json`, then `npx weft status`.\n");
