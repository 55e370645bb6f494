/**
 * zod schemas of the per-route and per-backend policies (contracts, egress data policy, end-user
 * auth). They live apart from the code that applies them so the proxy, which only applies them,
 * bundles none of zod: its types are imported with `import type`, which compiles away.
 */
import * as z from "zod";
import { compileSchema } from "./contract.ts";
import { FIELD_PATH } from "./data-policy.ts";

/** A dotted JSON field path such as `customer.email` or `items[].email` (see shared/data-policy.ts). */
export const FieldPath = z
  .string()
  .max(256)
  .regex(FIELD_PATH, "use dotted keys with '[]' for every array element, e.g. 'customer.email' or 'items[].email'");
export type FieldPath = z.infer<typeof FieldPath>;

/**
 * Fields to strip from bodies sent to one external backend. A path listed in both lists is removed
 * (removal runs first, so there is nothing left to mask).
 */
export const EgressDataPolicy = z.strictObject({
  remove: z.array(FieldPath).max(64).default([]),
  mask: z.array(FieldPath).max(64).default([]),
  /**
   * Request headers this provider may receive besides the standard allowlist (content-type, accept,
   * accept-*, user-agent, idempotency-key, traceparent, tracestate); everything else is dropped.
   */
  headers: z
    .array(z.string().regex(/^[a-z0-9-]{1,64}$/, "a lowercase HTTP header name"))
    .max(16)
    .refine((names) => names.every((n) => !["cookie", "authorization", "proxy-authorization", "host", "x-forwarded-for", "forwarded", "x-real-ip", "cf-connecting-ip", "true-client-ip"].includes(n) && !n.startsWith("x-weft-")), "shoppers' credentials, addresses and mesh headers can never be sent to a third party")
    .optional(),
});
export type EgressDataPolicy = z.infer<typeof EgressDataPolicy>;
export type EgressDataPolicyInput = z.input<typeof EgressDataPolicy>;

/**
 * A JSON Schema (draft 2020-12 unless `$schema` names 2019-09, draft-07 or draft-04). Accepted only
 * if the validator can use it: every `$ref` resolves inside the document, regexes compile, no
 * `$dynamicRef`. Unknown keywords and formats are allowed (the spec makes them annotations).
 */
export const JsonSchemaDocument = z.record(z.string(), z.json()).superRefine((document, ctx) => {
  const compilation = compileSchema(document);
  if (compilation.kind === "invalid") ctx.addIssue({ code: "custom", message: compilation.message });
});
export type JsonSchemaDocument = z.infer<typeof JsonSchemaDocument>;

/** A route's body contract. `log` reports violations and forwards; `enforce` answers 422 instead. */
export const RouteContract = z.strictObject({
  mode: z.enum(["log", "enforce"]).default("log"),
  request: JsonSchemaDocument.optional(),
  response: JsonSchemaDocument.optional(),
});
export type RouteContract = z.infer<typeof RouteContract>;
export type RouteContractInput = z.input<typeof RouteContract>;

/** Claim value required on every token: one value, or any of a list. */
export const RequiredClaim = z.union([z.string(), z.number(), z.boolean(), z.array(z.string()).min(1)]);
export type RequiredClaim = z.infer<typeof RequiredClaim>;

/** Hosts that exist only on the machine itself: the one place a plain-http JWKS cannot be tampered with on the way. */
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "[::1]", "localhost"]);

/**
 * Where a route's signing keys are fetched: https, except on a loopback host (local development).
 * Over plain http anyone on the path could substitute keys and so mint any token.
 */
export const JwksUrl = z
  .url({ protocol: /^https?$/ })
  .max(2048)
  .refine((raw) => {
    const url = new URL(raw);
    return url.protocol === "https:" || LOOPBACK_HOSTS.has(url.hostname);
  }, "jwksUrl must use https (plain http only for 127.0.0.1, [::1] or localhost)");

/** A route's end-user authentication. Keys come from `jwksUrl` or are given inline in `jwks`. */
export const RouteAuth = z
  .strictObject({
    issuer: z.string().min(1),
    audiences: z.array(z.string().min(1)).min(1),
    jwksUrl: JwksUrl.optional(),
    jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.json())).min(1) }).optional(),
    algorithms: z.array(z.enum(["RS256", "PS256", "ES256", "ES384", "EdDSA"])).min(1).default(["RS256", "ES256", "EdDSA"]),
    requiredClaims: z.record(z.string(), RequiredClaim).optional(),
    /**
     * Oldest token accepted, in seconds since its `iat` (default one day). A token without `iat` is
     * refused when its `exp` lies further ahead than this. Every token must carry `exp`.
     */
    maxAgeSeconds: z.int().min(60).max(30 * 86_400).optional(),
  })
  .refine((auth) => (auth.jwksUrl === undefined) !== (auth.jwks === undefined), "give exactly one of jwksUrl or jwks");
