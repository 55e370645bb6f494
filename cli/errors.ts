/**
 * How the weft CLI fails: every failure is a {@link CliError} carrying the exit code scripts can rely
 * on, what went wrong, and what to do about it.
 */

/** Exit codes, documented in `weft --help`. */
export const EXIT = {
  /** The command did what was asked (for `diff`: no differences). */
  ok: 0,
  /** The operation failed or found problems: refused change, findings, a rollout that did not promote, `diff` found differences. */
  failed: 1,
  /** The command line is wrong: unknown command or option, missing or malformed argument. */
  usage: 2,
  /** The control plane could not be used: unreachable, timed out, not a Weft control plane, or the token was refused. */
  unavailable: 3,
  /** Interrupted (Ctrl-C) while waiting for an outcome, e.g. `rollout status` before the rollout ended. */
  interrupted: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Extra facts a failure carries into `--json` output (HTTP status, problem type, validation issues). */
export interface ErrorDetails {
  status?: number;
  type?: string;
  issues?: Array<{ path: string; message: string }>;
  [key: string]: unknown;
}

/** A failure to report to the operator: `message` says what went wrong, `hint` what to do. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  readonly hint: string | undefined;
  readonly details: ErrorDetails;
  constructor(exitCode: ExitCode, message: string, hint?: string, details: ErrorDetails = {}) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
    this.hint = hint;
    this.details = details;
  }
}

/** A command-line mistake (exit 2), with the help command to run. */
export function usageError(message: string, command?: string): CliError {
  return new CliError(EXIT.usage, message, `Run \`weft ${command ? `${command} ` : ""}--help\` for usage.`);
}
