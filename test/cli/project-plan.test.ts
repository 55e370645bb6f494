/**
 * The pure parts of adding Weft to a project: init's plan from the workers found, where `weft dev`
 * finds local data, and the deploy copy of a worker's config.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { proxyBindings, proxyConfig } from "../../cli/manifest/generate.ts";
import { adminConfigOf, parseManifest } from "../../cli/manifest/load.ts";
import { Manifest } from "../../cli/manifest/schema.ts";
import { deployOrder, workerDeployConfig } from "../../cli/project/deploy.ts";
import { localStateDir, withProxyMainFrom, workersToBoot } from "../../cli/project/dev.ts";
import { bindingNameOf, mapEnvironments, planInit, rpcCallees, serviceNameOf, withRpcProperties } from "../../cli/project/init.ts";
import { validateConfig } from "../../cli/manifest/load.ts";
import { findRpcProperties, propertyNames } from "../../cli/project/rpc-members.ts";
import { loadWrangler, readProjectWorkers, type ProjectWorker } from "../../cli/project/workers.ts";

const ROOT = "/p";
function worker(name: string, dir: string, extra: Partial<ProjectWorker> = {}): ProjectWorker {
  return {
    name,
    configPath: path.join(ROOT, dir, "wrangler.toml"),
    main: path.join(ROOT, dir, "src", "index.ts"),
    serviceBindings: [],
    routes: [],
    durableObjectScripts: [],
    environments: [],
    requiredSecrets: [],
    otherBindings: [],
    hasStorage: false,
    ...extra,
  };
}

describe("weft init's plan", () => {
  const workers = [
    worker("web", "web", { routes: [{ pattern: "shop.example.com/*" }], serviceBindings: [{ binding: "USERS", service: "users_api" }, { binding: "ADMIN", service: "users_api", entrypoint: "Admin" }, { binding: "MAIL", service: "mailer-elsewhere" }] }),
    worker("users_api", "users", { otherBindings: ["tail_consumers"], environments: ["staging"] }),
    worker("cron", "cron"),
  ];
  const plan = planInit(ROOT, workers);

  it("makes one valid service per worker, with DNS-label names and binding names", () => {
    expect(Manifest.safeParse(plan.manifest).success).toBe(true);
    expect(plan.services.map((s) => s.service)).toEqual(["web", "users-api", "cron"]);
    expect(serviceNameOf("--My.Worker--")).toBe("my-worker");
    expect(bindingNameOf("users-api")).toBe("USERS_API");
    expect(bindingNameOf("9lives")).toBe("W_9LIVES");
  });

  it("turns bindings between project workers into calls, named entrypoints too (listed on the callee's backend); outside workers stay direct, said why", () => {
    expect(plan.services.find((s) => s.service === "web")?.calls).toEqual({ USERS: "users-api", ADMIN: "users-api" });
    const usersApi = plan.manifest.services.find((s) => s.name === "users-api")?.backends[0];
    expect(usersApi).toMatchObject({ script: "users_api", entrypoints: ["Admin"] });
    const notes = plan.notes.map((n) => `${n.worker}: ${n.message}`).join("\n");
    expect(notes).not.toMatch(/ADMIN/);
    expect(notes).toMatch(/web: binding MAIL → 'mailer-elsewhere': not a worker of this project/);
    expect(notes).toMatch(/users_api: tail_consumers: kept as configured/);
    expect(notes).toMatch(/users_api: environments \(staging\) are not mapped/);
    expect(notes).toMatch(/users_api: named 'users-api'/);
  });

  it("marks public the workers with routes or that no other worker calls; their routes move to the proxy", () => {
    expect(plan.services.map((s) => [s.service, s.public])).toEqual([
      ["web", true],
      ["users-api", false],
      ["cron", true],
    ]);
    const web = plan.manifest.services.find((s) => s.name === "web");
    expect(web?.publicRoutes).toEqual([{ pattern: "shop.example.com/*" }]);
  });

  it("keeps a route's zone and custom domain as wrangler read them, so the proxy's config is one wrangler accepts", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-zones-"));
    try {
      mkdirSync(path.join(dir, "gateway"), { recursive: true });
      writeFileSync(
        path.join(dir, "gateway", "wrangler.jsonc"),
        `{
  // the public gateway
  "name": "gateway",
  "main": "index.js",
  "compatibility_date": "2026-11-01",
  "routes": [{ "pattern": "shop.example.com/*", "zone_name": "example.com" }, { "pattern": "api.example.com/*", "zone_id": "0123abcd" }, { "pattern": "www.example.com", "custom_domain": true }, "plain.example.com/*"]
}
`,
      );
      writeFileSync(path.join(dir, "gateway", "index.js"), "export default { fetch() { return new Response('ok'); } };\n");
      const wrangler = await loadWrangler();
      const { workers } = readProjectWorkers(wrangler, dir);
      const plan = planInit(dir, workers);
      const routes = [
        { pattern: "shop.example.com/*", zone_name: "example.com" },
        { pattern: "api.example.com/*", zone_id: "0123abcd" },
        { pattern: "www.example.com", custom_domain: true },
        { pattern: "plain.example.com/*" },
      ];
      expect(plan.manifest.services[0]?.publicRoutes).toEqual(routes);
      const parsed = parseManifest({ file: path.join(dir, "weft.manifest.json"), display: "weft.manifest.json", text: "", lines: new Map(), value: plan.manifest });
      if (!parsed.ok) throw new Error("plan is not a manifest");
      const file = path.join(dir, ".weft", "deploy", "proxy", "wrangler.toml");
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, proxyConfig(parsed.loaded, file));
      // wrangler refuses a route object without its zone or custom_domain ("Expected routes to be an
      // array of …"): a bare pattern is written as a string.
      expect(wrangler.readConfig(file, "gateway").routes).toEqual([...routes.slice(0, 3), "plain.example.com/*"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("leaves out a worker whose name Cloudflare would not deploy, with a note", () => {
    const odd = planInit(ROOT, [worker("Shop API", "a"), worker("ok", "b")]);
    expect(odd.services.map((s) => s.service)).toEqual(["ok"]);
    expect(odd.notes[0]?.message).toMatch(/left out/);
  });

  it("lists a worker defined twice once, with a note", () => {
    const twice = planInit(ROOT, [worker("a", "a"), worker("a", "b")]);
    expect(twice.services).toHaveLength(1);
    expect(twice.notes[0]?.message).toMatch(/defined twice/);
  });
});

describe("where weft dev finds local data", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "weft-state-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const at = (d: string, extra: Partial<ProjectWorker> = {}): ProjectWorker => ({ ...worker("w", "w"), configPath: path.join(dir, d, "wrangler.toml"), ...extra });

  it("uses the folder of the worker with storage when the project root has no worker", () => {
    expect(localStateDir(dir, [at("gateway"), at("api", { hasStorage: true })]).dir).toBe(path.join(dir, "api", ".wrangler", "state"));
  });

  it("prefers state that exists, and reports the others", () => {
    mkdirSync(path.join(dir, ".wrangler", "state", "v3"), { recursive: true });
    mkdirSync(path.join(dir, "api", ".wrangler", "state", "v3"), { recursive: true });
    const found = localStateDir(dir, [at("gateway"), at("api", { hasStorage: true })]);
    expect(found.dir).toBe(path.join(dir, "api", ".wrangler", "state"));
    expect(found.others).toEqual([path.join(dir, ".wrangler", "state")]);
    // A worker configured at the root (wrangler dev run there) puts the root first.
    expect(localStateDir(dir, [at(".", { hasStorage: false }), at("api", { hasStorage: true })]).dir).toBe(path.join(dir, ".wrangler", "state"));
  });
});

describe("a worker's config as weft deploy deploys it", () => {
  const manifest = planInit(ROOT, [worker("web", "web", { routes: [{ pattern: "shop.example.com/*" }], serviceBindings: [{ binding: "API", service: "api" }] }), worker("api", "api")]).manifest;
  const parsed = parseManifest({ file: path.join(ROOT, "weft.manifest.json"), display: "weft.manifest.json", text: "", lines: new Map(), value: manifest });
  if (!parsed.ok) throw new Error("plan is not a manifest");
  const web = worker("web", "web", { routes: [{ pattern: "shop.example.com/*" }] });
  const raw = {
    name: "web",
    main: "src/index.ts",
    routes: [{ pattern: "shop.example.com/*", zone_name: "example.com" }, "other.example.com/*"],
    services: [{ binding: "API", service: "api" }, { binding: "LOG", service: "logger" }],
    assets: { directory: "./public" },
    d1_databases: [{ binding: "DB", database_id: "x" }],
    env: { staging: { main: "src/staging.ts" } },
  };
  const out = workerDeployConfig({ loaded: parsed.loaded, worker: web, raw, file: path.join(ROOT, ".weft", "deploy", "workers", "web", "wrangler.jsonc") });

  it("binds its calls to the callee's proxy with the caller's identity, and leaves other bindings", () => {
    expect(out.services).toEqual([{ binding: "API", service: "weft-proxy-api", props: { caller: "web" } }, { binding: "LOG", service: "logger" }]);
  });

  it("gives its public routes to its proxy and turns workers.dev off", () => {
    expect(out.routes).toEqual(["other.example.com/*"]);
    expect(out.workers_dev).toBe(false);
    expect(out.preview_urls).toBe(false);
  });

  it("names the same files from its new folder, environments and wrangler's default migrations folder included", () => {
    expect(out.main).toBe("../../../../web/src/index.ts");
    expect(out.assets).toEqual({ directory: "../../../../web/public" });
    expect(out.d1_databases).toEqual([{ binding: "DB", database_id: "x", migrations_dir: "../../../../web/migrations" }]);
    expect(out.env).toEqual({ staging: { main: "../../../../web/src/staging.ts" } });
  });
});

describe("a named entrypoint behind the proxy, as weft deploy and generate write it", () => {
  const manifest = planInit(ROOT, [
    worker("web", "web", { serviceBindings: [{ binding: "API", service: "api" }, { binding: "API_ADMIN", service: "api", entrypoint: "Admin" }] }),
    worker("api", "api"),
  ]).manifest;
  const parsed = parseManifest({ file: path.join(ROOT, "weft.manifest.json"), display: "weft.manifest.json", text: "", lines: new Map(), value: manifest });
  if (!parsed.ok) throw new Error("plan is not a manifest");

  it("binds the caller's named-entrypoint binding to the callee's proxy, naming the entrypoint in props", () => {
    const raw = { name: "web", main: "src/index.ts", services: [{ binding: "API", service: "api" }, { binding: "API_ADMIN", service: "api", entrypoint: "Admin" }] };
    const out = workerDeployConfig({ loaded: parsed.loaded, worker: worker("web", "web"), raw, file: path.join(ROOT, ".weft", "deploy", "workers", "web", "wrangler.jsonc") });
    expect(out.services).toEqual([
      { binding: "API", service: "weft-proxy-api", props: { caller: "web" } },
      { binding: "API_ADMIN", service: "weft-proxy-api", props: { caller: "web", entrypoint: "Admin" } },
    ]);
  });

  it("gives the callee's proxy a binding to the backend's entrypoint, and keeps the entrypoints out of the admin config", () => {
    const api = parsed.loaded.manifest.services.find((s) => s.name === "api");
    if (!api) throw new Error("no api service");
    expect(proxyBindings(parsed.loaded.manifest, api).slice(1)).toEqual([
      { binding: "API", service: "api" },
      { binding: "API__Admin", service: "api", entrypoint: "Admin" },
    ]);
    expect(JSON.stringify(adminConfigOf(manifest))).not.toContain("entrypoints");
  });

  it("declares RPC properties in the proxy's vars (WEFT_RPC_PROPERTIES), and refuses names that are not properties", () => {
    const withProperties = { ...manifest, services: manifest.services.map((s) => (s.name === "api" ? { ...s, proxy: { rpcProperties: ["version", "Admin.flags"] } } : s)) };
    const again = parseManifest({ file: path.join(ROOT, "weft.manifest.json"), display: "weft.manifest.json", text: "", lines: new Map(), value: withProperties });
    if (!again.ok) throw new Error("not a manifest");
    const toml = proxyConfig(again.loaded, path.join(ROOT, ".weft", "deploy", "proxy", "wrangler.toml"));
    const api = toml.slice(toml.indexOf("[env.api]"));
    expect(api.split("\n")[1]).toContain('WEFT_RPC_PROPERTIES = "version,Admin.flags"');
    expect(toml.slice(toml.indexOf("[env.web]"), toml.indexOf("[env.api]"))).not.toContain("WEFT_RPC_PROPERTIES");
    const bad = { ...manifest, services: manifest.services.map((s) => (s.name === "api" ? { ...s, proxy: { rpcProperties: ["a.b.c"] } } : s)) };
    expect(Manifest.safeParse(bad).success).toBe(false);
    expect(JSON.stringify(adminConfigOf(withProperties))).not.toContain("rpcProperties");
  });

  it("refuses entrypoint names that are not class names, and `default`", () => {
    const backend = (entrypoints: string[]): unknown => ({ ...manifest, services: manifest.services.map((s) => (s.name === "api" ? { ...s, backends: [{ ...s.backends[0], entrypoints }] } : s)) });
    expect(Manifest.safeParse(backend(["Admin"])).success).toBe(true);
    expect(Manifest.safeParse(backend(["default"])).success).toBe(false);
    expect(Manifest.safeParse(backend(["not-a-class"])).success).toBe(false);
  });
});

describe("weft init learns which RPC members are properties from the callees' exports", () => {
  it("lists the default export's properties by name and a named entrypoint's as Entrypoint.name, bounded", () => {
    expect(propertyNames({ default: ["version", "bad name"], Admin: ["flags"], Other: ["x"] }, ["Admin"])).toEqual(["Admin.flags", "version"]);
    expect(propertyNames({}, ["Admin"])).toEqual([]);
    expect(propertyNames({ default: Array.from({ length: 100 }, (_, i) => `p${i}`) }, [])).toHaveLength(64);
  });

  it("asks only about called workers, with the entrypoints they are called on, and declares what was found", () => {
    const plan = planInit(ROOT, [
      worker("web", "web", { serviceBindings: [{ binding: "USERS", service: "users" }, { binding: "ADMIN", service: "users", entrypoint: "Admin" }] }),
      worker("users", "users"),
    ]);
    expect(rpcCallees(plan)).toEqual([{ script: "users", entrypoints: ["Admin"] }]);
    const learnt = withRpcProperties(plan, { properties: new Map([["users", ["Admin.flags", "version"]]]), unreadable: [{ worker: "web", reason: "its module did not load on its own (boom)" }] });
    expect(learnt.manifest.services.find((s) => s.name === "users")?.proxy).toEqual({ rpcProperties: ["Admin.flags", "version"] });
    expect(learnt.manifest.services.find((s) => s.name === "web")?.proxy).toBeUndefined();
    expect(Manifest.safeParse(learnt.manifest).success).toBe(true);
    expect(learnt.notes.map((n) => n.message)).toEqual(expect.arrayContaining([expect.stringMatching(/learnt from its exports.*Admin\.flags, version/), expect.stringMatching(/not learnt: its module did not load on its own \(boom\); declare any/)]));
  });

  it("reads getters of classes and of a default-export object on workerd, and reports a module that does not load alone", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-members-"));
    try {
      const write = (name: string, source: string): void => {
        mkdirSync(path.join(dir, name, "src"), { recursive: true });
        writeFileSync(path.join(dir, name, "wrangler.toml"), `name = "${name}"\nmain = "src/index.js"\ncompatibility_date = "2026-11-01"\n`);
        writeFileSync(path.join(dir, name, "src", "index.js"), source);
      };
      write("classy", `import { WorkerEntrypoint } from "cloudflare:workers";
class Base extends WorkerEntrypoint { get region() { return "eu"; } }
export class Admin extends WorkerEntrypoint { get flags() { return 1; } purge() {} }
export default class extends Base { get version() { return "2"; } getUser() {} }`);
      write("plain", `export default { limit: 10, get mode() { return "a"; }, fetch() { return new Response("ok"); }, list() { return []; } };`);
      write("broken", `throw new Error("needs its bindings at load");\nexport default {};`);
      const wrangler = await loadWrangler();
      const { workers } = readProjectWorkers(wrangler, dir);
      const byName = (name: string): ProjectWorker => {
        const w = workers.find((x) => x.name === name);
        if (!w) throw new Error(`no worker ${name}`);
        return w;
      };
      const found = await findRpcProperties(wrangler, [
        { worker: byName("classy"), entrypoints: ["Admin"] },
        { worker: byName("plain"), entrypoints: [] },
        { worker: byName("broken"), entrypoints: [] },
      ]);
      expect(found.properties.get("classy")).toEqual(["Admin.flags", "region", "version"]);
      expect(found.properties.get("plain")).toEqual(["limit", "mode"]);
      expect(found.unreadable.map((u) => u.worker)).toEqual(["broken"]);
      expect(found.unreadable[0]?.reason).toMatch(/did not load on its own.*needs its bindings at load/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("a config's [env.*] sections as versions of one service", () => {
  // `api` deployed twice from one config: `wrangler deploy --env v1` → api-v1, `--env v2` → api-v2.
  const api = worker("api", "api", { environments: ["v1", "v2"] });
  const v1 = worker("api-v1", "api", { env: "v1" });
  const v2 = worker("api-v2", "api", { env: "v2", requiredSecrets: ["NOTIFY_API_KEY"] });
  const gateway = worker("gateway", "gateway", { serviceBindings: [{ binding: "API", service: "api-v1" }] });
  const plan = planInit(ROOT, [gateway, api, v1, v2]);

  it("init maps them to one service with one worker backend per environment, the first at weight 100", () => {
    expect(Manifest.safeParse(plan.manifest).success).toBe(true);
    expect(validateConfig(adminConfigOf(plan.manifest)).ok).toBe(true);
    const service = plan.manifest.services.find((s) => s.name === "api");
    expect(service?.backends).toEqual([
      { name: "api-v1", type: "worker", binding: "API_V1", script: "api-v1" },
      { name: "api-v2", type: "worker", binding: "API_V2", script: "api-v2" },
    ]);
    expect(service?.routes).toEqual([{ name: "all", match: { path: "/*" }, split: { weights: { "api-v1": 100, "api-v2": 0 } } }]);
    expect(plan.services.map((s) => s.service)).toEqual(["gateway", "api"]);
    expect(plan.services.find((s) => s.service === "api")?.versions).toEqual([
      { backend: "api-v1", script: "api-v1", env: "v1", weight: 100 },
      { backend: "api-v2", script: "api-v2", env: "v2", weight: 0 },
    ]);
  });

  it("a call to one environment's worker is a call to the service (its proxy splits it), and says so in its notes", () => {
    expect(plan.services.find((s) => s.service === "gateway")?.calls).toEqual({ API: "api" });
    expect(plan.services.map((s) => [s.service, s.public])).toEqual([
      ["gateway", true],
      ["api", false],
    ]);
    const notes = plan.notes.map((n) => `${n.worker}: ${n.message}`).join("\n");
    expect(notes).toMatch(/api: environments \(v1, v2\) mapped as versions of one service 'api': backends api-v1 \(api-v1, --env v1, weight 100\), api-v2 \(api-v2, --env v2, weight 0\)/);
    expect(notes).not.toMatch(/not mapped/);
  });

  it("keeps the note for environments it cannot map: routed, unnamed or unread, or named like another worker", () => {
    const routed = mapEnvironments(api, [v1, { ...v2, routes: [{ pattern: "api.example.com/*" }] }], new Set(["api", "gateway"]));
    expect(routed).toEqual({ kind: "not-mapped", reason: "v2 has routes (a separate deployment, not a version)" });
    const reason = (m: ReturnType<typeof mapEnvironments>): string => (m.kind === "not-mapped" ? m.reason : "mapped");
    expect(reason(mapEnvironments(api, [v1], new Set(["api"])))).toMatch(/^v2 has no name of its own/);
    expect(reason(mapEnvironments(api, [v1, v2], new Set(["api", "api-v2"])))).toMatch(/v2 \(api-v2\): not a deployable name, or one another worker has/);
    const staging = planInit(ROOT, [worker("web", "web", { environments: ["staging"] }), worker("web-staging", "web", { env: "staging", routes: [{ pattern: "staging.example.com/*" }] })]);
    expect(staging.services.map((s) => s.service)).toEqual(["web"]);
    expect(staging.manifest.services[0]?.backends.map((b) => (b.type === "worker" ? b.script : ""))).toEqual(["web"]);
    expect(staging.notes.map((n) => n.message)).toContain("environments (staging) are not mapped: staging has routes (a separate deployment, not a version); the mesh uses the top-level config");
  });

  const parsed = parseManifest({ file: path.join(ROOT, "weft.manifest.json"), display: "weft.manifest.json", text: "", lines: new Map(), value: plan.manifest });
  if (!parsed.ok) throw new Error("plan is not a manifest");

  it("weft dev boots each environment's worker under its resolved name (none reported missing)", () => {
    const boot = workersToBoot(parsed.loaded.manifest, [gateway, api, v1, v2]);
    expect(boot.missing).toEqual([]);
    expect(boot.workers.map((w) => [w.name, w.env])).toEqual([
      ["gateway", undefined],
      ["api-v1", "v1"],
      ["api-v2", "v2"],
    ]);
  });

  it("weft dev leaves the mesh's own workers to Weft, even when a project config deploys them from its [env.*] (Weft's repository layout)", () => {
    // workers/proxy/wrangler.toml's [env.api] resolves to weft-proxy-api: a caller bound to it must not boot it as a user worker.
    const proxyEnv = worker("weft-proxy-api", "proxy", { env: "api" });
    const caller = { ...gateway, serviceBindings: [{ binding: "API", service: "weft-proxy-api" }] };
    const boot = workersToBoot(parsed.loaded.manifest, [caller, api, v1, v2, proxyEnv]);
    expect(boot.workers.map((w) => w.name)).toEqual(["gateway", "api-v1", "api-v2"]);
  });

  it("weft dev re-bases a manifest's own proxy.main (relative to files.proxy) for the proxy config it writes under .weft/dev/", () => {
    const own = { ...parsed.loaded, manifest: { ...parsed.loaded.manifest, files: { ...parsed.loaded.manifest.files, proxy: "workers/proxy/wrangler.toml" }, proxy: { ...parsed.loaded.manifest.proxy, main: "index.ts" } } };
    expect(withProxyMainFrom(own, path.join(ROOT, ".weft", "dev", "proxy", "wrangler.toml")).manifest.proxy.main).toBe("../../../workers/proxy/index.ts");
    expect(withProxyMainFrom(parsed.loaded, path.join(ROOT, ".weft", "dev", "proxy", "wrangler.toml"))).toBe(parsed.loaded);
  });

  it("weft deploy --services deploys each with --env, after its proxy's callers' needs", () => {
    const steps = deployOrder(parsed.loaded, [gateway, api, v1, v2], { services: true, proxyFile: path.join(ROOT, ".weft/deploy/proxy/wrangler.toml"), controlPlaneFile: path.join(ROOT, ".weft/deploy/control-plane/wrangler.jsonc") });
    const versions = steps.filter((s) => s.name.startsWith("api-"));
    expect(versions).toEqual([
      { name: "api-v1", kind: "worker", config: path.join(ROOT, ".weft/deploy/workers/api-v1/wrangler.jsonc"), env: "v1" },
      { name: "api-v2", kind: "worker", config: path.join(ROOT, ".weft/deploy/workers/api-v2/wrangler.jsonc"), env: "v2" },
    ]);
    // The top-level worker is no backend: not deployed.
    expect(steps.map((s) => s.name)).not.toContain("api");
    const order = steps.map((s) => s.name);
    expect(order.indexOf("api-v2")).toBeLessThan(order.indexOf("weft-proxy-api"));
    expect(order.indexOf("weft-proxy-api")).toBeLessThan(order.indexOf("gateway"));
  });

  it("the deploy copy of an environment's worker rewires that environment's bindings (which wrangler does not inherit) and turns its workers.dev off", () => {
    const calling = planInit(ROOT, [api, v1, { ...v2, serviceBindings: [{ binding: "GW", service: "gateway" }] }, worker("gateway", "gateway")]);
    const loaded = parseManifest({ file: path.join(ROOT, "weft.manifest.json"), display: "weft.manifest.json", text: "", lines: new Map(), value: calling.manifest });
    if (!loaded.ok) throw new Error("plan is not a manifest");
    const raw = {
      name: "api",
      main: "src/index.js",
      services: [{ binding: "GW", service: "gateway" }],
      env: { v1: { vars: { VERSION: "v1" } }, v2: { vars: { VERSION: "v2" }, workers_dev: true, services: [{ binding: "GW", service: "gateway" }] } },
    };
    const out = workerDeployConfig({ loaded: loaded.loaded, worker: { ...v2, serviceBindings: [{ binding: "GW", service: "gateway" }] }, raw, file: path.join(ROOT, ".weft", "deploy", "workers", "api-v2", "wrangler.jsonc") });
    expect(out.env).toEqual({
      v1: { vars: { VERSION: "v1" } },
      v2: { vars: { VERSION: "v2" }, workers_dev: false, preview_urls: false, services: [{ binding: "GW", service: "weft-proxy-gateway", props: { caller: "api" } }] },
    });
    expect(out.name).toBe("api");
    expect(out.workers_dev).toBe(false);
  });

  it("reads the environments of a real config with wrangler, each under its resolved name (wrangler's resolved config has no env table)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-envs-"));
    try {
      mkdirSync(path.join(dir, "api"));
      writeFileSync(
        path.join(dir, "api", "wrangler.toml"),
        'name = "api"\nmain = "index.js"\ncompatibility_date = "2026-11-01"\n\n[env.v1]\nvars = { VERSION = "v1" }\n\n[env.v2]\nvars = { VERSION = "v2" }\nsecrets = { required = ["NOTIFY_API_KEY"] }\n\n[env.same]\nname = "api"\n\n[env.custom]\nname = "api-next"\n',
      );
      writeFileSync(path.join(dir, "api", "index.js"), "export default { fetch: () => new Response('ok') };\n");
      const { workers, unreadable } = readProjectWorkers(await loadWrangler(), dir);
      expect(unreadable).toEqual([]);
      expect(workers.map((w) => [w.name, w.env, w.environments, w.requiredSecrets])).toEqual([
        ["api", undefined, ["v1", "v2", "same", "custom"], []],
        ["api-v1", "v1", [], []],
        ["api-v2", "v2", [], ["NOTIFY_API_KEY"]],
        // [env.same] would deploy over the top-level worker: left out.
        ["api-next", "custom", [], []],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
