import { describe, expect, it } from "vitest";
import { MeshConfig, normalizeService, RouteMatch, type MeshConfigInput, type RouteInput } from "../../shared/config.ts";
import { isPreflight, originAllowed, preflightHeaders, responseHeaders } from "../../shared/cors.ts";
import { applyHeaderModifier, redirectLocation, replacePrefix, rewrittenUrl } from "../../shared/filters.ts";
import { compileProgram } from "../../shared/regex.ts";
import { compileMatch as compileWithPrograms, comparePrecedence, orderMatches, regexSources, type MatchInput } from "../../shared/route-match.ts";
import { routeCovers, validateMesh } from "../../shared/validate.ts";

function input(path: string, init: { method?: string; headers?: Record<string, string>; query?: string } = {}): MatchInput {
  return { method: init.method ?? "GET", path, headers: new Headers(init.headers), query: () => new URLSearchParams(init.query ?? "") };
}

/** Compiles a match as the proxy does: with its regular expressions compiled by the control plane's compiler. */
function compileMatch(match: RouteMatch): ReturnType<typeof compileWithPrograms> {
  const programs = Object.fromEntries(regexSources([{ match }]).map((source) => [source, compileProgram(source)]));
  return compileWithPrograms(match, programs);
}

function matches(match: RouteInput["match"], request: MatchInput): boolean {
  return compileMatch(RouteMatch.parse(match)).test(request);
}

describe("path matches", () => {
  it("PathPrefix matches whole segments: /abc takes /abc and /abc/def, not /abcd", () => {
    for (const prefix of ["/abc", "/abc/"]) {
      expect(matches({ pathPrefix: prefix }, input("/abc"))).toBe(true);
      expect(matches({ pathPrefix: prefix }, input("/abc/"))).toBe(true);
      expect(matches({ pathPrefix: prefix }, input("/abc/def"))).toBe(true);
      expect(matches({ pathPrefix: prefix }, input("/abcd"))).toBe(false);
      expect(matches({ pathPrefix: prefix }, input("/ab"))).toBe(false);
    }
    expect(matches({ pathPrefix: "/" }, input("/anything/at/all"))).toBe(true);
  });

  it("an exact path matches only itself; Weft's raw prefix `/orders*` keeps matching `/orders-archive`", () => {
    expect(matches({ path: "/exact" }, input("/exact"))).toBe(true);
    expect(matches({ path: "/exact" }, input("/exact/"))).toBe(false);
    expect(matches({ path: "/orders*" }, input("/orders-archive"))).toBe(true);
  });

  it("RegularExpression is an RE2 full match on the canonical path", () => {
    const match = { pathRegex: "/v[0-9]+/items/[a-z]+" };
    expect(matches(match, input("/v2/items/shoes"))).toBe(true);
    expect(matches(match, input("/v2/items/shoes/extra"))).toBe(false);
    expect(matches(match, input("/api/v2/items/shoes"))).toBe(false);
  });

  it("refuses regular expressions RE2 cannot run in linear time (backreferences, lookaround) and overlong ones, naming the field", () => {
    for (const pathRegex of ["(a)\\1", "(?=x)y", "a".repeat(1025)]) {
      const parsed = RouteMatch.safeParse({ pathRegex });
      expect(parsed.success, pathRegex.slice(0, 20)).toBe(false);
      expect(parsed.error?.issues[0]?.path).toEqual(["pathRegex"]);
    }
    const header = RouteMatch.safeParse({ headers: [{ name: "x-v", type: "RegularExpression", value: "(a)\\1" }] });
    expect(header.error?.issues[0]?.path).toEqual(["headers", 0, "value"]);
  });

  it("runs a pattern that makes backtracking engines blow up in linear time", () => {
    // `(a|a)*b` against 30 a's takes a backtracking engine 2^30 steps; RE2 does one pass.
    const match = compileMatch(RouteMatch.parse({ pathRegex: "/(a|a)*b" }));
    expect(match.test(input(`/${"a".repeat(5000)}`))).toBe(false);
  });

  it("refuses two path kinds in one match", () => {
    expect(RouteMatch.safeParse({ path: "/a", pathPrefix: "/b" }).success).toBe(false);
    expect(RouteMatch.safeParse({ pathPrefix: "/a", pathRegex: "/b" }).success).toBe(false);
  });
});

