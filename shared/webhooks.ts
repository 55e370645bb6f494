/**
 * Inbound webhook signatures, one pure function per provider scheme. Each reads the provider's own
 * headers, recomputes the HMAC over the exact raw body with every configured secret (several at
 * once while a secret rotates) and compares with WebCrypto's `verify`, which is constant-time, so
 * a forger learns nothing from timing. Schemes with a signed timestamp are refused outside the
 * tolerance window. The result names the delivery (`id`) and the key under which a replay of this
 * exact delivery is refused (`replayKey`); storing it is the caller's job.
 *
 * Provider rules followed (their published docs):
 * - stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of `<t>.<body>` keyed by
 *   the endpoint secret (`whsec_…`, used as is).
 * - github: `X-Hub-Signature-256: sha256=<hex>` over the body, `X-GitHub-Delivery` names it.
 * - shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body, `X-Shopify-Webhook-Id` names it.
 * - standard-webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> …` over
 *   `<id>.<timestamp>.<body>`, keyed by the base64 after `whsec_`.
 * - hmac-sha256: a plain HMAC-SHA256 of the body, hex (optionally `sha256=`) or base64, in a
 *   configurable header (default `x-signature-sha256`); optional id header.
 */

/** The schemes Weft verifies. */
export const WEBHOOK_SCHEMES = ["stripe", "github", "shopify", "standard-webhooks", "hmac-sha256"] as const;
export type WebhookScheme = (typeof WEBHOOK_SCHEMES)[number];

/** What a scheme needs besides the secrets. */
export interface WebhookCheck {
  scheme: WebhookScheme;
  /** Seconds a signed timestamp may be away from now (schemes with a timestamp). */
  toleranceSeconds: number;
  /** hmac-sha256 only: where the signature and the delivery id are. */
  signatureHeader?: string;
  idHeader?: string;
}

/** Outcome of {@link verifyWebhookSignature}. `reason` never contains a secret or a signature. */
export type WebhookVerdict =
  | { kind: "verified"; id: string | undefined; replayKey: string; timestamp: number | undefined }
  | { kind: "refused"; reason: string };

/** Header values longer than this are refused unread (a Stripe header with 8 signatures is ~600). */
export const MAX_SIGNATURE_HEADER = 2_048;
/** At most this many signatures in one header are tried (rotation sends two). */
const MAX_SIGNATURES = 8;
/** Delivery ids longer than this are refused: they become storage keys. */
const MAX_ID_LENGTH = 256;

interface HeaderSource {
  get(name: string): string | null;
}

const encoder = new TextEncoder();

/** UTF-8 bytes backed by a plain ArrayBuffer (what WebCrypto's types ask for). */
function utf8(text: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(encoder.encode(text));
}

function refused(reason: string): WebhookVerdict {
  return { kind: "refused", reason };
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Bytes of a hex string, or undefined if it is not one. */
export function fromHex(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Bytes of a base64 (or base64url) string, or undefined if it is not one. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  const normal = text.replace(/-/g, "+").replace(/_/g, "/");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(normal)) return undefined;
  try {
    const binary = atob(normal.padEnd(Math.ceil(normal.length / 4) * 4, "="));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

async function hmacKey(secret: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
}

/**
 * Whether any candidate signature is the HMAC-SHA256 of `data` under any key. `crypto.subtle.verify`
 * compares in constant time; candidates of the wrong length simply fail.
 */
async function anyMatches(keys: ReadonlyArray<Uint8Array<ArrayBuffer>>, data: Uint8Array<ArrayBuffer>, candidates: ReadonlyArray<Uint8Array<ArrayBuffer>>): Promise<boolean> {
  for (const raw of keys) {
    const key = await hmacKey(raw);
    for (const candidate of candidates) {
      if (await crypto.subtle.verify("HMAC", key, candidate, data)) return true;
    }
  }
  return false;
}

function checkTimestamp(seconds: number, now: number, toleranceSeconds: number): string | undefined {
  if (!Number.isSafeInteger(seconds)) return "the signature timestamp is not a number";
  if (Math.abs(now / 1000 - seconds) > toleranceSeconds) return `the signature timestamp is outside the ${toleranceSeconds} s tolerance`;
  return undefined;
}

/** A delivery id header: absent (undefined), usable (the string), or malformed (null). */
function boundedId(id: string | null): string | undefined | null {
  if (id === null || id === "") return undefined;
  return id.length > MAX_ID_LENGTH || !/^[\x21-\x7e]+$/.test(id) ? null : id;
}

/** The event id of a JSON body (`{"id": "evt_…"}`), if it has one. */
function jsonId(body: Uint8Array): string | undefined {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(body));
    if (typeof parsed === "object" && parsed !== null && "id" in parsed && typeof parsed.id === "string") {
      return boundedId(parsed.id) ?? undefined;
    }
  } catch {
    // Not JSON: the delivery has no id of its own.
  }
  return undefined;
}

