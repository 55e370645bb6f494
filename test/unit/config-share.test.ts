import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sliceStoreOf } from "../../durable-objects/config-store.ts";
import { SHARED_FRESH_MS } from "../../durable-objects/slice-store.ts";
import type { ControlPlaneApi, ServiceSlice } from "../../shared/slice.ts";
import { CLAIM_MS, decideShared, FRESH_MS, MAX_SHARED_FRESH_MS, SliceCache, validShare, WRITER_GRACE_MS, type SharedEntry, type SliceState } from "../../workers/proxy/config-cache.ts";

function sliceOf(service: string, version: number, weightA: number): ServiceSlice {
  return {
    service,
    version,
    backends: [
      { name: "a", type: "worker", binding: "A" },
      { name: "b", type: "worker", binding: "B" },
    ],
    routes: [{ name: "all", match: { path: "/*" }, split: { weights: { a: weightA, b: 100 - weightA } }, layout: [] }],
  } satisfies ServiceSlice;
}

const slice3: SharedEntry["read"] = { status: "slice", slice: sliceOf("s", 3, 50) };

describe("decideShared: what a refresh does with its data center's shared entry", () => {
  it("asks the SliceStore when there is no entry, or it is stale, or its freshness is implausible", () => {
    expect(decideShared(undefined, 3, 1_000)).toEqual({ kind: "ask", reason: "missing" });
    expect(decideShared({ read: slice3, freshUntil: 1_000 }, 3, 1_000)).toEqual({ kind: "ask", reason: "stale" });
    expect(decideShared({ read: slice3, freshUntil: 1_000 + MAX_SHARED_FRESH_MS + 1 }, 3, 1_000)).toEqual({ kind: "ask", reason: "stale" });
  });

  it("adopts a fresh entry only when it is newer than what the isolate serves: versions never go backwards", () => {
    expect(decideShared({ read: slice3, freshUntil: 1_500 }, undefined, 1_000)).toEqual({ kind: "adopt", read: slice3 });
    expect(decideShared({ read: slice3, freshUntil: 1_500 }, 2, 1_000)).toEqual({ kind: "adopt", read: slice3 });
    expect(decideShared({ read: slice3, freshUntil: 1_500 }, 3, 1_000)).toEqual({ kind: "current" });
    expect(decideShared({ read: slice3, freshUntil: 1_500 }, 4, 1_000)).toEqual({ kind: "current" });
    const gone: SharedEntry["read"] = { status: "absent", version: 5 };
    expect(decideShared({ read: gone, freshUntil: 1_500 }, 4, 1_000)).toEqual({ kind: "adopt", read: gone });
  });

  it("waits for another isolate's claimed refresh of a stale entry, unless the claim has run out or is implausible", () => {
    const stale = { read: slice3, freshUntil: 900 };
    expect(decideShared({ ...stale, refreshingUntil: 1_500, claim: "c" }, 3, 1_000)).toEqual({ kind: "current" });
    expect(decideShared({ ...stale, refreshingUntil: 1_500, claim: "c" }, undefined, 1_000)).toEqual({ kind: "adopt", read: slice3 });
    expect(decideShared({ ...stale, refreshingUntil: 1_000, claim: "c" }, 3, 1_000)).toEqual({ kind: "ask", reason: "stale" });
    expect(decideShared({ ...stale, refreshingUntil: 1_000 + CLAIM_MS + 1, claim: "c" }, 3, 1_000)).toEqual({ kind: "ask", reason: "stale" });
  });

  it("the writer renews its own stale entry without a claim; the others leave it to the writer for a grace period", () => {
    const stale: SharedEntry = { read: slice3, freshUntil: 1_000, writer: "w" };
    expect(decideShared(stale, 3, 1_000, "w")).toEqual({ kind: "ask", reason: "renew" });
    expect(decideShared(stale, 3, 1_000, "other")).toEqual({ kind: "current" });
    expect(decideShared(stale, 2, 1_000 + WRITER_GRACE_MS - 1, "other")).toEqual({ kind: "adopt", read: slice3 });
    // The writer has gone quiet: past the grace another isolate claims the refresh.
    expect(decideShared(stale, 3, 1_000 + WRITER_GRACE_MS, "other")).toEqual({ kind: "ask", reason: "stale" });
    // An implausible freshness is never left to anyone, its writer included.
    const skewed: SharedEntry = { read: slice3, freshUntil: 1_000 + MAX_SHARED_FRESH_MS + 1, writer: "w" };
    expect(decideShared(skewed, 3, 1_000, "w")).toEqual({ kind: "ask", reason: "stale" });
    // While fresh the entry is read as any other, by its writer too.
    expect(decideShared({ ...stale, freshUntil: 1_500 }, 3, 1_000, "w")).toEqual({ kind: "current" });
  });

  it("believes only well-formed share settings from the SliceStore", () => {
    const key = "0123456789abcdef0123456789abcdef";
    expect(validShare({ key, freshForMs: 750 })).toEqual({ key, freshForMs: 750 });
    expect(validShare(undefined)).toBeUndefined();
    expect(validShare({ key: "short", freshForMs: 750 })).toBeUndefined();
    expect(validShare({ key, freshForMs: -1 })).toBeUndefined();
    expect(validShare({ key, freshForMs: MAX_SHARED_FRESH_MS + 1 })).toBeUndefined();
    expect(validShare({ key, freshForMs: Number.NaN })).toBeUndefined();
  });
});

