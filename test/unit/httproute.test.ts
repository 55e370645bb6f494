import { describe, expect, it } from "vitest";
import demo from "../../examples/shop/config/mesh.json";
import { MeshConfig, normalizeService, type MeshConfigInput, type ServiceConfig } from "../../shared/config.ts";
import { exportHttpRoute, importHttpRoutes, OVERRIDES_ANNOTATION, parseDuration, percentWeights, type KnownService } from "../../shared/httproute.ts";
import { validateMesh } from "../../shared/validate.ts";

const ECHO: KnownService = { name: "echo", backends: [{ name: "echo-v1" }, { name: "echo-v2" }, { name: "echo-v3" }] };

/** An HTTPRoute in the GAMMA shape the upstream mesh conformance tests use. */
function httpRoute(rules: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
    metadata: { name: "mesh-test", namespace: "gateway-conformance-mesh" },
    spec: { parentRefs: [{ group: "", kind: "Service", name: "echo", port: 80 }], rules, ...extra },
  };
}

/** The service as the control plane stores it, after importing `docs` into it. */
function stored(docs: unknown[], base: KnownService = ECHO): ServiceConfig {
  const result = importHttpRoutes(docs, [base]);
  if (result.kind !== "ok") throw new Error(JSON.stringify(result.findings));
  const imported = result.services[0];
  if (!imported) throw new Error("no service imported");
  const config: MeshConfigInput = {
    services: [{ name: base.name, backends: base.backends.map((b) => ({ name: b.name, type: "worker", binding: b.name.toUpperCase().replace(/-/g, "_") })), routes: imported.routes, ...(imported.precedence ? { precedence: imported.precedence } : {}) }],
  };
  const parsed = MeshConfig.parse(config);
  const services = parsed.services.map(normalizeService);
  expect(validateMesh({ services }, { allowLocalhostHttp: false })).toEqual([]);
  const [service] = services;
  if (!service) throw new Error("no service parsed");
  return service;
}

