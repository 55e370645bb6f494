/**
 * Request body validation: unreadable bodies are 400, well-formed JSON of the wrong shape is 422,
 * both as problem+json with zod's issues under `issues`.
 */
import type { z } from "zod";
import { problemResponse } from "../../shared/problem.ts";

/** Either the validated body or the problem response to send instead. */
export type BodyResult<T> = { ok: true; value: T } | { ok: false; response: Response };

/** Parses and validates a JSON request body. */
export async function readBody<T>(req: Request, schema: z.ZodType<T>): Promise<BodyResult<T>> {
  const instance = new URL(req.url).pathname;
  let json: unknown;
  try {
    json = await req.json();
  } catch {
    return {
      ok: false,
      response: problemResponse(400, "malformed-body", "Request body is not valid JSON", { instance }),
    };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    return {
      ok: false,
      response: problemResponse(422, "validation", "Request body is invalid", {
        instance,
        issues: parsed.error.issues,
      }),
    };
  }
  return { ok: true, value: parsed.data };
}
