/**
 * The shopper identity: a random id in the `shopper` cookie, the key the mesh's sticky pim split
 * uses, so it is forwarded on every call made for the shopper. It grants nothing: the cart is held
 * by a separate secret (cart.ts), which is never forwarded in the cookie header.
 */
import type { MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { CART_COOKIE } from "./cart.ts";

const COOKIE = "shopper";
const SHOPPER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const ONE_YEAR_S = 31_536_000;

/** Who is shopping, and the `cookie` header to send to other services on their behalf. */
export interface Shopper {
  id: string;
  cookie: string;
}

/**
 * Replaces (or adds) the shopper pair in a cookie header, keeping the shopper's other cookies but
 * the cart token's: pim and the others have no business holding the shopper's cart.
 */
function withShopper(header: string | undefined, id: string): string {
  const others = (header ?? "")
    .split(";")
    .map((pair) => pair.trim())
    .filter((pair) => pair !== "" && !pair.startsWith(`${COOKIE}=`) && !pair.startsWith(`${CART_COOKIE}=`));
  return [...others, `${COOKIE}=${id}`].join("; ");
}

/**
 * Sets `c.var.shopper`. A request without a valid cookie gets a new id, used at once (so this very
 * response already sticks to one pim version) and sent back in `Set-Cookie`.
 */
export function shopper(): MiddlewareHandler<{ Variables: { shopper: Shopper } }> {
  return async (c, next) => {
    const known = getCookie(c, COOKIE);
    const id = known !== undefined && SHOPPER_ID.test(known) ? known : crypto.randomUUID();
    c.set("shopper", { id, cookie: withShopper(c.req.header("cookie"), id) });
    await next();
    if (id !== known) {
      // HttpOnly: the page script never needs the id, so scripts should not be able to read it.
      c.res.headers.append("set-cookie", `${COOKIE}=${id}; Path=/; SameSite=Lax; Max-Age=${ONE_YEAR_S}; HttpOnly`);
    }
  };
}
