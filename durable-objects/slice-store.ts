/**
 * SliceStore: one object per service (`idFromName(service)`) holding the slice its proxies load.
 * Sharding by service keeps the refresh traffic of thousands of proxies off any single object, and a
 * proxy's refresh is one small read here, never a query over the whole mesh.
 *
 * Its readers are data centers, not isolates: every answer carries a {@link SliceShare} (a secret
 * cache key and a freshness), and the isolates of one data center share the answer through the
 * Cache API until it is stale (workers/proxy/config-cache.ts). So this object sees about one read
 * per data center per {@link SHARED_FRESH_MS}, whatever the number of isolates there.
 */
import { DurableObject } from "cloudflare:workers";
import type { SliceRead, SliceShare } from "../shared/slice.ts";
import { configStoreOf } from "./config-store.ts";

type Published = Exclude<SliceRead, { status: "unchanged" }>;

/**
 * How long a read shared through a data center's cache stays fresh. A split change reaches every
 * isolate within this plus the isolates' own in-memory freshness (workers/proxy/config-cache.ts
 * `FRESH_MS`, 250 ms) and one read: about 1 s. It also sets this object's load: about
 * 1000 / SHARED_FRESH_MS reads per second per data center with traffic (1.3/s; 400/s from 300).
 */
export const SHARED_FRESH_MS = 750;

function versionOf(entry: Published): number {
  return entry.status === "slice" ? entry.slice.version : entry.version;
}

function randomKey(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class SliceStore extends DurableObject<ControlPlaneEnv> {
  private entry: Published | undefined;
  private readonly shareKey: string;

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS published (id INTEGER PRIMARY KEY CHECK (id = 1), entry TEXT NOT NULL)");
    // The cache key is a capability: only this service's proxies learn it (ConfigService checks their binding's props).
    sql.exec("CREATE TABLE IF NOT EXISTS share (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL)");
    sql.exec("INSERT OR IGNORE INTO share (id, key) VALUES (1, ?)", randomKey());
    this.shareKey = sql.exec<{ key: string }>("SELECT key FROM share").one().key;
    const row = sql.exec<{ entry: string }>("SELECT entry FROM published").toArray()[0];
    this.entry = row ? (JSON.parse(row.entry) as Published) : undefined;
  }

  /** Stores a newer slice (or the news that the service is gone); older or equal versions are ignored. */
  publish(entry: Published): void {
    if (this.entry && versionOf(this.entry) >= versionOf(entry)) return;
    this.ctx.storage.sql.exec(
      "INSERT INTO published (id, entry) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET entry = excluded.entry",
      JSON.stringify(entry),
    );
    this.entry = entry;
  }

  /**
   * The slice if it changed since `knownVersion`, with how the caller's data center may share it.
   * A shard that has nothing yet asks the ConfigStore once.
   */
  async read(service: string, knownVersion: number): Promise<SliceRead> {
    if (!this.entry) {
      const pulled = await configStoreOf(this.env).readSlice(service);
      if (pulled.status !== "unchanged") this.publish(pulled);
    }
    const share: SliceShare = { key: this.shareKey, freshForMs: SHARED_FRESH_MS };
    const entry = this.entry;
    if (!entry) return { status: "absent", version: 0, share };
    if (entry.status === "slice" && entry.slice.version === knownVersion) return { status: "unchanged", version: knownVersion, share };
    return { ...entry, share };
  }
}
