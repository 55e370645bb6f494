/**
 * How the admin API answers writes: ETags are versions, If-Match preconditions, and every refused
 * write as its RFC 9457 problem.
 */
import { Name } from "../../shared/config.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { WriteRefusal } from "../../durable-objects/config-store.ts";

/** `"12"` → 12. `*` or no header → undefined (no precondition); anything unparsable never matches. */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === "*") return undefined;
  const match = /^\s*(?:W\/)?"(\d+)"/.exec(header);
  return match?.[1] ? Number(match[1]) : -1;
}

/** The ETag of a version or revision. */
export function etag(version: number): string {
  return `"${version}"`;
}

/** Turns a refused write into its problem response. */
export function refusal(result: WriteRefusal): Response {
  switch (result.reason) {
    case "invalid":
      return problemResponse(422, "invalid-config", "Configuration refused", {
        detail: result.issues.map((i) => i.message).join("; "),
        issues: result.issues,
      });
    case "stale":
      return problemResponse(
        412,
        "stale-version",
        "Precondition failed",
        { detail: `If-Match does not match the current version ${result.current}; re-read and retry.`, currentVersion: result.current },
        { etag: etag(result.current) },
      );
    case "not-found":
      return problemResponse(404, "not-found", "Not found", { detail: result.detail });
    case "conflict":
      return problemResponse(409, "rollout-conflict", "Conflict with a rollout", { detail: result.detail, rollout: result.rollout });
  }
}


/** A 404 problem for a name that cannot be a service (so it never reaches a Durable Object), else undefined. */
export function serviceNameOrProblem(name: string): Response | undefined {
  return Name.safeParse(name).success
    ? undefined
    : problemResponse(404, "unknown-service", "Unknown service", { detail: `no service named '${name}'` });
}
