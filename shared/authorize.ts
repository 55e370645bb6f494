/**
 * Authorization policies: which callers may call which methods and paths of a service.
 * A service without a policy accepts every caller (as a mesh without an AuthorizationPolicy does);
 * once it has one, anything not explicitly allowed is denied, and an explicit deny always wins.
 */
import type { Policy, PolicyRule } from "./config.ts";

/** What is being asked for. */
export interface AccessRequest {
  caller: string;
  method: string;
  path: string;
}

/** The decision, with the rule that made it (for logs and the 403 body). */
export type Decision =
  | { kind: "allow"; reason: "no-policy" | "rule"; rule?: number }
  | { kind: "deny"; reason: "deny-rule" | "no-allow-rule"; rule?: number };

function pathMatches(pattern: string, path: string): boolean {
  return pattern.endsWith("*") ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

function ruleMatches(rule: PolicyRule, request: AccessRequest): boolean {
  return (
    (!rule.from || rule.from.includes("*") || rule.from.includes(request.caller)) &&
    (!rule.methods || rule.methods.some((m) => m === request.method)) &&
    (!rule.paths || rule.paths.some((p) => pathMatches(p, request.path)))
  );
}

/** Decides one request against a service's policy (or its absence). */
export function authorize(policy: Policy | undefined, request: AccessRequest): Decision {
  if (!policy) return { kind: "allow", reason: "no-policy" };
  const denied = policy.deny.findIndex((rule) => ruleMatches(rule, request));
  if (denied >= 0) return { kind: "deny", reason: "deny-rule", rule: denied };
  const allowed = policy.allow.findIndex((rule) => ruleMatches(rule, request));
  return allowed >= 0 ? { kind: "allow", reason: "rule", rule: allowed } : { kind: "deny", reason: "no-allow-rule" };
}
