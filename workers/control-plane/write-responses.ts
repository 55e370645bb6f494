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

/** The precondition of a whole-config write, or the problem that refuses it. */
export type ConfigPrecondition = { ok: true; ifMatch: number | undefined } | { ok: false; response: Response };

/**
 * A whole-config write must say which version it replaces: `If-Match: "<version>"`, the body's
 * `version` (what GET /admin/config answered), or both when they agree. `If-Match: *` is an
 * explicit unconditional overwrite (RFC 9110). Neither: 428, as any optimistic-concurrency API
 * answers; both, disagreeing: 412.
 */
export function configPrecondition(header: string | undefined, bodyVersion: number | undefined): ConfigPrecondition {
  const unconditional = header !== undefined && header.trim() === "*";
  const fromHeader = header === undefined || unconditional ? undefined : parseIfMatch(header);
  if (fromHeader !== undefined && bodyVersion !== undefined && fromHeader !== bodyVersion) {
    return {
      ok: false,
      response: problemResponse(412, "stale-version", "Precondition failed", {
        detail: `If-Match names version ${fromHeader} but the body's version is ${bodyVersion}; send the version you read.`,
      }),
    };
  }
  const ifMatch = fromHeader ?? bodyVersion;
  if (ifMatch === undefined && !unconditional) {
    return {
      ok: false,
      response: problemResponse(428, "precondition-required", "Precondition required", {
        detail:
          'Replacing the whole config needs the version it replaces: send If-Match: "<version>" (the ETag of GET /admin/config), ' +
          'or that version as "version" in the body; If-Match: * overwrites whatever is there.',
      }),
    };
  }
  return { ok: true, ifMatch };
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
