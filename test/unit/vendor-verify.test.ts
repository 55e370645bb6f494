/**
 * The demo vendor's verifier against every attack on the mesh token contract, with real keys and
 * real signatures (jose and WebCrypto inside workerd): tokens are signed the way the mesh signs
 * them, then altered or misused the way an attacker would.
 */
import { base64url, createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import type { CryptoKey, FetchImplementation, JWK, JWTVerifyGetKey } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { REMOTE_JWKS_OPTIONS, sha256Base64url, verifyMeshToken, type VerifyResult } from "../../examples/shop/vendor/verify.ts";

const ISSUER = "http://127.0.0.1:8788";
const PIM_URL = "http://127.0.0.1:8789/pim/products/sku-1";
const NOTIFY_URL = "http://127.0.0.1:8789/notify/messages";
// A fixed clock, so lifetimes and tolerances are exact.
const NOW_S = 1_800_000_000;
const NOW_MS = NOW_S * 1000;

interface SigningKey {
  alg: "ES256" | "EdDSA";
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

let es256: SigningKey;
let eddsa: SigningKey;
let keys: JWTVerifyGetKey;

async function signingKey(alg: "ES256" | "EdDSA", kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { alg, kid, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

beforeAll(async () => {
  es256 = await signingKey("ES256", "mesh-es256-1");
  eddsa = await signingKey("EdDSA", "mesh-ed25519-1");
  keys = createLocalJWKSet({ keys: [es256.publicJwk, eddsa.publicJwk] });
});

interface Call {
  method?: string;
  url?: string;
  body?: string;
}

/** The claims the mesh would put in a token for `call`; `over` replaces or (as undefined) removes claims. */
async function claimsFor(call: Call = {}, over: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const url = new URL(call.url ?? PIM_URL);
  const claims: Record<string, unknown> = {
    iss: ISSUER,
    sub: "orders",
    aud: url.pathname.startsWith("/notify/") ? "vendor-notify" : "vendor-pim",
    iat: NOW_S,
    exp: NOW_S + 30,
    jti: crypto.randomUUID(),
    htm: call.method ?? "GET",
    htu: `${url.origin}${url.pathname}`,
    body_sha256: await sha256Base64url(new TextEncoder().encode(call.body ?? "")),
    ...over,
  };
  for (const [name, value] of Object.entries(over)) if (value === undefined) delete claims[name];
  return claims;
}

/** Signs `claims` as the mesh does: compact JWS with alg, kid and typ in the protected header. */
async function sign(claims: Record<string, unknown>, key: SigningKey = es256, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...header }).sign(key.privateKey);
}

/** A token for `call`, signed by `key`. */
async function mint(call: Call = {}, over: Record<string, unknown> = {}, key: SigningKey = es256): Promise<string> {
  return sign(await claimsFor(call, over), key);
}

function request(token: string | undefined, call: Call = {}): Request {
  const headers = new Headers();
  if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
  return new Request(call.url ?? PIM_URL, { method: call.method ?? "GET", headers, ...(call.body !== undefined ? { body: call.body } : {}) });
}

/** A replay store with the ledger's semantics: true the first time a jti is seen. */
function memoryStore(): { seen: (jti: string, exp: number) => Promise<boolean>; jtis: Set<string> } {
  const jtis = new Set<string>();
  return {
    jtis,
    seen: async (jti) => {
      if (jtis.has(jti)) return false;
      jtis.add(jti);
      return true;
    },
  };
}

interface VerifyAs {
  audience?: string;
  issuer?: string;
  keys?: JWTVerifyGetKey;
  seen?: (jti: string, exp: number) => Promise<boolean>;
}

/** Verifies `token` presented on `call` (as the vendor would, defaults: the PIM audience, the fixed clock). */
async function verify(token: string | undefined, call: Call = {}, as: VerifyAs = {}): Promise<VerifyResult> {
  const req = request(token, call);
  const body = await req.arrayBuffer();
  return verifyMeshToken(req, body, {
    keys: as.keys ?? keys,
    issuer: as.issuer ?? ISSUER,
    audience: as.audience ?? (new URL(call.url ?? PIM_URL).pathname.startsWith("/notify/") ? "vendor-notify" : "vendor-pim"),
    now: NOW_MS,
    seen: as.seen ?? memoryStore().seen,
  });
}

function encodeSegment(value: unknown): string {
  return base64url.encode(new TextEncoder().encode(JSON.stringify(value)));
}

describe("verifyMeshToken: valid tokens", () => {
  it("accepts an ES256 token and returns its claims", async () => {
    const claims = await claimsFor();
    const result = await verify(await sign(claims, es256));
    expect(result).toEqual({ ok: true, claims });
  });

  it("accepts an EdDSA (Ed25519) token and returns its claims", async () => {
    const body = JSON.stringify({ to: "shopper@example.com", subject: "Your order", text: "Thanks!", order: "o-1" });
    const call = { method: "POST", url: NOTIFY_URL, body };
    const claims = await claimsFor(call);
    const result = await verify(await sign(claims, eddsa), call);
    expect(result).toEqual({ ok: true, claims });
    expect(result.ok && result.claims).toMatchObject({ sub: "orders", aud: "vendor-notify", htm: "POST", htu: NOTIFY_URL });
  });

  it("ignores the request's query string (htu has none)", async () => {
    expect(await verify(await mint(), { url: `${PIM_URL}?ref=mail#top` })).toMatchObject({ ok: true });
  });

  it("tolerates 5 s of clock skew, not more", async () => {
    // Just expired, within tolerance.
    expect(await verify(await mint({}, { iat: NOW_S - 33, exp: NOW_S - 3 }))).toMatchObject({ ok: true });
    expect(await verify(await mint({}, { iat: NOW_S + 4, exp: NOW_S + 34 }))).toMatchObject({ ok: true });
    expect(await verify(await mint({}, { iat: NOW_S - 36, exp: NOW_S - 6 }))).toEqual({ ok: false, reason: "expired" });
  });

  it("accepts a lifetime of exactly 60 s", async () => {
    expect(await verify(await mint({}, { exp: NOW_S + 60 }))).toMatchObject({ ok: true });
  });
});

describe("verifyMeshToken: refused tokens", () => {
  it("refuses a request without a bearer token", async () => {
    expect(await verify(undefined)).toEqual({ ok: false, reason: "missing-token" });
    const basic = new Request(PIM_URL, { headers: { authorization: "Basic b3JkZXJzOnNlY3JldA==" } });
    expect(await verifyMeshToken(basic, new ArrayBuffer(0), { keys, issuer: ISSUER, audience: "vendor-pim", now: NOW_MS, seen: memoryStore().seen })).toEqual({
      ok: false,
      reason: "missing-token",
    });
  });

  it("refuses alg none", async () => {
    const claims = await claimsFor();
    const unsigned = `${encodeSegment({ alg: "none", kid: es256.kid, typ: "JWT" })}.${encodeSegment(claims)}.`;
    expect(await verify(unsigned)).toEqual({ ok: false, reason: "bad-alg" });
  });

  it("refuses HS256 keyed with the public key's bytes (key confusion)", async () => {
    const claims = await claimsFor();
    const publicKeyBytes = [
      new TextEncoder().encode(JSON.stringify(es256.publicJwk)),
      new TextEncoder().encode(await exportSPKI(es256.publicKey)),
      base64url.decode(eddsa.publicJwk.x ?? ""),
    ];
    for (const secret of publicKeyBytes) {
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: "HS256", kid: es256.kid, typ: "JWT" }).sign(secret);
      expect(await verify(forged)).toEqual({ ok: false, reason: "bad-alg" });
    }
  });

  it("refuses algorithms outside ES256/EdDSA even when correctly signed", async () => {
    const { privateKey, publicKey } = await generateKeyPair("ES384");
    const jwk = { ...(await exportJWK(publicKey)), kid: "es384", alg: "ES384", use: "sig" };
    const token = await new SignJWT(await claimsFor()).setProtectedHeader({ alg: "ES384", kid: "es384", typ: "JWT" }).sign(privateKey);
    expect(await verify(token, {}, { keys: createLocalJWKSet({ keys: [jwk] }) })).toEqual({ ok: false, reason: "bad-alg" });
  });

  it("refuses an expired token", async () => {
    expect(await verify(await mint({}, { iat: NOW_S - 120, exp: NOW_S - 60 }))).toEqual({ ok: false, reason: "expired" });
  });

  it("refuses a token whose nbf or iat is in the future", async () => {
    expect(await verify(await mint({}, { nbf: NOW_S + 30 }))).toEqual({ ok: false, reason: "not-yet-valid" });
    // iat in the future would let a 60 s token live far longer than 60 s.
    expect(await verify(await mint({}, { iat: NOW_S + 3600, exp: NOW_S + 3630 }))).toEqual({ ok: false, reason: "not-yet-valid" });
  });

  it("refuses a token for another audience", async () => {
    expect(await verify(await mint({}, { aud: "vendor-notify" }))).toEqual({ ok: false, reason: "wrong-audience" });
    expect(await verify(await mint({}, { aud: ["vendor-pim", "vendor-notify"] }))).toEqual({ ok: false, reason: "wrong-audience" });
  });

  it("refuses a token from another issuer", async () => {
    expect(await verify(await mint({}, { iss: "https://evil.example.com" }))).toEqual({ ok: false, reason: "wrong-issuer" });
    expect(await verify(await mint(), {}, { issuer: "https://weft.example.com" })).toEqual({ ok: false, reason: "wrong-issuer" });
  });

  it("refuses a token whose kid is not in the JWKS", async () => {
    const stranger = await signingKey("ES256", "not-published");
    expect(await verify(await mint({}, {}, stranger))).toEqual({ ok: false, reason: "unknown-kid" });
    // A published kid, but of a key of another type than the header's alg.
    expect(await verify(await sign(await claimsFor(), es256, { kid: eddsa.kid }))).toEqual({ ok: false, reason: "unknown-kid" });
  });

  it("refuses a token signed by another key under a published kid", async () => {
    const impostor = await signingKey("ES256", es256.kid);
    expect(await verify(await mint({}, {}, impostor))).toEqual({ ok: false, reason: "bad-signature" });
  });

  it("refuses a tampered payload with the original signature", async () => {
    for (const key of [es256, eddsa]) {
      const token = await mint({}, {}, key);
      const [header, , signature] = token.split(".");
      const tampered = `${header}.${encodeSegment({ ...decodeJwt(token), sub: "admin" })}.${signature}`;
      expect(await verify(tampered)).toEqual({ ok: false, reason: "bad-signature" });
    }
  });

  it("refuses a lifetime over 60 s", async () => {
    expect(await verify(await mint({}, { exp: NOW_S + 61 }))).toEqual({ ok: false, reason: "lifetime-too-long" });
    expect(await verify(await mint({}, { iat: NOW_S - 3000, exp: NOW_S + 30 }))).toEqual({ ok: false, reason: "lifetime-too-long" });
  });

  it("refuses a valid token replayed on another path, method or body", async () => {
    const get = await mint();
    expect(await verify(get, { url: "http://127.0.0.1:8789/pim/products/sku-2" })).toEqual({ ok: false, reason: "url-mismatch" });
    expect(await verify(get, { url: "http://vendor.example.com/pim/products/sku-1" })).toEqual({ ok: false, reason: "url-mismatch" });
    expect(await verify(get, { method: "DELETE" })).toEqual({ ok: false, reason: "method-mismatch" });

    const body = JSON.stringify({ to: "a@example.com", subject: "Hi", text: "Hello" });
    const post = await mint({ method: "POST", url: NOTIFY_URL, body });
    const other = JSON.stringify({ to: "attacker@example.com", subject: "Hi", text: "Hello" });
    expect(await verify(post, { method: "POST", url: NOTIFY_URL, body: other })).toEqual({ ok: false, reason: "body-mismatch" });
    // Same JSON value, different bytes: the hash covers the exact bytes.
    expect(await verify(post, { method: "POST", url: NOTIFY_URL, body: `${body} ` })).toEqual({ ok: false, reason: "body-mismatch" });
    expect(await verify(post, { method: "POST", url: NOTIFY_URL, body })).toMatchObject({ ok: true });
  });

  it("refuses an htu carrying a query or a fragment", async () => {
    expect(await verify(await mint({}, { htu: `${PIM_URL}?x=1` }), { url: `${PIM_URL}?x=1` })).toEqual({ ok: false, reason: "url-mismatch" });
    expect(await verify(await mint({}, { htu: "not a url" }))).toEqual({ ok: false, reason: "url-mismatch" });
  });

  it("refuses the same jti twice, and only a fully valid token consumes it", async () => {
    const store = memoryStore();
    const token = await mint();
    // Misuse first: refused for the binding, and the jti is left untouched.
    expect(await verify(token, { method: "POST" }, { seen: store.seen })).toEqual({ ok: false, reason: "method-mismatch" });
    expect(store.jtis.size).toBe(0);
    expect(await verify(token, {}, { seen: store.seen })).toMatchObject({ ok: true });
    expect(await verify(token, {}, { seen: store.seen })).toEqual({ ok: false, reason: "replayed" });
    // A fresh token with a reused jti is a replay too.
    const claims = await claimsFor();
    const reused = await mint({}, { jti: claims.jti });
    expect(await verify(await sign(claims), {}, { seen: store.seen })).toMatchObject({ ok: true });
    expect(await verify(reused, {}, { seen: store.seen })).toEqual({ ok: false, reason: "replayed" });
  });

  it("refuses tokens not shaped like mesh tokens", async () => {
    expect(await verify("not-a-jwt")).toEqual({ ok: false, reason: "malformed" });
    expect(await verify("a.b.c")).toEqual({ ok: false, reason: "malformed" });
    expect(await verify(await sign(await claimsFor(), es256, { kid: undefined }))).toEqual({ ok: false, reason: "malformed" });
    expect(await verify(await sign(await claimsFor(), es256, { typ: "dpop+jwt" }))).toEqual({ ok: false, reason: "malformed" });
    for (const claim of ["sub", "jti", "iat", "exp", "htm", "htu", "body_sha256"]) {
      expect(await verify(await mint({}, { [claim]: undefined })), claim).toEqual({ ok: false, reason: "malformed" });
    }
    expect(await verify(await mint({}, { body_sha256: "abc" }))).toEqual({ ok: false, reason: "malformed" });
  });

  it("answers keys-unavailable, not a token error, when the JWKS cannot be fetched", async () => {
    const token = await mint();
    // Real jose remote key sets; only the transport is replaced (jose's customFetch hook).
    const failing: FetchImplementation = async () => new Response("unavailable", { status: 503 });
    const down = createRemoteJWKSet(new URL(`${ISSUER}/.well-known/jwks.json`), { ...REMOTE_JWKS_OPTIONS, [customFetch]: failing });
    expect(await verify(token, {}, { keys: down })).toEqual({ ok: false, reason: "keys-unavailable" });

    // A JWKS endpoint that never answers is cut off by the timeout.
    const hanging: FetchImplementation = (_url, options) =>
      new Promise((_resolve, reject) =>
        options.signal.addEventListener("abort", () => {
          const reason: unknown = options.signal.reason;
          reject(reason instanceof Error ? reason : new Error("aborted"));
        }),
      );
    const slow = createRemoteJWKSet(new URL(`${ISSUER}/.well-known/jwks.json`), { timeoutDuration: 50, [customFetch]: hanging });
    expect(await verify(token, {}, { keys: slow })).toEqual({ ok: false, reason: "keys-unavailable" });
  });
});

