/**
 * What personal data may leave the mesh: per external backend, operators list JSON fields to remove
 * or mask before a request body is sent out. Pure functions over parsed JSON; the proxy decides when
 * to call them and what to do with each result.
 *
 * Field paths are dotted keys; `[]` after a key means "every element of this array":
 * - `customer.email`          the `email` key of the `customer` object;
 * - `items[].email`           `email` in every element of the `items` array;
 * - `matrix[][].email`        arrays of arrays;
 * - `[].email`                `email` in every element of a top-level array body;
 * - `tags[]`                  every element of `tags` (masking masks each one; removing empties it).
 * Keys are letters, digits, `_`, `$` and `-`: fields whose names contain `.`, `[` or `]` cannot be
 * addressed (no shop payload we know of needs them, and an escape syntax is easy to get wrong).
 * `[]` was picked over `.*` so a path can never be mistaken for a wildcard over object keys.
 */
import type { EgressDataPolicy } from "./policy-schemas.ts";

const KEY = String.raw`[A-Za-z0-9_$-]+`;
const EACH = String.raw`(?:\[\])`;
/** A dotted JSON field path such as `customer.email` or `items[].email` (see the module comment). */
export const FIELD_PATH = new RegExp(`^(?:${KEY}${EACH}*|${EACH}+)(?:\\.${KEY}${EACH}*)*$`);

/** Result of {@link applyEgressPolicy}: the paths touched are listed for logs; values never are. */
export type EgressRewrite =
  | { kind: "unchanged" }
  | { kind: "changed"; value: unknown; removed: string[]; masked: string[] };

/** Result of {@link rewriteJsonBody}. `changed.body` is new text: the caller must drop Content-Length. */
export type BodyRewrite =
  | { kind: "not-json" }
  | { kind: "invalid-json" }
  | { kind: "unchanged" }
  | { kind: "changed"; body: string; removed: string[]; masked: string[] };

type Step = { kind: "key"; key: string } | { kind: "each" };
type Op = "remove" | "mask";

/** The placeholder for values that keep no hint (numbers, booleans, objects, arrays). */
const MASK = "***";

// Deliberately loose: anything shaped like local@domain is treated as an address, so a malformed
// address still loses its local part instead of falling through to the generic rule.
const EMAIL = /^([^@\s]+)@([^@\s]+)$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parsePath(path: string): Step[] {
  const steps: Step[] = [];
  for (const segment of path.split(".")) {
    const key = segment.replace(/(\[\])+$/, "");
    if (key !== "") steps.push({ kind: "key", key });
    for (let i = key.length; i < segment.length; i += 2) steps.push({ kind: "each" });
  }
  return steps;
}

function childPath(parent: string, step: { kind: "key"; key: string } | { kind: "index"; index: number }): string {
  if (step.kind === "index") return `${parent}[${step.index}]`;
  return parent === "" ? step.key : `${parent}.${step.key}`;
}

/**
 * Masks one string, keeping a hint for humans reading logs or support screens. Emails keep their
 * domain because notification providers route and rate-limit by domain; the local part, which is
 * the personal bit, keeps only its first character. A hint of one character would be the whole
 * value, so one-character strings (and local parts) lose it.
 */
export function maskString(text: string): string {
  if (text === "") return "";
  const email = EMAIL.exec(text);
  if (email) {
    const local = Array.from(email[1] ?? "");
    const hint = local.length > 1 ? (local[0] ?? "") : "";
    return `${hint}${MASK}@${email[2] ?? ""}`;
  }
  // Code points, not UTF-16 units, so a hint never ends in half a surrogate pair.
  const chars = Array.from(text);
  return chars.length > 1 ? `${chars[0] ?? ""}${MASK}` : MASK;
}

/** The masked form of any JSON value; `null` carries no personal data and is kept as is. */
export function maskValue(value: unknown): unknown {
  if (typeof value === "string") return maskString(value);
  if (value === null || value === undefined) return value;
  return MASK;
}

