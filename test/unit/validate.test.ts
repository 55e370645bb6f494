import { describe, expect, it } from "vitest";
import { MeshConfig, normalizeService, type MeshConfigInput, type ServiceInput } from "../../shared/config.ts";
import { routeCovers, validateMesh } from "../../shared/validate.ts";
import { mulberry32 } from "./prng.ts";

const PROD = { allowLocalhostHttp: false };
const DEV = { allowLocalhostHttp: true };

function pim(overrides: Partial<ServiceInput> = {}): ServiceInput {
  return {
    name: "pim",
    backends: [
      { name: "pim-v1", type: "worker", binding: "PIM_V1" },
      { name: "pim-v2", type: "worker", binding: "PIM_V2" },
    ],
    routes: [{ name: "products", match: { path: "/*" }, split: { weights: { "pim-v1": 90, "pim-v2": 10 }, sticky: "cookie:shopper" } }],
    ...overrides,
  };
}

/** A split with a misspelt key, as an operator might send it (bypasses the compile-time check). */
const TYPO_SPLIT: never = JSON.parse('{"weights":{"pim-v1":100},"stickey":"cookie:a"}') as never;

/** Parses like the admin API does, then runs the whole-config checks; returns all messages. */
function refusals(input: MeshConfigInput, options = PROD): string[] {
  const parsed = MeshConfig.safeParse(input);
  if (!parsed.success) return parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  return validateMesh({ services: parsed.data.services.map(normalizeService) }, options).map((i) => i.message);
}

describe("mesh config validation", () => {
  it("accepts the demo shop's shape", () => {
    expect(refusals({ services: [pim()] })).toEqual([]);
  });

  const table: Array<[string, MeshConfigInput, RegExp, typeof PROD?]> = [
    ["weights that are not integers", { services: [pim({ routes: [{ split: { weights: { "pim-v1": 89.5, "pim-v2": 10.5 } } }] })] }, /expected int/i],
    ["weights above 100", { services: [pim({ routes: [{ split: { weights: { "pim-v1": 120, "pim-v2": -20 } } }] })] }, /0-100/],
    ["weights below 0", { services: [pim({ routes: [{ split: { weights: { "pim-v1": 101, "pim-v2": -1 } } }] })] }, /0-100/],
    ["weights not summing to 100", { services: [pim({ routes: [{ split: { weights: { "pim-v1": 80, "pim-v2": 10 } } }] })] }, /sum to 100, got 90/],
    ["a weight for an unknown backend", { services: [pim({ routes: [{ split: { weights: { "pim-v1": 90, "pim-v3": 10 } } }] })] }, /unknown backend 'pim-v3'/],
    [
      "duplicate backends",
      { services: [pim({ backends: [{ name: "pim-v1", type: "worker", binding: "A" }, { name: "pim-v1", type: "worker", binding: "B" }], routes: [{ split: { weights: { "pim-v1": 100 } } }] })] },
      /duplicate backend 'pim-v1'/,
    ],
    ["duplicate services", { services: [pim(), pim()] }, /duplicate service 'pim'/],
    [
      "a route after a catch-all",
      {
        services: [
          pim({
            routes: [
              { name: "all", split: { weights: { "pim-v1": 100 } } },
              { name: "reads", match: { path: "/products/*", methods: ["GET"] }, split: { weights: { "pim-v2": 100 } } },
            ],
          }),
        ],
      },
      /route 'reads' is unreachable: route 'all'/,
    ],
    [
      "a route shadowed by a wider prefix with more methods",
      {
        services: [
          pim({
            routes: [
              { name: "wide", match: { path: "/products/*", methods: ["GET", "HEAD"] }, split: { weights: { "pim-v1": 100 } } },
              { name: "narrow", match: { path: "/products/sku-*", methods: ["GET"] }, split: { weights: { "pim-v2": 100 } } },
            ],
          }),
        ],
      },
      /route 'narrow' is unreachable/,
    ],
    ["duplicate route names", { services: [pim({ routes: [{ name: "r", match: { path: "/a" }, split: { weights: { "pim-v1": 100 } } }, { name: "r", match: { path: "/b" }, split: { weights: { "pim-v1": 100 } } }] })] }, /duplicate route name 'r'/],
    ["an http external origin in production", { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "http://pim.vendor.example" }], routes: [{ split: { weights: { vendor: 100 } } }] })] }, /must use https/],
    ["http://localhost in production", { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "http://localhost:9000" }], routes: [{ split: { weights: { vendor: 100 } } }] })] }, /must use https/],
    ["an http origin that is not localhost, even in development", { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "http://pim.vendor.example" }], routes: [{ split: { weights: { vendor: 100 } } }] })] }, /only accepted for localhost/, DEV],
    ["an origin with a query", { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "https://pim.vendor.example/api?key=1" }], routes: [{ split: { weights: { vendor: 100 } } }] })] }, /without credentials, query or fragment/],
    ["an origin with credentials", { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "https://user:pw@pim.vendor.example" }], routes: [{ split: { weights: { vendor: 100 } } }] })] }, /without credentials/],
    ["a non-URL origin", { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "pim.vendor.example" }], routes: [{ split: { weights: { vendor: 100 } } }] })] }, /url/i],
    ["a bad sticky key", { services: [pim({ routes: [{ split: { weights: { "pim-v1": 100 }, sticky: "ip" } }] })] }, /cookie:NAME/],
    ["a service name that is not a DNS label", { services: [pim({ name: "Pim Service" })] }, /DNS label/],
    ["a service without routes", { services: [pim({ routes: [] })] }, /at least one route/],
    [
      "a routing loop through mesh backends",
      {
        services: [
          { name: "a", backends: [{ name: "to-b", type: "mesh", service: "b", binding: "B" }], routes: [{ split: { weights: { "to-b": 100 } } }] },
          { name: "b", backends: [{ name: "to-c", type: "mesh", service: "c", binding: "C" }], routes: [{ split: { weights: { "to-c": 100 } } }] },
          { name: "c", backends: [{ name: "to-a", type: "mesh", service: "a", binding: "A" }], routes: [{ split: { weights: { "to-a": 100 } } }] },
        ],
      },
      /routing loop: a → b → c → a/,
    ],
    ["a service routed to itself", { services: [{ name: "a", backends: [{ name: "self", type: "mesh", service: "a", binding: "A" }], routes: [{ split: { weights: { self: 100 } } }] }] }, /routes service 'a' to itself/],
    ["a mesh backend to an unknown service", { services: [{ name: "a", backends: [{ name: "x", type: "mesh", service: "nope", binding: "X" }], routes: [{ split: { weights: { x: 100 } } }] }] }, /unknown service 'nope'/],
    ["unknown fields (typos)", { services: [pim({ routes: [{ split: TYPO_SPLIT }] })] }, /unrecognized key/i],
  ];

  it.each(table)("refuses %s", (_name, input, message, options) => {
    const found = refusals(input, options ?? PROD);
    expect(found.length).toBeGreaterThan(0);
    expect(found.join("\n")).toMatch(message);
  });

  it("refuses a service named 'internet': that name is the identity of every caller from outside", () => {
    expect(refusals({ services: [pim({ name: "internet" })] }).join("\n")).toMatch(/'internet' is reserved/);
    expect(refusals({ services: [pim({ name: "internet-gateway" })] })).toEqual([]);
  });

  it("accepts http://localhost origins in development only", () => {
    const input = { services: [pim({ backends: [{ name: "vendor", type: "external", origin: "http://127.0.0.1:9000" }], routes: [{ split: { weights: { vendor: 100 } } }] })] } satisfies MeshConfigInput;
    expect(refusals(input, DEV)).toEqual([]);
    expect(refusals(input, PROD)).not.toEqual([]);
  });

  it("accepts a specific route before a catch-all, and acyclic mesh backends", () => {
    const input: MeshConfigInput = {
      services: [
        pim({
          routes: [
            { name: "canary-header", match: { path: "/*", headers: { "x-canary": "1" } }, split: { weights: { "pim-v2": 100 } } },
            { name: "all", split: { weights: { "pim-v1": 100 } } },
          ],
        }),
        { name: "edge", backends: [{ name: "pim", type: "mesh", service: "pim", binding: "PIM" }], routes: [{ split: { weights: { pim: 100 } } }] },
      ],
    };
    expect(refusals(input)).toEqual([]);
  });
});

