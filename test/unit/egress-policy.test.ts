/**
 * Issue 14, Medium 4: the egress data policy fails closed. Bodies are read as JSON whatever their
 * Content-Type when a policy strips fields (refused if they are not JSON), query parameters are
 * scrubbed by the same rules, and third parties receive an allowlist of headers.
 */
import { describe, expect, it } from "vitest";
import { EGRESS_HEADER_ALLOWLIST, egressHeaders, rewriteEgressBody, rewriteJsonBody, scrubQuery } from "../../shared/data-policy.ts";

const policy = { remove: ["customer.phone"], mask: ["to", "customer.email"] };

describe("rewriteEgressBody", () => {
  const text = JSON.stringify({ to: "jane@example.com", customer: { email: "jane@example.com", phone: "+33 6" }, sku: "mug" });

  it("masks a JSON body that was sent as text/plain (the old rule let it leave unmasked)", () => {
    // Old behaviour, kept for other callers: a non-JSON label is not looked at.
    expect(rewriteJsonBody(text, "text/plain;charset=UTF-8", policy)).toEqual({ kind: "not-json" });
    const result = rewriteEgressBody(new TextEncoder().encode(text).slice().buffer, policy);
    expect(result).toEqual({
      kind: "changed",
      body: JSON.stringify({ to: "j***@example.com", customer: { email: "j***@example.com" }, sku: "mug" }),
      removed: ["customer.phone"],
      masked: ["to", "customer.email"],
    });
  });

  it("refuses what it cannot read: form bodies, plain text, broken UTF-8", () => {
    expect(rewriteEgressBody("to=jane%40example.com", policy)).toEqual({ kind: "invalid-json" });
    expect(rewriteEgressBody("hello jane@example.com", policy)).toEqual({ kind: "invalid-json" });
    expect(rewriteEgressBody(new Uint8Array([0x7b, 0xff, 0x7d]).buffer, policy)).toEqual({ kind: "invalid-json" });
  });

  it("leaves bodies alone when the policy strips nothing", () => {
    expect(rewriteEgressBody("not json", { remove: [], mask: [] })).toEqual({ kind: "unchanged" });
  });
});

describe("scrubQuery", () => {
  it("removes and masks parameters named by a path or its last key, case-insensitively", () => {
    const result = scrubQuery("?to=jane%40example.com&Email=bob%40example.com&phone=%2B33&sku=mug", policy);
    expect(result).toEqual({ kind: "changed", search: "?to=j***%40example.com&Email=b***%40example.com&sku=mug", removed: ["phone"], masked: ["to", "Email"] });
  });

  it("keeps the query byte for byte when nothing matches, and empties it when everything is removed", () => {
    expect(scrubQuery("?sku=mug&q=a+b", policy)).toEqual({ kind: "unchanged" });
    expect(scrubQuery("?phone=1&phone=2", policy)).toEqual({ kind: "changed", search: "", removed: ["phone", "phone"], masked: [] });
    expect(scrubQuery("", policy)).toEqual({ kind: "unchanged" });
  });
});

describe("egressHeaders", () => {
  const incoming = new Headers({
    "content-type": "application/json",
    accept: "application/json",
    "user-agent": "shop/1.0",
    "idempotency-key": "k-1",
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "x-forwarded-for": "203.0.113.7",
    referer: "https://shop.example.com/checkout?email=jane@example.com",
    "proxy-authorization": "Basic Zm9v",
    "x-api-key": "caller-key",
    cookie: "session=abc",
    authorization: "Bearer shopper",
    "x-weft-caller": "orders",
    "cf-connecting-ip": "203.0.113.7",
    "x-shopper-segment": "gold",
  });

  it("sends only the allowlist: no client address, referer, proxy credentials or caller keys", () => {
    const out = egressHeaders(incoming);
    expect([...out.keys()].sort()).toEqual(["accept", "content-type", "idempotency-key", "traceparent", "user-agent"]);
    for (const name of [...out.keys()]) expect(EGRESS_HEADER_ALLOWLIST).toContain(name);
  });

  it("adds a backend's extra allowlist", () => {
    expect(egressHeaders(incoming, ["x-shopper-segment"]).get("x-shopper-segment")).toBe("gold");
  });
});
