/** Wires the pure split policy to a request: where the sticky key comes from, and new sticky cookies. */
import { decideSplit, type SplitDecision } from "../../shared/split.ts";
import type { RoutePlan } from "./plan.ts";
import { INTERNET, readCookie } from "./identity.ts";

/** The backend for this request, plus a `Set-Cookie` value when a new shopper needs a sticky cookie. */
export interface Placement {
  decision: SplitDecision;
  setCookie: string | undefined;
}

const ONE_YEAR_SECONDS = 365 * 24 * 3600;

/**
 * Places one request on a backend of `route`. `owners` is the route's slot table, with ejected
 * backends' slots lent to healthy ones (see healthyOwners); a sticky shopper keeps their slot, so
 * they return to their own backend when it recovers.
 */
export function place(route: RoutePlan, owners: readonly string[], request: Request, caller: string): Placement {
  const sticky = route.sticky;
  if (!sticky) return { decision: decideSplit(owners, route.salt, undefined, Math.random()), setCookie: undefined };
  if (sticky.from === "header") {
    const value = request.headers.get(sticky.name) ?? undefined;
    return { decision: decideSplit(owners, route.salt, value, Math.random()), setCookie: undefined };
  }
  const cookie = readCookie(request.headers.get("cookie"), sticky.name);
  if (cookie !== undefined && cookie !== "") {
    return { decision: decideSplit(owners, route.salt, cookie, 0), setCookie: undefined };
  }
  // A shopper without the cookie gets one, as Istio does for cookie-based consistent hashing, so
  // every later request of theirs lands on the same backend. Internal callers pass cookies along.
  if (caller !== INTERNET) return { decision: decideSplit(owners, route.salt, undefined, Math.random()), setCookie: undefined };
  const id = crypto.randomUUID();
  const secure = request.url.startsWith("https:") ? "; Secure" : "";
  return {
    decision: decideSplit(owners, route.salt, id, 0),
    setCookie: `${sticky.name}=${id}; Path=/; Max-Age=${ONE_YEAR_SECONDS}; SameSite=Lax; HttpOnly${secure}`,
  };
}
