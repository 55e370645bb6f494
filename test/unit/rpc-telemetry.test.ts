/**
 * RPC calls in the golden metrics: outcome (`ok`/`error`) and the error's name as labels, carried in
 * the series code so the telemetry shard stores them as it stores HTTP statuses, and HTTP series
 * exactly as they were.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";
import {
  BUCKETS,
  golden,
  isFailure,
  prometheusText,
  rateLimitedCount,
  RPC_CODE_BASE,
  RPC_ERROR_NAMES,
  rpcErrorName,
  rpcSeriesCode,
  seriesOutcome,
  statusOf,
  type SeriesStats,
} from "../../shared/metrics.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { rpcRequestLine } from "../../workers/proxy/rpc.ts";
import { beginHop, ServiceTelemetry, type TelemetrySettings } from "../../workers/proxy/telemetry.ts";

function series(route: string, code: number, count: number): SeriesStats {
  const buckets = new Array<number>(BUCKETS).fill(0);
  buckets[2] = count;
  return { route, backend: "users", caller: "web", code, count, attempts: count, sumMs: 4 * count, buckets };
}

describe("rpcErrorName: the bounded error label", () => {
  it("names the standard Error classes, and folds every other name or non-Error into (other)", () => {
    expect(rpcErrorName(new Error("x"))).toBe("Error");
    expect(rpcErrorName(new TypeError("x"))).toBe("TypeError");
    expect(rpcErrorName(new RangeError("x"))).toBe("RangeError");
    expect(rpcErrorName(new AggregateError([], "x"))).toBe("AggregateError");
    class NotFound extends Error {
      override name = "NotFound";
    }
    expect(rpcErrorName(new NotFound("x"))).toBe("(other)");
    const named = new Error("x");
    named.name = "(other)";
    expect(rpcErrorName(named)).toBe("(other)");
    expect(rpcErrorName("a string")).toBe("(other)");
    expect(rpcErrorName(undefined)).toBe("(other)");
    expect(rpcErrorName(new DOMException("x", "AbortError"))).toBe("(other)");
  });
});

describe("RPC series codes", () => {
  it("round-trip status, outcome and every error name, above every HTTP status", () => {
    expect(seriesOutcome(rpcSeriesCode(200, undefined))).toEqual({ kind: "rpc", status: 200, outcome: "ok" });
    for (const name of RPC_ERROR_NAMES) {
      for (const status of [403, 404, 429, 500]) {
        const code = rpcSeriesCode(status, name);
        expect(code).toBeGreaterThanOrEqual(RPC_CODE_BASE);
        expect(seriesOutcome(code)).toEqual({ kind: "rpc", status, outcome: "error", error: name });
        expect(statusOf(code)).toBe(status);
      }
    }
    expect(seriesOutcome(503)).toEqual({ kind: "http", status: 503 });
    expect(statusOf(404)).toBe(404);
  });

  it("count in the golden signals by their status: thrown errors fail the success rate, refusals are 4xx, mesh 429s are rate-limited", () => {
    const rows = [
      series("getUser", rpcSeriesCode(200, undefined), 6),
      series("fail", rpcSeriesCode(500, "TypeError"), 2),
      series("deleteUser", rpcSeriesCode(403, "Error"), 1),
      { ...series("sum", rpcSeriesCode(429, "Error"), 3), backend: "" },
    ];
    const g = golden(rows, 10);
    expect(g.requests).toBe(12);
    expect(g.statusClasses).toEqual({ "1xx": 0, "2xx": 6, "3xx": 0, "4xx": 4, "5xx": 2 });
    expect(g.successRate).toBeCloseTo(10 / 12, 5);
    expect(isFailure(rpcSeriesCode(500, "Error"))).toBe(true);
    expect(isFailure(rpcSeriesCode(200, undefined))).toBe(false);
    expect(rateLimitedCount(rows)).toBe(3);
  });

  it("render with outcome and error labels in /metrics, while HTTP series keep exactly their old labels", () => {
    const text = prometheusText([
      {
        service: "users",
        series: [series("all", 200, 5), series("getUser", rpcSeriesCode(200, undefined), 7), series("getUser", rpcSeriesCode(500, "RangeError"), 2)],
        ejections: 0,
      },
    ]);
    expect(text).toContain('weft_requests_total{service="users",route="all",backend="users",caller="web",code="200"} 5\n');
    expect(text).toContain('weft_requests_total{service="users",route="getUser",backend="users",caller="web",code="200",outcome="ok"} 7\n');
    expect(text).toContain('weft_requests_total{service="users",route="getUser",backend="users",caller="web",code="500",outcome="error",error="RangeError"} 2\n');
    expect(text).toContain('weft_request_duration_seconds_count{service="users",route="all",backend="users",caller="web"} 5\n');
    expect(text).toContain('weft_request_duration_seconds_count{service="users",route="getUser",backend="users",caller="web",outcome="ok"} 7\n');
    expect(text).toContain('weft_request_duration_seconds_count{service="users",route="getUser",backend="users",caller="web",outcome="error",error="RangeError"} 2\n');
    expect(text).toContain('weft_request_duration_seconds_bucket{service="users",route="getUser",backend="users",caller="web",outcome="error",error="RangeError",le="+Inf"} 2\n');
  });
});

const settings: TelemetrySettings = { accessLog: { kind: "off" }, slowMs: 1_000, sampleRate: 0, otlp: undefined, analytics: undefined };

function boundTo(service: string): ControlPlaneApi {
  const entrypoint = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
  return entrypoint({ props: { service } });
}

describe("RPC outcomes through a proxy's telemetry into the shard", () => {
  it("stores ok and each error name as their own series, counting every call once, beside an unchanged HTTP series", async () => {
    const service = "rpc-outcomes";
    const telemetry = new ServiceTelemetry(service, boundTo(service), settings);
    const deferred: Array<Promise<unknown>> = [];
    const record = (route: string, status: number, seriesCode: number | undefined): void => {
      const request = new Request(`https://${service}.rpc/${route}`, { method: "POST" });
      telemetry.finish(beginHop(request, true, 0, Date.now()), request, "web", { route, backend: "users", attempts: 1, configVersion: 1, ...(seriesCode === undefined ? {} : { seriesCode }) }, status, (p) => deferred.push(p));
    };
    for (let i = 0; i < 5; i++) record("getUser", 200, rpcSeriesCode(200, undefined));
    for (let i = 0; i < 3; i++) record("getUser", 500, rpcSeriesCode(500, "TypeError"));
    record("getUser", 500, rpcSeriesCode(500, "(other)"));
    for (let i = 0; i < 4; i++) record("all", 200, undefined);
    await telemetry.flush();
    const totals = await telemetryStoreOf(env, service).totals();
    const byOutcome = new Map(totals.series.map((s) => [JSON.stringify([s.route, seriesOutcome(s.code)]), s.count]));
    expect(byOutcome.get(JSON.stringify(["getUser", { kind: "rpc", status: 200, outcome: "ok" }]))).toBe(5);
    expect(byOutcome.get(JSON.stringify(["getUser", { kind: "rpc", status: 500, outcome: "error", error: "TypeError" }]))).toBe(3);
    expect(byOutcome.get(JSON.stringify(["getUser", { kind: "rpc", status: 500, outcome: "error", error: "(other)" }]))).toBe(1);
    expect(byOutcome.get(JSON.stringify(["all", { kind: "http", status: 200 }]))).toBe(4);
    expect(totals.series.reduce((n, s) => n + s.count, 0)).toBe(13);
    await Promise.all(deferred);
  });
});

describe("what a proxy keeps of its finished requests", () => {
  it("counts every request at once and keeps only those that become a tap event or a span", async () => {
    const service = "kept-records";
    const telemetry = new ServiceTelemetry(service, boundTo(service), settings);
    const deferred: Array<Promise<unknown>> = [];
    const finish = (status: number, sampleRate: number): void => {
      const request = new Request("https://shop.test/products/1");
      telemetry.finish(beginHop(request, false, sampleRate, Date.now()), request, "internet", { route: "all", backend: "kept-v1", attempts: 1, configVersion: 1 }, status, (p) => deferred.push(p));
    };
    for (let i = 0; i < 100; i++) finish(200, 0);
    // The batch's few recent events; the other 95 requests are only counted (no Request held until the batch).
    expect(telemetry.keptRecords).toBe(5);
    finish(503, 0); // notable: always an event
    finish(200, 1); // sampled: always an event
    expect(telemetry.keptRecords).toBe(7);
    await telemetry.flush();
    expect(telemetry.keptRecords).toBe(0);
    const store = telemetryStoreOf(env, service);
    expect((await store.totals()).series.reduce((n, s) => n + s.count, 0)).toBe(102);
    expect((await store.recentErrors(10)).map((e) => [e.status, e.method, e.path])).toEqual([[503, "GET", "/products/1"]]);
    await Promise.all(deferred);
  });

  it("reports an RPC call as a POST to /<method> without a Request, continuing a relayed trace", async () => {
    const service = "rpc-line";
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const line = rpcRequestLine(service, "Admin.purge", new Headers({ traceparent }));
    expect(line).not.toBeInstanceOf(Request);
    expect([line.method, line.url]).toEqual(["POST", "https://rpc-line.rpc/Admin.purge"]);
    const hop = beginHop(line, true, 0, Date.now());
    expect([hop.traceId, hop.parentId, hop.sampled]).toEqual(["4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true]);
    const telemetry = new ServiceTelemetry(service, boundTo(service), settings);
    const deferred: Array<Promise<unknown>> = [];
    telemetry.finish(hop, line, "web", { route: "Admin.purge", backend: "users", attempts: 1, configVersion: 1, seriesCode: rpcSeriesCode(500, "TypeError") }, 500, (p) => deferred.push(p));
    await telemetry.flush();
    const [event] = await telemetryStoreOf(env, service).recentErrors(10);
    expect(event).toMatchObject({ method: "POST", path: "/Admin.purge", route: "Admin.purge", caller: "web", traceId: "4bf92f3577b34da6a3ce929d0e0e4736" });
    await Promise.all(deferred);
  });
});
