/**
 * `weft history` and `weft rollback <version>`: the config's versions, and making an old one
 * current again (as a new version, after showing what it changes).
 */
import { flag, numberOption, positionals } from "../args.ts";
import type { VersionsView } from "../api-types.ts";
import type { Command } from "../command.ts";
import { diffConfigs, isEmpty, renderDiff, summarizeDiff } from "../diff.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { table } from "../output.ts";
import type { LiveConfig } from "./apply.ts";

export const historyCommand: Command = {
  name: "history",
  summary: "the config's versions, newest first",
  description: "Lists config versions: when each was made, which services it changed and why (the reason\nrecorded by apply, split, rollback, a rollout, the dashboard or the admin API).",
  options: {
    limit: { type: "string", value: "<n>", description: "how many versions (1-500, default 20)" },
  },
  examples: ["weft history", "weft history --limit 5 --json"],
  run: async (ctx) => {
    positionals(ctx.args, [], ctx.command);
    const limit = numberOption(ctx.args, "limit", ctx.command, { min: 1, max: 500, integer: true }, 20);
    const { body } = await ctx.api().call<VersionsView>("GET", `/admin/config/versions?limit=${limit}`);
    if (ctx.out.json) {
      ctx.out.document(body);
      return EXIT.ok;
    }
    if (body.versions.length === 0) {
      ctx.out.line("No config yet: `weft apply -f weft.manifest.json` applies the first one.");
      return EXIT.ok;
    }
    const p = ctx.out.paint;
    const lines = table(
      [{ title: "VERSION", align: "right" }, { title: "CREATED" }, { title: "CHANGED" }, { title: "REASON" }],
      body.versions.map((v) => [
        v.version === body.current ? p("bold", `* ${v.version}`) : String(v.version),
        v.createdAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
        v.changed.join(", ") || "-",
        v.reason,
      ]),
      p,
    );
    for (const line of lines) ctx.out.line(line);
    ctx.out.line(p("dim", `* current.  \`weft rollback <version>\` makes an older one current again.`));
    return EXIT.ok;
  },
};

export const rollbackCommand: Command = {
  name: "rollback",
  summary: "make an earlier config version current again",
  usage: "<version>",
  description: `Shows what returning to <version> changes, asks for confirmation, then makes that version's
config current as a new version (history is never rewritten). Written with If-Match on the version
the diff was computed against. Without a terminal to ask on, --yes is required.`,
  options: {
    yes: { type: "boolean", short: "y", description: "roll back without asking" },
  },
  examples: ["weft history", "weft rollback 7", "weft rollback 7 --yes --json"],
  run: async (ctx) => {
    const [raw = ""] = positionals(ctx.args, ["version"], ctx.command);
    const target = Number(raw);
    if (!/^\d+$/.test(raw) || target < 1) throw usageError(`<version> must be a config version number (see \`weft history\`), got '${raw}'`, ctx.command);
    const api = ctx.api();
    const hints = { 404: "`weft history` lists the versions there are." };
    const [old, live] = await Promise.all([
      api.call<LiveConfig>("GET", `/admin/config?version=${target}`, { hints }),
      api.call<LiveConfig>("GET", "/admin/config"),
    ]);
    const diff = diffConfigs(live.body, old.body);
    const base = { url: api.target.url, fromVersion: live.body.version, rolledBackTo: target };
    if (isEmpty(diff)) {
      if (ctx.out.json) ctx.out.document({ ...base, rolledBack: false, version: live.body.version, ...diff });
      else ctx.out.line(`Nothing to do: config version ${live.body.version} is the same as version ${target}.`);
      return EXIT.ok;
    }
    if (!ctx.out.json) {
      const p = ctx.out.paint;
      ctx.out.line(p("dim", `Rolling back ${api.target.url} from config version ${live.body.version} to version ${target}:`));
      ctx.out.line();
      for (const line of renderDiff(diff, p)) ctx.out.line(line);
      ctx.out.line();
    }
    if (!flag(ctx.args, "yes")) {
      if (!ctx.canPrompt || ctx.out.json) throw new CliError(EXIT.usage, "not rolled back: confirmation needed, and there is no terminal to ask on", "Pass --yes to roll back without asking.");
      if (!(await ctx.confirm(`Roll back (${summarizeDiff(diff)})?`))) {
        ctx.out.note("Nothing changed.");
        return EXIT.failed;
      }
    }
    const result = await api.call<{ version: number; changed: string[] }>("POST", "/admin/config/rollback", {
      body: { version: target },
      ifMatch: live.body.version,
      hints: { ...hints, 412: "The mesh changed since the diff was computed: nothing was rolled back. Run the command again." },
    });
    if (ctx.out.json) ctx.out.document({ ...base, rolledBack: true, version: result.body.version, ...diff });
    else ctx.out.line(`${ctx.out.paint("green", "Rolled back")} to version ${target} as config version ${result.body.version} (${result.body.changed.join(", ") || "no service changed"}).`);
    return EXIT.ok;
  },
};

