/**
 * State the mesh keeps about third parties, off the request path:
 * - WebhookDeliveries, one object per service (`idFromName(service)`): the delivery keys of verified
 *   inbound webhooks, each kept for the route's tolerance window, so a replayed delivery is refused
 *   by every isolate of every data center, not only by the isolate that saw it first.
 * - VendorTokens, one object per OAuth 2.0 client (`idFromName(hash of token URL, client, scope,
 *   audience and secret)`): holds the client-credentials access token in memory and fetches a new
 *   one, once, shortly before it expires or when a provider refused it. Every proxy isolate asks
 *   this object on a miss, so a mesh makes one token request per token lifetime, not one per isolate.
 */
import { DurableObject } from "cloudflare:workers";
import type { VendorTokenRequest } from "../shared/slice.ts";
import { plainStub, type PlainStub } from "./rpc.ts";

/** Delivery keys kept per service at most; beyond it new deliveries are refused (fail closed). */
export const MAX_DELIVERIES = 100_000;

/** The replay store of `service`'s webhooks. */
export function webhookDeliveriesOf(env: ControlPlaneEnv, service: string): PlainStub<WebhookDeliveries> {
  return plainStub<WebhookDeliveries>(env.WEBHOOK_DELIVERIES.get(env.WEBHOOK_DELIVERIES.idFromName(service)));
}

/** Result of {@link WebhookDeliveries.claim}. */
export type DeliveryClaim = "first" | "replay" | "full";

