/**
 * End-user JWT authentication per route: who the shopper is, verified at the edge of the service.
 * The verified claims reach the service in `x-weft-claims`, a header the internet cannot set.
 */
import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { RequiredClaim, RouteAuth } from "./policy-schemas.ts";
import { base64url } from "./encoding.ts";

/** Header the verified claims are forwarded in (base64url JSON). */
export const CLAIMS_HEADER = "x-weft-claims";

/** Outcome of {@link authenticate}. */
export type AuthResult = { kind: "authenticated"; claims: JWTPayload } | { kind: "refused"; reason: string };

function hasClaim(payload: JWTPayload, name: string, required: RequiredClaim): boolean {
  const actual = payload[name];
  const accepted = Array.isArray(required) ? required : [required];
  return Array.isArray(actual) ? actual.some((v) => accepted.includes(v as never)) : accepted.includes(actual as never);
}

/** Verifies the request's bearer token against the route's settings. */
export async function authenticate(authorization: string | null, auth: RouteAuth, keys: JWTVerifyGetKey): Promise<AuthResult> {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (!token) return { kind: "refused", reason: "missing bearer token" };
  try {
    const { payload } = await jwtVerify(token, keys, {
      issuer: auth.issuer,
      audience: auth.audiences,
      algorithms: auth.algorithms,
      clockTolerance: 5,
    });
    for (const [name, required] of Object.entries(auth.requiredClaims ?? {})) {
      if (!hasClaim(payload, name, required)) return { kind: "refused", reason: `claim '${name}' missing or not accepted` };
    }
    return { kind: "authenticated", claims: payload };
  } catch (error) {
    if (error instanceof errors.JWTExpired) return { kind: "refused", reason: "token expired" };
    if (error instanceof errors.JWTClaimValidationFailed) return { kind: "refused", reason: `claim '${error.claim}' invalid` };
    if (error instanceof errors.JOSEError) return { kind: "refused", reason: error.code };
    return { kind: "refused", reason: "token could not be verified" };
  }
}

/** Encodes verified claims for {@link CLAIMS_HEADER}. */
export function encodeClaims(claims: JWTPayload): string {
  return base64url(new TextEncoder().encode(JSON.stringify(claims)));
}

/** Decodes {@link CLAIMS_HEADER} (verified claims, base64url JSON); undefined when malformed. */
export function decodeClaims(header: string): Record<string, unknown> | undefined {
  try {
    const binary = atob(header.replace(/-/g, "+").replace(/_/g, "/"));
    const parsed: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
