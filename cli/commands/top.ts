/**
 * `weft top`: golden metrics of every service, refreshed in place on a terminal (as `linkerd viz
 * top`/`stat -w`); one snapshot otherwise.
 */
import { flag, numberOption, positionals, stringOption } from "../args.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { formatMs, formatPercent, formatRps, table, type Painter } from "../output.ts";
import { sleep } from "../sse.ts";
import { LISTING_OPTIONS, listLimit, meshOverview, moreLine, paintHealth, serviceArg, serviceOverview, summaryLine, type Health, type MeshOverview, type OverviewRequest } from "./status.ts";

const CLEAR = "\x1b[H\x1b[2J";
const HIDE_CURSOR = "\x1b[?25l";
const SHOW_CURSOR = "\x1b[?25h";

/** One service's row of `top`. */
export interface TopRow {
  service: string;
  health: Health;
  requests: number;
  rps: number;
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  status4xx: number;
  status5xx: number;
  retries: number;
  rateLimited: number;
  ejections: number;
}

/** Rows of `top` from an overview's rows (already ranked), keeping their order. */
export function topRows(rows: MeshOverview["rows"]): TopRow[] {
  return rows.map(({ name, health, metrics: m }) => ({
    service: name,
    health,
    requests: m?.requests ?? 0,
    rps: m?.rps ?? 0,
    successRate: m?.successRate ?? null,
    p50Ms: m?.p50Ms ?? null,
    p95Ms: m?.p95Ms ?? null,
    p99Ms: m?.p99Ms ?? null,
    status4xx: m?.statusClasses["4xx"] ?? 0,
    status5xx: m?.statusClasses["5xx"] ?? 0,
    retries: m?.retries ?? 0,
    rateLimited: m?.rateLimited ?? 0,
    ejections: m?.ejections ?? 0,
  }));
}

function render(rows: ReadonlyArray<TopRow>, paint: Painter): string[] {
  return table(
    [
      { title: "SERVICE" },
      { title: "HEALTH" },
      { title: "RPS", align: "right" },
      { title: "SUCCESS", align: "right" },
      { title: "P50", align: "right" },
      { title: "P95", align: "right" },
      { title: "P99", align: "right" },
      { title: "REQUESTS", align: "right" },
      { title: "4XX", align: "right" },
      { title: "5XX", align: "right" },
      { title: "RETRIES", align: "right" },
      { title: "LIMITED", align: "right" },
    ],
    rows.map((r) => [
      paint("bold", r.service),
      paintHealth(r.health, paint),
      r.requests > 0 ? formatRps(r.rps) : "-",
      formatPercent(r.successRate, 1),
      formatMs(r.p50Ms),
      formatMs(r.p95Ms),
      formatMs(r.p99Ms),
      String(r.requests),
      r.status4xx > 0 ? paint("yellow", String(r.status4xx)) : "0",
      r.status5xx > 0 ? paint("red", String(r.status5xx)) : "0",
      String(r.retries),
      String(r.rateLimited),
    ]),
    paint,
  );
}

export const topCommand: Command = {
  name: "top",
  summary: "live golden metrics per service",
  description: `Requests per second, success rate, latency percentiles, 4xx/5xx, retries and rate-limited
requests of the services with traffic over the last --window seconds, busiest first, then idle
services up to --limit (--all lists every service). On a terminal the table
refreshes every --interval seconds until Ctrl-C; with --once, or when output goes to a pipe, it
prints one snapshot. --json prints one JSON document per refresh (JSON lines).`,
  options: {
    once: { type: "boolean", description: "print one snapshot and exit" },
    interval: { type: "string", value: "<seconds>", description: "refresh period (1-60, default 2)" },
    window: { type: "string", value: "<seconds>", description: "metrics window (10-3600, default 60)" },
    ...LISTING_OPTIONS,
  },
  examples: ["weft top", "weft top --once", "weft top --search checkout", "weft top --json --interval 5 > metrics.jsonl"],
  run: async (ctx) => {
    positionals(ctx.args, [], ctx.command);
    const only = serviceArg(ctx.args, undefined, ctx.command);
    const interval = numberOption(ctx.args, "interval", ctx.command, { min: 1, max: 60 }, 2) * 1000;
    const window = numberOption(ctx.args, "window", ctx.command, { min: 10, max: 3600, integer: true }, 60);
    const request: OverviewRequest = { window, limit: listLimit(ctx.args, ctx.command), search: stringOption(ctx.args, "search"), ranking: "busiest" };
    const live = !flag(ctx.args, "once") && (ctx.out.json || ctx.out.interactive);
    const api = ctx.api();
    const redraw = live && !ctx.out.json;
    if (redraw) ctx.out.write(HIDE_CURSOR);
    let lastError: string | undefined;
    let refreshed = 0;
    try {
      do {
        let rows: TopRow[] | undefined;
        let overview: MeshOverview | undefined;
        try {
          overview = only === undefined ? await meshOverview(api, request) : await serviceOverview(api, only, window);
          rows = topRows(overview.rows);
          lastError = undefined;
        } catch (error) {
          // Ctrl-C ends a live view normally; the first refresh fails loudly; later ones keep the
          // screen and say what went wrong.
          if (ctx.interrupt.aborted) return EXIT.ok;
          if (refreshed === 0 || !(error instanceof CliError)) throw error;
          lastError = error.message;
        }
        refreshed++;
        const at = new Date().toISOString();
        if (ctx.out.json) {
          ctx.out.document(
            rows && overview
              ? { at, url: api.target.url, windowSeconds: window, total: overview.total, withTraffic: overview.active, health: overview.health, services: rows }
              : { at, url: api.target.url, error: lastError },
          );
        } else {
          const p = ctx.out.paint;
          const header = `${p("bold", "weft top")}  ${api.target.url}  window ${window} s  ${at.slice(11, 19)} UTC${live ? p("dim", "  (Ctrl-C to quit)") : ""}`;
          const more = overview ? moreLine(overview) : null;
          const body = rows && overview ? [summaryLine(overview), "", ...render(rows, p), ...(more ? ["", p("dim", more)] : [])] : [];
          const notice = lastError ? [p("red", `refresh failed: ${lastError}; retrying`)] : [];
          ctx.out.write(`${redraw ? CLEAR : ""}${[header, "", ...notice, ...body].join("\n")}\n`);
        }
        if (live) await sleep(interval, ctx.interrupt);
      } while (live && !ctx.interrupt.aborted);
    } finally {
      if (redraw) ctx.out.write(SHOW_CURSOR);
    }
    return EXIT.ok;
  },
};
