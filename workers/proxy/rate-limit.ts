/**
 * The rate-limit step. Counters are global (RateCounter objects sharded by service, limit and key),
 * but a request rarely waits on one: each isolate leases a few tokens at a time (doubling while it
 * keeps needing more, capped at 5% of the limit) and spends them locally. Once a counter has said
 * "no more until t", the isolate refuses locally until t, so a flood costs the counter nothing.
 */
import type { RateLimitRule } from "../../shared/config.ts";
import { problemResponse } from "../../shared/problem.ts";
import { nextLeaseSize, policyHeader, rateLimitHeader, type LimitSpec } from "../../shared/rate-limit.ts";
import { disposeRpcResult, type ControlPlaneApi } from "../../shared/slice.ts";
import { withTimeout } from "./bounded.ts";

interface Lease {
  remaining: number;
  validUntil: number;
  size: number;
  /** Tokens the counter had left after our last lease (for the RateLimit header). */
  counterRemaining: number;
  /** When the counter said nothing was left: refuse locally until then. */
  exhaustedUntil: number;
}

const leases = new Map<string, Lease>();
const LEASE_TIMEOUT_MS = 1_000;
let lastFailureLog = 0;

/** The outcome: continue (with any RateLimit headers to add) or the 429/503 to send. */
export type RateDecision = { kind: "allow"; headers: Array<[string, string]> } | { kind: "deny"; response: Response };

const NO_LIMITS: RateDecision = { kind: "allow", headers: [] };

function specOf(rule: RateLimitRule): LimitSpec {
  return { algorithm: rule.algorithm, limit: rule.limit, periodSeconds: rule.periodSeconds, ...(rule.burst ? { burst: rule.burst } : {}) };
}

function keyOf(rule: RateLimitRule, request: Request, caller: string, claims: Record<string, unknown> | undefined): string {
  const [kind, name = ""] = rule.key.split(":", 2);
  switch (kind) {
    case "caller":
      return caller;
    case "ip":
      return request.headers.get("cf-connecting-ip") ?? "unknown";
    case "header":
      return request.headers.get(name) ?? "(none)";
    default: {
      const value = claims?.[name];
      return value === undefined ? "(none)" : typeof value === "string" ? value : JSON.stringify(value);
    }
  }
}

async function take(counter: string, spec: LimitSpec, controlPlane: ControlPlaneApi, now: number): Promise<Lease> {
  const lease = leases.get(counter);
  const sameWindow = lease !== undefined && now < lease.validUntil;
  const want = nextLeaseSize(sameWindow ? lease.size : 0, spec);
  const granted = await withTimeout(controlPlane.leaseTokens(counter, spec, want), LEASE_TIMEOUT_MS, "rate-limit counter");
  const { granted: count, validUntil, retryAt, remaining } = granted;
  disposeRpcResult(granted);
  // Concurrent requests may lease at once: add to, never overwrite, what this isolate holds.
  const current = leases.get(counter);
  const keep = current && current.validUntil === validUntil ? current.remaining : 0;
  const next: Lease = { remaining: keep + count, validUntil, size: want, counterRemaining: remaining, exhaustedUntil: count > 0 ? 0 : retryAt };
  leases.set(counter, next);
  return next;
}

/** Share of the quota left under which allowed responses carry RateLimit headers too. */
const WARN_BELOW = 0.2;

/** One counter as the steps below see it. */
interface Counter {
  counter: string;
  name: string;
  spec: LimitSpec;
  failMode: "open" | "closed";
}

function countersOf(service: string, rules: readonly RateLimitRule[], request: Request, caller: string, claims: Record<string, unknown> | undefined): Counter[] {
  return rules.map((rule) => {
    const name = rule.name ?? "limit";
    return { counter: `${service}/${name}/${keyOf(rule, request, caller, claims)}`, name, spec: specOf(rule), failMode: rule.failMode };
  });
}

/** What this isolate can decide alone: a token from its lease, a refusal until reset, or "ask the counter". */
function local(c: Counter, now: number): { kind: "token"; lease: Lease } | { kind: "deny"; response: Response } | { kind: "ask" } {
  const lease = leases.get(c.counter);
  if (lease && now < lease.exhaustedUntil) return { kind: "deny", response: tooMany(c.name, c.spec, lease.exhaustedUntil, now) };
  if (!lease || now >= lease.validUntil || lease.remaining <= 0) return { kind: "ask" };
  lease.remaining--;
  return { kind: "token", lease };
}

