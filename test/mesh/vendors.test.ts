/**
 * Third parties as they really are, on the booted mesh, with each provider's own library playing
 * the provider (issue 17) and the fail-closed egress policy (issue 14, Medium 4):
 * - Stripe's SDK signs payment webhooks that mark a demo order paid; tampered, old, replayed and
 *   wrongly signed ones are 401 problem+json and never reach the orders service;
 * - a stand-in vendor (a Node HTTP server) receives API keys, OAuth 2.0 tokens from a real token
 *   server (oauth2-mock-server) and private-key JWTs that Vonage's library verifies;
 * - vendors get an allowlist of headers, scrubbed query strings, and no unreadable bodies;
 * - no secret value shows up in admin reads or any worker's log line.
 */
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { generateKeyPairSync } from "node:crypto";
import { verifySignature as vonageVerify } from "@vonage/jwt";
import { OAuth2Server } from "oauth2-mock-server";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, ECHO_SERVICE, newCart, TEST_SECRETS, waitFor, type TestMesh } from "./harness.ts";
import type { MeshConfigInput } from "../../shared/config.ts";

const keys = generateKeyPairSync("rsa", { modulusLength: 2048 });
const PRIVATE_PEM = keys.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const PUBLIC_PEM = keys.publicKey.export({ type: "spki", format: "pem" }).toString();
const SECRETS = { ...TEST_SECRETS, VENDOR_KEY: "vk_live_stand_in_91b2", OAUTH_CLIENT_SECRET: "oauth-client-secret-5e1", VONAGE_PRIVATE_KEY: PRIVATE_PEM };

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A stand-in vendor: records every call; answers 401 to the bearer tokens in `refuse`. */
async function standInVendor(): Promise<{ url: string; seen: Seen[]; refuse: Set<string>; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const refuse = new Set<string>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      res.writeHead(refuse.has(token) ? 401 : 200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: !refuse.has(token) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, seen, refuse, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

let t: TestMesh;
let vendor: Awaited<ReturnType<typeof standInVendor>>;
const oauth = new OAuth2Server();
let tokenRequests = 0;
let tokenLifetime = 3_600;

beforeAll(async () => {
  vendor = await standInVendor();
  await oauth.issuer.keys.generate("RS256");
  await oauth.start(0, "127.0.0.1");
  oauth.service.on("beforeTokenSigning", (token: { payload: Record<string, unknown> }) => {
    tokenRequests++;
    // Two tokens minted in one second would otherwise be byte-identical.
    token.payload.jti = `t-${tokenRequests}`;
  });
  oauth.service.on("beforeResponse", (response: { body: Record<string, unknown> }) => {
    response.body.expires_in = tokenLifetime;
  });
  t = await bootTestMesh({ secrets: SECRETS });
  const policy = { remove: ["phone"], mask: ["email", "customer.email"] };
  const backends = [
    { name: "v-bearer", type: "external", origin: `${vendor.url}/bearer`, auth: { type: "bearer", secret: "VENDOR_KEY" }, egress: policy },
    { name: "v-header", type: "external", origin: `${vendor.url}/header`, auth: { type: "header", name: "x-api-key", secret: "VENDOR_KEY" } },
    {
      name: "v-oauth",
      type: "external",
      origin: `${vendor.url}/oauth`,
      auth: { type: "oauth2-client-credentials", tokenUrl: `${oauth.issuer.url ?? ""}/token`, clientId: "weft-client", secret: "OAUTH_CLIENT_SECRET", scope: "notify" },
    },
    {
      name: "v-oauth-cold",
      type: "external",
      origin: `${vendor.url}/oauth-cold`,
      auth: { type: "oauth2-client-credentials", tokenUrl: `${oauth.issuer.url ?? ""}/token`, clientId: "weft-client-2", secret: "OAUTH_CLIENT_SECRET", authMethod: "client_secret_post" },
    },
    { name: "v-jwt", type: "external", origin: `${vendor.url}/jwt`, auth: { type: "private-key-jwt", secret: "VONAGE_PRIVATE_KEY", alg: "RS256", kid: "vonage-key", claims: { application_id: "app-1" }, ttlSeconds: 300 } },
  ] as const;
  const echo: MeshConfigInput["services"][number] = {
    ...ECHO_SERVICE,
    backends: [...ECHO_SERVICE.backends, ...backends],
    routes: [...backends.map((b) => ({ name: b.name, match: { path: `/echo/vendor/${b.name}/*` }, split: { weights: { [b.name]: 100 } } })), ...ECHO_SERVICE.routes],
  };
  const current = (await (await t.adminFetch("/admin/config")).json()) as MeshConfigInput;
  const put = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: [...current.services.filter((s) => s.name !== "echo"), echo] }) });
  if (!put.ok) throw new Error(`config refused: ${put.status} ${await put.text()}`);
  await waitFor(async () => (await fetch(`${t.shop}/echo/vendor/v-header/ping`)).status === 200, 10_000);
});

