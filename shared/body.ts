/**
 * Request validation, the same everywhere: unreadable JSON (or JSON nested deeper than
 * `MAX_JSON_DEPTH`) is 400, well-formed JSON of the wrong
 * shape is 422, both as problem+json with zod's issues under `issues`.
 */
import type { ZodType } from "zod";
import { parseJson } from "./json.ts";
import { problemResponse } from "./problem.ts";

/** Either the validated body or the problem response to send instead. */
export type BodyResult<T> = { ok: true; value: T } | { ok: false; response: Response };

/** Parses and validates a JSON request body. */
export async function readBody<T>(req: Request, schema: ZodType<T>): Promise<BodyResult<T>> {
  const instance = new URL(req.url).pathname;
  let text: string;
  try {
    text = await req.text();
  } catch {
    text = "";
  }
  const json = parseJson(text);
  if (json.kind === "too-deep") {
    // Refused before parsing: zod walks the value recursively and would overflow the stack (a 5xx).
    return {
      ok: false,
      response: problemResponse(400, "json-too-deep", "Request body nests too deeply", {
        detail: `JSON nesting is limited to ${json.maxDepth} levels.`,
        instance,
      }),
    };
  }
  if (json.kind === "invalid") {
    return {
      ok: false,
      response: problemResponse(400, "malformed-json", "Request body is not valid JSON", {
        detail: "Send a JSON document with Content-Type: application/json.",
        instance,
      }),
    };
  }
  const parsed = schema.safeParse(json.value);
  if (!parsed.success) {
    return {
      ok: false,
      response: problemResponse(422, "invalid-request", "Request body is invalid", {
        detail: parsed.error.issues.map((i) => `${i.path.join(".") || "(body)"}: ${i.message}`).join("; "),
        instance,
        issues: parsed.error.issues,
      }),
    };
  }
  return { ok: true, value: parsed.data };
}

/** Validates query parameters; invalid ones are 400 with zod's issues. */
export function readQuery<T>(req: Request, schema: ZodType<T>): BodyResult<T> {
  const url = new URL(req.url);
  const parsed = schema.safeParse(Object.fromEntries(url.searchParams));
  if (parsed.success) return { ok: true, value: parsed.data };
  return {
    ok: false,
    response: problemResponse(400, "invalid-query", "Query parameters are invalid", {
      detail: parsed.error.issues.map((i) => `${i.path.join(".") || "(query)"}: ${i.message}`).join("; "),
      instance: url.pathname,
      issues: parsed.error.issues,
    }),
  };
}
