/**
 * weft-vendor: a demo third-party provider that Weft calls. It offers product data (the same
 * catalog and prices as the in-house pim, audience `vendor-pim`) and a notification inbox
 * (audience `vendor-notify`), and trusts a call only if its mesh token verifies against the
 * control plane's public JWKS (see verify.ts for the contract). Notifications also accept an API key
 * in `x-api-key` (the secret NOTIFY_API_KEY), as most real notification providers do, so the mesh
 * config can swap the backend's `auth` between `weft-jwt` and `header` without touching a service.
 *
 *   GET  /pim/products/:sku  product JSON (`version: "vendor"`), 404 for an unknown sku
 *   POST /notify/messages    `{ to, subject, text, ... }` → 202 `{ id }`
 *   GET  /notify/received    `{ messages: [...] }` newest first; unauthenticated inspection page
 *
 * A refused token is 401 problem+json with the reason in `detail` and in `WWW-Authenticate`.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { createRemoteJWKSet } from "jose";
import type { JWTVerifyGetKey } from "jose";
import * as z from "zod";
import { problemResponse } from "../../../shared/problem.ts";
import { findProduct } from "../workers/pim/catalog.ts";
import type { ProductV1 } from "../workers/pim/catalog.ts";
import { fromLog, ledgerOf, type ReceivedMessage } from "./ledger.ts";
import { REMOTE_JWKS_OPTIONS, verifyMeshToken, type MeshClaims, type VerifyFailure } from "./verify.ts";

// The Durable Object class must be exported by the main module.
export { VendorLedger } from "./ledger.ts";

type App = { Bindings: VendorEnv };

// Token audiences, one per provider the mesh knows this vendor as. Not exported: workerd accepts
// only handlers and classes as exports of the main module.
const PIM_AUDIENCE = "vendor-pim";
const NOTIFY_AUDIENCE = "vendor-notify";

/** A product as the vendor serves it: pim v1's shape and prices, marked as the vendor's. */
export type VendorProduct = Omit<ProductV1, "version"> & { version: "vendor" };

// Notifications are small; the cap bounds what an unauthenticated caller can make us buffer
// before the token (which covers the body hash) can be checked.
const MAX_BODY_BYTES = 64 * 1024;

const NO_STORE = { "cache-control": "no-store" };

// Extra fields (e.g. `order`) are accepted and kept as sent.
const notificationSchema = z.looseObject({
  to: z.string().min(1),
  subject: z.string(),
  text: z.string(),
});

// One key set per JWKS URL for the isolate's lifetime, so its cache survives across requests: a
// known kid costs no fetch, and an unknown one (a rotation) triggers a refetch (REMOTE_JWKS_OPTIONS).
const keySets = new Map<string, JWTVerifyGetKey>();

function keysFor(jwksUrl: string): JWTVerifyGetKey {
  let keys = keySets.get(jwksUrl);
  if (keys === undefined) {
    keys = createRemoteJWKSet(new URL(jwksUrl), REMOTE_JWKS_OPTIONS);
    keySets.set(jwksUrl, keys);
  }
  return keys;
}

/** The request body, or undefined when it exceeds `limit` bytes (declared or actual). */
async function readBounded(req: Request, limit: number): Promise<ArrayBuffer | undefined> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) return undefined;
  if (req.body === null) return new ArrayBuffer(0);
  // Read incrementally: a chunked body has no content-length to refuse up front.
  const reader: ReadableStreamDefaultReader<unknown> = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!(value instanceof Uint8Array)) throw new TypeError("request body chunk is not bytes");
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes.buffer;
}

/** The response refusing a call whose token failed verification. */
function refusal(reason: VerifyFailure, instance: string): Response {
  if (reason === "keys-unavailable") {
    // Our problem, not the caller's: a 401 would tell the mesh its token is bad.
    return problemResponse(
      503,
      "keys-unavailable",
      "Mesh signing keys unavailable",
      { detail: "the vendor could not fetch the mesh JWKS; retry shortly", instance, reason },
      { "retry-after": "1" },
    );
  }
  return problemResponse(
    401,
    "invalid-token",
    "Invalid mesh token",
    { detail: reason, instance, reason },
    { "www-authenticate": `Bearer error="invalid_token", error_description="${reason}"` },
  );
}

type Authenticated = { ok: true; claims: MeshClaims; body: ArrayBuffer } | { ok: false; response: Response };

/** Reads the body once and verifies the call's token for `audience` over those exact bytes. */
async function authenticate(c: Context<App>, audience: string): Promise<Authenticated> {
  const instance = c.req.path;
  const body = await readBounded(c.req.raw, MAX_BODY_BYTES);
  if (body === undefined) {
    return {
      ok: false,
      response: problemResponse(413, "too-large", "Request body too large", {
        detail: `bodies are limited to ${MAX_BODY_BYTES} bytes`,
        instance,
      }),
    };
  }
  const ledger = ledgerOf(c.env);
  const result = await verifyMeshToken(c.req.raw, body, {
    keys: keysFor(c.env.WEFT_JWKS_URL),
    issuer: c.env.WEFT_ISSUER,
    audience,
    seen: (jti, exp) => ledger.firstSeen(jti, exp),
  });
  return result.ok ? { ok: true, claims: result.claims, body } : { ok: false, response: refusal(result.reason, instance) };
}

