/**
 * Progressive delivery in the admin API: start a rollout, follow it, pause, resume, abort or
 * promote it. The state machine itself runs in the service's RolloutStore (durable-objects/).
 */
import { Hono } from "hono";
import * as z from "zod";
import { readBody } from "../../shared/body.ts";
import { problemResponse } from "../../shared/problem.ts";
import { checkWebhookUrl, RolloutRequest, type RolloutStatus } from "../../shared/rollout.ts";
import { ROLLOUT_ACTIONS, rolloutStoreOf } from "../../durable-objects/rollout-store.ts";
import { etag, parseIfMatch, refusal, serviceNameOrProblem } from "./write-responses.ts";

/** The optional body of a manual action: why (it goes into the timeline and the webhook). */
const ActionNote = z.strictObject({ reason: z.string().min(1).max(500).optional() });

function withEtag(status: RolloutStatus, code: 200 | 201 = 200): Response {
  return new Response(JSON.stringify(status), {
    status: code,
    headers: { "content-type": "application/json", etag: etag(status.revision), "cache-control": "no-store" },
  });
}

/** `/admin/services/{service}/rollouts...` (mounted under the authenticated `/admin`). */
export function rolloutsApi(): Hono<{ Bindings: ControlPlaneEnv }> {
  const api = new Hono<{ Bindings: ControlPlaneEnv }>();

  api.post("/services/:service/rollouts", async (c) => {
    const service = c.req.param("service");
    const invalid = serviceNameOrProblem(service);
    if (invalid) return invalid;
    const parsed = await readBody(c.req.raw, RolloutRequest);
    if (!parsed.ok) return parsed.response;
    const webhook = parsed.value.webhook;
    const target = webhook ? checkWebhookUrl(webhook.url, c.env.WEFT_ENV === "development") : { ok: true as const };
    if (!target.ok) {
      // The URL is often a secret (chat webhooks): the problem names the reason, never the URL.
      return problemResponse(422, "invalid-request", "Request body is invalid", {
        detail: `webhook.url: ${target.reason}`,
        issues: [{ code: "custom", path: ["webhook", "url"], message: target.reason }],
      });
    }
    const result = await rolloutStoreOf(c.env, service).start(service, parsed.value);
    if (!result.ok) return refusal(result);
    const response = withEtag(result.value, 201);
    response.headers.set("location", `/admin/services/${service}/rollouts/current`);
    return response;
  });

  api.get("/services/:service/rollouts", async (c) => {
    const service = c.req.param("service");
    const invalid = serviceNameOrProblem(service);
    if (invalid) return invalid;
    const limit = Math.min(Math.max(Number(c.req.query("limit") ?? 20) || 20, 1), 100);
    return c.json({ rollouts: await rolloutStoreOf(c.env, service).history(limit) });
  });

  api.get("/services/:service/rollouts/current", async (c) => {
    const service = c.req.param("service");
    const invalid = serviceNameOrProblem(service);
    if (invalid) return invalid;
    const status = await rolloutStoreOf(c.env, service).current();
    if (!status) {
      return problemResponse(404, "no-rollout", "No rollout", {
        detail: `service '${service}' has had no rollout; start one with POST /admin/services/${service}/rollouts`,
      });
    }
    return withEtag(status);
  });

  api.post("/services/:service/rollouts/current/:action", async (c) => {
    const service = c.req.param("service");
    const invalid = serviceNameOrProblem(service);
    if (invalid) return invalid;
    const action = ROLLOUT_ACTIONS.find((a) => a === c.req.param("action"));
    if (!action) {
      return problemResponse(404, "unknown-action", "Unknown action", { detail: `actions are ${ROLLOUT_ACTIONS.join(", ")}` });
    }
    const hasBody = (c.req.header("content-length") ?? "0") !== "0" || c.req.header("transfer-encoding") !== undefined;
    const note = hasBody ? await readBody(c.req.raw, ActionNote) : { ok: true as const, value: {} };
    if (!note.ok) return note.response;
    const ifMatch = parseIfMatch(c.req.header("if-match"));
    const result = await rolloutStoreOf(c.env, service).act(action, ifMatch, note.value.reason);
    if (!result.ok) return refusal(result);
    return withEtag(result.value);
  });

  return api;
}