describe("header, query and method matches", () => {
  it("matches headers exactly (names case-insensitive) or by RE2, every condition must hold", () => {
    const match = { headers: [{ name: "Version", value: "two" }, { name: "color", type: "RegularExpression" as const, value: "gr[ae]y" }] };
    expect(matches(match, input("/", { headers: { version: "two", COLOR: "grey" } }))).toBe(true);
    expect(matches(match, input("/", { headers: { version: "two", color: "green" } }))).toBe(false);
    expect(matches(match, input("/", { headers: { version: "Two", color: "gray" } }))).toBe(false);
    expect(matches(match, input("/", { headers: { color: "gray" } }))).toBe(false);
    // The original object form still means exact values.
    expect(matches({ headers: { "x-env": "canary" } }, input("/", { headers: { "x-env": "canary" } }))).toBe(true);
  });

  it("matches query parameters (names case-sensitive, the first value counts) exactly or by RE2", () => {
    const match = { query: [{ name: "animal", value: "whale" }, { name: "id", type: "RegularExpression" as const, value: "[0-9]{3}" }] };
    expect(matches(match, input("/", { query: "animal=whale&id=123" }))).toBe(true);
    expect(matches(match, input("/", { query: "animal=whale&id=12" }))).toBe(false);
    expect(matches(match, input("/", { query: "ANIMAL=whale&id=123" }))).toBe(false);
    expect(matches(match, input("/", { query: "animal=dolphin&animal=whale&id=123" }))).toBe(false);
  });

  it("refuses to compile a regular expression the slice does not carry compiled (a slice from an older control plane)", () => {
    expect(() => compileWithPrograms(RouteMatch.parse({ pathRegex: "/v[0-9]+" }), {})).toThrow(/no compiled program for the regular expression '\/v\[0-9\]\+'/);
    // A prototype name is a source like any other: never read off Object.prototype.
    expect(() => compileWithPrograms(RouteMatch.parse({ pathRegex: "__proto__" }), {})).toThrow(/no compiled program/);
  });

  it("parses the query string only when a match needs it", () => {
    let parsed = 0;
    const request: MatchInput = { ...input("/a"), query: () => (parsed++, new URLSearchParams()) };
    compileMatch(RouteMatch.parse({ path: "/a" })).test(request);
    compileMatch(RouteMatch.parse({ path: "/b", query: [{ name: "x", value: "1" }] })).test(request);
    expect(parsed).toBe(0);
  });

  it("matches a method", () => {
    expect(matches({ methods: ["POST"] }, input("/", { method: "POST" }))).toBe(true);
    expect(matches({ methods: ["POST"] }, input("/", { method: "GET" }))).toBe(false);
  });
});

