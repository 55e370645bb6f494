/**
 * Command-line parsing with node:util's parseArgs: global options are accepted anywhere on the line,
 * each command adds its own, and anything unknown or malformed is a usage error (exit 2).
 */
import { parseArgs } from "node:util";
import { usageError } from "./errors.ts";

/** One option of a command, with what its help says. */
export interface OptionDef {
  type: "string" | "boolean";
  short?: string;
  /** Placeholder shown in help for string options, e.g. `<url>`. */
  value?: string;
  description: string;
}
export type OptionDefs = Readonly<Record<string, OptionDef>>;

/** Options every command accepts. */
export const GLOBAL_OPTIONS = {
  url: { type: "string", value: "<url>", description: "control plane URL (default: $WEFT_URL, else the local mesh of `npm start`)" },
  token: { type: "string", value: "<token>", description: "admin token (default: $WEFT_ADMIN_TOKEN, else .weft/admin-token for the local mesh)" },
  timeout: { type: "string", value: "<seconds>", description: "give up on a control plane request after this long (default 10)" },
  json: { type: "boolean", description: "machine-readable output: one JSON document (JSON lines for live commands)" },
  "no-color": { type: "boolean", description: "no colors (also NO_COLOR=1; output to pipes and files is never colored)" },
  help: { type: "boolean", short: "h", description: "show help for the command" },
} as const satisfies OptionDefs;

/** Parsed values of one command line: options by name, then positionals. */
export interface ParsedArgs {
  values: Readonly<Record<string, string | boolean | undefined>>;
  positionals: string[];
}

/** Global settings, read from the parsed values. */
export interface Globals {
  url: string | undefined;
  token: string | undefined;
  timeoutMs: number;
  json: boolean;
  noColor: boolean;
  help: boolean;
}

/**
 * Splits the command words (`rollout`, `start`) from the rest: the first `depth` positionals that
 * are not values of global string options. `--` ends the search.
 */
export function commandWords(argv: ReadonlyArray<string>, depth: number): { words: string[]; rest: string[] } {
  const takesValue = new Set(Object.entries(GLOBAL_OPTIONS).flatMap(([name, def]) => (def.type === "string" ? [`--${name}`] : [])));
  const words: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    if (words.length < depth && !arg.startsWith("-")) {
      words.push(arg);
      continue;
    }
    rest.push(arg);
    if (takesValue.has(arg) && i + 1 < argv.length) rest.push(argv[++i] ?? "");
  }
  return { words, rest };
}

/** Parses `argv` against the global options and `options`; `command` names the command in errors. */
export function parseCommandArgs(argv: ReadonlyArray<string>, options: OptionDefs, command: string): ParsedArgs {
  const all: OptionDefs = { ...GLOBAL_OPTIONS, ...options };
  try {
    const parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(
        Object.entries(all).map(([name, def]) => [name, def.short ? { type: def.type, short: def.short } : { type: def.type }]),
      ),
      allowPositionals: true,
      strict: true,
    });
    const values: Record<string, string | boolean | undefined> = {};
    const entries: Array<[string, unknown]> = Object.entries(parsed.values);
    for (const [name, value] of entries) {
      if (typeof value === "string" || typeof value === "boolean") values[name] = value;
    }
    return { values, positionals: parsed.positionals };
  } catch (error) {
    const message = error instanceof Error ? error.message.replace(/\. To specify a positional argument.*$/s, "") : String(error);
    throw usageError(message, command);
  }
}

/** A string option's value, or undefined. */
export function stringOption(args: ParsedArgs, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === "string" ? value : undefined;
}

/** A boolean option's value. */
export function flag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}

/** A numeric option within [min, max], or `fallback` when absent; anything else is a usage error. */
export function numberOption(args: ParsedArgs, name: string, command: string, range: { min: number; max: number; integer?: boolean }, fallback: number): number;
export function numberOption(args: ParsedArgs, name: string, command: string, range: { min: number; max: number; integer?: boolean }): number | undefined;
export function numberOption(
  args: ParsedArgs,
  name: string,
  command: string,
  range: { min: number; max: number; integer?: boolean },
  fallback?: number,
): number | undefined {
  const raw = stringOption(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || value < range.min || value > range.max || (range.integer && !Number.isInteger(value))) {
    throw usageError(`--${name} must be ${range.integer ? "an integer" : "a number"} from ${range.min} to ${range.max}, got '${raw}'`, command);
  }
  return value;
}

/** The global settings of a parsed command line. */
export function globalsOf(args: ParsedArgs, command: string): Globals {
  return {
    url: stringOption(args, "url"),
    token: stringOption(args, "token"),
    timeoutMs: numberOption(args, "timeout", command, { min: 0.1, max: 600 }, 10) * 1000,
    json: flag(args, "json"),
    noColor: flag(args, "no-color"),
    help: flag(args, "help"),
  };
}

/**
 * The positionals, checked against `names`: `service` is required, `service?` optional, `weights...`
 * one or more. Missing or extra ones are usage errors naming what is wrong.
 */
export function positionals(args: ParsedArgs, names: ReadonlyArray<string>, command: string): string[] {
  const variadic = names.some((n) => n.endsWith("..."));
  const required = names.filter((n) => !n.endsWith("?")).length;
  if (args.positionals.length < required) {
    const missing = names.slice(args.positionals.length).filter((n) => !n.endsWith("?"));
    throw usageError(`missing ${missing.map((n) => `<${n.replace(/\.\.\.$/, "")}>`).join(" ")}`, command);
  }
  if (!variadic && args.positionals.length > names.length) {
    throw usageError(`unexpected argument '${args.positionals[names.length] ?? ""}'`, command);
  }
  return args.positionals;
}
