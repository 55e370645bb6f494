/**
 * The rate-limit step. Counters are global (RateCounter objects, a fixed number of shards per limit,
 * keyed by a digest of the key value), but a request rarely waits on one: each isolate leases a few
 * tokens at a time (doubling while it keeps needing more, capped at 5% of the limit, or as many as
 * requests are waiting) and spends them locally. Once a counter has said "no more until t", the
 * isolate refuses locally until t, so a flood costs the counter nothing.
 *
 * So that a key's lease calls do not grow with the number of isolates that serve it, a window
 * counter answers with a lease size in tokens (its key's rate × 1 s: about a call a second for the key, whatever the isolates); an isolate whose
 * lease of that size outlasts the window asks for a *standing share* of the next windows (its own
 * rate × window, the last window only what remains of the lease's life: shared/rate-limit.ts
 * `planLease`). The counter reserves those tokens in the windows they belong to, so at a window
 * boundary inside its share the isolate has the new window's tokens at hand without a call (a
 * comparison on the request's path, no await), and comes back once per lease, not once per window:
 * a key's calls are about its rate / lease size, whatever the number of isolates. A token bucket's
 * counter answers with a horizon instead, and leases then last that long at the isolate's own rate.
 *
 * Keys are outside values (a header, a claim, an IP), so everything keyed by them is bounded:
 * - a key is hashed to a fixed-size counter name (`counterName`), however long its value;
 * - this isolate holds at most {@link MAX_LEASES} leases per service; the least recently leased go first;
 * - a key this isolate has not seen costs no counter round trip: on a fail-open limit its first request
 *   is let through at once (every limit allows at least one request per window) and charged to the
 *   counter in the background, in batches (one call per {@link MAX_LEASE_BATCH} new keys or per
 *   {@link BATCH_DELAY_MS}), or with the key's next lease if it comes back first. The overshoot is
 *   bounded: at most one request per key per isolate per time the key enters this isolate's lease
 *   table, and only when other isolates had already exhausted the key's counter (or the charge was
 *   lost: queue full, counter unreachable, lease evicted first). Like Cloudflare's rate-limiting
 *   binding, the count is eventually consistent at that edge and exact otherwise. Fail-closed limits
 *   and provider quotas never take that shortcut.
 */
import type { RateLimitRule } from "../../shared/config.ts";
import { problemResponse } from "../../shared/problem.ts";
import { counterName, MAX_LEASE_BATCH, leaseJitter, nextLeaseSize, plainLease, planLease, policyHeader, rateLimitHeader, sizedByTarget, windowEnd, type Grant, type LimitSpec } from "../../shared/rate-limit.ts";
import { disposeRpcResult, type ControlPlaneApi } from "../../shared/slice.ts";
import { withTimeout } from "./bounded.ts";

/** Leases one isolate keeps per service (about 200 bytes each). */
export const MAX_LEASES = 10_000;
/** How long the background charges of new keys are gathered before one batch call. */
export const BATCH_DELAY_MS = 1_000;
/** Charges of new keys queued at most; beyond, a key's first request is charged with its next lease. */
const MAX_QUEUED_CHARGES = MAX_LEASE_BATCH;
const LEASE_TIMEOUT_MS = 1_000;
/** Lease rounds one request may wait through before it counts the counter as unreachable. */
const MAX_ROUNDS = 32;
/** Share of the quota left under which allowed responses carry RateLimit headers too. */
const WARN_BELOW = 0.2;

type LeaseResult = "ok" | "failed";
/** `ExecutionContext.waitUntil`, bound. */
export type WaitUntil = (promise: Promise<unknown>) => void;

