/**
 * Third parties, inside workerd: the proxy's webhook step against the control plane's real replay
 * store (a Durable Object), vendor credentials (private-key JWTs checked with jose here; Vonage's
 * own library, which is Node-only, checks them in test/mesh/vendors.test.ts), and the admin API refusing secret values in config.
 */
import { exports } from "cloudflare:workers";
import { exportPKCS8, exportSPKI, generateKeyPair, importSPKI, jwtVerify } from "jose";
import Stripe from "stripe";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { clearCredentialCaches, secretsFrom, vendorCredential, type CredentialDeps, type EgressCall } from "../../workers/proxy/egress-credentials.ts";
import { controlPlaneReplayGuard, verifyWebhook, webhookStep, type ReplayGuard } from "../../workers/proxy/webhook.ts";
import { HeaderEdits } from "../../workers/proxy/outbound.ts";
import { identityEdits } from "../../workers/proxy/identity.ts";

// Seen as proxies see it; the loopback's structural RPC type is too deep for TypeScript.
/** The control plane as one service's proxy sees it: bound with `props.service`, as weft generate binds it. */
const controlPlaneOf = (service: string): ControlPlaneApi => (exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi)({ props: { service } });
const controlPlane = controlPlaneOf("notify");
const SECRET = "whsec_unit_test_secret";
const secrets = secretsFrom({ STRIPE_WEBHOOK_SECRET: SECRET, OLD_STRIPE_SECRET: "whsec_old", WEFT_ADMIN_TOKEN: "never-sent" });
const cryptoProvider = Stripe.createSubtleCryptoProvider();
const settings = { scheme: "stripe" as const, secret: "STRIPE_WEBHOOK_SECRET", toleranceSeconds: 300 };

async function stripeRequest(body: string, timestamp: number, secret = SECRET): Promise<Request> {
  const signature = await Stripe.webhooks.generateTestHeaderStringAsync({ payload: body, secret, timestamp, cryptoProvider });
  return new Request("https://shop.test/orders/webhooks/payments", { method: "POST", headers: { "stripe-signature": signature, "content-type": "application/json", "x-weft-webhook-scheme": "forged" }, body });
}

function eventBody(id: string): string {
  return JSON.stringify({ id, type: "payment_intent.succeeded", data: { object: { id: "pi_1", metadata: { orderId: "o-1" } } } });
}