// Object.fromEntries defines properties (never assigns), so a `__proto__` key from JSON stays a plain
// key and cannot reach the prototype.
function withKey(record: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, k === key ? value : v]));
}

function withoutKey(record: Record<string, unknown>, key: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([k]) => k !== key));
}

/**
 * Applies one operation at `steps[at..]` below `node`. Returns `node` itself when nothing changed,
 * otherwise a copy of the nodes along the path (siblings are shared, the input is never written).
 */
function applyAt(node: unknown, steps: readonly Step[], at: number, op: Op, path: string, touched: string[]): unknown {
  const step = steps[at];
  if (step === undefined) return node;
  const last = at === steps.length - 1;

  if (step.kind === "key") {
    if (!isRecord(node) || !Object.hasOwn(node, step.key)) return node;
    const here = childPath(path, step);
    const child = node[step.key];
    if (last && op === "remove") {
      touched.push(here);
      return withoutKey(node, step.key);
    }
    const next = last ? maskValue(child) : applyAt(child, steps, at + 1, op, here, touched);
    if (Object.is(next, child)) return node;
    if (last) touched.push(here);
    return withKey(node, step.key, next);
  }

  if (!Array.isArray(node)) return node;
  const elements: readonly unknown[] = node;
  if (last && op === "remove") {
    if (elements.length === 0) return node;
    elements.forEach((_, index) => touched.push(childPath(path, { kind: "index", index })));
    return [];
  }
  let changed = false;
  const copy = elements.map((element, index) => {
    const here = childPath(path, { kind: "index", index });
    const next = last ? maskValue(element) : applyAt(element, steps, at + 1, op, here, touched);
    if (Object.is(next, element)) return element;
    if (last) touched.push(here);
    changed = true;
    return next;
  });
  return changed ? copy : node;
}

/**
 * Removes, then masks, the policy's fields in a parsed JSON value. Never mutates `value`; paths that
 * do not exist (or meet the wrong type on the way) are ignored. `removed`/`masked` are the concrete
 * paths touched, such as `items[0].email`, for logs.
 */
export function applyEgressPolicy(value: unknown, policy: EgressDataPolicy): EgressRewrite {
  const removed: string[] = [];
  const masked: string[] = [];
  let current = value;
  // Deduplicated so listing a path twice cannot mask an already masked value again.
  for (const path of new Set(policy.remove)) current = applyAt(current, parsePath(path), 0, "remove", "", removed);
  for (const path of new Set(policy.mask)) current = applyAt(current, parsePath(path), 0, "mask", "", masked);
  if (removed.length === 0 && masked.length === 0) return { kind: "unchanged" };
  return { kind: "changed", value: current, removed, masked };
}

/** Whether a Content-Type header names JSON: `application/json` or any `*\/*+json`, parameters ignored. */
export function isJsonContentType(contentType: string | null): boolean {
  if (contentType === null) return false;
  const essence = (contentType.split(";")[0] ?? "").trim().toLowerCase();
  return essence === "application/json" || /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+\+json$/.test(essence);
}

// ignoreBOM false: a leading byte-order mark is dropped rather than breaking JSON.parse.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * Applies {@link applyEgressPolicy} to a request body. Only JSON content types are touched; an empty
 * body, or an empty policy, is `unchanged` (there is nothing to strip). `invalid-json` means the body
 * claims to be JSON but cannot be read, so its fields could not be stripped: the caller decides
 * whether to refuse it. A `changed` body is re-serialised compactly, so its bytes (and length) differ
 * from the original even outside the touched fields.
 */
export function rewriteJsonBody(body: ArrayBuffer | string, contentType: string | null, policy: EgressDataPolicy): BodyRewrite {
  if (!isJsonContentType(contentType)) return { kind: "not-json" };
  if (policy.remove.length === 0 && policy.mask.length === 0) return { kind: "unchanged" };
  let text: string;
  try {
    // JSON exchanged between systems must be UTF-8 (RFC 8259 §8.1), whatever charset is claimed.
    text = typeof body === "string" ? body : utf8.decode(body);
  } catch {
    return { kind: "invalid-json" };
  }
  if (text.trim() === "") return { kind: "unchanged" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: "invalid-json" };
  }
  const result = applyEgressPolicy(parsed, policy);
  if (result.kind === "unchanged") return result;
  return { kind: "changed", body: JSON.stringify(result.value), removed: result.removed, masked: result.masked };
}

