/**
 * The credential a call to a third party carries, chosen by the external backend's `auth`:
 *
 *   weft-jwt (default)          a short-lived JWT signed by the control plane, bound to method, URL, body
 *   bearer / header / basic     a provider's API key from a secret of the proxy
 *   oauth2-client-credentials   an access token fetched once per lifetime for the whole mesh
 *                               (a Durable Object per OAuth client holds it; each isolate keeps a
 *                               copy until shortly before it expires), refreshed once on a 401
 *   private-key-jwt             a JWT signed here with the provider-issued private key (Vonage
 *                               application JWTs, APNs provider tokens), reused for half its lifetime
 *   mtls                        the call leaves through an `mtls_certificates` binding (production)
 *
 * Secrets are looked up by name in the proxy's env (wrangler secrets; locally `.weft/secrets.env`,
 * see scripts/mesh.ts) on every call, so a rotated secret is used as soon as the platform has it.
 * No value is ever logged or put in an error: failures name the secret, never its content.
 */
import { importPKCS8, SignJWT, type CryptoKey as JoseKey } from "jose";
import type { SecretNames, VendorAuth } from "../../shared/policy-schemas.ts";
import { disposeRpcResult, type ControlPlaneApi } from "../../shared/slice.ts";
import { withTimeout } from "./bounded.ts";

/** Where secret values come from (the proxy's env in production). */
export interface SecretSource {
  get(name: string): string | undefined;
}

/**
 * Secrets from a worker's env. Names starting with `WEFT_` are the mesh's own settings and
 * secrets (OTLP headers, the admin token): config can never send them to a third party.
 */
export function secretsFrom(env: object): SecretSource {
  return {
    get(name) {
      if (name.startsWith("WEFT_")) return undefined;
      const value: unknown = Reflect.get(env, name);
      return typeof value === "string" && value !== "" ? value : undefined;
    },
  };
}

/** The values of one secret name or several (rotation), in order, skipping unset ones. */
export function secretValues(source: SecretSource, names: SecretNames): string[] {
  return (typeof names === "string" ? [names] : names).flatMap((name) => {
    const value = source.get(name);
    return value === undefined ? [] : [value];
  });
}

/** One call leaving for a third party, as the credential sees it. */
export interface EgressCall {
  service: string;
  /** The mesh service on whose behalf the call leaves. */
  subject: string;
  provider: string;
  method: string;
  /** Scheme, host and path of the destination (no query). */
  htu: string;
  bodySha256: () => Promise<string>;
}

/** What a credential needs from the proxy. */
export interface CredentialDeps {
  controlPlane: ControlPlaneApi;
  secrets: SecretSource;
  /** The proxy's env, for `mtls_certificates` bindings. */
  bindings: object;
  now: number;
}

/** A credential ready to use, or why there is none (never containing a secret value). */
export type Credential =
  | { kind: "headers"; headers: Array<[string, string]>; fetcher: undefined; token: string | undefined }
  | { kind: "fetcher"; headers: Array<[string, string]>; fetcher: Fetcher; token: undefined }
  | { kind: "failed"; status: number; slug: string; detail: string };

const SIGNING_TIMEOUT_MS = 2_000;
const TOKEN_TIMEOUT_MS = 6_000;

function headers(list: Array<[string, string]>, token?: string): Credential {
  return { kind: "headers", headers: list, fetcher: undefined, token };
}

function missing(name: string): Credential {
  return { kind: "failed", status: 502, slug: "egress-credential-missing", detail: `the secret ${name} is not set on this proxy` };
}

function failure(slug: string, what: string, error: unknown): Credential {
  return { kind: "failed", status: 502, slug, detail: `${what}: ${error instanceof Error ? error.message : String(error)}` };
}

function isFetcher(value: unknown): value is Fetcher {
  return typeof value === "object" && value !== null && typeof Reflect.get(value, "fetch") === "function";
}