describe("the proxy's webhook step", () => {
  const guard = (service: string): ReplayGuard => controlPlaneReplayGuard(controlPlaneOf(service), service);

  // The first call starts the replay shard's SQLite object; on a loaded machine that alone can
  // take seconds, which is not what these tests are about.
  beforeAll(async () => {
    for (const service of ["orders", "payments"]) expect(await controlPlaneOf(service).claimWebhookDelivery(service, "0".repeat(64), 1)).toBe("first");
  }, 30_000);

  it("forwards a verified delivery with the same body bytes and the verified headers", async () => {
    const body = eventBody("evt_forward");
    const now = Date.now();
    const step = await verifyWebhook(settings, await stripeRequest(body, Math.floor(now / 1000)), secrets, now, guard("orders"));
    if (step.kind !== "continue") throw new Error(`refused: ${await step.response.text()}`);
    expect(await step.value.text()).toBe(body);
    expect(step.value.headers.get("x-weft-webhook-scheme")).toBe("stripe");
    expect(step.value.headers.get("x-weft-webhook-id")).toBe("evt_forward");
  });

  it("refuses the same delivery replayed, mesh-wide (the store is a Durable Object, not isolate memory)", async () => {
    const body = eventBody("evt_replay");
    const now = Date.now();
    const t = Math.floor(now / 1000);
    const first = await verifyWebhook(settings, await stripeRequest(body, t), secrets, now, guard("orders"));
    expect(first.kind).toBe("continue");
    const replay = await verifyWebhook(settings, await stripeRequest(body, t), secrets, now, guard("orders"));
    if (replay.kind !== "stop") throw new Error("replay was forwarded");
    expect(replay.response.status).toBe(401);
    expect(replay.response.headers.get("content-type")).toBe("application/problem+json");
    expect(await replay.response.json()).toMatchObject({ type: "urn:weft:problem:webhook-replayed" });
    // Stripe's retry of the same event signs it afresh: not a replay.
    expect((await verifyWebhook(settings, await stripeRequest(body, t + 1), secrets, now, guard("orders"))).kind).toBe("continue");
    // Another service's store is another shard.
    expect((await verifyWebhook(settings, await stripeRequest(body, t), secrets, now, guard("payments"))).kind).toBe("continue");
  });

  it("answers 401 problem+json for tampered, old and wrongly signed deliveries, without the secret", async () => {
    const now = Date.now();
    const t = Math.floor(now / 1000);
    const tampered = await stripeRequest(eventBody("evt_t"), t);
    const forged = new Request(tampered, { body: eventBody("evt_t").replace("o-1", "o-2") });
    for (const request of [forged, await stripeRequest(eventBody("evt_old"), t - 301), await stripeRequest(eventBody("evt_wrong"), t, "whsec_attacker")]) {
      const step = await verifyWebhook(settings, request, secrets, now, guard("orders"));
      if (step.kind !== "stop") throw new Error("forwarded");
      expect(step.response.status).toBe(401);
      const text = await step.response.text();
      expect(text).toContain("urn:weft:problem:webhook-unverified");
      expect(text).not.toContain(SECRET);
    }
  });

  it("accepts the old secret while rotating (several secret names)", async () => {
    const now = Date.now();
    const rotating = { ...settings, secret: ["STRIPE_WEBHOOK_SECRET", "OLD_STRIPE_SECRET"] };
    const step = await verifyWebhook(rotating, await stripeRequest(eventBody("evt_rot"), Math.floor(now / 1000), "whsec_old"), secrets, now, guard("orders"));
    expect(step.kind).toBe("continue");
  });

  it("fails closed: 503 when the secret is unset or the replay store cannot be reached", async () => {
    const now = Date.now();
    const unset = await verifyWebhook({ ...settings, secret: "UNSET_SECRET" }, await stripeRequest(eventBody("evt_u"), Math.floor(now / 1000)), secrets, now, guard("orders"));
    if (unset.kind !== "stop") throw new Error("forwarded");
    expect(unset.response.status).toBe(503);
    const down: ReplayGuard = { claim: () => Promise.reject(new Error("control plane unreachable")) };
    const noStore = await verifyWebhook(settings, await stripeRequest(eventBody("evt_d"), Math.floor(now / 1000)), secrets, now, down);
    if (noStore.kind !== "stop") throw new Error("forwarded");
    expect(noStore.response.status).toBe(503);
  });

  it("strips x-weft-webhook-* from worker code and the internet, so only verified values reach backends", async () => {
    const forged = { "x-weft-webhook-scheme": "stripe", "x-weft-webhook-id": "evt_forged", accept: "*/*" };
    for (const who of [{ peer: "cart", origin: "cart" }, { peer: "internet", origin: "internet" }]) {
      const received = new Headers(forged);
      const edits = new HeaderEdits();
      identityEdits(edits, received, who, false);
      expect((edits.apply(received) ?? received).get("x-weft-webhook-id")).toBeNull();
    }
  });

  it("sets the verified headers on a webhook route, whatever the sender put there", async () => {
    const body = eventBody("evt_edits");
    const edits = new HeaderEdits();
    const request = await stripeRequest(body, Math.floor(Date.now() / 1000));
    const step = await webhookStep(settings, request, edits, { secrets, replay: guard("orders") });
    expect(step.kind).toBe("continue");
    const sent = edits.apply(request.headers) ?? request.headers;
    expect(sent.get("x-weft-webhook-scheme")).toBe("stripe");
    expect(sent.get("x-weft-webhook-id")).toBe("evt_edits");
    if (step.kind === "continue") expect(new TextDecoder().decode(step.value)).toBe(body);
  });

  it("refuses an invalid delivery key at the control plane", async () => {
    const refused = await controlPlaneOf("orders").claimWebhookDelivery("orders", "not-a-hash", 300).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(String(refused)).toMatch(/invalid delivery key/);
  });
});

