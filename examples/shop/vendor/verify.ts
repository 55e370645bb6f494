/**
 * Verifies the token Weft attaches to every call it makes to a third party, the way an outside
 * vendor would: nothing here imports mesh code, only the published contract.
 *
 * The contract: `Authorization: Bearer <compact JWS>`, protected header `{ alg: "ES256" | "EdDSA",
 * kid, typ: "JWT" }`, signed by a key of the control plane's JWKS, with claims
 * `iss` (control plane URL), `sub` (calling mesh service), `aud` (provider name), `iat`, `exp`
 * (`exp - iat <= 60`), `jti` (unique), and — binding the token to one request, as DPoP does
 * (RFC 9449) — `htm` (method), `htu` (URL without query or fragment) and `body_sha256`
 * (base64url SHA-256 of the exact body bytes).
 *
 * Pure: keys, the clock and the replay store are injected, so the same code runs in the vendor
 * worker and in unit tests with real keys and signatures.
 */
import { base64url, errors, jwtVerify } from "jose";
import type { JWTPayload, JWTVerifyGetKey, RemoteJWKSetOptions } from "jose";
import * as z from "zod";

/** Why a token was refused. Stable strings: they are sent to the caller in `WWW-Authenticate`. */
export type VerifyFailure =
  | "missing-token"
  | "bad-alg"
  | "unknown-kid"
  | "bad-signature"
  | "expired"
  | "not-yet-valid"
  | "wrong-issuer"
  | "wrong-audience"
  | "lifetime-too-long"
  | "method-mismatch"
  | "url-mismatch"
  | "body-mismatch"
  | "replayed"
  | "malformed"
  /**
   * Not the caller's fault: the JWKS could not be fetched or used (timeout, non-200, invalid set,
   * ambiguous kid). Answer 503, not 401, so the mesh retries instead of treating its token as bad.
   */
  | "keys-unavailable";

/** Algorithms the contract allows. Anything else (`none`, HS256 key confusion, RS256...) is `bad-alg`. */
export const MESH_TOKEN_ALGORITHMS = ["ES256", "EdDSA"] as const;

/** Longest lifetime (`exp - iat`, seconds) a mesh token may have. */
export const MAX_TOKEN_LIFETIME_S = 60;

/** Clock skew tolerated between the mesh and the vendor, seconds. */
export const CLOCK_TOLERANCE_S = 5;

/**
 * Options for `createRemoteJWKSet(jwksUrl, ...)` on the vendor side. The set is cached for a minute;
 * a token naming a kid not in the cache (the mesh rotated its key) triggers a refetch, at most once
 * per second, so a rotation costs no failed call as long as the mesh publishes a new key (>= 1 s)
 * before signing with it and keeps a retired key published while its tokens can still verify.
 * Every fetch is bounded by a 3 s timeout.
 */
export const REMOTE_JWKS_OPTIONS = {
  timeoutDuration: 3000,
  cooldownDuration: 1000,
  cacheMaxAge: 60_000,
} as const satisfies RemoteJWKSetOptions;

// Bounds the replay store's keys; the mesh uses UUIDs, far shorter.
const MAX_JTI_LENGTH = 256;

const claimsSchema = z.looseObject({
  iss: z.string(),
  sub: z.string().min(1),
  aud: z.string(),
  iat: z.number().int(),
  exp: z.number().int(),
  nbf: z.number().optional(),
  jti: z.string().min(1).max(MAX_JTI_LENGTH),
  htm: z.string().min(1),
  htu: z.string().min(1),
  // SHA-256 is 32 bytes: exactly 43 base64url characters without padding.
  body_sha256: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});

/** The claims of a verified mesh token (unknown extra claims are kept). */
export type MeshClaims = z.infer<typeof claimsSchema>;

/** Outcome of {@link verifyMeshToken}. */
export type VerifyResult = { ok: true; claims: MeshClaims } | { ok: false; reason: VerifyFailure };

/** What {@link verifyMeshToken} needs besides the request. */
export interface VerifyOptions {
  /** Key resolver: `createRemoteJWKSet` in production, `createLocalJWKSet` in tests. */
  keys: JWTVerifyGetKey;
  /** Expected `iss`: the mesh control plane's public URL. */
  issuer: string;
  /** Expected `aud`: this provider's name, e.g. `vendor-pim`. */
  audience: string;
  /** Current time in milliseconds since the epoch (as `Date.now()`); defaults to the clock. */
  now?: number;
  /**
   * Records a jti until `exp` (seconds since the epoch) and says whether this is its first use.
   * Must be atomic: two concurrent calls with one jti must not both get `true`.
   */
  seen: (jti: string, exp: number) => Promise<boolean>;
}

// Thrown by the key resolver wrapper; mapped to reasons in `reasonOf`.
class MissingKid extends Error {}
class KeysUnavailable extends Error {}