describe("precedence", () => {
  const m = (match: RouteInput["match"]): RouteMatch => RouteMatch.parse(match);

  it("orders by the Gateway API's rules: exact, then longest prefix, then method, headers, query", () => {
    expect(comparePrecedence(m({ path: "/a" }), m({ pathPrefix: "/a/b/c" }))).toBeLessThan(0);
    expect(comparePrecedence(m({ pathPrefix: "/a/b" }), m({ pathPrefix: "/a" }))).toBeLessThan(0);
    expect(comparePrecedence(m({ pathPrefix: "/a", methods: ["GET"] }), m({ pathPrefix: "/a", headers: [{ name: "x", value: "1" }] }))).toBeLessThan(0);
    expect(comparePrecedence(m({ headers: [{ name: "x", value: "1" }, { name: "y", value: "1" }] }), m({ headers: [{ name: "x", value: "1" }], query: [{ name: "q", value: "1" }] }))).toBeLessThan(0);
    expect(comparePrecedence(m({ query: [{ name: "q", value: "1" }] }), m({}))).toBeLessThan(0);
    expect(comparePrecedence(m({ pathPrefix: "/a" }), m({ path: "/a*" }))).toBe(0);
  });

  it("keeps the listed order for `listed` and for ties, and sorts every match of every route for `gateway-api`", () => {
    const routes = [
      { name: "catch-all", match: m({ pathPrefix: "/" }) },
      { name: "two", match: m({ pathPrefix: "/v2" }), matches: [m({ pathPrefix: "/v2" }), m({ path: "/exact" })] },
      { name: "tie", match: m({ pathPrefix: "/v2" }) },
    ];
    expect(orderMatches(routes, undefined).map((e) => `${e.route.name}#${e.matchIndex}`)).toEqual(["catch-all#0", "two#0", "two#1", "tie#0"]);
    expect(orderMatches(routes, "gateway-api").map((e) => `${e.route.name}#${e.matchIndex}`)).toEqual(["two#1", "two#0", "tie#0", "catch-all#0"]);
  });
});

