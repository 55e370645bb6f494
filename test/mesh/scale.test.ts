/**
 * Many isolates of one service's proxy against one control plane (issue 18): the calls its Durable
 * Objects receive must not grow with the isolates, while a split change still reaches every isolate
 * and telemetry counts stay exact. Twelve instances of the real proxy worker run on one workerd (one
 * data center: they share its Cache API), each CONTROL_PLANE binding through a worker that counts
 * the calls each object receives (scripts/scale-mesh.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootScaleMesh, SCALE_BACKENDS, SCALE_SERVICE, shopperHeaders, waitServing, type ScaleMesh } from "../../scripts/scale-mesh.ts";

const ISOLATES = 12;
/** durable-objects/slice-store.ts SHARED_FRESH_MS: a data center reads its SliceStore about once per this. */
const SHARED_FRESH_MS = 750;
/**
 * The stated bound for a split change (workers/proxy/config-cache.ts): shared freshness 750 ms +
 * in-memory freshness 250 ms + a claim and a read, about 1.1 s, plus the control plane's own
 * publication to the SliceStore; 2.5 s leaves room for a loaded 2-core machine.
 */
const SPLIT_BOUND_MS = 2_500;

let scale: ScaleMesh;
/** Every request sent to a proxy isolate (each is counted once in telemetry, whatever it answered). */
let sent = 0;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function get(url: URL, i: number): Promise<Response> {
  sent++;
  const response = await fetch(new URL(`/products/p-${i % 50}`, url), { headers: shopperHeaders(i) });
  await response.arrayBuffer();
  return response;
}

async function sliceReads(): Promise<number> {
  return (await scale.counts())[`SliceStore ${SCALE_SERVICE}`] ?? 0;
}

/** Requests through `urls` (one each per round, a round every 50 ms) for about `ms`; the SliceStore reads meanwhile. */
async function serve(urls: URL[], ms: number): Promise<{ reads: number; seconds: number }> {
  const before = await sliceReads();
  const started = performance.now();
  for (let round = 0; performance.now() - started < ms; round++) {
    const answers = await Promise.all(urls.map(async (url, k) => await get(url, round * urls.length + k)));
    expect(answers.map((r) => r.status)).toEqual(urls.map(() => 200));
    await sleep(50);
  }
  return { reads: (await sliceReads()) - before, seconds: (performance.now() - started) / 1000 };
}

/** `service="scale"` requests counted by the TelemetryStore, from Prometheus `/metrics`. */
async function countedRequests(): Promise<number> {
  const response = await scale.adminFetch("/metrics");
  expect(response.status).toBe(200);
  let total = 0;
  for (const line of (await response.text()).split("\n")) {
    if (line.startsWith("weft_requests_total{") && line.includes(`service="${SCALE_SERVICE}"`)) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

beforeAll(async () => {
  scale = await bootScaleMesh({ isolates: ISOLATES, adminToken: "scale-test-token", debugHeaders: true });
  sent += await waitServing(scale.urls);
}, 120_000);

afterAll(async () => {
  await scale?.dispose();
});

describe("proxy isolates of one data center", () => {
  it("share their config reads: the SliceStore sees about one read per 750 ms however many isolates serve", async () => {
    const one = await serve(scale.urls.slice(0, 1), 3_000);
    const all = await serve(scale.urls, 3_000);
    // Unshared, each isolate would read ~2.5 times a second: twelve would make ~90 reads here.
    expect(all.reads).toBeLessThanOrEqual(Math.ceil((all.seconds * 1000) / SHARED_FRESH_MS) + 2);
    expect(all.reads).toBeLessThanOrEqual(one.reads + 3);
  });

  it("still obey a split change within the stated bound, every one of them", async () => {
    const readsBefore = await sliceReads();
    const written = performance.now();
    const response = await scale.adminFetch(`/admin/services/${SCALE_SERVICE}/split`, { method: "PUT", body: JSON.stringify({ weights: { [SCALE_BACKENDS[0]]: 0, [SCALE_BACKENDS[1]]: 100 } }) });
    expect(response.status).toBe(200);
    const obeyedAfter: Array<number | undefined> = scale.urls.map(() => undefined);
    for (let round = 0; obeyedAfter.includes(undefined) && performance.now() - written < 10_000; round++) {
      await Promise.all(
        scale.urls.map(async (url, k) => {
          if (obeyedAfter[k] !== undefined) return;
          const answer = await get(url, round * ISOLATES + k);
          if (answer.headers.get("x-weft-backend") === SCALE_BACKENDS[1]) obeyedAfter[k] = performance.now() - written;
        }),
      );
      await sleep(20);
    }
    const slowest = Math.max(...obeyedAfter.map((ms) => ms ?? Number.POSITIVE_INFINITY));
    console.log(`split change obeyed by all ${ISOLATES} isolates after ${Math.round(slowest)} ms`);
    expect(slowest).toBeLessThanOrEqual(SPLIT_BOUND_MS);
    // The change travelled through the shared cache: a few reads for all twelve isolates.
    expect((await sliceReads()) - readsBefore).toBeLessThanOrEqual(Math.ceil(slowest / SHARED_FRESH_MS) + 3);
  });

  it("count every request exactly once in telemetry while their shard paces them", async () => {
    await serve(scale.urls, 2_000);
    // Paced batches arrive within seconds; poll until every request sent is counted.
    let counted = await countedRequests();
    for (let wait = 0; counted < sent && wait < 60; wait++) {
      await sleep(500);
      counted = await countedRequests();
    }
    expect(counted).toBe(sent);
    // One more pace later nothing was counted twice.
    await sleep(2_000);
    expect(await countedRequests()).toBe(sent);
    expect((await scale.counts())[`TelemetryStore ${SCALE_SERVICE}`]).toBeGreaterThan(0);
  });
});