const app = new Hono<App>();

app.get("/pim/products/:sku", async (c) => {
  const auth = await authenticate(c, PIM_AUDIENCE);
  if (!auth.ok) return auth.response;
  const sku = c.req.param("sku");
  const product = findProduct(sku, "v1");
  if (!product) {
    return problemResponse(404, "not-found", "Unknown product", {
      detail: `no product with sku '${sku}'`,
      instance: c.req.path,
      sku,
    });
  }
  const { sku: id, name, category, price, currency, stock } = product;
  return c.json({ sku: id, name, category, price, currency, stock, version: "vendor" } satisfies VendorProduct, 200, NO_STORE);
});

/** SHA-256 of a string, so keys of any length are compared in constant time. */
async function digest(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

/** A call authenticated by `x-api-key`, compared in constant time with the NOTIFY_API_KEY secret. */
async function authenticateApiKey(c: Context<App>, key: string): Promise<{ ok: true; caller: { sub: string; aud: string; jti: string }; body: ArrayBuffer } | { ok: false; response: Response }> {
  const instance = c.req.path;
  const expected = c.env.NOTIFY_API_KEY;
  const valid = typeof expected === "string" && expected !== "" && crypto.subtle.timingSafeEqual(await digest(key), await digest(expected));
  if (!valid) {
    return { ok: false, response: problemResponse(401, "invalid-api-key", "Invalid API key", { detail: "the x-api-key header does not hold this vendor's key", instance }, { "www-authenticate": 'ApiKey header="x-api-key"' }) };
  }
  const body = await readBounded(c.req.raw, MAX_BODY_BYTES);
  if (body === undefined) return { ok: false, response: problemResponse(413, "too-large", "Request body too large", { detail: `bodies are limited to ${MAX_BODY_BYTES} bytes`, instance }) };
  return { ok: true, caller: { sub: "api-key", aud: NOTIFY_AUDIENCE, jti: `api-key:${crypto.randomUUID()}` }, body };
}

app.post("/notify/messages", async (c) => {
  const apiKey = c.req.header("x-api-key");
  const auth = apiKey !== undefined ? await authenticateApiKey(c, apiKey) : await authenticate(c, NOTIFY_AUDIENCE);
  if (!auth.ok) return auth.response;
  const caller = "caller" in auth ? auth.caller : auth.claims;
  const instance = c.req.path;
  let json: unknown;
  try {
    // The same bytes the token's body_sha256 was checked against; fatal decoding refuses bad UTF-8.
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(auth.body));
  } catch {
    return problemResponse(400, "malformed-json", "Request body is not valid JSON", {
      detail: "Send a JSON document with Content-Type: application/json.",
      instance,
    });
  }
  const parsed = notificationSchema.safeParse(json);
  if (!parsed.success) {
    return problemResponse(422, "invalid-request", "Request body is invalid", {
      detail: parsed.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; "),
      instance,
      issues: parsed.error.issues,
    });
  }
  const message: ReceivedMessage = {
    id: crypto.randomUUID(),
    receivedAt: new Date().toISOString(),
    sub: caller.sub,
    aud: caller.aud,
    jti: caller.jti,
    traceparent: c.req.header("traceparent") ?? null,
    body: parsed.data,
  };
  await ledgerOf(c.env).record(message);
  return c.json({ id: message.id }, 202, NO_STORE);
});

app.get("/notify/received", async (c) => {
  const messages = (await ledgerOf(c.env).list()).map(fromLog);
  return c.json({ messages }, 200, NO_STORE);
});

// Registered after the handlers above, so only other methods reach them (Hono answers HEAD with GET's handler).
const methodNotAllowed =
  (allow: string) =>
  (c: Context<App>): Response =>
    problemResponse(
      405,
      "method-not-allowed",
      "Method not allowed",
      { detail: `${c.req.method} is not supported on ${c.req.path}`, instance: c.req.path },
      { allow },
    );
app.all("/pim/products/:sku", methodNotAllowed("GET, HEAD"));
app.all("/notify/messages", methodNotAllowed("POST"));
app.all("/notify/received", methodNotAllowed("GET, HEAD"));

app.notFound((c) =>
  problemResponse(404, "not-found", "Not found", { detail: `no resource at ${c.req.path}`, instance: c.req.path }),
);

app.onError((err, c) => {
  console.error("weft-vendor: unhandled error", err);
  return problemResponse(500, "internal", "Internal error", { instance: c.req.path });
});

export default app;
