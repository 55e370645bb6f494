import { describe, expect, it } from "vitest";
import { authorize } from "../../shared/authorize.ts";
import { Policy } from "../../shared/config.ts";
import { canonicalizePath, MAX_PATH_LENGTH, withCanonicalPath } from "../../shared/path.ts";

function ok(raw: string): string {
  const result = canonicalizePath(raw);
  if (result.kind !== "ok") throw new Error(`${raw} refused: ${result.reason}`);
  return result.path;
}

describe("canonicalizePath", () => {
  const unchanged = ["/", "/products/sku-1", "/a/b/", "/a.b/c..d/.e/f.", "/~user/_x-y.z", "/a/...", "/a/.../b", "/cart/123/items", "/a:b@c!$&'()*+,;="];
  it.each(unchanged)("leaves the canonical path %s as it is", (raw) => {
    expect(canonicalizePath(raw)).toEqual({ kind: "ok", path: raw, changed: false });
  });

  const rewritten: Array<[string, string]> = [
    // The reproductions: encoded unreserved characters decode to the path the backend routes on.
    ["/products/%73ku-1", "/products/sku-1"],
    ["/products/sku%2D1", "/products/sku-1"],
    ["/products/sku%2d1", "/products/sku-1"],
    ["/%61ccount/me", "/account/me"],
    ["/%7Euser", "/~user"],
    ["/%41%5a%30%39%5F", "/AZ09_"],
    // Reserved and other escapes stay encoded, with uppercase hex; no double decoding.
    ["/a%3fb", "/a%3Fb"],
    ["/a%3Bb", "/a%3Bb"],
    ["/caf%c3%a9", "/caf%C3%A9"],
    ["/caf%C3%A9", "/caf%C3%A9"],
    ["/a%2541", "/a%2541"],
    ["/a%20b", "/a%20b"],
    // merge_slashes
    ["//a///b", "/a/b"],
    ["//", "/"],
    ["/a//", "/a/"],
    // Dot segments (RFC 3986 §5.2.4), never above the root.
    ["/a/./b/../c", "/a/c"],
    ["/a/b/..", "/a/"],
    ["/a/b/.", "/a/b/"],
    ["/..", "/"],
    ["/../../etc/passwd", "/etc/passwd"],
    ["/./a", "/a"],
    ["/a/..//b", "/b"],
    // Encoded dots are dot segments once decoded.
    ["/a/%2e%2e/b", "/b"],
    ["/a/%2E%2E/b", "/b"],
    ["/a/.%2e/b", "/b"],
    ["/a/%2e/b", "/a/b"],
    ["/admin/%2e%2e/products/x", "/products/x"],
    ["/%2e%2e%2e", "/..."],
    // Raw non-ASCII (never from URL.pathname, but a raw caller may pass it) is encoded as UTF-8.
    ["/café", "/caf%C3%A9"],
    ["/😀", "/%F0%9F%98%80"],
  ];
  it.each(rewritten)("%s → %s", (raw, expected) => {
    // Already-canonical escapes (uppercase, reserved) report no change.
    expect(canonicalizePath(raw)).toEqual({ kind: "ok", path: expected, changed: expected !== raw });
  });

  const refused: Array<[string, RegExp]> = [
    ["/a%2Fb", /encoded slash/],
    ["/a%2fb", /encoded slash/],
    ["/a%5cb", /encoded slash or backslash/],
    ["/a%5C..%5Cb", /encoded slash or backslash/],
    ["/a\\b", /backslash/],
    ["/a%00b", /control/],
    ["/a%0a", /control/],
    ["/a%7F", /control/],
    ["/a\u0000b", /control/],
    ["/a\tb", /control/],
    ["/a b", /space/],
    ["/a%", /malformed/],
    ["/a%4", /malformed/],
    ["/a%zz", /malformed/],
    ["/a%g1", /malformed/],
    ["/a?b", /query/],
    ["/a#b", /fragment/],
    ["a/b", /start with/],
    ["", /start with/],
    ["/\ud800", /surrogate/],
  ];
  it.each(refused)("refuses %j", (raw, reason) => {
    const result = canonicalizePath(raw);
    expect(result.kind).toBe("refuse");
    if (result.kind === "refuse") expect(result.reason).toMatch(reason);
  });

  it("bounds the path length at 8 KiB", () => {
    expect(canonicalizePath(`/${"a".repeat(MAX_PATH_LENGTH - 1)}`).kind).toBe("ok");
    const over = canonicalizePath(`/${"a".repeat(MAX_PATH_LENGTH)}`);
    expect(over).toEqual({ kind: "refuse", reason: `path longer than ${MAX_PATH_LENGTH} characters` });
    expect(canonicalizePath(`/${"%41".repeat(4000)}`).kind).toBe("refuse");
  });

  it("is idempotent: a canonical path canonicalises to itself, unchanged", () => {
    for (const [raw] of rewritten) {
      const once = ok(raw);
      expect(canonicalizePath(once)).toEqual({ kind: "ok", path: once, changed: false });
    }
  });

  it("agrees with the WHATWG URL parser on what it already resolves", () => {
    // workerd's URL parser resolves dot segments (encoded too); canonicalising its pathname is stable.
    for (const raw of ["/a/%2e%2e/b", "/a/./b/../c", "/products/%73ku-1", "//a///b"]) {
      const pathname = new URL(`https://shop.example${raw}`).pathname;
      expect(ok(pathname)).toBe(ok(raw));
    }
  });

  it("closes the issue's bypass: the canonical path meets the deny rule and the authenticated route", () => {
    const policy = Policy.parse({ allow: [{ from: ["*"] }], deny: [{ from: ["internet"], paths: ["/products/sku-1", "/account/*"] }] });
    for (const raw of ["/products/%73ku-1", "/products/sku%2D1", "/products//sku-1", "/products/x/../sku-1", "/%61ccount/me"]) {
      // The raw path slips past the rule (today's bug)...
      expect(authorize(policy, { origin: "internet", peer: "internet", method: "GET", path: raw }).kind).toBe("allow");
      // ...the canonical one does not.
      expect(authorize(policy, { origin: "internet", peer: "internet", method: "GET", path: ok(raw) }).kind).toBe("deny");
    }
  });
});

describe("withCanonicalPath", () => {
  it("swaps the path and keeps the query verbatim", () => {
    const url = new URL("https://shop.example:8443/products/%73ku-1?q=%2F%73&x=1#frag");
    expect(withCanonicalPath(url, ok(url.pathname))).toBe("https://shop.example:8443/products/sku-1?q=%2F%73&x=1");
  });

  it("keeps an absent query absent", () => {
    const url = new URL("http://127.0.0.1:8787//a///b");
    expect(withCanonicalPath(url, ok(url.pathname))).toBe("http://127.0.0.1:8787/a/b");
  });
});
