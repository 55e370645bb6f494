import { env } from "cloudflare:workers";
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { activeSinceFloor, forgotten, INDEX_TTL_MS, REGISTER_EVERY_MS, type TelemetryIndex } from "../../durable-objects/telemetry-index.ts";

const NOW = 1_800_000_000_000;

describe("forgotten (what the telemetry index drops)", () => {
  it("drops services silent for longer than the TTL and keeps the rest", () => {
    const seen = new Map([["old", NOW - INDEX_TTL_MS - 1], ["edge", NOW - INDEX_TTL_MS], ["new", NOW]]);
    expect(forgotten(seen, NOW)).toEqual(["old"]);
  });

  it("beyond the cap drops the longest-silent services first, ties by name", () => {
    const seen = new Map([["c", NOW - 3], ["a", NOW - 5], ["b", NOW - 5], ["d", NOW]]);
    expect(forgotten(seen, NOW, { ttlMs: INDEX_TTL_MS, max: 2 })).toEqual(["a", "b"]);
    expect(forgotten(seen, NOW, { ttlMs: INDEX_TTL_MS, max: 4 })).toEqual([]);
    // Expired ones count towards what must go.
    expect(forgotten(new Map([["x", 0], ["y", NOW - 1], ["z", NOW]]), NOW, { ttlMs: 10, max: 1 })).toEqual(["x", "y"]);
  });

  it("counts a registration up to one interval before a window as proof of telemetry in it", () => {
    expect(activeSinceFloor(NOW)).toBe(NOW - REGISTER_EVERY_MS);
  });
});

describe("TelemetryIndex", () => {
  it("lists what it recorded and forgets expired entries on its alarm, in memory and in storage", async () => {
    const stub = env.TELEMETRY_INDEX.get(env.TELEMETRY_INDEX.idFromName("ttl-test"));
    await stub.record("fresh");
    await stub.record("stale");
    expect(await stub.activeSince(Date.now() - 60_000)).toEqual(["fresh", "stale"]);
    // Age one entry past the TTL (storage and the in-memory mirror, as a restart would load it).
    await runInDurableObject(stub, (instance: TelemetryIndex, state) => {
      state.storage.sql.exec("UPDATE seen SET at = ? WHERE service = 'stale'", Date.now() - INDEX_TTL_MS - 1);
      (instance as unknown as { seen: Map<string, number> }).seen.set("stale", Date.now() - INDEX_TTL_MS - 1);
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.activeSince(0)).toEqual(["fresh"]);
    expect(await stub.size()).toBe(1);
    const rows = await runInDurableObject(stub, (_instance: TelemetryIndex, state) => state.storage.sql.exec<{ service: string }>("SELECT service FROM seen").toArray());
    expect(rows.map((r) => r.service)).toEqual(["fresh"]);
  });
});
