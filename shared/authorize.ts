/**
 * Authorization policies: which callers may call which methods and paths of a service.
 * A service without a policy accepts every caller (as a mesh without an AuthorizationPolicy does);
 * once it has one, anything not explicitly allowed is denied, and an explicit deny always wins.
 *
 * A request has two principals (see workers/proxy/identity.ts): its **origin**, on whose behalf it
 * is made, and its **peer**, who handed it over. A rule's `from` matches the origin, so an internet
 * request relayed by another service's proxy is still `internet` here, and `internet` deny rules
 * apply to it (Istio's `requestPrincipals`, not the relaying hop's identity). A rule's optional
 * `peers` matches the immediate caller (Istio's `principals`), e.g. to accept internet traffic only
 * when it comes through the storefront: `{ "from": ["internet"], "peers": ["storefront"] }`.
 *
 * A rule listing `GET` also matches `HEAD`: HEAD is GET without the body (RFC 9110 §9.3.2), and the
 * backends' routers (hono, Go's ServeMux) run a GET handler for HEAD, so a deny on GET must cover it,
 * and an allow on GET must not refuse it. A rule listing only `HEAD` does not match GET.
 */
import type { Policy, PolicyRule } from "./config.ts";

/** What is being asked for. The path is the canonical one the proxy routes and forwards. */
export interface AccessRequest {
  /** On whose behalf (the request principal): a service name or `internet`. */
  origin: string;
  /** Who handed the request over (a relaying proxy's service, the origin itself, or `internet`). */
  peer: string;
  method: string;
  path: string;
  /** The method of a Workers RPC call (then `method` and `path` are not HTTP's). */
  rpc?: string;
}

/** The decision, with the rule that made it (for logs and the 403 body). */
export type Decision =
  | { kind: "allow"; reason: "no-policy" | "rule"; rule?: number }
  | { kind: "deny"; reason: "deny-rule" | "no-allow-rule"; rule?: number };

function pathMatches(pattern: string, path: string): boolean {
  return pattern.endsWith("*") ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

function identityMatches(list: readonly string[] | undefined, identity: string): boolean {
  return !list || list.includes("*") || list.includes(identity);
}

function methodMatches(listed: string, method: string): boolean {
  return listed === method || (listed === "GET" && method === "HEAD");
}

/**
 * An RPC method pattern: a name, a `prefix*`, or `*` (every method of every entrypoint). A named
 * entrypoint's methods are `Entrypoint.method`; a pattern without a dot is about the default
 * entrypoint's methods only (`A*` does not match `Admin.purge`), `Admin.*` about all of Admin's.
 */
export function rpcMethodMatches(pattern: string, method: string): boolean {
  if (!pattern.endsWith("*")) return method === pattern;
  const prefix = pattern.slice(0, -1);
  return method.startsWith(prefix) && (prefix === "" || prefix.includes(".") || !method.includes(".", prefix.length));
}

function ruleMatches(rule: PolicyRule, request: AccessRequest): boolean {
  if (!identityMatches(rule.from, request.origin) || !identityMatches(rule.peers, request.peer)) return false;
  // A rule about HTTP methods or paths says nothing about RPC calls, and one about RPC methods nothing about HTTP.
  if (request.rpc !== undefined) {
    const method = request.rpc;
    return !rule.methods && !rule.paths && (!rule.rpc || rule.rpc.some((p) => rpcMethodMatches(p, method)));
  }
  return (
    !rule.rpc &&
    (!rule.methods || rule.methods.some((m) => methodMatches(m, request.method))) &&
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
