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
  remove: z.array(FieldPath).default([]),
  mask: z.array(FieldPath).default([]),
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