describe("route shadowing at scale", () => {
  const backends = [{ name: "pim-v1", type: "worker" as const, binding: "PIM_V1" }];
  const split = { weights: { "pim-v1": 100 } };

  it("checks 8,000 routes and finds exactly the shadowed ones", () => {
    const routes = Array.from({ length: 8_000 }, (_, i) => ({ name: `r-${i}`, match: { path: `/r/${String(i).padStart(5, "0")}/*` }, split }));
    routes.push({ name: "shadowed-by-prefix", match: { path: "/r/00042/items" }, split });
    routes.push({ name: "shadowed-by-prefix-star", match: { path: "/r/07999/x/*" }, split });
    routes.push({ name: "not-shadowed", match: { path: "/s/1" }, split });
    const messages = refusals({ services: [{ name: "pim", backends, routes }] });
    expect(messages).toEqual([
      "route 'shadowed-by-prefix' is unreachable: route 'r-42' before it matches every request it would",
      "route 'shadowed-by-prefix-star' is unreachable: route 'r-7999' before it matches every request it would",
    ]);
  });

  it("reports the same first shadowing route as comparing every pair (random routes)", () => {
    const random = mulberry32(14);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const paths = ["/*", "/a/*", "/a", "/a/b", "/a/b/*", "/ab", "/ab/*", "/b/*", "/b"];
    const methods = [undefined, ["GET" as const], ["GET" as const, "POST" as const], ["POST" as const]];
    const headers = [undefined, { "x-v": "1" }, { "X-V": "2" }];
    for (let run = 0; run < 40; run++) {
      const routes = Array.from({ length: 12 }, (_, i) => ({
        name: `r-${i}`,
        match: { path: pick(paths), ...(pick([true, false]) ? { methods: pick(methods) } : {}), ...(pick([true, false]) ? { headers: pick(headers) } : {}) },
        split,
      }));
      const parsed = MeshConfig.parse({ services: [{ name: "pim", backends, routes }] });
      const first = parsed.services[0];
      if (!first) throw new Error("no service");
      const service = normalizeService(first);
      const expected = service.routes.flatMap((route, r) => {
        const shadow = service.routes.slice(0, r).find((earlier) => routeCovers(earlier.match, route.match));
        return shadow ? [`route '${route.name}' is unreachable: route '${shadow.name}' before it matches every request it would`] : [];
      });
      const actual = validateMesh({ services: [service] }, PROD).map((i) => i.message).filter((m) => m.includes("unreachable"));
      expect(actual).toEqual(expected);
    }
  });
});