/** The proxies' real RPC entrypoint for `service`, counting the reads that reach its SliceStore. */
function countedControlPlane(service: string): { source: Pick<ControlPlaneApi, "readSlice">; reads: () => number } {
  const entrypoint = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
  const real = entrypoint({ props: { service } });
  let reads = 0;
  return {
    source: {
      readSlice: (claimed, known) => {
        reads++;
        return real.readSlice(claimed, known);
      },
    },
    reads: () => reads,
  };
}

/** One proxy isolate's config cache, on a clock the test steps. */
function isolate(service: string, source: Pick<ControlPlaneApi, "readSlice">, clock: () => number): SliceCache {
  return new SliceCache(service, source, { context: { bindings: {}, keySets: new Map(), balancers: new Map() }, onCompiled: () => undefined }, clock);
}

function weightOf(state: SliceState | undefined): number | undefined {
  return state?.kind === "ready" ? state.slice.routes[0]?.weights.a : undefined;
}

/**
 * Steps every isolate once (a request each), one after another as isolates refresh at different
 * moments, waiting for any refresh a request starts; returns the states served.
 */
async function requestEach(isolates: SliceCache[]): Promise<SliceState[]> {
  const states: SliceState[] = [];
  for (const cache of isolates) {
    const pending: Array<Promise<unknown>> = [];
    states.push(await cache.current((p) => pending.push(p)));
    // A refresh defers its write to the shared cache: wait for that too (it is pushed while awaited).
    for (let settled = 0; settled < pending.length; ) {
      const batch = pending.slice(settled);
      settled = pending.length;
      await Promise.all(batch);
    }
  }
  return states;
}

