/**
 * `npm run deploy`: deploys the mesh in dependency order (control plane, then services, then the
 * proxies that bind to both) and stops at the first failure. Needs `wrangler login` or
 * CLOUDFLARE_API_TOKEN; `-- --dry-run` shows what would be deployed without an account.
 */
import { parseArgs } from "node:util";
import { deployOrder, targetArgs, wrangler } from "./workers.ts";

const { values: args } = parseArgs({
  options: {
    "dry-run": { type: "boolean", default: false },
    only: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  process.stdout.write(`Usage: npm run deploy [-- options]

Deploys every worker in dependency order: control plane, services, proxies.

Options:
  --dry-run       bundle and validate only (wrangler deploy --dry-run); no account needed
  --only <name>   deploy just this worker (e.g. weft-proxy-pim)
  -h, --help      show this help

Before the first deploy: wrangler login, then
  wrangler secret put WEFT_ADMIN_TOKEN            (control plane)
and replace shop.example.com in workers/proxy/wrangler.toml with your zone's hostname.
`);
  process.exit(0);
}

const deployments = deployOrder().filter((d) => !args.only || d.name === args.only);
if (deployments.length === 0) {
  process.stderr.write(`No worker named '${args.only ?? ""}'. Workers: ${deployOrder().map((d) => d.name).join(", ")}\n`);
  process.exit(2);
}
process.stdout.write(`Deploying ${deployments.length} workers${args["dry-run"] ? " (dry run)" : ""}:\n`);
for (const [i, d] of deployments.entries()) {
  process.stdout.write(`\n[${i + 1}/${deployments.length}] ${d.name}\n`);
  const result = await wrangler(["deploy", ...(args["dry-run"] ? ["--dry-run"] : []), ...targetArgs(d)], { inherit: true });
  if (result.code !== 0) {
    process.stderr.write(`\nDeploy stopped: ${d.name} failed (exit ${result.code}). Workers after it were not deployed.\n`);
    process.exit(result.code);
  }
}
process.stdout.write(`\nDeployed ${deployments.length} workers.\n`);
