/**
 * JSON with a bounded nesting depth. `JSON.parse` itself copes with deep documents, but everything
 * that walks the result recursively (schema validation, zod, structuredClone, masking) can overflow
 * the stack on a 20,000-deep body and fail as a 5xx. Bodies from outside are therefore refused
 * before parsing when they nest deeper than any real API document does.
 */

/** Deepest nesting of arrays/objects accepted in a body from outside (Envoy's and most JSON APIs' order of magnitude). */
export const MAX_JSON_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Whether `text` nests arrays/objects deeper than `maxDepth`, in one scan without parsing (brackets
 * inside strings do not count). Malformed text is not judged here: the parser will refuse it.
 */
export function jsonDepthExceeds(text: string, maxDepth = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === BACKSLASH) i++;
      else if (code === QUOTE) inString = false;
    } else if (code === QUOTE) {
      inString = true;
    } else if (code === OPEN_BRACE || code === OPEN_BRACKET) {
      if (++depth > maxDepth) return true;
    } else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
      depth--;
    }
  }
  return false;
}

/** Outcome of {@link parseJson}. */
export type JsonParse = { kind: "ok"; value: unknown } | { kind: "too-deep"; maxDepth: number } | { kind: "invalid" };

/** Parses `text` unless it nests deeper than `maxDepth` or is not JSON. Never throws. */
export function parseJson(text: string, maxDepth = MAX_JSON_DEPTH): JsonParse {
  if (jsonDepthExceeds(text, maxDepth)) return { kind: "too-deep", maxDepth };
  try {
    return { kind: "ok", value: JSON.parse(text) };
  } catch {
    return { kind: "invalid" };
  }
}
