/**
 * `weft status`: the mesh at a glance — services, their backends, every route's split, and health
 * from the last minute's golden metrics.
 */
import { pool } from "../../shared/pool.ts";
import { describeMatch } from "../../shared/route-match.ts";
import { flag, numberOption, positionals, stringOption } from "../args.ts";
import type { ServiceMetrics, ServiceView, VersionsView } from "../api-types.ts";
import type { AdminClient } from "../client.ts";
import type { Command } from "../command.ts";
import { CliError, EXIT, usageError } from "../errors.ts";
import { formatMs, formatPercent, formatRps, table, type Painter } from "../output.ts";

/** Health from golden metrics, as a word an operator scans for. */
export type Health = "ok" | "idle" | "degraded" | "failing" | "unknown";

/** Below this success rate a service is degraded; below the second, failing. */
const DEGRADED_BELOW = 0.99;
const FAILING_BELOW = 0.9;

/** What a service's metrics (one service's, or a list entry's) say about it. */
export function healthOf(metrics: Pick<ServiceMetrics, "total"> | null): Health {
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

/** A service's golden metrics as the `/admin/metrics` list gives them (`active`: its shard was read). */
export interface MetricsSummary {
  service: string;
  active: boolean;
  total: ServiceMetrics["total"];
}

/** One page of `GET /admin/metrics?limit=…` or `GET /admin/services`. */
interface ListPage<T> {
  total: number;
  next: string | null;
  services: T[];
}

/** Pages the CLI follows at most (1,000 services each): a bound, not a limit anyone meets. */
const MAX_PAGES = 50;
/** Names per `?names=` request (the admin API's limit). */
const NAMES_PER_CALL = 100;

/** Follows a paged list from `path` (which has a `?`) to its end, or until `enough` items are in. */
async function collect<T>(api: AdminClient, path: string, enough = Number.POSITIVE_INFINITY): Promise<{ items: T[]; total: number }> {
  const items: T[] = [];
  let cursor: string | null = null;
  let total = 0;
  for (let page = 0; page < MAX_PAGES; page++) {
    const { body }: { body: ListPage<T> } = await api.call<ListPage<T>>("GET", `${path}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...body.services);
    total = body.total;
    cursor = body.next;
    if (cursor === null || items.length >= enough) break;
  }
  return { items, total };
}

/** The named services as the admin API shows them, in the order named (a few calls of up to 100 names). */
export async function viewsOf(api: AdminClient, names: ReadonlyArray<string>): Promise<ServiceView[]> {
  const chunks: string[][] = [];
  for (let i = 0; i < names.length; i += NAMES_PER_CALL) chunks.push(names.slice(i, i + NAMES_PER_CALL));
  const pages = await pool(chunks, 4, async (chunk) => (await api.call<ListPage<ServiceView>>("GET", `/admin/services?limit=${NAMES_PER_CALL}&names=${chunk.join(",")}`)).body.services);
  const byName = new Map(pages.flat().map((s) => [s.name, s]));
  return names.flatMap((name) => byName.get(name) ?? []);
}

/** The one service named (exit 1 when it does not exist). */
export async function findService(api: AdminClient, name: string): Promise<ServiceView> {
  const { body } = await api.call<ListPage<ServiceView>>("GET", `/admin/services?service=${encodeURIComponent(name)}`);
  const found = body.services[0];
  if (!found) throw new CliError(EXIT.failed, `no service named '${name}'`, "`weft status --search <text>` finds services whose name contains the text.");
  return found;
}

/** Ranking of services with traffic: `"busiest"` by requests per second, `"attention"` failing, then degraded, then busiest. */
export type Ranking = "busiest" | "attention";

const ATTENTION: Record<Health, number> = { failing: 0, degraded: 1, ok: 2, unknown: 3, idle: 4 };

/** Orders service rows for display: by `ranking`, ties by name. Pure. */
export function rankServices<T extends { name: string; health: Health; rps: number }>(rows: ReadonlyArray<T>, ranking: Ranking): T[] {
  return [...rows].sort(
    (a, b) =>
      (ranking === "attention" ? ATTENTION[a.health] - ATTENTION[b.health] : 0) ||
      b.rps - a.rps ||
      (a.health === "idle" ? 1 : 0) - (b.health === "idle" ? 1 : 0) ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

/** What the CLI shows of a mesh of any size: counts over every service, and the services to list. */
export interface MeshOverview {
  /** Services matching the search (all when none). */
  total: number;
  /** Of those, services with telemetry in the window. */
  active: number;
  /** Health counts over all `total` services (services without telemetry are idle). */
  health: Record<Health, number>;
  /** The services to list, ranked, at most the limit. */
  rows: Array<{ name: string; health: Health; rps: number; metrics: ServiceMetrics["total"] | null }>;
}

/** Which services an overview covers and how many it lists (`limit` null: all). */
export interface OverviewRequest {
  window: number;
  limit: number | null;
  search?: string | undefined;
  ranking: Ranking;
}

/**
 * The mesh at a glance, with calls that do not grow with the mesh: the metrics of services with
 * telemetry (usually a few pages at most), then only as many idle services as the limit leaves room for.
 */
export async function meshOverview(api: AdminClient, request: OverviewRequest): Promise<MeshOverview> {
  const search = request.search ? `&q=${encodeURIComponent(request.search)}` : "";
  const activeList = await collect<MetricsSummary>(api, `/admin/metrics?active=true&limit=1000&window=${request.window}${search}`);
  const activeRows: MeshOverview["rows"] = activeList.items.map((m) => ({ name: m.service, health: healthOf(m), rps: m.total.rps, metrics: m.total }));
  const ranked = rankServices(activeRows, request.ranking);
  const limit = request.limit ?? Number.POSITIVE_INFINITY;
  const shown = ranked.slice(0, limit);
  const activeNames = new Set(activeRows.map((r) => r.name));
  // Idle services fill what the limit leaves, in name order; the first page also gives the total.
  // (A list with no room left asks for one service: only the total is needed.)
  const room = limit - shown.length;
  const enough = room > 0 ? room + activeNames.size : 0;
  const idle = await collect<ServiceView>(api, `/admin/services?limit=${Math.max(1, Math.min(1000, enough))}${search}`, enough);
  if (room > 0) {
    for (const s of idle.items) {
      if (shown.length >= limit) break;
      if (!activeNames.has(s.name)) shown.push({ name: s.name, health: "idle", rps: 0, metrics: null });
    }
  }
  const health: Record<Health, number> = { ok: 0, idle: 0, degraded: 0, failing: 0, unknown: 0 };
  for (const row of activeRows) health[row.health]++;
  health.idle += Math.max(0, idle.total - activeRows.length);
  return { total: idle.total, active: activeRows.length, health, rows: shown };
}

/** The overview of one service (exit 1 when it does not exist). */
export async function serviceOverview(api: AdminClient, name: string, window: number): Promise<MeshOverview> {
  const service = await findService(api, name);
  const m = (await metricsOf(api, [service], window)).get(service.name) ?? null;
  const health = healthOf(m);
  return {
    total: 1,
    active: m && m.total.requests > 0 ? 1 : 0,
    health: { ok: 0, idle: 0, degraded: 0, failing: 0, unknown: 0, [health]: 1 },
    rows: [{ name: service.name, health, rps: m?.total.rps ?? 0, metrics: m?.total ?? null }],
  };
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

/** "1 service" / "4,000 services". */
export function countOf(n: number, noun: string): string {
  return `${n.toLocaleString("en-US")} ${noun}${n === 1 ? "" : "s"}`;
}

/** The overview's one-line summary: how many services, how many with traffic, how many need attention. */
export function summaryLine(o: MeshOverview): string {
  const attention = [o.health.failing > 0 ? `${o.health.failing} failing` : "", o.health.degraded > 0 ? `${o.health.degraded} degraded` : ""].filter((s) => s !== "");
  return `${countOf(o.total, "service")}: ${o.active.toLocaleString("en-US")} with traffic${attention.length > 0 ? ` (${attention.join(", ")})` : ""}, ${o.health.idle.toLocaleString("en-US")} idle`;
}

/** The note under a cut list: what was left out and how to see it. */
export function moreLine(o: MeshOverview): string | null {
  if (o.rows.length >= o.total) return null;
  return `Showing ${o.rows.length.toLocaleString("en-US")} of ${countOf(o.total, "service")} (services with traffic first): --limit <n>, --all, --service <name> or --search <text> for others.`;
}

function weightsText(split: Record<string, number>, paint: Painter): string {
  return Object.entries(split)
    .map(([backend, weight]) => (weight > 0 ? `${backend}=${paint("bold", String(weight))}` : paint("dim", `${backend}=0`)))
    .join(" ");
}

/** `--limit`/`--all`: how many services a listing shows (null: all). */
export function listLimit(args: Parameters<typeof flag>[0], command: string, fallback = DEFAULT_LISTED): number | null {
  if (flag(args, "all")) return null;
  return numberOption(args, "limit", command, { min: 1, max: 100_000, integer: true }, fallback);
}

/** The service a command is about: the positional or `--service` (not both). */
export function serviceArg(args: Parameters<typeof flag>[0], positional: string | undefined, command: string): string | undefined {
  const option = stringOption(args, "service");
  if (option !== undefined && positional !== undefined && option !== positional) throw usageError("give the service once: as an argument or with --service", command);
  return option ?? positional;
}

/** Services a listing shows unless told otherwise. */
const DEFAULT_LISTED = 25;

/** The listing options status and top share. */
export const LISTING_OPTIONS = {
  limit: { type: "string", value: "<n>", description: `services listed (default ${DEFAULT_LISTED}; services with traffic first)` },
  all: { type: "boolean", description: "list every service" },
  service: { type: "string", value: "<name>", description: "only this service" },
  search: { type: "string", value: "<text>", description: "only services whose name contains the text" },
} as const;

interface StatusRow {
  service: ServiceView;
  metrics: ServiceMetrics["total"] | null;
  health: Health;
}

export const statusCommand: Command = {
  name: "status",
  summary: "services, backends, splits and health",
  usage: "[service]",
  description: `A summary of the mesh, then its services with their backends, each route's traffic split, and
health over the last minute: requests per second, success rate (non-5xx) and p99 latency from the
proxies' golden metrics. Health is ok (≥ 99% success), degraded (lower, or backends ejected),
failing (< 90%), idle (no traffic) or unknown (metrics unavailable). Failing and degraded services
come first, then the busiest; a large mesh is cut to --limit services (--all lists every one).`,
  options: {
    window: { type: "string", value: "<seconds>", description: "metrics window (10-3600, default 60)" },
    ...LISTING_OPTIONS,
  },
  examples: ["weft status", "weft status pim", "weft status --search checkout --limit 50", "weft status --all --json | jq '.services[].name'"],
  run: async (ctx) => {
    const [positional] = positionals(ctx.args, ["service?"], ctx.command);
    const only = serviceArg(ctx.args, positional, ctx.command);
    const window = numberOption(ctx.args, "window", ctx.command, { min: 10, max: 3600, integer: true }, 60);
    const limit = listLimit(ctx.args, ctx.command);
    const search = stringOption(ctx.args, "search");
    const api = ctx.api();
    const [versions, overview] = await Promise.all([
      api.call<VersionsView>("GET", "/admin/config/versions?limit=1"),
      only !== undefined ? serviceOverview(api, only, window) : meshOverview(api, { window, limit, search, ranking: "attention" }),
    ]);
    const views = await viewsOf(api, overview.rows.map((r) => r.name));
    const byName = new Map(views.map((v) => [v.name, v]));
    const rows: StatusRow[] = overview.rows.flatMap((r) => {
      const service = byName.get(r.name);
      return service ? [{ service, metrics: r.metrics, health: r.health }] : [];
    });
    const configVersion = versions.body.current;
    if (ctx.out.json) {
      ctx.out.document({
        url: api.target.url,
        configVersion,
        windowSeconds: window,
        total: overview.total,
        withTraffic: overview.active,
        health: overview.health,
        shown: rows.length,
        services: rows.map(({ service, metrics: m, health }) => ({
          name: service.name,
          version: service.version,
          health,
          metrics: m ? { requests: m.requests, rps: m.rps, successRate: m.successRate, p50Ms: m.p50Ms, p99Ms: m.p99Ms, ejections: m.ejections } : null,
          backends: service.backends.map((b) => ({ name: b.name, type: b.type })),
          routes: service.routes.map((r) => ({ name: r.name, path: r.match.path, methods: r.match.methods ?? null, match: describeMatch(r.match), matches: (r.matches ?? [r.match]).length, split: r.split, sticky: r.sticky })),
          policy: service.policy !== null,
        })),
      });
      return EXIT.ok;
    }
    const p = ctx.out.paint;
    ctx.out.line(`${p("bold", "Control plane")} ${api.target.url}   config version ${configVersion}   metrics over ${window} s`);
    ctx.out.line(summaryLine(overview));
    ctx.out.line();
    if (overview.total === 0) {
      ctx.out.line(search ? `No service name contains '${search}'.` : "No services yet: `weft apply -f weft.manifest.json` loads the mesh config.");
      return EXIT.ok;
    }
    const serviceTable = table(
      [{ title: "SERVICE" }, { title: "HEALTH" }, { title: "RPS", align: "right" }, { title: "SUCCESS", align: "right" }, { title: "P99", align: "right" }, { title: "POLICY" }, { title: "BACKENDS" }],
      rows.map(({ service, metrics: m, health }) => [
        p("bold", service.name),
        paintHealth(health, p),
        m && m.requests > 0 ? formatRps(m.rps) : "-",
        formatPercent(m?.successRate, 1),
        formatMs(m?.p99Ms),
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
    const more = moreLine(overview);
    if (more) {
      ctx.out.line();
      ctx.out.line(p("dim", more));
    }
    return EXIT.ok;
  },
};
