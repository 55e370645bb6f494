/**
 * What the mesh saw: golden metrics (`/admin/metrics`, Prometheus `/metrics`), the service graph,
 * recent errors and the live tap. Each service's telemetry lives in its own shard; the mesh-wide
 * endpoints read only the shards of services the TelemetryIndex saw telemetry from lately (an idle
 * shard is never woken by a scrape), a bounded number at a time, and list services in pages.
 */
import { Hono, type Context } from "hono";
import * as z from "zod";
import { readQuery } from "../../shared/body.ts";
import { Name } from "../../shared/config.ts";
import { prometheusText, serviceGraph, serviceMetrics, SLOT_SECONDS, windowSlots, type ServiceMetrics, type ServiceTotals, type TapEvent } from "../../shared/metrics.ts";
import { filterOf, ListQuery, matchesFilter, pageNames, type ListQueryValue, type Page } from "../../shared/paging.ts";
import { pool } from "../../shared/pool.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ServiceView } from "../../shared/views.ts";
import { configStoreOf } from "../../durable-objects/config-store.ts";
import { INDEX_TTL_MS, telemetryIndexOf } from "../../durable-objects/telemetry-index.ts";
import { RETENTION_SECONDS, telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";

type App = Hono<{ Bindings: ControlPlaneEnv }>;
type Ctx = Context<{ Bindings: ControlPlaneEnv }>;

/** Shards read at once by the mesh-wide endpoints. */
const FAN_OUT = 32;

const Window = z.coerce.number().int().min(10).max(RETENTION_SECONDS).default(60);
/** `?active=true`: list only services with telemetry in the window. */
const ActiveOnly = z.enum(["true", "false"]).default("false").transform((v) => v === "true");
const MetricsQuery = z.object({ service: Name, window: Window });
const MetricsListQuery = ListQuery.extend({ window: Window, active: ActiveOnly, detail: z.enum(["summary", "full"]).default("summary") });
/** The graph's `?active=`: unset means every service while they fit on one page, else those with traffic. */
const GraphActive = z.enum(["true", "false"]).optional().transform((v) => (v === undefined ? undefined : v === "true"));
const GraphQuery = ListQuery.extend({ window: Window, active: GraphActive });
/** Parameters that turn `/admin/metrics` from one service's metrics into a page of services. */
const LIST_PARAMS = ["limit", "cursor", "q", "names", "active", "detail"] as const;

/** One service of an `/admin/metrics` list; `active` says whether its shard was read. */
export type ServiceMetricsEntry = (ServiceMetrics & { active: boolean }) | { service: string; active: boolean; total: ServiceMetrics["total"] };

/** The services and which of them had telemetry since `since` (ms), from the ConfigStore and the TelemetryIndex. */
async function servicesAndActivity(c: Ctx, since: number): Promise<{ names: string[]; active: Set<string> }> {
  const [names, active] = await Promise.all([configStoreOf(c.env).serviceNames(), telemetryIndexOf(c.env).activeSince(since)]);
  return { names, active: new Set(active) };
}

/**
 * The page a list query asks for, of every service or (with `activeOnly`) of those with telemetry,
 * and how many services with telemetry pass the filter.
 */
function listPage(names: ReadonlyArray<string>, active: ReadonlySet<string>, query: ListQueryValue, activeOnly: boolean): Page<string> & { activeCount: number } {
  const filter = filterOf(query);
  const candidates = activeOnly ? names.filter((n) => active.has(n)) : names;
  const page = pageNames(candidates, filter, { limit: query.limit, after: query.cursor });
  const activeCount = names.reduce((n, name) => n + (active.has(name) && matchesFilter(name, filter) ? 1 : 0), 0);
  return { ...page, activeCount };
}
const ErrorsQuery = z.object({ service: Name.optional(), limit: z.coerce.number().int().min(1).max(200).default(50) });
const TapQuery = z.object({ service: Name });


async function findService(c: Ctx, name: string): Promise<ServiceView | Response> {
  const view = await configStoreOf(c.env).readService(name);
  return view ?? problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
}

/** `/admin/metrics`, `/admin/graph`, `/admin/errors`, `/admin/tap` (mounted behind the admin token). */
export function observabilityApi(): App {
  const api: App = new Hono();

  api.get("/metrics", async (c) => {
    const params = new URL(c.req.url).searchParams;
    if (LIST_PARAMS.some((p) => params.has(p))) return metricsList(c);
    const query = readQuery(c.req.raw, MetricsQuery);
    if (!query.ok) return query.response;
    const service = await findService(c, query.value.service);
    if (service instanceof Response) return service;
    const now = Date.now();
    const { fromSlot, toSlot } = windowSlots(query.value.window, now);
    const { rows, ejections } = await telemetryStoreOf(c.env, service.name).window(fromSlot, toSlot);
    return c.json(serviceMetrics(service.name, rows, ejections, fromSlot, toSlot, now));
  });

  // The graph of one page of services. A mesh that fits on the page (`?limit=`, default 100) shows
  // every service; a larger one only the services with traffic in the window, unless `?active=`
  // says otherwise. Only services with telemetry in the window are read.
  api.get("/graph", async (c) => {
    const query = readQuery(c.req.raw, GraphQuery);
    if (!query.ok) return query.response;
    const now = Date.now();
    const { fromSlot, toSlot } = windowSlots(query.value.window, now);
    const { names, active } = await servicesAndActivity(c, fromSlot * SLOT_SECONDS * 1000);
    const fits = names.reduce((n, name) => n + (matchesFilter(name, filterOf(query.value)) ? 1 : 0), 0) <= query.value.limit;
    const activeOnly = query.value.active ?? !fits;
    const page = listPage(names, active, query.value, activeOnly);
    const views = new Map((await configStoreOf(c.env).readServices(page.items.filter((n) => active.has(n)))).map((v) => [v.name, v]));
    const observed = await pool(page.items, FAN_OUT, async (name) => {
      const view = views.get(name);
      return {
        name,
        externalBackends: new Set(view ? view.backends.filter((b) => b.type === "external").map((b) => b.name) : []),
        series: view ? (await telemetryStoreOf(c.env, name).window(fromSlot, toSlot)).rows : [],
      };
    });
    // Rates per second that has passed: the window ends in the current, partly filled slot.
    const graph = serviceGraph(observed, Math.max(1, now / 1000 - fromSlot * SLOT_SECONDS));
    return c.json({ ...graph, activeOnly, total: page.total, active: page.activeCount, next: page.next });
  });

  api.get("/errors", async (c) => {
    const query = readQuery(c.req.raw, ErrorsQuery);
    if (!query.ok) return query.response;
    const { service, limit } = query.value;
    let names: string[];
    if (service) {
      const found = await findService(c, service);
      if (found instanceof Response) return found;
      names = [found.name];
    } else {
      // Errors are kept per shard without a time limit; an hour without telemetry leaves a shard out.
      const { names: all, active } = await servicesAndActivity(c, Date.now() - RETENTION_SECONDS * 1000);
      names = all.filter((n) => active.has(n));
    }
    const lists = await pool(names, FAN_OUT, (name) => telemetryStoreOf(c.env, name).recentErrors(limit));
    const errors: TapEvent[] = lists.flat().sort((a, b) => b.at.localeCompare(a.at)).slice(0, limit);
    return c.json({ errors });
  });

  // Server-sent events from the service's shard; the stream lasts until the client leaves.
  api.get("/tap", async (c) => {
    const query = readQuery(c.req.raw, TapQuery);
    if (!query.ok) return query.response;
    const service = await findService(c, query.value.service);
    if (service instanceof Response) return service;
    const shard = c.env.TELEMETRY.get(c.env.TELEMETRY.idFromName(service.name));
    return shard.fetch("https://telemetry.internal/tap", { signal: c.req.raw.signal });
  });

  return api;
}

/**
 * `/admin/metrics?limit=…` (or `cursor`, `q`, `names`, `active`, `detail`): one page of services in
 * name order with their golden metrics. Services without telemetry in the window are answered
 * as idle without reading their shards. `detail=full` gives each service what `?service=` gives.
 */
async function metricsList(c: Ctx): Promise<Response> {
  const query = readQuery(c.req.raw, MetricsListQuery);
  if (!query.ok) return query.response;
  const now = Date.now();
  const { fromSlot, toSlot } = windowSlots(query.value.window, now);
  const { names, active } = await servicesAndActivity(c, fromSlot * SLOT_SECONDS * 1000);
  const page = listPage(names, active, query.value, query.value.active);
  const services: ServiceMetricsEntry[] = await pool(page.items, FAN_OUT, async (name) => {
    const read = active.has(name);
    const { rows, ejections } = read ? await telemetryStoreOf(c.env, name).window(fromSlot, toSlot) : { rows: [], ejections: 0 };
    const metrics = serviceMetrics(name, rows, ejections, fromSlot, toSlot, now);
    return query.value.detail === "full" ? { ...metrics, active: read } : { service: name, active: read, total: metrics.total };
  });
  return c.json({
    windowSeconds: (toSlot - fromSlot + 1) * SLOT_SECONDS,
    from: new Date(fromSlot * SLOT_SECONDS * 1000).toISOString(),
    to: new Date((toSlot + 1) * SLOT_SECONDS * 1000).toISOString(),
    total: page.total,
    active: page.activeCount,
    next: page.next,
    services,
  });
}

/**
 * `GET /metrics`: Prometheus text exposition of the running totals of every service that sent
 * telemetry in the last day (the TelemetryIndex's memory); other shards are not read.
 */
export async function prometheusMetrics(c: Ctx): Promise<Response> {
  const { names, active } = await servicesAndActivity(c, Date.now() - INDEX_TTL_MS);
  const read = names.filter((n) => active.has(n)).sort();
  const totals: ServiceTotals[] = await pool(read, FAN_OUT, async (service) => ({ service, ...(await telemetryStoreOf(c.env, service).totals()) }));
  return new Response(prometheusText(totals), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" } });
}
