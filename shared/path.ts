/**
 * Request path canonicalisation: the one form of a path that the proxy authorizes, routes and forwards.
 *
 * Policies match strings, backends route on decoded paths: if the two disagree, `/products/%73ku-1`
 * slips past a deny rule on `/products/sku-1`. So the proxy canonicalises once and uses the result
 * everywhere, as Envoy does with `normalize_path` + `merge_slashes` +
 * `path_with_escaped_slashes_action: REJECT_REQUEST`:
 * - percent-encoded unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) are decoded, every
 *   other escape is kept with uppercase hex digits (RFC 3986 §6.2.2.1-2), never decoded twice
 *   (`%2541` stays `%2541`);
 * - `//` runs are merged into one `/`;
 * - `.` and `..` segments are resolved (RFC 3986 §5.2.4), including encoded ones (`%2e%2E`), and `..`
 *   never climbs above the root;
 * - encoded `/` (`%2F`) and `\` (`%5C`) are refused: whether a backend splits on them differs between
 *   frameworks, so no single canonical form is safe (Envoy's REJECT_REQUEST);
 * - raw `\`, spaces, control characters (raw or encoded, NUL included), `?`/`#`, malformed escapes and
 *   paths over {@link MAX_PATH_LENGTH} are refused;
 * - raw non-ASCII characters are percent-encoded as UTF-8 (the WHATWG URL parser already does this, so
 *   a path taken from `URL.pathname` never has any).
 */

/** Longest raw path accepted (8 KiB, Envoy's and nginx's default request-line budget for the path). */
export const MAX_PATH_LENGTH = 8192;

/** The canonical path, or why the path is refused (the proxy answers 400 problem+json). */
export type PathResult = { kind: "ok"; path: string; changed: boolean } | { kind: "refuse"; reason: string };

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const BACKSLASH = 0x5c;

/** Characters refused anywhere in a raw path: controls, space, DEL, `\`, and query/fragment delimiters. */
function refusedRaw(code: number): string | undefined {
  if (code <= 0x20 || code === 0x7f) return "control or space character in path";
  if (code === BACKSLASH) return "backslash in path";
  if (code === 0x3f || code === 0x23) return "query or fragment delimiter in path";
  return undefined;
}

function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || // -
    code === DOT ||
    code === 0x5f || // _
    code === 0x7e // ~
  );
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

const HEX = "0123456789ABCDEF";

function escapeByte(byte: number): string {
  return `%${HEX[byte >> 4]}${HEX[byte & 0xf]}`;
}

/**
 * Whether the segment starting at `start` (just after a `/`) is `.` or `..`. Only called by the fast
 * scan, on raw characters.
 */
function isRawDotSegment(raw: string, start: number): boolean {
  const end = raw.length;
  if (start >= end || raw.charCodeAt(start) !== DOT) return false;
  const next = start + 1;
  if (next === end || raw.charCodeAt(next) === SLASH) return true;
  if (raw.charCodeAt(next) !== DOT) return false;
  return next + 1 === end || raw.charCodeAt(next + 1) === SLASH;
}

/**
 * One scan over the raw path: `undefined` when it is already canonical (the common case, no
 * allocation), `"slow"` when it needs rewriting, or the reason it is refused.
 */
function scan(raw: string): string | undefined {
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    const refused = refusedRaw(code);
    if (refused) return refused;
    if (code === PERCENT || code > 0x7e) return "slow";
    if (code === SLASH) {
      if (i + 1 < raw.length && raw.charCodeAt(i + 1) === SLASH) return "slow";
      if (isRawDotSegment(raw, i + 1)) return "slow";
    }
  }
  return undefined;
}

/**
 * Decodes what may be decoded and re-encodes the rest: the result has no escapes of unreserved
 * characters, uppercase hex in the others, and non-ASCII as UTF-8 escapes. Refuses encoded `/`, `\`,
 * controls and malformed escapes.
 */
function normaliseEscapes(raw: string): PathResult {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    const refused = refusedRaw(code);
    if (refused) return { kind: "refuse", reason: refused };
    if (code === PERCENT) {
      const high = i + 2 < raw.length ? hexValue(raw.charCodeAt(i + 1)) : -1;
      const low = high >= 0 ? hexValue(raw.charCodeAt(i + 2)) : -1;
      if (low < 0) return { kind: "refuse", reason: "malformed percent-encoding in path" };
      const byte = (high << 4) | low;
      if (byte === SLASH || byte === BACKSLASH) return { kind: "refuse", reason: "encoded slash or backslash in path" };
      if (byte < 0x20 || byte === 0x7f) return { kind: "refuse", reason: "encoded control character in path" };
      out += isUnreserved(byte) ? String.fromCharCode(byte) : escapeByte(byte);
      i += 2;
    } else if (code > 0x7e) {
      // Raw non-ASCII (never from URL.pathname): encode the whole code point as UTF-8.
      const point = raw.codePointAt(i) ?? code;
      const char = String.fromCodePoint(point);
      if (point >= 0xd800 && point <= 0xdfff) return { kind: "refuse", reason: "unpaired surrogate in path" };
      for (const byte of new TextEncoder().encode(char)) out += escapeByte(byte);
      i += char.length - 1;
    } else {
      out += raw[i];
    }
  }
  return { kind: "ok", path: out, changed: out !== raw };
}

/** Merges `//` and resolves `.`/`..` segments of an escape-normalised path (which starts with `/`). */
function resolveSegments(path: string): string {
  const parts = path.split("/");
  const kept: string[] = [];
  // The first part is the empty string before the leading '/'.
  let trailingSlash = false;
  for (let i = 1; i < parts.length; i++) {
    const segment = parts[i] ?? "";
    const last = i === parts.length - 1;
    if (segment === "" || segment === ".") {
      trailingSlash = last;
    } else if (segment === "..") {
      kept.pop();
      trailingSlash = last;
    } else {
      kept.push(segment);
      trailingSlash = false;
    }
  }
  if (kept.length === 0) return "/";
  return `/${kept.join("/")}${trailingSlash ? "/" : ""}`;
}

/**
 * Canonicalises a raw request path (no query string). Pure; the common already-canonical path costs
 * one scan and no allocation.
 */
export function canonicalizePath(raw: string): PathResult {
  if (raw.length > MAX_PATH_LENGTH) return { kind: "refuse", reason: `path longer than ${MAX_PATH_LENGTH} characters` };
  if (raw.charCodeAt(0) !== SLASH) return { kind: "refuse", reason: "path must start with /" };
  const verdict = scan(raw);
  if (verdict === undefined) return { kind: "ok", path: raw, changed: false };
  if (verdict !== "slow") return { kind: "refuse", reason: verdict };
  const escaped = normaliseEscapes(raw);
  if (escaped.kind === "refuse") return escaped;
  // Decoding can create new dot segments (`%2e%2e`), so resolve after decoding, never before.
  const path = resolveSegments(escaped.path);
  return { kind: "ok", path, changed: path !== raw };
}

/**
 * The request URL with `path` in place of its path and the original query string kept verbatim (the
 * fragment never reaches a server). Origin and query are not re-parsed or re-encoded.
 */
export function withCanonicalPath(url: URL, path: string): string {
  return `${url.protocol}//${url.host}${path}${url.search}`;
}