/** Whether a policy strips any field (a policy that only widens the header allowlist does not). */
export function stripsFields(policy: EgressDataPolicy): boolean {
  return policy.remove.length > 0 || policy.mask.length > 0;
}

/**
 * The fail-closed rewrite for bodies leaving the mesh: when the policy strips fields, every
 * non-empty body is read as JSON whatever its Content-Type says (a `fetch` with a string body is
 * labelled `text/plain` but may carry the very JSON the policy protects), and a body that is not
 * JSON is `invalid-json`, to be refused. Never answers `not-json`.
 */
export function rewriteEgressBody(body: ArrayBuffer | string, policy: EgressDataPolicy): Exclude<BodyRewrite, { kind: "not-json" }> {
  const result = rewriteJsonBody(body, "application/json", policy);
  return result.kind === "not-json" ? { kind: "invalid-json" } : result;
}

/** Result of {@link scrubQuery}; names, never values, are listed. */
export type QueryRewrite = { kind: "unchanged" } | { kind: "changed"; search: string; removed: string[]; masked: string[] };

/** The query parameter names a field path covers: the path itself and its last key (`customer.email` → `email`). */
function parameterNames(path: string): string[] {
  const leaf = (path.split(".").pop() ?? "").replace(/(\[\])+$/, "");
  return [path.toLowerCase(), ...(leaf === "" ? [] : [leaf.toLowerCase()])];
}

/**
 * Applies the policy's remove/mask rules to a query string by parameter name (case-insensitive):
 * a parameter is covered when its name is a listed path or a listed path's last key, so
 * `mask: ["customer.email"]` masks `?email=…` too. Removal wins over masking. `search` is
 * `URL.search` (with its `?`, or empty).
 */
export function scrubQuery(search: string, policy: EgressDataPolicy): QueryRewrite {
  if (search === "" || search === "?" || !stripsFields(policy)) return { kind: "unchanged" };
  const remove = new Set(policy.remove.flatMap(parameterNames));
  const mask = new Set(policy.mask.flatMap(parameterNames));
  const params = new URLSearchParams(search);
  const removed: string[] = [];
  const masked: string[] = [];
  const kept: Array<[string, string]> = [];
  for (const [name, value] of params) {
    const lower = name.toLowerCase();
    if (remove.has(lower)) removed.push(name);
    else if (mask.has(lower)) {
      masked.push(name);
      kept.push([name, maskString(value)]);
    } else kept.push([name, value]);
  }
  if (removed.length === 0 && masked.length === 0) return { kind: "unchanged" };
  const rebuilt = new URLSearchParams(kept).toString();
  return { kind: "changed", search: rebuilt === "" ? "" : `?${rebuilt}`, removed, masked };
}

/**
 * Request headers every third party may receive; everything else (cookies, the shopper's
 * Authorization, X-Forwarded-For, Referer, Proxy-Authorization, X-Api-Key, mesh headers…) is
 * dropped. Content-Length is computed from the body actually sent.
 */
export const EGRESS_HEADER_ALLOWLIST: readonly string[] = [
  "content-type",
  "accept",
  "accept-encoding",
  "accept-language",
  "user-agent",
  "idempotency-key",
  "traceparent",
  "tracestate",
];

/** The headers a third party receives: the allowlist plus the backend's own extra names. */
export function egressHeaders(incoming: Headers, extra: readonly string[] = []): Headers {
  const allowed = new Set([...EGRESS_HEADER_ALLOWLIST, ...extra.map((n) => n.toLowerCase())]);
  const out = new Headers();
  for (const [name, value] of incoming) if (allowed.has(name)) out.append(name, value);
  return out;
}
