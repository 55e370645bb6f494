import { env, exports } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MAX_KEYS_PER_SHARD, rateCounterOf, type RateCounter } from "../../durable-objects/rate-counter.ts";
import { RateLimitRule } from "../../shared/config.ts";
import { base64url, sha256 } from "../../shared/hash.ts";
import { counterName, expiresAt, initialState, grant, RATE_SHARDS, shardOf, type AheadAsk, type LeaseAsk, type LimitSpec } from "../../shared/rate-limit.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { MAX_LEASES, MAX_REMEMBERED_NAMES, RateLimiter, type RateDecision } from "../../workers/proxy/rate-limit.ts";

/** The real ConfigService entrypoint as `service`'s proxy is bound to it, with its rate-limit calls counted (a spy, not a mock). */
function countedControlPlane(service: string): { api: ControlPlaneApi; calls: { single: number; batch: number } } {
  const real = (exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi)({ props: { service } });
  const calls = { single: 0, batch: 0 };
  const api: ControlPlaneApi = {
    readSlice: (service, known) => real.readSlice(service, known),
    signEgress: (service, claims) => real.signEgress(service, claims),
    recordTelemetry: (batch) => real.recordTelemetry(batch),
    claimWebhookDelivery: (service, key, ttl) => real.claimWebhookDelivery(service, key, ttl),
    vendorToken: (service, request) => real.vendorToken(service, request),
    leaseTokens: (counter, spec, want, ahead?: AheadAsk) => {
      calls.single++;
      return real.leaseTokens(counter, spec, want, ahead);
    },
    leaseTokensBatch: (asks: LeaseAsk[]) => {
      calls.batch++;
      return real.leaseTokensBatch(asks);
    },
  };
  return { api, calls };
}

function request(headers: Record<string, string>): Request {
  return new Request("https://pim.test/products/sku-1", { headers });
}

function rule(input: Record<string, unknown>): RateLimitRule {
  return RateLimitRule.parse(input);
}

/** Runs `check` and collects what it hands to waitUntil. */
async function decide(limiter: RateLimiter, rules: RateLimitRule[], req: Request, background: Promise<unknown>[]): Promise<RateDecision> {
  return limiter.check(rules, req, "internet", undefined, (p) => background.push(p));
}

async function readCounter(service: string, limit: string, key: string): Promise<{ used: number } | null> {
  const name = counterName(service, limit, key);
  return (await rateCounterOf(env, name).read(name)).state;
}

