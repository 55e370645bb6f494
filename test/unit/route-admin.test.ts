import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { MeshConfigInput } from "../../shared/config.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { compileSlice, findRoute } from "../../workers/proxy/plan.ts";

const TOKEN = "test-admin-token";

function put(config: MeshConfigInput): Promise<Response> {
  return exports.default.fetch(
    new Request("https://weft.test/admin/config", {
      method: "PUT",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", "if-match": "*" },
      body: JSON.stringify(config),
    }),
  );
}

function echo(route: MeshConfigInput["services"][number]["routes"][number]): MeshConfigInput {
  return { services: [{ name: "echo", backends: [{ name: "a", type: "worker", binding: "A" }], routes: [route] }] };
}

// The first request of a file starts the control plane and its Durable Objects: slow on a loaded machine.
describe("the control plane refuses routes that cannot work, before storing them", { timeout: 30_000 }, () => {
  it("refuses a regular expression RE2 cannot run (backreference) with problem+json naming the field", async () => {
    const res = await put(echo({ name: "r", matches: [{ path: "/a" }, { pathRegex: "/(x)\\1" }], split: { weights: { a: 100 } } }));
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const body = await res.json<{ issues: Array<{ path: Array<string | number>; message: string }> }>();
    expect(body.issues[0]?.path).toEqual(["services", 0, "routes", 0, "matches", 1, "pathRegex"]);
    expect(body.issues[0]?.message).toMatch(/not a valid RE2 regular expression/);
  });

  it("refuses a filter that would set a mesh header, and a mirror to a backend the service does not have", async () => {
    const forged = await put(echo({ name: "r", filters: [{ type: "RequestHeaderModifier", set: [{ name: "x-weft-caller", value: "payments" }] }], split: { weights: { a: 100 } } }));
    expect(forged.status).toBe(422);
    expect((await forged.json<{ issues: Array<{ path: unknown[] }> }>()).issues[0]?.path).toEqual(["services", 0, "routes", 0, "filters", 0, "set", 0, "name"]);
    const mirror = await put(echo({ name: "r", filters: [{ type: "RequestMirror", backend: "nope", percent: 10 }], split: { weights: { a: 100 } } }));
    expect(mirror.status).toBe(422);
    expect((await mirror.json<{ issues: Array<{ path: unknown[] }> }>()).issues[0]?.path).toEqual(["services", 0, "routes", 0, "filters", 0, "backend"]);
  });

  it("publishes every route regex compiled in the service's slice, and the proxy routes by those programs", async () => {
    const res = await put({
      services: [
        {
          name: "echo",
          backends: [{ name: "a", type: "worker", binding: "A" }],
          routes: [
            { name: "items", matches: [{ pathRegex: "/items/[0-9]+", headers: [{ name: "x-tenant", type: "RegularExpression", value: "(?i)shop-[a-z]+" }] }], split: { weights: { a: 100 } } },
            { name: "rest", match: { path: "/*" }, split: { weights: { a: 100 } } },
          ],
        },
      ],
    });
    expect(res.status).toBe(200);
    const configService = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
    const read = await configService({ props: { service: "echo" } }).readSlice("echo", 0);
    if (read.status !== "slice") throw new Error(`no slice: ${read.status}`);
    expect(Object.keys(read.slice.regexes ?? {}).sort()).toEqual(["(?i)shop-[a-z]+", "/items/[0-9]+"]);
    const slice = compileSlice(structuredClone(read.slice), { bindings: {}, keySets: new Map(), balancers: new Map() });
    const routeOf = (path: string, tenant: string): string | undefined =>
      findRoute(slice, { method: "GET", path, headers: new Headers({ "x-tenant": tenant }), query: () => new URLSearchParams() })?.route.name;
    expect(routeOf("/items/42", "SHOP-north")).toBe("items");
    expect(routeOf("/items/42x", "shop-north")).toBe("rest");
    expect(routeOf("/items/42", "shop-42")).toBe("rest");
  });

  it("stores routes with several matches and filters, and serves them back as written", async () => {
    const route = { name: "r", matches: [{ pathPrefix: "/v2" }, { path: "/x", query: [{ name: "q", type: "RegularExpression" as const, value: "[0-9]+" }] }], filters: [{ type: "URLRewrite" as const, hostname: "internal.example" }], split: { weights: { a: 100 } } };
    const [service] = echo(route).services;
    if (!service) throw new Error("no service");
    const res = await put({ services: [{ ...service, precedence: "gateway-api" }] });
    expect(res.status).toBe(200);
    const read = await exports.default.fetch(new Request("https://weft.test/admin/config", { headers: { authorization: `Bearer ${TOKEN}` } }));
    const stored = await read.json<{ services: Array<{ precedence: string; routes: Array<Record<string, unknown>> }> }>();
    expect(stored.services[0]?.precedence).toBe("gateway-api");
    expect(stored.services[0]?.routes[0]).toMatchObject({ match: { pathPrefix: "/v2" }, matches: route.matches, filters: route.filters });
  });
});