afterAll(async () => {
  await t?.dispose();
  await vendor?.close();
  await oauth.stop();
});

function shop(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${t.shop}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
}

function lastSeen(prefix: string): Seen {
  const found = [...vendor.seen].reverse().find((s) => s.url.startsWith(prefix));
  if (!found) throw new Error(`the vendor saw nothing under ${prefix}`);
  return found;
}

describe("Stripe payment webhooks mark demo orders paid (verified at the edge)", () => {
  const secret = TEST_SECRETS.STRIPE_WEBHOOK_SECRET ?? "";

  async function placeOrder(): Promise<string> {
    const { cartId, headers: held } = await newCart(t);
    const added = await shop(`/cart/${cartId}/items`, { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-1", qty: 1 }) });
    expect(added.status).toBe(200);
    const created = await shop("/orders", { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ cartId }) });
    expect(created.status).toBe(201);
    return ((await created.json()) as { orderId: string }).orderId;
  }

  function event(orderId: string, id = `evt_${Math.random().toString(36).slice(2)}`): string {
    return JSON.stringify({ id, object: "event", type: "payment_intent.succeeded", data: { object: { id: "pi_123", object: "payment_intent", metadata: { orderId } } } });
  }

  function deliver(payload: string, signature: string): Promise<Response> {
    return shop("/orders/webhooks/payments", { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body: payload });
  }

  async function status(orderId: string): Promise<string> {
    return ((await (await shop(`/orders/${orderId}`)).json()) as { status: string }).status;
  }

  it("a Stripe-signed payment_intent.succeeded makes GET /orders/{id} report paid", async () => {
    const orderId = await placeOrder();
    expect(await status(orderId)).toBe("placed");
    const payload = event(orderId);
    const res = await deliver(payload, Stripe.webhooks.generateTestHeaderString({ payload, secret }));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ received: true, orderId, applied: true });
    expect(await status(orderId)).toBe("paid");
  });

  it("refuses tampered, old, wrongly signed and unsigned deliveries with 401 problem+json; the order stays unpaid", async () => {
    const orderId = await placeOrder();
    const payload = event(orderId);
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, string]> = [
      [payload.replace("pi_123", "pi_999"), Stripe.webhooks.generateTestHeaderString({ payload, secret })],
      [payload, Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: now - 600 })],
      [payload, Stripe.webhooks.generateTestHeaderString({ payload, secret: "whsec_attacker" })],
      [payload, ""],
    ];
    for (const [body, signature] of cases) {
      const res = await deliver(body, signature);
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(((await res.json()) as { type: string }).type).toBe("urn:weft:problem:webhook-unverified");
    }
    expect(await status(orderId)).toBe("placed");
  });

  it("refuses a replay of one delivery, and accepts Stripe's re-signed retry of the event", async () => {
    const orderId = await placeOrder();
    const payload = event(orderId, "evt_replayed");
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret });
    expect((await deliver(payload, signature)).status).toBe(200);
    const replay = await deliver(payload, signature);
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as { type: string }).type).toBe("urn:weft:problem:webhook-replayed");
    const retry = await deliver(payload, Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp: Math.floor(Date.now() / 1000) + 1 }));
    expect(retry.status).toBe(200);
    expect(await retry.json()).toMatchObject({ outcome: "already-paid" });
  });

  it("the orders service refuses the payment path when no proxy verified it (forged header from the internet is stripped)", async () => {
    const orderId = await placeOrder();
    // Another route (no webhook settings) cannot carry the path; and x-weft-* from the internet is removed.
    const res = await shop("/orders/webhooks/payments", { method: "POST", headers: { "content-type": "application/json", "x-weft-webhook-scheme": "stripe" }, body: event(orderId) });
    expect(res.status).toBe(401);
    expect(await status(orderId)).toBe("placed");
  });
});

