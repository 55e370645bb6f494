/**
 * `weft rollout start|status|history|pause|resume|abort|promote`: progressive delivery from the terminal,
 * as `kubectl argo rollouts`. `status` follows a rollout live — a progress bar of the candidate's
 * weight across the steps and each event as it happens — until it ends, and exits 0 only when the
 * candidate was promoted.
 */
import path from "node:path";
import { flag, numberOption, positionals, stringOption } from "../args.ts";
import type { AdminClient } from "../client.ts";
import type { Command, Context } from "../command.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { readJsonFile } from "../manifest/load.ts";
import { formatMs, formatPercent, pad, progressBar, table, type Painter } from "../output.ts";
import { sleep } from "../sse.ts";
import { isFinished, type RolloutEvent, type RolloutStatus } from "../../shared/rollout.ts";

export type { RolloutStatus };

/** How long `status` keeps following through a control plane it cannot reach before giving up. */
const LOST_CONTACT_MS = 30_000;

function currentRoute(service: string): string {
  return `/admin/services/${encodeURIComponent(service)}/rollouts/current`;
}

const NO_ROLLOUT_HINT = (service: string): string => `Start one: \`weft rollout start ${service} --backend <candidate>\`.`;

/** `[████░░░░] 25%  step 2/4 (5 · 25 · 50 · 100)  progressing` plus the current step's numbers. */
export function progressLine(status: RolloutStatus, paint: Painter, unicode: boolean): string {
  const bar = progressBar(status.weight / 100, 24, unicode);
  const steps = status.steps.map((w, i) => (i + 1 === status.step ? paint("bold", String(w)) : String(w))).join(" · ");
  const state = status.state === "promoted" ? paint("green", status.state) : isFinished(status.state) ? paint("red", status.state) : status.state === "progressing" ? paint("cyan", status.state) : paint("yellow", status.state);
  const numbers = status.current?.candidate;
  const detail = numbers && !isFinished(status.state)
    ? paint("dim", `  candidate: ${numbers.requests} req, ${formatPercent(numbers.errorRate, 1)} errors, p99 ${formatMs(numbers.p99Ms)}`)
    : "";
  return `[${bar}] ${String(status.weight).padStart(3)}% → ${status.backend}  step ${status.step}/${status.steps.length} (${steps})  ${state}${detail}`;
}

function eventLine(event: RolloutEvent, paint: Painter): string {
  const bad = event.type === "rolled-back" || event.type === "aborted";
  const type = bad ? paint("red", event.type) : event.type === "promoted" ? paint("green", event.type) : paint("cyan", event.type);
  return `${paint("dim", event.at.slice(11, 19))}  ${pad(type, 19)}  ${event.message}`;
}

function header(status: RolloutStatus): string {
  const steps = status.strategy === "blue-green" ? "check, then switch all traffic" : `steps ${status.steps.join(" → ")}%`;
  return `Rollout ${status.id} of ${status.backend} on ${status.service}/${status.route} (${status.strategy}; ${steps}, ${status.stepSeconds} s each; baseline ${status.baseline.join(", ") || "-"})`;
}

/** The exit code a rollout's state means: 0 while it may still promote or once it has, 1 when it failed. */
function exitFor(status: RolloutStatus): number {
  return status.state === "rolled-back" || status.state === "aborted" ? EXIT.failed : EXIT.ok;
}

async function readStatus(api: AdminClient, service: string): Promise<RolloutStatus> {
  const { body } = await api.call<RolloutStatus>("GET", currentRoute(service), { hints: { 404: NO_ROLLOUT_HINT(service) } });
  return body;
}

/**
 * Follows a rollout until it ends: new events as lines, the progress bar redrawn in place on a
 * terminal (printed when it changes otherwise), JSON lines with --json.
 */