async function stripe(headers: HeaderSource, body: Uint8Array<ArrayBuffer>, secrets: readonly string[], check: WebhookCheck, now: number): Promise<WebhookVerdict> {
  const header = headers.get("stripe-signature");
  if (header === null) return refused("the Stripe-Signature header is missing");
  let timestamp: number | undefined;
  const candidates: Array<Uint8Array<ArrayBuffer>> = [];
  const hexes: string[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (name === "t") timestamp = /^\d{1,12}$/.test(value) ? Number(value) : Number.NaN;
    else if (name === "v1" && candidates.length < MAX_SIGNATURES) {
      const bytes = fromHex(value);
      if (bytes) {
        candidates.push(bytes);
        hexes.push(value.toLowerCase());
      }
    }
  }
  if (timestamp === undefined) return refused("the Stripe-Signature header has no timestamp");
  if (candidates.length === 0) return refused("the Stripe-Signature header has no v1 signature");
  const late = checkTimestamp(timestamp, now, check.toleranceSeconds);
  if (late) return refused(late);
  const signed = concat(utf8(`${timestamp}.`), body);
  if (!(await anyMatches(secrets.map(utf8), signed, candidates))) return refused("no signature matches the body under any configured secret");
  const id = jsonId(body);
  // Stripe signs every attempt afresh (new t), so id + t tells a retry from a replay of one attempt.
  return { kind: "verified", id, replayKey: `stripe:${id ?? hexes.join("+")}:${timestamp}`, timestamp };
}

async function bodyHmac(
  scheme: WebhookScheme,
  signature: string | null,
  idHeader: string | null,
  body: Uint8Array<ArrayBuffer>,
  secrets: readonly string[],
  decode: (text: string) => Uint8Array<ArrayBuffer> | undefined,
): Promise<WebhookVerdict> {
  if (signature === null) return refused("the signature header is missing");
  const bytes = decode(signature.trim());
  if (!bytes) return refused("the signature header is malformed");
  const id = boundedId(idHeader);
  if (id === null) return refused("the delivery id header is malformed");
  if (!(await anyMatches(secrets.map(utf8), body, [bytes]))) return refused("the signature does not match the body under any configured secret");
  // Without an id the signature stands for the delivery: the same bytes again are a replay.
  return { kind: "verified", id, replayKey: `${scheme}:${id ?? signature.trim()}`, timestamp: undefined };
}