describe("sha256", () => {
  it("matches the FIPS 180-4 test vectors", () => {
    const hex = (s: string): string => [...sha256(s)].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(hex("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")).toBe("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    expect(hex("a".repeat(1000))).toBe("41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
  });

  it("encodes base64url without padding", () => {
    expect(base64url(new Uint8Array([0xfb, 0xff]))).toBe("-_8");
    expect(base64url(new Uint8Array([1, 2, 3]))).toBe("AQID");
  });
});

describe("counter names and shards", () => {
  it("gives every key value a fixed-size name, a 600-character one included", () => {
    const short = counterName("pim", "api-key", "k");
    const long = counterName("pim", "api-key", "x".repeat(600));
    expect(short).toMatch(/^pim\/api-key\/[A-Za-z0-9_-]{22}$/);
    expect(long.length).toBe(short.length);
    expect(long).not.toContain("xxx");
  });

  it("spreads keys over exactly RATE_SHARDS shard objects per limit", () => {
    const shards = new Set(Array.from({ length: 5_000 }, (_, i) => shardOf(counterName("pim", "api-key", `key-${i}`))));
    expect(shards.size).toBe(RATE_SHARDS);
    for (const shard of shards) expect(shard).toMatch(/^pim\/api-key\/#\d+$/);
    expect(shardOf("pim/api-key/not-a-digest")).toBeUndefined();
    expect(shardOf(`pim/api-key/${"x".repeat(600)}`)).toBeUndefined();
  });

  it("expires a counter when a fresh one would grant the same", () => {
    const t0 = 1_000_000_000_000;
    const fixed: LimitSpec = { algorithm: "fixed-window", limit: 10, periodSeconds: 10 };
    expect(expiresAt(fixed, grant(fixed, initialState(fixed, t0 + 3_000), 1, t0 + 3_000).state)).toBe(t0 + 10_000);
    const sliding: LimitSpec = { algorithm: "sliding-window", limit: 10, periodSeconds: 10 };
    expect(expiresAt(sliding, grant(sliding, initialState(sliding, t0), 1, t0).state)).toBe(t0 + 20_000);
    const bucket: LimitSpec = { algorithm: "token-bucket", limit: 10, periodSeconds: 1, burst: 10 };
    // 4 tokens taken at 10/s refill in 400 ms.
    expect(expiresAt(bucket, grant(bucket, initialState(bucket, t0), 4, t0).state)).toBe(t0 + 400);
  });
});

describe("RateCounter shards", () => {
  const spec: LimitSpec = { algorithm: "fixed-window", limit: 5, periodSeconds: 3600 };

  it("keeps many keys' counters in one shard object and prunes them when they expire", async () => {
    const controlPlane = countedControlPlane("prune").api;
    const asks = Array.from({ length: 200 }, (_, i): LeaseAsk => ({ counter: counterName("prune", "per-key", `k-${i}`), spec, want: 2 }));
    const answers = await controlPlane.leaseTokensBatch(asks);
    expect(answers).toHaveLength(200);
    expect(answers.every((a) => a.granted === 2 && a.remaining === 3)).toBe(true);
    // Each key is still counted on its own.
    const again = await controlPlane.leaseTokens(asks[0]?.counter ?? "", spec, 10);
    expect(again.granted).toBe(3);

    const first = asks[0]?.counter ?? "";
    const shard = shardOf(first) ?? "";
    const inShard = asks.filter((a) => shardOf(a.counter) === shard).length;
    const stub = env.RATE_COUNTERS.get(env.RATE_COUNTERS.idFromName(shard));
    const rows = async (): Promise<number> =>
      runInDurableObject(stub, (_instance: RateCounter, state) => Number(state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM counters").one().n));
    expect(await rows()).toBe(inShard);
    // Age every row past its window, then let the alarm prune.
    await runInDurableObject(stub, (_instance: RateCounter, state) => {
      state.storage.sql.exec("UPDATE counters SET expires = 1");
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await rows()).toBe(0);
  });

  it("counts new keys in the shard's shared overflow counter once the shard holds MAX_KEYS_PER_SHARD live keys", async () => {
    const controlPlane = countedControlPlane("full").api;
    const first = counterName("full", "per-key", "resident");
    expect((await controlPlane.leaseTokens(first, spec, 1)).granted).toBe(1);
    const shard = shardOf(first) ?? "";
    const stub = env.RATE_COUNTERS.get(env.RATE_COUNTERS.idFromName(shard));
    // Fill the shard with live rows straight in SQLite, then let the prune alarm recount them.
    await runInDurableObject(stub, (_instance: RateCounter, state) => {
      state.storage.sql.exec(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO counters (key, spec, state, leases, expires) SELECT 'fill-' || i, 'x', '{}', 1, 9000000000000000 FROM n`,
        MAX_KEYS_PER_SHARD,
      );
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // Two new keys of that shard now share one counter (limit 5): 3 + 3 asked, 5 granted in all.
    const sameShard = Array.from({ length: 2_000 }, (_, i) => counterName("full", "per-key", `new-${i}`)).filter((c) => shardOf(c) === shard);
    const [a = "", b = ""] = sameShard;
    const granted = (await controlPlane.leaseTokens(a, spec, 3)).granted + (await controlPlane.leaseTokens(b, spec, 3)).granted;
    expect(granted).toBe(5);
    // The key that was already stored keeps its own counter (4 of its 5 left).
    expect((await controlPlane.leaseTokens(first, spec, 10)).granted).toBe(4);
    const read = await rateCounterOf(env, a).read(a);
    expect(read.state).toBeNull();
    expect(read.keys).toBe(MAX_KEYS_PER_SHARD + 2);
  });

  it("refuses counter names that are not digests (no unbounded object names)", async () => {
    const controlPlane = countedControlPlane("pim").api;
    const refused = await controlPlane.leaseTokens(`pim/api-key/${"x".repeat(600)}`, spec, 1).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(String(refused)).toMatch(/invalid counter name/);
  });
});

describe("RateLimiter", () => {
  it("counts a 600-character key instead of failing open", async () => {
    const { api } = countedControlPlane("long");
    const limiter = new RateLimiter("long", api);
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 50, periodSeconds: 3600 })];
    const key = "k".repeat(600);
    const background: Promise<unknown>[] = [];
    let allowed = 0;
    for (let i = 0; i < 200; i++) if ((await decide(limiter, rules, request({ "x-api-key": key }), background)).kind === "allow") allowed++;
    await Promise.all(background);
    expect(allowed).toBe(50);
    expect((await readCounter("long", "api-key", key))?.used).toBe(50);
  });

  it("decides a new key's first request without a counter round trip, then charges it in one batch", async () => {
    const { api, calls } = countedControlPlane("fresh");
    const limiter = new RateLimiter("fresh", api);
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 10, periodSeconds: 3600 })];
    const background: Promise<unknown>[] = [];
    const decisions = Array.from({ length: 100 }, (_, i) => limiter.check(rules, request({ "x-api-key": `new-${i}` }), "internet", undefined, (p) => background.push(p)));
    // Synchronous: no await, so no Durable Object call, on the request's path.
    expect(decisions.every((d) => !(d instanceof Promise) && d.kind === "allow")).toBe(true);
    expect(calls).toEqual({ single: 0, batch: 0 });
    await Promise.all(background);
    expect(calls).toEqual({ single: 0, batch: 1 });
    expect((await readCounter("fresh", "api-key", "new-7"))?.used).toBe(1);
  });

  it("asks the counter first for a fail-closed limit's new key", async () => {
    const { api, calls } = countedControlPlane("closed");
    const limiter = new RateLimiter("closed", api);
    const rules = [rule({ name: "strict", key: "header:x-api-key", limit: 1, periodSeconds: 3600, failMode: "closed" })];
    const first = limiter.check(rules, request({ "x-api-key": "a" }), "internet", undefined, () => undefined);
    expect(first).toBeInstanceOf(Promise);
    expect((await first).kind).toBe("allow");
    expect((await limiter.check(rules, request({ "x-api-key": "a" }), "internet", undefined, () => undefined)).kind).toBe("deny");
    expect(calls.single).toBeGreaterThanOrEqual(1);
  });

  it("refuses a key that is exhausted elsewhere once its first request here is charged (bounded overshoot)", async () => {
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 3, periodSeconds: 3600 })];
    const background: Promise<unknown>[] = [];
    const elsewhere = new RateLimiter("overshoot", countedControlPlane("overshoot").api);
    for (let i = 0; i < 3; i++) expect((await decide(elsewhere, rules, request({ "x-api-key": "shared" }), background)).kind).toBe("allow");
    await Promise.all(background);
    // Another isolate sees the key for the first time: one request through, then refused.
    const here = new RateLimiter("overshoot", countedControlPlane("overshoot").api);
    expect((await decide(here, rules, request({ "x-api-key": "shared" }), background)).kind).toBe("allow");
    const next = await decide(here, rules, request({ "x-api-key": "shared" }), background);
    expect(next.kind).toBe("deny");
    if (next.kind === "deny") expect(next.response.status).toBe(429);
    await Promise.all(background);
  });

  it("holds at most MAX_LEASES leases however many keys it sees", { timeout: 60_000 }, async () => {
    const limiter = new RateLimiter("many", countedControlPlane("many").api);
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 5, periodSeconds: 60 })];
    const background: Promise<unknown>[] = [];
    for (let i = 0; i < MAX_LEASES + 500; i++) void limiter.check(rules, request({ "x-api-key": `key-${i}` }), "internet", undefined, (p) => background.push(p));
    expect(limiter.size).toBe(MAX_LEASES);
    // The counter names it remembers (a SHA-256 saved per request) are bounded too.
    expect(limiter.rememberedNames).toBe(MAX_REMEMBERED_NAMES);
    await Promise.all(background);
  });

  it("remembers a key's counter name without changing which counter it is", async () => {
    const { api, calls } = countedControlPlane("memo");
    const limiter = new RateLimiter("memo", api);
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 2, periodSeconds: 3600 })];
    const background: Promise<unknown>[] = [];
    // The same key, a long one (never remembered) and a short one, reaches the same counter each time: the third request is refused.
    for (const key of ["k".repeat(1_000), "short"]) {
      const kinds: string[] = [];
      for (let i = 0; i < 3; i++) kinds.push((await decide(limiter, rules, request({ "x-api-key": key }), background)).kind);
      await Promise.all(background);
      expect(kinds).toEqual(["allow", "allow", "deny"]);
    }
    expect(limiter.rememberedNames).toBe(1);
    expect(calls.single + calls.batch).toBeGreaterThan(0);
  });

  it("shares a provider's quota exactly, asking before the first call", async () => {
    const spec: LimitSpec = { algorithm: "fixed-window", limit: 3, periodSeconds: 3600 };
    const a = new RateLimiter("a", countedControlPlane("a").api);
    const b = new RateLimiter("b", countedControlPlane("b").api);
    const outcomes: Array<number | undefined> = [];
    for (const limiter of [a, b, a, b, a, b]) outcomes.push((await limiter.egressQuota("vendor-x", spec))?.status);
    expect(outcomes).toEqual([undefined, undefined, undefined, 429, 429, 429]);
  });
});

describe("RateLimiter: leases that span windows", () => {
  // The isolates' and the counter's clock (one isolate under test: the Durable Object sees it too).
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  /** A seeded stand-in for Math.random (mulberry32): the leases' random phases, the same in every run. */
  function seededRandom(seed: number): () => number {
    let t = seed >>> 0;
    return () => {
      t = (t + 0x6d2b79f5) >>> 0;
      let r = Math.imul(t ^ (t >>> 15), 1 | t);
      r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
      return ((r ^ (r >>> 14)) >>> 0) / 4_294_967_296;
    };
  }

  /**
   * Drives `isolates` (each with its own request rate per second) through `seconds` of time in 50 ms
   * steps on a faked clock, from `start`; returns the requests let through per window start, and how
   * many decisions of each isolate had to wait (a Promise: a counter call on the request's path).
   */
  async function drive(
    isolates: Array<{ limiter: RateLimiter; perSec: number }>,
    rules: RateLimitRule[],
    start: number,
    seconds: number,
    period: number,
  ): Promise<{ allowed: Map<number, number>; waited: number[] }> {
    const allowed = new Map<number, number>();
    const waited = isolates.map(() => 0);
    for (let step = 0; step < seconds * 20; step++) {
      const now = start + step * 50;
      vi.setSystemTime(now);
      for (const [index, { limiter, perSec }] of isolates.entries()) {
        if (step % Math.round(20 / perSec) !== 0) continue;
        const pending = limiter.check(rules, request({ "x-api-key": "shared" }), "internet", undefined, undefined);
        if (pending instanceof Promise) waited[index] = (waited[index] ?? 0) + 1;
        const decision = await pending;
        if (decision.kind !== "allow") continue;
        const window = Math.floor(now / period) * period;
        allowed.set(window, (allowed.get(window) ?? 0) + 1);
      }
    }
    return { allowed, waited };
  }

  it("an isolate with a small share of a key's traffic crosses window boundaries on its standing share, not a call per window", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 100_000, periodSeconds: 10 })];
    const busy = new RateLimiter("span", countedControlPlane("span").api);
    const quietPlane = countedControlPlane("span");
    const quiet = new RateLimiter("span", quietPlane.api);
    const start = 1_900_000_000_000; // a window boundary
    // 20 s to learn the rate, then 30 s (three window boundaries) measured.
    await drive([{ limiter: busy, perSec: 20 }, { limiter: quiet, perSec: 1 }], rules, start, 20, 10_000);
    const before = quietPlane.calls.single;
    const { allowed, waited } = await drive([{ limiter: busy, perSec: 20 }, { limiter: quiet, perSec: 1 }], rules, start + 20_000, 30, 10_000);
    // The key's target is ~21 tokens (21 requests/s over one call a second): 1 request/s lasts ~21 s.
    // Leases that ended with their window cost the quiet isolate a call per window and more (doubling).
    expect(quietPlane.calls.single - before).toBeLessThanOrEqual(2);
    // Its requests at the boundaries were decided synchronously, from the share: only its calls waited.
    expect(waited[1]).toBeLessThanOrEqual(quietPlane.calls.single - before);
    expect([...allowed.values()].reduce((a, b) => a + b, 0)).toBe(30 * 21);
    const name = counterName("span", "api-key", "shared");
    const { state } = await rateCounterOf(env, name).read(name);
    expect(state?.ahead?.length ?? 0).toBeGreaterThan(0);
  });

  it("still enforces a reached limit exactly while shares are held: no window lets more through than the limit", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    // Lease phases are random; seeded, so this run's shares are the same every time (about 1 run in
    // 4 of a full suite once found no share standing at the moment the counter is read).
    vi.spyOn(Math, "random").mockImplementation(seededRandom(42));
    const rules = [rule({ name: "api-key", key: "header:x-api-key", limit: 200, periodSeconds: 10 })];
    const isolates = [1, 1, 1, 5].map((perSec) => ({ limiter: new RateLimiter("flood", countedControlPlane("flood").api), perSec }));
    const start = 1_900_000_100_000;
    // Steady and far from the limit (80 of 200 a window): shares are granted.
    const steady = (await drive(isolates, rules, start, 20, 10_000)).allowed;
    expect([...steady.values()]).toEqual([80, 80]);
    const name = counterName("flood", "api-key", "shared");
    expect((await rateCounterOf(env, name).read(name)).state?.ahead?.length ?? 0).toBeGreaterThan(0);
    // One isolate floods at 20 requests/s: every window lets exactly the limit through, shares included.
    const flooding = isolates.map((isolate, i) => (i === 3 ? { ...isolate, perSec: 20 } : isolate));
    const flood = (await drive(flooding, rules, start + 20_000, 30, 10_000)).allowed;
    expect(flood.size).toBe(3);
    for (const allowed of flood.values()) {
      expect(allowed).toBeLessThanOrEqual(200);
      // Stricter by at most what the quiet isolates' shares hold unspent: 25% slack over their 10 a window, rounded up.
      expect(allowed).toBeGreaterThanOrEqual(200 - 3 * Math.ceil(10 * 0.25 + 1));
    }
  });
});
