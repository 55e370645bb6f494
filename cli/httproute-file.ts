/**
 * HTTPRoute files for `weft apply`, `weft diff` and `weft check`: one or many YAML or JSON
 * documents of `kind: HTTPRoute` (a `kind: List` of them too), read with the `yaml` package and
 * turned into Weft routes by shared/httproute.ts against the services they name.
 */
import { readFileSync, statSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { MeshConfig, normalizeService, type MeshConfig as ParsedMeshConfig, type MeshConfigInput } from "../shared/config.ts";
import { importHttpRoutes, type HttpRouteFinding, type ImportedService, type KnownService } from "../shared/httproute.ts";
import { validateMesh } from "../shared/validate.ts";
import { CliError, EXIT, type ExitCode } from "./errors.ts";

/** Largest HTTPRoute file read (routes are small; this bounds what a mistaken -f can make the CLI parse). */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;

/** The documents of an HTTPRoute file, and where it is. */
export interface HttpRouteFile {
  display: string;
  docs: unknown[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Reads `file` as HTTPRoute documents, or answers undefined when it is not an HTTPRoute file (a
 * manifest or an admin config, which have no `kind`), so callers fall back to those readers.
 */
export function readHttpRouteFile(file: string, display: string, exitCode: ExitCode): HttpRouteFile | undefined {
  let text: string;
  try {
    if (statSync(file).size > MAX_FILE_BYTES) throw new CliError(exitCode, `${display} is larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`);
    text = readFileSync(file, "utf8");
  } catch (error) {
    if (error instanceof CliError) throw error;
    const code = error instanceof Error && "code" in error ? String(error.code) : "";
    throw new CliError(EXIT.usage, `cannot read ${display}${code ? ` (${code})` : ""}`, "Check the path given with -f.");
  }
  // A JSON manifest or admin config is valid YAML too: only files whose documents have a `kind` are ours.
  const parsed = parseAllDocuments(text);
  const documents = Array.isArray(parsed) ? parsed : [parsed];
  const docs: unknown[] = [];
  for (const document of documents) {
    const error = document.errors[0];
    if (error) {
      if (/\.ya?ml$/i.test(file)) throw new CliError(exitCode, `${display}:${error.linePos?.[0]?.line ?? "?"} is not valid YAML: ${error.message.split("\n")[0] ?? ""}`);
      return undefined;
    }
    const value: unknown = document.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue;
    const items: unknown = isRecord(value) && value.kind === "List" ? value.items : value;
    if (Array.isArray(items)) for (const item of items as ReadonlyArray<unknown>) docs.push(item);
    else docs.push(items);
  }
  const kinds = docs.some((doc) => isRecord(doc) && typeof doc.kind === "string");
  return kinds ? { display, docs } : undefined;
}

/** Findings as the CLI's validation issues: `HTTPRoute ns/name › spec.rules[0]…: [Reason] message`. */
export function findingIssues(findings: ReadonlyArray<HttpRouteFinding>): Array<{ path: string; message: string }> {
  return findings.map((f) => ({ path: `HTTPRoute ${f.route}${f.field ? ` › ${f.field}` : ""}`, message: `[${f.reason}] ${f.message}` }));
}

/** The mesh config with the imported services' routes (and route order) replaced; everything else as it was. */
export function withImportedRoutes(base: MeshConfigInput, imported: ReadonlyArray<ImportedService>): MeshConfigInput {
  const byName = new Map(imported.map((s) => [s.service, s]));
  return {
    services: base.services.map((service) => {
      const routes = byName.get(service.name);
      if (!routes) return service;
      const { precedence: _old, ...rest } = service;
      return { ...rest, routes: routes.routes, ...(routes.precedence ? { precedence: routes.precedence } : {}) };
    }),
  };
}

/** What applying an HTTPRoute file to `base` gives, checked with the control plane's rules. */
export type HttpRouteOutcome =
  | { kind: "ok"; config: ParsedMeshConfig; services: ImportedService[] }
  | { kind: "refused"; issues: Array<{ path: string; message: string }> };

/**
 * Imports the file's HTTPRoutes into `base` (the live config, or a manifest's): refused with every
 * finding, or with the control plane's own validation issues named by route and rule.
 */
export function importInto(file: HttpRouteFile, current: unknown): HttpRouteOutcome {
  // The live config (or a manifest's) as Weft reads it: parsed, so its services and backends are known.
  const parsedBase = MeshConfig.safeParse(current);
  if (!parsedBase.success) return { kind: "refused", issues: [{ path: "(current config)", message: `the config to apply the routes to is not valid: ${parsedBase.error.issues[0]?.message ?? ""}` }] };
  const base: MeshConfigInput = parsedBase.data;
  const known: KnownService[] = parsedBase.data.services;
  const result = importHttpRoutes(file.docs, known);
  if (result.kind === "refused") return { kind: "refused", issues: findingIssues(result.findings) };
  const desired = withImportedRoutes(base, result.services);
  const parsed = MeshConfig.safeParse(desired);
  const sourceOf = (service: number, route: number): string => {
    const name = desired.services[service]?.name;
    const source = result.services.find((s) => s.service === name)?.sources[route];
    return source ? `HTTPRoute ${source.route} › spec.rules[${source.rule}]` : `services.${service}.routes.${route}`;
  };
  const describe = (path: ReadonlyArray<PropertyKey>): string => {
    const [head, service, list, route, ...rest] = path.map(String);
    if (head === "services" && list === "routes" && route !== undefined) return `${sourceOf(Number(service), Number(route))}${rest.length > 0 ? ` (${rest.join(".")})` : ""}`;
    return path.map(String).join(".");
  };
  if (!parsed.success) return { kind: "refused", issues: parsed.error.issues.map((i) => ({ path: describe(i.path), message: i.message })) };
  const config: ParsedMeshConfig = { services: parsed.data.services.map(normalizeService) };
  const issues = validateMesh(config, { allowLocalhostHttp: true });
  if (issues.length > 0) return { kind: "refused", issues: issues.map((i) => ({ path: describe(i.path), message: i.message })) };
  return { kind: "ok", config, services: result.services };
}
