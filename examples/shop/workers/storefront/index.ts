/**
 * storefront: the shop page and the JSON API its script calls (a backend for the frontend). Every
 * call to pim, cart and orders goes through their mesh proxies on behalf of the shopper.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import * as z from "zod";
import { notFound, serviceErrors } from "../../../../shared/service-errors.ts";
import { problemResponse } from "../../../../shared/problem.ts";
import { readBody } from "../../../../shared/body.ts";
import { fetchProducts } from "./catalog.ts";
import { meshFetch, traceFrom } from "../../../../shared/mesh-client.ts";
import { renderPage } from "./page.ts";
import { relay } from "./relay.ts";
import { shopper } from "./shopper.ts";
import type { Shopper } from "./shopper.ts";
import { emptyCart, heldCart, withCartCookie } from "./cart.ts";

type App = { Bindings: StorefrontEnv; Variables: { shopper: Shopper } };

const AddItem = z.object({
  sku: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '.', '_' or '-'"),
  qty: z.int().min(1).max(99),
});

/** Headers of a call on the shopper's behalf: their cookie and this request's trace context. */
function onBehalf(c: Context<App>, extra: Record<string, string> = {}): Record<string, string> {
  return { ...traceFrom(c.req.raw), cookie: c.var.shopper.cookie, ...extra };
}

function cartPath(cartId: string, rest = ""): string {
  return `/cart/${encodeURIComponent(cartId)}${rest}`;
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

// A shopper without a cart sees an empty one; a cart is created only when something is added.
app.get("/api/cart", async (c) => {
  const cart = await heldCart(c, false);
  if (!cart) return c.json(emptyCart(), 200, { "cache-control": "no-store" });
  return relay(await meshFetch(c.env.CART, "cart", cartPath(cart.cartId), { headers: onBehalf(c, cart.headers) }), "cart");
});

app.post("/api/cart/items", async (c) => {
  const body = await readBody(c.req.raw, AddItem);
  if (!body.ok) return body.response;
  const cart = await heldCart(c, true);
  if (!cart) throw new Error("a cart is always issued here");
  const res = await meshFetch(c.env.CART, "cart", cartPath(cart.cartId, "/items"), {
    method: "POST",
    headers: onBehalf(c, { ...cart.headers, "content-type": "application/json" }),
    body: JSON.stringify(body.value),
  });
  return withCartCookie(await relay(res, "cart"), cart);
});

app.delete("/api/cart/items/:sku", async (c) => {
  const cart = await heldCart(c, false);
  if (!cart) return c.json(emptyCart(), 200, { "cache-control": "no-store" });
  const path = cartPath(cart.cartId, `/items/${encodeURIComponent(c.req.param("sku"))}`);
  return relay(await meshFetch(c.env.CART, "cart", path, { method: "DELETE", headers: onBehalf(c, cart.headers) }), "cart");
});

app.post("/api/orders", async (c) => {
  const cart = await heldCart(c, false);
  if (!cart) {
    return problemResponse(422, "empty-cart", "Cart is empty", { detail: "add an item before placing an order", instance: c.req.path });
  }
  const headers = onBehalf(c, { ...cart.headers, "content-type": "application/json" });
  const key = c.req.header("idempotency-key");
  if (key !== undefined) headers["idempotency-key"] = key;
  const res = await meshFetch(c.env.ORDERS, "orders", "/orders", {
    method: "POST",
    headers,
    body: JSON.stringify({ cartId: cart.cartId }),
  });
  return relay(res, "orders");
});

app.notFound(notFound);

app.onError(serviceErrors("storefront"));

export default app;
