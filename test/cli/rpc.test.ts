/**
 * Workers RPC through the mesh, on a project Weft did not write (test/fixtures/projects/rpc: a web
 * worker calling a users WorkerEntrypoint): every call shape answers through the proxy exactly as
 * without it; then a policy refusing one method to web, and a split between two versions of users,
 * apply to RPC calls; metrics count each method's calls with the caller.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ManifestInput } from "../../cli/manifest/schema.ts";
import { startWithoutWeft } from "../../cli/project/dev.ts";
import { loadWrangler } from "../../cli/project/workers.ts";
import { ROOT } from "../../scripts/deployments.ts";
import { spawnWeft, weft, type LiveWeft } from "./run.ts";

const FIXTURE = path.join(ROOT, "test", "fixtures", "projects", "rpc");

let dir: string;

/** One span as the proxies export it over OTLP/HTTP JSON, with its service. */
interface CollectedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: Record<string, string>;
}

/** A local OTLP collector: every span the proxies export. */
const collected: CollectedSpan[] = [];
let collector: Server;

function collect(body: string): void {
  type Attr = { key: string; value: { stringValue?: string; intValue?: string } };
  const parsed = JSON.parse(body) as {
    resourceSpans: Array<{ resource: { attributes: Attr[] }; scopeSpans: Array<{ spans: Array<Omit<CollectedSpan, "service" | "attributes"> & { attributes: Attr[] }> }> }>;
  };
  const flat = (attrs: Attr[]): Record<string, string> => Object.fromEntries(attrs.map((a) => [a.key, a.value.stringValue ?? a.value.intValue ?? ""]));
  for (const rs of parsed.resourceSpans) {
    const service = flat(rs.resource.attributes)["service.name"] ?? "";
    for (const ss of rs.scopeSpans) for (const span of ss.spans) collected.push({ ...span, service, attributes: flat(span.attributes) });
  }
}

/** Opens a WebSocket to `base`/ws, sends each message and collects the answers in order. */
async function echoes(base: string, messages: ReadonlyArray<string>): Promise<string[]> {
  const socket = new WebSocket(new URL("/ws", base).href.replace(/^http/, "ws"));
  const answers: string[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => {
      for (const m of messages) socket.send(m);
    });
    socket.addEventListener("message", (event) => {
      answers.push(String(event.data));
      if (answers.length === messages.length) resolve();
    });
    socket.addEventListener("error", () => reject(new Error(`WebSocket to ${base} failed`)));
  });
  socket.close();
  return answers;
}

/** web and users as they run without Weft: the page, and a WebSocket's echoes. */
async function withoutWeft(): Promise<{ page: unknown; echoes: string[] }> {
  const project = await startWithoutWeft({ wrangler: await loadWrangler(), configs: ["web/wrangler.jsonc", "users/wrangler.toml"].map((w) => path.join(dir, w)), host: "127.0.0.1" });
  try {
    return { page: await (await fetch(project.url)).json(), echoes: await echoes(project.url, ["one", "two"]) };
  } finally {
    await project.dispose();
  }
}

beforeAll(async () => {
  collector = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      collect(body);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
  const { port } = collector.address() as AddressInfo;
  dir = mkdtempSync(path.join(tmpdir(), "weft-rpc-"));
  cpSync(FIXTURE, dir, { recursive: true });
  symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  const init = await weft(["init", "--yes", "--json"], { cwd: dir });
  expect(init.code, init.stderr).toBe(0);
  // The user's edit after init: users-v2 is the next release of users, not a service of its own.
  const file = path.join(dir, "weft.manifest.json");
  const manifest = JSON.parse(readFileSync(file, "utf8")) as ManifestInput;
  manifest.services = manifest.services.filter((s) => s.name !== "users-v2");
  const users = manifest.services.find((s) => s.name === "users");
  if (!users) throw new Error("init made no users service");
  // Without "entrypoints": its proxy has no binding to users-v2's Admin (a test below shows the refusal).
  users.backends.push({ name: "users-v2", type: "worker", binding: "USERS_V2", script: "users-v2" });
  users.routes = [{ name: "all", match: { path: "/*" }, split: { weights: { users: 100, "users-v2": 0 } } }];
  // Names web reads as properties, not calls (the proxy cannot tell them apart by itself): init
  // learnt them from users' exports (the getters of its default class and of Admin).
  expect(users.proxy?.rpcProperties).toEqual(["Admin.flags", "version"]);
  // web's second binding to users goes through an edge service first: edge's proxy relays to users' proxy.
  const web = manifest.services.find((s) => s.name === "web")?.backends[0];
  if (web?.type !== "worker" || !web.calls) throw new Error("init made no web service with calls");
  web.calls.USERS_EDGE = "edge";
  manifest.services.push({
    name: "edge",
    backends: [{ name: "users", type: "mesh", service: "users", binding: "USERS_MESH" }],
    routes: [{ name: "all", match: { path: "/*" }, split: { weights: { users: 100 } } }],
  });
  // Every call traced, spans to the collector above.
  manifest.proxy = { ...manifest.proxy, vars: { WEFT_TRACE_SAMPLE_RATE: "1", WEFT_OTLP_ENDPOINT: `http://127.0.0.1:${port}/v1/traces` } };
  writeFileSync(file, JSON.stringify(manifest, null, 2));
}, 60_000);

