import { describe, expect, it } from "vitest";
import { applyEgressPolicy, isJsonContentType, maskString, rewriteJsonBody } from "../../shared/data-policy.ts";
import { EgressDataPolicy, type EgressDataPolicyInput } from "../../shared/policy-schemas.ts";

function policy(input: EgressDataPolicyInput): EgressDataPolicy {
  return EgressDataPolicy.parse(input);
}

/** Walks into a JSON value without asserting its type. */
function at(value: unknown, ...keys: Array<string | number>): unknown {
  let node = value;
  for (const key of keys) {
    if (typeof node !== "object" || node === null) return undefined;
    node = Object.getOwnPropertyDescriptor(node, key)?.value;
  }
  return node;
}

/** An order as the checkout sends it to the payment and notification providers. */
function order() {
  return {
    id: "ord-1042",
    customer: { name: "Jane Doe", email: "jane.doe@example.com", phone: "+33 6 12 34 56 78", vip: true },
    items: [
      { sku: "tee-m", qty: 2, price: 19.9, giftFor: { email: "bob@example.org" } },
      { sku: "mug", qty: 1, price: 9.5 },
      { sku: "cap", qty: 1, price: 12, giftFor: { email: "al@example.net" } },
    ],
    total: 61.3,
  };
}

describe("EgressDataPolicy", () => {
  it("defaults both lists to empty", () => {
    expect(EgressDataPolicy.parse({})).toEqual({ remove: [], mask: [] });
  });

  it("accepts dotted paths with [] for array elements", () => {
    const ok = ["customer.email", "items[].email", "[].email", "matrix[][].x", "tags[]", "billing_address.post-code", "$meta.id"];
    expect(EgressDataPolicy.safeParse({ remove: ok }).success).toBe(true);
  });

  it.each(["", "customer..email", ".email", "email.", "items.*.email", "items[0].email", "items[.email", "a b", "customer/email"])(
    "refuses the path %j with a hint about the syntax",
    (path) => {
      const parsed = EgressDataPolicy.safeParse({ mask: [path] });
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues[0]?.message).toMatch(/items\[\]\.email/);
      expect(parsed.error?.issues[0]?.path).toEqual(["mask", 0]);
    },
  );

  it("refuses unknown keys", () => {
    expect(EgressDataPolicy.safeParse({ remove: [], redact: ["x"] }).success).toBe(false);
  });
});

describe("maskString", () => {
  it("keeps the first character of an email's local part and its domain", () => {
    expect(maskString("jane.doe@example.com")).toBe("j***@example.com");
  });

  it("keeps no hint when it would be the whole value", () => {
    expect(maskString("j@example.com")).toBe("***@example.com");
    expect(maskString("x")).toBe("***");
  });

  it("keeps the first character of other strings", () => {
    expect(maskString("+33 6 12 34 56 78")).toBe("+***");
    expect(maskString("Jane Doe")).toBe("J***");
    expect(maskString("")).toBe("");
  });

  it("never splits a surrogate pair", () => {
    expect(maskString("😀secret")).toBe("😀***");
  });
});

