/**
 * storefront: the shop page and the JSON API its script calls (a backend for the frontend). Every
 * call to pim, cart and orders goes through their mesh proxies on behalf of the shopper.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import * as z from "zod";
import { notFound, serviceErrors } from "../../shared/service-errors.ts";
import { readBody } from "../../shared/body.ts";
import { fetchProducts } from "./catalog.ts";
import { meshFetch, traceFrom } from "../../shared/mesh-client.ts";
import { renderPage } from "./page.ts";
import { relay } from "./relay.ts";
import { shopper } from "./shopper.ts";
import type { Shopper } from "./shopper.ts";

type App = { Bindings: StorefrontEnv; Variables: { shopper: Shopper } };

const AddItem = z.object({
  sku: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '.', '_' or '-'"),
  qty: z.int().min(1).max(99),
});

/** Headers of a call on the shopper's behalf: their cookie and this request's trace context. */
function onBehalf(c: Context<App>, extra: Record<string, string> = {}): Record<string, string> {
  return { ...traceFrom(c.req.raw), cookie: c.var.shopper.cookie, ...extra };
}

function cartPath(c: Context<App>, rest = ""): string {
  return `/cart/${encodeURIComponent(c.var.shopper.id)}${rest}`;
}

const app = new Hono<App>();

app.get("/healthz", (c) => c.json({ ok: true }, 200, { "cache-control": "no-store" }));

app.use("/", shopper());
app.use("/api/*", shopper());

app.get("/", async (c) => {
  const list = await fetchProducts(c.env.PIM, onBehalf(c));
  const nonce = crypto.randomUUID();
  return c.html(renderPage(list, c.var.shopper.id, nonce), 200, {
    "cache-control": "no-store",
    "content-security-policy": `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
  });
});

app.get("/api/products", async (c) =>
  relay(await meshFetch(c.env.PIM, "pim", "/products", { headers: onBehalf(c) }), "pim"),
);

app.get("/api/cart", async (c) =>
  relay(await meshFetch(c.env.CART, "cart", cartPath(c), { headers: onBehalf(c) }), "cart"),
);

app.post("/api/cart/items", async (c) => {
  const body = await readBody(c.req.raw, AddItem);
  if (!body.ok) return body.response;
  const res = await meshFetch(c.env.CART, "cart", cartPath(c, "/items"), {
    method: "POST",
    headers: onBehalf(c, { "content-type": "application/json" }),
    body: JSON.stringify(body.value),
  });
  return relay(res, "cart");
});

app.delete("/api/cart/items/:sku", async (c) => {
  const path = cartPath(c, `/items/${encodeURIComponent(c.req.param("sku"))}`);
  return relay(await meshFetch(c.env.CART, "cart", path, { method: "DELETE", headers: onBehalf(c) }), "cart");
});

app.post("/api/orders", async (c) => {
  const headers = onBehalf(c, { "content-type": "application/json" });
  const key = c.req.header("idempotency-key");
  if (key !== undefined) headers["idempotency-key"] = key;
  const res = await meshFetch(c.env.ORDERS, "orders", "/orders", {
    method: "POST",
    headers,
    body: JSON.stringify({ cartId: c.var.shopper.id }),
  });
  return relay(res, "orders");
});

app.notFound(notFound);

app.onError(serviceErrors("storefront"));

export default app;
