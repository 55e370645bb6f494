/**
 * Cart ownership in the demo shop. A cart is held by a secret *cart token* (32 random bytes,
 * base64url) that only its shopper has; the cart's public id is a hash of the token. Knowing a cart
 * id — from a URL, a log line, an order — therefore never lets anyone read or change the cart:
 * every cart call must carry the token (`cart-token` header), and whoever holds a token can only
 * ever reach the one cart whose id it hashes to. The token never appears in a path, so access logs,
 * traces and the tap (which record paths) never see it.
 *
 * Stateless on purpose: no service stores tokens, so issuing a cart costs no write and an abandoned
 * cart that was never filled leaves nothing behind.
 */
import { base64url } from "../../../shared/encoding.ts";

/** The header that carries a cart token between the shop's services. */
export const CART_TOKEN_HEADER = "cart-token";

/** 32 bytes base64url without padding: exactly 43 characters. */
const TOKEN_FORMAT = /^[A-Za-z0-9_-]{43}$/;

/** Domain separation, so a cart id is never the hash of a token for something else. */
const ID_PREFIX = new TextEncoder().encode("weft-demo-cart-v1:");

/** A new cart: its public id and the secret token that holds it. */
export interface IssuedCart {
  cartId: string;
  cartToken: string;
}

/** Whether `value` has the shape of a cart token (it says nothing about which cart it holds). */
export function isCartToken(value: string | null | undefined): value is string {
  return typeof value === "string" && TOKEN_FORMAT.test(value);
}

/** The id of the cart `token` holds. */
export async function cartIdOf(token: string): Promise<string> {
  const input = new Uint8Array(ID_PREFIX.length + token.length);
  input.set(ID_PREFIX);
  input.set(new TextEncoder().encode(token), ID_PREFIX.length);
  return base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", input)));
}

/** A fresh, unguessable cart. */
export async function issueCart(): Promise<IssuedCart> {
  const cartToken = base64url(crypto.getRandomValues(new Uint8Array(32)));
  return { cartId: await cartIdOf(cartToken), cartToken };
}

/** What a presented token proves about a cart id. */
export type CartAccess = { ok: true } | { ok: false; reason: "missing-token" | "wrong-token" };

/**
 * Whether `token` holds cart `cartId`. Both sides are hashes of secrets, so a plain comparison leaks
 * nothing useful: learning a prefix of a SHA-256 output does not help find its preimage.
 */
export async function checkCartAccess(cartId: string, token: string | null | undefined): Promise<CartAccess> {
  if (token === null || token === undefined || token === "") return { ok: false, reason: "missing-token" };
  if (!isCartToken(token)) return { ok: false, reason: "wrong-token" };
  return (await cartIdOf(token)) === cartId ? { ok: true } : { ok: false, reason: "wrong-token" };
}
