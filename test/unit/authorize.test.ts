import { describe, expect, it } from "vitest";
import { authorize } from "../../shared/authorize.ts";
import { Policy } from "../../shared/config.ts";

const pimInternal = Policy.parse({
  allow: [{ from: ["cart", "orders", "storefront"], methods: ["GET"], paths: ["/products/*"] }],
});
const withDeny = Policy.parse({
  allow: [{ from: ["*"], methods: ["GET", "HEAD"] }, { from: ["orders"] }],
  deny: [{ from: ["internet"], paths: ["/products/internal/*"] }, { methods: ["DELETE"] }],
});

describe("authorize", () => {
  it("allows everything when a service has no policy", () => {
    expect(authorize(undefined, { caller: "internet", method: "DELETE", path: "/x" })).toEqual({ kind: "allow", reason: "no-policy" });
  });

  const table: Array<[Policy, string, string, string, "allow" | "deny"]> = [
    [pimInternal, "cart", "GET", "/products/sku-1", "allow"],
    [pimInternal, "orders", "GET", "/products/sku-1", "allow"],
    [pimInternal, "internet", "GET", "/products/sku-1", "deny"],
    [pimInternal, "cart", "POST", "/products/sku-1", "deny"],
    [pimInternal, "cart", "GET", "/admin", "deny"],
    [pimInternal, "payments", "GET", "/products/sku-1", "deny"],
    [pimInternal, "cart", "GET", "/products", "deny"], // the pattern /products/* needs the slash
    [withDeny, "internet", "GET", "/products/sku-1", "allow"],
    [withDeny, "internet", "GET", "/products/internal/costs", "deny"], // explicit deny wins over '*'
    [withDeny, "orders", "POST", "/anything", "allow"],
    [withDeny, "orders", "DELETE", "/anything", "deny"], // deny without 'from' applies to everyone
    [withDeny, "cart", "POST", "/anything", "deny"],
  ];

  it.each(table)("%#: %s %s %s → %s", (policy, caller, method, path, expected) => {
    expect(authorize(policy, { caller, method, path }).kind).toBe(expected);
  });

  it("says which rule decided", () => {
    expect(authorize(withDeny, { caller: "orders", method: "DELETE", path: "/x" })).toEqual({ kind: "deny", reason: "deny-rule", rule: 1 });
    expect(authorize(pimInternal, { caller: "internet", method: "GET", path: "/products/a" })).toEqual({ kind: "deny", reason: "no-allow-rule" });
  });

  it("refuses malformed policies", () => {
    expect(Policy.safeParse({ allow: [{ from: ["Cart Service"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ methods: ["FETCH"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ paths: ["products"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [], extra: true }).success).toBe(false);
  });
});