describe("HTTPRoute import", () => {
  it("maps upstream's mesh matching manifest: one route per rule, several matches, gateway-api precedence", () => {
    const service = stored([
      httpRoute([
        { matches: [{ path: { type: "PathPrefix", value: "/" } }, { headers: [{ name: "version", value: "one" }] }], backendRefs: [{ name: "echo-v1", port: 8080 }] },
        { matches: [{ path: { type: "PathPrefix", value: "/v2" } }, { headers: [{ name: "version", value: "two" }] }], backendRefs: [{ name: "echo-v2", port: 8080 }] },
      ]),
    ]);
    expect(service.precedence).toBe("gateway-api");
    expect(service.routes.map((r) => r.name)).toEqual(["mesh-test-0", "mesh-test-1"]);
    expect(service.routes[1]?.matches).toEqual([{ path: "/*", pathPrefix: "/v2" }, { path: "/*", headers: { version: "two" } }]);
    expect(service.routes[0]?.split.weights).toEqual({ "echo-v1": 100 });
  });

  it("maps filters, per-backend filters, weights, session persistence, timeouts and retries", () => {
    const service = stored([
      httpRoute([
        {
          name: "api",
          matches: [{ path: { type: "RegularExpression", value: "/v[0-9]+/.*" }, method: "GET", queryParams: [{ name: "q", type: "RegularExpression", value: "[a-z]+" }] }, { path: { type: "Exact", value: "/v1" }, method: "POST" }],
          filters: [
            { type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "X-Set", value: "1" }], remove: ["X-Drop"] } },
            { type: "URLRewrite", urlRewrite: { hostname: "api.internal" } },
          ],
          backendRefs: [
            { name: "echo-v1", weight: 7, filters: [{ type: "ResponseHeaderModifier", responseHeaderModifier: { add: [{ name: "X-Backend", value: "v1" }] } }] },
            { name: "echo-v2", weight: 2 },
            { name: "echo-v3", weight: 1 },
          ],
          sessionPersistence: { sessionName: "shopper", type: "Cookie" },
          timeouts: { request: "1500ms", backendRequest: "500ms" },
          retry: { attempts: 2, codes: [503], backoff: "100ms" },
        },
        { name: "old", matches: [{ path: { type: "PathPrefix", value: "/old" } }], filters: [{ type: "RequestRedirect", requestRedirect: { scheme: "https", statusCode: 301, path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/new" } } }] },
      ]),
    ]);
    const [api, old] = service.routes;
    expect(api?.split).toEqual({ weights: { "echo-v1": 70, "echo-v2": 20, "echo-v3": 10 }, sticky: "cookie:shopper" });
    expect(api?.backendFilters?.["echo-v1"]).toEqual([{ type: "ResponseHeaderModifier", add: [{ name: "X-Backend", value: "v1" }] }]);
    expect(api?.filters?.[1]).toEqual({ type: "URLRewrite", hostname: "api.internal" });
    expect(api?.timeoutMs).toBe(1500);
    expect(api?.attemptTimeoutMs).toBe(500);
    expect(api?.retries).toEqual({ attempts: 3, statuses: [503], backoff: { baseMs: 100, capMs: 1000 } });
    expect(api?.matches?.[0]).toMatchObject({ pathRegex: "/v[0-9]+/.*", methods: ["GET"], query: [{ name: "q", type: "RegularExpression", value: "[a-z]+" }] });
    expect(old?.filters).toEqual([{ type: "RequestRedirect", scheme: "https", statusCode: 301, path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/new" } }]);
  });

  it("orders routes of several HTTPRoutes by namespace/name (creation time first when given), rules in their order", () => {
    // Equal precedence (the same kind of match), so only the routes' order decides.
    const later = { ...httpRoute([{ name: "b-rule", matches: [{ path: { type: "PathPrefix", value: "/b" } }], backendRefs: [{ name: "echo-v2" }] }]), metadata: { name: "b", namespace: "ns" } };
    const earlier = { ...httpRoute([{ name: "a-rule", matches: [{ path: { type: "PathPrefix", value: "/a" } }], backendRefs: [{ name: "echo-v1" }] }]), metadata: { name: "a", namespace: "ns" } };
    const service = stored([later, earlier]);
    expect(service.routes.map((r) => r.name)).toEqual(["a-rule", "b-rule"]);
    const older = { ...later, metadata: { ...later.metadata, creationTimestamp: "2026-01-01T00:00:00Z" } };
    const newer = { ...earlier, metadata: { ...earlier.metadata, creationTimestamp: "2026-06-01T00:00:00Z" } };
    expect(stored([newer, older]).routes.map((r) => r.name)).toEqual(["b-rule", "a-rule"]);
  });

  it("scales relative weights to percentages that sum to 100", () => {
    expect(percentWeights([["a", 1], ["b", 1], ["c", 1]])).toEqual({ a: 34, b: 33, c: 33 });
    expect(percentWeights([["a", 70], ["b", 30]])).toEqual({ a: 70, b: 30 });
    expect(percentWeights([["a", 0], ["b", 5]])).toEqual({ a: 0, b: 100 });
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("10")).toBeUndefined();
  });
});

describe("HTTPRoute refusals name the field", () => {
  const refused = (docs: unknown[]): Array<{ field: string; reason: string; message: string }> => {
    const result = importHttpRoutes(docs, [ECHO]);
    if (result.kind !== "refused") throw new Error("accepted");
    return result.findings.map(({ field, reason, message }) => ({ field, reason, message }));
  };

  it("reports every unsupported field with a reason, and accepts nothing of that route", () => {
    const findings = refused([
      httpRoute(
        [
          {
            matches: [{ path: { type: "PathPrefix", value: "/x" }, method: "CONNECT" }],
            filters: [{ type: "ExtensionRef", extensionRef: { group: "x", kind: "y", name: "z" } }],
            backendRefs: [{ name: "echo-v1" }],
            timeouts: { request: "1s", backendRequest: "2s", idle: "1s" },
            sessionPersistence: { sessionName: "s", idleTimeout: "1h" },
            mystery: true,
          },
        ],
        { hostnames: ["example.com"] },
      ),
    ]);
    expect(findings.map((f) => `${f.field} ${f.reason}`)).toEqual([
      "spec.hostnames UnsupportedValue",
      "spec.rules[0].mystery UnsupportedValue",
      "spec.rules[0].matches[0].method UnsupportedValue",
      "spec.rules[0].filters[0].type UnsupportedValue",
      "spec.rules[0].sessionPersistence.idleTimeout UnsupportedValue",
      "spec.rules[0].timeouts.idle UnsupportedValue",
      // backendRequest longer than request: refused as the Gateway API's validation does.
      "spec.rules[0].timeouts.backendRequest Invalid",
    ]);
  });

  it("refuses unknown services and backends, Gateway parents, and invalid values", () => {
    const gateway = httpRoute([{ backendRefs: [{ name: "echo-v1" }] }]);
    gateway.spec = { parentRefs: [{ kind: "Gateway", name: "gw" }], rules: [] };
    expect(refused([gateway])[0]).toMatchObject({ field: "spec.parentRefs[0].kind", reason: "UnsupportedValue" });
    const nobody = httpRoute([{ backendRefs: [{ name: "echo-v1" }] }]);
    nobody.spec = { parentRefs: [{ kind: "Service", name: "nobody" }] };
    expect(refused([nobody])[0]).toMatchObject({ field: "spec.parentRefs[0].name", reason: "NoMatchingParent" });
    expect(refused([httpRoute([{ backendRefs: [{ name: "echo-v9" }] }])])[0]).toMatchObject({ field: "spec.rules[0].backendRefs[0].name", reason: "BackendNotFound" });
    expect(refused([httpRoute([{ matches: [{ path: { type: "RegularExpression", value: "(a)\\1" } }], backendRefs: [{ name: "echo-v1" }] }])])[0]).toMatchObject({ field: "spec.rules[0].matches (pathRegex)", reason: "Invalid" });
    expect(refused([httpRoute([{ filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-weft-caller", value: "admin" }] } }], backendRefs: [{ name: "echo-v1" }] }])])[0]).toMatchObject({ field: "spec.rules[0].filters[0] (set.0.name)", reason: "Invalid" });
    expect(refused([httpRoute([{ filters: [{ type: "RequestRedirect", requestRedirect: { statusCode: 418 } }] }])])[0]).toMatchObject({ field: "spec.rules[0].filters[0].requestRedirect.statusCode", reason: "Invalid" });
    expect(refused([httpRoute([{ backendRefs: [{ name: "echo-v1", weight: 0 }] }])])[0]).toMatchObject({ field: "spec.rules[0].backendRefs", reason: "UnsupportedValue" });
    expect(refused([{ ...httpRoute([]), apiVersion: "gateway.networking.k8s.io/v1beta1" }])[0]).toMatchObject({ field: "apiVersion" });
    expect(refused([{ kind: "Gateway" }])[0]).toMatchObject({ field: "kind" });
  });
});

describe("export, and import(export(x)) is x", () => {
  it("round-trips every service of the demo shop", () => {
    const services = MeshConfig.parse(demo).services.map(normalizeService);
    for (const service of services) {
      const doc = exportHttpRoute(service);
      const back = stored([JSON.parse(JSON.stringify(doc))], service);
      expect(back.routes, service.name).toEqual(service.routes);
      expect(back.precedence, service.name).toBe(service.precedence);
    }
  });

  it("writes Weft's matches and filters as HTTPRoute fields, and what HTTPRoute cannot say as an annotation", () => {
    const [service] = MeshConfig.parse({
      services: [{
        name: "echo",
        backends: [{ name: "echo-v1", type: "worker", binding: "A" }, { name: "echo-v2", type: "worker", binding: "B" }],
        precedence: "gateway-api",
        routes: [
          { name: "legacy", match: { path: "/orders*", methods: ["GET", "HEAD"], headers: { "x-env": "canary" } }, split: { weights: { "echo-v1": 100 } }, failover: ["echo-v2"], honoursIdempotencyKey: true },
          { name: "moved", match: { pathPrefix: "/old" }, filters: [{ type: "RequestRedirect", statusCode: 308, path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/new" } }], split: { weights: { "echo-v2": 100 } } },
        ],
      }],
    }).services.map(normalizeService);
    if (!service) throw new Error("no service");
    const doc = exportHttpRoute(service);
    const rules = (doc.spec as { rules: Array<Record<string, unknown>> }).rules;
    expect(rules[0]?.matches).toEqual([
      { path: { type: "RegularExpression", value: "/orders.*" }, headers: [{ type: "Exact", name: "x-env", value: "canary" }], method: "GET" },
      { path: { type: "RegularExpression", value: "/orders.*" }, headers: [{ type: "Exact", name: "x-env", value: "canary" }], method: "HEAD" },
    ]);
    expect(rules[1]?.backendRefs).toBeUndefined();
    const annotations = (doc.metadata as { annotations: Record<string, string> }).annotations;
    expect(JSON.parse(annotations[OVERRIDES_ANNOTATION] ?? "{}")).toEqual({
      legacy: { match: { path: "/orders*", methods: ["GET", "HEAD"], headers: { "x-env": "canary" } }, failover: ["echo-v2"], honoursIdempotencyKey: true },
      moved: { split: { weights: { "echo-v2": 100 } } },
    });
    expect(stored([doc], service).routes).toEqual(service.routes);
  });
});