describe("vendor credentials held by the mesh", () => {
  it("bearer and header API keys reach the vendor; the service behind never held them", async () => {
    expect((await shop("/echo/vendor/v-bearer/a", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).status).toBe(200);
    expect(lastSeen("/bearer/").headers.authorization).toBe(`Bearer ${SECRETS.VENDOR_KEY}`);
    expect((await shop("/echo/vendor/v-header/b")).status).toBe(200);
    const seen = lastSeen("/header/");
    expect(seen.headers["x-api-key"]).toBe(SECRETS.VENDOR_KEY);
    expect(seen.headers.authorization).toBeUndefined();
  });

  it("oauth2 client credentials: one token for many calls, a new one after a 401 and after expiry", async () => {
    const before = tokenRequests;
    for (let i = 0; i < 20; i++) expect((await shop(`/echo/vendor/v-oauth/call-${i}`)).status).toBe(200);
    expect(tokenRequests - before).toBe(1);
    const token = (lastSeen("/oauth/").headers.authorization ?? "").replace("Bearer ", "");
    expect(token.split(".")).toHaveLength(3);

    // The provider revokes it: the proxy fetches one new token and retries once, transparently.
    vendor.refuse.add(token);
    expect((await shop("/echo/vendor/v-oauth/after-revoke")).status).toBe(200);
    expect(tokenRequests - before).toBe(2);
    const fresh = (lastSeen("/oauth/").headers.authorization ?? "").replace("Bearer ", "");
    expect(fresh).not.toBe(token);
    for (let i = 0; i < 5; i++) expect((await shop(`/echo/vendor/v-oauth/more-${i}`)).status).toBe(200);
    expect(tokenRequests - before).toBe(2);
  });

  it("oauth2 client credentials: 20 concurrent first calls share one token request (single flight in the token object)", async () => {
    const before = tokenRequests;
    const statuses = await Promise.all(Array.from({ length: 20 }, async (_, i) => (await shop(`/echo/vendor/v-oauth-cold/c-${i}`)).status));
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(tokenRequests - before).toBe(1);
  });

  it("oauth2 client credentials: a short-lived token is replaced shortly before it expires", async () => {
    tokenLifetime = 2;
    vendor.refuse.add((lastSeen("/oauth/").headers.authorization ?? "").replace("Bearer ", ""));
    expect((await shop("/echo/vendor/v-oauth/short-1")).status).toBe(200);
    const first = tokenRequests;
    const shortToken = lastSeen("/oauth/").headers.authorization;
    // Used until 90% of its lifetime, then replaced (one new token request, not one per call).
    await waitFor(async () => {
      expect((await shop("/echo/vendor/v-oauth/short-n")).status).toBe(200);
      return lastSeen("/oauth/").headers.authorization !== shortToken;
    }, 10_000, 200);
    expect(tokenRequests - first).toBe(1);
    tokenLifetime = 3_600;
  });

  it("private-key-jwt: Vonage's own library verifies the JWT Weft signed with the provider-issued key", async () => {
    expect((await shop("/echo/vendor/v-jwt/sms")).status).toBe(200);
    const token = (lastSeen("/jwt/").headers.authorization ?? "").replace("Bearer ", "");
    expect(vonageVerify(token, PUBLIC_PEM)).toBe(true);
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as Record<string, unknown>;
    expect(payload).toMatchObject({ application_id: "app-1" });
    expect(typeof payload.jti).toBe("string");
  });

  it("the demo vendor accepts notifications with an API key after a config-only swap", async () => {
    const current = (await (await t.adminFetch("/admin/config")).json()) as MeshConfigInput;
    const services = current.services.map((s) =>
      s.name !== "notify" ? s : { ...s, backends: s.backends.map((b) => (b.type === "external" ? { ...b, auth: { type: "header" as const, name: "x-api-key", secret: "NOTIFY_API_KEY" } } : b)) },
    );
    const put = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services }) });
    expect(put.status).toBe(200);
    const { cartId, headers: held } = await newCart(t);
    await shop(`/cart/${cartId}/items`, { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ sku: "sku-2", qty: 1 }) });
    const order = await shop("/orders", { method: "POST", headers: { ...held, "content-type": "application/json" }, body: JSON.stringify({ cartId, customer: { email: "jane@example.com" } }) });
    expect(order.status).toBe(201);
    await waitFor(async () => {
      const received = (await (await fetch(`${t.vendor}/notify/received`)).json()) as { messages: Array<{ sub: string; body: { to: string } }> };
      return received.messages.some((m) => m.sub === "api-key" && m.body.to === "j***@example.com");
    }, 10_000);
  });
});

