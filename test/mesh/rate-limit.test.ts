import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, waitFor, type TestMesh } from "./harness.ts";

let t: TestMesh;
beforeAll(async () => {
  t = await bootTestMesh();
});
afterAll(async () => {
  await t?.dispose();
});

async function setLimits(service: string, limits: unknown[]): Promise<number> {
  const res = await t.adminFetch(`/admin/services/${service}/ratelimit`, { method: "PUT", body: JSON.stringify({ limits }) });
  expect(res.status, await res.clone().text()).toBe(200);
  return Number(res.headers.get("etag")?.replace(/"/g, ""));
}

async function burst(path: string, headers: Record<string, string>, count: number): Promise<Response[]> {
  return Promise.all(Array.from({ length: count }, () => fetch(`${t.shop}${path}`, { headers })));
}

describe("rate limits", () => {
  it("lets 50 of 150 concurrent requests with one API key through, 429s the rest, and spares other keys", async () => {
    const version = await setLimits("pim", [{ name: "api-key", key: "header:x-api-key", limit: 50, periodSeconds: 4 }]);
    await waitFor(async () => Number((await fetch(`${t.shop}/products/sku-1`, { headers: { "x-api-key": "warmup" } })).headers.get("x-weft-config-version")) >= version, 5_000);
    // Start on a fresh window so the whole burst lands in one.
    await new Promise((r) => setTimeout(r, 4_000 - (Date.now() % 4_000) + 50));
    const responses = await burst("/products/sku-2", { "x-api-key": "key-a" }, 150);
    const allowed = responses.filter((r) => r.status === 200);
    const refused = responses.filter((r) => r.status === 429);
    console.log(`150 concurrent with one key: ${allowed.length} allowed, ${refused.length} refused`);
    expect(allowed.length).toBeGreaterThanOrEqual(48);
    expect(allowed.length).toBeLessThanOrEqual(53);
    expect(allowed.length + refused.length).toBe(150);
    const sample = refused[0];
    expect(sample?.headers.get("content-type")).toBe("application/problem+json");
    expect(Number(sample?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(sample?.headers.get("ratelimit-policy")).toBe('"api-key";q=50;w=4');
    // Allowed responses carry the headers once less than 20% of the quota is left.
    const warned = allowed.filter((r) => r.headers.has("ratelimit"));
    expect(warned.length).toBeGreaterThan(0);
    expect(warned[0]?.headers.get("ratelimit-policy")).toBe('"api-key";q=50;w=4');
    expect(warned[0]?.headers.get("ratelimit")).toMatch(/^"api-key";r=\d;t=\d+$/);

    const other = await burst("/products/sku-2", { "x-api-key": "key-b" }, 20);
    expect(other.every((r) => r.status === 200)).toBe(true);

    // After the window the first key is served again.
    await new Promise((r) => setTimeout(r, Number(sample?.headers.get("retry-after") ?? 4) * 1000 + 100));
    expect((await fetch(`${t.shop}/products/sku-2`, { headers: { "x-api-key": "key-a" } })).status).toBe(200);

    const counter = await t.adminFetch("/admin/services/pim/ratelimit/counters?limit=api-key&key=key-b");
    expect(((await counter.json()) as { counter: { used: number } }).counter.used).toBeGreaterThanOrEqual(20);
  });

  it("counts a 600-character API key like any other (it used to fail open)", async () => {
    const version = await setLimits("pim", [{ name: "long-key", key: "header:x-api-key", limit: 20, periodSeconds: 3600 }]);
    await waitFor(async () => Number((await fetch(`${t.shop}/products/sku-1`, { headers: { "x-api-key": "warm-long" } })).headers.get("x-weft-config-version")) >= version, 5_000);
    const key = `k${"x".repeat(599)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await fetch(`${t.shop}/products/sku-4`, { headers: { "x-api-key": key } })).status);
    expect(statuses.filter((s) => s === 200).length).toBe(20);
    expect(statuses.filter((s) => s === 429).length).toBe(40);
    const counter = await t.adminFetch(`/admin/services/pim/ratelimit/counters?limit=long-key&key=${encodeURIComponent(key)}`);
    expect(((await counter.json()) as { counter: { used: number } }).counter.used).toBe(20);
    expect((await t.adminFetch("/admin/services/pim/ratelimit", { method: "DELETE" })).status).toBe(200);
  });

  it("applies several limits at once (a burst limit and a longer one)", async () => {
    const version = await setLimits("pim", [
      { name: "burst", key: "header:x-api-key", algorithm: "token-bucket", limit: 5, periodSeconds: 1, burst: 10 },
      { name: "hourly", key: "header:x-api-key", limit: 15, periodSeconds: 3600 },
    ]);
    await waitFor(async () => Number((await fetch(`${t.shop}/products/sku-1`, { headers: { "x-api-key": "w2" } })).headers.get("x-weft-config-version")) >= version, 5_000);
    const first = await burst("/products/sku-3", { "x-api-key": "multi" }, 30);
    // The bucket's burst (10), plus the token that refills every 200 ms if the 30 requests take that
    // long to arrive (they do on a loaded 2-core machine): a bucket refills while it is being drained.
    const firstOk = first.filter((r) => r.status === 200).length;
    expect(firstOk).toBeGreaterThanOrEqual(10);
    expect(firstOk).toBeLessThanOrEqual(11);
    await new Promise((r) => setTimeout(r, 1_200)); // ~6 tokens refill
    const second = await burst("/products/sku-3", { "x-api-key": "multi" }, 30);
    const secondOk = second.filter((r) => r.status === 200).length;
    expect(secondOk).toBeGreaterThanOrEqual(4);
    expect(firstOk + secondOk).toBeLessThanOrEqual(15); // the hourly limit (15) caps what the bucket allows
    expect(second.find((r) => r.status === 429)?.headers.get("ratelimit-policy")).toMatch(/"(burst|hourly)"/);
    expect((await t.adminFetch("/admin/services/pim/ratelimit", { method: "DELETE" })).status).toBe(200);
  });

  it("follows the limit's failure mode when the counters cannot be reached", async () => {
    // The echo proxy reaches the control plane (and so the counters) through the fixture link.
    const open = { name: "open", key: "header:x-k", limit: 1000, periodSeconds: 60 };
    const serves = async (version: number) =>
      waitFor(async () => Number((await fetch(`${t.shop}/echo/x`, { headers: { "x-k": "probe" } })).headers.get("x-weft-config-version")) >= version, 8_000);
    await serves(await setLimits("echo", [open]));
    await t.link("down");
    try {
      // A key never seen before needs the counter: it cannot be reached, and the limit fails open.
      expect((await fetch(`${t.shop}/echo/fail-open`, { headers: { "x-k": "fresh-1" } })).status).toBe(200);
    } finally {
      await t.link("up");
    }
    await serves(await setLimits("echo", [{ ...open, name: "closed", failMode: "closed" }]));
    await t.link("down");
    try {
      const res = await fetch(`${t.shop}/echo/fail-closed`, { headers: { "x-k": "fresh-2" } });
      expect(res.status).toBe(503);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
    } finally {
      await t.link("up");
    }
    expect((await t.adminFetch("/admin/services/echo/ratelimit", { method: "DELETE" })).status).toBe(200);
  });
});

describe("egress quotas", () => {
  it("shares a provider's quota across every service (and proxy isolate) that calls it", async () => {
    const config = (await (await t.adminFetch("/admin/config")).json()) as {
      services: Array<{ name: string; backends: Array<Record<string, unknown>>; routes: Array<Record<string, unknown>> }>;
    };
    const quota = { limit: 6, periodSeconds: 600 };
    const pim = config.services.find((s) => s.name === "pim");
    const vendor = pim?.backends.find((b) => b.name === "pim-vendor");
    if (!pim || !vendor) throw new Error("no pim-vendor");
    vendor.quota = quota;
    pim.routes = [{ name: "products", match: { path: "/*" }, split: { weights: { "pim-v1": 0, "pim-v2": 0, "pim-vendor": 100 } } }];
    const echo = {
      name: "echo",
      backends: [{ name: "vendor", type: "external", origin: vendor.origin, provider: "vendor-pim", quota }],
      routes: [{ name: "vendor", match: { path: "/echo/*" }, split: { weights: { vendor: 100 } } }],
    };
    const services = [...config.services.filter((s) => s.name !== "echo"), echo];
    const put = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services }) });
    expect(put.status, await put.clone().text()).toBe(200);
    const version = Number(put.headers.get("etag")?.replace(/"/g, ""));
    // Wait for both proxies without calling the provider (every call would spend quota).
    await waitFor(async () => {
      const [a, b] = await Promise.all([t.adminFetch("/admin/services/pim"), t.adminFetch("/admin/services/echo")]);
      return ((await a.json()) as { version: number }).version >= version && ((await b.json()) as { version: number }).version >= version;
    }, 5_000);
    await new Promise((r) => setTimeout(r, 1_200)); // proxies pick the new config up

    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${t.shop}/products/sku-${i + 1}`)).status);
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${t.shop}/echo/products/sku-${i + 1}`)).status);
    statuses.push((await fetch(`${t.shop}/products/sku-9`)).status);
    const sent = statuses.filter((s) => s !== 429).length;
    console.log(`provider quota 6, calls from pim and echo: ${JSON.stringify(statuses)}`);
    expect(sent).toBe(6);
    expect(statuses.slice(0, 4)).toEqual([200, 200, 200, 200]);
    expect(statuses.at(-1)).toBe(429);
  });
});
