import { exportJWK, generateKeyPair, SignJWT, type JSONWebKeySet } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, ECHO_SERVICE, newCart, setSplit, waitFor, type TestMesh } from "./harness.ts";

let t: TestMesh;
beforeAll(async () => {
  t = await bootTestMesh();
});
afterAll(async () => {
  await t?.dispose();
});

interface Received {
  sub: string;
  aud: string;
  jti: string;
  body: { to: string; customer: { email: string }; order: { orderId: string } };
}

async function received(): Promise<Received[]> {
  return ((await (await fetch(`${t.vendor}/notify/received`)).json()) as { messages: Received[] }).messages;
}

async function placeOrder(email: string): Promise<string> {
  const { cartId, headers: held } = await newCart(t);
  const add = await fetch(`${t.shop}/cart/${cartId}/items`, { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-5", qty: 1 }) });
  expect(add.status).toBe(200);
  const res = await fetch(`${t.shop}/orders`, { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ cartId, customer: { email } }) });
  expect(res.status).toBe(201);
  return ((await res.json()) as { orderId: string }).orderId;
}

async function putService(service: object): Promise<void> {
  const current = (await (await t.adminFetch("/admin/config")).json()) as { services: Array<{ name: string }> };
  const services = [...current.services.filter((s) => s.name !== (service as { name: string }).name), service];
  const res = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services }) });
  expect(res.status).toBe(200);
}

