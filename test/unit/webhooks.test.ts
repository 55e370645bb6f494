/**
 * Inbound webhook signatures (shared/webhooks.ts), with each provider's own library playing the
 * provider: `stripe` signs Stripe events, `@octokit/webhooks-methods` GitHub deliveries,
 * `standardwebhooks` Standard Webhooks messages. Shopify publishes no signing library: its rule
 * (base64 HMAC-SHA256 of the body) is computed here with node:crypto, independently of the code
 * under test. Every case covers valid, tampered, old, wrong-secret and rotated-secret deliveries.
 */
import { createHmac } from "node:crypto";
import { sign as githubSign } from "@octokit/webhooks-methods";
import { Webhook as StandardWebhook } from "standardwebhooks";
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import { verifyWebhookSignature, type WebhookCheck } from "../../shared/webhooks.ts";

const encoder = new TextEncoder();
const bytes = (text: string): Uint8Array<ArrayBuffer> => new Uint8Array(encoder.encode(text));
const headers = (entries: Record<string, string>): Headers => new Headers(entries);

const STRIPE_SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc";
const STRIPE_OLD_SECRET = "whsec_test_old_secret_rotating_out";
const event = JSON.stringify({ id: "evt_1", type: "payment_intent.succeeded", data: { object: { id: "pi_1", metadata: { orderId: "o-1" } } } });
const stripeCheck: WebhookCheck = { scheme: "stripe", toleranceSeconds: 300 };
const cryptoProvider = Stripe.createSubtleCryptoProvider();

async function stripeHeader(payload: string, secret: string, timestamp: number): Promise<string> {
  return Stripe.webhooks.generateTestHeaderStringAsync({ payload, secret, timestamp, cryptoProvider });
}