async function follow(ctx: Context, api: AdminClient, service: string, first: RolloutStatus, intervalMs: number): Promise<number> {
  const out = ctx.out;
  const p = out.paint;
  const printed = new Set<string>();
  let lastProgress = "";
  let lastRevision: string | undefined;
  let status = first;
  let lostSince: number | undefined;
  const keyOf = (e: RolloutEvent): string => `${e.at}|${e.type}|${e.message}`;
  const clearProgress = (): void => {
    if (out.interactive && lastProgress) out.write("\r\x1b[K");
  };
  if (!out.json) out.line(header(status));
  for (;;) {
    const revision = `${status.revision}|${status.state}|${status.weight}|${status.events.length}`;
    if (out.json) {
      if (revision !== lastRevision) out.document(status);
    } else {
      const fresh = [...status.events].sort((a, b) => a.at.localeCompare(b.at)).filter((e) => !printed.has(keyOf(e)));
      if (fresh.length > 0) {
        clearProgress();
        for (const event of fresh) {
          printed.add(keyOf(event));
          out.line(eventLine(event, p));
        }
        if (out.interactive) lastProgress = "";
      }
      // A terminal redraws the bar with the step's live numbers; a log gets a line per step change.
      const progress = out.interactive ? progressLine(status, p, true) : `${status.state}|${status.weight}|${status.step}`;
      if (progress !== lastProgress) {
        if (out.interactive) out.write(`\r\x1b[K${progress}`);
        else out.line(progressLine(status, p, false));
      }
      lastProgress = progress;
    }
    lastRevision = revision;
    if (isFinished(status.state)) {
      if (!out.json) {
        if (out.interactive) out.write("\n");
        out.line(status.state === "promoted" ? p("green", `${status.backend} promoted: it has all of ${status.service}'s traffic.`) : p("red", `Rollout ${status.state}${status.reason ? `: ${status.reason}` : ""}. Traffic is back on ${status.baseline.join(", ") || "the baseline"}.`));
      }
      return exitFor(status);
    }
    await sleep(intervalMs, ctx.interrupt);
    if (ctx.interrupt.aborted) break;
    try {
      status = await readStatus(api, service);
      lostSince = undefined;
    } catch (error) {
      if (ctx.interrupt.aborted) break;
      if (!(error instanceof CliError) || error.exitCode !== EXIT.unavailable) throw error;
      lostSince ??= Date.now();
      if (Date.now() - lostSince > LOST_CONTACT_MS) throw error;
    }
  }
  if (!out.json && out.interactive) out.write("\n");
  out.note(`Stopped following; the rollout goes on. \`weft rollout status ${service}\` follows it again.`);
  return EXIT.interrupted;
}

const statusCommand: Command = {
  name: "status",
  summary: "follow a rollout live until it ends",
  usage: "<service>",
  description: `Shows the service's current (or last) rollout and follows it: a progress bar of the candidate's
weight across the steps, the current step's numbers, and each event as it happens, until the
rollout is promoted, rolled back or aborted. --json prints the status as JSON lines, one per change.

Exit codes: 0 promoted (with --no-follow: not failed), 1 rolled back or aborted, 130 interrupted
while following (the rollout goes on).`,
  options: {
    "no-follow": { type: "boolean", description: "print the status once" },
    interval: { type: "string", value: "<seconds>", description: "poll period while following (0.2-60, default 1)" },
  },
  examples: ["weft rollout status pim", "weft rollout status pim --no-follow --json", "weft rollout status pim && echo promoted"],
  run: async (ctx) => {
    const [service = ""] = positionals(ctx.args, ["service"], ctx.command);
    const interval = numberOption(ctx.args, "interval", ctx.command, { min: 0.2, max: 60 }, 1) * 1000;
    const api = ctx.api();
    const status = await readStatus(api, service);
    if (!flag(ctx.args, "no-follow")) return follow(ctx, api, service, status, interval);
    if (ctx.out.json) ctx.out.document(status);
    else {
      ctx.out.line(header(status));
      for (const event of [...status.events].sort((a, b) => a.at.localeCompare(b.at))) ctx.out.line(eventLine(event, ctx.out.paint));
      ctx.out.line(progressLine(status, ctx.out.paint, ctx.out.interactive));
    }
    return exitFor(status);
  },
};