function base64Utf8(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

// ---- oauth2-client-credentials: the isolate's copy of each client's token -------------------

interface CachedToken {
  accessToken: string;
  expiresAt: number;
  /** When this isolate stops using it: shortly before expiry, as the token object does. */
  useUntil: number;
}
/** Bounded: one entry per OAuth client configured on this proxy (config is bounded); oldest evicted. */
const MAX_CACHED_CLIENTS = 64;
const oauthTokens = new Map<string, CachedToken>();

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function oauthKey(auth: Extract<VendorAuth, { type: "oauth2-client-credentials" }>, secret: string): Promise<string> {
  // The secret is part of the key (a rotated secret needs a new token), hashed so memory holds no copy.
  return sha256Hex(JSON.stringify([auth.tokenUrl, auth.clientId, auth.scope ?? "", auth.audience ?? "", auth.authMethod, secret]));
}

function remember(key: string, token: { accessToken: string; expiresAt: number }, now: number): void {
  const lifetime = Math.max(0, token.expiresAt - now);
  oauthTokens.delete(key);
  if (oauthTokens.size >= MAX_CACHED_CLIENTS) {
    const oldest = oauthTokens.keys().next().value;
    if (oldest !== undefined) oauthTokens.delete(oldest);
  }
  oauthTokens.set(key, { ...token, useUntil: token.expiresAt - Math.min(60_000, lifetime / 10) });
}

/** Forgets this isolate's copies (tests). */
export function clearCredentialCaches(): void {
  oauthTokens.clear();
  signedJwts.clear();
  importedKeys.clear();
}

async function oauthToken(
  auth: Extract<VendorAuth, { type: "oauth2-client-credentials" }>,
  call: EgressCall,
  deps: CredentialDeps,
  rejected: string | undefined,
): Promise<Credential> {
  const secret = deps.secrets.get(auth.secret);
  if (secret === undefined) return missing(auth.secret);
  const key = await oauthKey(auth, secret);
  const cached = oauthTokens.get(key);
  if (cached && cached.accessToken !== rejected && deps.now < cached.useUntil) return headers([["authorization", `Bearer ${cached.accessToken}`]], cached.accessToken);
  try {
    const token = await withTimeout(
      deps.controlPlane.vendorToken(call.service, {
        tokenUrl: auth.tokenUrl,
        clientId: auth.clientId,
        clientSecret: secret,
        authMethod: auth.authMethod,
        ...(auth.scope !== undefined ? { scope: auth.scope } : {}),
        ...(auth.audience !== undefined ? { audience: auth.audience } : {}),
        ...(rejected !== undefined ? { rejected } : {}),
      }),
      TOKEN_TIMEOUT_MS,
      "token service",
    );
    const { accessToken } = token;
    remember(key, token, deps.now);
    disposeRpcResult(token);
    return headers([["authorization", `Bearer ${accessToken}`]], accessToken);
  } catch (error) {
    return failure("egress-token-unavailable", "could not get an access token", error);
  }
}

// ---- private-key-jwt: keys imported once, tokens reused for half their lifetime ---------------

/** Bounded like the token cache: entries per configured backend, oldest evicted. */
const MAX_SIGNED = 64;
const importedKeys = new Map<string, Promise<JoseKey>>();
const signedJwts = new Map<string, { token: string; reuseUntil: number }>();

function boundedSet<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  if (map.size >= MAX_SIGNED) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
  map.set(key, value);
}

