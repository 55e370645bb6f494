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
    expect(authorize(undefined, { origin: "internet", peer: "internet", method: "DELETE", path: "/x" })).toEqual({ kind: "allow", reason: "no-policy" });
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
    expect(authorize(policy, { origin: caller, peer: caller, method, path }).kind).toBe(expected);
  });

  it("says which rule decided", () => {
    expect(authorize(withDeny, { origin: "orders", peer: "orders", method: "DELETE", path: "/x" })).toEqual({ kind: "deny", reason: "deny-rule", rule: 1 });
    expect(authorize(pimInternal, { origin: "internet", peer: "internet", method: "GET", path: "/products/a" })).toEqual({ kind: "deny", reason: "no-allow-rule" });
  });

  it("refuses malformed policies", () => {
    expect(Policy.safeParse({ allow: [{ from: ["Cart Service"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ methods: ["FETCH"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ paths: ["products"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [], extra: true }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ peers: [] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ peers: ["Store Front"] }] }).success).toBe(false);
    expect(Policy.safeParse({ allow: [{ from: ["a".repeat(64)] }] }).success).toBe(false);
  });
});

/** Issue 14, High 1: the origin travels through `mesh` backends, and rules match it. */
describe("authorize: origin and peer", () => {
  // pim: the internet may not read internal prices; storefront and cart may read products.
  const pim = Policy.parse({
    allow: [{ from: ["storefront", "cart"], methods: ["GET"], paths: ["/products/*"] }, { from: ["internet"], methods: ["GET"], paths: ["/products/*"] }],
    deny: [{ from: ["internet"], paths: ["/products/internal/*"] }],
  });
  const relayed = (origin: string, path: string, method = "GET") => ({ origin, peer: "storefront", method, path });

  it("denies an internet request relayed by storefront's proxy wherever the internet is denied", () => {
    expect(authorize(pim, relayed("internet", "/products/internal/costs"))).toEqual({ kind: "deny", reason: "deny-rule", rule: 0 });
  });

  it("does not let a relay borrow the relaying service's allow rules", () => {
    const storefrontOnly = Policy.parse({ allow: [{ from: ["storefront"] }] });
    expect(authorize(storefrontOnly, relayed("internet", "/orders")).kind).toBe("deny");
    expect(authorize(storefrontOnly, { origin: "storefront", peer: "storefront", method: "POST", path: "/orders" }).kind).toBe("allow");
  });

  it("allows a call storefront's own worker makes, by from: [storefront]", () => {
    expect(authorize(pim, { origin: "storefront", peer: "storefront", method: "GET", path: "/products/internal/costs" }).kind).toBe("allow");
  });

  it("lets the origin of a relayed internal call decide, not the relay", () => {
    expect(authorize(pim, relayed("cart", "/products/internal/costs")).kind).toBe("allow");
    expect(authorize(pim, relayed("orders", "/products/sku-1")).kind).toBe("deny");
  });

  it("matches `peers` against the immediate caller", () => {
    // The internet only through the storefront; cart only directly; internal paths never relayed.
    const policy = Policy.parse({
      allow: [{ from: ["internet"], peers: ["storefront"] }, { from: ["cart"], peers: ["cart"] }],
      deny: [{ peers: ["storefront"], paths: ["/internal/*"] }],
    });
    expect(authorize(policy, relayed("internet", "/products/sku-1"))).toEqual({ kind: "allow", reason: "rule", rule: 0 });
    expect(authorize(policy, { origin: "internet", peer: "internet", method: "GET", path: "/products/sku-1" }).kind).toBe("deny");
    expect(authorize(policy, { origin: "internet", peer: "edge", method: "GET", path: "/products/sku-1" }).kind).toBe("deny");
    expect(authorize(policy, { origin: "cart", peer: "cart", method: "GET", path: "/products/sku-1" }).kind).toBe("allow");
    expect(authorize(policy, relayed("cart", "/products/sku-1")).kind).toBe("deny");
    expect(authorize(policy, relayed("internet", "/internal/costs"))).toEqual({ kind: "deny", reason: "deny-rule", rule: 0 });
    expect(authorize(Policy.parse({ allow: [{ peers: ["*"] }] }), relayed("internet", "/x")).kind).toBe("allow");
  });
});

/** Issue 14, Low: a rule for GET also covers HEAD (HEAD is GET without the body). */
describe("authorize: HEAD is covered by GET", () => {
  const direct = (origin: string, method: string, path: string) => ({ origin, peer: origin, method, path });

  it("denies HEAD where GET is denied", () => {
    const policy = Policy.parse({ allow: [{ from: ["*"] }], deny: [{ from: ["internet"], methods: ["GET"], paths: ["/products/internal/*"] }] });
    expect(authorize(policy, direct("internet", "GET", "/products/internal/costs")).kind).toBe("deny");
    expect(authorize(policy, direct("internet", "HEAD", "/products/internal/costs"))).toEqual({ kind: "deny", reason: "deny-rule", rule: 0 });
    expect(authorize(policy, direct("internet", "POST", "/products/internal/costs")).kind).toBe("allow");
  });

  it("allows HEAD where GET is allowed", () => {
    const policy = Policy.parse({ allow: [{ from: ["internet"], methods: ["GET"], paths: ["/products/*"] }] });
    expect(authorize(policy, direct("internet", "HEAD", "/products/sku-1"))).toEqual({ kind: "allow", reason: "rule", rule: 0 });
    expect(authorize(policy, direct("internet", "OPTIONS", "/products/sku-1")).kind).toBe("deny");
  });

  it("does not widen a rule that lists only HEAD to GET", () => {
    const policy = Policy.parse({ allow: [{ methods: ["HEAD"] }] });
    expect(authorize(policy, direct("internet", "HEAD", "/x")).kind).toBe("allow");
    expect(authorize(policy, direct("internet", "GET", "/x")).kind).toBe("deny");
  });
});

/** Rules match the canonical path the proxy hands over (shared/path.ts canonicalises it first). */
describe("authorize: canonical paths", () => {
  const policy = Policy.parse({ allow: [{ from: ["*"] }], deny: [{ from: ["internet"], paths: ["/products/sku-1", "/admin/*"] }] });

  it.each([
    ["/products/sku-1", "deny"],
    ["/products/sku-10", "allow"], // an exact path is not a prefix
    ["/admin/", "deny"],
    ["/admin/users/1", "deny"],
    ["/admin", "allow"], // '/admin/*' needs the slash; routes of '/admin' need their own rule
  ])("%s → %s", (path, expected) => {
    expect(authorize(policy, { origin: "internet", peer: "internet", method: "GET", path }).kind).toBe(expected);
  });
});
