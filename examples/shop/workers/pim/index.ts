/**
 * pim: the product catalog. Deployed three times (weft-pim-v1, weft-pim-v2, weft-pim-v3) from this
 * one module; the mesh splits traffic between them, so every answer says which version produced it.
 *
 * v3 is the demo's deliberately bad release, as Istio's bookinfo and Linkerd's emojivoto ship one:
 * it answers 503 to about a third of requests and is slower, so canaries, outlier ejection and
 * rollbacks can be shown on real failures, not only injected ones. It has weight 0 in the shipped
 * config; give it traffic to watch the mesh contain it.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { problemResponse } from "../../../../shared/problem.ts";
import { methodNotAllowed, notFound, serviceErrors } from "../../../../shared/service-errors.ts";
import { findProduct, listProducts } from "./catalog.ts";
import type { PimVersion } from "./catalog.ts";

type App = { Bindings: PimEnv };

// The mesh may move a shopper between versions at any time, so no cache may keep an answer.
const NO_STORE = { "cache-control": "no-store" };

const app = new Hono<App>();

/** The backend's version, or a 500 when deployed without `--env v1|v2|v3`. */
function withVersion(c: Context<App>, respond: (version: PimVersion) => Response): Response {
  const version = c.env.PIM_VERSION;
  if (version !== "v1" && version !== "v2" && version !== "v3") {
    return problemResponse(500, "misconfigured", "pim version not configured", {
      detail: "deploy pim with --env v1, --env v2 or --env v3 so PIM_VERSION is set",
    });
  }
  return respond(version);
}

/** Share of v3's answers that fail, and how much slower it is than v1/v2. */
const V3_FAILURE_RATE = 1 / 3;
const V3_EXTRA_MS = { min: 20, max: 80 };

// The bad release: slower on every request, and a third of them fail as an overloaded backend would.
app.use("*", async (c, next) => {
  if (c.env.PIM_VERSION !== "v3") return next();
  await new Promise((resolve) => setTimeout(resolve, V3_EXTRA_MS.min + Math.random() * (V3_EXTRA_MS.max - V3_EXTRA_MS.min)));
  if (Math.random() < V3_FAILURE_RATE) {
    c.res = problemResponse(503, "overloaded", "pim v3 is overloaded", { detail: "the demo's bad release fails about a third of its requests" }, { "retry-after": "1" });
    return;
  }
  return next();
});

app.get("/products", (c) =>
  withVersion(c, (version) => c.json({ products: listProducts(version), version }, 200, NO_STORE)),
);

app.get("/products/:sku", (c) =>
  withVersion(c, (version) => {
    const sku = c.req.param("sku");
    const product = findProduct(sku, version);
    if (!product) {
      return problemResponse(404, "not-found", "Unknown product", {
        detail: `no product with sku '${sku}'`,
        instance: c.req.path,
        sku,
      });
    }
    return c.json(product, 200, NO_STORE);
  }),
);

// Registered after the GET handlers, so only other methods reach it (Hono answers HEAD with GET's handler).
app.all("/products", methodNotAllowed("GET, HEAD"));
app.all("/products/:sku", methodNotAllowed("GET, HEAD"));

app.notFound(notFound);
app.onError(serviceErrors("pim"));

export default app;
