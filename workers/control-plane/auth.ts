/** Bearer-token auth for the admin API and metrics. */
import type { MiddlewareHandler } from "hono";
import { problemResponse } from "../../shared/problem.ts";

const encoder = new TextEncoder();

/**
 * Compares two secrets in constant time. Both sides are hashed first so neither the length nor the
 * position of the first differing byte leaks through timing.
 */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/** Requires `Authorization: Bearer <WEFT_ADMIN_TOKEN>`; refuses everything when no token is configured. */
export function requireAdminToken(): MiddlewareHandler<{ Bindings: ControlPlaneEnv }> {
  return async (c, next) => {
    const expected = c.env.WEFT_ADMIN_TOKEN;
    if (!expected) {
      return problemResponse(503, "admin-token-missing", "Admin API disabled", {
        detail: "WEFT_ADMIN_TOKEN is not set on the control plane; set it with `wrangler secret put WEFT_ADMIN_TOKEN`.",
      });
    }
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match?.[1] || !(await secretsEqual(match[1], expected))) {
      return problemResponse(
        401,
        "unauthorized",
        "Unauthorized",
        { detail: match ? "The bearer token is not valid." : "Send the admin token as `Authorization: Bearer <token>`." },
        { "www-authenticate": 'Bearer realm="weft-admin"' },
      );
    }
    await next();
  };
}
