/**
 * `npm run types`: regenerates every worker's `Env` types with `wrangler types`, each with its own
 * interface (ProxyEnv, CartEnv, ...) so the workers' generated globals never collide.
 * `--check` (used by `npm run typecheck` and CI) fails if any file is out of date.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "./mesh.ts";
import { pool, typedConfigPaths, typesTarget, wrangler } from "./workers.ts";

const { values: args } = parseArgs({ options: { check: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } } });
if (args.help) {
  process.stdout.write("Usage: npm run types [-- --check]\n\nRegenerates worker-configuration.d.ts beside every worker; --check only verifies they are current.\n");
  process.exit(0);
}

const configs = typedConfigPaths();
const results = await pool(configs, 3, async (config) => {
  const { out, envInterface } = typesTarget(config);
  const result = await wrangler([
    "types",
    "-c",
    path.relative(ROOT, config),
    "--env-interface",
    envInterface,
    "--include-runtime=false",
    "--strict-vars=false",
    ...(args.check ? ["--check"] : []),
    path.relative(ROOT, out),
  ]);
  const label = `${path.relative(ROOT, out)} (${envInterface})`;
  process.stdout.write(`${result.code === 0 ? "ok  " : "FAIL"} ${label}\n`);
  if (result.code !== 0) process.stdout.write(`${result.output}\n`);
  return result.code;
});
if (results.some((code) => code !== 0)) {
  process.stderr.write(args.check ? "Generated types are out of date: run `npm run types` and commit the result.\n" : "wrangler types failed.\n");
  process.exit(1);
}
