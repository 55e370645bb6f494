/**
 * TelemetryIndex: which services have sent telemetry lately, so the mesh-wide views (`/metrics`,
 * `/admin/graph`, `/admin/metrics` lists, the dashboard, recent errors) read only the shards of
 * services with traffic. In a 4,000-service mesh most shards are idle; reading them all on every
 * scrape woke thousands of objects for nothing.
 *
 * Each TelemetryStore registers its service here at most once per {@link REGISTER_EVERY_MS} while
 * batches arrive, so this one object takes about services ÷ 300 calls per second (13/s for 4,000
 * busy services), never one per batch. A service is known to have had telemetry since `t` when it
 * registered after `t − REGISTER_EVERY_MS` (see {@link activeSinceFloor}).
 */
import { DurableObject } from "cloudflare:workers";
import { plainStub, type PlainStub } from "./rpc.ts";

/** A telemetry shard re-registers its service at most this often while it receives batches. */
export const REGISTER_EVERY_MS = 5 * 60_000;
/** A service that sent nothing for this long is forgotten (its `/metrics` series go stale with it). */
export const INDEX_TTL_MS = 24 * 3_600_000;
/** Entries kept at most; beyond, the longest-silent ones go first. Bounds storage keyed by outside names. */
export const MAX_INDEXED = 20_000;

/** The mesh has one index. */
export function telemetryIndexOf(env: ControlPlaneEnv): PlainStub<TelemetryIndex> {
  return plainStub<TelemetryIndex>(env.TELEMETRY_INDEX.get(env.TELEMETRY_INDEX.idFromName("mesh")));
}

/**
 * The earliest registration time that proves telemetry at or after `since`: a shard that received
 * a batch at `t` registered at some point in (t − REGISTER_EVERY_MS, t].
 */
export function activeSinceFloor(since: number): number {
  return since - REGISTER_EVERY_MS;
}

/** How long entries live and how many there may be. */
export interface IndexLimits {
  ttlMs: number;
  max: number;
}

/**
 * Which services the index forgets at `now`: those silent for longer than the TTL, then, while
 * more than `max` remain, the longest-silent ones. Pure.
 */
export function forgotten(seen: ReadonlyMap<string, number>, now: number, limits: IndexLimits = { ttlMs: INDEX_TTL_MS, max: MAX_INDEXED }): string[] {
  const expired = [...seen].filter(([, at]) => at < now - limits.ttlMs).map(([service]) => service);
  const over = seen.size - expired.length - limits.max;
  if (over <= 0) return expired;
  const gone = new Set(expired);
  const oldest = [...seen].filter(([service]) => !gone.has(service)).sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1)).slice(0, over);
  return [...expired, ...oldest.map(([service]) => service)];
}

export class TelemetryIndex extends DurableObject<ControlPlaneEnv> {
  private readonly sql: SqlStorage;
  /** service → last registration (ms); mirrors the table so reads never query storage. */
  private readonly seen = new Map<string, number>();
  private alarmChecked = false;

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS seen (service TEXT PRIMARY KEY, at INTEGER NOT NULL)");
    for (const row of this.sql.exec<{ service: string; at: number }>("SELECT service, at FROM seen")) this.seen.set(row.service, Number(row.at));
  }

  /** Notes that `service` received telemetry now. */
  record(service: string): void {
    const now = Date.now();
    this.sql.exec("INSERT INTO seen (service, at) VALUES (?, ?) ON CONFLICT (service) DO UPDATE SET at = excluded.at", service, now);
    this.seen.set(service, now);
    if (this.seen.size > MAX_INDEXED) this.forget(forgotten(this.seen, now));
    if (!this.alarmChecked) {
      // Once per instance: an alarm already set is kept, so restarts never postpone the clean-up.
      this.alarmChecked = true;
      this.ctx.waitUntil(this.ctx.storage.getAlarm().then((alarm) => (alarm === null ? this.ctx.storage.setAlarm(now + INDEX_TTL_MS / 4) : undefined)));
    }
  }

  /** Services with telemetry at or after `since` (ms), by name. */
  activeSince(since: number): string[] {
    const floor = activeSinceFloor(since);
    return [...this.seen].filter(([, at]) => at >= floor).map(([service]) => service).sort();
  }

  /** Forgets services silent for longer than {@link INDEX_TTL_MS}; runs while anything is left. */
  override async alarm(): Promise<void> {
    this.forget(forgotten(this.seen, Date.now()));
    if (this.seen.size > 0) await this.ctx.storage.setAlarm(Date.now() + INDEX_TTL_MS / 4);
  }

  /** How many services the index holds (for tests and operators). */
  size(): number {
    return this.seen.size;
  }

  private forget(services: ReadonlyArray<string>): void {
    for (const service of services) {
      this.sql.exec("DELETE FROM seen WHERE service = ?", service);
      this.seen.delete(service);
    }
  }
}
