/**
 * SliceStore: one object per service (`idFromName(service)`) holding the slice its proxies load.
 * Sharding by service keeps the refresh traffic of thousands of proxies off any single object, and a
 * proxy's refresh is one small read here, never a query over the whole mesh.
 */
import { DurableObject } from "cloudflare:workers";
import type { SliceRead } from "../shared/slice.ts";
import { configStoreOf } from "./config-store.ts";

type Published = Exclude<SliceRead, { status: "unchanged" }>;

function versionOf(entry: Published): number {
  return entry.status === "slice" ? entry.slice.version : entry.version;
}

export class SliceStore extends DurableObject<ControlPlaneEnv> {
  private entry: Published | undefined;

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS published (id INTEGER PRIMARY KEY CHECK (id = 1), entry TEXT NOT NULL)",
    );
    const row = ctx.storage.sql.exec<{ entry: string }>("SELECT entry FROM published").toArray()[0];
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

  /** The slice if it changed since `knownVersion`. A shard that has nothing yet asks the ConfigStore once. */
  async read(service: string, knownVersion: number): Promise<SliceRead> {
    if (!this.entry) {
      const pulled = await configStoreOf(this.env).readSlice(service);
      if (pulled.status !== "unchanged") this.publish(pulled);
    }
    const entry = this.entry;
    if (!entry) return { status: "absent", version: 0 };
    if (entry.status === "slice" && entry.slice.version === knownVersion) return { status: "unchanged", version: knownVersion };
    return entry;
  }
}
