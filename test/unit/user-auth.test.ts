import { exports } from "cloudflare:workers";
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT, type JWTPayload } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { RouteAuth } from "../../shared/policy-schemas.ts";
import { authenticate, DEFAULT_MAX_TOKEN_AGE_SECONDS } from "../../shared/user-auth.ts";

const ISSUER = "https://id.shop.example";
const NOW = 1_900_000_000; // seconds; passed to authenticate so no test depends on the clock
let privateKey: CryptoKey;
let keys: ReturnType<typeof createLocalJWKSet>;
const auth = RouteAuth.parse({ issuer: ISSUER, audiences: ["shop"], jwks: { keys: [{ kty: "EC" }] }, algorithms: ["ES256"] });

beforeAll(async () => {
  const pair = await generateKeyPair("ES256", { extractable: true });
  privateKey = pair.privateKey;
  keys = createLocalJWKSet({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: "k1", alg: "ES256" }] });
});

async function token(claims: JWTPayload, header: Record<string, string> = {}): Promise<string> {
  return new SignJWT({ iss: ISSUER, aud: "shop", sub: "shopper-7", ...claims }).setProtectedHeader({ alg: "ES256", kid: "k1", ...header }).sign(privateKey);
}

async function verdict(claims: JWTPayload, header: Record<string, string> = {}, settings: RouteAuth = auth): Promise<string> {
  const result = await authenticate(`Bearer ${await token(claims, header)}`, settings, keys, NOW);
  return result.kind === "authenticated" ? "ok" : result.reason;
}

describe("end-user tokens: lifetime", () => {
  it("accepts a fresh token with iat and exp", async () => {
    expect(await verdict({ iat: NOW - 60, exp: NOW + 300 })).toBe("ok");
  });

  it("refuses a token without exp (it would never expire)", async () => {
    expect(await verdict({ iat: NOW - 60 })).toBe("token has no exp");
    expect(await verdict({})).toBe("token has no exp");
  });

  it("refuses a token older than maxAgeSeconds (default one day) even if its exp is far away", async () => {
    expect(await verdict({ iat: NOW - DEFAULT_MAX_TOKEN_AGE_SECONDS - 60, exp: NOW + 3_600 })).toBe(`token older than ${DEFAULT_MAX_TOKEN_AGE_SECONDS} s`);
    const short = RouteAuth.parse({ ...auth, maxAgeSeconds: 600 });
    expect(await verdict({ iat: NOW - 900, exp: NOW + 60 }, {}, short)).toBe("token older than 600 s");
    expect(await verdict({ iat: NOW - 300, exp: NOW + 60 }, {}, short)).toBe("ok");
  });

  it("refuses a token without iat whose exp lies further ahead than the maximum age", async () => {
    expect(await verdict({ exp: NOW + 10 * 365 * 86_400 })).toBe(`token without iat valid for more than ${DEFAULT_MAX_TOKEN_AGE_SECONDS} s`);
    expect(await verdict({ exp: NOW + 3_600 })).toBe("ok");
  });

  it("refuses a token issued in the future and an expired one", async () => {
    expect(await verdict({ iat: NOW + 3_600, exp: NOW + 7_200 })).toBe("token issued in the future");
    expect(await verdict({ iat: NOW - 600, exp: NOW - 60 })).toBe("token expired");
  });
});

describe("end-user tokens: typ", () => {
  it.each(["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])("accepts typ %s", async (typ) => {
    expect(await verdict({ iat: NOW, exp: NOW + 60 }, { typ })).toBe("ok");
  });

  it.each(["logout+jwt", "secevent+jwt", "dpop+jwt", "JWE"])("refuses typ %s (a token meant for something else)", async (typ) => {
    expect(await verdict({ iat: NOW, exp: NOW + 60 }, { typ })).toBe("token type not accepted");
  });
});

describe("jwksUrl", () => {
  const base = { issuer: ISSUER, audiences: ["shop"] };

  it.each(["https://id.shop.example/.well-known/jwks.json", "http://127.0.0.1:8787/jwks", "http://localhost/jwks", "http://[::1]:9000/jwks"])("accepts %s", (jwksUrl) => {
    expect(RouteAuth.safeParse({ ...base, jwksUrl }).success).toBe(true);
  });

  it.each(["http://id.shop.example/jwks", "http://10.0.0.8/jwks", "http://127.0.0.1.nip.io/jwks", "ftp://id.shop.example/jwks"])("refuses %s", (jwksUrl) => {
    const parsed = RouteAuth.safeParse({ ...base, jwksUrl });
    expect(parsed.success).toBe(false);
  });

  it("is refused by the admin API with a problem+json naming the field", async () => {
    const config = {
      services: [
        {
          name: "account",
          backends: [{ name: "account-v1", type: "worker", binding: "ACCOUNT_V1" }],
          routes: [{ name: "me", match: { path: "/account/*" }, split: { weights: { "account-v1": 100 } }, auth: { ...base, jwksUrl: "http://id.shop.example/jwks" } }],
        },
      ],
    };
    const response = await exports.default.fetch(
      new Request("https://weft.test/admin/config", {
        method: "PUT",
        headers: { authorization: "Bearer test-admin-token", "content-type": "application/json" },
        body: JSON.stringify(config),
      }),
    );
    // The admin API's validation status (422 with zod issues, see workers/control-plane/admin.ts).
    expect(response.status).toBe(422);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    const problem = await response.json<{ issues: Array<{ path: Array<string | number>; message: string }> }>();
    expect(problem.issues.some((i) => i.path.includes("jwksUrl") && /https/.test(i.message))).toBe(true);
  });
});