/** Asks the counter for a lease; unreachable counters follow the limit's failure mode. */
async function remote(c: Counter, controlPlane: ControlPlaneApi, now: number): Promise<{ kind: "token"; lease: Lease } | { kind: "deny"; response: Response } | { kind: "skip" }> {
  let lease: Lease;
  try {
    lease = await take(c.counter, c.spec, controlPlane, now);
  } catch (error) {
    if (now - lastFailureLog > 60_000) {
      lastFailureLog = now;
      console.error(JSON.stringify({ event: "rate-limit-unavailable", counter: c.counter.split("/").slice(0, 2).join("/"), failMode: c.failMode, error: String(error) }));
    }
    if (c.failMode === "open") return { kind: "skip" };
    return {
      kind: "deny",
      response: problemResponse(503, "rate-limit-unavailable", "Rate limit unavailable", { detail: `limit '${c.name}' fails closed and its counter cannot be reached` }, { "retry-after": "1" }),
    };
  }
  if (lease.remaining <= 0) return { kind: "deny", response: tooMany(c.name, c.spec, lease.exhaustedUntil, Date.now()) };
  lease.remaining--;
  return { kind: "token", lease };
}

function warnIfLow(headers: Array<[string, string]>, c: Counter, lease: Lease, now: number): void {
  const left = lease.counterRemaining + lease.remaining;
  if (left >= c.spec.limit * WARN_BELOW) return;
  headers.push(["ratelimit-policy", policyHeader(c.name, c.spec)], ["ratelimit", rateLimitHeader(c.name, left, lease.validUntil, now)]);
}

/**
 * Applies the service's limits that cover this route; all must allow. Synchronous while every
 * counter has leased tokens at hand (the steady state), so a limit that is not reached costs the
 * request no await. Refusals always carry RateLimit-Policy/RateLimit/Retry-After; allowed responses
 * carry them once less than 20% of a quota is left (adding headers rebuilds the response, which is
 * the single largest cost a proxy on Workers can add to a request).
 */
export function checkRateLimits(
  service: string,
  rules: readonly RateLimitRule[],
  request: Request,
  caller: string,
  claims: Record<string, unknown> | undefined,
  controlPlane: ControlPlaneApi,
): RateDecision | Promise<RateDecision> {
  if (rules.length === 0) return NO_LIMITS;
  const now = Date.now();
  const counters = countersOf(service, rules, request, caller, claims);
  const headers: Array<[string, string]> = [];
  for (const [index, c] of counters.entries()) {
    const step = local(c, now);
    if (step.kind === "deny") return step;
    if (step.kind === "ask") return askCounters(counters.slice(index), controlPlane, headers);
    warnIfLow(headers, c, step.lease, now);
  }
  return headers.length > 0 ? { kind: "allow", headers } : NO_LIMITS;
}

async function askCounters(counters: Counter[], controlPlane: ControlPlaneApi, headers: Array<[string, string]>): Promise<RateDecision> {
  for (const c of counters) {
    const now = Date.now();
    const known = local(c, now);
    const step = known.kind === "ask" ? await remote(c, controlPlane, now) : known;
    if (step.kind === "deny") return step;
    if (step.kind === "token") warnIfLow(headers, c, step.lease, now);
  }
  return headers.length > 0 ? { kind: "allow", headers } : NO_LIMITS;
}

function tooMany(name: string, spec: LimitSpec, retryAt: number, now: number): Response {
  const seconds = Math.max(1, Math.ceil((retryAt - now) / 1000));
  return problemResponse(
    429,
    "rate-limited",
    "Too many requests",
    { detail: `limit '${name}' allows ${spec.limit} requests per ${spec.periodSeconds} s`, limit: name },
    { "retry-after": String(seconds), "ratelimit-policy": policyHeader(name, spec), ratelimit: rateLimitHeader(name, 0, retryAt, now) },
  );
}

/**
 * A provider's quota, shared by every proxy and service in the mesh that calls it: one counter per
 * provider (`egress/<provider>/all`). Returns the 429 to answer, or undefined to go ahead. Fails open:
 * an unreachable counter must not take the provider offline.
 */
export async function checkEgressQuota(provider: string, spec: LimitSpec, controlPlane: ControlPlaneApi): Promise<Response | undefined> {
  const c: Counter = { counter: `egress/${provider}/all`, name: `quota-${provider}`, spec, failMode: "open" };
  const now = Date.now();
  const known = local(c, now);
  const step = known.kind === "ask" ? await remote(c, controlPlane, now) : known;
  return step.kind === "deny" ? step.response : undefined;
}
