/**
 * The admin API (`/admin/*`): read and change the mesh config. Shape errors are answered here (400
 * malformed JSON, 422 with zod issues); whole-config checks and optimistic concurrency run inside the
 * ConfigStore, atomically with the write, so a refused request changes nothing.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { FaultsUpdate, MeshConfig, Policy, RateLimitsUpdate, RollbackRequest, ServiceResilience, SplitUpdate, normalizeService } from "../../shared/config.ts";
import { rateCounterOf } from "../../durable-objects/rate-counter.ts";
import { counterName } from "../../shared/rate-limit.ts";
import { resilienceView, type ServiceView } from "../../shared/views.ts";
import * as z from "zod";
import { readBody, readQuery } from "../../shared/body.ts";
import { filterOf, ListQuery } from "../../shared/paging.ts";
import { problemResponse } from "../../shared/problem.ts";
import { configStoreOf, type WriteResult } from "../../durable-objects/config-store.ts";
import { configPrecondition, etag, parseIfMatch, refusal, serviceNameOrProblem } from "./write-responses.ts";
import { requireAdminToken } from "./auth.ts";
import { keysAdminApi } from "./keys.ts";
import { observabilityApi } from "./observability.ts";
import { rolloutsApi } from "./rollouts.ts";

const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** `PUT /admin/config`'s body: the config, optionally with the `version` GET /admin/config answered. */
const VersionedConfig = MeshConfig.extend({ version: z.int().min(0).optional() });


type AdminApp = Hono<{ Bindings: ControlPlaneEnv }>;
type Store = ReturnType<typeof configStoreOf>;

/** One per-service setting (policy, resilience, faults, rate limits) and how to read and write it. */
interface ServiceSetting<T> {
  schema: z.ZodType<T>;
  /** The setting as GET and PUT show it, or `{ missing }` when the service has none (GET answers 404). */
  show: (view: ServiceView) => unknown;
  write: (store: Store, service: string, value: T, ifMatch: number | undefined) => Promise<WriteResult<ServiceView>>;
  /** DELETE, for settings that can be removed. */
  clear?: (store: Store, service: string, ifMatch: number | undefined) => Promise<WriteResult<ServiceView>>;
}

function isMissing(shown: unknown): shown is { missing: string } {
  return typeof shown === "object" && shown !== null && "missing" in shown && Object.keys(shown).length === 1;
}

/** `GET`, `PUT` (and `DELETE`) `/admin/services/{service}/<path>`, all with ETag/If-Match. */
function serviceSetting<T>(admin: AdminApp, path: string, setting: ServiceSetting<T>): void {
  admin.get(`/services/:service/${path}`, async (c) => {
    const name = c.req.param("service");
    const view = serviceNameOrProblem(name) ? null : await configStoreOf(c.env).readService(name);
    if (!view) return problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
    const shown = setting.show(view);
    if (isMissing(shown)) return problemResponse(404, `no-${path}`, "Not set", { detail: shown.missing });
    c.header("etag", etag(view.version));
    return c.json(shown);
  });
  admin.put(`/services/:service/${path}`, async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, setting.schema);
    if (!parsed.ok) return parsed.response;
    const result = await setting.write(configStoreOf(c.env), name, parsed.value, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(setting.show(result.value));
  });
  const clear = setting.clear;
  if (!clear) return;
  admin.delete(`/services/:service/${path}`, async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const result = await clear(configStoreOf(c.env), name, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(result.value);
  });
}

