/**
 * `weft init`: puts the mesh in front of a project's existing workers by writing weft.manifest.json.
 * It reads every wrangler config with wrangler's own reader and never edits them.
 */
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { flag } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { validateConfig, adminConfigOf } from "../manifest/load.ts";
import { Manifest, MANIFEST_FILE } from "../manifest/schema.ts";
import { planInit, rpcCallees, withRpcProperties } from "../project/init.ts";
import { findRpcProperties } from "../project/rpc-members.ts";
import { loadWrangler, readProjectWorkers } from "../project/workers.ts";

export const initCommand: Command = {
  name: "init",
  summary: "write weft.manifest.json for the workers this project already has",
  description: `Finds every wrangler config here and below (wrangler.toml, wrangler.json, wrangler.jsonc;
not in node_modules), reads each with wrangler's own config reader, and plans one mesh service per
worker:
  - each service binding between the project's workers becomes a "calls" entry, so the callee's
    proxy knows the calling worker by name (its policies, metrics and tap show it);
  - workers with routes, or that no other worker calls, are public;
  - every service starts with one route sending all traffic to its worker (change splits later
    with \`weft split\`, or add versions to the manifest);
  - a config whose [env.*] sections each resolve to a name of their own (name = "api" with
    [env.v1] and [env.v2] → api-v1, api-v2) and have no routes is one service with one worker
    backend per environment — versions of one service, the first at weight 100, the others at 0;
    \`weft dev\` boots and \`weft deploy --services\` deploys each with its --env. Other
    environments are listed as not mapped.
Your wrangler configs are not changed: \`weft dev\` rewires the bindings in memory, and
\`weft deploy\` writes its configs under .weft/deploy/. What could not be mapped is listed.`,
  options: {
    yes: { type: "boolean", short: "y", description: "write the manifest without asking" },
    force: { type: "boolean", description: "replace an existing weft.manifest.json" },
  },
  examples: ["npx weft init", "npx weft init --yes", "npx weft init --yes --json"],
  run: async (ctx) => {
    const file = path.join(ctx.cwd, MANIFEST_FILE);
    if (existsSync(file) && !flag(ctx.args, "force")) {
      throw new CliError(EXIT.failed, `${MANIFEST_FILE} already exists here`, "Edit it, or run `weft init --force` to plan it again from the wrangler configs.");
    }
    const wrangler = await loadWrangler().catch((error: unknown) => {
      throw new CliError(EXIT.failed, error instanceof Error ? error.message : String(error));
    });
    ctx.out.note(ctx.out.paintErr("dim", `Reading wrangler configs under ${ctx.cwd}…`));
    const { workers, unreadable } = readProjectWorkers(wrangler, ctx.cwd);
    if (workers.length === 0) {
      throw new CliError(
        EXIT.failed,
        `no workers found under ${ctx.cwd}${unreadable.length > 0 ? ` (${unreadable.length} config${unreadable.length === 1 ? "" : "s"} could not be read: ${unreadable.map((u) => `${path.relative(ctx.cwd, u.configPath)}: ${u.reason}`).join("; ")})` : ""}`,
        "Run weft init at the root of a project with wrangler.toml, wrangler.json or wrangler.jsonc files.",
      );
    }
    const planned = planInit(ctx.cwd, workers, unreadable);
    // Properties read over RPC must be declared for the proxy: learn them from the callees' exports.
    const callees = rpcCallees(planned).flatMap((c) => {
      const worker = workers.find((w) => w.name === c.script);
      return worker ? [{ worker, entrypoints: c.entrypoints }] : [];
    });
    if (callees.length > 0) ctx.out.note(ctx.out.paintErr("dim", `Reading the RPC members of ${callees.length} called worker${callees.length === 1 ? "" : "s"} on workerd…`));
    const plan = withRpcProperties(planned, await findRpcProperties(wrangler, callees));
    // The plan must be a manifest the rest of the CLI and the control plane accept.
    const parsed = Manifest.safeParse(plan.manifest);
    const checked = validateConfig(adminConfigOf(plan.manifest));
    if (!parsed.success || !checked.ok) {
      const problems = parsed.success ? (checked.ok ? [] : checked.problems) : parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message }));
      throw new CliError(EXIT.failed, "the planned manifest is not valid (a bug in weft init)", undefined, { issues: problems.map((p) => ({ path: p.path.join("/"), message: p.message })) });
    }
    const write = flag(ctx.args, "yes") || (ctx.canPrompt && !ctx.out.json && (await confirmPlan(ctx, plan)));
    if (write) writeFileSync(file, `${JSON.stringify(plan.manifest, null, 2)}\n`);
    if (ctx.out.json) {
      ctx.out.document({ manifest: path.relative(ctx.cwd, file), written: write, services: plan.services, notes: plan.notes });
    } else {
      // The plan was shown before the question; with --yes (or no terminal to ask on) it is shown now,
      // so what was found and what could not be mapped is always said.
      if (flag(ctx.args, "yes") || !ctx.canPrompt) printPlan(ctx, plan);
      if (write) {
        ctx.out.line(`\nWrote ${MANIFEST_FILE} (${plan.services.length} services). Next:`);
        ctx.out.line("  npx weft dev             your workers behind one proxy each, locally on workerd");
        ctx.out.line("  npx weft deploy --dry-run");
      } else {
        ctx.out.line(`\nNothing written. Run \`npx weft init --yes\` to write ${MANIFEST_FILE}.`);
      }
    }
    return write ? EXIT.ok : EXIT.failed;
  },
};

type Plan = ReturnType<typeof planInit>;
type Ctx = Parameters<NonNullable<Command["run"]>>[0];

function printPlan(ctx: Ctx, plan: Plan): void {
  const p = ctx.out.paint;
  ctx.out.line(`Found ${plan.services.length} worker${plan.services.length === 1 ? "" : "s"}:`);
  for (const s of plan.services) {
    const calls = Object.entries(s.calls).map(([binding, callee]) => `${binding} → ${callee}`);
    ctx.out.line(`  ${p("bold", s.service.padEnd(20))} ${p("dim", s.config)}${s.public ? p("green", "  public") : ""}${calls.length > 0 ? `  calls ${calls.join(", ")}` : ""}`);
    for (const v of s.versions ?? []) ctx.out.line(`    ${"version".padEnd(18)} ${v.backend} = ${v.script} (--env ${v.env}), weight ${v.weight}`);
  }
  if (plan.notes.length > 0) {
    ctx.out.line("\nNot mapped, or mapped with a caveat:");
    for (const n of plan.notes) ctx.out.line(`  ${p("yellow", n.worker)}: ${n.message}`);
  }
}

async function confirmPlan(ctx: Ctx, plan: Plan): Promise<boolean> {
  printPlan(ctx, plan);
  return ctx.confirm(`\nWrite ${MANIFEST_FILE}?`);
}
