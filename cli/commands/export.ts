/**
 * `weft export --format httproute [service]`: the routes the control plane runs, written as Gateway
 * API HTTPRoutes (one per service, its parent the service). `weft apply -f` of the output gives the
 * same routes back: settings HTTPRoute has no field for travel in an annotation.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { stringify } from "yaml";
import { MeshConfig, normalizeService } from "../../shared/config.ts";
import { exportHttpRoute } from "../../shared/httproute.ts";
import { positionals, stringOption } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import type { LiveConfig } from "./apply.ts";

const FORMATS = ["httproute"] as const;

export const exportCommand: Command = {
  name: "export",
  summary: "write the running routes out as Gateway API HTTPRoutes",
  usage: "--format httproute [<service>]",
  description: `Writes each service's routes (or one service's) as a Gateway API HTTPRoute
(gateway.networking.k8s.io/v1), the GAMMA way: the parentRef is the service, backendRefs are its
backends, one rule per route in the service's order. YAML documents separated by '---' (with
--json, one JSON document {"apiVersion": "v1", "kind": "List", "items": [...]}, which
\`weft apply -f\` reads too). Weft settings HTTPRoute cannot express (authentication,
contracts, failover, Weft's raw path prefixes…) are kept in the annotation weft.dev/route-overrides,
so \`weft apply -f\` of the output changes nothing.`,
  options: {
    format: { type: "string", value: "<format>", description: "httproute (the only format so far)" },
    output: { type: "string", short: "o", value: "<file>", description: "write to a file instead of stdout" },
  },
  examples: ["weft export --format httproute", "weft export --format httproute pim -o pim-routes.yaml", "weft export --format httproute --json | jq '.items[0].spec.rules'"],
  run: async (ctx) => {
    const [only] = positionals(ctx.args, ["service?"], ctx.command);
    const format = stringOption(ctx.args, "format");
    if (!format || !(FORMATS as ReadonlyArray<string>).includes(format)) throw usageError(`--format must be one of: ${FORMATS.join(", ")}`, ctx.command);
    const { body } = await ctx.api().call<LiveConfig>("GET", "/admin/config");
    const parsed = MeshConfig.safeParse({ services: body.services });
    if (!parsed.success) throw new CliError(EXIT.failed, "the control plane's config could not be read", parsed.error.issues[0]?.message);
    const services = parsed.data.services.map(normalizeService).filter((s) => only === undefined || s.name === only);
    if (only !== undefined && services.length === 0) {
      throw new CliError(EXIT.failed, `no service '${only}'`, `Services: ${parsed.data.services.map((s) => s.name).join(", ")}.`);
    }
    const items = services.map(exportHttpRoute);
    // With --json, a Kubernetes List: one JSON document that `weft apply -f` and kubectl both read.
    const list = { apiVersion: "v1", kind: "List", items };
    const text = ctx.out.json ? `${JSON.stringify(list, null, 2)}\n` : items.map((item) => stringify(item, { lineWidth: 0 })).join("---\n");
    const output = stringOption(ctx.args, "output");
    if (output) {
      writeFileSync(path.resolve(ctx.cwd, output), text);
      if (!ctx.out.json) ctx.out.note(`Wrote ${items.length} HTTPRoute${items.length === 1 ? "" : "s"} to ${output}.`);
      else ctx.out.document({ file: output, items: items.length });
      return EXIT.ok;
    }
    if (ctx.out.json) ctx.out.document(list);
    else ctx.out.line(text.trimEnd());
    return EXIT.ok;
  },
};