describe("the egress data policy fails closed (issue 14, Medium 4)", () => {
  it("masks JSON sent as text/plain, scrubs the query, and refuses bodies it cannot read", async () => {
    const body = JSON.stringify({ customer: { email: "jane@example.com" }, phone: "+33 6 12", sku: "mug" });
    const res = await shop("/echo/vendor/v-bearer/q?email=jane%40example.com&phone=123&sku=mug", { method: "POST", headers: { "content-type": "text/plain;charset=UTF-8" }, body });
    expect(res.status).toBe(200);
    const seen = lastSeen("/bearer/");
    expect(JSON.parse(seen.body)).toEqual({ customer: { email: "j***@example.com" }, sku: "mug" });
    expect(seen.url).toBe("/bearer/echo/vendor/v-bearer/q?email=j***%40example.com&sku=mug");
    const form = await shop("/echo/vendor/v-bearer/form", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "email=jane%40example.com" });
    expect(form.status).toBe(422);
    expect(vendor.seen.some((s) => s.url.endsWith("/form"))).toBe(false);
  });

  it("sends vendors an allowlist of headers: no client address, referer, proxy credentials or caller keys", async () => {
    const res = await shop("/echo/vendor/v-header/headers", {
      headers: {
        "x-forwarded-for": "203.0.113.7",
        referer: "https://shop.example.com/checkout?email=jane@example.com",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "x-api-key": "callers-own-key",
        cookie: "session=abc",
        "accept-language": "fr",
        "idempotency-key": "k-1",
      },
    });
    expect(res.status).toBe(200);
    const seen = lastSeen("/header/");
    for (const name of ["x-forwarded-for", "referer", "proxy-authorization", "cookie"]) expect(seen.headers[name]).toBeUndefined();
    expect(seen.headers["x-api-key"]).toBe(SECRETS.VENDOR_KEY);
    expect(seen.headers["accept-language"]).toBe("fr");
    expect(seen.headers["idempotency-key"]).toBe("k-1");
  });
});

describe("secrets stay secret", () => {
  it("no secret value appears in admin reads, config history or any worker's log line", async () => {
    const reads = await Promise.all(["/admin/config", "/admin/config/versions?limit=50", "/admin/services/echo", "/admin/services/orders"].map(async (p) => (await t.adminFetch(p)).text()));
    const everything = [...reads, ...t.logLines, JSON.stringify(t.accessLogs)].join("\n");
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(everything.includes(value.trim().split("\n")[1] ?? value), name).toBe(false);
      expect(everything.includes(value), name).toBe(false);
    }
    expect(reads[0]).toContain("VENDOR_KEY");
  });
});
