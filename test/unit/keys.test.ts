import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_ACTIVATION_SECONDS, jwksRegistryOf, signingKeysOf, type PublicJwk, type SigningKeys } from "../../durable-objects/signing-keys.ts";
import { JwksCache, jwksApi, jwksCaching, publishedKeys } from "../../workers/control-plane/keys.ts";

const TOKEN = "test-admin-token";

function request(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${TOKEN}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`https://weft.test${path}`, { ...init, headers }));
}

async function jwks(): Promise<{ res: Response; body: JSONWebKeySet }> {
  const res = await exports.default.fetch(new Request("https://weft.test/.well-known/jwks.json"));
  return { res, body: await res.json<JSONWebKeySet>() };
}

const claims = { sub: "orders", aud: "vendor-notify", htm: "POST", htu: "https://notify.vendor.example/messages", body_sha256: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU" };

beforeAll(async () => {
  const res = await request("/admin/config", {
    method: "PUT",
    headers: { "if-match": "*" },
    body: JSON.stringify({
      services: [
        {
          name: "notify",
          backends: [{ name: "vendor-notify", type: "external", origin: "https://notify.vendor.example" }],
          routes: [{ split: { weights: { "vendor-notify": 100 } } }],
        },
      ],
    }),
  });
  expect(res.status).toBe(200);
});

describe("egress signing keys", () => {
  it("publishes public keys only, with kid, kty, alg and use, and a cache lifetime", async () => {
    const { res, body } = await jwks();
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toMatch(/^public, max-age=\d+, stale-while-revalidate=\d+$/);
    expect(body.keys.length).toBeGreaterThanOrEqual(1);
    for (const key of body.keys) {
      expect(key).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
      expect(typeof key.kid).toBe("string");
      expect(key).not.toHaveProperty("d");
    }
  });

  it("signs short-lived tokens bound to the request that verify against the JWKS", async () => {
    const { token, kid } = await signingKeysOf(env, "notify").sign("notify", claims);
    const { body } = await jwks();
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(body), {
      issuer: env.WEFT_PUBLIC_URL,
      audience: "vendor-notify",
      algorithms: ["ES256"],
    });
    expect(protectedHeader).toMatchObject({ alg: "ES256", kid, typ: "JWT" });
    expect(payload).toMatchObject({ sub: "orders", htm: "POST", htu: claims.htu, body_sha256: claims.body_sha256 });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBeLessThanOrEqual(60);
    expect(typeof payload.jti).toBe("string");
    const second = await signingKeysOf(env, "notify").sign("notify", claims);
    expect(decodeProtectedHeader(second.token).kid).toBe(kid);
    expect(second.token).not.toBe(token); // fresh jti and iat
  });

  it("rotates without breaking live tokens: the new key is added, the old one stays until its tokens expire", async () => {
    const before = await signingKeysOf(env, "notify").sign("notify", claims);
    const rotate = await request("/admin/keys/rotate", { method: "POST" });
    expect(rotate.status).toBe(200);
    const result = await rotate.json<{ rotated: Array<{ service: string; kid: string; previous: string | null }> }>();
    const notify = result.rotated.find((r) => r.service === "notify");
    expect(notify?.previous).toBe(before.kid);
    expect(JSON.stringify(result)).not.toMatch(/"d":/);

    const { body } = await jwks();
    const kids = body.keys.map((k) => k.kid);
    expect(kids).toContain(before.kid);
    expect(kids).toContain(notify?.kid);
    // A token signed just before the switch still verifies; new tokens use the new key.
    await jwtVerify(before.token, createLocalJWKSet(body), { audience: "vendor-notify" });
    const after = await signingKeysOf(env, "notify").sign("notify", claims);
    expect(after.kid).toBe(notify?.kid);

    // Once every token of the old key has expired, the alarm withdraws it.
    const stub = env.SIGNING_KEYS.get(env.SIGNING_KEYS.idFromName("notify"));
    await runInDurableObject(stub, (instance: SigningKeys, state) => {
      state.storage.sql.exec("UPDATE keys SET retired_at = ? WHERE kid = ?", Date.now() - 10 * 60_000, before.kid);
      expect(instance.publicKeys().map((k) => k.kid)).not.toContain(before.kid);
    });
    await runDurableObjectAlarm(stub);
    const later = (await jwks()).body.keys.map((k) => k.kid);
    expect(later).not.toContain(before.kid);
    expect(later).toContain(notify?.kid);
  });

  it("keeps private keys out of every admin response", async () => {
    const res = await request("/admin/keys");
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('"kid"');
    expect(text).not.toMatch(/"d":/);
  });

  it("needs the admin token to rotate", async () => {
    const res = await exports.default.fetch(new Request("https://weft.test/admin/keys/rotate", { method: "POST" }));
    expect(res.status).toBe(401);
  });
});

