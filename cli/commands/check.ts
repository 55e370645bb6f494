/**
 * `weft check`: static analysis of the manifest and the wrangler configs, like `istioctl analyze`.
 * Every finding has a code, a location and a fix; errors (or warnings with --strict) exit 1.
 */
import { flag, stringOption } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { checkManifest, type Finding } from "../manifest/check.ts";
import { importInto, readHttpRouteFile } from "../httproute-file.ts";
import { adminConfigOf, displayPath, findManifest, parseManifest, readJsonFile, type JsonFile } from "../manifest/load.ts";
import { loadWrangler, readProjectWorkers, type ProjectWorker } from "../project/workers.ts";
import type { Painter } from "../output.ts";
import { MANIFEST_OPTION } from "./generate.ts";

/** The codes `weft check` reports, for `--help` and the README. */
export const FINDING_CODES: ReadonlyArray<[string, string]> = [
  ["invalid-manifest", "the manifest does not match the schema (typos, wrong types)"],
  ["unknown-backend", "a split, failover, mirror or fault names a backend the service does not have"],
  ["shadowed-route", "a route can never match: an earlier route matches everything it would"],
  ["unreachable-route", "a route's path is not under any public route of a service nobody else calls"],
  ["unrouted-public-path", "a public route whose requests match none of the service's routes (404)"],
  ["weights-sum", "a split's weights do not add up to 100"],
  ["unmet-weight", "weight on a mesh backend that can never serve it (the target's policy refuses every origin the service relays)"],
  ["missing-binding", "a proxy env without CONTROL_PLANE or a backend's binding; a worker without a binding it calls through"],
  ["binding-mismatch", "a binding that points at another worker than the manifest says"],
  ["wrong-identity", "a worker's call carries another service's identity (props.caller) or claims to be a relaying proxy (props.hop)"],
  ["bypasses-proxy", "a worker binds straight to another service's backend, skipping its proxy"],
  ["public-backend", "a backend worker reachable without its proxy (workers_dev, routes)"],
  ["no-policy", "a service without an authorization policy (warning)"],
  ["denied-caller", "a service calls another whose policy refuses it"],
  ["unreachable-service", "a service nothing can reach (warning)"],
  ["unknown-service", "a call or mesh backend naming a service the manifest does not have"],
  ["egress-unsigned", "external backends whose calls cannot be signed (no CONTROL_PLANE binding)"],
  ["egress-no-provider", "an external backend without a provider (the token audience) (warning)"],
  ["egress-issuer", "the control plane's WEFT_PUBLIC_URL is a placeholder: providers cannot verify tokens (warning)"],
  ["insecure-origin", "an external origin that is not https"],
  ["local-origin", "an http://localhost origin: works with npm start only (warning)"],
  ["routing-loop", "services that route to each other in a cycle"],
  ["duplicate-name", "two services, backends, routes or limits with one name"],
  ["duplicate-public-route", "one public route pattern on two services"],
  ["unknown-script", "a worker backend whose script no wrangler config here deploys (warning)"],
  ["missing-proxy", "a service without its [env] in the proxy config"],
  ["stale-generated", "a generated file differs from what the manifest generates"],
  ["httproute-not-accepted", "an HTTPRoute field Weft cannot honour or that is invalid (field, reason), checked against the manifest's services"],
  ["not-generated", "a generated file does not exist"],
];

/**
 * `weft check -f routes.yaml`: the HTTPRoutes applied to the manifest's services, as apply would
 * apply them to the live config; every refusal is a finding naming the HTTPRoute field.
 */
function httpRouteFindings(routes: NonNullable<ReturnType<typeof readHttpRouteFile>>, manifest: ReturnType<typeof readJsonFile>): Finding[] {
  const loaded = parseManifest(manifest);
  const base = loaded.ok ? adminConfigOf(loaded.loaded.raw) : manifest.value;
  const outcome = importInto(routes, base);
  if (outcome.kind === "ok") return [];
  return outcome.issues.map((issue) => ({
    severity: "error",
    code: "httproute-not-accepted",
    location: { file: routes.display, where: issue.path },
    message: issue.message,
    fix: "Change or remove the field; Weft accepts an HTTPRoute whole or not at all.",
  }));
}