describe("stripe", () => {
  const now = 1_780_000_000_000;
  const t = now / 1000;

  it("verifies an event signed by Stripe's SDK, naming the event id", async () => {
    const verdict = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t) }), bytes(event), [STRIPE_SECRET], now);
    expect(verdict).toMatchObject({ kind: "verified", id: "evt_1", timestamp: t });
  });

  it("refuses a tampered body, a wrong secret, and a missing header", async () => {
    const header = await stripeHeader(event, STRIPE_SECRET, t);
    const tampered = event.replace("o-1", "o-2");
    expect(await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": header }), bytes(tampered), [STRIPE_SECRET], now)).toMatchObject({ kind: "refused" });
    expect(await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": header }), bytes(event), ["whsec_wrong"], now)).toMatchObject({ kind: "refused" });
    expect(await verifyWebhookSignature(stripeCheck, headers({}), bytes(event), [STRIPE_SECRET], now)).toEqual({ kind: "refused", reason: "the Stripe-Signature header is missing" });
  });

  it("refuses timestamps outside the tolerance, in both directions, and accepts the edge", async () => {
    const old = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t - 301) }), bytes(event), [STRIPE_SECRET], now);
    expect(old.kind === "refused" && old.reason).toContain("tolerance");
    const future = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t + 301) }), bytes(event), [STRIPE_SECRET], now);
    expect(future.kind).toBe("refused");
    const edge = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t - 300) }), bytes(event), [STRIPE_SECRET], now);
    expect(edge.kind).toBe("verified");
  });

  it("accepts either secret while rotating, and a header carrying two v1 signatures", async () => {
    const oldSigned = await stripeHeader(event, STRIPE_OLD_SECRET, t);
    expect((await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": oldSigned }), bytes(event), [STRIPE_SECRET, STRIPE_OLD_SECRET], now)).kind).toBe("verified");
    // During Stripe's own rotation the header carries one v1 per active secret.
    const newSig = (await stripeHeader(event, STRIPE_SECRET, t)).split(",").find((p) => p.startsWith("v1=")) ?? "";
    const both = `${oldSigned},${newSig}`;
    expect((await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": both }), bytes(event), [STRIPE_SECRET], now)).kind).toBe("verified");
  });

  it("gives a retry (new timestamp) a new replay key and the same delivery the same one", async () => {
    const first = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t) }), bytes(event), [STRIPE_SECRET], now);
    const again = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t) }), bytes(event), [STRIPE_SECRET], now);
    const retry = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t + 60) }), bytes(event), [STRIPE_SECRET], now);
    if (first.kind !== "verified" || again.kind !== "verified" || retry.kind !== "verified") throw new Error("expected verified");
    expect(again.replayKey).toBe(first.replayKey);
    expect(retry.replayKey).not.toBe(first.replayKey);
  });

  it("refuses oversized signature headers and refuses with no secret configured", async () => {
    const huge = `t=${t},${"v1=00,".repeat(500)}`;
    expect((await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": huge }), bytes(event), [STRIPE_SECRET], now)).kind).toBe("refused");
    expect(await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": await stripeHeader(event, STRIPE_SECRET, t) }), bytes(event), [], now)).toEqual({ kind: "refused", reason: "no secret is configured for this webhook" });
  });

  it("never puts a secret or signature into a refusal reason", async () => {
    const header = await stripeHeader(event, STRIPE_SECRET, t);
    const verdict = await verifyWebhookSignature(stripeCheck, headers({ "stripe-signature": header }), bytes(`${event} `), [STRIPE_SECRET], now);
    if (verdict.kind !== "refused") throw new Error("expected refused");
    expect(verdict.reason).not.toContain(STRIPE_SECRET);
    expect(verdict.reason).not.toContain(header.split("v1=")[1] ?? "-");
  });
});

describe("github", () => {
  const check: WebhookCheck = { scheme: "github", toleranceSeconds: 300 };
  const payload = JSON.stringify({ action: "opened", number: 1 });

  it("verifies X-Hub-Signature-256 made by @octokit/webhooks-methods and names the delivery", async () => {
    const signature = await githubSign("gh-secret", payload);
    const verdict = await verifyWebhookSignature(check, headers({ "x-hub-signature-256": signature, "x-github-delivery": "d-1" }), bytes(payload), ["gh-secret"], 0);
    expect(verdict).toEqual({ kind: "verified", id: "d-1", replayKey: "github:d-1", timestamp: undefined });
  });

  it("refuses a tampered body, a wrong or rotated-out secret, and a sha1 header", async () => {
    const signature = await githubSign("gh-secret", payload);
    expect((await verifyWebhookSignature(check, headers({ "x-hub-signature-256": signature }), bytes(`${payload}x`), ["gh-secret"], 0)).kind).toBe("refused");
    expect((await verifyWebhookSignature(check, headers({ "x-hub-signature-256": signature }), bytes(payload), ["other"], 0)).kind).toBe("refused");
    expect((await verifyWebhookSignature(check, headers({ "x-hub-signature-256": signature }), bytes(payload), ["other", "gh-secret"], 0)).kind).toBe("verified");
    expect((await verifyWebhookSignature(check, headers({ "x-hub-signature-256": signature.replace("sha256=", "sha1=") }), bytes(payload), ["gh-secret"], 0)).kind).toBe("refused");
  });
});

describe("shopify", () => {
  const check: WebhookCheck = { scheme: "shopify", toleranceSeconds: 300 };
  const payload = JSON.stringify({ id: 820982911946154500, email: "jon@example.com" });
  const shopifyHmac = (secret: string, body: string): string => createHmac("sha256", secret).update(body, "utf8").digest("base64");

  it("verifies the base64 HMAC of the raw body and names the webhook id", async () => {
    const verdict = await verifyWebhookSignature(check, headers({ "x-shopify-hmac-sha256": shopifyHmac("shp-secret", payload), "x-shopify-webhook-id": "b54557e4" }), bytes(payload), ["shp-secret"], 0);
    expect(verdict).toMatchObject({ kind: "verified", id: "b54557e4" });
  });

  it("refuses a tampered body and a wrong secret", async () => {
    const sig = shopifyHmac("shp-secret", payload);
    expect((await verifyWebhookSignature(check, headers({ "x-shopify-hmac-sha256": sig }), bytes(payload.replace("jon", "eve")), ["shp-secret"], 0)).kind).toBe("refused");
    expect((await verifyWebhookSignature(check, headers({ "x-shopify-hmac-sha256": sig }), bytes(payload), ["nope"], 0)).kind).toBe("refused");
  });
});

describe("standard-webhooks", () => {
  const check: WebhookCheck = { scheme: "standard-webhooks", toleranceSeconds: 300 };
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const payload = JSON.stringify({ type: "invoice.paid", data: { id: "in_1" } });

  function signed(id: string, at: Date, key = secret): Record<string, string> {
    const signature = new StandardWebhook(key).sign(id, at, payload);
    return { "webhook-id": id, "webhook-timestamp": String(Math.floor(at.getTime() / 1000)), "webhook-signature": signature };
  }

  it("verifies a message signed by the standardwebhooks library", async () => {
    const at = new Date(1_780_000_000_000);
    const verdict = await verifyWebhookSignature(check, headers(signed("msg_1", at)), bytes(payload), [secret], at.getTime());
    expect(verdict).toMatchObject({ kind: "verified", id: "msg_1" });
  });

  it("refuses old messages, tampered bodies and wrong secrets; accepts the old secret while rotating", async () => {
    const at = new Date(1_780_000_000_000);
    expect((await verifyWebhookSignature(check, headers(signed("msg_1", at)), bytes(payload), [secret], at.getTime() + 301_000)).kind).toBe("refused");
    expect((await verifyWebhookSignature(check, headers(signed("msg_1", at)), bytes(`${payload} `), [secret], at.getTime())).kind).toBe("refused");
    const other = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    expect((await verifyWebhookSignature(check, headers(signed("msg_1", at, other)), bytes(payload), [secret], at.getTime())).kind).toBe("refused");
    expect((await verifyWebhookSignature(check, headers(signed("msg_1", at, other)), bytes(payload), [secret, other], at.getTime())).kind).toBe("verified");
  });

  it("keeps one replay key per attempt: a resend (new timestamp) is not a replay", async () => {
    const at = new Date(1_780_000_000_000);
    const later = new Date(at.getTime() + 5_000);
    const a = await verifyWebhookSignature(check, headers(signed("msg_1", at)), bytes(payload), [secret], at.getTime());
    const b = await verifyWebhookSignature(check, headers(signed("msg_1", later)), bytes(payload), [secret], later.getTime());
    if (a.kind !== "verified" || b.kind !== "verified") throw new Error("expected verified");
    expect(a.replayKey).not.toBe(b.replayKey);
  });
});

describe("hmac-sha256", () => {
  const payload = '{"ok":true}';
  const hex = createHmac("sha256", "plain-secret").update(payload).digest("hex");

  it("accepts hex, sha256=hex and base64 in the configured header", async () => {
    const check: WebhookCheck = { scheme: "hmac-sha256", toleranceSeconds: 300, signatureHeader: "x-pim-signature", idHeader: "x-pim-event" };
    for (const value of [hex, `sha256=${hex}`, createHmac("sha256", "plain-secret").update(payload).digest("base64")]) {
      const verdict = await verifyWebhookSignature(check, headers({ "x-pim-signature": value, "x-pim-event": "e-9" }), bytes(payload), ["plain-secret"], 0);
      expect(verdict).toMatchObject({ kind: "verified", id: "e-9" });
    }
    expect((await verifyWebhookSignature(check, headers({ "x-pim-signature": hex }), bytes(`${payload}\n`), ["plain-secret"], 0)).kind).toBe("refused");
  });
});
