/**
 * The webhook step of the chain: on a route with `webhook` settings, a provider's signature over the
 * raw body is verified (shared/webhooks.ts), the delivery is recorded so a replay inside the
 * tolerance window is refused, and only then does the request continue, with the verified scheme
 * and delivery id in `x-weft-webhook-*` headers the backend can trust. Anything else is a 401
 * problem that never reaches the service.
 *
 * Replays are refused mesh-wide: the delivery keys live in one Durable Object per service (through
 * the control plane), not in isolate memory, because a replay can land on any isolate of any data
 * center. One RPC per verified delivery is affordable: webhooks are not the hot path. Only
 * deliveries whose signature verified are recorded, so without the secret nobody can fill the store.
 */
import { verifyWebhookSignature, type WebhookVerdict } from "../../shared/webhooks.ts";
import type { RouteWebhook } from "../../shared/policy-schemas.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { readBounded, withTimeout } from "./bounded.ts";
import type { Step } from "./checks.ts";
import type { HeaderEdits } from "./outbound.ts";
import { env as workerEnv } from "cloudflare:workers";
import { secretsFrom, secretValues, type SecretSource } from "./egress-credentials.ts";

/** Webhook bodies are buffered to verify them; providers send far less (Stripe caps events at 512 KiB). */
export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;
export { WEBHOOK_ID_HEADER, WEBHOOK_SCHEME_HEADER } from "./identity.ts";
import { WEBHOOK_ID_HEADER, WEBHOOK_SCHEME_HEADER } from "./identity.ts";
// Providers wait 10-30 s for an answer; a cold replay shard can take a couple of seconds to start.
const REPLAY_TIMEOUT_MS = 5_000;

/** Records a delivery key for `ttlSeconds`; "replay" if it was already recorded. */
export interface ReplayGuard {
  claim(key: string, ttlSeconds: number): Promise<"first" | "replay" | "full">;
}

/** The replay guard of `service`: its shard of the control plane's delivery store. */
export function controlPlaneReplayGuard(controlPlane: ControlPlaneApi, service: string): ReplayGuard {
  return { claim: (key, ttlSeconds) => controlPlane.claimWebhookDelivery(service, key, ttlSeconds) };
}

function refusal(status: number, slug: string, title: string, detail: string, scheme: string): { kind: "stop"; response: Response } {
  console.log(JSON.stringify({ event: "webhook-refused", level: "warn", scheme, reason: slug, detail }));
  return { kind: "stop", response: problemResponse(status, slug, title, { detail, scheme }) };
}

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Verifies one webhook delivery against the route's settings. `now` is ms since the epoch. On
 * success the request to forward carries the same body bytes and the verified `x-weft-webhook-*`
 * headers (any the sender set are replaced).
 */
export async function verifyWebhook(settings: RouteWebhook, request: Request, secrets: SecretSource, now: number, replay: ReplayGuard): Promise<Step<Request>> {
  const scheme = settings.scheme;
  if (Number(request.headers.get("content-length") ?? 0) > MAX_WEBHOOK_BODY_BYTES) {
    await request.body?.cancel();
    return refusal(413, "too-large", "Webhook body too large", `webhook bodies are limited to ${MAX_WEBHOOK_BODY_BYTES} bytes`, scheme);
  }
  const values = secretValues(secrets, settings.secret);
  if (values.length === 0) {
    await request.body?.cancel();
    // The operator's problem, not the sender's: a 503 makes providers retry once the secret is set.
    const names = typeof settings.secret === "string" ? [settings.secret] : settings.secret;
    return refusal(503, "webhook-secret-missing", "Webhook secret not set", `set the secret ${names.join(" or ")} on this proxy`, scheme);
  }
  const body = await readBounded(request.body, MAX_WEBHOOK_BODY_BYTES);
  if (body === "too-large") return refusal(413, "too-large", "Webhook body too large", `webhook bodies are limited to ${MAX_WEBHOOK_BODY_BYTES} bytes`, scheme);
  const bytes = new Uint8Array(body);
  const verdict: WebhookVerdict = await verifyWebhookSignature(
    {
      scheme,
      toleranceSeconds: settings.toleranceSeconds,
      ...(settings.signatureHeader ? { signatureHeader: settings.signatureHeader } : {}),
      ...(settings.idHeader ? { idHeader: settings.idHeader } : {}),
    },
    request.headers,
    bytes,
    values,
    now,
  );
  if (verdict.kind === "refused") return refusal(401, "webhook-unverified", "Webhook signature not verified", verdict.reason, scheme);

  let claim: "first" | "replay" | "full" | Error;
  try {
    claim = await withTimeout(replay.claim(await sha256Hex(verdict.replayKey), settings.toleranceSeconds), REPLAY_TIMEOUT_MS, "webhook replay store");
  } catch (error) {
    claim = error instanceof Error ? error : new Error(String(error));
  }
  // Fail closed: a delivery that cannot be recorded could be replayed; providers retry a 503.
  if (claim instanceof Error) return refusal(503, "webhook-replay-unavailable", "Webhook replay store unavailable", "the delivery could not be recorded; retry later", scheme);
  if (claim === "full") return refusal(503, "webhook-replay-unavailable", "Webhook replay store full", "too many deliveries inside the tolerance window; retry later", scheme);
  if (claim === "replay") return refusal(401, "webhook-replayed", "Webhook delivery replayed", "this delivery was already received inside the tolerance window", scheme);

  const headers = new Headers(request.headers);
  headers.set(WEBHOOK_SCHEME_HEADER, scheme);
  if (verdict.id !== undefined) headers.set(WEBHOOK_ID_HEADER, verdict.id);
  else headers.delete(WEBHOOK_ID_HEADER);
  return { kind: "continue", value: new Request(request.url, { method: request.method, headers, body: request.method === "GET" || request.method === "HEAD" ? null : body, redirect: "manual" }) };
}

/**
 * The chain step on a webhook route: the delivery is verified, and the step continues with the
 * verified body (to forward as read) and the verified `x-weft-webhook-*` headers set in `edits`.
 * On every other route those headers never reach a backend: the identity step strips them from the
 * internet and from worker code alike (see identityEdits).
 */
export async function webhookStep(
  settings: RouteWebhook,
  request: Request,
  edits: HeaderEdits,
  verification: { secrets: SecretSource; replay: ReplayGuard },
): Promise<Step<ArrayBuffer>> {
  const step = await verifyWebhook(settings, request, verification.secrets, Date.now(), verification.replay);
  if (step.kind === "stop") return step;
  for (const name of [WEBHOOK_SCHEME_HEADER, WEBHOOK_ID_HEADER]) {
    const value = step.value.headers.get(name);
    if (value !== null) edits.set(name, value);
    else edits.remove(name);
  }
  return { kind: "continue", value: await step.value.arrayBuffer() };
}

/** This proxy's secrets and its service's replay store, for {@link webhookStep}. */
export function webhookVerification(controlPlane: ControlPlaneApi, service: string): { secrets: SecretSource; replay: ReplayGuard } {
  return { secrets: secretsFrom(workerEnv), replay: controlPlaneReplayGuard(controlPlane, service) };
}
