/**
 * The Weft control plane worker: the dashboard at /, admin API under /admin, Prometheus /metrics,
 * JWKS, health, and the RPC entrypoint proxies use to load their config and report telemetry. Its Durable Objects (durable-objects/) are exported from here.
 */
import { Hono } from "hono";
import { problemResponse } from "../../shared/problem.ts";
import { adminApi } from "./admin.ts";
import { requireAdminToken } from "./auth.ts";
import { dashboard } from "./dashboard.ts";
import { jwksApi } from "./keys.ts";
import { prometheusMetrics } from "./observability.ts";

export { ConfigStore } from "../../durable-objects/config-store.ts";
export { SliceStore } from "../../durable-objects/slice-store.ts";
export { JwksRegistry, SigningKeys } from "../../durable-objects/signing-keys.ts";
export { RateCounter } from "../../durable-objects/rate-counter.ts";
export { TelemetryStore } from "../../durable-objects/telemetry-store.ts";
export { TelemetryIndex } from "../../durable-objects/telemetry-index.ts";
export { RolloutStore } from "../../durable-objects/rollout-store.ts";
export { ConfigService } from "./config-service.ts";
export { VendorTokens, WebhookDeliveries } from "../../durable-objects/vendors.ts";

const app = new Hono<{ Bindings: ControlPlaneEnv }>();

app.get("/", dashboard);
app.get("/healthz", (c) => c.json({ ok: true }));
app.route("/admin", adminApi());
app.route("/.well-known", jwksApi());
app.get("/metrics", requireAdminToken(), prometheusMetrics);

app.notFound((c) => problemResponse(404, "not-found", "Not found", { detail: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }));
app.onError((error) => {
  // The message may name internals but never secrets: tokens are compared, not printed.
  console.error("weft control plane error:", error instanceof Error ? error.message : String(error));
  return problemResponse(503, "control-plane-error", "Control plane error", {
    detail: "The request could not be completed; nothing was changed unless a response said so. Retry shortly.",
  });
});

export default app satisfies ExportedHandler<ControlPlaneEnv>;
