/**
 * `weft status`: the mesh at a glance — services, their backends, every route's split, and health
 * from the last minute's golden metrics.
 */
import { pool } from "../../shared/pool.ts";
import { describeMatch } from "../../shared/route-match.ts";
import { numberOption, positionals } from "../args.ts";
import type { ServiceMetrics, ServiceView, VersionsView } from "../api-types.ts";
import type { AdminClient } from "../client.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT } from "../errors.ts";
import { formatMs, formatPercent, formatRps, table, type Painter } from "../output.ts";

/** Health from golden metrics, as a word an operator scans for. */
export type Health = "ok" | "idle" | "degraded" | "failing" | "unknown";

/** Below this success rate a service is degraded; below the second, failing. */
const DEGRADED_BELOW = 0.99;
const FAILING_BELOW = 0.9;

/** What a service's metrics say about it. */
export function healthOf(metrics: ServiceMetrics | null): Health {
  if (!metrics) return "unknown";
  const rate = metrics.total.successRate;
  if (metrics.total.requests === 0 || rate === null) return "idle";
  if (rate < FAILING_BELOW) return "failing";
  return rate < DEGRADED_BELOW || metrics.total.ejections > 0 ? "degraded" : "ok";
}

/** A health word in its color. */
export function paintHealth(health: Health, paint: Painter): string {
  const style = health === "ok" ? "green" : health === "degraded" ? "yellow" : health === "failing" ? "red" : "dim";
  return paint(style, health);
}

/** The services to show: all, or the one named (exit 1 when it does not exist). */
export async function listServices(api: AdminClient, only: string | undefined): Promise<ServiceView[]> {
  const { body } = await api.call<{ services: ServiceView[] }>("GET", "/admin/services");
  if (only === undefined) return body.services;
  const found = body.services.filter((s) => s.name === only);
  if (found.length === 0) {
    throw new CliError(EXIT.failed, `no service named '${only}'`, `Services: ${body.services.map((s) => s.name).join(", ") || "none (apply a config with `weft apply -f`)"}.`);
  }
  return found;
}

/**
 * Each service's metrics over `window` seconds; a service whose metrics cannot be read shows as
 * unknown rather than failing the whole command.
 */
export async function metricsOf(api: AdminClient, services: ReadonlyArray<ServiceView>, window: number): Promise<Map<string, ServiceMetrics | null>> {
  const rows = await pool(services, 8, async (s) => {
    try {
      const { body } = await api.call<ServiceMetrics>("GET", `/admin/metrics?service=${encodeURIComponent(s.name)}&window=${window}`);
      return [s.name, body] as const;
    } catch (error) {
      if (error instanceof CliError && error.exitCode === EXIT.failed) return [s.name, null] as const;
      throw error;
    }
  });
  return new Map(rows);
}

function weightsText(split: Record<string, number>, paint: Painter): string {
  return Object.entries(split)
    .map(([backend, weight]) => (weight > 0 ? `${backend}=${paint("bold", String(weight))}` : paint("dim", `${backend}=0`)))
    .join(" ");
}

export const statusCommand: Command = {
  name: "status",
  summary: "services, backends, splits and health",
  usage: "[service]",
  description: `Lists every service (or one) with its backends, each route's traffic split, and its health over
the last minute: requests per second, success rate (non-5xx) and p99 latency from the proxies'
golden metrics. Health is ok (≥ 99% success), degraded (lower, or backends ejected), failing
(< 90%), idle (no traffic) or unknown (metrics unavailable).`,
  options: {
    window: { type: "string", value: "<seconds>", description: "metrics window (10-3600, default 60)" },
  },
  examples: ["weft status", "weft status pim", "weft status --json | jq '.services[].name'"],
  run: async (ctx) => {
    const [only] = positionals(ctx.args, ["service?"], ctx.command);
    const window = numberOption(ctx.args, "window", ctx.command, { min: 10, max: 3600, integer: true }, 60);
    const api = ctx.api();
    const [services, versions] = await Promise.all([listServices(api, only), api.call<VersionsView>("GET", "/admin/config/versions?limit=1")]);
    const metrics = await metricsOf(api, services, window);
    const rows = services.map((s) => {
      const m = metrics.get(s.name) ?? null;
      return { service: s, metrics: m, health: healthOf(m) };
    });
    if (ctx.out.json) {
      ctx.out.document({
        url: api.target.url,
        configVersion: versions.body.current,
        windowSeconds: window,
        services: rows.map(({ service, metrics: m, health }) => ({
          name: service.name,
          version: service.version,
          health,
          metrics: m ? { requests: m.total.requests, rps: m.total.rps, successRate: m.total.successRate, p50Ms: m.total.p50Ms, p99Ms: m.total.p99Ms, ejections: m.total.ejections } : null,
          backends: service.backends.map((b) => ({ name: b.name, type: b.type })),
          routes: service.routes.map((r) => ({ name: r.name, path: r.match.path, methods: r.match.methods ?? null, match: describeMatch(r.match), matches: (r.matches ?? [r.match]).length, split: r.split, sticky: r.sticky })),
          policy: service.policy !== null,
        })),
      });
      return EXIT.ok;
    }
    const p = ctx.out.paint;
    ctx.out.line(`${p("bold", "Control plane")} ${api.target.url}   config version ${versions.body.current}   ${services.length} service${services.length === 1 ? "" : "s"}   metrics over ${window} s`);
    ctx.out.line();
    if (services.length === 0) {
      ctx.out.line("No services yet: `weft apply -f weft.manifest.json` loads the mesh config.");
      return EXIT.ok;
    }
    const serviceTable = table(
      [{ title: "SERVICE" }, { title: "HEALTH" }, { title: "RPS", align: "right" }, { title: "SUCCESS", align: "right" }, { title: "P99", align: "right" }, { title: "POLICY" }, { title: "BACKENDS" }],
      rows.map(({ service, metrics: m, health }) => [
        p("bold", service.name),
        paintHealth(health, p),
        m && m.total.requests > 0 ? formatRps(m.total.rps) : "-",
        formatPercent(m?.total.successRate, 1),
        formatMs(m?.total.p99Ms),
        service.policy !== null ? "yes" : p("yellow", "none"),
        service.backends.map((b) => (b.type === "worker" ? b.name : `${b.name} (${b.type})`)).join(", "),
      ]),
      p,
    );
    for (const line of serviceTable) ctx.out.line(line);
    ctx.out.line();
    const routeTable = table(
      [{ title: "ROUTE" }, { title: "MATCH" }, { title: "SPLIT" }, { title: "STICKY" }],
      rows.flatMap(({ service }) =>
        service.routes.map((r) => [
          `${service.name}/${r.name}`,
          `${describeMatch(r.match)}${r.matches && r.matches.length > 1 ? ` (or ${r.matches.length - 1} more)` : ""}`,
          weightsText(r.split, p),
          r.sticky ?? "-",
        ]),
      ),
      p,
    );
    for (const line of routeTable) ctx.out.line(line);
    return EXIT.ok;
  },
};
