/**
 * `weft generate`: writes the admin config and the wrangler configs from the manifest, or with
 * `--check` verifies they are current (CI runs it, so a manifest edit cannot ship without them).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { flag, stringOption } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { generateFiles, type GeneratedFile } from "../manifest/generate.ts";
import { findManifest, loadManifest, type LoadedManifest } from "../manifest/load.ts";
import { projectDeployFiles } from "../project/deploy.ts";
import { loadWrangler, readProjectWorkers } from "../project/workers.ts";

/** `-f <manifest>`, shared by the commands that read the manifest. */
export const MANIFEST_OPTION = {
  file: { type: "string", short: "f", value: "<manifest>", description: "the mesh manifest (default: weft.manifest.json here or in a parent directory)" },
} as const;

/**
 * Every file the manifest generates. In a project Weft was added to (`files.workers`), that includes
 * the deploy copies of the workers' configs, read with the project's wrangler.
 */
export async function generatedFilesOf(loaded: LoadedManifest, cwd: string): Promise<GeneratedFile[]> {
  const files = generateFiles(loaded, cwd);
  if (loaded.manifest.files.workers === undefined) return files;
  const wrangler = await loadWrangler().catch((error: unknown) => {
    throw new CliError(EXIT.failed, error instanceof Error ? error.message : String(error));
  });
  const { workers } = readProjectWorkers(wrangler, loaded.dir);
  return [...files, ...projectDeployFiles(loaded, workers, (file) => wrangler.readRawConfig(file), cwd)];
}

export const generateCommand: Command = {
  name: "generate",
  summary: "write config/mesh.json and the wrangler configs from the manifest",
  description: `Generates, from the mesh manifest:
  - the admin config (config/mesh.json): what \`npm start\` loads and \`weft apply\` sends;
  - the proxy's wrangler config (workers/proxy/wrangler.toml): one [env.<service>] per service;
  - in each backend worker's wrangler config, its \`services\` key: bindings to the proxies of the
    services it calls ("calls" in the manifest), each with props = { caller = "<its service>" }.
Running it twice changes nothing. Commit the generated files with the manifest.`,
  options: {
    ...MANIFEST_OPTION,
    check: { type: "boolean", description: "write nothing; exit 1 if a committed generated file is out of date (for CI; files under .weft/ are left to weft dev and weft deploy)" },
  },
  examples: ["weft generate", "weft generate --check"],
  run: async (ctx) => {
    const loaded = loadManifest(findManifest(stringOption(ctx.args, "file"), ctx.cwd, ctx.root), ctx.cwd);
    const check = flag(ctx.args, "check");
    // .weft/ is Weft's local folder: weft dev and weft deploy write its files afresh and nobody
    // commits them, so a check (CI, a fresh clone) looks only at the files that are committed.
    const local = path.join(loaded.dir, ".weft") + path.sep;
    const generated = (await generatedFilesOf(loaded, ctx.cwd)).filter((f) => !check || !path.resolve(f.file).startsWith(local));
    const files = generated.map((f) => {
      const current = existsSync(f.file) ? readFileSync(f.file, "utf8") : undefined;
      const status = current === f.content ? "unchanged" : check ? "stale" : "written";
      if (status === "written") {
        mkdirSync(path.dirname(f.file), { recursive: true });
        writeFileSync(f.file, f.content);
      }
      return { ...f, status };
    });
    const stale = files.filter((f) => f.status === "stale");
    const written = files.filter((f) => f.status === "written");
    if (ctx.out.json) {
      ctx.out.document({ manifest: loaded.display, check, upToDate: stale.length === 0, files: files.map((f) => ({ path: f.display, status: f.status, owns: f.owns })) });
    } else {
      const p = ctx.out.paint;
      ctx.out.line(`${check ? "Checking" : "Generating"} from ${loaded.display}:`);
      for (const f of files) {
        const label = f.status === "written" ? p("green", "wrote    ") : f.status === "stale" ? p("red", "stale    ") : p("dim", "unchanged");
        ctx.out.line(`  ${label}  ${f.display}  ${p("dim", `(${f.owns})`)}`);
      }
      if (loaded.manifest.files.workers === undefined && written.some((f) => f.file.endsWith(".toml"))) {
        ctx.out.line("\nWrangler configs changed: run `npm run types` to update the workers' Env types, then `weft check`.");
      }
    }
    if (stale.length > 0) {
      throw new CliError(EXIT.failed, `${stale.length} generated file${stale.length === 1 ? " is" : "s are"} out of date with ${loaded.display}: ${stale.map((f) => f.display).join(", ")}`, "Run `npx weft generate` and commit the result.");
    }
    return EXIT.ok;
  },
};