/**
 * Verifies a request's mesh token against `opts`. `body` must be the exact bytes the handler will
 * use (read the body once, then verify and parse that same buffer).
 *
 * Checks, in order: bearer token present; signature by a JWKS key named by `kid` with an allowed
 * alg; `typ`, `iss`, `aud`, `exp`, `nbf` (5 s tolerance); claim shapes; `iat` not in the future;
 * lifetime; `htm`, `htu`, `body_sha256` against the request; and last the jti replay check, so only
 * a token valid in every other respect consumes its jti (a forged or misdirected token cannot burn
 * the jti of a genuine one).
 *
 * Never throws for a bad token; errors of `opts.seen` (the replay store) propagate.
 */
export async function verifyMeshToken(request: Request, body: ArrayBuffer, opts: VerifyOptions): Promise<VerifyResult> {
  const token = bearerToken(request.headers.get("authorization"));
  if (token === undefined) return { ok: false, reason: "missing-token" };

  const nowMs = opts.now ?? Date.now();
  const nowS = Math.floor(nowMs / 1000);

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, resolverOf(opts.keys), {
      algorithms: [...MESH_TOKEN_ALGORITHMS],
      typ: "JWT",
      issuer: opts.issuer,
      audience: opts.audience,
      clockTolerance: CLOCK_TOLERANCE_S,
      currentDate: new Date(nowMs),
      requiredClaims: ["sub", "iat", "exp", "jti", "htm", "htu", "body_sha256"],
    }));
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  }

  // jose accepts an array `aud` that contains ours; the contract names exactly one provider.
  if (Array.isArray(payload.aud)) return { ok: false, reason: "wrong-audience" };
  const parsed = claimsSchema.safeParse(payload);
  if (!parsed.success) return { ok: false, reason: "malformed" };
  const claims = parsed.data;

  // jose only checks `iat` against the clock with maxTokenAge; a future iat would let a token
  // outlive the lifetime cap (iat = now + 1 h, exp = iat + 60 is live for an hour).
  if (claims.iat > nowS + CLOCK_TOLERANCE_S) return { ok: false, reason: "not-yet-valid" };
  const lifetime = claims.exp - claims.iat;
  if (lifetime <= 0) return { ok: false, reason: "malformed" };
  if (lifetime > MAX_TOKEN_LIFETIME_S) return { ok: false, reason: "lifetime-too-long" };

  // RFC 9449 compares the method case-sensitively.
  if (claims.htm !== request.method) return { ok: false, reason: "method-mismatch" };
  if (!sameTarget(claims.htu, request.url)) return { ok: false, reason: "url-mismatch" };
  if (claims.body_sha256 !== (await sha256Base64url(body))) return { ok: false, reason: "body-mismatch" };

  if (!(await opts.seen(claims.jti, claims.exp))) return { ok: false, reason: "replayed" };
  return { ok: true, claims };
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 7235). */
function bearerToken(header: string | null): string | undefined {
  const match = header === null ? null : /^Bearer +(\S+)$/i.exec(header.trim());
  return match?.[1];
}

/**
 * Wraps the key resolver: the contract requires a `kid` (without one, jose would take any key of
 * the right type), and any failure of the resolver other than "no such kid" is an infrastructure
 * problem, not a bad token.
 */
function resolverOf(keys: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    if (typeof header.kid !== "string" || header.kid === "") throw new MissingKid();
    try {
      return await keys(header, token);
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) throw err;
      throw new KeysUnavailable("JWKS unavailable", { cause: err });
    }
  };
}

/** Maps an error thrown by `jwtVerify` to a reason; rethrows what is neither a token nor a key problem. */
function reasonOf(err: unknown): VerifyFailure {
  if (err instanceof MissingKid) return "malformed";
  if (err instanceof KeysUnavailable) return "keys-unavailable";
  if (err instanceof errors.JOSEAlgNotAllowed) return "bad-alg";
  if (err instanceof errors.JWKSNoMatchingKey) return "unknown-kid";
  if (err instanceof errors.JWSSignatureVerificationFailed) return "bad-signature";
  if (err instanceof errors.JWTExpired) return "expired";
  if (err instanceof errors.JWTClaimValidationFailed) {
    // "missing" / "invalid" (wrong type) mean the token is not shaped like a mesh token at all.
    if (err.reason !== "check_failed") return "malformed";
    switch (err.claim) {
      case "iss":
        return "wrong-issuer";
      case "aud":
        return "wrong-audience";
      case "nbf":
      case "iat":
        return "not-yet-valid";
      default:
        return "malformed"; // typ
    }
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return "malformed";
  throw err;
}

/**
 * Whether the `htu` claim names the request's URL. Both are parsed, so equivalent spellings
 * (host case, default port, percent-encoding) match; the request's query and fragment are ignored,
 * and an `htu` carrying either is refused, as RFC 9449 defines htu without them.
 */
function sameTarget(htu: string, requestUrl: string): boolean {
  if (!URL.canParse(htu)) return false;
  const claimed = new URL(htu);
  const actual = new URL(requestUrl);
  if (claimed.search !== "" || claimed.hash !== "") return false;
  return claimed.origin === actual.origin && claimed.pathname === actual.pathname;
}

/** base64url (no padding) of SHA-256 of `bytes`: the `body_sha256` claim's encoding. */
export async function sha256Base64url(bytes: ArrayBuffer | Uint8Array): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}