/** What this isolate holds of one counter. Mutated in place, so a lease evicted mid-flight is harmless. */
interface Lease {
  remaining: number;
  validUntil: number;
  size: number;
  /** Tokens the counter had left after our last lease (for the RateLimit header). */
  counterRemaining: number;
  /** When the counter said nothing was left: refuse locally until then. */
  exhaustedUntil: number;
  /** Tokens spent before the counter was asked (a key's first request here), charged with the next lease. */
  owed: number;
  /** The one lease call in flight for this counter; it never rejects. */
  pending: Promise<LeaseResult> | undefined;
  /** When `pending` started: a call older than the timeout is ignored (its request may have been cancelled). */
  pendingSince: number;
  /** Requests waiting for `pending`: the next lease asks for enough tokens for all of them. */
  waiting: number;
  /** The counter's horizon from its last answer (0: none; token buckets): lease this long of our own rate. */
  horizonMs: number;
  /** The counter's lease size in tokens from its last answer (0: none; window limits). */
  target: number;
  /** The standing share held: tokens per window, tokens in its last window, and when that window ends (0: none). */
  sharePer: number;
  shareLast: number;
  shareUntil: number;
  /** Whether a lease of this key was sized by the counter's target already (the first one takes a random phase). */
  phased: boolean;
  /** Tokens spent here in all, and when the last lease landed and how many had been spent then (our rate). */
  spent: number;
  leasedAt: number;
  spentAtLease: number;
}

/**
 * The size of the next lease (pure): the doubling size, or, when the counter gave a horizon, enough
 * for that long at this isolate's own rate (tokens per ms), capped as doubling sizes are (5% of the
 * limit) so few tokens are ever stranded.
 */
export function leaseSizeFor(doubling: number, ratePerMs: number, horizonMs: number, spec: LimitSpec): number {
  if (horizonMs <= 0 || !(ratePerMs > 0)) return doubling;
  const cap = Math.max(1, Math.floor(spec.limit / 20));
  return Math.max(doubling, Math.min(cap, Math.ceil(ratePerMs * horizonMs)));
}

/** The outcome: continue (with any RateLimit headers to add) or the 429/503 to send. */
export type RateDecision = { kind: "allow"; headers: Array<[string, string]> } | { kind: "deny"; response: Response };

const NO_LIMITS: RateDecision = { kind: "allow", headers: [] };

/** One counter as the steps below see it. */
interface Counter {
  counter: string;
  name: string;
  spec: LimitSpec;
  failMode: "open" | "closed";
  /** Whether a key new to this isolate may be let through before the counter is asked. */
  firstFree: boolean;
}

type Local = { kind: "token"; lease: Lease } | { kind: "deny"; response: Response } | { kind: "ask" };
type Remote = { kind: "token"; lease: Lease } | { kind: "deny"; response: Response } | { kind: "skip" };

interface QueuedCharge {
  counter: string;
  spec: LimitSpec;
  lease: Lease;
}

/** A rule as the request path reads it: its key parsed and its spec built once per rule, not per request. */
interface RuleParts {
  name: string;
  /** `caller`, `ip`, `header` or `claim` (the config's key syntax is validated). */
  kind: string;
  /** The header or claim name. */
  keyName: string;
  spec: LimitSpec;
  failMode: "open" | "closed";
}

/** Parts per rule object: a rule lives as long as its config version, and so does its entry. */
const partsOfRule = new WeakMap<RateLimitRule, RuleParts>();

function partsOf(rule: RateLimitRule): RuleParts {
  let parts = partsOfRule.get(rule);
  if (!parts) {
    const [kind = "", keyName = ""] = rule.key.split(":", 2);
    const spec: LimitSpec = { algorithm: rule.algorithm, limit: rule.limit, periodSeconds: rule.periodSeconds, ...(rule.burst ? { burst: rule.burst } : {}) };
    parts = { name: rule.name ?? "limit", kind, keyName, spec, failMode: rule.failMode };
    partsOfRule.set(rule, parts);
  }
  return parts;
}

function keyOf(rule: RuleParts, request: { readonly headers: Headers }, caller: string, claims: Record<string, unknown> | undefined): string {
  switch (rule.kind) {
    case "caller":
      return caller;
    case "ip":
      return request.headers.get("cf-connecting-ip") ?? "unknown";
    case "header":
      return request.headers.get(rule.keyName) ?? "(none)";
    default: {
      const value = claims?.[rule.keyName];
      return value === undefined ? "(none)" : typeof value === "string" ? value : JSON.stringify(value);
    }
  }
}

