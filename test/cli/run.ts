/**
 * Runs the real `weft` bin (bin/weft.js) as a child process, the way an operator's shell does:
 * with none of the developer's WEFT_* settings, output to pipes (so no colors and no prompts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { ROOT } from "../../scripts/deployments.ts";

/** The bin `npx weft` runs. */
export const WEFT_BIN = path.join(ROOT, "bin", "weft.js");

/** What one run printed and how it ended. */
export interface WeftRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** How to run the CLI. */
export interface WeftOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** The node binary (default: the one running the tests). */
  node?: string;
  timeoutMs?: number;
}

function environment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ["WEFT_URL", "WEFT_ADMIN_TOKEN", "WEFT_ADMIN_PORT", "NO_COLOR", "FORCE_COLOR"]) delete env[name];
  return { ...env, ...extra };
}

function start(args: ReadonlyArray<string>, options: WeftOptions): ChildProcess {
  return spawn(options.node ?? process.execPath, [WEFT_BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: environment(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Runs `weft <args>` to completion. */
export function weft(args: ReadonlyArray<string>, options: WeftOptions = {}): Promise<WeftRun> {
  const started = Date.now();
  const child = start(args, options);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const limit = options.timeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`weft ${args.join(" ")} did not finish within ${limit} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, limit);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** A long-running `weft` (tap, rollout status): read its output as it comes, then stop it. */
export interface LiveWeft {
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout (or stderr) matches `pattern`. */
  waitFor(pattern: RegExp, stream?: "stdout" | "stderr", ms?: number): Promise<void>;
  /** Sends SIGINT (Ctrl-C) and resolves with the exit code. */
  interrupt(): Promise<number>;
  /** Resolves with the exit code when the process ends by itself. */
  exited(ms?: number): Promise<number>;
}

/** Starts `weft <args>` in the background. */
export function spawnWeft(args: ReadonlyArray<string>, options: WeftOptions = {}): LiveWeft {
  const child = start(args, options);
  const out = { stdout: "", stderr: "" };
  const waiters: Array<() => void> = [];
  const notify = (): void => waiters.splice(0).forEach((w) => w());
  child.stdout?.on("data", (chunk: Buffer) => {
    out.stdout += chunk.toString();
    notify();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    out.stderr += chunk.toString();
    notify();
  });
  const closed = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
  const exited = async (ms = 20_000): Promise<number> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`weft ${args.join(" ")} still running after ${ms} ms\nstdout: ${out.stdout}\nstderr: ${out.stderr}`));
      }, ms);
    });
    try {
      return await Promise.race([closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    waitFor: (pattern, stream = "stdout", ms = 15_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${pattern} on ${stream} within ${ms} ms\nstdout: ${out.stdout}\nstderr: ${out.stderr}`)), ms);
        const check = (): void => {
          if (pattern.test(out[stream])) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        check();
      }),
    interrupt: async () => {
      child.kill("SIGINT");
      return exited(5_000);
    },
    exited,
  };
}

/** Parses JSON lines (`--json` streams). */
export function jsonLines<T>(text: string): T[] {
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as T);
}

/** Every file of the user's project with its hash, except what Weft and wrangler own. */
export function projectSnapshot(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (d: string): void => {
    for (const entry of readdirSync(d)) {
      if ([".weft", ".wrangler", "node_modules", "weft.manifest.json"].includes(entry)) continue;
      const full = path.join(d, entry);
      if (statSync(full).isDirectory()) walk(full);
      else files.set(path.relative(root, full), createHash("sha256").update(readFileSync(full)).digest("hex"));
    }
  };
  walk(root);
  return files;
}
