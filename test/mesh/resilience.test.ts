/**
 * Resilience end to end, with the proxies exactly as deployed (debug headers off): which backend
 * answered, how many attempts it took and which config version served a request are read from the
 * access log and the response bodies, never from x-weft-* response headers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accessLineOf, bootTestMesh, ECHO_SERVICE, listOrders, newCart, servedVersion, waitFor, type TestMesh } from "./harness.ts";

let t: TestMesh;
beforeAll(async () => {
  t = await bootTestMesh({ debugHeaders: false });
});

let sequence = 0;
/** A path no other request used, so its access line is its own. */
const unique = (prefix: string): string => `${prefix}${prefix.endsWith("/") ? "" : "-"}${Date.now().toString(36)}${(sequence++).toString(36)}`;

/** The route that serves `prefix…` right now, from the access line of one request. */
async function routeOf(prefix: string): Promise<unknown> {
  const path = unique(prefix);
  await (await fetch(`${t.shop}${path}`)).body?.cancel();
  return (await accessLineOf(t, path)).route;
}
afterAll(async () => {
  await t?.dispose();
});

async function setFaults(service: string, faults: unknown[]): Promise<number> {
  const res = await t.adminFetch(`/admin/services/${service}/faults`, { method: "PUT", body: JSON.stringify({ faults }) });
  expect(res.status).toBe(200);
  return Number(res.headers.get("etag")?.replace(/"/g, ""));
}

async function clearFaults(service: string): Promise<number> {
  const res = await t.adminFetch(`/admin/services/${service}/faults`, { method: "DELETE" });
  expect(res.status).toBe(200);
  return Number(res.headers.get("etag")?.replace(/"/g, ""));
}

/** Waits until the proxy in front of `path` serves config `version` or newer. */
async function serves(path: string, version: number): Promise<void> {
  await servedVersion(t, path.startsWith("/orders") ? "orders" : path.startsWith("/echo") ? "echo" : "pim", path, version);
}

/** Which pim backend answered, from the product's `version` field (v1, v2, v3 or vendor). */
async function pimBackendOf(res: Response): Promise<string> {
  if (res.status !== 200) {
    await res.body?.cancel();
    return `status ${res.status}`;
  }
  return `pim-${((await res.json()) as { version: string }).version}`;
}

async function products(count: number): Promise<{ ok: number; backends: Record<string, number> }> {
  let ok = 0;
  const backends: Record<string, number> = {};
  for (let i = 0; i < count; i += 20) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, (_, j) =>
        fetch(`${t.shop}/products/sku-${((i + j) % 20) + 1}`, { headers: { cookie: `shopper=s-${i + j}` } }),
      ),
    );
    for (const res of batch) {
      if (res.status === 200) ok++;
      const backend = await pimBackendOf(res);
      backends[backend] = (backends[backend] ?? 0) + 1;
    }
  }
  return { ok, backends };
}

describe("resilience on the demo shop", () => {
  it("runs the proxies as deployed: no x-weft-* response headers", async () => {
    const res = await fetch(`${t.shop}/products/sku-1`);
    expect(res.status).toBe(200);
    expect([...res.headers.keys()].filter((name) => name.startsWith("x-weft-"))).toEqual([]);
  });

  it("keeps product pages up with half of pim-v1's requests aborted", async () => {
    await serves("/products/sku-1", await setFaults("pim", [{ backend: "pim-v1", abort: { percent: 50, status: 503 } }]));
    const { ok, backends } = await products(300);
    console.log(`50% of pim-v1 aborted: ${ok}/300 product pages succeeded; answered by ${JSON.stringify(backends)}`);
    expect(ok / 300).toBeGreaterThanOrEqual(0.99);
    await clearFaults("pim");
  });

  it("fails over to pim-vendor while pim-v1 is down, and returns when it recovers", async () => {
    await serves("/products/sku-1", await setFaults("pim", [{ backend: "pim-v1", abort: { percent: 100, status: 503 } }]));
    const down = await products(100);
    console.log(`pim-v1 down: ${down.ok}/100 succeeded; answered by ${JSON.stringify(down.backends)}`);
    expect(down.ok).toBe(100);
    expect(down.backends["pim-vendor"]).toBeGreaterThan(90);
    await clearFaults("pim");
    // After the ejection expires, probes find pim-v1 healthy again and shoppers return to it.
    await waitFor(async () => (await products(20)).backends["pim-v1"] === 20, 20_000, 500);
  });

  it("never duplicates an order: POST /orders is retried only with an Idempotency-Key", async () => {
    // Counted before the faults start (and after they end): the listing itself is a request to orders.
    const before = (await listOrders(t)).length;
    await serves("/orders/none", await setFaults("orders", [{ backend: "orders", abort: { percent: 30, status: 503 } }]));
    const place = async (i: number, withKey: boolean): Promise<{ status: number; orderId?: string }> => {
      const { cartId, headers: held } = await newCart(t);
      const add = await fetch(`${t.shop}/cart/${cartId}/items`, { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-2", qty: 1 }) });
      expect(add.status, `adding to ${cartId}: ${await add.clone().text()}`).toBe(200);
      const headers: Record<string, string> = { ...held, "content-type": "application/json", ...(withKey ? { "idempotency-key": `key-${cartId}` } : {}) };
      const res = await fetch(`${t.shop}/orders`, { method: "POST", headers, body: JSON.stringify({ cartId }) });
      const body = (await res.json()) as { orderId?: string };
      return { status: res.status, ...(body.orderId ? { orderId: body.orderId } : {}) };
    };
    const without = await Promise.all(Array.from({ length: 60 }, (_, i) => place(i, false)));
    const withKey = await Promise.all(Array.from({ length: 60 }, (_, i) => place(i, true)));
    const failedWithout = without.filter((r) => r.status !== 201).length / without.length;
    const okWith = withKey.filter((r) => r.status === 201).length / withKey.length;
    console.log(`30% of orders aborted: without a key ${(failedWithout * 100).toFixed(0)}% failed; with a key ${(okWith * 100).toFixed(0)}% succeeded`);
    expect(failedWithout).toBeGreaterThan(0.1);
    expect(failedWithout).toBeLessThan(0.5);
    expect(okWith).toBeGreaterThanOrEqual(0.9);
    await serves("/orders/none", await clearFaults("orders"));
    const created = [...without, ...withKey].filter((r) => r.status === 201);
    const after = await listOrders(t);
    expect(after.length - before).toBe(created.length); // exactly one stored order per successful response
    const stored = new Set(after.map((o) => o.orderId));
    for (const r of created) expect(stored.has(r.orderId ?? "")).toBe(true);
  }, 60_000);

  it("refuses faults and failover for backends the service does not have", async () => {
    const fault = await t.adminFetch("/admin/services/pim/faults", { method: "PUT", body: JSON.stringify({ faults: [{ backend: "pim-v9", abort: { percent: 10, status: 503 } }] }) });
    expect(fault.status).toBe(422);
    const res = await t.adminFetch("/admin/services/pim/resilience", { method: "PUT", body: JSON.stringify({ routes: { products: { failover: ["nope"] } } }) });
    expect(res.status).toBe(422);
    const current = (await (await t.adminFetch("/admin/services/pim/resilience")).json()) as { routes: Record<string, { failover?: string[] }> };
    expect(current.routes.products?.failover).toEqual(["pim-vendor"]);
  });
});

describe("deadlines and mirroring", () => {
  async function putEcho(routes: unknown[]): Promise<void> {
    const current = (await (await t.adminFetch("/admin/config")).json()) as { services: Array<{ name: string }> };
    const echo = { ...ECHO_SERVICE, routes: [...routes, ...ECHO_SERVICE.routes] };
    const res = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: [...current.services.filter((s) => s.name !== "echo"), echo] }) });
    expect(res.status).toBe(200);
  }

  it("tells the backend how long the caller will wait, and honours a caller's deadline", async () => {
    await putEcho([{ name: "timed", match: { path: "/echo/timed/*" }, split: { weights: { "echo-a": 100, "echo-b": 0 } }, timeoutMs: 800 }]);
    await waitFor(async () => (await routeOf("/echo/timed/x")) === "timed", 8_000);
    const res = await fetch(`${t.shop}/echo/timed/x`);
    const seen = Number(((await res.json()) as { headers: Record<string, string> }).headers["x-weft-deadline-ms"]);
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(800);
    // An internal caller with 200 ms left gets its answer (a 504) in about that time, not the route's 800 ms.
    const linkUrl = (await t.mesh.mf.unsafeGetDirectURL("weft-test-link")).origin;
    const started = Date.now();
    const slow = await fetch(`${linkUrl}/call/echo/timed/sleep/2000`, { headers: { "x-weft-deadline-ms": "200" } });
    expect(slow.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(700);
  });

  it("mirrors a share of safe requests to another backend without changing the responses", async () => {
    await putEcho([{ name: "mirrored", match: { path: "/echo/mirrored/*" }, split: { weights: { "echo-a": 100, "echo-b": 0 } }, mirror: { backend: "echo-b", percent: 100 } }]);
    await waitFor(async () => (await routeOf("/echo/mirrored/x")) === "mirrored", 8_000);
    const shadowsUrl = `${(await t.mesh.mf.unsafeGetDirectURL("weft-test-echo-b")).origin}/_shadows`;
    const before = ((await (await fetch(shadowsUrl)).json()) as { shadows: string[] }).shadows.length;
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${t.shop}/echo/mirrored/get-${i}`);
      expect(((await res.json()) as { backend: string }).backend).toBe("echo-a"); // the caller sees only the primary
    }
    const post = await fetch(`${t.shop}/echo/mirrored/order`, { method: "POST", body: "{}" }); // not mirrored: unsafe
    expect(post.status).toBe(200);
    await waitFor(async () => ((await (await fetch(shadowsUrl)).json()) as { shadows: string[] }).shadows.length >= before + 10, 5_000);
    const shadows = ((await (await fetch(shadowsUrl)).json()) as { shadows: string[] }).shadows.slice(before);
    expect(shadows.filter((s) => s.startsWith("GET /echo/mirrored/get-"))).toHaveLength(10);
    expect(shadows.some((s) => s.startsWith("POST"))).toBe(false);
  });
});

describe("several origins for one provider", () => {
  it("balances across a provider's origins and stops sending to one that fails", async () => {
    const config = (await (await t.adminFetch("/admin/config")).json()) as {
      services: Array<{ name: string; backends: Array<{ name: string; origin?: string | string[] }>; routes: Array<{ split: { weights: Record<string, number> } }> }>;
    };
    const pim = config.services.find((s) => s.name === "pim");
    const vendor = pim?.backends.find((b) => b.name === "pim-vendor");
    if (!pim || !vendor || typeof vendor.origin !== "string") throw new Error("demo config has no pim-vendor origin");
    // A second regional endpoint that refuses connections (nothing listens on port 9).
    vendor.origin = [vendor.origin, "http://127.0.0.1:9/pim"];
    for (const route of pim.routes) route.split.weights = { "pim-v1": 0, "pim-v2": 0, "pim-vendor": 100 };
    expect((await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: config.services }) })).status).toBe(200);
    await waitFor(async () => (await pimBackendOf(await fetch(`${t.shop}/products/sku-1`))) === "pim-vendor", 5_000);
    const { ok, backends } = await products(100);
    console.log(`pim-vendor with one of two origins refusing connections: ${ok}/100 succeeded (${JSON.stringify(backends)})`);
    expect(ok).toBeGreaterThanOrEqual(98);
  });
});

describe("active health checks", () => {
  it("takes a backend whose health probe fails out of the split, moving its sticky shoppers to a healthy one", async () => {
    const current = (await (await t.adminFetch("/admin/config")).json()) as { services: Array<{ name: string }> };
    const echo = {
      ...ECHO_SERVICE,
      backends: [
        { name: "echo-a", type: "worker", binding: "ECHO_A" },
        { name: "echo-b", type: "worker", binding: "ECHO_B", healthCheck: { path: "/echo/unhealthy", intervalSeconds: 1, timeoutMs: 500 } },
      ],
      routes: [{ name: "checked", match: { path: "/echo/*" }, split: { weights: { "echo-a": 50, "echo-b": 50 }, sticky: "header:x-shopper" } }],
    };
    const put = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: [...current.services.filter((s) => s.name !== "echo"), echo] }) });
    expect(put.status).toBe(200);
    const shoppers = Array.from({ length: 40 }, (_, i) => `hc-${i}`);
    const place = async (): Promise<string[]> =>
      Promise.all(shoppers.map(async (s) => ((await (await fetch(`${t.shop}/echo/p`, { headers: { "x-shopper": s } })).json()) as { backend: string }).backend));
    await waitFor(async () => (await routeOf("/echo/p")) === "checked", 8_000);
    const first = await place();
    expect(first.filter((b) => b === "echo-b").length).toBeGreaterThan(5);
    // Traffic keeps the proxy probing once a second; three failed probes in a row mark echo-b unhealthy.
    await waitFor(async () => (await place()).every((b) => b === "echo-a"), 15_000, 250);
  });
});

describe("retries against real backend failures", () => {
  it("retries a failing GET and fails over, but sends a POST once", async () => {
    const current = (await (await t.adminFetch("/admin/config")).json()) as { services: Array<{ name: string }> };
    const echo = {
      ...ECHO_SERVICE,
      routes: [
        {
          name: "flaky",
          match: { path: "/echo/flaky/*" },
          split: { weights: { "echo-a": 0, "echo-b": 100 } },
          retries: { attempts: 3, backoff: { baseMs: 1, capMs: 5 } },
          failover: ["echo-a"],
        },
        ...ECHO_SERVICE.routes,
      ],
    };
    const put = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: [...current.services.filter((s) => s.name !== "echo"), echo] }) });
    expect(put.status).toBe(200);
    await waitFor(async () => (await routeOf("/echo/flaky/ok")) === "flaky", 8_000);

    const okPath = unique("/echo/flaky/ok");
    const ok = await fetch(`${t.shop}${okPath}`);
    expect(ok.status).toBe(200);
    expect(await accessLineOf(t, okPath)).toMatchObject({ retries: 0, backend: "echo-b" });

    // The backends answer 503 on this path (a real failure, not an injected one).
    const failingPath = `${unique("/echo/flaky/")}/unhealthy`;
    const failing = await fetch(`${t.shop}${failingPath}`);
    expect(failing.status).toBe(503);
    expect(await accessLineOf(t, failingPath)).toMatchObject({ retries: 3, backend: "echo-a" }); // 3 on echo-b, then echo-a

    const postPath = `${unique("/echo/flaky/")}/unhealthy`;
    const post = await fetch(`${t.shop}${postPath}`, { method: "POST", body: "{}" });
    expect(post.status).toBe(503);
    expect(await accessLineOf(t, postPath)).toMatchObject({ retries: 0 });
  });
});

describe("a bad release on real failures: pim-v3", () => {
  /** `weft_ejections_total{service="pim",backend="pim-v3"}` on /metrics (0 before its first ejection). */
  async function v3Ejections(): Promise<number> {
    const text = await (await t.adminFetch("/metrics")).text();
    const line = text.split("\n").find((l) => l.startsWith('weft_ejections_total{service="pim",backend="pim-v3"}'));
    return Number(line?.split(" ")[1] ?? 0);
  }

  it("ejects pim-v3 on the deployed path (50/50 with pim-v1, no retries, no failover), after which almost every request succeeds", async () => {
    const config = (await (await t.adminFetch("/admin/config")).json()) as { services: Array<{ name: string; routes: Array<Record<string, unknown>> }> };
    const original = structuredClone(config.services);
    const pim = config.services.find((s) => s.name === "pim");
    if (!pim) throw new Error("no pim service");
    pim.routes = pim.routes.map(({ retries: _r, failover: _f, ...route }) => ({ ...route, split: { weights: { "pim-v1": 50, "pim-v2": 0, "pim-v3": 50, "pim-vendor": 0 }, sticky: "cookie:shopper" } }));
    const put = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: config.services }) });
    expect(put.status).toBe(200);
    await serves("/products/sku-1", ((await put.json()) as { version: number }).version);
    const before = await v3Ejections();

    const statuses: number[] = [];
    const answeredBy: Record<string, number> = {};
    for (let i = 0; i < 300; i += 20) {
      const batch = await Promise.all(
        Array.from({ length: 20 }, (_, j) => fetch(`${t.shop}/products/sku-${((i + j) % 20) + 1}`, { headers: { cookie: `shopper=bad-release-${i + j}` } })),
      );
      for (const res of batch) {
        statuses.push(res.status);
        const backend = await pimBackendOf(res);
        answeredBy[backend] = (answeredBy[backend] ?? 0) + 1;
      }
    }
    const failed = (from: number, to: number): number => statuses.slice(from, to).filter((s) => s >= 500).length;
    console.log(`pim 50/50 with pim-v3: failures per 100 requests ${failed(0, 100)}, ${failed(100, 200)}, ${failed(200, 300)}; answered by ${JSON.stringify(answeredBy)}`);
    await waitFor(async () => (await v3Ejections()) > before, 10_000, 250);
    expect(failed(0, 100)).toBeGreaterThan(0); // the release really is bad
    expect(failed(150, 300)).toBeLessThanOrEqual(8); // once ejected, almost every request succeeds

    const restored = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: original }) });
    expect(restored.status).toBe(200);
    await serves("/products/sku-1", ((await restored.json()) as { version: number }).version);
  });
});