/** Builds the `/admin` sub-application. */
export function adminApi(): Hono<{ Bindings: ControlPlaneEnv }> {
  const admin = new Hono<{ Bindings: ControlPlaneEnv }>();
  admin.use("*", requireAdminToken());
  admin.use(
    "*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => problemResponse(413, "too-large", "Request body too large", { detail: `limit is ${MAX_BODY_BYTES} bytes` }),
    }),
  );

  // One page of services in name order (`?limit=`, default 100; `?cursor=` from `next`), filtered
  // by `?service=`, `?names=a,b` or a substring `?q=`. `total` counts every service that matches.
  admin.get("/services", async (c) => {
    const query = readQuery(c.req.raw, ListQuery);
    if (!query.ok) return query.response;
    const page = await configStoreOf(c.env).pageServices(filterOf(query.value), { limit: query.value.limit, after: query.value.cursor });
    return c.json({ services: page.items, total: page.total, next: page.next });
  });

  admin.get("/services/:service", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const view = await configStoreOf(c.env).readService(name);
    if (!view) return problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
    c.header("etag", etag(view.version));
    return c.json(view);
  });

  admin.put("/services/:service/split", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, SplitUpdate);
    if (!parsed.ok) return parsed.response;
    const body = parsed.value;
    const route = c.req.query("route");
    const result = await configStoreOf(c.env).setSplit(name, body, route, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(result.value);
  });

  serviceSetting(admin, "policy", {
    schema: Policy,
    show: (view) => view.policy ?? { missing: `service '${view.name}' has no policy: every caller is allowed` },
    write: (store, name, value, ifMatch) => store.setPolicy(name, value, ifMatch),
    clear: (store, name, ifMatch) => store.setPolicy(name, null, ifMatch),
  });
  serviceSetting(admin, "resilience", {
    schema: ServiceResilience,
    show: resilienceView,
    write: (store, name, value, ifMatch) => store.setResilience(name, value, ifMatch),
  });
  serviceSetting(admin, "faults", {
    schema: FaultsUpdate,
    show: (view) => ({ faults: view.faults }),
    write: (store, name, value, ifMatch) => store.setFaults(name, value.faults, ifMatch),
    clear: (store, name, ifMatch) => store.setFaults(name, [], ifMatch),
  });
  serviceSetting(admin, "ratelimit", {
    schema: RateLimitsUpdate,
    show: (view) => ({ limits: view.rateLimits }),
    write: (store, name, value, ifMatch) => store.setRateLimits(name, value.limits, ifMatch),
    clear: (store, name, ifMatch) => store.setRateLimits(name, [], ifMatch),
  });

  // Live counter of one key: `?limit=<name>&key=<value>` (e.g. the API key being investigated).
  admin.get("/services/:service/ratelimit/counters", async (c) => {
    const name = c.req.param("service");
    const limit = c.req.query("limit");
    const key = c.req.query("key");
    const view = serviceNameOrProblem(name) ? null : await configStoreOf(c.env).readService(name);
    const rule = view?.rateLimits.find((r) => r.name === limit);
    if (!view || !rule || key === undefined) {
      return problemResponse(404, "not-found", "Not found", { detail: "give ?limit=<name of one of the service's limits>&key=<value>" });
    }
    // Counters are stored under a digest of the key, in the limit's shard for that digest.
    const counterKey = counterName(name, rule.name ?? "limit", key);
    const counter = await rateCounterOf(c.env, counterKey).read(counterKey);
    return c.json({ service: name, limit: rule, key, counter: counter.state, leases: counter.leases, expiresAt: counter.expiresAt, shard: counter.shard, keysInShard: counter.keys });
  });

  admin.get("/config", async (c) => {
    const param = c.req.query("version");
    const version = param === undefined ? undefined : Number(param);
    if (version !== undefined && !Number.isInteger(version)) {
      return problemResponse(400, "invalid-request", "Invalid version", { detail: "`version` must be an integer" });
    }
    const found = await configStoreOf(c.env).readConfig(version);
    if (!found) return problemResponse(404, "not-found", "Not found", { detail: `no config version ${param ?? ""}` });
    c.header("etag", etag(found.version));
    return c.json({ version: found.version, ...found.config });
  });

  admin.put("/config", async (c) => {
    // A whole-config write replaces every service: without a precondition it would silently undo
    // whatever changed since the writer last read. The version the writer read comes in If-Match
    // (or as `version` in the body, as GET /admin/config shows it); `If-Match: *` overwrites knowingly.
    const parsed = await readBody(c.req.raw, VersionedConfig);
    if (!parsed.ok) return parsed.response;
    const { version, ...body } = parsed.value;
    const precondition = configPrecondition(c.req.header("if-match"), version);
    if (!precondition.ok) return precondition.response;
    const config = { services: body.services.map(normalizeService) };
    const store = configStoreOf(c.env);
    const result = await store.applyConfig(config, precondition.ifMatch, c.req.header("x-weft-reason") ?? "config applied");
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(result.value);
  });

  admin.get("/config/versions", async (c) => {
    const limit = Math.min(Math.max(Number(c.req.query("limit") ?? 50) || 50, 1), 500);
    const store = configStoreOf(c.env);
    const [current, versions] = await Promise.all([store.version(), store.listVersions(limit)]);
    return c.json({ current, versions });
  });

  admin.post("/config/rollback", async (c) => {
    const parsed = await readBody(c.req.raw, RollbackRequest);
    if (!parsed.ok) return parsed.response;
    const body = parsed.value;
    const result = await configStoreOf(c.env).rollback(body.version, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json({ ...result.value, rolledBackTo: body.version });
  });

  admin.route("/keys", keysAdminApi());
  admin.route("/", observabilityApi());
  admin.route("/", rolloutsApi());

  return admin;
}