describe("signed egress to third parties", () => {
  it("publishes public keys only at /.well-known/jwks.json", async () => {
    const res = await fetch(`${t.admin}/.well-known/jwks.json`);
    expect(res.headers.get("cache-control")).toMatch(/max-age/);
    const { keys } = (await res.json()) as JSONWebKeySet;
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
      expect(key.use).toBe("sig");
    }
  });

  it("delivers an order confirmation the vendor verified, from 'orders', with the email masked", async () => {
    const orderId = await placeOrder("jane.doe@example.com");
    await waitFor(async () => (await received()).some((m) => m.body.order.orderId === orderId), 5_000);
    const message = (await received()).find((m) => m.body.order.orderId === orderId);
    expect(message?.sub).toBe("orders");
    expect(message?.aud).toBe("vendor-notify");
    expect(message?.body.customer.email).toBe("j***@example.com");
    expect(message?.body.to).toBe("j***@example.com");
    expect(JSON.stringify(message)).not.toContain("jane.doe");
  });

  it("has the vendor refuse unsigned calls and tokens from a key the mesh never published", async () => {
    expect((await fetch(`${t.vendor}/pim/products/sku-1`)).status).toBe(401);
    const { privateKey } = await generateKeyPair("ES256");
    const forged = await new SignJWT({ htm: "GET", htu: `${t.vendor}/pim/products/sku-1`, body_sha256: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" })
      .setProtectedHeader({ alg: "ES256", kid: "attacker", typ: "JWT" })
      .setIssuer(t.admin)
      .setSubject("orders")
      .setAudience("vendor-pim")
      .setIssuedAt()
      .setExpirationTime("30s")
      .setJti(crypto.randomUUID())
      .sign(privateKey);
    const res = await fetch(`${t.vendor}/pim/products/sku-1`, { headers: { authorization: `Bearer ${forged}` } });
    expect(res.status).toBe(401);
  });

  it("serves products from the vendor once the split moves to pim-vendor", async () => {
    await setSplit(t, "pim", { "pim-v1": 0, "pim-v2": 0, "pim-vendor": 100 });
    await waitFor(async () => (await fetch(`${t.shop}/products/sku-4`)).headers.get("x-weft-backend") === "pim-vendor", 5_000);
    const res = await fetch(`${t.shop}/products/sku-4`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { version: string; price: number }).version).toBe("vendor");
    // The cart prices its items through the same split.
    const held = await newCart(t);
    const cart = await fetch(`${t.shop}/cart/${held.cartId}/items`, { method: "POST", headers: { ...held.headers, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-4", qty: 2 }) });
    expect(cart.status).toBe(200);
    await setSplit(t, "pim", { "pim-v1": 100, "pim-v2": 0, "pim-vendor": 0 });
  });

  it("refuses to send a request anywhere but the configured origin", async () => {
    await setSplit(t, "pim", { "pim-v1": 0, "pim-v2": 0, "pim-vendor": 100 });
    await waitFor(async () => (await fetch(`${t.shop}/products/sku-4`)).headers.get("x-weft-backend") === "pim-vendor", 5_000);
    // Encoded so the client does not normalise them away before they reach the proxy: the proxy's
    // canonical path refuses encoded slashes before any step (egress builds URLs only from that path).
    for (const path of ["/products/..%2f..%2fadmin", "/products/%2e%2e%2fsecrets", "/products/x%5c..%5cadmin"]) {
      const res = await fetch(`${t.shop}${path}`);
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { type: string }).type).toBe("urn:weft:problem:invalid-path");
    }
    await setSplit(t, "pim", { "pim-v1": 100, "pim-v2": 0, "pim-vendor": 0 });
  });

  it("rotates keys with no failed call across the switch", async () => {
    const before = await received();
    const orders: Array<Promise<string>> = [];
    const rotation = await t.adminFetch("/admin/keys/rotate", { method: "POST" });
    expect(rotation.status).toBe(200);
    const { rotated } = (await rotation.json()) as { rotated: Array<{ service: string; kid: string; previous: string | null }> };
    const notify = rotated.find((r) => r.service === "notify");
    const jwks = (await (await fetch(`${t.admin}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
    expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([notify?.kid, notify?.previous]));
    // Orders keep flowing while the new key activates (2 s in this mesh) and after.
    const until = Date.now() + 3_500;
    while (Date.now() < until) {
      orders.push(placeOrder(`shopper${orders.length}@example.com`));
      await new Promise((r) => setTimeout(r, 250));
    }
    const ids = await Promise.all(orders);
    await waitFor(async () => (await received()).length >= before.length + ids.length, 8_000);
    const delivered = new Set((await received()).map((m) => m.body.order.orderId));
    for (const id of ids) expect(delivered.has(id)).toBe(true);
  });
});

describe("authorization policies", () => {
  it("makes pim internal-only: the internet gets 403, the cart still prices its items", async () => {
    const policy = { allow: [{ from: ["cart", "orders", "storefront"], methods: ["GET"], paths: ["/products/*"] }] };
    const put = await t.adminFetch("/admin/services/pim/policy", { method: "PUT", body: JSON.stringify(policy) });
    expect(put.status).toBe(200);
    await waitFor(async () => (await fetch(`${t.shop}/products/sku-1`)).status === 403, 5_000);
    const denied = await fetch(`${t.shop}/products/sku-1`, { headers: { "x-weft-caller": "cart" } }); // spoofing does not help
    expect(denied.status).toBe(403);
    expect(denied.headers.get("content-type")).toBe("application/problem+json");
    const held = await newCart(t);
    const cart = await fetch(`${t.shop}/cart/${held.cartId}/items`, { method: "POST", headers: { ...held.headers, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-1", qty: 1 }) });
    expect(cart.status).toBe(200);
    expect(((await cart.json()) as { total: number }).total).toBeGreaterThan(0);
    expect((await t.adminFetch("/admin/services/pim/policy", { method: "DELETE" })).status).toBe(200);
    await waitFor(async () => (await fetch(`${t.shop}/products/sku-1`)).status === 200, 5_000);
  });
});

describe("end-user authentication and contracts on a route", () => {
  it("verifies shoppers' JWTs on a route and passes the verified claims, never forged ones", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: "shop-idp-1", alg: "ES256" };
    await putService({
      ...ECHO_SERVICE,
      routes: [
        {
          name: "account",
          match: { path: "/echo/account/*" },
          split: { weights: { "echo-a": 100, "echo-b": 0 } },
          auth: { issuer: "https://id.shop.example", audiences: ["shop"], jwks: { keys: [jwk] }, requiredClaims: { scope: "account" } },
        },
        ...ECHO_SERVICE.routes,
      ],
    });
    const token = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: "shop-idp-1" }).setIssuer("https://id.shop.example").setAudience("shop").setSubject("shopper-7").setIssuedAt().setExpirationTime("5m").sign(privateKey);
    await waitFor(async () => (await fetch(`${t.shop}/echo/account/me`)).status === 401, 5_000);
    const missing = await fetch(`${t.shop}/echo/account/me`, { headers: { "x-weft-claims": "eyJzdWIiOiJhZG1pbiJ9" } });
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const wrongScope = await fetch(`${t.shop}/echo/account/me`, { headers: { authorization: `Bearer ${await token({ scope: "other" })}` } });
    expect(wrongScope.status).toBe(401);
    const ok = await fetch(`${t.shop}/echo/account/me`, { headers: { authorization: `Bearer ${await token({ scope: "account" })}`, "x-weft-claims": "forged" } });
    expect(ok.status).toBe(200);
    const echoed = (await ok.json()) as { headers: Record<string, string> };
    const claims = JSON.parse(Buffer.from(echoed.headers["x-weft-claims"] ?? "", "base64url").toString()) as { sub: string; scope: string };
    expect(claims).toMatchObject({ sub: "shopper-7", scope: "account" });
  });

  it("never changes traffic in log mode, even for bodies too large to check; a backend's own x-weft-fault does not switch off an enforced response contract", async () => {
    await putService({
      ...ECHO_SERVICE,
      routes: [
        {
          name: "logged",
          match: { path: "/echo/logged", methods: ["POST"] },
          split: { weights: { "echo-a": 100, "echo-b": 0 } },
          contract: { mode: "log", request: { type: "object", required: ["never"] }, response: { type: "object", required: ["never"] } },
        },
        {
          name: "checked",
          match: { path: "/echo/checked" },
          split: { weights: { "echo-a": 100, "echo-b": 0 } },
          contract: { mode: "enforce", response: { type: "object", required: ["never"] } },
        },
        ...ECHO_SERVICE.routes,
      ],
    });
    await waitFor(async () => (await fetch(`${t.shop}/echo/checked`)).status === 502, 5_000);
    // 2 MiB, over the 1 MiB a contract check reads: logged as unchecked, forwarded byte for byte.
    const big = JSON.stringify({ pad: "x".repeat(2 * 1024 * 1024) });
    const logged = await fetch(`${t.shop}/echo/logged`, { method: "POST", headers: { "content-type": "application/json" }, body: big });
    expect(logged.status).toBe(200);
    expect(((await logged.json()) as { body: string }).body.length).toBe(big.length);
    const small = await fetch(`${t.shop}/echo/logged`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(small.status).toBe(200); // a violation in log mode is logged, never refused
    const marked = await fetch(`${t.shop}/echo/checked`, { headers: { "x-echo-fault": "1" } });
    expect(marked.status).toBe(502);
    expect(((await marked.json()) as { type: string }).type).toMatch(/contract-violation/);
  });

  it("caps a chunked request body as it flows (413), as it caps a declared one", async () => {
    const chunk = new Uint8Array(1024 * 1024).fill(120);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 34) return controller.close();
        sent++;
        controller.enqueue(chunk);
      },
    });
    // Node's fetch needs `duplex: "half"` for a stream body; the DOM RequestInit type does not list it.
    const init: RequestInit & { duplex: "half" } = { method: "POST", body: stream, duplex: "half" };
    const res = await fetch(`${t.shop}/echo/chunked`, init);
    expect(res.status).toBe(413);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
  });

  it("enforces a request contract: a line without a price is refused and never forwarded", async () => {
    await putService({
      ...ECHO_SERVICE,
      routes: [
        {
          name: "lines",
          match: { path: "/echo/lines", methods: ["POST"] },
          split: { weights: { "echo-a": 100, "echo-b": 0 } },
          contract: {
            mode: "enforce",
            request: { type: "object", required: ["items"], properties: { items: { type: "array", items: { type: "object", required: ["sku", "qty", "price"] } } } },
          },
        },
        ...ECHO_SERVICE.routes,
      ],
    });
    const post = (items: unknown) => fetch(`${t.shop}/echo/lines`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ items }) });
    await waitFor(async () => (await post([{ sku: "a", qty: 1 }])).status === 422, 5_000);
    const refused = await post([{ sku: "a", qty: 1, price: 2 }, { sku: "b", qty: 1 }]);
    expect(refused.status).toBe(422);
    const problem = (await refused.json()) as { errors: Array<{ path: string; message: string }> };
    expect(problem.errors.some((e) => e.path.startsWith("/items/1") && /price/.test(e.message))).toBe(true);
    const accepted = await post([{ sku: "a", qty: 1, price: 2 }]);
    expect(accepted.status).toBe(200);
    expect(((await accepted.json()) as { body: string }).body).toContain('"price":2');
  });

  it("answers 504 when a route's timeout passes", async () => {
    await putService({
      ...ECHO_SERVICE,
      routes: [{ name: "slow", match: { path: "/echo/slow/*" }, split: { weights: { "echo-a": 100, "echo-b": 0 } }, timeoutMs: 300 }, ...ECHO_SERVICE.routes],
    });
    await waitFor(async () => (await fetch(`${t.shop}/echo/slow/sleep/1000`)).status === 504, 8_000);
    expect((await fetch(`${t.shop}/echo/slow/sleep/10`)).status).toBe(200);
  });
});
