/**
 * Reading what an operator wrote: the mesh manifest, or a plain admin config (`config/mesh.json`,
 * or what `GET /admin/config` returned), checked with the control plane's own schema and
 * whole-mesh validation (shared/config.ts, shared/validate.ts) so the CLI refuses exactly what the
 * control plane would.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { MeshConfig, normalizeService, type MeshConfigInput, type MeshConfig as ParsedMeshConfig } from "../../shared/config.ts";
import { validateMesh } from "../../shared/validate.ts";
import { CliError, EXIT, type ExitCode } from "../errors.ts";
import { jsonLines, lineOf, pointerOf } from "./locate.ts";
import { Manifest, MANIFEST_FILE, type ManifestInput } from "./schema.ts";

/** A problem in a file, at a path inside it. */
export interface Problem {
  path: Array<string | number>;
  message: string;
}

/** A JSON file as read: its text, where each value is, and the parsed value. */
export interface JsonFile {
  file: string;
  /** The path as shown to the operator (relative to the working directory when inside it). */
  display: string;
  text: string;
  lines: Map<string, number>;
  value: unknown;
}

/** A valid manifest. */
export interface LoadedManifest extends JsonFile {
  /** The manifest's directory: every path in it is relative to this. */
  dir: string;
  /** As written (defaults not filled in): what generated files are made from. */
  raw: ManifestInput;
  /** With defaults. */
  manifest: Manifest;
}

/** How a path is shown: relative to `cwd` when it is below it. */
export function displayPath(file: string, cwd: string): string {
  const relative = path.relative(cwd, file);
  return relative && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
}

/** Reads and parses a JSON file; unreadable or malformed files are CliErrors with `exitCode`. */
export function readJsonFile(file: string, cwd: string, exitCode: ExitCode = EXIT.failed): JsonFile {
  const display = displayPath(file, cwd);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = error instanceof Error && "code" in error ? String(error.code) : "";
    throw new CliError(EXIT.usage, `cannot read ${display}${code ? ` (${code})` : ""}`, code === "ENOENT" ? "Check the path given with -f." : undefined);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const position = /position (\d+)/.exec(message)?.[1];
    const line = position === undefined ? undefined : text.slice(0, Number(position)).split("\n").length;
    throw new CliError(exitCode, `${display}${line ? `:${line}` : ""} is not valid JSON: ${message}`, "Fix the JSON syntax (a trailing comma or a missing quote, usually).");
  }
  return { file, display, text, lines: jsonLines(text), value };
}

/**
 * The manifest to use: `explicit` (relative to `cwd`), else the nearest `weft.manifest.json` at or
 * above `cwd`, else the one in the CLI's own checkout (`root`).
 */
export function findManifest(explicit: string | undefined, cwd: string, root: string): string {
  if (explicit) {
    const file = path.resolve(cwd, explicit);
    if (!existsSync(file)) throw new CliError(EXIT.usage, `no such file: ${explicit}`, "Check the path given with -f.");
    return file;
  }
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, MANIFEST_FILE);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) break;
  }
  const fallback = path.join(root, MANIFEST_FILE);
  if (existsSync(fallback)) return fallback;
  throw new CliError(EXIT.usage, `no ${MANIFEST_FILE} in ${cwd} or above`, "Run the command inside your mesh's repository, or pass -f <manifest>.");
}

/** Zod issues as problems; an unknown key is located at the key itself, not at its object. */
export function problemsOf(issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string; keys?: ReadonlyArray<string> }>): Problem[] {
  return issues.map((i) => {
    const path = i.path.map((p) => (typeof p === "number" ? p : String(p)));
    return { path: i.keys?.length === 1 ? [...path, i.keys[0] ?? ""] : path, message: i.message };
  });
}

/** Parses a manifest file: the manifest, or the reasons it is not one. */
export function parseManifest(json: JsonFile): { ok: true; loaded: LoadedManifest } | { ok: false; problems: Problem[] } {
  const parsed = Manifest.safeParse(json.value);
  if (!parsed.success) return { ok: false, problems: problemsOf(parsed.error.issues) };
  // Validated above: the value is an accepted input, which is what generated files are made from.
  return { ok: true, loaded: { ...json, dir: path.dirname(json.file), raw: json.value as ManifestInput, manifest: parsed.data } };
}

