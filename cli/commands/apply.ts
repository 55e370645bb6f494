/**
 * `weft apply -f` and `weft diff -f`: compare a manifest (or a plain admin config) with the config
 * the control plane runs, show the difference per service, and apply it with If-Match on the
 * version the difference was computed against — so what was shown is exactly what changes.
 */
import { flag, stringOption } from "../args.ts";
import type { AdminClient } from "../client.ts";
import type { Command, Context } from "../command.ts";
import { diffConfigs, isEmpty, renderDiff, summarizeDiff, type ConfigDiff } from "../diff.ts";
import { CliError, EXIT, type ExitCode } from "../errors.ts";
import type { MeshConfig as ParsedMeshConfig } from "../../shared/config.ts";
import { importInto, readHttpRouteFile } from "../httproute-file.ts";
import { displayPath, findManifest, readDesiredConfig } from "../manifest/load.ts";
import { MANIFEST_OPTION } from "./generate.ts";

const FILE_OPTION = {
  file: { ...MANIFEST_OPTION.file, description: "a mesh manifest, an admin config, or Gateway API HTTPRoutes (YAML or JSON; default: weft.manifest.json here or in a parent directory)" },
} as const;

/** What the file asks for, whichever kind of file it is. */
interface Desired {
  display: string;
  kind: "manifest" | "config" | "httproute";
  config: ParsedMeshConfig;
  /** For HTTPRoute files: the services whose routes the file replaces. */
  services?: string[];
}

/** The live config: its version (0 before the first write) and services, as stored. */
export interface LiveConfig {
  version: number;
  services: Array<{ name: string }>;
}

/** Reads the file and the live config, and compares them. */
async function compare(ctx: Context, api: AdminClient, invalidExit: ExitCode): Promise<{ desired: Desired; live: LiveConfig; diff: ConfigDiff }> {
  const file = findManifest(stringOption(ctx.args, "file"), ctx.cwd, ctx.root);
  const routes = readHttpRouteFile(file, displayPath(file, ctx.cwd), invalidExit);
  let desired: Desired | undefined;
  if (!routes) {
    const read = readDesiredConfig(file, ctx.cwd, invalidExit);
    desired = { display: read.source.display, kind: read.kind, config: read.config };
  }
  const { body } = await api.call<LiveConfig>("GET", "/admin/config");
  if (routes) {
    // HTTPRoutes replace the routes of the services they name, in the config that runs now.
    const outcome = importInto(routes, { services: body.services });
    if (outcome.kind === "refused") {
      throw new CliError(invalidExit, `${routes.display}: not accepted (nothing applied)`, "Each line names the HTTPRoute field and why; fix or remove it. `weft check -f <file>` checks a file against the manifest without a control plane.", { issues: outcome.issues });
    }
    desired = { display: routes.display, kind: "httproute", config: outcome.config, services: outcome.services.map((s) => s.service) };
  }
  if (!desired) throw new CliError(invalidExit, "nothing to compare");
  // The desired side goes through JSON like the live one did, so absent and undefined compare equal.
  const wanted = JSON.parse(JSON.stringify(desired.config)) as LiveConfig;
  return { desired, live: body, diff: diffConfigs({ services: body.services }, wanted) };
}

function printDiff(ctx: Context, api: AdminClient, source: string, live: LiveConfig, diff: ConfigDiff): void {
  const p = ctx.out.paint;
  ctx.out.line(p("dim", `${source} against config version ${live.version} at ${api.target.url}`));
  ctx.out.line();
  for (const line of renderDiff(diff, p)) ctx.out.line(line);
  ctx.out.line();
}