async function privateKeyJwt(auth: Extract<VendorAuth, { type: "private-key-jwt" }>, deps: CredentialDeps): Promise<Credential> {
  const pem = deps.secrets.get(auth.secret);
  if (pem === undefined) return missing(auth.secret);
  // Secrets set through a .env line carry newlines as "\n".
  const text = pem.includes("\\n") && !pem.includes("\n") ? pem.replace(/\\n/g, "\n") : pem;
  const keyId = await sha256Hex(`${auth.alg}\n${text}`);
  const cacheKey = JSON.stringify([keyId, auth.kid ?? "", auth.claims, auth.ttlSeconds]);
  const cached = signedJwts.get(cacheKey);
  if (cached && deps.now < cached.reuseUntil) return headers([["authorization", `Bearer ${cached.token}`]]);
  let key = importedKeys.get(keyId);
  if (!key) {
    key = importPKCS8(text, auth.alg);
    boundedSet(importedKeys, keyId, key);
  }
  try {
    const iat = Math.floor(deps.now / 1000);
    const token = await new SignJWT({ ...auth.claims })
      .setProtectedHeader({ alg: auth.alg, typ: "JWT", ...(auth.kid ? { kid: auth.kid } : {}) })
      .setIssuedAt(iat)
      .setExpirationTime(iat + auth.ttlSeconds)
      .setJti(crypto.randomUUID())
      .sign(await key);
    // Providers rate-limit token minting (APNs: at most one new token per 20 minutes) and accept a
    // token for its whole lifetime: reuse it for half of that, so it never expires in flight.
    boundedSet(signedJwts, cacheKey, { token, reuseUntil: deps.now + (auth.ttlSeconds * 1000) / 2 });
    return headers([["authorization", `Bearer ${token}`]]);
  } catch {
    importedKeys.delete(keyId);
    // jose's message could quote key material; say only what is wrong.
    return { kind: "failed", status: 502, slug: "egress-credential-invalid", detail: `the secret ${auth.secret} is not a PKCS#8 PEM private key for ${auth.alg}` };
  }
}

/**
 * The credential for one call. `rejected` is the OAuth access token a provider just answered 401
 * to: a fresh one is fetched (once for the whole mesh) instead of reusing it.
 */
export async function vendorCredential(auth: VendorAuth | undefined, call: EgressCall, deps: CredentialDeps, rejected?: string): Promise<Credential> {
  const strategy = auth ?? { type: "weft-jwt" as const };
  switch (strategy.type) {
    case "weft-jwt": {
      try {
        const signed = await withTimeout(
          deps.controlPlane.signEgress(call.service, { sub: call.subject, aud: call.provider, htm: call.method, htu: call.htu, body_sha256: await call.bodySha256() }),
          SIGNING_TIMEOUT_MS,
          "egress signer",
        );
        const token = signed.token;
        disposeRpcResult(signed);
        return headers([["authorization", `Bearer ${token}`]]);
      } catch (error) {
        return failure("egress-unsigned", "could not sign the call", error);
      }
    }
    case "bearer": {
      const value = deps.secrets.get(strategy.secret);
      return value === undefined ? missing(strategy.secret) : headers([["authorization", `Bearer ${value}`]]);
    }
    case "header": {
      const value = deps.secrets.get(strategy.secret);
      return value === undefined ? missing(strategy.secret) : headers([[strategy.name.toLowerCase(), `${strategy.prefix}${value}`]]);
    }
    case "basic": {
      const value = deps.secrets.get(strategy.secret);
      return value === undefined ? missing(strategy.secret) : headers([["authorization", `Basic ${base64Utf8(`${strategy.username}:${value}`)}`]]);
    }
    case "oauth2-client-credentials":
      return oauthToken(strategy, call, deps, rejected);
    case "private-key-jwt":
      return privateKeyJwt(strategy, deps);
    case "mtls": {
      const binding: unknown = Reflect.get(deps.bindings, strategy.certificate);
      // mtls_certificates bindings exist only on Cloudflare (not in workerd/Miniflare locally).
      if (isFetcher(binding)) return { kind: "fetcher", headers: [], fetcher: binding, token: undefined };
      return { kind: "failed", status: 502, slug: "egress-credential-missing", detail: `the mtls_certificates binding ${strategy.certificate} is not bound to this proxy (mTLS works only when deployed on Cloudflare)` };
    }
  }
}
