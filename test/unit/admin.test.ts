import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import { configStoreOf, KEPT_VERSIONS, sliceStoreOf, type ConfigStore } from "../../durable-objects/config-store.ts";
import type { MeshConfigInput } from "../../shared/config.ts";
import { counterName } from "../../shared/rate-limit.ts";
import type { ControlPlaneApi, ServiceSlice } from "../../shared/slice.ts";
import { decideSplit, expandLayout } from "../../shared/split.ts";
import type { ServiceView } from "../../shared/views.ts";

const TOKEN = "test-admin-token";

function admin(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`https://weft.test${path}`, { ...init, headers }));
}

function json(body: unknown): string {
  return JSON.stringify(body);
}

const SHOP: MeshConfigInput = {
  services: [
    {
      name: "pim",
      backends: [
        { name: "pim-v1", type: "worker", binding: "PIM_V1" },
        { name: "pim-v2", type: "worker", binding: "PIM_V2" },
        { name: "pim-v3", type: "worker", binding: "PIM_V3" },
      ],
      routes: [{ name: "products", split: { weights: { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0 }, sticky: "cookie:shopper" } }],
    },
    ...["cart", "orders", "storefront", "auth", "search", "reviews", "payments", "shipping", "tax", "promo"].map((name) => ({
      name,
      backends: [
        { name: `${name}-a`, type: "worker" as const, binding: "A" },
        { name: `${name}-b`, type: "worker" as const, binding: "B" },
      ],
      routes: [{ split: { weights: { [`${name}-a`]: 100, [`${name}-b`]: 0 } } }],
    })),
  ],
};

async function putConfig(config: MeshConfigInput): Promise<number> {
  const res = await admin("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: json(config) });
  expect(res.status).toBe(200);
  return (await res.json<{ version: number }>()).version;
}

async function service(name: string): Promise<ServiceView> {
  const res = await admin(`/admin/services/${name}`);
  expect(res.status).toBe(200);
  return await res.json<ServiceView>();
}

async function versionCount(): Promise<number> {
  const res = await admin("/admin/config/versions?limit=500");
  return (await res.json<{ versions: unknown[] }>()).versions.length;
}

/** The raw stub, for alarms; calls go through configStoreOf's typed view. */
function store() {
  return env.CONFIG_STORE.get(env.CONFIG_STORE.idFromName("mesh"));
}

/** The ConfigService as a proxy of `service` sees it: a binding whose props name that service. */
function boundTo(service: string): ControlPlaneApi {
  // The loopback's structural RPC type is too deep for TypeScript; proxies see the same plain API.
  const entrypoint = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
  return entrypoint({ props: { service } });
}

async function slice(name: string): Promise<ServiceSlice> {
  const read = await configStoreOf(env).readSlice(name);
  if (read.status !== "slice") throw new Error(`no slice for ${name}`);
  return read.slice;
}

beforeEach(async () => {
  await putConfig(SHOP);
});

describe("admin auth", () => {
  it.each([
    ["no token", null],
    ["a wrong token", "wrong"],
    ["a token that is a prefix of the right one", TOKEN.slice(0, -1)],
  ])("answers 401 problem+json with %s", async (_name, token) => {
    const res = await admin("/admin/services", { token });
    expect(res.status).toBe(401);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const body = await res.json<{ status: number; title: string }>();
    expect(body.status).toBe(401);
  });

  it("refuses writes without a token and changes nothing", async () => {
    const before = await versionCount();
    const res = await admin("/admin/services/pim/split", { method: "PUT", token: null, body: json({ weights: { "pim-v1": 0, "pim-v2": 100, "pim-v3": 0 } }) });
    expect(res.status).toBe(401);
    expect((await service("pim")).split["pim-v1"]).toBe(100);
    expect(await versionCount()).toBe(before);
  });
});

describe("services API", () => {
  it("lists services with backends, default split and version", async () => {
    const res = await admin("/admin/services");
    const body = await res.json<{ services: ServiceView[] }>();
    const pim = body.services.find((s) => s.name === "pim");
    expect(pim?.split).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0 });
    expect(pim?.backends.map((b) => b.name)).toEqual(["pim-v1", "pim-v2", "pim-v3"]);
    expect(typeof pim?.version).toBe("number");
  });

  it("answers 404 problem+json for an unknown service", async () => {
    for (const path of ["/admin/services/nope", "/admin/services/nope/split"]) {
      const res = await admin(path, path.endsWith("split") ? { method: "PUT", body: json({ weights: { a: 100 } }) } : {});
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
    }
  });

  it("sets a split and returns the new state with an ETag", async () => {
    const res = await admin("/admin/services/pim/split", { method: "PUT", body: json({ weights: { "pim-v1": 80, "pim-v2": 20, "pim-v3": 0 } }) });
    expect(res.status).toBe(200);
    const view = await res.json<ServiceView>();
    expect(view.split).toEqual({ "pim-v1": 80, "pim-v2": 20, "pim-v3": 0 });
    expect(res.headers.get("etag")).toBe(`"${view.version}"`);
    expect(await service("pim")).toEqual(view);
    expect(view.sticky).toBe("cookie:shopper");
  });

  const bad: Array<[string, string, number, RegExp]> = [
    ["weights not summing to 100", json({ weights: { "pim-v1": 80, "pim-v2": 10, "pim-v3": 0 } }), 422, /sum to 100, got 90/],
    ["non-integer weights", json({ weights: { "pim-v1": 80.5, "pim-v2": 19.5 } }), 422, /int/i],
    ["weights out of range", json({ weights: { "pim-v1": 150, "pim-v2": -50 } }), 422, /0-100/],
    ["an unknown backend", json({ weights: { "pim-v1": 80, "pim-v9": 20 } }), 422, /unknown backend 'pim-v9'/],
    ["malformed JSON", "{ weights: ", 400, /JSON/],
    ["a missing weights field", json({ wieghts: { "pim-v1": 100 } }), 422, /weights/],
  ];

  it.each(bad)("refuses %s with problem+json and changes nothing", async (_name, body, status, message) => {
    const before = await service("pim");
    const count = await versionCount();
    const res = await admin("/admin/services/pim/split", { method: "PUT", body });
    expect(res.status).toBe(status);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const problem = await res.json<{ type: string; title: string; detail: string; issues?: unknown[] }>();
    expect(`${problem.detail} ${JSON.stringify(problem.issues ?? [])}`).toMatch(message);
    if (status === 422) expect(problem.issues?.length).toBeGreaterThan(0);
    expect(await service("pim")).toEqual(before);
    expect(await versionCount()).toBe(count);
  });
});