async function standardWebhooks(headers: HeaderSource, body: Uint8Array<ArrayBuffer>, secrets: readonly string[], check: WebhookCheck, now: number): Promise<WebhookVerdict> {
  const id = boundedId(headers.get("webhook-id"));
  const timestampText = headers.get("webhook-timestamp");
  const signatures = headers.get("webhook-signature");
  if (id === undefined || timestampText === null || signatures === null) return refused("webhook-id, webhook-timestamp and webhook-signature are required");
  if (id === null || id.includes(".")) return refused("the webhook-id header is malformed");
  if (!/^\d{1,12}$/.test(timestampText)) return refused("the webhook-timestamp header is not a number");
  const timestamp = Number(timestampText);
  const late = checkTimestamp(timestamp, now, check.toleranceSeconds);
  if (late) return refused(late);
  const candidates = signatures
    .split(" ")
    .slice(0, MAX_SIGNATURES)
    .flatMap((entry) => {
      const [version, value] = entry.split(",", 2);
      const bytes = version === "v1" && value !== undefined ? fromBase64(value) : undefined;
      return bytes ? [bytes] : [];
    });
  if (candidates.length === 0) return refused("the webhook-signature header has no v1 signature");
  const keys = secrets.flatMap((secret) => {
    const key = fromBase64(secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret);
    return key && key.byteLength > 0 ? [key] : [];
  });
  if (keys.length === 0) return refused("the configured secret is not a base64 Standard Webhooks secret");
  const signed = concat(utf8(`${id}.${timestamp}.`), body);
  if (!(await anyMatches(keys, signed, candidates))) return refused("no signature matches the body under any configured secret");
  // The id stays the same when a message is resent (with a new timestamp): id + timestamp is one attempt.
  return { kind: "verified", id, replayKey: `standard-webhooks:${id}:${timestamp}`, timestamp };
}

function hexOrBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  const hex = text.startsWith("sha256=") ? text.slice("sha256=".length) : text;
  return (hex.length === 64 ? fromHex(hex) : undefined) ?? fromBase64(text);
}

/**
 * Verifies one inbound webhook. `secrets` are the secret values (several while rotating); `now` is
 * milliseconds since the epoch. Bodies are the raw bytes as received: re-serialised JSON would not
 * verify.
 */
export async function verifyWebhookSignature(
  check: WebhookCheck,
  headers: HeaderSource,
  body: Uint8Array<ArrayBuffer>,
  secrets: readonly string[],
  now: number,
): Promise<WebhookVerdict> {
  if (secrets.length === 0) return refused("no secret is configured for this webhook");
  if (signatureHeadersTooLarge(headers, check)) return refused(`a signature header is longer than ${MAX_SIGNATURE_HEADER} characters`);
  switch (check.scheme) {
    case "stripe":
      return stripe(headers, body, secrets, check, now);
    case "github": {
      const header = headers.get("x-hub-signature-256");
      if (header !== null && !header.startsWith("sha256=")) return refused("X-Hub-Signature-256 must start with 'sha256='");
      return bodyHmac("github", header === null ? null : header.slice("sha256=".length), headers.get("x-github-delivery"), body, secrets, fromHex);
    }
    case "shopify":
      return bodyHmac("shopify", headers.get("x-shopify-hmac-sha256"), headers.get("x-shopify-webhook-id"), body, secrets, fromBase64);
    case "standard-webhooks":
      return standardWebhooks(headers, body, secrets, check, now);
    case "hmac-sha256":
      return bodyHmac(
        "hmac-sha256",
        headers.get(check.signatureHeader ?? "x-signature-sha256"),
        check.idHeader ? headers.get(check.idHeader) : null,
        body,
        secrets,
        hexOrBase64,
      );
  }
}

/** Oversized signature headers are refused before any work. */
function signatureHeadersTooLarge(headers: HeaderSource, check: WebhookCheck): boolean {
  const names = ["stripe-signature", "x-hub-signature-256", "x-shopify-hmac-sha256", "webhook-signature", "webhook-id", "x-github-delivery", "x-shopify-webhook-id", check.signatureHeader ?? "x-signature-sha256", ...(check.idHeader ? [check.idHeader] : [])];
  return names.some((name) => (headers.get(name)?.length ?? 0) > MAX_SIGNATURE_HEADER);
}