describe("isolates of one data center share their SliceStore reads through the Cache API", () => {
  it("reads the SliceStore about once per shared freshness, not once per isolate, and still spreads a split change to every isolate", async () => {
    const service = "share-a";
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 1, 90) });
    const { source, reads } = countedControlPlane(service);
    let now = 1_000_000;
    const clock = (): number => now;
    const isolates = Array.from({ length: 8 }, () => isolate(service, source, clock));

    // Start: each isolate asks once (it learns the secret cache key from the SliceStore's answer).
    await requestEach(isolates);
    expect(reads()).toBe(isolates.length);
    expect(isolates.map((c) => c.servedVersion)).toEqual(isolates.map(() => 1));

    // Refreshes within the shared freshness come from the cache: no SliceStore read at all.
    for (let step = FRESH_MS + 1; step < SHARED_FRESH_MS; step += FRESH_MS + 1) {
      now = 1_000_000 + step;
      await requestEach(isolates);
    }
    expect(reads()).toBe(isolates.length);

    // Many refresh periods: one read per shared freshness for all eight isolates together.
    const rounds = 12;
    const before = reads();
    for (let round = 1; round <= rounds; round++) {
      now = 1_000_000 + round * (FRESH_MS + 1) * 3;
      await requestEach(isolates);
    }
    // Each round's step is longer than the shared freshness, so each round costs one read (not eight).
    expect((FRESH_MS + 1) * 3).toBeGreaterThan(SHARED_FRESH_MS);
    expect(reads() - before).toBe(rounds);

    // A split change reaches every isolate by the next refresh after the shared entry goes stale.
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 2, 10) });
    now += SHARED_FRESH_MS + FRESH_MS + 1;
    await requestEach(isolates); // refreshes in the background: the first stale reader asks, the rest adopt
    const served = await requestEach(isolates);
    expect(isolates.map((c) => c.servedVersion)).toEqual(isolates.map(() => 2));
    expect(served.map(weightOf)).toEqual(isolates.map(() => 10));
  }, 30_000);

  it("isolates that find the shared entry stale at the same moment make one SliceStore read between them", async () => {
    const service = "share-c";
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 1, 60) });
    const { source, reads } = countedControlPlane(service);
    let now = 3_000_000;
    const isolates = Array.from({ length: 12 }, () => isolate(service, source, () => now));
    await requestEach(isolates);
    const before = reads();
    for (let round = 1; round <= 3; round++) {
      now += SHARED_FRESH_MS + 1;
      // Every isolate refreshes at once (a burst of requests lands on all of them together).
      const pending: Array<Promise<unknown>> = [];
      await Promise.all(isolates.map(async (cache) => await cache.current((p) => pending.push(p))));
      for (let settled = 0; settled < pending.length; ) {
        const batch = pending.slice(settled);
        settled = pending.length;
        await Promise.all(batch);
      }
    }
    expect(reads() - before).toBe(3);
    expect(isolates.map((c) => c.servedVersion)).toEqual(isolates.map(() => 1));
  });

  it("an isolate whose data center cache holds nothing (evicted; workers.dev stores nothing) reads once per freshness, not per refresh", async () => {
    const service = "share-d";
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 1, 30) });
    const { source, reads } = countedControlPlane(service);
    let now = 7_000_000;
    const cache = isolate(service, source, () => now);
    await requestEach([cache]);
    const key = (await source.readSlice(service, 0)).share?.key ?? "";
    const before = reads();
    const shared = await caches.open("weft-config");
    for (let step = 1; step <= 12; step++) {
      await shared.delete(`https://weft-config.internal/slice/${key}`);
      now += FRESH_MS + 1;
      await requestEach([cache]);
    }
    // Twelve refreshes over 3 s: one read per 750 ms of freshness, not twelve.
    expect(reads() - before).toBeLessThanOrEqual(Math.ceil((12 * (FRESH_MS + 1)) / SHARED_FRESH_MS));
  });

  it("when the isolate that wrote the shared entry stops serving, another takes over its renewal after the grace period", async () => {
    const service = "share-e";
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 1, 40) });
    const { source, reads } = countedControlPlane(service);
    let now = 9_000_000;
    const [quiet, busy] = [isolate(service, source, () => now), isolate(service, source, () => now)];
    await requestEach([busy, quiet]); // `quiet` wrote last: the shared entry is its to renew
    const before = reads();
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 2, 20) });
    // Only `busy` serves requests from now on. Just past the entry's freshness it waits for the writer…
    now += SHARED_FRESH_MS + 1;
    await requestEach([busy]);
    expect(reads() - before).toBe(0);
    expect(busy.servedVersion).toBe(1);
    // …and past the grace it claims the refresh itself, reads once, and serves the change.
    now += WRITER_GRACE_MS;
    await requestEach([busy]);
    expect(reads() - before).toBe(1);
    expect(busy.servedVersion).toBe(2);
    // From then on `busy` is the writer: one read per freshness, however often it serves.
    for (let step = 0; step < 9; step++) {
      now += FRESH_MS + 1;
      await requestEach([busy]);
    }
    expect(reads() - before).toBeLessThanOrEqual(1 + Math.ceil((9 * (FRESH_MS + 1)) / SHARED_FRESH_MS));
  });

  it("never takes an older shared entry, and serves the last good config when the control plane fails", async () => {
    const service = "share-b";
    await sliceStoreOf(env, service).publish({ status: "slice", slice: sliceOf(service, 4, 70) });
    const { source } = countedControlPlane(service);
    let now = 5_000_000;
    let failing = false;
    const flaky: Pick<ControlPlaneApi, "readSlice"> = {
      readSlice: async (claimed, known) => {
        if (failing) throw new Error("control plane down");
        return await source.readSlice(claimed, known);
      },
    };
    const a = isolate(service, flaky, () => now);
    await requestEach([a]);
    expect(a.servedVersion).toBe(4);

    // An isolate elsewhere shares an older answer (a slow writer): `a` keeps version 4.
    const read = await source.readSlice(service, 0);
    const key = read.share?.key ?? "";
    const older: SharedEntry = { read: { status: "slice", slice: sliceOf(service, 3, 0) }, freshUntil: now + 5_000 };
    await (await caches.open("weft-config")).put(`https://weft-config.internal/slice/${key}`, new Response(JSON.stringify(older), { headers: { "cache-control": "max-age=60" } }));
    // Past its own entry's freshness, `a` reads the shared entry again and finds the older one.
    now += SHARED_FRESH_MS + 1;
    await requestEach([a]);
    expect(a.servedVersion).toBe(4);

    // The control plane goes down and the shared entry is stale: the last good config keeps serving.
    failing = true;
    now += 10_000;
    const states = await requestEach([a]);
    expect(states[0]?.kind).toBe("ready");
    expect(a.servedVersion).toBe(4);
  });
});