export class WebhookDeliveries extends DurableObject<ControlPlaneEnv> {
  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    ctx.storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS deliveries_expiry ON deliveries (expires_at);`);
  }

  /**
   * Records `key` (a fixed-size hash of the delivery) for `ttlSeconds`. Runs without awaiting, so two
   * concurrent claims of one key cannot both be "first". Expired keys are deleted on the way (the
   * index makes that a range delete) and by an alarm, so storage stays bounded by the window.
   */
  claim(key: string, ttlSeconds: number, now: number): DeliveryClaim {
    if (!/^[0-9a-f]{64}$/.test(key) || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 3_600) throw new RangeError("invalid delivery claim");
    const sql = this.ctx.storage.sql;
    sql.exec("DELETE FROM deliveries WHERE expires_at <= ?", now);
    const seen = sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries WHERE key = ?", key).one().n;
    if (seen > 0) return "replay";
    if (sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries").one().n >= MAX_DELIVERIES) return "full";
    const expiresAt = now + ttlSeconds * 1000;
    sql.exec("INSERT INTO deliveries (key, expires_at) VALUES (?, ?)", key, expiresAt);
    void this.ctx.storage.getAlarm().then((alarm) => (alarm === null ? this.ctx.storage.setAlarm(expiresAt + 1_000) : undefined));
    return "first";
  }

  /** Deletes expired keys; comes back while any remain. */
  override alarm(): void {
    const sql = this.ctx.storage.sql;
    sql.exec("DELETE FROM deliveries WHERE expires_at <= ?", Date.now());
    const next = sql.exec<{ at: number | null }>("SELECT MIN(expires_at) AS at FROM deliveries").one().at;
    if (next !== null) void this.ctx.storage.setAlarm(next + 1_000);
  }
}

/** What a proxy sends to get a client-credentials token (the secret travels, it is never stored). */
export type TokenRequest = VendorTokenRequest;

/** An access token and when it expires (ms since the epoch). */
export interface VendorToken {
  accessToken: string;
  expiresAt: number;
}

/** The token object of one OAuth client. */
export function vendorTokensOf(env: ControlPlaneEnv, key: string): PlainStub<VendorTokens> {
  return plainStub<VendorTokens>(env.VENDOR_TOKENS.get(env.VENDOR_TOKENS.idFromName(key)));
}

/**
 * How long before expiry a token stops being handed out: a tenth of its lifetime, at most 60 s,
 * so a call never leaves with a token that expires on the way.
 */
export function refreshMargin(lifetimeMs: number): number {
  return Math.min(60_000, Math.max(0, lifetimeMs / 10));
}

/** Whether `token` may still be used at `now`. */
export function tokenUsable(token: VendorToken & { issuedAt: number }, now: number): boolean {
  return now < token.expiresAt - refreshMargin(token.expiresAt - token.issuedAt);
}

const TOKEN_TIMEOUT_MS = 5_000;
const MAX_TOKEN_RESPONSE = 64 * 1024;
/** Token lifetimes are capped (a provider saying "a year" still gets asked again daily). */
const MAX_LIFETIME_S = 86_400;
const DEFAULT_LIFETIME_S = 300;

/** RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding. */
function basicCredentials(id: string, secret: string): string {
  const form = (s: string): string => encodeURIComponent(s).replace(/%20/g, "+");
  return btoa(String.fromCharCode(...new TextEncoder().encode(`${form(id)}:${form(secret)}`)));
}

/** A response body as text, or undefined (and the rest cancelled) past `limit` bytes. */
async function boundedText(response: Response, limit: number): Promise<string | undefined> {
  if (!response.body) return "";
  const reader: ReadableStreamDefaultReader<unknown> = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!(value instanceof Uint8Array)) throw new TypeError("token response chunk is not bytes");
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const decoder = new TextDecoder();
  return chunks.map((chunk) => decoder.decode(chunk, { stream: true })).join("") + decoder.decode();
}

/** Fetches a new token from the provider's token endpoint; errors never carry the secret. */
export async function fetchClientCredentialsToken(request: TokenRequest, now: () => number): Promise<VendorToken & { issuedAt: number }> {
  const form = new URLSearchParams({ grant_type: "client_credentials" });
  if (request.scope) form.set("scope", request.scope);
  if (request.audience) form.set("audience", request.audience);
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
  if (request.authMethod === "client_secret_post") {
    form.set("client_id", request.clientId);
    form.set("client_secret", request.clientSecret);
  } else {
    headers.authorization = `Basic ${basicCredentials(request.clientId, request.clientSecret)}`;
  }
  const issuedAt = now();
  const response = await fetch(request.tokenUrl, { method: "POST", headers, body: form.toString(), redirect: "manual", signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS) });
  const text = await boundedText(response, MAX_TOKEN_RESPONSE);
  if (text === undefined) throw new Error(`token endpoint answered ${response.status} with an oversized body`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`token endpoint answered ${response.status} without JSON`);
  }
  const field = (name: string): unknown => (typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, name) : undefined);
  if (!response.ok) {
    // Only the OAuth error code: error_description may echo what was sent.
    const code = field("error");
    throw new Error(`token endpoint answered ${response.status}${typeof code === "string" ? ` (${code.slice(0, 64)})` : ""}`);
  }
  const accessToken = field("access_token");
  if (typeof accessToken !== "string" || accessToken === "" || accessToken.length > 16_384) throw new Error("token endpoint answered without an access_token");
  const expiresIn = field("expires_in");
  const lifetime = typeof expiresIn === "number" && expiresIn > 0 ? Math.min(expiresIn, MAX_LIFETIME_S) : DEFAULT_LIFETIME_S;
  return { accessToken, expiresAt: issuedAt + lifetime * 1000, issuedAt };
}

export class VendorTokens extends DurableObject<ControlPlaneEnv> {
  // Memory only: an access token is a credential, so it is never written to storage. An evicted
  // object simply asks the provider again.
  private current: (VendorToken & { issuedAt: number }) | undefined;
  private pending: Promise<VendorToken & { issuedAt: number }> | undefined;

  /** A usable token, fetched at most once at a time however many callers ask. */
  async token(request: TokenRequest): Promise<VendorToken> {
    if (request.rejected !== undefined && this.current?.accessToken === request.rejected) this.current = undefined;
    if (this.current && tokenUsable(this.current, Date.now())) return { accessToken: this.current.accessToken, expiresAt: this.current.expiresAt };
    if (this.pending === undefined) {
      this.pending = fetchClientCredentialsToken(request, () => Date.now()).finally(() => {
        this.pending = undefined;
      });
    }
    const fresh = await this.pending;
    this.current = fresh;
    return { accessToken: fresh.accessToken, expiresAt: fresh.expiresAt };
  }
}