describe("applyEgressPolicy", () => {
  it("removes and masks nested fields, reporting the concrete paths", () => {
    const result = applyEgressPolicy(order(), policy({ remove: ["customer.phone"], mask: ["customer.email", "customer.name"] }));
    expect(result).toEqual({
      kind: "changed",
      value: { ...order(), customer: { name: "J***", email: "j***@example.com", vip: true } },
      removed: ["customer.phone"],
      masked: ["customer.email", "customer.name"],
    });
  });

  it("reaches into every array element and skips elements without the field", () => {
    const result = applyEgressPolicy(order(), policy({ mask: ["items[].giftFor.email"], remove: ["items[].price"] }));
    if (result.kind !== "changed") throw new Error(`expected a change, got ${result.kind}`);
    expect(result.removed).toEqual(["items[0].price", "items[1].price", "items[2].price"]);
    expect(result.masked).toEqual(["items[0].giftFor.email", "items[2].giftFor.email"]);
    expect(result.value).toEqual({
      ...order(),
      items: [
        { sku: "tee-m", qty: 2, giftFor: { email: "b***@example.org" } },
        { sku: "mug", qty: 1 },
        { sku: "cap", qty: 1, giftFor: { email: "a***@example.net" } },
      ],
    });
  });

  it("masks numbers, booleans, objects and arrays to a placeholder and leaves null alone", () => {
    const value = { card: { last4: 4242, saved: true, holder: { first: "Jane" }, history: [1, 2], note: null } };
    const result = applyEgressPolicy(
      value,
      policy({ mask: ["card.last4", "card.saved", "card.holder", "card.history", "card.note"] }),
    );
    expect(result).toEqual({
      kind: "changed",
      value: { card: { last4: "***", saved: "***", holder: "***", history: "***", note: null } },
      removed: [],
      masked: ["card.last4", "card.saved", "card.holder", "card.history"],
    });
  });

  it("masks or removes every element with a trailing []", () => {
    const value = { emails: ["a.b@x.io", "cd@y.io"], tags: ["vip", "b2b"] };
    const result = applyEgressPolicy(value, policy({ mask: ["emails[]"], remove: ["tags[]"] }));
    expect(result).toEqual({
      kind: "changed",
      value: { emails: ["a***@x.io", "c***@y.io"], tags: [] },
      removed: ["tags[0]", "tags[1]"],
      masked: ["emails[0]", "emails[1]"],
    });
  });

  it("addresses the elements of a top-level array with a leading []", () => {
    const result = applyEgressPolicy([{ email: "jane@shop.fr" }, { sku: "x" }], policy({ mask: ["[].email"] }));
    expect(result).toEqual({ kind: "changed", value: [{ email: "j***@shop.fr" }, { sku: "x" }], removed: [], masked: ["[0].email"] });
  });

  it("ignores missing paths and paths that meet the wrong type", () => {
    const p = policy({ remove: ["customer.fax", "shipping.address", "total.cents"], mask: ["id.value", "customer[].email", "items.email"] });
    expect(applyEgressPolicy(order(), p)).toEqual({ kind: "unchanged" });
    expect(applyEgressPolicy("plain string", p)).toEqual({ kind: "unchanged" });
    expect(applyEgressPolicy(null, p)).toEqual({ kind: "unchanged" });
  });

  it("does not follow inherited properties", () => {
    expect(applyEgressPolicy({ a: {} }, policy({ mask: ["a.constructor", "a.toString"] }))).toEqual({ kind: "unchanged" });
  });

  it("never mutates its input and shares the untouched parts", () => {
    const input = order();
    const snapshot = structuredClone(input);
    const result = applyEgressPolicy(input, policy({ remove: ["customer.phone", "items[].qty"], mask: ["customer.email"] }));
    expect(input).toEqual(snapshot);
    if (result.kind !== "changed") throw new Error(`expected a change, got ${result.kind}`);
    expect(at(result.value, "customer")).not.toBe(input.customer);
    expect(at(result.value, "items")).not.toBe(input.items);
    expect(at(result.value, "items", 0, "giftFor")).toBe(input.items[0]?.giftFor);
  });

  it("treats a __proto__ key from JSON as a plain field", () => {
    const input: unknown = JSON.parse('{"__proto__":{"email":"eve@evil.io"},"ok":1}');
    const result = applyEgressPolicy(input, policy({ mask: ["__proto__.email"] }));
    if (result.kind !== "changed") throw new Error(`expected a change, got ${result.kind}`);
    expect(JSON.stringify(result.value)).toBe('{"__proto__":{"email":"e***@evil.io"},"ok":1}');
    expect(Object.getPrototypeOf(result.value)).toBe(Object.prototype);
  });

  it("removes before masking and does not mask twice when a path is listed twice", () => {
    const p = policy({ remove: ["customer.email"], mask: ["customer.email", "customer.vip", "customer.vip"] });
    expect(applyEgressPolicy(order(), p)).toMatchObject({
      kind: "changed",
      value: { customer: { name: "Jane Doe", phone: "+33 6 12 34 56 78", vip: "***" } },
      removed: ["customer.email"],
      masked: ["customer.vip"],
    });
  });
});

describe("isJsonContentType", () => {
  it.each([
    ["application/json", true],
    ["Application/JSON; charset=utf-8", true],
    ["application/problem+json", true],
    ["application/vnd.shop.order+json;version=2", true],
    ["text/plain", false],
    ["application/x-www-form-urlencoded", false],
    ["application/jsonp", false],
    ["text/json-ish", false],
    [null, false],
  ] as const)("%j → %s", (contentType, expected) => {
    expect(isJsonContentType(contentType)).toBe(expected);
  });
});

describe("rewriteJsonBody", () => {
  const p = policy({ remove: ["customer.phone"], mask: ["customer.email"] });
  const text = JSON.stringify({ customer: { email: "jane.doe@example.com", phone: "+3361234" }, total: 3 });

  it("rewrites a JSON body given as text", () => {
    const result = rewriteJsonBody(text, "application/json", p);
    expect(result).toEqual({
      kind: "changed",
      body: '{"customer":{"email":"j***@example.com"},"total":3}',
      removed: ["customer.phone"],
      masked: ["customer.email"],
    });
  });

  it("rewrites a UTF-8 JSON body given as bytes, whatever the charset parameter says", () => {
    const bytes = Uint8Array.from(new TextEncoder().encode(text.replace("jane.doe", "jöhn"))).buffer;
    const result = rewriteJsonBody(bytes, "application/json; charset=UTF-8", p);
    expect(result).toMatchObject({ kind: "changed", body: '{"customer":{"email":"j***@example.com"},"total":3}' });
  });

  it("rewrites +json media types", () => {
    expect(rewriteJsonBody(text, "application/vnd.api+json", p).kind).toBe("changed");
  });

  it("leaves non-JSON content types alone, even when the text is JSON", () => {
    expect(rewriteJsonBody(text, "text/plain", p)).toEqual({ kind: "not-json" });
    expect(rewriteJsonBody("email=jane%40example.com", "application/x-www-form-urlencoded", p)).toEqual({ kind: "not-json" });
    expect(rewriteJsonBody(text, null, p)).toEqual({ kind: "not-json" });
  });

  it("reports JSON bodies it cannot read", () => {
    expect(rewriteJsonBody('{"customer": {"email": ', "application/json", p)).toEqual({ kind: "invalid-json" });
    const notUtf8 = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]).buffer;
    expect(rewriteJsonBody(notUtf8, "application/json", p)).toEqual({ kind: "invalid-json" });
  });

  it("is unchanged when nothing matched, the body is empty or the policy is empty", () => {
    expect(rewriteJsonBody('{"sku":"mug"}', "application/json", p)).toEqual({ kind: "unchanged" });
    expect(rewriteJsonBody("", "application/json", p)).toEqual({ kind: "unchanged" });
    expect(rewriteJsonBody(text, "application/json", policy({}))).toEqual({ kind: "unchanged" });
  });
});