afterAll(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  await new Promise((resolve) => collector.close(resolve));
});

describe("Workers RPC through the mesh", () => {
  let dev: LiveWeft;
  let urls: { url: string; admin: string; rewired: string[] };
  let without: { page: unknown; echoes: string[] };
  let token: string;

  beforeAll(async () => {
    without = await withoutWeft();
    dev = spawnWeft(["dev", "--json"], { cwd: dir, env: { WEFT_PORT: "0", WEFT_ADMIN_PORT: "0", WEFT_DEBUG_HEADERS: "false" } });
    await dev.waitFor(/"url":/, "stdout", 60_000);
    urls = JSON.parse(dev.stdout()) as typeof urls;
    token = readFileSync(path.join(dir, ".weft", "admin-token"), "utf8").trim();
  }, 90_000);
  afterAll(async () => {
    if (dev) expect(await dev.interrupt()).toBe(0);
  });

  it("passes a WebSocket through both proxies (web's, then users'), answering as without Weft", async () => {
    expect(without.echoes).toEqual(["users v1 echoes one", "users v1 echoes two"]);
    expect(await echoes(urls.url, ["one", "two"])).toEqual(without.echoes);
  });

  it("routes web's RPC binding through users' proxy", () => {
    expect(urls.rewired).toEqual([
      "web.USERS → weft-proxy-users (caller web)",
      "web.USERS_EDGE → weft-proxy-edge (caller web)",
      "web.USERS_ADMIN → weft-proxy-users (caller web, entrypoint Admin)",
    ]);
  });

  it("answers every call shape exactly as without Weft: values, RpcTarget stubs, callbacks, streams, thrown errors, fetch, scheduled", async () => {
    const through: unknown = await (await fetch(urls.url)).json();
    expect(through).toEqual(without.page);
    // What "exactly" covers, spelled out:
    expect(through).toMatchObject({
      user: { id: "u1", name: "Ada", version: "v1" },
      sum: 12,
      bytes: [7, 7, 7],
      date: "1970-01-01T00:00:00.000Z",
      counter: 15,
      callback: 42,
      stream: "abc",
      thrown: { error: "Error: no such user" },
      typeError: { error: "TypeError: id must be a string" },
      http: "users v1 ok",
      scheduled: "*/5 * * * *",
      admin: { deleted: "u1" },
      named: { purged: "u1", by: "Admin" },
      namedHttp: "admin /status",
      version: "v1",
      flags: ["maintenance-off"],
    });
  });

  it("makes a known number of ok and failing calls (counted at the end)", async () => {
    // Here, before later tests change routes and inject faults: every call reaches users v1.
    const tally = (await (await fetch(`${urls.url}/tally?ok=7&fail=3`)).json()) as { answered: number; thrown: number };
    expect(tally).toEqual({ answered: 7, thrown: 3 });
  });

  it("relays RPC calls between proxies with their trace context: the next proxy's span continues the relaying proxy's trace", async () => {
    const answer = (await (await fetch(`${urls.url}/edge`)).json()) as Record<string, unknown>;
    expect(answer).toEqual({ user: { id: "u2", name: "Ada", version: "v1" }, admin: { deleted: "u2" } });
    // Spans leave each proxy about once a second.
    const find = (): { edge: CollectedSpan | undefined; users: CollectedSpan | undefined } => {
      const edge = collected.find((s) => s.service === "edge" && s.name === "RPC getUser");
      return { edge, users: edge ? collected.find((s) => s.service === "users" && s.name === "RPC getUser" && s.traceId === edge.traceId) : undefined };
    };
    for (let i = 0; i < 40 && !find().users; i++) await new Promise((r) => setTimeout(r, 250));
    const { edge, users } = find();
    // edge's span: called by web's code, which RPC gives no way to pass its trace: a new trace there.
    expect(edge?.parentSpanId).toBeUndefined();
    expect(edge).toMatchObject({ attributes: { "rpc.system": "cloudflare_workers_rpc", "rpc.method": "getUser", "weft.rpc.outcome": "ok", "weft.caller": "web", "weft.backend": "users" } });
    // users' span: relayed by edge's proxy, so the same trace, parented to edge's span.
    expect(users).toMatchObject({ traceId: edge?.traceId, parentSpanId: edge?.spanId, attributes: { "rpc.method": "getUser", "weft.caller": "edge", "weft.backend": "users" } });
    // A failing call's span names the error.
    const failed = collected.find((s) => s.service === "users" && s.name === "RPC failType");
    expect(failed?.attributes).toMatchObject({ "weft.rpc.outcome": "error", "error.type": "TypeError" });
  });

  it("applies the service's policy per method: a refused call throws in the caller, saying why", async () => {
    const file = path.join(dir, "policy.json");
    const current = (await (await fetch(`${urls.admin}/admin/config`, { headers: { authorization: `Bearer ${token}` } })).json()) as { version: number; services: Array<{ name: string; policy?: unknown }> };
    const users = current.services.find((s) => s.name === "users");
    if (!users) throw new Error("no users service");
    users.policy = { allow: [{ from: ["web"] }], deny: [{ from: ["web"], rpc: ["delete*", "Admin.purge"] }] };
    const { version: _version, ...config } = current;
    writeFileSync(file, JSON.stringify(config));
    const applied = await weft(["apply", "-f", file, "--yes"], { cwd: dir });
    expect(applied.code, applied.stderr).toBe(0);
    let answer: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) {
      answer = (await (await fetch(urls.url)).json()) as Record<string, unknown>;
      if (typeof answer.admin === "object" && answer.admin !== null && "error" in answer.admin) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(answer.admin).toEqual({ error: "Error: weft: 'web' may not call deleteUser() on service 'users' (deny-rule)" });
    expect(answer.user).toMatchObject({ id: "u1" });
    // A named entrypoint's methods are Entrypoint.method to policies: purge refused, its fetch not.
    expect(answer.named).toEqual({ error: "Error: weft: 'web' may not call Admin.purge() on service 'users' (deny-rule)" });
    expect(answer.namedHttp).toBe("admin /status");
    // Through edge, the call is still web's (the relayed origin): allowed where edge itself is not, refused where web is.
    const relayed = (await (await fetch(`${urls.url}/edge`)).json()) as Record<string, unknown>;
    expect(relayed).toEqual({ user: { id: "u2", name: "Ada", version: "v1" }, admin: { error: "Error: weft: 'web' may not call deleteUser() on service 'users' (deny-rule)" } });
  });

  it("splits RPC calls between two versions in the configured proportion", async () => {
    const split = await weft(["split", "users", "users=50", "users-v2=50"], { cwd: dir });
    expect(split.code, split.stderr).toBe(0);
    // Wait for the new split to reach the proxy, then count 200 calls.
    for (let i = 0; i < 40; i++) {
      const user = ((await (await fetch(`${urls.url}/user`)).json()) as { user: { version: string } }).user;
      if (user.version === "v2") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const versions = { v1: 0, v2: 0 };
    for (let i = 0; i < 200; i++) {
      const { user } = (await (await fetch(`${urls.url}/user`)).json()) as { user: { version: "v1" | "v2" } };
      versions[user.version]++;
    }
    // 50/50 of 200: outside 70..130 happens with probability < 2e-5.
    expect(versions.v1).toBeGreaterThan(70);
    expect(versions.v2).toBeGreaterThan(70);
  });

  it("refuses a named entrypoint's call on a backend whose proxy has no binding to it, saying how to add one", async () => {
    const split = await weft(["split", "users", "users=0", "users-v2=100"], { cwd: dir });
    expect(split.code, split.stderr).toBe(0);
    let answer: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) {
      answer = (await (await fetch(urls.url)).json()) as Record<string, unknown>;
      if (JSON.stringify(answer.user).includes('"v2"')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(answer.user).toMatchObject({ version: "v2" });
    expect(answer.namedHttp).toEqual({
      error: `Error: weft: backend 'users-v2' of service 'users' has no binding USERS_V2__Admin to its entrypoint Admin: list "Admin" in the "entrypoints" of backend 'users-v2' in weft.manifest.json (weft dev, weft generate and weft deploy then bind it)`,
    });
  });

  it("retries and fails over only methods the route marks idempotent; a timeout bounds every call", async () => {
    const current = (await (await fetch(`${urls.admin}/admin/config`, { headers: { authorization: `Bearer ${token}` } })).json()) as { version: number; services: Array<{ name: string; routes: unknown[] }> };
    const users = current.services.find((s) => s.name === "users");
    if (!users) throw new Error("no users service");
    const only = { weights: { users: 100, "users-v2": 0 } };
    users.routes = [
      { name: "flaky-once", match: { rpc: "flaky" }, split: only, retries: { attempts: 2 }, idempotent: false },
      { name: "slow", match: { rpc: "slow" }, split: only, timeoutMs: 100 },
      ...users.routes,
    ];
    const { version: _version, ...config } = current;
    const file = path.join(dir, "resilience.json");
    writeFileSync(file, JSON.stringify(config));
    expect((await weft(["apply", "-f", file, "--yes"], { cwd: dir })).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1_500));
    // Not idempotent: the failure is the caller's, even with retries configured.
    const once = (await (await fetch(`${urls.url}/resilience?key=a`)).json()) as Record<string, unknown>;
    expect(once.flaky).toEqual({ error: "Error: flaky a failed once" });
    expect(once.slow).toEqual({ error: "Error: weft: backend 'users' of service 'users' did not answer slow() within 100 ms" });
    // Marked idempotent: the failed first call is made again and succeeds.
    users.routes[0] = { name: "flaky", match: { rpc: "flaky" }, split: only, retries: { attempts: 2 }, idempotent: true };
    writeFileSync(file, JSON.stringify(config));
    expect((await weft(["apply", "-f", file, "--yes"], { cwd: dir })).code).toBe(0);
    let again: Record<string, unknown> = {};
    for (let i = 0; i < 20; i++) {
      again = (await (await fetch(`${urls.url}/resilience?key=b${i}`)).json()) as Record<string, unknown>;
      if (typeof again.flaky === "object" && again.flaky !== null && "calls" in again.flaky) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(again.flaky).toMatchObject({ calls: 2 });
  });

  it("applies rate limits keyed by the caller, and injects rehearsal faults, on RPC calls", async () => {
    const current = (await (await fetch(`${urls.admin}/admin/config`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
      version: number;
      services: Array<{ name: string; routes: unknown[]; rateLimits?: unknown[]; faults?: unknown[] }>;
    };
    const users = current.services.find((s) => s.name === "users");
    if (!users) throw new Error("no users service");
    users.routes = [
      { name: "sum", match: { rpc: "sum" }, split: { weights: { users: 100, "users-v2": 0 } } },
      { name: "echo", match: { rpc: "echo" }, split: { weights: { users: 0, "users-v2": 100 } } },
      ...users.routes,
    ];
    users.rateLimits = [{ name: "sums", key: "caller", limit: 3, periodSeconds: 3600, routes: ["sum"] }];
    users.faults = [{ backend: "users-v2", abort: { percent: 100, status: 503 } }];
    const { version: _version, ...config } = current;
    const file = path.join(dir, "limits.json");
    writeFileSync(file, JSON.stringify(config));
    expect((await weft(["apply", "-f", file, "--yes"], { cwd: dir })).code).toBe(0);
    for (let i = 0; i < 20; i++) {
      const probe = (await (await fetch(`${urls.url}/sum`)).json()) as Record<string, unknown>;
      if (typeof probe.echo === "object" && probe.echo !== null && "error" in probe.echo) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const answers: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 5; i++) answers.push((await (await fetch(`${urls.url}/sum`)).json()) as Record<string, unknown>);
    const limited = answers.filter((a) => typeof a.sum === "object" && a.sum !== null && /over a rate limit of service 'users' for sum\(\)/.test(JSON.stringify(a.sum)));
    // 3 per hour for web: the probe above took at least one, so at most 2 of these 5 pass.
    expect(answers.filter((a) => a.sum === 3).length).toBeLessThanOrEqual(2);
    expect(limited.length).toBeGreaterThanOrEqual(3);
    expect(answers.every((a) => JSON.stringify(a.echo) === JSON.stringify({ error: "Error: weft: injected fault on backend 'users-v2' (rehearsal)" }))).toBe(true);
  });

  it("counts each method's calls with the caller, outcome and error name; refusals as 403", async () => {
    let metrics = "";
    /** The sum of `weft_requests_total` of users' series for `route` from web whose remaining labels are `rest` exactly. */
    const count = (route: string, rest: string): number =>
      [...metrics.matchAll(new RegExp(`weft_requests_total\\{service="users",route="${route}",backend="[^"]*",caller="web",${rest}\\} (\\d+)`, "g"))].reduce((n, m) => n + Number(m[1]), 0);
    const histogramCount = (route: string, rest: string): number =>
      [...metrics.matchAll(new RegExp(`weft_request_duration_seconds_count\\{service="users",route="${route}",backend="[^"]*",caller="web",${rest}\\} (\\d+)`, "g"))].reduce((n, m) => n + Number(m[1]), 0);
    // Proxies send their counts about once a second: wait for the last calls to arrive.
    for (let i = 0; i < 40; i++) {
      metrics = await (await fetch(`${urls.admin}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      if (count("getUser", 'code="200",outcome="ok"') >= 200 && count("tally", 'code="200",outcome="ok"') + count("tally", 'code="500",outcome="error",error="RangeError"') >= 10) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    // Exactly the calls made: 7 answered, 3 thrown as RangeError, nothing else on that method.
    expect(count("tally", 'code="200",outcome="ok"')).toBe(7);
    expect(count("tally", 'code="500",outcome="error",error="RangeError"')).toBe(3);
    expect(count("tally", '[^}]*')).toBe(10);
    expect(histogramCount("tally", 'outcome="ok"')).toBe(7);
    expect(histogramCount("tally", 'outcome="error",error="RangeError"')).toBe(3);
    // The earlier scenarios: thrown errors by type, refusals by the mesh as 403 Errors.
    expect(count("sum", 'code="200",outcome="ok"')).toBeGreaterThanOrEqual(2);
    expect(count("fail", 'code="500",outcome="error",error="Error"')).toBeGreaterThanOrEqual(2);
    expect(count("failType", 'code="500",outcome="error",error="TypeError"')).toBeGreaterThanOrEqual(2);
    expect(count("deleteUser", 'code="403",outcome="error",error="Error"')).toBeGreaterThanOrEqual(1);
    expect(count("getUser", 'code="200",outcome="ok"')).toBeGreaterThanOrEqual(200);
    // A named entrypoint's calls pass the proxy too, as Entrypoint.method.
    expect(count("Admin\\.purge", 'code="200",outcome="ok"')).toBeGreaterThanOrEqual(1);
    expect(count("Admin\\.purge", 'code="403",outcome="error",error="Error"')).toBeGreaterThanOrEqual(1);
    expect(count("Admin\\.fetch", 'code="200",outcome="ok"')).toBeGreaterThanOrEqual(2);
    // Property reads are counted like calls.
    expect(count("version", 'code="200",outcome="ok"')).toBeGreaterThanOrEqual(2);
    expect(count("Admin\\.flags", 'code="200",outcome="ok"')).toBeGreaterThanOrEqual(2);
    // HTTP calls on the same service keep their old labels: no outcome on them.
    expect(metrics).toMatch(/weft_requests_total\{service="users",route="all",backend="users",caller="web",code="200"\} \d+/);
  });
});
