/**
 * What a weft command is (name, help, options, what it runs) and what it gets to run with.
 */
import { GLOBAL_OPTIONS, type Globals, type OptionDefs, type ParsedArgs } from "./args.ts";
import type { AdminClient } from "./client.ts";
import type { Output } from "./output.ts";

/** Everything a command may use; nothing reaches for process globals directly, so commands stay testable. */
export interface Context {
  /** The command as typed, e.g. `rollout start` (for help hints). */
  command: string;
  out: Output;
  args: ParsedArgs;
  globals: Globals;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The checkout the CLI belongs to (where `npm start` keeps `.weft/` and the manifest usually is). */
  root: string;
  /** Aborted on Ctrl-C: live commands stop and exit cleanly. */
  interrupt: AbortSignal;
  /** The admin API client (resolved on first use, so offline commands never need a token). */
  api(): AdminClient;
  /** Asks a yes/no question on the terminal; false when there is no terminal to ask on. */
  confirm(question: string): Promise<boolean>;
  /** stdin is a terminal (a person could answer a prompt). */
  canPrompt: boolean;
}

/** One command, or a group of subcommands (`rollout`, `keys`). */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Arguments after the command name, e.g. `<service> <backend>=<weight>...`. */
  usage?: string;
  /** Paragraphs shown by `--help`. */
  description?: string;
  options?: OptionDefs;
  examples?: string[];
  subcommands?: Command[];
  /** Runs the command; resolves to the exit code. */
  run?: (ctx: Context) => Promise<number>;
}

function optionLines(options: OptionDefs): string[] {
  const rows = Object.entries(options).map(([name, def]) => {
    const left = `${def.short ? `-${def.short}, ` : "    "}--${name}${def.value ? ` ${def.value}` : ""}`;
    return [left, def.description] as const;
  });
  const width = Math.max(0, ...rows.map(([left]) => left.length));
  return rows.map(([left, text]) => `  ${left.padEnd(width)}   ${text}`);
}

/** `weft <path> --help`. */
export function commandHelp(command: Command, path: string): string {
  const lines = [`weft ${path} — ${command.summary}`, ""];
  if (command.subcommands) {
    lines.push(`Usage: weft ${path} <command> [options]`, "", "Commands:");
    const width = Math.max(...command.subcommands.map((s) => s.name.length));
    for (const sub of command.subcommands) lines.push(`  ${sub.name.padEnd(width)}   ${sub.summary}`);
    lines.push("", `Run \`weft ${path} <command> --help\` for a command's options.`);
  } else {
    lines.push(`Usage: weft ${path}${command.usage ? ` ${command.usage}` : ""} [options]`);
  }
  if (command.description) lines.push("", command.description.trim());
  if (command.options && Object.keys(command.options).length > 0) lines.push("", "Options:", ...optionLines(command.options));
  lines.push("", "Global options:", ...optionLines(GLOBAL_OPTIONS));
  if (command.examples?.length) lines.push("", "Examples:", ...command.examples.map((e) => `  ${e}`));
  return `${lines.join("\n")}\n`;
}

/** `weft --help`: every command, the global options, the environment and the exit codes. */
export function mainHelp(commands: ReadonlyArray<Command>): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `weft — operate a Weft service mesh from the terminal

Usage: weft <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`).join("\n")}

Global options:
${optionLines({ ...GLOBAL_OPTIONS, version: { type: "boolean", description: "print the CLI's version" } }).join("\n")}

Environment:
  WEFT_URL            control plane URL (e.g. https://weft.example.com)
  WEFT_ADMIN_TOKEN    admin token (the control plane's WEFT_ADMIN_TOKEN secret)
  WEFT_ADMIN_PORT     port of the local control plane when WEFT_URL is unset (default 8788)
  NO_COLOR            no colors

Without WEFT_URL and --url, weft talks to the local mesh that \`npm start\` runs, with its token
from .weft/admin-token.

Exit codes:
  0    success (diff: no differences)
  1    the operation failed or found problems: a refused change, check findings, a rollout that
       rolled back or was aborted, differences found by diff
  2    usage error: unknown command or option, missing or malformed argument
  3    the control plane could not be used: unreachable, timed out, or the token was refused
  130  interrupted while waiting for an outcome (rollout status)

Run \`weft <command> --help\` for a command's options and examples.
`;
}