describe("JWKS caching", () => {
  it("keeps every layer of caching together shorter than the key activation delay", () => {
    const defaults = jwksCaching(DEFAULT_ACTIVATION_SECONDS);
    // Before: max-age=60 + stale-while-revalidate=30 = 90 s > 65 s.
    expect(defaults.maxAgeSeconds).toBeGreaterThanOrEqual(20);
    for (const activation of [DEFAULT_ACTIVATION_SECONDS, 600, 30, 10, 2, 0]) {
      const c = jwksCaching(activation);
      const total = c.isolateMs / 1000 + c.edgeSeconds + c.maxAgeSeconds + c.staleSeconds;
      expect(total, `activation ${activation} s`).toBeLessThan(Math.max(activation, 0.001));
      for (const value of Object.values(c)) expect(Number.isInteger(value) && value >= 0).toBe(true);
    }
  });

  it("serves a flood of JWKS requests with one build (one ConfigStore read), shared across isolates through the Cache API", async () => {
    let builds = 0;
    const build = async (e: ControlPlaneEnv): Promise<PublicJwk[]> => {
      builds += 1;
      return publishedKeys(e);
    };
    const cacheKey = `https://jwks.test/${crypto.randomUUID()}`;
    const production = { ...env, WEFT_KEY_ACTIVATION_SECONDS: "65" };
    const isolateA = jwksApi(new JwksCache({ cacheKey, build }));
    const get = async (app: typeof isolateA, query = ""): Promise<Response> => app.fetch(new Request(`https://weft.test/jwks.json${query}`), production);
    const flood = await Promise.all(Array.from({ length: 50 }, (_, i) => get(isolateA, `?bust=${i}`)));
    for (let i = 0; i < 50; i++) flood.push(await get(isolateA, `?bust=s${i}`));
    expect(flood.every((r) => r.status === 200)).toBe(true);
    const bodies = new Set(await Promise.all(flood.map((r) => r.text())));
    expect(bodies.size).toBe(1);
    expect(builds).toBe(1);
    expect(flood[0]?.headers.get("cache-control")).toBe("public, max-age=28, stale-while-revalidate=13");
    // Another isolate of the same data center finds the set in the Cache API.
    const isolateB = jwksApi(new JwksCache({ cacheKey, build }));
    expect(await (await get(isolateB)).text()).toBe([...bodies][0]);
    expect(builds).toBe(1);
  });
});

describe("concurrent key rotations", () => {
  it("run one at a time: the signing key is always published and exactly one key stays unretired", async () => {
    const stub = env.SIGNING_KEYS.get(env.SIGNING_KEYS.idFromName("notify"));
    const keys = signingKeysOf(env, "notify");
    // A double POST, a direct rotation and the scheduled one (alarm), all at once.
    const [a, b] = await Promise.all([
      request("/admin/keys/rotate", { method: "POST" }),
      request("/admin/keys/rotate", { method: "POST" }),
      keys.rotate("notify"),
      runDurableObjectAlarm(stub),
    ]);
    expect(a?.status).toBe(200);
    expect(b?.status).toBe(200);
    const { kid } = await keys.sign("notify", claims);
    const registered = (await jwksRegistryOf(env).keys()).map((k) => k.kid);
    expect(registered).toContain(kid);
    await runInDurableObject(stub, (instance: SigningKeys, state) => {
      const unretired = state.storage.sql.exec("SELECT kid FROM keys WHERE retired_at IS NULL").toArray();
      expect(unretired).toHaveLength(1);
      expect(unretired[0]?.kid).toBe(kid);
      // What the registry holds for the shard is exactly the table's published keys.
      expect(registered.filter((k) => instance.publicKeys().some((p) => p.kid === k)).sort()).toEqual(instance.publicKeys().map((p) => p.kid).sort());
    });
    // Once the retired keys' tokens have expired, the alarm withdraws every one of them.
    await runInDurableObject(stub, (_instance: SigningKeys, state) => {
      state.storage.sql.exec("UPDATE keys SET retired_at = ? WHERE retired_at IS NOT NULL", Date.now() - 10 * 60_000);
    });
    await runDurableObjectAlarm(stub);
    const after = await jwksRegistryOf(env).keys();
    expect(after.map((k) => k.kid)).toEqual([kid]);
  });
});