/** A promise and the function that settles it (Promise.withResolvers, which the project's lib target lacks). */
function settleable(): { promise: Promise<LeaseResult>; resolve: (result: LeaseResult) => void } {
  let resolve: (result: LeaseResult) => void = () => undefined;
  const promise = new Promise<LeaseResult>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

function emptyLease(): Lease {
  return {
    remaining: 0,
    validUntil: 0,
    size: 0,
    counterRemaining: 0,
    exhaustedUntil: 0,
    owed: 0,
    pending: undefined,
    pendingSince: 0,
    waiting: 0,
    horizonMs: 0,
    target: 0,
    sharePer: 0,
    shareLast: 0,
    shareUntil: 0,
    phased: false,
    spent: 0,
    leasedAt: 0,
    spentAtLease: 0,
  };
}

/**
 * At a window boundary inside a standing share, the new window's tokens (reserved for this isolate
 * by the counter) are at hand without a call: one comparison on the request's path otherwise.
 * Tokens left from the window that ended are gone, as the counter counted them there.
 */
function refill(lease: Lease, spec: LimitSpec, now: number): void {
  if (now < lease.validUntil || now >= lease.shareUntil) return;
  const end = windowEnd(spec, now);
  lease.remaining = end >= lease.shareUntil ? lease.shareLast : lease.sharePer;
  lease.validUntil = end;
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

/** `headers` plus RateLimit headers when less than 20% of the quota is left; allocated only then. */
function warnIfLow(headers: Array<[string, string]> | undefined, c: Counter, lease: Lease, now: number): Array<[string, string]> | undefined {
  const left = lease.counterRemaining + lease.remaining;
  if (left >= c.spec.limit * WARN_BELOW) return headers;
  const list = headers ?? [];
  list.push(["ratelimit-policy", policyHeader(c.name, c.spec)], ["ratelimit", rateLimitHeader(c.name, left, lease.validUntil, now)]);
  return list;
}

/** Folds a counter's answer into the lease: `owed` tokens were already spent, the rest are at hand. */
function applyGrant(lease: Lease, answer: Omit<Grant, "state">, owed: number, size: number, spec: LimitSpec): void {
  const usable = answer.granted - owed;
  const sameWindow = lease.validUntil === answer.validUntil;
  lease.remaining = (sameWindow ? lease.remaining : 0) + Math.max(0, usable);
  // Owed tokens the counter could not grant were an overshoot already served: nothing left to charge.
  lease.owed = Math.max(0, lease.owed - owed);
  lease.validUntil = answer.validUntil;
  lease.size = size;
  lease.counterRemaining = answer.remaining;
  const exhausted = size > 0 ? usable <= 0 : answer.granted < owed;
  lease.exhaustedUntil = exhausted ? answer.retryAt : 0;
  lease.horizonMs = answer.horizonMs ?? 0;
  lease.target = answer.target ?? 0;
  if (answer.ahead) {
    // The share starts with the window after the one this answer's tokens belong to.
    lease.sharePer = answer.ahead.perWindow;
    lease.shareLast = answer.ahead.last;
    lease.shareUntil = answer.validUntil + answer.ahead.windows * spec.periodSeconds * 1000;
  }
}

/** Counter names remembered per isolate (a SHA-256 per request otherwise): FIFO, short key values only. */
export const MAX_REMEMBERED_NAMES = 4_096;
/** Longer key values are hashed every time: the memory a remembered name holds stays small. */
const MAX_REMEMBERED_KEY_CHARS = 256;

/**
 * The rate-limit state of one proxied service in this isolate: its leases and the queue of new keys
 * waiting to be charged. Hold one per service (no module-level state).
 */
export class RateLimiter {
  private readonly leases = new Map<string, Lease>();
  /** `limit\nkey value` → counter name (`service/limit/digest`), bounded by {@link MAX_REMEMBERED_NAMES}. */
  private readonly names = new Map<string, string>();
  private queue: QueuedCharge[] = [];
  private lastFailureLog = 0;

  constructor(
    private readonly service: string,
    private readonly controlPlane: ControlPlaneApi,
  ) {}

  /** The counter of `keyValue` under limit `name`: hashed once per isolate for the keys it keeps seeing. */
  private counterFor(name: string, keyValue: string): string {
    if (keyValue.length > MAX_REMEMBERED_KEY_CHARS) return counterName(this.service, name, keyValue);
    const memo = `${name}\n${keyValue}`;
    const known = this.names.get(memo);
    if (known !== undefined) return known;
    const counter = counterName(this.service, name, keyValue);
    if (this.names.size >= MAX_REMEMBERED_NAMES) {
      const oldest = this.names.keys().next();
      if (!oldest.done) this.names.delete(oldest.value);
    }
    this.names.set(memo, counter);
    return counter;
  }

  /** The counter `rule` charges for this request's key. */
  private counterOf(rule: RateLimitRule, request: { readonly headers: Headers }, caller: string, claims: Record<string, unknown> | undefined): Counter {
    const parts = partsOf(rule);
    const counter = this.counterFor(parts.name, keyOf(parts, request, caller, claims));
    return { counter, name: parts.name, spec: parts.spec, failMode: parts.failMode, firstFree: parts.failMode === "open" };
  }

  /** Counter names remembered (bounded by {@link MAX_REMEMBERED_NAMES}). */
  get rememberedNames(): number {
    return this.names.size;
  }

  /** Leases held (bounded by {@link MAX_LEASES}). */
  get size(): number {
    return this.leases.size;
  }

  /**
   * Applies the service's limits that cover this route; all must allow. Synchronous while every
   * counter has leased tokens at hand (the steady state) or its key is new here, so a limit that is
   * not reached costs the request no await. Refusals always carry RateLimit-Policy/RateLimit/Retry-After;
   * allowed responses carry them once less than 20% of a quota is left (adding headers rebuilds the
   * response, which is the single largest cost a proxy on Workers can add to a request).
   * `waitUntil` keeps the background charges of new keys alive; without it, new keys ask the counter.
   */
  check(
    rules: readonly RateLimitRule[],
    request: { readonly headers: Headers },
    caller: string,
    claims: Record<string, unknown> | undefined,
    waitUntil: WaitUntil | undefined,
  ): RateDecision | Promise<RateDecision> {
    if (rules.length === 0) return NO_LIMITS;
    const now = Date.now();
    // Nothing is allocated per request beyond one Counter per rule while the leases answer.
    let headers: Array<[string, string]> | undefined;
    for (let index = 0; index < rules.length; index++) {
      const rule = rules[index];
      if (!rule) continue;
      const c = this.counterOf(rule, request, caller, claims);
      const step = this.local(c, now, waitUntil);
      if (step.kind === "deny") return step;
      if (step.kind === "ask") return this.askCounters([c, ...rules.slice(index + 1).map((r) => this.counterOf(r, request, caller, claims))], headers ?? [], waitUntil);
      headers = warnIfLow(headers, c, step.lease, now);
    }
    return headers ? { kind: "allow", headers } : NO_LIMITS;
  }

  /**
   * A provider's quota, shared by every proxy and service in the mesh that calls it: one counter per
   * provider. Returns the 429 to answer, or undefined to go ahead. Fails open: an unreachable counter
   * must not take the provider offline. Always asks the counter before the first call (a third
   * party's quota may cost money).
   */
  async egressQuota(provider: string, spec: LimitSpec): Promise<Response | undefined> {
    const c: Counter = { counter: counterName("egress", provider, "all"), name: `quota-${provider}`, spec, failMode: "open", firstFree: false };
    const known = this.local(c, Date.now(), undefined);
    const step = known.kind === "ask" ? await this.remote(c) : known;
    return step.kind === "deny" ? step.response : undefined;
  }

  private async askCounters(counters: Counter[], headers: Array<[string, string]>, waitUntil: WaitUntil | undefined): Promise<RateDecision> {
    for (const c of counters) {
      const known = this.local(c, Date.now(), waitUntil);
      const step = known.kind === "ask" ? await this.remote(c) : known;
      if (step.kind === "deny") return step;
      if (step.kind === "token") warnIfLow(headers, c, step.lease, Date.now());
    }
    return headers.length > 0 ? { kind: "allow", headers } : NO_LIMITS;
  }

  /** Keeps `lease` as the most recently leased; evicts the least recently leased beyond the cap. */
  private remember(counter: string, lease: Lease): Lease {
    this.leases.delete(counter);
    this.leases.set(counter, lease);
    if (this.leases.size > MAX_LEASES) {
      const oldest = this.leases.keys().next();
      if (!oldest.done) this.leases.delete(oldest.value);
    }
    return lease;
  }

  private inFlight(lease: Lease, now: number): boolean {
    return lease.pending !== undefined && now - lease.pendingSince < 2 * LEASE_TIMEOUT_MS;
  }

  /** What this isolate can decide alone: a token from its lease, a refusal until reset, or "ask the counter". */
  private local(c: Counter, now: number, waitUntil: WaitUntil | undefined): Local {
    const lease = this.leases.get(c.counter);
    if (lease === undefined) {
      if (!c.firstFree || waitUntil === undefined) return { kind: "ask" };
      // First request of a key here: let it through now, charge the counter in the background.
      // Its rate is measured from now, so the key's first lease call can already be sized by it.
      const fresh = this.remember(c.counter, { ...emptyLease(), owed: 1, counterRemaining: c.spec.limit, spent: 1, leasedAt: now });
      this.charge(c, fresh, waitUntil);
      return { kind: "token", lease: fresh };
    }
    if (now < lease.exhaustedUntil) return { kind: "deny", response: tooMany(c.name, c.spec, lease.exhaustedUntil, now) };
    refill(lease, c.spec, now);
    if (this.inFlight(lease, now) || now >= lease.validUntil || lease.remaining <= 0) return { kind: "ask" };
    lease.remaining--;
    lease.spent++;
    return { kind: "token", lease };
  }

  /** Waits for (or makes) a lease of the counter; unreachable counters follow the limit's failure mode. */
  private async remote(c: Counter): Promise<Remote> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const now = Date.now();
      const lease = this.leases.get(c.counter) ?? this.remember(c.counter, emptyLease());
      if (now < lease.exhaustedUntil) return { kind: "deny", response: tooMany(c.name, c.spec, lease.exhaustedUntil, now) };
      refill(lease, c.spec, now);
      if (lease.remaining > 0 && now < lease.validUntil && !this.inFlight(lease, now)) {
        lease.remaining--;
        lease.spent++;
        return { kind: "token", lease };
      }
      const result = this.inFlight(lease, now) ? await this.wait(lease) : await this.fetchLease(c, lease);
      if (result === "failed") return this.unavailable(c, "counter did not answer");
    }
    return this.unavailable(c, "no lease after many rounds");
  }

  /** Waits for another request's lease call, bounded (that request may be cancelled). */
  private async wait(lease: Lease): Promise<LeaseResult> {
    const pending = lease.pending;
    if (!pending) return "ok";
    lease.waiting++;
    try {
      return await withTimeout(pending, LEASE_TIMEOUT_MS, "rate-limit lease");
    } catch {
      return "failed";
    } finally {
      lease.waiting--;
    }
  }

  /** One lease call for the counter; concurrent requests wait for it rather than ask too. */
  private async fetchLease(c: Counter, lease: Lease): Promise<LeaseResult> {
    const now = Date.now();
    const sameWindow = now < lease.validUntil;
    // Enough for every request waiting, or the usual doubling size, whichever is larger; longer when the counter asks for fewer calls.
    const doubling = Math.max(nextLeaseSize(sameWindow ? lease.size : 0, c.spec), Math.min(lease.waiting + 1, c.spec.limit));
    const rate = lease.leasedAt > 0 && now > lease.leasedAt ? (lease.spent - lease.spentAtLease) / (now - lease.leasedAt) : 0;
    // Window limits: the counter's lease size, spread over the next windows when it outlasts this one.
    const shareAhead = lease.shareUntil > windowEnd(c.spec, now);
    // The first lease sized by the target takes a random share of it, so isolates that learned the
    // target together renew spread over a lease's life rather than all at once.
    const jitter = lease.phased ? leaseJitter(Math.random()) : 1 - Math.random();
    if (sizedByTarget(c.spec, lease.target, rate)) lease.phased = true;
    const plan = planLease({ spec: c.spec, now, doubling, waiting: lease.waiting + 1, ratePerMs: rate, target: lease.target, shareAhead, jitter });
    const size = plan.kind === "window" ? leaseSizeFor(plan.want, rate, lease.horizonMs, c.spec) : plan.want;
    const owed = lease.owed;
    const { promise, resolve } = settleable();
    lease.pending = promise;
    lease.pendingSince = now;
    let result: LeaseResult = "failed";
    try {
      const ahead = plan.kind === "span" ? plan.ahead : undefined;
      const granted = await withTimeout(this.controlPlane.leaseTokens(c.counter, c.spec, owed + size, ahead), LEASE_TIMEOUT_MS, "rate-limit counter");
      const answer = plainLease(granted);
      disposeRpcResult(granted);
      applyGrant(lease, answer, owed, size, c.spec);
      lease.leasedAt = Date.now();
      lease.spentAtLease = lease.spent;
      result = "ok";
    } catch (error) {
      this.logFailure(c, error);
    } finally {
      // Cleared before waiters resume, so they see the new tokens and no call in flight.
      if (lease.pending === promise) lease.pending = undefined;
      resolve(result);
    }
    return result;
  }

  /**
   * Queues the background charge of a key's first request. The queue goes out as one batch call
   * once {@link MAX_LEASE_BATCH} charges wait or {@link BATCH_DELAY_MS} after the first, so a flood of
   * new keys costs a few calls per second, not one per key. A charge still queued when its key comes
   * back travels with that key's own lease instead (nothing waits for the batch).
   */
  private charge(c: Counter, lease: Lease, waitUntil: WaitUntil): void {
    // A full queue leaves the token owed: it is charged with the key's next lease instead.
    if (this.queue.length >= MAX_QUEUED_CHARGES) return;
    this.queue.push({ counter: c.counter, spec: c.spec, lease });
    if (this.queue.length === 1) waitUntil(new Promise((r) => setTimeout(r, BATCH_DELAY_MS)).then(() => this.flushAll()));
    else if (this.queue.length % MAX_LEASE_BATCH === 0) waitUntil(this.flush());
  }

  private async flushAll(): Promise<void> {
    while (this.queue.length > 0) await this.flush();
  }

  /** Sends up to {@link MAX_LEASE_BATCH} queued charges in one call. */
  private async flush(): Promise<void> {
    const batch = this.queue.splice(0, MAX_LEASE_BATCH).flatMap((item) => {
      // Charged already with the key's own lease, or evicted and charged nowhere: nothing to send.
      const want = item.lease.owed;
      if (want <= 0) return [];
      item.lease.owed = 0;
      return [{ ...item, want }];
    });
    if (batch.length === 0) return;
    try {
      const reply = await withTimeout(
        this.controlPlane.leaseTokensBatch(batch.map(({ counter, spec, want }) => ({ counter, spec, want }))),
        LEASE_TIMEOUT_MS,
        "rate-limit counters",
      );
      for (const [index, item] of batch.entries()) {
        const answer = reply[index];
        if (answer === undefined) item.lease.owed += item.want;
        else if (answer.granted < item.want) item.lease.exhaustedUntil = Math.max(item.lease.exhaustedUntil, answer.retryAt);
        if (answer !== undefined) {
          item.lease.horizonMs = answer.horizonMs ?? 0;
          item.lease.target = answer.target ?? 0;
        }
      }
      disposeRpcResult(reply);
    } catch (error) {
      // Unanswered charges stay owed and go with their keys' next leases.
      for (const item of batch) item.lease.owed += item.want;
      const first = batch[0];
      if (first) this.logFailure({ counter: first.counter, failMode: "open" }, error);
    }
  }

  private unavailable(c: Counter, _why: string): Remote {
    if (c.failMode === "open") return { kind: "skip" };
    return {
      kind: "deny",
      response: problemResponse(503, "rate-limit-unavailable", "Rate limit unavailable", { detail: `limit '${c.name}' fails closed and its counter cannot be reached` }, { "retry-after": "1" }),
    };
  }

  private logFailure(c: Pick<Counter, "counter" | "failMode">, error: unknown): void {
    const now = Date.now();
    if (now - this.lastFailureLog <= 60_000) return;
    this.lastFailureLog = now;
    // The counter name's last part is a digest of the key, never the key itself; log only scope/limit.
    console.error(JSON.stringify({ event: "rate-limit-unavailable", counter: c.counter.split("/").slice(0, 2).join("/"), failMode: c.failMode, error: String(error) }));
  }
}