/** `file:line` of a finding. */
export function findingPlace(f: Finding): string {
  return `${f.location.file}${f.location.line !== undefined ? `:${f.location.line}` : ""}`;
}

/** A finding as three lines: place, severity, code and where; the message; the fix. */
export function renderFinding(f: Finding, paint: Painter): string[] {
  const severity = f.severity === "error" ? paint(["red", "bold"], "error") : f.severity === "warning" ? paint("yellow", "warning") : paint("blue", "info");
  const where = f.location.where ?? f.location.pointer ?? "";
  return [`${paint("bold", findingPlace(f))}  ${severity}  ${paint("cyan", f.code)}${where ? `  ${paint("dim", where)}` : ""}`, `    ${f.message}`, `    ${paint("green", "fix:")} ${f.fix}`];
}

/**
 * The project's workers, read with wrangler, for a manifest Weft was added to with `weft init`
 * (`files.workers` set); undefined for Weft's own repository layout, which check reads itself.
 */
async function projectWorkersFor(json: JsonFile): Promise<ProjectWorker[] | undefined> {
  const parsed = parseManifest(json);
  if (!parsed.ok || parsed.loaded.manifest.files.workers === undefined) return undefined;
  const wrangler = await loadWrangler().catch((error: unknown) => {
    throw new CliError(EXIT.failed, error instanceof Error ? error.message : String(error));
  });
  return readProjectWorkers(wrangler, parsed.loaded.dir).workers;
}

export const checkCommand: Command = {
  name: "check",
  summary: "find problems in the manifest and the wrangler configs (like istioctl analyze)",
  description: `Analyses the mesh manifest and the wrangler configs beside it without deploying anything:
missing bindings, unknown backends, unreachable and shadowed routes, services without a policy,
weights that can never be served, external backends whose calls cannot be signed, identities that
do not match, backends reachable without their proxy, and generated files that are out of date.
Each finding has a location, a code and a fix. Exit 1 when there are errors (with --strict, also
warnings).

Codes:
${FINDING_CODES.map(([code, text]) => `  ${code.padEnd(22)} ${text}`).join("\n")}`,
  options: {
    ...MANIFEST_OPTION,
    strict: { type: "boolean", description: "exit 1 on warnings too" },
  },
  examples: ["weft check", "weft check -f staging.manifest.json --strict", "weft check --json | jq '.findings[] | select(.severity == \"error\")'"],
  run: async (ctx) => {
    const file = findManifest(stringOption(ctx.args, "file"), ctx.cwd, ctx.root);
    const routes = readHttpRouteFile(file, displayPath(file, ctx.cwd), EXIT.failed);
    const json = readJsonFile(routes ? findManifest(undefined, ctx.cwd, ctx.root) : file, ctx.cwd);
    const findings = routes ? httpRouteFindings(routes, json) : checkManifest(json, ctx.cwd, await projectWorkersFor(json));
    const count = (severity: Finding["severity"]): number => findings.filter((f) => f.severity === severity).length;
    const summary = { errors: count("error"), warnings: count("warning"), infos: count("info") };
    const failed = summary.errors > 0 || (flag(ctx.args, "strict") && summary.warnings > 0);
    if (ctx.out.json) {
      ctx.out.document({ manifest: json.display, ...(routes ? { httpRoutes: routes.display } : {}), ok: !failed, summary, findings });
      return failed ? EXIT.failed : EXIT.ok;
    }
    const p = ctx.out.paint;
    for (const finding of findings) {
      for (const line of renderFinding(finding, p)) ctx.out.line(line);
      ctx.out.line();
    }
    const parts = [`${summary.errors} error${summary.errors === 1 ? "" : "s"}`, `${summary.warnings} warning${summary.warnings === 1 ? "" : "s"}`];
    const checked = routes ? `${routes.display} (against ${json.display})` : json.display;
    if (findings.length === 0) ctx.out.line(`${p("green", "✔")} ${checked}: no problems found.`);
    else ctx.out.line(`${failed ? p("red", "✖") : p("yellow", "!")} ${checked}: ${parts.join(", ")}.`);
    return failed ? EXIT.failed : EXIT.ok;
  },
};
