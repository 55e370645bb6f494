/**
 * The shopper's cart, as the storefront holds it: the cart's secret token in an HttpOnly `cart`
 * cookie, scoped to this worker's /api paths. The cart id is derived from the token, so the
 * storefront stores nothing, and the token goes only to the services that need it (cart, orders) in
 * the `cart-token` header — never in a URL, and never in the cookie header forwarded to other services.
 */
import type { Context } from "hono";
import { getCookie } from "hono/cookie";
import { CART_TOKEN_HEADER, cartIdOf, isCartToken, issueCart } from "../../shared/cart-token.ts";

/** The cookie holding the shopper's cart token. */
export const CART_COOKIE = "cart";
const NINETY_DAYS_S = 90 * 24 * 3600;

/** A cart the shopper holds: its id, the header that proves it, and the cookie to set if it is new. */
export interface HeldCart {
  cartId: string;
  headers: Record<string, string>;
  setCookie?: string;
}

/**
 * The shopper's cart, or undefined when they have none yet and `create` is false. With `create`, a
 * shopper without a (well-formed) cart cookie gets a new cart; send its `setCookie` with the answer
 * ({@link withCartCookie}).
 */
export async function heldCart(c: Context, create: boolean): Promise<HeldCart | undefined> {
  const known = getCookie(c, CART_COOKIE);
  if (isCartToken(known)) return { cartId: await cartIdOf(known), headers: { [CART_TOKEN_HEADER]: known } };
  if (!create) return undefined;
  const issued = await issueCart();
  const secure = new URL(c.req.url).protocol === "https:" ? "; Secure" : "";
  return {
    cartId: issued.cartId,
    headers: { [CART_TOKEN_HEADER]: issued.cartToken },
    // HttpOnly: the page's script never needs the token; Strict: no other site can make the browser send it.
    setCookie: `${CART_COOKIE}=${issued.cartToken}; Path=/api; SameSite=Strict; Max-Age=${NINETY_DAYS_S}; HttpOnly${secure}`,
  };
}

/** `res` with the new cart's cookie, when the cart is new and the service accepted the request. */
export function withCartCookie(res: Response, cart: HeldCart): Response {
  if (cart.setCookie === undefined || !res.ok) return res;
  const headers = new Headers(res.headers);
  headers.append("set-cookie", cart.setCookie);
  return new Response(res.body, { status: res.status, headers });
}

/** What an empty cart looks like to the page (the shape the cart service answers). */
export function emptyCart(): { items: never[]; total: number; currency: string } {
  return { items: [], total: 0, currency: "EUR" };
}