describe("verifyMeshToken with the vendor's remote JWKS", () => {
  it("refetches the JWKS for an unknown kid, so a key rotation fails no call", async () => {
    const next = await signingKey("EdDSA", "mesh-ed25519-2");
    let published: JWK[] = [es256.publicJwk];
    let fetches = 0;
    const jwksEndpoint: FetchImplementation = async () => {
      fetches += 1;
      return Response.json({ keys: published });
    };
    const remote = createRemoteJWKSet(new URL(`${ISSUER}/.well-known/jwks.json`), { ...REMOTE_JWKS_OPTIONS, [customFetch]: jwksEndpoint });

    expect(await verify(await mint(), {}, { keys: remote })).toMatchObject({ ok: true });
    expect(await verify(await mint(), {}, { keys: remote })).toMatchObject({ ok: true });
    expect(fetches).toBe(1); // cached

    // The mesh publishes its new key, and (after the 1 s refetch cooldown) signs with it.
    published = [es256.publicJwk, next.publicJwk];
    await new Promise((resolve) => setTimeout(resolve, REMOTE_JWKS_OPTIONS.cooldownDuration + 100));
    expect(await verify(await mint({}, {}, next), {}, { keys: remote })).toMatchObject({ ok: true });
    expect(fetches).toBe(2);
    // Tokens of the retired key still in flight keep verifying while it stays published.
    expect(await verify(await mint(), {}, { keys: remote })).toMatchObject({ ok: true });
    expect(fetches).toBe(2);
  });
});
