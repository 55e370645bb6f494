import { describe, expect, it } from "vitest";
import { boundServiceOf, checkBinding } from "../../workers/control-plane/config-service.ts";

describe("boundServiceOf", () => {
  it("reads a valid service name from a binding's props, and nothing else", () => {
    expect(boundServiceOf({ service: "cart" })).toBe("cart");
    for (const props of [undefined, null, {}, { caller: "cart" }, { service: 7 }, { service: "../etc" }, { service: "" }, "cart"]) {
      expect(boundServiceOf(props), JSON.stringify(props)).toBeUndefined();
    }
  });
});

describe("checkBinding", () => {
  it("accepts a call about the bound service only", () => {
    expect(checkBinding("cart", "cart")).toEqual({ ok: true, service: "cart" });
    const other = checkBinding("cart", "pim");
    expect(other.ok).toBe(false);
    if (!other.ok) expect(other.reason).toMatch(/serves 'cart', not "pim"/);
  });

  it("refuses every call on a binding without props, and quotes at most 64 characters of a claim", () => {
    expect(checkBinding(undefined, "cart").ok).toBe(false);
    const long = checkBinding("cart", "x".repeat(10_000));
    expect(long.ok).toBe(false);
    if (!long.ok) expect(long.reason.length).toBeLessThan(150);
  });
});
