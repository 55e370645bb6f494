/**
 * pim: the product catalog. Deployed twice (weft-pim-v1, weft-pim-v2) from this one module; the
 * mesh splits traffic between the two, so every answer says which version produced it.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { problemResponse } from "../../shared/problem.ts";
import { methodNotAllowed, notFound, serviceErrors } from "../../shared/service-errors.ts";
import { findProduct, listProducts } from "./catalog.ts";
import type { PimVersion } from "./catalog.ts";

type App = { Bindings: PimEnv };

// The mesh may move a shopper between versions at any time, so no cache may keep an answer.
const NO_STORE = { "cache-control": "no-store" };

const app = new Hono<App>();

/** The backend's version, or a 500 when deployed without `--env v1|v2`. */
function withVersion(c: Context<App>, respond: (version: PimVersion) => Response): Response {
  const version = c.env.PIM_VERSION;
  if (version !== "v1" && version !== "v2") {
    return problemResponse(500, "misconfigured", "pim version not configured", {
      detail: "deploy pim with --env v1 or --env v2 so PIM_VERSION is set",
    });
  }
  return respond(version);
}

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