describe("vendor credentials", () => {
  beforeEach(() => clearCredentialCaches());
  const call: EgressCall = { service: "notify", subject: "orders", provider: "vendor-notify", method: "POST", htu: "https://vendor.test/notify/messages", bodySha256: () => Promise.resolve("x") };

  function deps(values: Record<string, string>, now = Date.now()): CredentialDeps {
    return { controlPlane, secrets: secretsFrom(values), bindings: {}, now };
  }

  it("puts API keys where the provider wants them: bearer, a named header with prefix, basic", async () => {
    const d = deps({ COURIER_API_KEY: "ck_123", PIM_API_KEY: "pk_456", SHOP_PASSWORD: "p:w" });
    expect(await vendorCredential({ type: "bearer", secret: "COURIER_API_KEY" }, call, d)).toMatchObject({ kind: "headers", headers: [["authorization", "Bearer ck_123"]] });
    expect(await vendorCredential({ type: "header", name: "X-Api-Key", secret: "PIM_API_KEY", prefix: "Key " }, call, d)).toMatchObject({ headers: [["x-api-key", "Key pk_456"]] });
    expect(await vendorCredential({ type: "basic", username: "shop", secret: "SHOP_PASSWORD" }, call, d)).toMatchObject({ headers: [["authorization", `Basic ${btoa("shop:p:w")}`]] });
  });

  it("names a missing secret without guessing at values, and never hands out WEFT_* settings", async () => {
    const missing = await vendorCredential({ type: "bearer", secret: "WEFT_ADMIN_TOKEN" }, call, deps({ WEFT_ADMIN_TOKEN: "admin" }));
    expect(missing).toEqual({ kind: "failed", status: 502, slug: "egress-credential-missing", detail: "the secret WEFT_ADMIN_TOKEN is not set on this proxy" });
  });

  it("keeps today's Weft-signed JWT as the default", async () => {
    const credential = await vendorCredential(undefined, call, deps({}));
    if (credential.kind !== "headers") throw new Error(`expected a token: ${JSON.stringify(credential)}`);
    expect(credential.headers[0]?.[1]).toMatch(/^Bearer ey/);
  });

  it("signs private-key JWTs with fixed claims, kid, iat/exp/jti, reused briefly", async () => {
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const pem = await exportPKCS8(privateKey);
    const auth = { type: "private-key-jwt" as const, secret: "VONAGE_PRIVATE_KEY", alg: "RS256" as const, kid: "k-1", claims: { application_id: "app-123" }, ttlSeconds: 300 };
    const now = Date.now();
    const credential = await vendorCredential(auth, call, deps({ VONAGE_PRIVATE_KEY: pem }, now));
    if (credential.kind !== "headers") throw new Error("no token");
    const token = (credential.headers[0]?.[1] ?? "").replace("Bearer ", "");
    const spki = await exportSPKI(publicKey);
    const { payload, protectedHeader } = await jwtVerify(token, await importSPKI(spki, "RS256"));
    expect(protectedHeader).toMatchObject({ alg: "RS256", kid: "k-1", typ: "JWT" });
    expect(payload).toMatchObject({ application_id: "app-123" });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(300);
    expect(typeof payload.jti).toBe("string");
    // Reused within half its lifetime, minted anew after.
    const again = await vendorCredential(auth, call, deps({ VONAGE_PRIVATE_KEY: pem }, now + 60_000));
    const later = await vendorCredential(auth, call, deps({ VONAGE_PRIVATE_KEY: pem }, now + 151_000));
    expect(again).toEqual(credential);
    expect(later).not.toEqual(credential);
  });

  it("signs ES256 and EdDSA too, and refuses a secret that is not a private key without quoting it", async () => {
    for (const alg of ["ES256", "EdDSA"] as const) {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const credential = await vendorCredential({ type: "private-key-jwt", secret: "KEY", alg, claims: { iss: "team" }, ttlSeconds: 60 }, call, deps({ KEY: await exportPKCS8(privateKey) }));
      if (credential.kind !== "headers") throw new Error("no token");
      const { payload } = await jwtVerify((credential.headers[0]?.[1] ?? "").replace("Bearer ", ""), publicKey);
      expect(payload.iss).toBe("team");
    }
    const bad = await vendorCredential({ type: "private-key-jwt", secret: "KEY", alg: "RS256", claims: {}, ttlSeconds: 60 }, call, deps({ KEY: "not-a-pem-value" }));
    expect(bad).toMatchObject({ kind: "failed", slug: "egress-credential-invalid" });
    expect(JSON.stringify(bad)).not.toContain("not-a-pem-value");
  });

  it("mtls: without an mtls_certificates binding (local workerd) the call is refused and says why", async () => {
    const refused = await vendorCredential({ type: "mtls", certificate: "VENDOR_CERT" }, call, deps({}));
    expect(refused.kind === "failed" && refused.detail).toContain("only when deployed on Cloudflare");
    const fetcher = { fetch: (): Promise<Response> => Promise.resolve(new Response("ok")) };
    const bound = await vendorCredential({ type: "mtls", certificate: "VENDOR_CERT" }, call, { ...deps({}), bindings: { VENDOR_CERT: fetcher } });
    expect(bound.kind).toBe("fetcher");
  });
});

