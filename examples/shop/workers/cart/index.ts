/**
 * cart: shopping carts behind the weft-proxy-cart mesh proxy. Lines are priced from pim (through
 * its proxy) when added; orders re-price them, so a cart's prices are informational.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import * as z from "zod";
import { problemResponse } from "../../../../shared/problem.ts";
import { methodNotAllowed, notFound, serviceErrors } from "../../../../shared/service-errors.ts";
import { readBody } from "../../../../shared/body.ts";
import { MAX_QTY } from "./cart-store.ts";
import type { CartLine, CartStore } from "./cart-store.ts";
import { lookupProduct } from "../../shared/pim-client.ts";
import { forwardFrom } from "../../../../shared/mesh-client.ts";
import { CART_TOKEN_HEADER, checkCartAccess, issueCart } from "../../shared/cart-token.ts";

export { CartStore } from "./cart-store.ts";

type App = { Bindings: CartEnv };

/** A cart id is the base64url SHA-256 of its token (shared/shop/cart-token.ts): 43 characters. */
const CART_ID = /^[A-Za-z0-9_-]{43}$/;

const AddItem = z.object({
  sku: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '.', '_' or '-'"),
  qty: z.int().min(1).max(MAX_QTY),
});

// Carts change with every click; a cached copy is always wrong.
const NO_STORE = { "cache-control": "no-store" };

/** The JSON shape of a cart, with prices converted from cents only at the edge. */
function cartBody(cartId: string, lines: CartLine[]) {
  const totalCents = lines.reduce((sum, line) => sum + line.qty * line.priceCents, 0);
  return {
    cartId,
    items: lines.map((line) => ({ sku: line.sku, qty: line.qty, price: line.priceCents / 100, name: line.name })),
    total: totalCents / 100,
    currency: "EUR",
  };
}

/**
 * Runs `use` with the cart's Durable Object, once the request's `cart-token` proves it holds the
 * cart; answers 400 for a malformed cart id, 401 without a token and 403 with another cart's token.
 */
async function withCart(
  c: Context<App>,
  cartId: string,
  use: (cart: DurableObjectStub<CartStore>, cartId: string) => Promise<Response>,
): Promise<Response> {
  if (!CART_ID.test(cartId)) {
    return problemResponse(400, "invalid-cart-id", "Invalid cart id", {
      detail: "a cart id is the 43-character id POST /cart/new answered",
      instance: c.req.path,
    });
  }
  const access = await checkCartAccess(cartId, c.req.header(CART_TOKEN_HEADER));
  if (!access.ok) {
    // Never echo the token; say only what is wrong with it.
    return access.reason === "missing-token"
      ? problemResponse(401, "cart-token-required", "Cart token required", {
          detail: `send the cartToken POST /cart/new answered in the '${CART_TOKEN_HEADER}' header`,
          instance: c.req.path,
        })
      : problemResponse(403, "wrong-cart-token", "Wrong cart token", {
          detail: `the '${CART_TOKEN_HEADER}' header does not hold this cart`,
          instance: c.req.path,
        });
  }
  return use(c.env.CARTS.get(c.env.CARTS.idFromName(cartId)), cartId);
}

const app = new Hono<App>();

// A new, empty cart: its id and the secret token every later call on it must carry. Nothing is
// stored until the first item is added.
app.post("/cart/new", async (c) => {
  const { cartId, cartToken } = await issueCart();
  return c.json({ ...cartBody(cartId, []), cartToken }, 201, { ...NO_STORE, location: `/cart/${cartId}` });
});

app.get("/cart/:cartId", (c) =>
  withCart(c, c.req.param("cartId"), async (cart, cartId) => c.json(cartBody(cartId, await cart.lines()), 200, NO_STORE)),
);

app.post("/cart/:cartId/items", (c) =>
  withCart(c, c.req.param("cartId"), async (cart, cartId) => {
    const body = await readBody(c.req.raw, AddItem);
    if (!body.ok) return body.response;
    const { sku, qty } = body.value;
    const product = await lookupProduct(c.env.PIM, sku, forwardFrom(c.req.raw));
    if (!product) {
      return problemResponse(422, "unknown-sku", "unknown sku", {
        detail: `pim has no product '${sku}'`,
        instance: c.req.path,
        sku,
      });
    }
    const lines = await cart.add({ sku, qty, name: product.name, priceCents: Math.round(product.price * 100) });
    return c.json(cartBody(cartId, lines), 200, NO_STORE);
  }),
);

app.delete("/cart/:cartId/items/:sku", (c) =>
  withCart(c, c.req.param("cartId"), async (cart, cartId) =>
    c.json(cartBody(cartId, await cart.remove(c.req.param("sku"))), 200, NO_STORE),
  ),
);

app.delete("/cart/:cartId", (c) =>
  withCart(c, c.req.param("cartId"), async (cart) => {
    await cart.clear();
    return c.body(null, 204, NO_STORE);
  }),
);

// Registered after the handlers above, so only methods they do not serve get here.
app.all("/cart/new", methodNotAllowed("POST"));
app.all("/cart/:cartId", methodNotAllowed("GET, HEAD, DELETE"));
app.all("/cart/:cartId/items", methodNotAllowed("POST"));
app.all("/cart/:cartId/items/:sku", methodNotAllowed("DELETE"));

app.notFound(notFound);

app.onError(serviceErrors("cart"));

export default app;
