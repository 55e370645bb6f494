/**
 * The admin views of a large mesh in workerd: paged, filtered service lists, and mesh-wide views
 * that read only the telemetry shards the TelemetryIndex lists.
 */
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { REGISTER_EVERY_MS, type TelemetryIndex } from "../../durable-objects/telemetry-index.ts";
import { telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";
import type { MeshConfigInput } from "../../shared/config.ts";
import { BUCKETS, type TelemetryBatch } from "../../shared/metrics.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import type { ServiceView } from "../../shared/views.ts";

const TOKEN = "test-admin-token";
const GENERATED = 300;

function admin(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${TOKEN}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`https://weft.test${path}`, { ...init, headers }));
}

async function get<T>(path: string): Promise<T> {
  const res = await admin(path);
  expect(res.status, path).toBe(200);
  return await res.json<T>();
}

const name = (i: number): string => `gen-${String(i).padStart(4, "0")}`;

const CONFIG: MeshConfigInput = {
  services: [
    ...["pim", "cart"].map((service) => ({
      name: service,
      backends: [{ name: `${service}-v1`, type: "worker" as const, binding: "V1" }],
      routes: [{ split: { weights: { [`${service}-v1`]: 100 } } }],
    })),
    ...Array.from({ length: GENERATED }, (_, i) => ({
      name: name(i),
      backends: [{ name: `${name(i)}-v1`, type: "worker" as const, binding: "V1" }],
      routes: [{ split: { weights: { [`${name(i)}-v1`]: 100 } } }],
    })),
  ],
};

function batchOf(service: string, count: number, caller = "internet"): TelemetryBatch {
  const buckets = new Array<number>(BUCKETS).fill(0);
  buckets[3] = count;
  return {
    service,
    batchId: crypto.randomUUID(),
    at: Date.now(),
    series: [{ route: "default", backend: `${service}-v1`, caller, code: 200, count, attempts: count, sumMs: count * 5, buckets }],
    ejections: 0,
    events: [],
    attempts: [],
  };
}

function proxyOf(service: string): ControlPlaneApi {
  const entrypoint = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
  return entrypoint({ props: { service } });
}

function index(): DurableObjectStub<TelemetryIndex> {
  return env.TELEMETRY_INDEX.get(env.TELEMETRY_INDEX.idFromName("mesh"));
}

/** The index's stored registration time of `service`, or null. */
async function registeredAt(service: string): Promise<number | null> {
  return runInDurableObject(index(), (_instance: TelemetryIndex, state) => {
    const row = state.storage.sql.exec<{ at: number }>("SELECT at FROM seen WHERE service = ?", service).toArray()[0];
    return row ? Number(row.at) : null;
  });
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("condition not met");
}

