/**
 * The weft CLI: finds the command, parses its options, runs it, and turns failures into messages
 * and exit codes. `bin/weft.js` bundles this module and calls {@link main}.
 */
import { createInterface } from "node:readline/promises";
import { commandWords, globalsOf, parseCommandArgs } from "./args.ts";
import { AdminClient, localStateRoot, resolveTarget } from "./client.ts";
import { commandHelp, mainHelp, type Command, type Context } from "./command.ts";
import { CliError, EXIT, usageError } from "./errors.ts";
import { createOutput, type Output } from "./output.ts";
import { applyCommand, diffCommand } from "./commands/apply.ts";
import { checkCommand } from "./commands/check.ts";
import { exportCommand } from "./commands/export.ts";
import { generateCommand } from "./commands/generate.ts";
import { historyCommand, rollbackCommand } from "./commands/history.ts";
import { initCommand } from "./commands/init.ts";
import { devCommand } from "./commands/dev.ts";
import { deployCommand } from "./commands/deploy.ts";
import { keysCommand } from "./commands/keys.ts";
import { rolloutCommand } from "./commands/rollout.ts";
import { splitCommand } from "./commands/split.ts";
import { statusCommand } from "./commands/status.ts";
import { tapCommand } from "./commands/tap.ts";
import { topCommand } from "./commands/top.ts";

/** Every command, in the order `weft --help` lists them. */
export const COMMANDS: ReadonlyArray<Command> = [
  statusCommand,
  splitCommand,
  rolloutCommand,
  applyCommand,
  diffCommand,
  exportCommand,
  historyCommand,
  rollbackCommand,
  keysCommand,
  topCommand,
  tapCommand,
  checkCommand,
  generateCommand,
  initCommand,
  devCommand,
  deployCommand,
];

/** What the launcher passes in. */
export interface MainOptions {
  /** The checkout the CLI belongs to. */
  root: string;
  version: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] ?? 0;
      row[j] = Math.min(current + 1, (row[j - 1] ?? 0) + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length] ?? 0;
}

function unknownCommand(word: string, among: ReadonlyArray<Command>, group?: string): CliError {
  const closest = [...among].sort((x, y) => distance(word, x.name) - distance(word, y.name))[0];
  const guess = closest && distance(word, closest.name) <= 2 ? ` Did you mean '${closest.name}'?` : "";
  return usageError(`unknown command '${group ? `${group} ` : ""}${word}'.${guess}`, group);
}

/** Prints a failure: message, validation issues and hint to stderr; with --json also an error document to stdout. */
function report(out: Output, error: CliError): void {
  const p = out.paintErr;
  out.note(`${p(["red", "bold"], "error:")} ${error.message}`);
  for (const issue of error.details.issues ?? []) out.note(`  ${p("yellow", issue.path || "(body)")}: ${issue.message}`);
  if (error.hint) out.note(`${p("cyan", "hint:")} ${error.hint}`);
  if (out.json) out.document({ error: { message: error.message, ...(error.hint ? { hint: error.hint } : {}), exitCode: error.exitCode, ...error.details } });
}

/** Runs one command line; resolves to the process's exit code. */
export async function main(argv: ReadonlyArray<string>, options: MainOptions): Promise<number> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const earlyOut = createOutput({ json: argv.includes("--json"), noColor: argv.includes("--no-color"), env, stdout: process.stdout, stderr: process.stderr });
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(`weft ${options.version} (Node ${process.version})\n`);
    return EXIT.ok;
  }
  const interrupt = new AbortController();
  const onSigint = (): void => {
    // A second Ctrl-C leaves at once, whatever the command is waiting for.
    if (interrupt.signal.aborted) process.exit(EXIT.interrupted);
    interrupt.abort();
  };
  process.on("SIGINT", onSigint);
  // A supervisor's stop (systemd, docker, `timeout`) ends long commands as cleanly as Ctrl-C does.
  process.on("SIGTERM", onSigint);
  try {
    const top = commandWords(argv, 1);
    const name = top.words[0];
    if (name === undefined) {
      if (argv.includes("--help") || argv.includes("-h")) {
        process.stdout.write(mainHelp(COMMANDS));
        return EXIT.ok;
      }
      process.stderr.write(mainHelp(COMMANDS));
      return EXIT.usage;
    }
    let command = COMMANDS.find((c) => c.name === name);
    if (!command) throw unknownCommand(name, COMMANDS);
    let path = command.name;
    let rest = top.rest;
    if (command.subcommands) {
      const sub = commandWords(rest, 1);
      const subName = sub.words[0];
      if (subName === undefined) {
        const help = commandHelp(command, path);
        if (rest.includes("--help") || rest.includes("-h")) {
          process.stdout.write(help);
          return EXIT.ok;
        }
        process.stderr.write(help);
        return EXIT.usage;
      }
      const found = command.subcommands.find((c) => c.name === subName);
      if (!found) throw unknownCommand(subName, command.subcommands, command.name);
      command = found;
      path = `${path} ${found.name}`;
      rest = sub.rest;
    }
    const args = parseCommandArgs(rest, command.options ?? {}, path);
    const globals = globalsOf(args, path);
    if (globals.help) {
      process.stdout.write(commandHelp(command, path));
      return EXIT.ok;
    }
    const out = createOutput({ json: globals.json, noColor: globals.noColor, env, stdout: process.stdout, stderr: process.stderr });
    const run = command.run;
    if (!run) throw usageError(`'${path}' needs a subcommand`, path);
    let client: AdminClient | undefined;
    const ctx: Context = {
      command: path,
      out,
      args,
      globals,
      env,
      cwd,
      root: options.root,
      interrupt: interrupt.signal,
      canPrompt: process.stdin.isTTY === true,
      api: () => (client ??= new AdminClient(resolveTarget(globals, env, localStateRoot(cwd, options.root)), globals.timeoutMs, interrupt.signal)),
      confirm: async (question) => {
        if (process.stdin.isTTY !== true) return false;
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        try {
          const answer = await rl.question(`${question} [y/N] `, { signal: interrupt.signal });
          return /^y(es)?$/i.test(answer.trim());
        } catch {
          return false;
        } finally {
          rl.close();
        }
      },
    };
    try {
      return await run(ctx);
    } catch (error) {
      if (error instanceof CliError) {
        if (error.exitCode === EXIT.interrupted || (error.exitCode === EXIT.ok && error.message === "interrupted")) return error.exitCode;
        report(out, error);
        return error.exitCode;
      }
      throw error;
    }
  } catch (error) {
    if (error instanceof CliError) {
      report(earlyOut, error);
      return error.exitCode;
    }
    const message = error instanceof Error ? error.message : String(error);
    earlyOut.note(`error: internal error in weft: ${message}`);
    if (env.WEFT_DEBUG && error instanceof Error && error.stack) earlyOut.note(error.stack);
    else earlyOut.note("hint: this is a bug in the CLI; run with WEFT_DEBUG=1 for the stack trace and report it.");
    return EXIT.failed;
  } finally {
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onSigint);
  }
}
