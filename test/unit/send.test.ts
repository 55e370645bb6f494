/**
 * The one way out of the proxy (workers/proxy/send.ts), in isolation: a route plan compiled from a
 * slice, test backends that answer as told and count what they receive, and a sender that records
 * every attempt's outcome.
 */
import { describe, expect, it } from "vitest";
import type { RetryPolicy, RouteConfig } from "../../shared/config.ts";
import type { ServiceSlice } from "../../shared/slice.ts";
import { ServiceHealth } from "../../workers/proxy/health.ts";
import { DEADLINE_HEADER } from "../../workers/proxy/identity.ts";
import { compileSlice, type CompiledSlice } from "../../workers/proxy/plan.ts";
import { send, type Sender } from "../../workers/proxy/send.ts";
import type { EgressContext } from "../../workers/proxy/forward.ts";
import { RateLimiter } from "../../workers/proxy/rate-limit.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";

/** A backend worker for tests: answers each request with the next status of `statuses` (the last one repeats). */
class TestBackend {
  readonly received: Array<{ method: string; body: string; deadline: string | null }> = [];
  constructor(private readonly statuses: number[]) {}
  async fetch(request: Request): Promise<Response> {
    this.received.push({ method: request.method, body: await request.text(), deadline: request.headers.get(DEADLINE_HEADER) });
    const status = this.statuses[Math.min(this.received.length - 1, this.statuses.length - 1)] ?? 200;
    return new Response(`answer ${this.received.length}`, { status });
  }
}

class RecordingSender implements Sender {
  readonly health = new ServiceHealth();
  readonly outcomes: Array<{ backend: string; success: boolean }> = [];
  recordOutcome(backend: string, success: boolean): void {
    this.outcomes.push({ backend, success });
  }
}

function plan(route: Partial<RouteConfig>, bindings: Record<string, TestBackend>, faults: ServiceSlice["faults"] = []): CompiledSlice {
  const slice: ServiceSlice = {
    service: "svc",
    version: 1,
    backends: Object.keys(bindings).map((name) => ({ name, type: "worker" as const, binding: name })),
    routes: [{ name: "r", match: { path: "/*" }, split: { weights: { a: 100, b: 0 } }, layout: [{ backend: "a", slots: 100 }], ...route }],
    faults,
  };
  return compileSlice(slice, { bindings, keySets: new Map(), balancers: new Map() });
}

/** Nothing in these tests reaches the control plane (no third-party backends): any call fails loudly. */
const noControlPlane = new Proxy({}, { get: () => () => Promise.reject(new Error("no control plane in this test")) }) as ControlPlaneApi;
const egress: EgressContext = { service: "svc", caller: "internet", controlPlane: noControlPlane, limiter: new RateLimiter("svc", noControlPlane) };

async function sendOnce(slice: CompiledSlice, request: Request, sender = new RecordingSender(), deadlineAt?: number) {
  const route = slice.routes[0];
  const chosen = slice.backends.get("a");
  if (!route || !chosen) throw new Error("bad plan");
  const delivery = await send(sender, route, chosen, request, { egress, deadlineAt });
  return { delivery, sender, body: await delivery.response.text() };
}

describe("send", () => {
  it("makes one attempt and records its outcome on a route with nothing configured", async () => {
    const a = new TestBackend([200]);
    const { delivery, sender } = await sendOnce(plan({}, { a, b: new TestBackend([200]) }), new Request("https://svc/x"));
    expect(delivery).toMatchObject({ attempts: 1, fromBackend: true });
    expect(delivery.backend.name).toBe("a");
    expect(sender.outcomes).toEqual([{ backend: "a", success: true }]);
  });

  it("records a backend's 5xx as a failure even without retries (outlier detection sees every route)", async () => {
    const { delivery, sender } = await sendOnce(plan({}, { a: new TestBackend([503]), b: new TestBackend([200]) }), new Request("https://svc/x"));
    expect(delivery.response.status).toBe(503);
    expect(sender.outcomes).toEqual([{ backend: "a", success: false }]);
  });

  it("retries a GET on the route's statuses, then fails over, recording every attempt", async () => {
    const a = new TestBackend([503]);
    const b = new TestBackend([200]);
    const slice = plan({ retries: { attempts: 3, statuses: [503], backoff: { baseMs: 0, capMs: 0 } }, failover: ["b"] }, { a, b });
    const { delivery, sender, body } = await sendOnce(slice, new Request("https://svc/x"));
    expect(delivery).toMatchObject({ attempts: 4, fromBackend: true });
    expect(delivery.backend.name).toBe("b");
    expect(body).toBe("answer 1");
    expect(sender.outcomes.map((o) => `${o.backend}:${o.success}`)).toEqual(["a:false", "a:false", "a:false", "b:true"]);
  });

  it("sends a POST once, and a keyed POST again only where the backend honours Idempotency-Key; the body goes with every attempt", async () => {
    const post = (key: boolean): Request =>
      new Request("https://svc/orders", { method: "POST", body: '{"cart":"c1"}', headers: key ? { "idempotency-key": "k1", "content-length": "13" } : { "content-length": "13" } });
    const retries: RetryPolicy = { attempts: 3, statuses: [503], backoff: { baseMs: 0, capMs: 0 } };

    const plain = new TestBackend([503]);
    expect((await sendOnce(plan({ retries }, { a: plain, b: new TestBackend([200]) }), post(true))).delivery.attempts).toBe(1);

    const honoured = new TestBackend([503, 503, 201]);
    const { delivery } = await sendOnce(plan({ retries, honoursIdempotencyKey: true }, { a: honoured, b: new TestBackend([200]) }), post(true));
    expect(delivery.response.status).toBe(201);
    expect(honoured.received.map((r) => r.body)).toEqual(['{"cart":"c1"}', '{"cart":"c1"}', '{"cart":"c1"}']);

    const unkeyed = new TestBackend([503]);
    expect((await sendOnce(plan({ retries, honoursIdempotencyKey: true }, { a: unkeyed, b: new TestBackend([200]) }), post(false))).delivery.attempts).toBe(1);
  });

  it("tells the backend how long is left and starts no attempt after the deadline", async () => {
    const a = new TestBackend([200]);
    await sendOnce(plan({}, { a, b: new TestBackend([200]) }), new Request("https://svc/x"), new RecordingSender(), Date.now() + 5_000);
    const deadline = Number(a.received[0]?.deadline);
    expect(deadline).toBeGreaterThan(4_000);
    expect(deadline).toBeLessThanOrEqual(5_000);

    const late = new TestBackend([200]);
    const { delivery } = await sendOnce(plan({}, { a: late, b: new TestBackend([200]) }), new Request("https://svc/x"), new RecordingSender(), Date.now() - 1);
    expect(delivery.response.status).toBe(504);
    expect(delivery.fromBackend).toBe(false);
    expect(late.received).toHaveLength(0);
  });

  it("injects a fault where the backend's failure would be: recorded as the backend's, marked as the proxy's answer", async () => {
    const a = new TestBackend([200]);
    const { delivery, sender } = await sendOnce(plan({}, { a, b: new TestBackend([200]) }, [{ backend: "a", abort: { percent: 100, status: 503 } }]), new Request("https://svc/x"));
    expect(delivery.response.status).toBe(503);
    expect(delivery.response.headers.get("x-weft-fault")).toBe("abort");
    expect(delivery.fromBackend).toBe(false);
    expect(a.received).toHaveLength(0);
    expect(sender.outcomes).toEqual([{ backend: "a", success: false }]);
  });
});