beforeAll(async () => {
  const res = await admin("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify(CONFIG) });
  expect(res.status).toBe(200);
  // Traffic on pim (from the internet) and on gen-0007 (called by pim); every other service is idle.
  await proxyOf("pim").recordTelemetry(batchOf("pim", 40));
  await proxyOf(name(7)).recordTelemetry(batchOf(name(7), 10, "pim"));
  await until(async () => (await registeredAt("pim")) !== null && (await registeredAt(name(7))) !== null);
});

describe("GET /admin/services", () => {
  it("pages through every service once, in name order, with a total and a next cursor", async () => {
    const seen: string[] = [];
    let path = "/admin/services?limit=120";
    for (;;) {
      const page = await get<{ services: ServiceView[]; total: number; next: string | null }>(path);
      expect(page.total).toBe(GENERATED + 2);
      expect(page.services.length).toBeLessThanOrEqual(120);
      seen.push(...page.services.map((s) => s.name));
      if (page.next === null) break;
      path = `/admin/services?limit=120&cursor=${encodeURIComponent(page.next)}`;
    }
    expect(seen).toEqual([...CONFIG.services.map((s) => s.name)].sort());
  });

  it("answers the first 100 by default, and filters by name, names and substring", async () => {
    const first = await get<{ services: ServiceView[]; total: number; next: string | null }>("/admin/services");
    expect(first.services).toHaveLength(100);
    expect(first.next).not.toBeNull();
    expect((await get<{ services: ServiceView[] }>("/admin/services?service=pim")).services.map((s) => s.name)).toEqual(["pim"]);
    expect((await get<{ services: ServiceView[] }>("/admin/services?names=pim,cart,nope")).services.map((s) => s.name)).toEqual(["cart", "pim"]);
    const search = await get<{ services: ServiceView[]; total: number; next: string | null }>("/admin/services?q=gen-001&limit=5");
    expect(search.total).toBe(10);
    expect(search.services.map((s) => s.name)).toEqual([10, 11, 12, 13, 14].map(name));
  });

  it("refuses a forged cursor and an oversized limit with problem details and zod issues", async () => {
    for (const query of ["cursor=not-ours", "limit=1001", "limit=0", "service=Bad_Name"]) {
      const res = await admin(`/admin/services?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect((await res.json<{ issues: unknown[] }>()).issues.length).toBeGreaterThan(0);
    }
  });
});

describe("mesh-wide views read only services with recent telemetry", () => {
  it("lists metrics of a page: idle services are answered without reading their shards", async () => {
    const page = await get<{ total: number; active: number; next: string | null; services: Array<{ service: string; active: boolean; total: { requests: number } }> }>(
      "/admin/metrics?limit=10&q=gen-000",
    );
    expect(page.total).toBe(10);
    expect(page.active).toBe(1);
    expect(page.services.filter((s) => s.active).map((s) => s.service)).toEqual([name(7)]);
    expect(page.services.find((s) => s.service === name(7))?.total.requests).toBe(10);
    expect(page.services.find((s) => s.service === name(3))).toMatchObject({ active: false, total: { requests: 0 } });
  });

  it("lists only active services with ?active=true, with full detail on request", async () => {
    const page = await get<{ total: number; services: Array<{ service: string; routes: unknown[]; timeline: unknown[] }> }>("/admin/metrics?active=true&detail=full&window=60");
    expect(page.total).toBe(2);
    expect(page.services.map((s) => s.service)).toEqual([name(7), "pim"]);
    expect(page.services[1]?.timeline.length).toBe(6);
  });

  it("keeps ?service= answering one service, and a bare window without a service is still a 400", async () => {
    const one = await get<{ service: string; total: { requests: number } }>("/admin/metrics?service=pim&window=60");
    expect(one).toMatchObject({ service: "pim", total: { requests: 40 } });
    expect((await admin("/admin/metrics?window=60")).status).toBe(400);
  });

  it("draws the graph of active services with their edges, and pages it", async () => {
    const graph = await get<{ nodes: Array<{ id: string; rps: number }>; edges: Array<{ source: string; target: string; requests: number }>; total: number; active: number }>(
      "/admin/graph?active=true",
    );
    expect(graph.total).toBe(2);
    expect(graph.active).toBe(2);
    expect(graph.nodes.map((n) => n.id).sort()).toEqual([name(7), "internet", "pim"].sort());
    expect(graph.edges).toEqual(expect.arrayContaining([expect.objectContaining({ source: "pim", target: name(7), requests: 10 }), expect.objectContaining({ source: "internet", target: "pim", requests: 40 })]));
    const all = await get<{ nodes: unknown[]; total: number; next: string | null; activeOnly: boolean }>("/admin/graph?limit=50&active=false");
    expect(all).toMatchObject({ total: GENERATED + 2, activeOnly: false });
    expect(all.next).not.toBeNull();
    // By default a mesh larger than the page is drawn with its services that have traffic only.
    expect(await get<{ activeOnly: boolean; total: number }>("/admin/graph")).toMatchObject({ activeOnly: true, total: 2 });
    expect(await get<{ activeOnly: boolean; total: number }>("/admin/graph?q=gen-000")).toMatchObject({ activeOnly: false, total: 10 });
  });

  it("exposes Prometheus series of active services only", async () => {
    const res = await admin("/metrics");
    const text = await res.text();
    expect(text).toContain('weft_requests_total{service="pim"');
    expect(text).toContain(`weft_requests_total{service="${name(7)}"`);
    expect(text).not.toContain(`service="${name(3)}"`);
  });

  it("registers a service once per interval, not once per batch", async () => {
    const before = await registeredAt("pim");
    for (let i = 0; i < 5; i++) await proxyOf("pim").recordTelemetry(batchOf("pim", 1));
    expect(await registeredAt("pim")).toBe(before);
    expect(REGISTER_EVERY_MS).toBeGreaterThanOrEqual(60_000);
    expect((await telemetryStoreOf(env, "pim").totals()).series.reduce((n, s) => n + s.count, 0)).toBe(45);
  });
});
