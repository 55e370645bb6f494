/**
 * The calls an order needs from other services: the cart's contents and pim's current prices.
 */
import * as z from "zod";
import { expectJson, forwardCookie, meshFetch } from "../../../../shared/mesh-client.ts";
import type { OrderLine } from "./order-book.ts";
import { lookupProduct } from "../../shared/pim-client.ts";

const CartSnapshot = z.object({
  items: z.array(z.object({ sku: z.string(), qty: z.int().min(1) })),
});
type CartItem = z.infer<typeof CartSnapshot>["items"][number];

/** Priced lines, or the skus pim no longer knows. */
export type Pricing = { ok: true; lines: OrderLine[]; totalCents: number } | { ok: false; unknownSkus: string[] };

/** The cart's items, read through the cart proxy. */
export async function readCart(cart: Fetcher, cartId: string, forward: Record<string, string>): Promise<CartItem[]> {
  const res = await meshFetch(cart, "cart", `/cart/${encodeURIComponent(cartId)}`, { headers: forward });
  return (await expectJson(res, "cart", CartSnapshot)).items;
}

/** Prices every item from pim, in parallel; the cart's own prices may be stale. */
export async function priceItems(pim: Fetcher, items: CartItem[], forward: Record<string, string>): Promise<Pricing> {
  const products = await Promise.all(items.map((item) => lookupProduct(pim, item.sku, forward)));
  const lines: OrderLine[] = [];
  const unknownSkus: string[] = [];
  items.forEach((item, i) => {
    const product = products[i];
    if (!product) unknownSkus.push(item.sku);
    else lines.push({ sku: item.sku, name: product.name, qty: item.qty, priceCents: Math.round(product.price * 100) });
  });
  if (unknownSkus.length > 0) return { ok: false, unknownSkus };
  return { ok: true, lines, totalCents: lines.reduce((sum, line) => sum + line.qty * line.priceCents, 0) };
}

/**
 * Empties the cart after an order. Best effort: the order is already stored, so failures are only
 * logged. `headers` carry the trace context and the cart's token.
 */
export async function clearCart(cart: Fetcher, cartId: string, cookie: string | undefined, headers: Record<string, string>): Promise<void> {
  // Runs after the response (waitUntil): it forwards the cookie, trace and token only, the caller's deadline is over.
  try {
    const res = await meshFetch(cart, "cart", `/cart/${encodeURIComponent(cartId)}`, {
      method: "DELETE",
      headers: { ...headers, ...forwardCookie(cookie) },
    });
    await res.body?.cancel();
    if (!res.ok) console.warn(`orders: clearing cart ${cartId} failed with ${res.status}`);
  } catch (err) {
    console.warn(`orders: clearing cart ${cartId} failed`, err);
  }
}
