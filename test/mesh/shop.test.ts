/**
 * The demo shop end to end, with the proxies exactly as deployed (debug headers off): the backend
 * that answered comes from the product's own `version`, config versions from the access log.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, listOrders, newCart, servedVersion, setSplit, waitFor, type TestMesh } from "./harness.ts";

let t: TestMesh;
beforeAll(async () => {
  t = await bootTestMesh({ debugHeaders: false });
});
afterAll(async () => {
  await t?.dispose();
});

function shop(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return fetch(`${t.shop}${path}`, { ...init, headers, signal: AbortSignal.timeout(10_000) });
}

interface Product {
  sku: string;
  price: number;
  version: string;
}
interface Cart {
  cartId: string;
  items: Array<{ sku: string; qty: number; price: number }>;
  total: number;
}
interface Order {
  orderId: string;
  total: number;
}

/** Waits until the pim proxy serves config `version` (its access lines say which it used). */
async function pimServes(version: number): Promise<void> {
  await servedVersion(t, "pim", "/products/sku-1", version);
}

/** The pim backend that answered, from the product's `version` (pim-v1, pim-v2, …). */
async function pimBackend(res: Response): Promise<string> {
  return res.status === 200 ? `pim-${((await res.json()) as Product).version}` : `status ${res.status}`;
}

