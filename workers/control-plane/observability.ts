/**
 * What the mesh saw: golden metrics (`/admin/metrics`, Prometheus `/metrics`), the service graph,
 * recent errors and the live tap. Each service's telemetry lives in its own shard; these endpoints
 * read the shards they need in parallel (a bounded number at a time).
 */
import { Hono, type Context } from "hono";
import * as z from "zod";
import { readQuery } from "../../shared/body.ts";
import { Name } from "../../shared/config.ts";
import { prometheusText, serviceGraph, serviceMetrics, SLOT_SECONDS, windowSlots, type ServiceTotals, type TapEvent } from "../../shared/metrics.ts";
import { pool } from "../../shared/pool.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ServiceView } from "../../shared/views.ts";
import { configStoreOf } from "../../durable-objects/config-store.ts";
import { RETENTION_SECONDS, telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";

type App = Hono<{ Bindings: ControlPlaneEnv }>;
type Ctx = Context<{ Bindings: ControlPlaneEnv }>;

/** Shards read at once by the mesh-wide endpoints. */
const FAN_OUT = 32;

const Window = z.coerce.number().int().min(10).max(RETENTION_SECONDS).default(60);
const MetricsQuery = z.object({ service: Name, window: Window });
const GraphQuery = z.object({ window: Window });
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
    const query = readQuery(c.req.raw, MetricsQuery);
    if (!query.ok) return query.response;
    const service = await findService(c, query.value.service);
    if (service instanceof Response) return service;
    const now = Date.now();
    const { fromSlot, toSlot } = windowSlots(query.value.window, now);
    const { rows, ejections } = await telemetryStoreOf(c.env, service.name).window(fromSlot, toSlot);
    return c.json(serviceMetrics(service.name, rows, ejections, fromSlot, toSlot, now));
  });

  api.get("/graph", async (c) => {
    const query = readQuery(c.req.raw, GraphQuery);
    if (!query.ok) return query.response;
    const services = await configStoreOf(c.env).listServices();
    const now = Date.now();
    const { fromSlot, toSlot } = windowSlots(query.value.window, now);
    const observed = await pool(services, FAN_OUT, async (s) => ({
      name: s.name,
      externalBackends: new Set(s.backends.filter((b) => b.type === "external").map((b) => b.name)),
      series: (await telemetryStoreOf(c.env, s.name).window(fromSlot, toSlot)).rows,
    }));
    // Rates per second that has passed: the window ends in the current, partly filled slot.
    return c.json(serviceGraph(observed, Math.max(1, now / 1000 - fromSlot * SLOT_SECONDS)));
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
      names = (await configStoreOf(c.env).listServices()).map((s) => s.name);
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

/** `GET /metrics`: Prometheus text exposition of every service's running totals. */
export async function prometheusMetrics(c: Ctx): Promise<Response> {
  const services = await configStoreOf(c.env).listServices();
  const totals: ServiceTotals[] = await pool(services, FAN_OUT, async (s) => ({ service: s.name, ...(await telemetryStoreOf(c.env, s.name).totals()) }));
  return new Response(prometheusText(totals), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" } });
}