describe("optimistic concurrency", () => {
  it("refuses a stale If-Match with 412 and applies a current one", async () => {
    const { version } = await service("pim");
    const stale = await admin("/admin/services/pim/split", {
      method: "PUT",
      headers: { "if-match": `"${version - 1}"` },
      body: json({ weights: { "pim-v1": 50, "pim-v2": 50, "pim-v3": 0 } }),
    });
    expect(stale.status).toBe(412);
    expect(stale.headers.get("content-type")).toBe("application/problem+json");
    expect((await service("pim")).split["pim-v1"]).toBe(100);
    const fresh = await admin("/admin/services/pim/split", {
      method: "PUT",
      headers: { "if-match": `"${version}"` },
      body: json({ weights: { "pim-v1": 50, "pim-v2": 50, "pim-v3": 0 } }),
    });
    expect(fresh.status).toBe(200);
  });

  it("lets exactly one of many concurrent writers with the same If-Match win", async () => {
    const { version } = await service("pim");
    const attempts = Array.from({ length: 10 }, (_, i) =>
      admin("/admin/services/pim/split", {
        method: "PUT",
        headers: { "if-match": `"${version}"` },
        body: json({ weights: { "pim-v1": 90 - i, "pim-v2": 10 + i, "pim-v3": 0 } }),
      }),
    );
    const statuses = (await Promise.all(attempts)).map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 412)).toHaveLength(9);
  });

  it("loses no update when writers change different services at once", async () => {
    const names = ["cart", "orders", "storefront", "auth", "search", "reviews", "payments", "shipping", "tax", "promo"];
    const results = await Promise.all(
      names.map((name, i) =>
        admin(`/admin/services/${name}/split`, { method: "PUT", body: json({ weights: { [`${name}-a`]: 100 - (i + 1), [`${name}-b`]: i + 1 } }) }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(names.map(() => 200));
    for (const [i, name] of names.entries()) expect((await service(name)).split[`${name}-b`]).toBe(i + 1);
  });

  it("refuses a whole-config write with a stale If-Match", async () => {
    const current = await admin("/admin/config");
    const etag = current.headers.get("etag") ?? "";
    await admin("/admin/services/pim/split", { method: "PUT", body: json({ weights: { "pim-v1": 70, "pim-v2": 30, "pim-v3": 0 } }) });
    const res = await admin("/admin/config", { method: "PUT", headers: { "if-match": etag }, body: json(SHOP) });
    expect(res.status).toBe(412);
    expect((await service("pim")).split["pim-v2"]).toBe(30);
  });
});

describe("whole-config writes need a precondition", () => {
  it("answers 428 problem+json to a PUT without If-Match or version, and changes nothing", async () => {
    const count = await versionCount();
    const changed = { services: SHOP.services.filter((s) => s.name !== "promo") };
    const res = await admin("/admin/config", { method: "PUT", body: json(changed) });
    expect(res.status).toBe(428);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toMatchObject({ status: 428, type: "urn:weft:problem:precondition-required" });
    expect(await versionCount()).toBe(count);
  });

  it("takes back what GET /admin/config answered (version included): a get-edit-put round trip", async () => {
    const read = await (await admin("/admin/config")).json<{ version: number; services: Array<{ name: string }> }>();
    const edited = { ...read, services: read.services.filter((s) => s.name !== "promo") };
    const put = await admin("/admin/config", { method: "PUT", body: json(edited) });
    expect(put.status).toBe(200);
    expect((await put.json<{ version: number; changed: string[] }>()).changed).toContain("promo");
    expect((await service("cart")).name).toBe("cart");
    expect((await admin("/admin/services/promo")).status).toBe(404);
    // The same document again is now stale: its version is no longer current.
    const stale = await admin("/admin/config", { method: "PUT", body: json(edited) });
    expect(stale.status).toBe(412);
    // With an If-Match that disagrees with the body's version: 412, nothing written.
    const current = Number((await admin("/admin/config")).headers.get("etag")?.replace(/"/g, ""));
    const mixed = await admin("/admin/config", { method: "PUT", headers: { "if-match": `"${current}"` }, body: json({ ...edited, version: current - 1 }) });
    expect(mixed.status).toBe(412);
    const agreed = await admin("/admin/config", { method: "PUT", headers: { "if-match": `"${current}"` }, body: json({ ...SHOP, version: current }) });
    expect(agreed.status).toBe(200);
  });
});

describe("config history retention", () => {
  it("keeps the last 500 versions (never the current one) and the documents they need, forgetting older ones", async () => {
    const first = Number((await admin("/admin/config")).headers.get("etag")?.replace(/"/g, ""));
    const firstConfig = await (await admin(`/admin/config?version=${first}`)).json<{ services: unknown[] }>();
    const weights = (i: number) => ({ "pim-v1": 100 - (i % 50), "pim-v2": i % 50, "pim-v3": 0 });
    let head = first;
    for (let i = 1; i <= KEPT_VERSIONS + 60; i++) {
      const result = await configStoreOf(env).setSplit("pim", { weights: weights(i) }, undefined, undefined);
      if (!result.ok) throw new Error(`split refused: ${result.reason}`);
      head = result.value.version;
    }
    const versions = await configStoreOf(env).listVersions(10_000);
    expect(versions[0]?.version).toBe(head);
    expect(versions.length).toBeGreaterThanOrEqual(KEPT_VERSIONS);
    expect(versions.length).toBeLessThan(KEPT_VERSIONS + 25);
    // The first version is gone: neither readable nor a rollback target.
    expect((await admin(`/admin/config?version=${first}`)).status).toBe(404);
    expect((await admin("/admin/config/rollback", { method: "POST", body: json({ version: first }) })).status).toBe(404);
    // The oldest kept version is whole: every service, pim with the weights it had then.
    const oldest = head - KEPT_VERSIONS + 1;
    const kept = await (await admin(`/admin/config?version=${oldest}`)).json<{ services: Array<{ name: string; routes: Array<{ split: { weights: unknown } }> }> }>();
    expect(kept.services).toHaveLength(firstConfig.services.length);
    expect(kept.services.find((svc) => svc.name === "pim")?.routes[0]?.split.weights).toEqual(weights(oldest - first));
    expect((await admin("/admin/config/rollback", { method: "POST", body: json({ version: oldest }) })).status).toBe(200);
    // Storage is bounded too: pim's documents are about one per kept version, the others one each.
    await runInDurableObject(store(), (_instance: ConfigStore, state) => {
      const rows = state.storage.sql.exec<{ service: string; n: number }>("SELECT service, COUNT(*) AS n FROM service_docs GROUP BY service").toArray();
      for (const row of rows) expect(row.n, row.service).toBeLessThanOrEqual(row.service === "pim" ? KEPT_VERSIONS + 25 : 2);
    });
  }, 120_000);
});

describe("config versions", () => {
  it("keeps every change as a version and rolls back as a new version", async () => {
    const base = await putConfig({ services: [] });
    const v1 = await putConfig(SHOP);
    await admin("/admin/services/pim/split", { method: "PUT", body: json({ weights: { "pim-v1": 60, "pim-v2": 40, "pim-v3": 0 } }) });
    const list = await (await admin("/admin/config/versions")).json<{ current: number; versions: Array<{ version: number; reason: string }> }>();
    expect(list.current).toBe(v1 + 1);
    expect(list.versions[0]?.reason).toMatch(/split pim\/products: pim-v1=60 pim-v2=40/);
    expect(base).toBeLessThan(v1);

    const old = await (await admin(`/admin/config?version=${v1}`)).json<{ version: number; services: Array<{ name: string }> }>();
    expect(old.version).toBe(v1);

    const rollback = await admin("/admin/config/rollback", { method: "POST", body: json({ version: v1 }) });
    expect(rollback.status).toBe(200);
    const result = await rollback.json<{ version: number; changed: string[] }>();
    expect(result.version).toBe(v1 + 2);
    expect(result.changed).toEqual(["pim"]);
    expect((await service("pim")).split).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0 });
  });

  it("answers 404 for an unknown version and 422 for a bad rollback body", async () => {
    expect((await admin("/admin/config/rollback", { method: "POST", body: json({ version: 99_999 }) })).status).toBe(404);
    expect((await admin("/admin/config/rollback", { method: "POST", body: json({ version: "one" }) })).status).toBe(422);
    expect((await admin("/admin/config?version=99999")).status).toBe(404);
  });

  it("refuses an invalid whole config with every issue, storing nothing", async () => {
    const count = await versionCount();
    const res = await admin("/admin/config", {
      method: "PUT",
      headers: { "if-match": "*" },
      body: json({
        services: [
          { name: "a", backends: [{ name: "x", type: "external", origin: "http://vendor.example" }], routes: [{ split: { weights: { x: 90 } } }] },
        ],
      }),
    });
    expect(res.status).toBe(422);
    const problem = await res.json<{ issues: Array<{ message: string; path: unknown[] }> }>();
    expect(problem.issues.map((i) => i.message).join("\n")).toMatch(/https[\s\S]*sum to 100/);
    expect(await versionCount()).toBe(count);
  });
});

describe("sticky layouts through the admin API", () => {
  it("never moves a shopper except from a backend that lost weight to one that gained, over 30 changes and a rollback", async () => {
    const shoppers = Array.from({ length: 500 }, (_, i) => `shopper-${i}`);
    const assign = (s: ServiceSlice) => {
      const route = s.routes[0];
      if (!route) throw new Error("no route");
      const owners = expandLayout(route.layout);
      return shoppers.map((k) => decideSplit(owners, `${s.service}/${route.name}`, k, 0).backend);
    };
    let weights: Record<string, number> = { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0 };
    let before = assign(await slice("pim"));
    const history: number[] = [];
    let seed = 11;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let step = 0; step < 31; step++) {
      let next: Record<string, number>;
      if (step === 30) {
        const res = await admin("/admin/config/rollback", { method: "POST", body: json({ version: history[10] }) });
        expect(res.status).toBe(200);
        next = (await service("pim")).split;
      } else {
        const a = Math.floor(random() * 101);
        const b = Math.floor(random() * (101 - a));
        next = { "pim-v1": a, "pim-v2": b, "pim-v3": 100 - a - b };
        const res = await admin("/admin/services/pim/split", { method: "PUT", body: json({ weights: next }) });
        expect(res.status).toBe(200);
        history.push(Number((await admin("/admin/config")).headers.get("etag")?.replace(/"/g, "")));
      }
      const after = assign(await slice("pim"));
      after.forEach((backend, i) => {
        const from = before[i] ?? "";
        if (backend === from) return;
        expect(next[from] ?? 0).toBeLessThan(weights[from] ?? 0);
        expect(next[backend] ?? 0).toBeGreaterThan(weights[backend] ?? 0);
      });
      weights = next;
      before = after;
    }
  });
});

describe("publication to proxies", () => {
  it("pushes a changed service's slice to its (subscribed) shard, which proxies read", async () => {
    const shard = sliceStoreOf(env, "pim");
    const first = await shard.read("pim", 0); // a proxy's first read subscribes the shard
    expect(first.status).toBe("slice");
    const res = await admin("/admin/services/pim/split", { method: "PUT", body: json({ weights: { "pim-v1": 75, "pim-v2": 25, "pim-v3": 0 } }) });
    const { version } = await res.json<ServiceView>();
    expect((await shard.read("pim", version)).status).not.toBe("unchanged"); // not pushed yet
    expect(await runDurableObjectAlarm(store())).toBe(true);
    const read = await shard.read("pim", 0);
    expect(read.status).toBe("slice");
    if (read.status === "slice") {
      expect(read.slice.version).toBe(version);
      expect(read.slice.routes[0]?.split.weights).toEqual({ "pim-v1": 75, "pim-v2": 25, "pim-v3": 0 });
    }
    expect(await shard.read("pim", version)).toMatchObject({ status: "unchanged", version });
  });

  it("serves proxies only their own service (the ConfigService entrypoint)", async () => {
    const controlPlane = boundTo("cart");
    const read = await controlPlane.readSlice("cart", 0);
    expect(read.status).toBe("slice");
    if (read.status === "slice") {
      expect(read.slice.service).toBe("cart");
      expect(JSON.stringify(read.slice)).not.toContain("pim-v1");
    }
    const refused = await controlPlane.readSlice("../etc", 0).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(String(refused)).toMatch(/this binding serves 'cart'/);
  });

  it("binds a proxy to the service its binding's props name: no reading, signing, counting or leasing for another", async () => {
    const cart = boundTo("cart");
    const failure = (call: Promise<unknown>): Promise<string> => call.then(() => "accepted", (error: unknown) => String(error));
    // Another service's slice, signature, telemetry and rate-limit counters are refused.
    expect(await failure(cart.readSlice("pim", 0))).toMatch(/serves 'cart', not "pim"/);
    const claims = { sub: "pim", aud: "vendor-pim", htm: "GET", htu: "https://vendor.example/p", body_sha256: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" };
    expect(await failure(cart.signEgress("pim", claims))).toMatch(/serves 'cart'/);
    const batch = { service: "pim", batchId: crypto.randomUUID(), at: Date.now(), series: [], ejections: 0, events: [], attempts: [] };
    expect(await failure(cart.recordTelemetry(batch))).toMatch(/serves 'cart'/);
    const spec = { algorithm: "fixed-window" as const, limit: 10, periodSeconds: 60 };
    expect(await failure(cart.leaseTokens(counterName("pim", "limit-0", "k"), spec, 1))).toMatch(/serves 'cart'/);
    // Its own are served, and a provider's shared quota counter is open to every bound proxy.
    expect(await failure(cart.recordTelemetry({ ...batch, service: "cart" }))).toBe("accepted");
    expect(await failure(cart.leaseTokens(counterName("cart", "limit-0", "k"), spec, 1))).toBe("accepted");
    expect(await failure(cart.leaseTokens(counterName("egress", "vendor-pim", "all"), spec, 1))).toBe("accepted");
    // A binding without props is refused whatever it asks.
    const unbound = exports.ConfigService as unknown as ControlPlaneApi;
    expect(await failure(unbound.readSlice("cart", 0))).toMatch(/no props\.service/);
    expect(await failure(unbound.leaseTokens(counterName("egress", "vendor-pim", "all"), spec, 1))).toMatch(/no props\.service/);
  });
});

describe("authorization policies through the admin API", () => {
  const policy = { allow: [{ from: ["cart", "orders", "storefront"], methods: ["GET"], paths: ["/products/*"] }] };

  it("sets, reads and removes a service's policy, each as a new version", async () => {
    expect((await admin("/admin/services/pim/policy")).status).toBe(404);
    const put = await admin("/admin/services/pim/policy", { method: "PUT", body: json(policy) });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ ...policy, deny: [] });
    const get = await admin("/admin/services/pim/policy");
    expect(await get.json()).toEqual({ ...policy, deny: [] });
    const config = await (await admin("/admin/config")).json<{ services: Array<{ name: string; policy?: unknown }> }>();
    expect(config.services.find((s) => s.name === "pim")?.policy).toEqual({ ...policy, deny: [] });
    const del = await admin("/admin/services/pim/policy", { method: "DELETE" });
    expect(del.status).toBe(200);
    expect((await admin("/admin/services/pim/policy")).status).toBe(404);
  });

  it("refuses an invalid policy with 422 and changes nothing", async () => {
    const count = await versionCount();
    const res = await admin("/admin/services/pim/policy", { method: "PUT", body: json({ allow: [{ from: ["Not A Service"] }] }) });
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await versionCount()).toBe(count);
  });
});