export const diffCommand: Command = {
  name: "diff",
  summary: "show what applying a manifest would change",
  usage: "[-f <file>]",
  description: `Compares a mesh manifest (or an admin config such as config/mesh.json, or a file of Gateway API
HTTPRoutes) with the config the control plane runs, service by service. Changes nothing.

Exit codes (as diff and kubectl diff): 0 no differences, 1 differences, 2 the file is invalid or the
command line is wrong, 3 the control plane could not be used.`,
  options: FILE_OPTION,
  examples: ["weft diff", "weft diff -f weft.manifest.json", "weft diff -f config/mesh.json --json", "weft diff -f routes.yaml"],
  run: async (ctx) => {
    const api = ctx.api();
    let result;
    try {
      result = await compare(ctx, api, EXIT.usage);
    } catch (error) {
      // Exit 1 means "differences" here, so a failed request must not look like one.
      if (error instanceof CliError && error.exitCode === EXIT.failed) throw new CliError(EXIT.unavailable, error.message, error.hint, error.details);
      throw error;
    }
    const { desired, live, diff } = result;
    if (ctx.out.json) {
      ctx.out.document({ file: desired.display, kind: desired.kind, url: api.target.url, version: live.version, differences: !isEmpty(diff), ...diff });
      return isEmpty(diff) ? EXIT.ok : EXIT.failed;
    }
    if (isEmpty(diff)) {
      ctx.out.line(`No differences: ${api.target.url} runs ${desired.display} (config version ${live.version}).`);
      return EXIT.ok;
    }
    printDiff(ctx, api, desired.display, live, diff);
    ctx.out.line(`${summarizeDiff(diff)}. \`weft apply -f ${desired.display}\` applies them.`);
    return EXIT.failed;
  },
};

export const applyCommand: Command = {
  name: "apply",
  summary: "validate a manifest, show the diff and apply it",
  usage: "-f <file>",
  description: `Validates a mesh manifest (or an admin config) with the control plane's own rules, shows what
would change, asks for confirmation, then replaces the config with If-Match on the version the
diff was computed against: if anybody changed the mesh in between, nothing is applied (exit 1)
and you re-run to see the new diff. Without a terminal to ask on, --yes is required.

HTTPRoute files (kind: HTTPRoute, apiVersion: gateway.networking.k8s.io/v1, one or many YAML or
JSON documents) are read the GAMMA way: a parentRef of kind Service names a Weft service, its
backendRefs name that service's backends, each rule becomes a route, and the service's routes are
ordered by the Gateway API's precedence. The routes of the services the file names are replaced;
other services are untouched. A field Weft cannot honour is reported with its path and reason,
and nothing is applied.`,
  options: {
    ...FILE_OPTION,
    yes: { type: "boolean", short: "y", description: "apply without asking" },
    reason: { type: "string", value: "<text>", description: "recorded in the config history (default: weft apply -f <file>)" },
  },
  examples: ["weft apply -f weft.manifest.json", "weft apply -f weft.manifest.json --yes --reason 'pim-v2 at 30%'", "weft apply -f routes.yaml --yes"],
  run: async (ctx) => {
    const api = ctx.api();
    const { desired, live, diff } = await compare(ctx, api, EXIT.failed);
    const base = { file: desired.display, kind: desired.kind, url: api.target.url, fromVersion: live.version };
    if (isEmpty(diff)) {
      if (ctx.out.json) ctx.out.document({ ...base, applied: false, version: live.version, ...diff });
      else ctx.out.line(`No changes: ${api.target.url} already runs ${desired.display} (config version ${live.version}).`);
      return EXIT.ok;
    }
    if (!ctx.out.json) printDiff(ctx, api, desired.display, live, diff);
    if (!flag(ctx.args, "yes")) {
      if (!ctx.canPrompt || ctx.out.json) {
        throw new CliError(EXIT.usage, "not applied: confirmation needed, and there is no terminal to ask on", "Review the diff (`weft diff -f <file>`), then pass --yes to apply without asking.");
      }
      if (!(await ctx.confirm(`Apply ${summarizeDiff(diff)} to ${api.target.url}?`))) {
        ctx.out.note("Nothing applied.");
        return EXIT.failed;
      }
    }
    const reason = stringOption(ctx.args, "reason") ?? `weft apply -f ${desired.display}`;
    const written = await api.call<{ version: number; changed: string[] }>("PUT", "/admin/config", {
      body: desired.config,
      ifMatch: live.version,
      reason,
      hints: { 412: `The mesh changed since the diff was computed (config version ${live.version}): nothing was applied. Run the command again to see the new diff.` },
    });
    if (ctx.out.json) ctx.out.document({ ...base, applied: true, version: written.body.version, ...diff });
    else {
      const p = ctx.out.paint;
      ctx.out.line(`${p("green", "Applied")}: config version ${live.version} → ${written.body.version} (${written.body.changed.join(", ") || "no service changed"}).`);
      ctx.out.line(p("dim", live.version > 0 ? `\`weft history\` lists versions; \`weft rollback ${live.version}\` undoes this.` : "`weft status` shows the services."));
    }
    return EXIT.ok;
  },
};
