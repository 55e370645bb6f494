/**
 * orders: turns a cart into an order behind the weft-proxy-orders mesh proxy. The cart is read
 * through the cart proxy and re-priced through the pim proxy, so the order pays pim's current price.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import * as z from "zod";
import { problemResponse } from "../../../../shared/problem.ts";
import { methodNotAllowed, notFound, serviceErrors } from "../../../../shared/service-errors.ts";
import { readBody } from "../../../../shared/body.ts";
import { clearCart, priceItems, readCart } from "./checkout.ts";
import { forwardFrom, traceFrom } from "../../../../shared/mesh-client.ts";
import { sendConfirmation } from "./notify.ts";
import type { Order, OrderBook } from "./order-book.ts";
import { payments } from "./payments.ts";
import { CART_TOKEN_HEADER, checkCartAccess } from "../../shared/cart-token.ts";

export { OrderBook } from "./order-book.ts";

type App = { Bindings: OrdersEnv };

const PlaceOrder = z.object({
  cartId: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be the 43-character id POST /cart/new answered"),
  /** Where the confirmation goes; optional, and never stored with the order. */
  customer: z.object({ email: z.email() }).optional(),
});

const IDEMPOTENCY_KEY = /^[\x20-\x7e]{1,255}$/;
const LIST_LIMIT = 1000;

// Orders are per-shopper data; no shared cache may keep them.
const NO_STORE = { "cache-control": "no-store" };

/**
 * The OrderBook holding the shop's orders. The demo shop has one; sharding (by shop, by month)
 * changes only this function, and would need the shard encoded in the order id.
 */
function orderBook(env: OrdersEnv): DurableObjectStub<OrderBook> {
  return env.ORDER_BOOK.get(env.ORDER_BOOK.idFromName("orders"));
}

/**
 * An order as every response shows it. The cart id stays inside the OrderBook (it scopes
 * idempotency keys): lists of orders must never hand out handles on other shoppers' carts.
 */
function orderBody(order: Order) {
  return {
    orderId: order.orderId,
    items: order.lines.map((l) => ({ sku: l.sku, name: l.name, qty: l.qty, price: l.priceCents / 100 })),
    total: order.totalCents / 100,
    currency: "EUR",
    createdAt: order.createdAt,
  };
}

function orderResponse(c: Context<App>, order: Order, replayed: boolean): Response {
  const headers: Record<string, string> = { ...NO_STORE, location: `/orders/${encodeURIComponent(order.orderId)}` };
  if (replayed) headers["idempotent-replayed"] = "true";
  return c.json(orderBody(order), replayed ? 200 : 201, headers);
}

function keyReused(c: Context<App>): Response {
  return problemResponse(422, "idempotency-key-reused", "Idempotency-Key already used for another cart", {
    detail: "this Idempotency-Key created an order for a different cart; use a new key per order",
    instance: c.req.path,
  });
}

const app = new Hono<App>();

app.post("/orders", async (c) => {
  const key = c.req.header("idempotency-key") ?? null;
  if (key !== null && !IDEMPOTENCY_KEY.test(key)) {
    return problemResponse(400, "invalid-idempotency-key", "Invalid Idempotency-Key", {
      detail: "an Idempotency-Key is 1-255 printable ASCII characters",
      instance: c.req.path,
    });
  }
  const body = await readBody(c.req.raw, PlaceOrder);
  if (!body.ok) return body.response;
  const { cartId, customer } = body.value;
  // Only the holder of the cart's token may order it (and see a replayed order of it).
  const cartToken = c.req.header(CART_TOKEN_HEADER);
  const access = await checkCartAccess(cartId, cartToken);
  if (!access.ok || cartToken === undefined) {
    return access.ok || access.reason === "missing-token"
      ? problemResponse(401, "cart-token-required", "Cart token required", {
          detail: `send the cart's token in the '${CART_TOKEN_HEADER}' header`,
          instance: c.req.path,
        })
      : problemResponse(403, "wrong-cart-token", "Wrong cart token", {
          detail: `the '${CART_TOKEN_HEADER}' header does not hold cart '${cartId}'`,
          instance: c.req.path,
        });
  }
  const book = orderBook(c.env);

  if (key !== null) {
    // Answer replays without touching cart or pim: the first attempt emptied the cart.
    const previous = await book.byKey(key);
    if (previous) return previous.cartId === cartId ? orderResponse(c, previous, true) : keyReused(c);
  }

  const cookie = c.req.header("cookie");
  const forward = forwardFrom(c.req.raw);
  const items = await readCart(c.env.CART, cartId, { ...forward, [CART_TOKEN_HEADER]: cartToken });
  if (items.length === 0) {
    return problemResponse(422, "empty-cart", "Cart is empty", { detail: `cart '${cartId}' has no items`, instance: c.req.path });
  }
  const pricing = await priceItems(c.env.PIM, items, forward);
  if (!pricing.ok) {
    return problemResponse(422, "unknown-sku", "unknown sku", {
      detail: `pim no longer has: ${pricing.unknownSkus.join(", ")}`,
      instance: c.req.path,
      skus: pricing.unknownSkus,
    });
  }

  const result = await book.place(
    { orderId: crypto.randomUUID(), cartId, lines: pricing.lines, totalCents: pricing.totalCents, createdAt: new Date().toISOString() },
    key,
  );
  // A concurrent request with the same key may have won the race; place() then returns its order.
  if (result.outcome === "conflict") return keyReused(c);
  if (result.outcome === "replayed") return orderResponse(c, result.order, true);
  c.executionCtx.waitUntil(clearCart(c.env.CART, cartId, cookie, { ...traceFrom(c.req.raw), [CART_TOKEN_HEADER]: cartToken }));
  if (customer) {
    const placed = orderBody(result.order);
    c.executionCtx.waitUntil(
      sendConfirmation(c.env.NOTIFY, {
        to: customer.email,
        subject: `Your order ${placed.orderId}`,
        text: `Thank you! We received your order of ${placed.items.length} item(s), total ${placed.total.toFixed(2)} ${placed.currency}.`,
        customer,
        order: { orderId: placed.orderId, items: placed.items, total: placed.total, currency: placed.currency },
      }, traceFrom(c.req.raw)),
    );
  }
  return orderResponse(c, result.order, false);
});

app.get("/orders", async (c) => {
  // Who may list orders is the mesh's decision, not this service's: weft.manifest.json gives the
  // orders service a policy that denies GET /orders to the internet. The list names no carts.
  const orders = await orderBook(c.env).recent(LIST_LIMIT);
  return c.json({ orders: orders.map(orderBody) }, 200, NO_STORE);
});

app.get("/orders/:orderId", async (c) => {
  const order = await orderBook(c.env).get(c.req.param("orderId"));
  if (!order) {
    return problemResponse(404, "not-found", "Unknown order", {
      detail: `no order '${c.req.param("orderId")}'`,
      instance: c.req.path,
    });
  }
  return c.json({ ...orderBody(order), status: await orderBook(c.env).paymentStatus(order.orderId) }, 200, NO_STORE);
});

// Payment provider webhooks (verified by the orders proxy).
app.route("/", payments);

// Registered after the handlers above, so only methods they do not serve get here.
app.all("/orders", methodNotAllowed("GET, HEAD, POST"));
app.all("/orders/:orderId", methodNotAllowed("GET, HEAD"));

app.notFound(notFound);

app.onError(serviceErrors("orders"));

export default app;