/** Loads a valid manifest, or fails (exit 1) listing every problem with its line. */
export function loadManifest(file: string, cwd: string): LoadedManifest {
  const json = readJsonFile(file, cwd);
  const result = parseManifest(json);
  if (result.ok) return result.loaded;
  throw invalidFile(json, result.problems, "manifest");
}

/** A CliError listing problems of a file with their lines. */
export function invalidFile(json: Pick<JsonFile, "display" | "lines">, problems: ReadonlyArray<Problem>, what: string): CliError {
  return new CliError(EXIT.failed, `${json.display} is not a valid ${what} (${problems.length} problem${problems.length === 1 ? "" : "s"})`, "Fix the listed problems; `weft check` explains each one.", {
    issues: problems.map((p) => {
      const pointer = pointerOf(p.path);
      const line = lineOf(json.lines, pointer);
      return { path: `${json.display}${line ? `:${line}` : ""} ${pointer || "/"}`, message: p.message };
    }),
  });
}

/** The admin config a manifest describes: its services without the deploy facts, as written. */
export function adminConfigOf(raw: ManifestInput): MeshConfigInput {
  return {
    services: raw.services.map(({ description: _description, publicRoutes: _publicRoutes, public: _public, proxy: _proxy, ...service }) => ({
      ...service,
      backends: service.backends.map((backend) => {
        if (backend.type !== "worker") return backend;
        const { script: _script, calls: _calls, entrypoints: _entrypoints, ...rest } = backend;
        return rest;
      }),
    })),
  };
}

/** Whether an admin config passes the control plane's checks; lenient on localhost origins, as in development. */
export function validateConfig(config: unknown): { ok: true; config: ParsedMeshConfig } | { ok: false; problems: Problem[] } {
  const parsed = MeshConfig.safeParse(config);
  if (!parsed.success) return { ok: false, problems: problemsOf(parsed.error.issues) };
  const normalized: ParsedMeshConfig = { services: parsed.data.services.map(normalizeService) };
  const issues = validateMesh(normalized, { allowLocalhostHttp: true });
  return issues.length > 0 ? { ok: false, problems: issues } : { ok: true, config: normalized };
}

/** What `apply`/`diff -f` read: a manifest, or a plain admin config. */
export interface DesiredConfig {
  source: JsonFile;
  kind: "manifest" | "config";
  /** Normalized as the control plane stores it (defaults and route names filled in). */
  config: ParsedMeshConfig;
}

/**
 * Reads the config to apply from a manifest or a plain admin config file (a `version` field, as in
 * `GET /admin/config` output, is ignored). Invalid files fail with every problem listed.
 */
export function readDesiredConfig(file: string, cwd: string, exitCode: ExitCode): DesiredConfig {
  const json = readJsonFile(file, cwd, exitCode);
  const value = json.value;
  const isObject = typeof value === "object" && value !== null && !Array.isArray(value);
  if (isObject && "manifestVersion" in value) {
    const result = parseManifest(json);
    if (!result.ok) throw withExit(invalidFile(json, result.problems, "manifest"), exitCode);
    const checked = validateConfig(adminConfigOf(result.loaded.raw));
    if (!checked.ok) throw withExit(invalidFile(json, checked.problems, "manifest"), exitCode);
    return { source: json, kind: "manifest", config: checked.config };
  }
  if (!isObject || !("services" in value)) {
    throw new CliError(exitCode, `${json.display} is neither a mesh manifest nor an admin config`, 'A manifest has "manifestVersion": 1; an admin config has "services": [...].');
  }
  const { version: _version, ...config }: Record<string, unknown> = value;
  const checked = validateConfig(config);
  if (!checked.ok) throw withExit(invalidFile(json, checked.problems, "mesh config"), exitCode);
  return { source: json, kind: "config", config: checked.config };
}

function withExit(error: CliError, exitCode: ExitCode): CliError {
  return error.exitCode === exitCode ? error : new CliError(exitCode, error.message, error.hint, error.details);
}