describe("the demo shop through the mesh", () => {
  it("serves products from pim with a numeric price and says which backend answered", async () => {
    const res = await shop("/products/sku-1");
    expect(res.status).toBe(200);
    const product = (await res.json()) as Product;
    expect(product.sku).toBe("sku-1");
    expect(typeof product.price).toBe("number");
    expect(product.version).toBe("v1");
    expect([...res.headers.keys()].filter((name) => name.startsWith("x-weft-"))).toEqual([]);
    expect(res.headers.get("set-cookie")).toMatch(/^shopper=[0-9a-f-]{36}; Path=\//);
    for (const sku of ["sku-20", "sku-7"]) expect((await shop(`/products/${sku}`)).status).toBe(200);
  });

  it("answers 404 problem+json for an unknown product", async () => {
    const res = await shop("/products/sku-21");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/problem\+json/);
  });

  it("fills a cart priced by pim and turns it into an order exactly once", async () => {
    const prices = await Promise.all(
      ["sku-1", "sku-3"].map(async (sku) => ((await (await shop(`/products/${sku}`)).json()) as Product).price),
    );
    const { cartId, headers: held } = await newCart(t);
    expect((await shop(`/cart/${cartId}/items`, { method: "POST", headers: held, body: JSON.stringify({ sku: "sku-1", qty: 2 }) })).status).toBe(200);
    const added = await shop(`/cart/${cartId}/items`, { method: "POST", headers: held, body: JSON.stringify({ sku: "sku-3", qty: 1 }) });
    const cart = (await added.json()) as Cart;
    const expected = Math.round((2 * (prices[0] ?? 0) + (prices[1] ?? 0)) * 100) / 100;
    expect(cart.items).toHaveLength(2);
    expect(cart.total).toBeCloseTo(expected, 2);

    const bad = await shop(`/cart/${cartId}/items`, { method: "POST", headers: held, body: JSON.stringify({ sku: "sku-1", qty: 0 }) });
    expect(bad.status).toBe(422);

    const key = `checkout-${cartId}`;
    const created = await shop("/orders", { method: "POST", headers: { ...held, "idempotency-key": key }, body: JSON.stringify({ cartId }) });
    expect(created.status).toBe(201);
    const order = (await created.json()) as Order;
    expect(order.total).toBeCloseTo(expected, 2);
    expect(created.headers.get("location")).toBe(`/orders/${order.orderId}`);
    expect(order).not.toHaveProperty("cartId");

    const replay = await shop("/orders", { method: "POST", headers: { ...held, "idempotency-key": key }, body: JSON.stringify({ cartId }) });
    expect(replay.status).toBe(200);
    expect(((await replay.json()) as Order).orderId).toBe(order.orderId);
    // The replay needs the cart's token too: the key and the cart id alone give nothing away.
    const keyOnly = await shop("/orders", { method: "POST", headers: { "idempotency-key": key }, body: JSON.stringify({ cartId }) });
    expect(keyOnly.status).toBe(401);

    const fetched = await shop(`/orders/${order.orderId}`);
    expect(((await fetched.json()) as Order).total).toBeCloseTo(expected, 2);
  });

  it("forgets an Idempotency-Key after 24 hours (Stripe's retention), so the key table stays bounded", async () => {
    const { cartId, headers: held } = await newCart(t);
    expect((await shop(`/cart/${cartId}/items`, { method: "POST", headers: held, body: JSON.stringify({ sku: "sku-2", qty: 1 }) })).status).toBe(200);
    const key = `expiry-${cartId}`;
    expect((await shop("/orders", { method: "POST", headers: { ...held, "idempotency-key": key }, body: JSON.stringify({ cartId }) })).status).toBe(201);
    const namespace = await t.mesh.mf.getDurableObjectNamespace("ORDER_BOOK", "weft-orders");
    const book = namespace.get(namespace.idFromName("orders")) as unknown as {
      byKey(key: string, now?: number): Promise<{ orderId: string } | undefined>;
      sweep(now?: number): Promise<number>;
      keyCount(): Promise<number>;
    };
    const now = Date.now();
    const day = 24 * 3_600_000;
    expect(await book.byKey(key, now + day - 60_000)).toBeDefined();
    expect(await book.byKey(key, now + day + 60_000)).toBeUndefined();
    const before = await book.keyCount();
    expect(await book.sweep(now + day - 60_000)).toBe(0);
    expect(await book.sweep(now + day + 60_000)).toBeGreaterThanOrEqual(1);
    expect(await book.keyCount()).toBeLessThan(before);
  });

  it("keeps every shopper's cart to its token holder: no list, id or session cookie hands it out", async () => {
    const victim = await newCart(t);
    expect((await shop(`/cart/${victim.cartId}/items`, { method: "POST", headers: victim.headers, body: JSON.stringify({ sku: "sku-2", qty: 1 }) })).status).toBe(200);
    const placed = await shop("/orders", { method: "POST", headers: { ...victim.headers, "idempotency-key": `victim-${victim.cartId}` }, body: JSON.stringify({ cartId: victim.cartId }) });
    expect(placed.status).toBe(201);

    // The internet cannot list orders (the shipped manifest's policy), with GET or HEAD.
    const list = await shop("/orders");
    expect(list.status).toBe(403);
    expect(JSON.stringify(await list.json())).not.toContain(victim.cartId);
    expect((await shop("/orders", { method: "HEAD" })).status).toBe(403);
    // Inside the mesh the list still works, and names no cart.
    const orders = await listOrders(t);
    expect(orders.length).toBeGreaterThan(0);
    expect(JSON.stringify(orders)).not.toContain(victim.cartId);

    // Knowing a cart id is not enough to read or change the cart.
    const another = await newCart(t);
    for (const headers of [{}, another.headers, { "cart-token": "x".repeat(43) }]) {
      const read = await shop(`/cart/${victim.cartId}`, { headers });
      expect([401, 403]).toContain(read.status);
      expect(read.headers.get("content-type")).toBe("application/problem+json");
      const write = await shop(`/cart/${victim.cartId}/items`, { method: "POST", headers, body: JSON.stringify({ sku: "sku-1", qty: 1 }) });
      expect([401, 403]).toContain(write.status);
      const order = await shop("/orders", { method: "POST", headers, body: JSON.stringify({ cartId: victim.cartId }) });
      expect([401, 403]).toContain(order.status);
    }
    // Client-chosen cart ids (the old session cookie) are not carts.
    expect((await shop("/cart/c1/items", { method: "POST", body: JSON.stringify({ sku: "sku-1", qty: 1 }) })).status).toBe(400);
  });

  it("gives a storefront shopper a cart held by an HttpOnly token cookie, separate from the session cookie", async () => {
    const first = await shop("/api/cart/items", { method: "POST", body: JSON.stringify({ sku: "sku-1", qty: 1 }) });
    expect(first.status).toBe(200);
    const cookies = first.headers.getSetCookie();
    const cartCookie = cookies.find((c) => c.startsWith("cart="));
    const shopperCookie = cookies.find((c) => c.startsWith("shopper="));
    expect(cartCookie).toMatch(/^cart=[A-Za-z0-9_-]{43}; Path=\/api; SameSite=Strict; .*HttpOnly/);
    expect(shopperCookie).toBeDefined();
    const cookie = [cartCookie, shopperCookie].map((c) => c?.split(";")[0]).join("; ");
    const cart = (await first.json()) as Cart;
    expect(cart.items).toHaveLength(1);
    const shopperId = shopperCookie?.split(";")[0]?.split("=")[1] ?? "";
    expect(cart.cartId).not.toBe(shopperId);
    // The session (shopper) cookie alone does not bring the cart back.
    expect(((await (await shop("/api/cart", { headers: { cookie: `shopper=${shopperId}` } })).json()) as Cart).items).toHaveLength(0);
    expect(((await (await shop("/api/cart", { headers: { cookie } })).json()) as Cart).items).toHaveLength(1);

    const placed = await shop("/api/orders", { method: "POST", headers: { cookie, "idempotency-key": `page-${cart.cartId}` } });
    expect(placed.status).toBe(201);
    expect(await placed.json()).not.toHaveProperty("cartId");
    await waitFor(async () => (((await (await shop("/api/cart", { headers: { cookie } })).json()) as Cart).items.length === 0), 5_000);
  });

  it("renders the storefront page from pim through the mesh", async () => {
    const res = await shop("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    const html = await res.text();
    expect(html).toContain("sku-1");
  });
});

describe("traffic split on pim, measured over hundreds of shoppers", () => {
  it("follows 90/10 then 70/30 without moving anyone back from pim-v2", async () => {
    const shoppers = Array.from({ length: 400 }, (_, i) => `shopper-${i}-${Math.random().toString(36).slice(2)}`);
    const assign = async (): Promise<string[]> => {
      const out: string[] = [];
      for (let i = 0; i < shoppers.length; i += 50) {
        const batch = await Promise.all(
          shoppers.slice(i, i + 50).map(async (s) => pimBackend(await shop("/products/sku-2", { headers: { cookie: `shopper=${s}` } }))),
        );
        out.push(...batch);
      }
      return out;
    };
    await pimServes(await setSplit(t, "pim", { "pim-v1": 90, "pim-v2": 10 }));
    const first = await assign();
    const share1 = first.filter((b) => b === "pim-v2").length / shoppers.length;
    expect(Math.abs(share1 - 0.1)).toBeLessThan(0.06);
    expect((await assign())).toEqual(first); // sticky

    await pimServes(await setSplit(t, "pim", { "pim-v1": 70, "pim-v2": 30 }));
    const second = await assign();
    const share2 = second.filter((b) => b === "pim-v2").length / shoppers.length;
    expect(Math.abs(share2 - 0.3)).toBeLessThan(0.07);
    first.forEach((backend, i) => {
      if (backend === "pim-v2") expect(second[i]).toBe("pim-v2");
    });
    console.log(`pim-v2 share: ${(share1 * 100).toFixed(1)}% at 90/10, ${(share2 * 100).toFixed(1)}% at 70/30 (400 shoppers)`);
  });

  it("refuses bad split requests with problem+json and changes nothing", async () => {
    const before: unknown = await (await t.adminFetch("/admin/services/pim")).json();
    for (const body of [{ weights: { "pim-v1": 90, "pim-v2": 20 } }, { weights: { "pim-v1": 100, "pim-x": 0 } }, { weights: { "pim-v1": 50.5, "pim-v2": 49.5 } }]) {
      const res = await t.adminFetch("/admin/services/pim/split", { method: "PUT", body: JSON.stringify(body) });
      expect(res.status).toBe(422);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
    }
    const noToken = await fetch(`${t.admin}/admin/services/pim/split`, { method: "PUT", body: JSON.stringify({ weights: { "pim-v1": 0, "pim-v2": 100 } }) });
    expect(noToken.status).toBe(401);
    expect(await (await t.adminFetch("/admin/services/pim")).json()).toEqual(before);
  });
});