export type RouteAuth = z.infer<typeof RouteAuth>;

/**
 * The NAME of a secret (a wrangler secret of the proxy, or locally a line of `.weft/secrets.env`),
 * never its value: config is stored, versioned, diffed and shown, so a value pasted here would leak
 * everywhere. Provider keys (`sk_live_…`, `whsec_…`, base64, PEM) cannot match this pattern.
 */
export const SecretName = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{0,63}$/, "must be the NAME of a secret (e.g. STRIPE_WEBHOOK_SECRET: A-Z, 0-9, '_', at most 64), never the secret's value; set the value with `wrangler secret put NAME` or in .weft/secrets.env");
export type SecretName = z.infer<typeof SecretName>;

/** One secret name, or several tried in order (rotation: the new secret and the old one). */
export const SecretNames = z.union([SecretName, z.array(SecretName).min(1).max(4)]);
export type SecretNames = z.infer<typeof SecretNames>;

/** A lowercase HTTP header name. */
const HeaderName = z.string().regex(/^[a-z0-9-]{1,64}$/, "a lowercase HTTP header name");

/**
 * Inbound webhook verification for one route: the proxy checks the provider's signature over the
 * raw body (and the timestamp, and replays) before anything reaches the backend.
 */
export const RouteWebhook = z.strictObject({
  scheme: z.enum(["stripe", "github", "shopify", "standard-webhooks", "hmac-sha256"]),
  secret: SecretNames,
  /** How far a signed timestamp may be from now; also how long delivery ids are remembered. */
  toleranceSeconds: z.int().min(1).max(3_600).default(300),
  /** hmac-sha256 only: the header carrying the signature (hex, `sha256=<hex>` or base64). */
  signatureHeader: HeaderName.optional(),
  /** hmac-sha256 only: the header naming the delivery (for replay refusal). */
  idHeader: HeaderName.optional(),
});
export type RouteWebhook = z.infer<typeof RouteWebhook>;

/** Fixed JWT claims for private-key-jwt (`iss`, `application_id`, …); iat/exp/jti are added per call. */
const FixedClaims = z.record(z.string().max(64), z.union([z.string().max(1_024), z.number(), z.boolean()])).refine((c) => Object.keys(c).length <= 16, "at most 16 claims");

/**
 * How the proxy authenticates to one external backend. Every `secret` is a secret's name.
 * Default `weft-jwt`: a short-lived token signed by the mesh, checked against its JWKS.
 */
export const VendorAuth = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("weft-jwt") }),
  z.strictObject({ type: z.literal("bearer"), secret: SecretName }),
  z.strictObject({
    type: z.literal("header"),
    name: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, "an HTTP header name").refine((n) => !["host", "content-length", "cookie"].includes(n.toLowerCase()), "this header cannot carry a credential"),
    secret: SecretName,
    prefix: z.string().max(32).regex(/^[\x20-\x7e]*$/).default(""),
  }),
  z.strictObject({ type: z.literal("basic"), username: z.string().min(1).max(256).regex(/^[^:]*$/, "a username has no ':'"), secret: SecretName }),
  z.strictObject({
    type: z.literal("oauth2-client-credentials"),
    // The client secret travels to this URL: https, or plain http only to this machine (local tests).
    tokenUrl: z
      .url({ protocol: /^https?$/ })
      .refine((url) => url.startsWith("https://") || /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//.test(url), "the token URL must use https (http only to localhost)"),
    clientId: z.string().min(1).max(256),
    secret: SecretName,
    scope: z.string().max(1_024).optional(),
    audience: z.string().max(1_024).optional(),
    authMethod: z.enum(["client_secret_basic", "client_secret_post"]).default("client_secret_basic"),
  }),
  z.strictObject({
    type: z.literal("private-key-jwt"),
    secret: SecretName,
    alg: z.enum(["RS256", "ES256", "EdDSA"]),
    kid: z.string().max(256).optional(),
    claims: FixedClaims.default({}),
    ttlSeconds: z.int().min(10).max(3_600).default(300),
  }),
  z.strictObject({ type: z.literal("mtls"), certificate: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "the name of an mtls_certificates binding") }),
]);
export type VendorAuth = z.infer<typeof VendorAuth>;
