/**
 * Observability end to end: golden metrics against the requests actually sent, Prometheus text,
 * histograms, trace context across every hop (into the vendor and the OTLP collector), redaction
 * of access logs, the live tap and the service graph.
 */
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, newCart, setSplit, waitFor, type TestMesh } from "./harness.ts";

interface Golden {
  requests: number;
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  statusClasses: Record<string, number>;
  retries: number;
}
interface Metrics {
  total: Golden & { rateLimited: number };
  backends: Array<Golden & { backend: string }>;
  routes: Array<Golden & { route: string }>;
  callers: Array<Golden & { caller: string }>;
  timeline: Array<{ requests: number }>;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

let t: TestMesh;
let collector: Server;
const spans: Array<OtlpSpan & { service: string }> = [];

beforeAll(async () => {
  // A real OTLP/HTTP collector on loopback, recording what the proxies export.
  collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
      };
      for (const rs of body.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "";
        for (const ss of rs.scopeSpans) for (const span of ss.spans) spans.push({ ...span, service });
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
  const address = collector.address();
  const port = typeof address === "object" && address ? address.port : 0;
  // Every request is sampled at the edge here, so each test can follow its own trace.
  t = await bootTestMesh({ vars: { WEFT_OTLP_ENDPOINT: `http://127.0.0.1:${port}/v1/traces`, WEFT_TRACE_SAMPLE_RATE: "1" } });
});
afterAll(async () => {
  await t?.dispose();
  await new Promise((resolve) => collector?.close(resolve));
});

const hex = (bytes: number): string => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");

async function metrics(service: string): Promise<Metrics> {
  const res = await t.adminFetch(`/admin/metrics?service=${service}&window=300`);
  expect(res.status).toBe(200);
  return (await res.json()) as Metrics;
}

async function prometheus(): Promise<string> {
  const res = await t.adminFetch("/metrics");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  return res.text();
}

/** Sum of the sample values of `metric` whose labels include all of `match`. */
function sample(text: string, metric: string, match: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== metric) continue;
    const labels = new Map<string, string>();
    for (const l of (m[2] ?? "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)) labels.set(l[1] ?? "", l[2] ?? "");
    if (Object.entries(match).every(([k, v]) => labels.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

describe("golden metrics", () => {
  it("counts exactly the requests sent, by backend and status, in /admin/metrics and /metrics", async () => {
    await setSplit(t, "echo", { "echo-a": 70, "echo-b": 30 }, "all");
    // The split is obeyed once the proxy has the new version: wait until echo-b answers.
    await waitFor(async () => (await fetch(`${t.shop}/echo/warm`)).headers.get("x-weft-backend") === "echo-b", 10_000);
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // let the warm-up batch land
    const before = await metrics("echo");
    const promBefore = await prometheus();

    const sent: Record<string, number> = {};
    let failed = 0;
    await Promise.all(
      Array.from({ length: 240 }, async (_, i) => {
        const path = i % 24 === 0 ? "/echo/unhealthy" : `/echo/item-${i}`;
        const res = await fetch(`${t.shop}${path}`);
        await res.arrayBuffer();
        const backend = res.headers.get("x-weft-backend") ?? "none";
        sent[backend] = (sent[backend] ?? 0) + 1;
        if (res.status === 503) failed++;
      }),
    );
    expect(failed).toBe(10);
    expect((sent["echo-a"] ?? 0) + (sent["echo-b"] ?? 0)).toBe(240);

    let after = before;
    await waitFor(async () => {
      after = await metrics("echo");
      return after.total.requests - before.total.requests >= 240;
    }, 10_000, 200);
    expect(after.total.requests - before.total.requests).toBe(240);
    const byBackend = (m: Metrics, name: string): number => m.backends.find((b) => b.backend === name)?.requests ?? 0;
    expect(byBackend(after, "echo-a") - byBackend(before, "echo-a")).toBe(sent["echo-a"]);
    expect(byBackend(after, "echo-b") - byBackend(before, "echo-b")).toBe(sent["echo-b"]);
    expect((after.total.statusClasses["5xx"] ?? 0) - (before.total.statusClasses["5xx"] ?? 0)).toBe(10);
    expect(after.callers.find((c) => c.caller === "internet")?.requests).toBeGreaterThanOrEqual(240);
    expect(after.total.successRate).toBeLessThan(1);
    expect(after.total.p50Ms).not.toBeNull();
    expect(after.timeline.reduce((sum, p) => sum + p.requests, 0)).toBe(after.total.requests);

    const prom = await prometheus();
    for (const backend of ["echo-a", "echo-b"]) {
      const delta = sample(prom, "weft_requests_total", { service: "echo", backend }) - sample(promBefore, "weft_requests_total", { service: "echo", backend });
      expect(delta).toBe(sent[backend]);
    }
    const delta503 = sample(prom, "weft_requests_total", { service: "echo", code: "503" }) - sample(promBefore, "weft_requests_total", { service: "echo", code: "503" });
    expect(delta503).toBe(10);
  });

  it("puts latencies into the right histogram buckets", async () => {
    const key = { service: "echo", route: "all", backend: "echo-a", caller: "internet" };
    await setSplit(t, "echo", { "echo-a": 100, "echo-b": 0 }, "all");
    await waitFor(async () => {
      const seen = await Promise.all(Array.from({ length: 10 }, async () => (await fetch(`${t.shop}/echo/settle`)).headers.get("x-weft-backend")));
      return seen.every((b) => b === "echo-a");
    }, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const before = await prometheus();
    await Promise.all(Array.from({ length: 6 }, () => fetch(`${t.shop}/echo/sleep/300`).then((r) => r.arrayBuffer())));
    let after = before;
    await waitFor(async () => {
      after = await prometheus();
      return sample(after, "weft_request_duration_seconds_count", key) - sample(before, "weft_request_duration_seconds_count", key) >= 6;
      // Generous: on a loaded machine a batch can wait a paced flush and a busy TelemetryStore.
    }, 20_000, 200);
    const bucket = (text: string, le: string): number => sample(text, "weft_request_duration_seconds_bucket", { ...key, le });
    // 300 ms sleeps: none at or below 250 ms, all at or below 500 ms and in +Inf.
    expect(bucket(after, "0.25") - bucket(before, "0.25")).toBe(0);
    expect(bucket(after, "0.5") - bucket(before, "0.5")).toBe(6);
    expect(bucket(after, "+Inf") - bucket(before, "+Inf")).toBe(6);
    const sum = sample(after, "weft_request_duration_seconds_sum", key) - sample(before, "weft_request_duration_seconds_sum", key);
    expect(sum).toBeGreaterThanOrEqual(6 * 0.29);
    // Buckets are cumulative.
    const les = ["0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    const counts = les.map((le) => bucket(after, le));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
  });

  it("refuses bad queries with problem details and guards /metrics with the admin token", async () => {
    const missing = await t.adminFetch("/admin/metrics?window=60");
    expect(missing.status).toBe(400);
    expect(missing.headers.get("content-type")).toBe("application/problem+json");
    expect(((await missing.json()) as { issues: unknown[] }).issues.length).toBeGreaterThan(0);
    expect((await t.adminFetch("/admin/metrics?service=pim&window=5")).status).toBe(400);
    expect((await t.adminFetch("/admin/metrics?service=nope&window=60")).status).toBe(404);
    expect((await fetch(`${t.admin}/metrics`)).status).toBe(401);
    expect((await fetch(`${t.admin}/admin/tap?service=pim`)).status).toBe(401);
  });
});

describe("tracing, access logs and the tap", () => {
  it("keeps one trace id from the edge through orders, cart, pim and notify to the vendor, one span per hop; the client cannot choose it", async () => {
    const clientTraceId = hex(16);
    const clientSpan = hex(8);
    const marker = hex(6);
    const { cartId, headers: held } = await newCart(t);
    const add = await fetch(`${t.shop}/cart/${cartId}/items`, { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-5", qty: 1 }) });
    expect(add.status).toBe(200);
    const order = await fetch(`${t.shop}/orders?trace=${marker}`, {
      method: "POST",
      headers: { ...held, "content-type": "application/json", traceparent: `00-${clientTraceId}-${clientSpan}-01` },
      body: JSON.stringify({ cartId, customer: { email: "trace@example.com" } }),
    });
    expect(order.status).toBe(201);

    // The edge started the trace: its id is the orders hop's, not the client's.
    await waitFor(async () => t.accessLogs.some((l) => l.service === "orders" && String(l.path).endsWith(`trace=${marker}`)), 10_000, 100);
    const traceId = String(t.accessLogs.find((l) => l.service === "orders" && String(l.path).endsWith(`trace=${marker}`))?.traceId);
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(traceId).not.toBe(clientTraceId);
    expect(t.accessLogs.some((l) => l.traceId === clientTraceId)).toBe(false);

    // The vendor received the notification within the same trace.
    await waitFor(async () => {
      const received = (await (await fetch(`${t.vendor}/notify/received`)).json()) as { messages: Array<{ traceparent: string | null }> };
      return received.messages.some((m) => m.traceparent?.split("-")[1] === traceId);
    }, 10_000, 100);

    // One access line per hop, all with the edge's trace id.
    await waitFor(async () => new Set(t.accessLogs.filter((l) => l.traceId === traceId).map((l) => l.service)).size >= 4, 10_000, 100);
    const hops = t.accessLogs.filter((l) => l.traceId === traceId);
    expect(new Set(hops.map((l) => l.service))).toEqual(new Set(["orders", "cart", "pim", "notify"]));

    // Spans in the collector form a tree rooted at the orders hop; inner hops' parents are its span.
    await waitFor(async () => spans.filter((s) => s.traceId === traceId).length >= hops.length, 10_000, 100);
    const traced = spans.filter((s) => s.traceId === traceId);
    expect(traced.length).toBe(hops.length);
    const ordersSpan = traced.find((s) => s.service === "orders");
    expect(ordersSpan?.parentSpanId ?? "").toBe("");
    const ids = new Set(traced.map((s) => s.spanId));
    expect(ids.size).toBe(traced.length);
    for (const inner of traced.filter((s) => s.service !== "orders")) {
      expect(inner.parentSpanId).toBe(ordersSpan?.spanId);
    }
  });

  it("starts a trace at the edge when the client sends none, and passes it to the backend", async () => {
    const res = await fetch(`${t.shop}/echo/fresh`);
    const echoed = (await res.json()) as { headers: Record<string, string> };
    const tp = echoed.headers.traceparent ?? "";
    expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    await waitFor(async () => t.accessLogs.some((l) => l.traceId === tp.split("-")[1] && l.path === "/echo/fresh"), 10_000, 100);
    // A malformed traceparent is replaced, not passed on.
    const bad = (await (await fetch(`${t.shop}/echo/bad`, { headers: { traceparent: "00-zz-not-valid-01" } })).json()) as { headers: Record<string, string> };
    expect(bad.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  });

  it("redacts credentials, cookies and tokens from access logs", async () => {
    const marker = hex(6);
    await fetch(`${t.shop}/echo/secret-${marker}?token=tok-SECRET-1&sku=ok&api_key=tok-SECRET-2`, {
      headers: {
        authorization: "Bearer tok-SECRET-3",
        cookie: "session=tok-SECRET-4; shopper=abc",
        referer: "https://shop.example.com/login?password=tok-SECRET-5",
        "user-agent": "redaction-test",
      },
    }).then((r) => r.arrayBuffer());
    const ours = (l: Record<string, unknown>): boolean => String(l.path).startsWith(`/echo/secret-${marker}`);
    await waitFor(async () => t.accessLogs.some(ours), 10_000, 100);
    const line = t.accessLogs.find(ours);
    expect(line?.path).toBe(`/echo/secret-${marker}?token=[redacted]&sku=ok&api_key=[redacted]`);
    expect(line?.headers).toMatchObject({ "user-agent": "redaction-test", referer: "https://shop.example.com/login?password=[redacted]" });
    for (const log of t.logLines) expect(log).not.toMatch(/tok-SECRET/);
    for (const field of ["service", "route", "backend", "caller", "status", "durationMs", "retries", "traceId"]) expect(line).toHaveProperty(field);
  });

  it("streams a sampled request on the tap", async () => {
    const controller = new AbortController();
    const tap = await t.adminFetch("/admin/tap?service=echo", { signal: controller.signal });
    expect(tap.status).toBe(200);
    expect(tap.headers.get("content-type")).toContain("text/event-stream");
    const reader = tap.body?.getReader();
    if (!reader) throw new Error("no stream");
    const marker = hex(6);
    await fetch(`${t.shop}/echo/tapped-${marker}`).then((r) => r.arrayBuffer());
    const decoder = new TextDecoder();
    let text = "";
    const deadline = Date.now() + 10_000;
    let event: Record<string, unknown> | undefined;
    while (!event && Date.now() < deadline) {
      const { value, done } = await Promise.race([reader.read(), new Promise<{ value: undefined; done: true }>((r) => setTimeout(() => r({ value: undefined, done: true }), 10_000))]);
      if (done) break;
      text += decoder.decode(value, { stream: true });
      for (const frame of text.split("\n\n")) {
        const data = frame.split("\n").find((l) => l.startsWith("data: "));
        const parsed = data ? (JSON.parse(data.slice(6)) as Record<string, unknown>) : undefined;
        if (parsed?.path === `/echo/tapped-${marker}`) event = parsed;
      }
    }
    controller.abort();
    expect(event).toMatchObject({ service: "echo", method: "GET", path: `/echo/tapped-${marker}`, route: "all", status: 200, sampled: true, caller: "internet" });
    expect(event?.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof event?.durationMs).toBe("number");
    expect(["echo-a", "echo-b"]).toContain(event?.backend);
  });

  it("keeps failed requests in the recent errors", async () => {
    await fetch(`${t.shop}/echo/unhealthy`).then((r) => r.arrayBuffer());
    await waitFor(async () => {
      const res = await t.adminFetch("/admin/errors?service=echo&limit=10");
      const { errors } = (await res.json()) as { errors: Array<{ status: number; path: string }> };
      return errors.some((e) => e.status === 503 && e.path === "/echo/unhealthy");
    }, 10_000, 200);
  });
});

describe("service graph", () => {
  it("shows every service and the observed caller → callee edges with rates", async () => {
    const res = await t.adminFetch("/admin/graph?window=300");
    expect(res.status).toBe(200);
    const graph = (await res.json()) as { nodes: Array<{ id: string; kind: string }>; edges: Array<{ source: string; target: string; requests: number; successRate: number | null; p99Ms: number | null }> };
    const ids = new Set(graph.nodes.map((n) => n.id));
    for (const service of ["storefront", "pim", "cart", "orders", "notify", "echo", "internet"]) expect(ids).toContain(service);
    const edge = (source: string, target: string): (typeof graph.edges)[number] | undefined => graph.edges.find((e) => e.source === source && e.target === target);
    for (const [source, target] of [["internet", "orders"], ["orders", "cart"], ["orders", "pim"], ["orders", "notify"], ["internet", "echo"]] as const) {
      expect(edge(source, target)?.requests, `${source} → ${target}`).toBeGreaterThan(0);
    }
    // The third party behind notify is a node of its own.
    const external = graph.nodes.find((n) => n.kind === "external");
    expect(external).toBeDefined();
    expect(edge("notify", external?.id ?? "")?.requests).toBeGreaterThan(0);
    expect(edge("internet", "echo")?.successRate).toBeLessThan(1);
  });
});
