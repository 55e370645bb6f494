#!/usr/bin/env node
// The `weft` command (`npx weft …` from the repository). The CLI is TypeScript (cli/), and Node 20
// cannot run TypeScript, so this launcher bundles it with esbuild into node_modules/.cache/weft/ the
// first time and again whenever one of its sources changed, then runs the bundle. A warm start
// costs one stat per source file; there is no install or build step to forget.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { setTimeout } from "node:timers";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
// Keyed by the checkout, so checkouts sharing one node_modules (git worktrees) never run each other's
// bundle, and by this launcher's own text, so a change in how it bundles builds anew.
const launcher = readFileSync(fileURLToPath(import.meta.url));
const cacheDir = path.join(root, "node_modules", ".cache", "weft", createHash("sha256").update(root).update(launcher).digest("hex").slice(0, 12));
const bundleFile = path.join(cacheDir, "weft.mjs");
const inputsFile = path.join(cacheDir, "weft.inputs.json");
// npm rewrites this file whenever it changes node_modules, so it stands for every dependency.
const DEPENDENCIES = path.join("node_modules", ".package-lock.json");

/** True when the bundle was built from the sources as they are now. */
function isFresh() {
  try {
    const inputs = JSON.parse(readFileSync(inputsFile, "utf8"));
    return Object.entries(inputs).every(([file, mtime]) => statSync(path.join(root, file)).mtimeMs === mtime);
  } catch {
    return false;
  }
}

/** Bundles cli/main.ts; writes through temporary files so concurrent runs never read half a bundle. */
async function build() {
  let esbuild;
  try {
    esbuild = await import("esbuild");
  } catch {
    process.stderr.write("error: the weft CLI needs its dependencies\nhint: run `npm install` in " + root + "\n");
    process.exit(1);
  }
  const result = await esbuild.build({
    entryPoints: [path.join(root, "cli", "main.ts")],
    absWorkingDir: root,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Dependencies (zod, miniflare, wrangler, esbuild…) are loaded from node_modules at run time, as
    // installed: Miniflare finds workerd beside itself, and wrangler is the project's own.
    packages: "external",
    write: false,
    metafile: true,
    logLevel: "error",
    // CommonJS dependencies (yaml) require Node built-ins; an ESM bundle has no `require` of its own.
    banner: { js: 'import { createRequire as __weftCreateRequire } from "node:module"; const require = __weftCreateRequire(import.meta.url);' },
    // The bundle's own path as the checkout sees it: Node resolves symlinks in module URLs, so in a git
    // worktree whose node_modules links to another checkout's, the CLI would find that checkout as its
    // package root (scripts/deployments.ts) and run that checkout's proxy and control plane.
    define: { "import.meta.url": JSON.stringify(pathToFileURL(bundleFile).href) },
  });
  const inputs = {};
  // Installed as a package, weft has no lockfile of its own: its dependencies change only with it.
  const lockfile = existsSync(path.join(root, DEPENDENCIES)) ? [DEPENDENCIES] : [];
  for (const file of [...Object.keys(result.metafile.inputs).filter((f) => !f.startsWith("node_modules/")), ...lockfile]) {
    inputs[file] = statSync(path.join(root, file)).mtimeMs;
  }
  mkdirSync(cacheDir, { recursive: true });
  const suffix = `.${process.pid}.tmp`;
  writeFileSync(bundleFile + suffix, result.outputFiles[0].contents);
  renameSync(bundleFile + suffix, bundleFile);
  writeFileSync(inputsFile + suffix, JSON.stringify(inputs));
  renameSync(inputsFile + suffix, inputsFile);
}

if (!isFresh()) await build();
const { main } = await import(pathToFileURL(bundleFile).href);
const { version } = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
process.exitCode = await main(process.argv.slice(2), { root, version });
// Commands close what they open; this only keeps a lingering keep-alive socket from delaying the exit.
setTimeout(() => process.exit(), 200).unref();
