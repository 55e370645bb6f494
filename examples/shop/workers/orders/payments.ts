/**
 * The payment provider's webhook: `POST /orders/webhooks/payments`. The orders proxy verifies the
 * provider's signature, timestamp and replay before the request gets here (route `webhook` in the
 * mesh config), and says so in `x-weft-webhook-scheme`, a header only the proxy can set: this
 * service holds no provider secret and checks no signature.
 *
 * A Stripe `payment_intent.succeeded` event whose `data.object.metadata.orderId` names an order
 * marks that order paid. Other events, and events for unknown orders, are acknowledged (200) but
 * change nothing: a 4xx/5xx would only make the provider retry them for days.
 */
import { Hono } from "hono";
import * as z from "zod";
import { readBody } from "../../../../shared/body.ts";
import { problemResponse } from "../../../../shared/problem.ts";
import type { OrderBook } from "./order-book.ts";

/** The scheme the orders route verifies; anything else never came through the webhook route. */
const EXPECTED_SCHEME = "stripe";

const StripeEvent = z.looseObject({
  id: z.string().max(255),
  type: z.string().max(255),
  data: z.looseObject({
    object: z.looseObject({
      id: z.string().max(255).optional(),
      metadata: z.record(z.string(), z.string().max(500)).optional(),
    }),
  }),
});

function orderBook(env: OrdersEnv): DurableObjectStub<OrderBook> {
  return env.ORDER_BOOK.get(env.ORDER_BOOK.idFromName("orders"));
}

/** The webhook routes, mounted by the orders app before its catch-all handlers. */
export const payments = new Hono<{ Bindings: OrdersEnv }>();

payments.post("/orders/webhooks/payments", async (c) => {
  if (c.req.header("x-weft-webhook-scheme") !== EXPECTED_SCHEME) {
    // Only reachable like this when the mesh config lost the route's `webhook` settings.
    return problemResponse(401, "webhook-unverified", "Webhook not verified by the mesh", {
      detail: "payment webhooks are accepted only through a route with `webhook: { scheme: \"stripe\" }`",
      instance: c.req.path,
    });
  }
  const event = await readBody(c.req.raw, StripeEvent);
  if (!event.ok) return event.response;
  const { id, type, data } = event.value;
  const orderId = data.object.metadata?.orderId;
  if (type !== "payment_intent.succeeded") return c.json({ received: true, event: id, applied: false, reason: `ignored event type ${type}` });
  if (orderId === undefined) return c.json({ received: true, event: id, applied: false, reason: "no metadata.orderId" });
  const outcome = await orderBook(c.env).markPaid(orderId, data.object.id ?? "", id);
  return c.json({ received: true, event: id, orderId, applied: outcome === "paid", outcome });
});
