import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { BATCH_ID_MEMORY_MS, TAP_MAX_QUEUED, telemetryStoreOf, type TelemetryStore } from "../../durable-objects/telemetry-store.ts";
import { BUCKETS, type TapEvent, type TelemetryBatch } from "../../shared/metrics.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";

function batchOf(service: string, batchId: string, count: number): TelemetryBatch {
  const buckets = new Array<number>(BUCKETS).fill(0);
  buckets[2] = count;
  return {
    service,
    batchId,
    at: Date.now(),
    series: [{ route: "all", backend: "a", caller: "internet", code: 200, count, attempts: count, sumMs: count * 3, buckets }],
    ejections: 1,
    events: [],
    attempts: [{ backend: "a", count, failures: 0, buckets }],
  };
}

describe("telemetry batches are applied at most once", () => {
  it("counts a batch recorded twice (a re-send after a timeout whose first RPC committed) once", async () => {
    const store = telemetryStoreOf(env, "dedup");
    const batch = batchOf("dedup", crypto.randomUUID(), 7);
    await store.ingest(batch);
    await store.ingest(structuredClone(batch)); // the re-send: same id
    await store.ingest(batchOf("dedup", crypto.randomUUID(), 5)); // a different batch still counts
    const totals = await store.totals();
    expect(totals.series.reduce((sum, s) => sum + s.count, 0)).toBe(12);
    expect(totals.ejections).toBe(2);
    expect((await store.attemptTotals()).a?.count).toBe(12);
  });

  it("deduplicates through the proxies' RPC entrypoint too, and refuses a missing or oversized id", async () => {
    const entrypoint = exports.ConfigService as unknown as (options: { props: { service: string } }) => ControlPlaneApi;
    const controlPlane = entrypoint({ props: { service: "dedup-rpc" } });
    const batch = batchOf("dedup-rpc", "b-1", 3);
    await Promise.all([controlPlane.recordTelemetry(batch), controlPlane.recordTelemetry(batch)]);
    const totals = await telemetryStoreOf(env, "dedup-rpc").totals();
    expect(totals.series.reduce((sum, s) => sum + s.count, 0)).toBe(3);
    for (const batchId of ["", "x".repeat(65), "a/b"]) {
      const refused = await controlPlane.recordTelemetry({ ...batch, batchId }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(String(refused)).toMatch(/invalid batch id/);
    }
  });

  it("forgets batch ids after a while, so the memory of ids stays bounded", async () => {
    const store = telemetryStoreOf(env, "dedup-prune");
    await store.ingest(batchOf("dedup-prune", "old", 1));
    const stub = env.TELEMETRY.get(env.TELEMETRY.idFromName("dedup-prune"));
    await runInDurableObject(stub, (_instance: TelemetryStore, state) => {
      state.storage.sql.exec("UPDATE batches SET received_at = ?", Date.now() - BATCH_ID_MEMORY_MS - 1_000);
    });
    // The next batch in a later slot prunes ids older than the memory.
    await store.ingest({ ...batchOf("dedup-prune", "new", 1), at: Date.now() + 20_000 });
    await runInDurableObject(stub, (_instance: TelemetryStore, state) => {
      const ids = state.storage.sql.exec<{ id: string }>("SELECT id FROM batches ORDER BY id").toArray().map((r) => r.id);
      expect(ids).toEqual(["new"]);
    });
  });
});

function tapEvent(i: number): TapEvent {
  return {
    at: new Date().toISOString(), service: "tapped", method: "GET", path: `/p/${i}`, route: "all", backend: "a",
    caller: "internet", status: 200, durationMs: 1, traceId: "0".repeat(32), spanId: i.toString(16).padStart(16, "0"), sampled: true, attempts: 1,
  };
}

/** Reads SSE frames from `reader` until `done` says stop; answers the frames read. */
async function readFrames(reader: ReadableStreamDefaultReader<Uint8Array>, done: (frames: string[]) => boolean): Promise<string[]> {
  const decoder = new TextDecoder();
  let buffer = "";
  const frames: string[] = [];
  while (!done(frames)) {
    const chunk = await reader.read();
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    const parts = buffer.split("\n\n");
    buffer = parts.pop() ?? "";
    frames.push(...parts);
  }
  return frames;
}

describe("tap backpressure", () => {
  it("drops events for a client that does not read instead of buffering them, and says how many it missed", async () => {
    const store = telemetryStoreOf(env, "tapped");
    const stub = env.TELEMETRY.get(env.TELEMETRY.idFromName("tapped"));
    const res = await stub.fetch("https://telemetry.internal/tap");
    const body: ReadableStream<Uint8Array> | null = res.body;
    const reader = body?.getReader();
    if (!reader) throw new Error("no tap stream");
    // A client that reads nothing while 2,000 requests happen.
    const total = 2_000;
    for (let i = 0; i < total; i += 100) {
      await store.ingest({ ...batchOf("tapped", crypto.randomUUID(), 1), events: Array.from({ length: 100 }, (_, j) => tapEvent(i + j)) });
    }
    const [backlog] = await store.tapBacklog();
    expect(backlog?.queued).toBeLessThanOrEqual(TAP_MAX_QUEUED);
    expect(backlog?.dropped).toBeGreaterThanOrEqual(total - TAP_MAX_QUEUED);
    // Reading now delivers what was queued, then the count of what was dropped.
    const frames = await readFrames(reader, (read) => read.some((f) => f.startsWith("event: dropped")));
    const delivered = frames.filter((f) => f.startsWith("event: request")).length;
    const notice = frames.find((f) => f.startsWith("event: dropped")) ?? "";
    const dropped = (JSON.parse(/^data: (.*)$/m.exec(notice)?.[1] ?? "{}") as { dropped?: number }).dropped ?? 0;
    expect(delivered).toBeLessThanOrEqual(TAP_MAX_QUEUED);
    expect(delivered + dropped).toBe(total);
    // Caught up: new events flow again.
    await store.ingest({ ...batchOf("tapped", crypto.randomUUID(), 1), events: [tapEvent(total)] });
    const next = await readFrames(reader, (read) => read.some((f) => f.includes(`/p/${total}`)));
    expect(next.some((f) => f.includes(`/p/${total}`))).toBe(true);
    await reader.cancel();
  });
});