describe("the admin API refuses secret values in config", () => {
  function admin(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", "Bearer test-admin-token");
    headers.set("content-type", "application/json");
    return exports.default.fetch(new Request(`https://weft.test${path}`, { ...init, headers }));
  }

  const config = (auth: unknown, webhookSecret: unknown): string =>
    JSON.stringify({
      services: [
        {
          name: "notify",
          backends: [{ name: "vendor", type: "external", origin: "https://vendor.example.com", auth }],
          routes: [{ name: "hooks", match: { path: "/hooks" }, split: { weights: { vendor: 100 } }, webhook: { scheme: "stripe", secret: webhookSecret } }],
        },
      ],
    });

  it.each([
    ["a Stripe key as a bearer secret", { type: "bearer", secret: "sk_live_51Habcdefghijklmnop" }, "STRIPE_WEBHOOK_SECRET"],
    ["a webhook signing secret", { type: "weft-jwt" }, "whsec_0123456789abcdefghij"],
    ["a PEM key", { type: "private-key-jwt", secret: "-----BEGIN PRIVATE KEY-----\nMIIEvQ", alg: "RS256" }, "STRIPE_WEBHOOK_SECRET"],
    ["a base64 API key in a header credential", { type: "header", name: "x-api-key", secret: "dGhpcyBpcyBhIHNlY3JldA==" }, "STRIPE_WEBHOOK_SECRET"],
  ])("refuses %s with problem+json and zod issues, never echoing the value", async (_label, auth, webhookSecret) => {
    const res = await admin("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: config(auth, webhookSecret) });
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const text = await res.text();
    const problem = JSON.parse(text) as { issues: Array<{ path: unknown[]; message: string }> };
    expect(problem.issues.some((issue) => issue.message.includes("NAME of a secret"))).toBe(true);
    const value = typeof auth === "object" && "secret" in auth ? String(auth.secret) : "";
    if (value.startsWith("sk_") || value.startsWith("dGhp") || value.startsWith("-----")) expect(text).not.toContain(value.slice(0, 12));
    if (webhookSecret.startsWith("whsec_")) expect(text).not.toContain(webhookSecret);
  });

  it("refuses an OAuth token URL that would send the client secret in clear to another host", async () => {
    const auth = { type: "oauth2-client-credentials", tokenUrl: "http://auth.example.com/token", clientId: "weft", secret: "CLIENT_SECRET" };
    const res = await admin("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: config(auth, "STRIPE_WEBHOOK_SECRET") });
    expect(res.status).toBe(422);
    expect(await res.text()).toContain("must use https");
  });

  it("accepts secret names and keeps only the names in the stored config", async () => {
    const res = await admin("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: config({ type: "header", name: "x-api-key", secret: "PIM_API_KEY" }, ["STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_OLD"]) });
    expect(res.status).toBe(200);
    const stored = await (await admin("/admin/config")).text();
    expect(stored).toContain('"secret":"PIM_API_KEY"');
  });
});

describe("the control plane binds webhook replay stores and vendor tokens to the calling proxy's service", () => {
  it("refuses a proxy bound for one service touching another service's deliveries or tokens", async () => {
    const asCart = controlPlaneOf("cart");
    const delivery = await asCart.claimWebhookDelivery("orders", "1".repeat(64), 60).then(
      () => "accepted",
      (error: unknown) => String(error),
    );
    expect(delivery).toMatch(/serves 'cart'/);
    const token = await asCart
      .vendorToken("notify", { tokenUrl: "https://auth.example.com/token", clientId: "x", clientSecret: "y", authMethod: "client_secret_basic" })
      .then(
        () => "accepted",
        (error: unknown) => String(error),
      );
    expect(token).toMatch(/serves 'cart'/);
  });
});
