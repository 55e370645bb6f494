/**
 * The admin API (`/admin/*`): read and change the mesh config. Shape errors are answered here (400
 * malformed JSON, 422 with zod issues); whole-config checks and optimistic concurrency run inside the
 * ConfigStore, atomically with the write, so a refused request changes nothing.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { FaultsUpdate, MeshConfig, Name, Policy, RateLimitsUpdate, RollbackRequest, ServiceResilience, SplitUpdate, normalizeService } from "../../shared/config.ts";
import { rateCounterOf } from "../../durable-objects/rate-counter.ts";
import { resilienceView } from "../../shared/views.ts";
import { readBody } from "../../shared/body.ts";
import { problemResponse } from "../../shared/problem.ts";
import { configStoreOf, type WriteResult } from "../../durable-objects/config-store.ts";
import { requireAdminToken } from "./auth.ts";
import { keysAdminApi } from "./keys.ts";

const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** `"12"` → 12. `*` or no header → undefined (no precondition); anything unparsable never matches. */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === "*") return undefined;
  const match = /^\s*(?:W\/)?"(\d+)"/.exec(header);
  return match?.[1] ? Number(match[1]) : -1;
}

function etag(version: number): string {
  return `"${version}"`;
}

function serviceNameOrProblem(name: string): Response | undefined {
  return Name.safeParse(name).success
    ? undefined
    : problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
}

/** Turns a refused write into its problem response. */
function refusal(result: Exclude<WriteResult<unknown>, { ok: true }>): Response {
  switch (result.reason) {
    case "invalid":
      return problemResponse(422, "invalid-config", "Configuration refused", {
        detail: result.issues.map((i) => i.message).join("; "),
        issues: result.issues,
      });
    case "stale":
      return problemResponse(
        412,
        "stale-version",
        "Precondition failed",
        { detail: `If-Match does not match the current version ${result.current}; re-read and retry.`, currentVersion: result.current },
        { etag: etag(result.current) },
      );
    case "not-found":
      return problemResponse(404, "not-found", "Not found", { detail: result.detail });
  }
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

  admin.get("/services", async (c) => {
    const services = await configStoreOf(c.env).listServices();
    return c.json({ services });
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

  admin.get("/services/:service/policy", async (c) => {
    const name = c.req.param("service");
    const view = serviceNameOrProblem(name) ? null : await configStoreOf(c.env).readService(name);
    if (!view) return problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
    if (!view.policy) {
      return problemResponse(404, "no-policy", "No policy", { detail: `service '${name}' has no policy: every caller is allowed` });
    }
    c.header("etag", etag(view.version));
    return c.json(view.policy);
  });

  admin.put("/services/:service/policy", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, Policy);
    if (!parsed.ok) return parsed.response;
    const result = await configStoreOf(c.env).setPolicy(name, parsed.value, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(result.value);
  });

  admin.delete("/services/:service/policy", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const result = await configStoreOf(c.env).setPolicy(name, null, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(result.value);
  });

  admin.get("/services/:service/resilience", async (c) => {
    const name = c.req.param("service");
    const view = serviceNameOrProblem(name) ? null : await configStoreOf(c.env).readService(name);
    if (!view) return problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
    c.header("etag", etag(view.version));
    return c.json(resilienceView(view));
  });

  admin.put("/services/:service/resilience", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, ServiceResilience);
    if (!parsed.ok) return parsed.response;
    const result = await configStoreOf(c.env).setResilience(name, parsed.value, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json(resilienceView(result.value));
  });

  admin.get("/services/:service/faults", async (c) => {
    const name = c.req.param("service");
    const view = serviceNameOrProblem(name) ? null : await configStoreOf(c.env).readService(name);
    if (!view) return problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
    c.header("etag", etag(view.version));
    return c.json({ faults: view.faults });
  });

  admin.put("/services/:service/faults", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, FaultsUpdate);
    if (!parsed.ok) return parsed.response;
    const result = await configStoreOf(c.env).setFaults(name, parsed.value.faults, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json({ faults: result.value.faults });
  });

  admin.delete("/services/:service/faults", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const result = await configStoreOf(c.env).setFaults(name, [], parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json({ faults: result.value.faults });
  });

  admin.get("/services/:service/ratelimit", async (c) => {
    const name = c.req.param("service");
    const view = serviceNameOrProblem(name) ? null : await configStoreOf(c.env).readService(name);
    if (!view) return problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
    c.header("etag", etag(view.version));
    return c.json({ limits: view.rateLimits });
  });

  admin.put("/services/:service/ratelimit", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, RateLimitsUpdate);
    if (!parsed.ok) return parsed.response;
    const result = await configStoreOf(c.env).setRateLimits(name, parsed.value.limits, parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json({ limits: result.value.rateLimits });
  });

  admin.delete("/services/:service/ratelimit", async (c) => {
    const name = c.req.param("service");
    const invalid = serviceNameOrProblem(name);
    if (invalid) return invalid;
    const result = await configStoreOf(c.env).setRateLimits(name, [], parseIfMatch(c.req.header("if-match")));
    if (!result.ok) return refusal(result);
    c.header("etag", etag(result.value.version));
    return c.json({ limits: result.value.rateLimits });
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
    const counter = await rateCounterOf(c.env, `${name}/${rule.name ?? ""}/${key}`).read();
    return c.json({ service: name, limit: rule, key, counter: counter.state, leases: counter.leases });
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
    const parsed = await readBody(c.req.raw, MeshConfig);
    if (!parsed.ok) return parsed.response;
    const body = parsed.value;
    const config = { services: body.services.map(normalizeService) };
    const store = configStoreOf(c.env);
    const result = await store.applyConfig(config, parseIfMatch(c.req.header("if-match")), c.req.header("x-weft-reason") ?? "config applied");
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

  return admin;
}
