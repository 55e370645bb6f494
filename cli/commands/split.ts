/**
 * `weft split pim pim-v1=70 pim-v2=30`: sets a route's traffic split. Reads the service, checks the
 * weights with the control plane's own rules, then writes with If-Match so a concurrent change is
 * never overwritten.
 */
import { Name, SplitUpdate, type ServiceConfig } from "../../shared/config.ts";
import { defaultRoute } from "../../shared/slice.ts";
import { validateMesh } from "../../shared/validate.ts";
import { flag, positionals, stringOption } from "../args.ts";
import type { ServiceView } from "../api-types.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT, usageError } from "../errors.ts";

/** `["pim-v1=70", "pim-v2=30"]` → `{ "pim-v1": 70, "pim-v2": 30 }`; malformed arguments are usage errors. */
export function parseWeights(words: ReadonlyArray<string>, command: string): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const word of words) {
    const match = /^([^=]+)=(.*)$/.exec(word);
    if (!match?.[1] || match[2] === undefined) throw usageError(`'${word}' is not <backend>=<weight> (e.g. pim-v2=30)`, command);
    const [, backend, raw] = match;
    if (!Name.safeParse(backend).success) throw usageError(`'${backend}' is not a backend name`, command);
    if (backend in weights) throw usageError(`backend '${backend}' is given twice`, command);
    const weight = Number(raw);
    if (!/^\d+$/.test(raw) || weight > 100) throw usageError(`weight of ${backend} must be a whole number from 0 to 100, got '${raw}'`, command);
    weights[backend] = weight;
  }
  return weights;
}

/** The service as the admin API shows it, with `weights` on route `routeName`: a config the shared validation can check. */
function withWeights(view: ServiceView, routeName: string, weights: Record<string, number>): ServiceConfig {
  return {
    name: view.name,
    // Validation of a split needs only the backends' names; their other settings are stored and valid.
    backends: view.backends.map((b) => ({ name: b.name, type: "worker", binding: "B" })),
    routes: view.routes.map((r) => ({ name: r.name, match: r.match, split: { weights: r.name === routeName ? weights : r.split } })),
  };
}

function describe(before: Record<string, number>, after: Record<string, number>): string {
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])];
  return names
    .map((name) => {
      const [from, to] = [before[name] ?? 0, after[name] ?? 0];
      return from === to ? `${name} ${to}` : `${name} ${from} → ${to}`;
    })
    .join(", ");
}

export const splitCommand: Command = {
  name: "split",
  summary: "set a service's traffic split",
  usage: "<service> <backend>=<weight>...",
  description: `Sets the weights of one route of a service (its catch-all route unless --route names another).
Weights are whole percentages that add up to 100; backends the route weighted before and you do
not name get 0. The change is written with If-Match on the version read, so it never overwrites
a change made in between; with a sticky key, shoppers only move where weights changed.`,
  options: {
    route: { type: "string", value: "<name>", description: "the route to change (default: the catch-all route, else the first)" },
    sticky: { type: "string", value: "<key>", description: "make the split sticky: cookie:NAME or header:NAME" },
    "no-sticky": { type: "boolean", description: "draw every request independently" },
  },
  examples: ["weft split pim pim-v1=90 pim-v2=10", "weft split pim pim-v1=70 pim-v2=30", "weft split pim pim-v2=100 --route products --sticky cookie:shopper"],
  run: async (ctx) => {
    const [service = "", ...words] = positionals(ctx.args, ["service", "weights..."], ctx.command);
    const weights = parseWeights(words, ctx.command);
    const routeName = stringOption(ctx.args, "route");
    const stickyArg = stringOption(ctx.args, "sticky");
    if (stickyArg !== undefined && flag(ctx.args, "no-sticky")) throw usageError("--sticky and --no-sticky exclude each other", ctx.command);
    const sticky = flag(ctx.args, "no-sticky") ? null : stickyArg;
    const update = SplitUpdate.safeParse({ weights, ...(sticky !== undefined ? { sticky } : {}) });
    if (!update.success) throw usageError(update.error.issues.map((i) => i.message).join("; "), ctx.command);

    const api = ctx.api();
    const read = await api.call<ServiceView>("GET", `/admin/services/${encodeURIComponent(service)}`);
    const view = read.body;
    // The route the control plane changes when none is named (shared/slice.ts decides for both).
    const fallback = defaultRoute(view.routes.map((r) => ({ name: r.name, match: r.match, split: { weights: r.split } })));
    const route = view.routes.find((r) => r.name === (routeName ?? fallback?.name));
    if (!route) throw usageError(`service '${service}' has no route named '${routeName ?? ""}' (routes: ${view.routes.map((r) => r.name).join(", ")})`, ctx.command);
    const next: Record<string, number> = { ...weights };
    for (const backend of Object.keys(route.split)) next[backend] ??= 0;

    // The control plane's own rules, on the service as it would be: same refusals, same words.
    const index = view.routes.indexOf(route);
    const issues = validateMesh({ services: [withWeights(view, route.name, next)] }, { allowLocalhostHttp: true }).filter(
      (i) => i.path[2] === "routes" && i.path[3] === index && i.path[4] === "split",
    );
    if (issues.length > 0) {
      throw new CliError(EXIT.usage, `refused: ${issues.map((i) => i.message).join("; ")}`, `Give weights for backends of ${service} (${view.backends.map((b) => b.name).join(", ")}) that add up to 100.`);
    }

    const written = await api.call<ServiceView>("PUT", `/admin/services/${encodeURIComponent(service)}/split?route=${encodeURIComponent(route.name)}`, {
      body: { weights: next, ...(sticky !== undefined ? { sticky } : {}) },
      ifMatch: read.version ?? view.version,
      hints: { 409: `A rollout controls this split: \`weft rollout status ${service}\` shows it; promote or abort it first.` },
    });
    const after = written.body.routes.find((r) => r.name === route.name);
    const result = {
      service,
      route: route.name,
      before: route.split,
      after: after?.split ?? next,
      sticky: after?.sticky ?? null,
      version: { before: view.version, after: written.body.version },
    };
    if (ctx.out.json) ctx.out.document(result);
    else {
      const p = ctx.out.paint;
      ctx.out.line(`${p("bold", `${service}/${route.name}`)}: ${describe(result.before, result.after)}${result.sticky ? `  (sticky ${result.sticky})` : ""}`);
      ctx.out.line(p("dim", `service version ${view.version} → ${written.body.version}; proxies follow within about a second`));
    }
    return EXIT.ok;
  },
};