function parseSteps(raw: string, command: string): number[] {
  const steps = raw.split(",").map((s) => s.trim());
  if (steps.some((s) => !/^\d+$/.test(s))) throw usageError(`--steps must be whole percentages separated by commas (e.g. 5,25,50,100), got '${raw}'`, command);
  return steps.map(Number);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const startCommand: Command = {
  name: "start",
  summary: "start a canary or blue-green rollout of a backend",
  usage: "<service> --backend <candidate>",
  description: `Starts moving the service's traffic to a candidate backend. A canary gives it each --steps
weight for --step-seconds, judges its own attempts against the analysis thresholds, then moves on;
it is promoted after the last step or rolled back at the first failed one. Blue-green checks the
candidate on probe traffic (--probe) and then switches all traffic at once. -f reads the request
from a JSON file (the POST /admin/services/{service}/rollouts body); flags override its fields.`,
  options: {
    backend: { type: "string", value: "<name>", description: "the candidate backend (e.g. pim-v2)" },
    strategy: { type: "string", value: "<canary|blue-green>", description: "canary (default) or blue-green" },
    steps: { type: "string", value: "<list>", description: "candidate weights per step, e.g. 5,25,50,100 (canary)" },
    "step-seconds": { type: "string", value: "<seconds>", description: "how long each step lasts before it is judged (default 60)" },
    "max-error-rate": { type: "string", value: "<share>", description: "largest failed share of the candidate's attempts, 0-1 (default 0.01)" },
    "max-p99-ms": { type: "string", value: "<ms>", description: "largest p99 latency of the candidate's attempts" },
    "min-requests": { type: "string", value: "<n>", description: "attempts a step needs before it can pass (default 100)" },
    "max-error-rate-increase": { type: "string", value: "<share>", description: "largest amount the candidate's error rate may exceed the baseline's, 0-1" },
    "max-p99-ratio": { type: "string", value: "<ratio>", description: "largest candidate p99 / baseline p99, e.g. 1.5" },
    "traffic-timeout": { type: "string", value: "<seconds>", description: "how long a step may wait for min-requests before the rollout fails (default 600)" },
    route: { type: "string", value: "<name>", description: "the route whose split moves (default: the service's catch-all route)" },
    probe: { type: "string", value: "<path>", description: "send synthetic GETs of this path to the candidate (needed for blue-green)" },
    file: { type: "string", short: "f", value: "<file>", description: "the rollout request as JSON" },
    follow: { type: "boolean", description: "then follow it as `weft rollout status` does" },
  },
  examples: [
    "weft rollout start pim --backend pim-v2 --steps 5,25,50,100 --step-seconds 60 --max-error-rate 0.01 --max-p99-ms 800 --min-requests 100",
    "weft rollout start pim --backend pim-v2 --strategy blue-green --probe /products/sku-1 --follow",
    "weft rollout start pim -f rollout.json",
  ],
  run: async (ctx) => {
    const [service = ""] = positionals(ctx.args, ["service"], ctx.command);
    const c = ctx.command;
    const file = stringOption(ctx.args, "file");
    const body: Record<string, unknown> = {};
    if (file) {
      const json = readJsonFile(path.resolve(ctx.cwd, file), ctx.cwd, EXIT.usage);
      if (!isRecord(json.value)) throw usageError(`${json.display} must hold a JSON object (the rollout request)`, c);
      Object.assign(body, json.value);
    }
    const analysis: Record<string, unknown> = isRecord(body.analysis) ? { ...body.analysis } : {};
    const set = (target: Record<string, unknown>, key: string, value: unknown): void => {
      if (value !== undefined) target[key] = value;
    };
    set(body, "backend", stringOption(ctx.args, "backend"));
    const strategy = stringOption(ctx.args, "strategy");
    if (strategy !== undefined && strategy !== "canary" && strategy !== "blue-green") throw usageError(`--strategy must be canary or blue-green, got '${strategy}'`, c);
    set(body, "strategy", strategy);
    const steps = stringOption(ctx.args, "steps");
    set(body, "steps", steps === undefined ? undefined : parseSteps(steps, c));
    set(body, "stepSeconds", numberOption(ctx.args, "step-seconds", c, { min: 1, max: 86_400, integer: true }));
    set(body, "route", stringOption(ctx.args, "route"));
    const probe = stringOption(ctx.args, "probe");
    set(body, "probe", probe === undefined ? undefined : { ...(isRecord(body.probe) ? body.probe : {}), path: probe });
    set(analysis, "maxErrorRate", numberOption(ctx.args, "max-error-rate", c, { min: 0, max: 1 }));
    set(analysis, "maxP99Ms", numberOption(ctx.args, "max-p99-ms", c, { min: 1, max: 300_000, integer: true }));
    set(analysis, "minRequests", numberOption(ctx.args, "min-requests", c, { min: 1, max: 10_000_000, integer: true }));
    set(analysis, "maxErrorRateIncrease", numberOption(ctx.args, "max-error-rate-increase", c, { min: 0, max: 1 }));
    set(analysis, "maxP99Ratio", numberOption(ctx.args, "max-p99-ratio", c, { min: 1, max: 100 }));
    set(analysis, "trafficTimeoutSeconds", numberOption(ctx.args, "traffic-timeout", c, { min: 1, max: 86_400, integer: true }));
    if (Object.keys(analysis).length > 0) body.analysis = analysis;
    if (typeof body.backend !== "string") throw usageError("--backend <candidate> is required (or `backend` in the -f file)", c);

    const api = ctx.api();
    const { body: status } = await api.call<RolloutStatus>("POST", `/admin/services/${encodeURIComponent(service)}/rollouts`, {
      body,
      hints: {
        409: `Only one rollout per service at a time: \`weft rollout status ${service}\` shows the running one; promote or abort it first.`,
        422: "Nothing was started. Fix the listed fields (`weft rollout start --help`).",
      },
    });
    if (flag(ctx.args, "follow")) return follow(ctx, api, service, status, 1000);
    if (ctx.out.json) ctx.out.document(status);
    else {
      ctx.out.line(header(status));
      ctx.out.line(progressLine(status, ctx.out.paint, ctx.out.interactive));
      ctx.out.line(ctx.out.paint("dim", `Follow it: weft rollout status ${service}`));
    }
    return EXIT.ok;
  },
};

/** pause, resume, abort, promote: one POST each, with an optional reason for the timeline. */
function actionCommand(action: "pause" | "resume" | "abort" | "promote", summary: string, done: string, description: string): Command {
  return {
    name: action,
    summary,
    usage: "<service>",
    description,
    options: { reason: { type: "string", value: "<text>", description: "why (recorded in the rollout's timeline and sent to its webhook)" } },
    examples: [`weft rollout ${action} pim`, `weft rollout ${action} pim --reason "checkout errors in pim-v2"`],
    run: async (ctx) => {
      const [service = ""] = positionals(ctx.args, ["service"], ctx.command);
      const reason = stringOption(ctx.args, "reason");
      const { body: status } = await ctx.api().call<RolloutStatus>("POST", `${currentRoute(service)}/${action}`, {
        ...(reason !== undefined ? { body: { reason } } : {}),
        hints: {
          404: NO_ROLLOUT_HINT(service),
          409: `\`weft rollout status ${service} --no-follow\` shows what state the rollout is in.`,
        },
      });
      if (ctx.out.json) ctx.out.document(status);
      else {
        ctx.out.line(`${ctx.out.paint("bold", service)}: rollout of ${status.backend} ${done} (${status.state}, ${status.backend} at ${status.weight}%).`);
        ctx.out.line(progressLine(status, ctx.out.paint, ctx.out.interactive));
      }
      return EXIT.ok;
    },
  };
}

const historyCommand: Command = {
  name: "history",
  summary: "the service's rollouts, newest first",
  usage: "<service>",
  description: "Lists the service's rollouts: candidate, strategy, how far each got, how it ended and why.",
  options: {
    limit: { type: "string", value: "<n>", description: "how many rollouts (1-100, default 20)" },
  },
  examples: ["weft rollout history pim", "weft rollout history pim --limit 5 --json"],
  run: async (ctx) => {
    const [service = ""] = positionals(ctx.args, ["service"], ctx.command);
    const limit = numberOption(ctx.args, "limit", ctx.command, { min: 1, max: 100, integer: true }, 20);
    const { body } = await ctx.api().call<{ rollouts: RolloutStatus[] }>("GET", `/admin/services/${encodeURIComponent(service)}/rollouts?limit=${limit}`);
    if (ctx.out.json) {
      ctx.out.document(body);
      return EXIT.ok;
    }
    if (body.rollouts.length === 0) {
      ctx.out.line(`${service} has had no rollout: \`weft rollout start ${service} --backend <candidate>\` starts one.`);
      return EXIT.ok;
    }
    const p = ctx.out.paint;
    const lines = table(
      [{ title: "ROLLOUT" }, { title: "CANDIDATE" }, { title: "STRATEGY" }, { title: "STARTED" }, { title: "STEP", align: "right" }, { title: "STATE" }, { title: "REASON" }],
      body.rollouts.map((r) => [
        r.id,
        r.backend,
        r.strategy,
        r.createdAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
        `${r.step}/${r.steps.length}`,
        r.state === "promoted" ? p("green", r.state) : r.state === "rolled-back" || r.state === "aborted" ? p("red", r.state) : r.state,
        r.reason ?? "-",
      ]),
      p,
    );
    for (const line of lines) ctx.out.line(line);
    return EXIT.ok;
  },
};

export const rolloutCommand: Command = {
  name: "rollout",
  summary: "start, follow, list, pause, resume, abort or promote a progressive rollout",
  subcommands: [
    startCommand,
    statusCommand,
    historyCommand,
    actionCommand("pause", "hold a rollout at its current weight", "paused", "Holds the candidate at its current weight; steps are not judged until `weft rollout resume`."),
    actionCommand("resume", "continue a paused rollout", "resumed", "Continues a paused rollout from its current step."),
    actionCommand("abort", "stop a rollout and send traffic back to the baseline", "aborted", "Stops the rollout and restores the split it started from (the candidate at 0%)."),
    actionCommand("promote", "give the candidate all traffic now", "promoted", "Skips the remaining steps and analysis: the candidate gets all traffic at once."),
  ],
};
