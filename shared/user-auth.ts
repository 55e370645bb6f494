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

/** Seconds of clock skew tolerated between the issuer and the edge. */
const CLOCK_TOLERANCE_SECONDS = 5;
/** `maxAgeSeconds` when a route does not set it: one day, as most identity providers cap sessions' access tokens. */
export const DEFAULT_MAX_TOKEN_AGE_SECONDS = 86_400;
/** `typ` header values accepted (RFC 7519 §5.1 `JWT`, RFC 9068 `at+jwt`), compared case-insensitively without `application/`. */
const ACCEPTED_TYPES = new Set(["jwt", "at+jwt"]);

/**
 * Lifetime checks jose leaves optional: `exp` is required, a token is at most `maxAgeSeconds` old
 * (by `iat`), and a token without `iat` may not claim to live longer than that from now.
 */
function lifetimeProblem(payload: JWTPayload, maxAgeSeconds: number, now: number): string | undefined {
  if (typeof payload.exp !== "number") return "token has no exp";
  if (payload.iat !== undefined) {
    if (typeof payload.iat !== "number") return "claim 'iat' invalid";
    if (payload.iat > now + CLOCK_TOLERANCE_SECONDS) return "token issued in the future";
    if (now - payload.iat > maxAgeSeconds + CLOCK_TOLERANCE_SECONDS) return `token older than ${maxAgeSeconds} s`;
  } else if (payload.exp - now > maxAgeSeconds + CLOCK_TOLERANCE_SECONDS) {
    return `token without iat valid for more than ${maxAgeSeconds} s`;
  }
  return undefined;
}

function typeProblem(typ: string | undefined): string | undefined {
  if (typ === undefined) return undefined;
  const normalised = typ.toLowerCase().replace(/^application\//, "");
  return ACCEPTED_TYPES.has(normalised) ? undefined : "token type not accepted";
}

/**
 * Verifies the request's bearer token against the route's settings: signature, issuer, audience,
 * algorithm, `typ` (when present), a required `exp`, the route's maximum token age and its required
 * claims. `now` (seconds) is for tests.
 */
export async function authenticate(authorization: string | null, auth: RouteAuth, keys: JWTVerifyGetKey, now = Math.floor(Date.now() / 1000)): Promise<AuthResult> {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (!token) return { kind: "refused", reason: "missing bearer token" };
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      issuer: auth.issuer,
      audience: auth.audiences,
      algorithms: auth.algorithms,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: new Date(now * 1000),
    });
    const problem = typeProblem(protectedHeader.typ) ?? lifetimeProblem(payload, auth.maxAgeSeconds ?? DEFAULT_MAX_TOKEN_AGE_SECONDS, now);
    if (problem) return { kind: "refused", reason: problem };
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