describe("routes with several matches, and shadowing", () => {
  const service = (routes: RouteInput[], precedence?: "gateway-api"): MeshConfigInput => ({
    services: [{ name: "s", backends: [{ name: "a", type: "worker", binding: "A" }], routes, ...(precedence ? { precedence } : {}) }],
  });
  const refusals = (config: MeshConfigInput): string[] => {
    const parsed = MeshConfig.safeParse(config);
    if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    return validateMesh({ services: parsed.data.services.map(normalizeService) }, { allowLocalhostHttp: false }).map((i) => i.message);
  };
  const split = { weights: { a: 100 } };

  it("stores a route's matches with `match` as the first, and re-reads the stored form", () => {
    const parsed = MeshConfig.parse(service([{ name: "r", matches: [{ path: "/a" }, { pathPrefix: "/b" }], split }]));
    const [first] = parsed.services;
    if (!first) throw new Error("no service parsed");
    const stored = normalizeService(first);
    expect(stored.routes[0]?.match).toEqual({ path: "/a" });
    expect(stored.routes[0]?.matches).toHaveLength(2);
    expect(MeshConfig.safeParse({ services: [stored] }).success).toBe(true);
    expect(refusals(service([{ name: "r", match: { path: "/x" }, matches: [{ path: "/a" }], split }]))[0]).toMatch(/give 'match' or 'matches'/);
  });

  it("reports a route shadowed in listed order, and not one that another match still reaches", () => {
    expect(refusals(service([{ name: "all", match: { pathPrefix: "/" }, split }, { name: "late", match: { pathPrefix: "/v2" }, split }]))[0]).toMatch(/route 'late' is unreachable/);
    expect(refusals(service([{ name: "v2", match: { pathPrefix: "/v2" }, split }, { name: "two", matches: [{ pathPrefix: "/v2/x" }, { path: "/other" }], split }]))).toEqual([]);
  });

  it("does not report a catch-all listed first when gateway-api precedence tries it last", () => {
    expect(refusals(service([{ name: "all", match: { pathPrefix: "/" }, split }, { name: "v2", match: { pathPrefix: "/v2" }, split }], "gateway-api"))).toEqual([]);
  });

  it("covers conservatively: segment prefixes, headers, query; regular expressions only cover themselves", () => {
    const m = (match: RouteInput["match"]): RouteMatch => RouteMatch.parse(match);
    expect(routeCovers(m({ pathPrefix: "/a" }), m({ path: "/a/b" }))).toBe(true);
    expect(routeCovers(m({ pathPrefix: "/a" }), m({ path: "/ab" }))).toBe(false);
    expect(routeCovers(m({ pathPrefix: "/a" }), m({ path: "/ab*" }))).toBe(false);
    expect(routeCovers(m({ path: "/a*" }), m({ pathPrefix: "/ab" }))).toBe(true);
    expect(routeCovers(m({ pathRegex: "/a.*" }), m({ path: "/ab" }))).toBe(false);
    expect(routeCovers(m({ pathPrefix: "/" }), m({ pathRegex: "/a.*" }))).toBe(true);
    expect(routeCovers(m({ query: [{ name: "q", value: "1" }] }), m({ query: [{ name: "q", value: "1" }, { name: "r", value: "2" }] }))).toBe(true);
    expect(routeCovers(m({ query: [{ name: "q", value: "1" }] }), m({}))).toBe(false);
  });

  it("refuses ReplacePrefixMatch on a route without a prefix match, and redirect with rewrite", () => {
    const prefix = { type: "ReplacePrefixMatch" as const, replacePrefixMatch: "/x" };
    expect(refusals(service([{ name: "r", match: { path: "/exact" }, filters: [{ type: "URLRewrite", path: prefix }], split }]))[0]).toMatch(/ReplacePrefixMatch needs/);
    expect(refusals(service([{ name: "r", match: { pathPrefix: "/p" }, filters: [{ type: "URLRewrite", path: prefix }, { type: "RequestRedirect", statusCode: 301 }], split }]))[0]).toMatch(/both redirect and rewrite/);
  });

  it("never lets a filter touch the mesh's own headers", () => {
    for (const name of ["x-weft-caller", "X-Weft-Claims", "traceparent", "host", "content-length"]) {
      const set = refusals(service([{ name: "r", filters: [{ type: "RequestHeaderModifier", set: [{ name, value: "forged" }] }], split }]));
      expect(set[0], name).toMatch(/filters\.0\.set\.0\.name: .*mesh's/);
      const remove = refusals(service([{ name: "r", filters: [{ type: "ResponseHeaderModifier", remove: [name] }], split }]));
      expect(remove[0], name).toMatch(/filters\.0\.remove\.0/);
    }
  });
});

describe("filters", () => {
  it("replaces a matched prefix as the Gateway API's table says", () => {
    const table: Array<[string, string, string, string]> = [
      ["/foo", "/foo/bar", "/xyz", "/xyz/bar"],
      ["/foo", "/foo/bar", "/xyz/", "/xyz/bar"],
      ["/foo/", "/foo/bar", "/xyz", "/xyz/bar"],
      ["/foo/", "/foo/bar", "/xyz/", "/xyz/bar"],
      ["/foo", "/foo", "/xyz", "/xyz"],
      ["/foo", "/foo/", "/xyz", "/xyz/"],
      ["/foo", "/foo", "/", "/"],
      ["/foo", "/foo/", "/", "/"],
      ["/foo", "/foo/bar", "/", "/bar"],
      ["/", "/foo", "/xyz", "/xyz/foo"],
    ];
    for (const [prefix, path, replacement, expected] of table) expect(replacePrefix(path, prefix, replacement), `${prefix} ${path} ${replacement}`).toBe(expected);
  });

  it("builds redirect locations: scheme with its well-known port, explicit port, hostname, path, query kept", () => {
    const request = (url: string, prefix?: string) => ({ url: new URL(url), path: new URL(url).pathname, prefix });
    const redirect = (filter: object) => ({ type: "RequestRedirect" as const, statusCode: 302 as const, ...filter });
    expect(redirectLocation(redirect({ scheme: "https" }), request("http://example.org:8080/a?x=1"))).toBe("https://example.org/a?x=1");
    expect(redirectLocation(redirect({ hostname: "example.com" }), request("http://example.org/a"))).toBe("http://example.com/a");
    expect(redirectLocation(redirect({ hostname: "example.com" }), request("http://example.org:8080/a"))).toBe("http://example.com:8080/a");
    expect(redirectLocation(redirect({ port: 8443, scheme: "https" }), request("http://example.org/a"))).toBe("https://example.org:8443/a");
    expect(redirectLocation(redirect({ port: 443, scheme: "https" }), request("http://example.org/a"))).toBe("https://example.org/a");
    expect(redirectLocation(redirect({ path: { type: "ReplaceFullPath", replaceFullPath: "/new" } }), request("http://example.org/a/b"))).toBe("http://example.org/new");
    expect(redirectLocation(redirect({ path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } }), request("http://example.org/v1/items", "/v1"))).toBe("http://example.org/v2/items");
  });

  it("rewrites host (the whole authority) and path for the backend, keeping the query", () => {
    const request = { url: new URL("http://shop.example.com:8787/prefix/one/two?q=1"), path: "/prefix/one/two", prefix: "/prefix/one" };
    expect(rewrittenUrl({ type: "URLRewrite", hostname: "one.example.org" }, request)).toBe("http://one.example.org/prefix/one/two?q=1");
    expect(rewrittenUrl({ type: "URLRewrite", path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/one" } }, request)).toBe("http://shop.example.com:8787/one/two?q=1");
  });

  it("sets, appends and removes headers", () => {
    const headers = new Headers({ "x-keep": "1", "x-set": "old", "x-add": "first", "x-drop": "bye" });
    applyHeaderModifier({ set: [{ name: "X-Set", value: "new" }], add: [{ name: "x-add", value: "second" }, { name: "x-new", value: "n" }], remove: ["x-drop"] }, headers);
    expect(Object.fromEntries(headers)).toEqual({ "x-keep": "1", "x-set": "new", "x-add": "first, second", "x-new": "n" });
  });
});

describe("CORS", () => {
  const policy = { allowOrigins: ["https://www.foo.com", "https://*.bar.com", "http://local.test:8080"], allowMethods: ["GET", "OPTIONS"], allowHeaders: ["x-a"], exposeHeaders: ["x-b"], allowCredentials: true, maxAge: 600 };

  it("matches origins exactly, by left wildcard (whole labels), and with default ports made explicit", () => {
    expect(originAllowed(policy, "https://www.foo.com")).toBe(true);
    expect(originAllowed(policy, "https://www.foo.com:443")).toBe(true);
    expect(originAllowed(policy, "http://www.foo.com")).toBe(false);
    expect(originAllowed(policy, "https://a.b.bar.com")).toBe(true);
    expect(originAllowed(policy, "https://bar.com")).toBe(false);
    expect(originAllowed(policy, "https://foobar.com")).toBe(false);
    expect(originAllowed(policy, "http://local.test:8080")).toBe(true);
    expect(originAllowed(policy, "http://local.test")).toBe(false);
    expect(originAllowed({ allowOrigins: ["*"] }, "https://anything.example:1234")).toBe(true);
    expect(originAllowed({ allowOrigins: ["*"] }, "null")).toBe(false);
  });

  it("answers preflights for allowed origins only, echoing the origin and (for wildcards) what was asked", () => {
    const ask = new Headers({ origin: "https://x.bar.com", "access-control-request-method": "GET", "access-control-request-headers": "x-a" });
    expect(isPreflight("OPTIONS", ask)).toBe(true);
    expect(Object.fromEntries(preflightHeaders(policy, ask) ?? [])).toEqual({
      "access-control-allow-origin": "https://x.bar.com",
      vary: "Origin",
      "access-control-allow-methods": "GET, OPTIONS",
      "access-control-allow-headers": "x-a",
      "access-control-expose-headers": "x-b",
      "access-control-max-age": "600",
      "access-control-allow-credentials": "true",
    });
    expect(preflightHeaders(policy, new Headers({ origin: "https://evil.example", "access-control-request-method": "GET" }))).toBeUndefined();
    const wildcard = preflightHeaders({ allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"] }, new Headers({ origin: "https://o.example", "access-control-request-method": "PUT", "access-control-request-headers": "x-y" }));
    expect(Object.fromEntries(wildcard ?? [])).toMatchObject({ "access-control-allow-origin": "https://o.example", "access-control-allow-methods": "PUT", "access-control-allow-headers": "x-y", "access-control-max-age": "5" });
    expect(responseHeaders(policy, "https://evil.example")).toEqual([]);
    expect(responseHeaders(policy, null)).toEqual([]);
  });
});
