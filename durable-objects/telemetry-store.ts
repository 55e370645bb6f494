/**
 * TelemetryStore: one object per service (`idFromName(service)`), fed by that service's proxies in
 * batches, never per request. Each reply paces its writer (durable-objects/pacing.ts): one batch a
 * second per isolate while few isolates write, slower as more do, so the writes this object takes
 * stay near 8 a second whatever the number of isolates (up to 80 isolates; then isolates / 10).
 * It keeps the service's golden metrics in 10-second slots for an hour (for `/admin/metrics` and the
 * graph), running totals (for Prometheus), the recent errors, and the live tap streams.
 */
import { DurableObject } from "cloudflare:workers";
import { BUCKETS, isFailure, SLOT_SECONDS, type AttemptStats, type IngestReply, type SeriesStats, type SlotSeries, type TapEvent, type TelemetryBatch } from "../shared/metrics.ts";
import { flushPace, RecentWriters } from "./pacing.ts";
import { plainStub, type PlainStub } from "./rpc.ts";
import { REGISTER_EVERY_MS, telemetryIndexOf } from "./telemetry-index.ts";

/** The telemetry shard of `service`. */
export function telemetryStoreOf(env: ControlPlaneEnv, service: string): PlainStub<TelemetryStore> {
  return plainStub<TelemetryStore>(env.TELEMETRY.get(env.TELEMETRY.idFromName(service)));
}

/** Slots older than this are deleted (the longest window the admin API serves). */
export const RETENTION_SECONDS = 3_600;
const KEPT_ERRORS = 200;
/** Recent events a new tap starts with. */
const REPLAYED_EVENTS = 20;
const HEARTBEAT_MS = 15_000;
/**
 * Frames a tap may have waiting for its client. A client that reads slower than the service serves
 * falls behind; beyond this many waiting frames its events are dropped (and counted) instead of
 * buffered, so one slow client never makes the shard hold an unbounded backlog. Like `linkerd viz
 * tap`, the client is told how many it missed once it catches up.
 */
export const TAP_MAX_QUEUED = 256;
/**
 * How long a batch id is remembered. A proxy re-sends a batch within seconds (after its RPC timed
 * out); ten minutes covers any retry with a wide margin, and bounds the table to ten minutes of
 * batches (about one a second per proxy isolate).
 */
export const BATCH_ID_MEMORY_MS = 10 * 60_000;

const BUCKET_COLUMNS = Array.from({ length: BUCKETS }, (_, i) => `b${i}`);
const STAT_COLUMNS = ["count", "attempts", "sum_ms", ...BUCKET_COLUMNS];
const KEY_COLUMNS = ["route", "backend", "caller", "code"];

function upsertSql(table: string, keys: string[]): string {
  const columns = [...keys, ...STAT_COLUMNS];
  return `INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})
    ON CONFLICT (${keys.join(", ")}) DO UPDATE SET ${STAT_COLUMNS.map((c) => `${c} = ${c} + excluded.${c}`).join(", ")}`;
}

const UPSERT_ATTEMPTS = `INSERT INTO attempt_totals (backend, count, failures, ${BUCKET_COLUMNS.join(", ")}) VALUES (${["?", "?", "?", ...BUCKET_COLUMNS.map(() => "?")].join(", ")})
  ON CONFLICT (backend) DO UPDATE SET ${["count", "failures", ...BUCKET_COLUMNS].map((c) => `${c} = ${c} + excluded.${c}`).join(", ")}`;

const UPSERT_SLOT = upsertSql("slots", ["slot", ...KEY_COLUMNS]);
const UPSERT_TOTAL = upsertSql("totals", KEY_COLUMNS);
const SELECT_STATS = `${KEY_COLUMNS.join(", ")}, ${STAT_COLUMNS.join(", ")}`;

type Row = Record<string, SqlStorageValue>;

const text = (value: SqlStorageValue | undefined): string => (typeof value === "string" ? value : "");

function seriesOf(row: Row): SeriesStats {
  return {
    route: text(row.route),
    backend: text(row.backend),
    caller: text(row.caller),
    code: Number(row.code),
    count: Number(row.count),
    attempts: Number(row.attempts),
    sumMs: Number(row.sum_ms),
    buckets: BUCKET_COLUMNS.map((c) => Number(row[c])),
  };
}

const encoder = new TextEncoder();

export class TelemetryStore extends DurableObject<ControlPlaneEnv> {
  private readonly sql: SqlStorage;
  private readonly taps = new Set<Tap>();
  private readonly recent: TapEvent[] = [];
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private prunedSlot = 0;
  /** When this shard last told the TelemetryIndex its service has traffic (0: not since it started). */
  private registeredAt = 0;
  /** Isolates that sent a batch recently (in memory: after a restart the pace starts over at one a second). */
  private readonly writers = new RecentWriters();

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    const stats = STAT_COLUMNS.map((c) => `${c} ${c === "sum_ms" ? "REAL" : "INTEGER"} NOT NULL DEFAULT 0`).join(", ");
    this.sql.exec(`CREATE TABLE IF NOT EXISTS slots (slot INTEGER NOT NULL, route TEXT NOT NULL, backend TEXT NOT NULL, caller TEXT NOT NULL, code INTEGER NOT NULL, ${stats},
      PRIMARY KEY (slot, route, backend, caller, code))`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS totals (route TEXT NOT NULL, backend TEXT NOT NULL, caller TEXT NOT NULL, code INTEGER NOT NULL, ${stats},
      PRIMARY KEY (route, backend, caller, code))`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS attempt_totals (backend TEXT PRIMARY KEY, count INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
      ${BUCKET_COLUMNS.map((c) => `${c} INTEGER NOT NULL DEFAULT 0`).join(", ")})`);
    this.sql.exec("CREATE TABLE IF NOT EXISTS ejections (slot INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
    this.sql.exec("CREATE TABLE IF NOT EXISTS ejection_totals (backend TEXT PRIMARY KEY, n INTEGER NOT NULL)");
    this.sql.exec("CREATE TABLE IF NOT EXISTS errors (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)");
    this.sql.exec("CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, received_at INTEGER NOT NULL)");
    this.sql.exec("CREATE INDEX IF NOT EXISTS batches_age ON batches (received_at)");
  }

  /**
   * Adds one proxy batch, unless a batch with its id was already applied (a re-send): then nothing
   * is counted again. Answers whether anyone is tapping, so proxies send more events then.
   */
  ingest(batch: TelemetryBatch): IngestReply {
    const slot = Math.floor(batch.at / 1000 / SLOT_SECONDS);
    const now = Date.now();
    this.register(batch.service, now);
    const applied = this.ctx.storage.transactionSync((): boolean => {
      // The id is recorded in the same transaction as the counts: either both commit or neither.
      if (this.sql.exec("INSERT OR IGNORE INTO batches (id, received_at) VALUES (?, ?)", batch.batchId, now).rowsWritten === 0) return false;
      for (const s of batch.series) {
        const stats = [s.count, s.attempts, s.sumMs, ...Array.from({ length: BUCKETS }, (_, i) => s.buckets[i] ?? 0)];
        this.sql.exec(UPSERT_SLOT, slot, s.route, s.backend, s.caller, s.code, ...stats);
        this.sql.exec(UPSERT_TOTAL, s.route, s.backend, s.caller, s.code, ...stats);
      }
      for (const a of batch.attempts) {
        this.sql.exec(UPSERT_ATTEMPTS, a.backend, a.count, a.failures, ...Array.from({ length: BUCKETS }, (_, i) => a.buckets[i] ?? 0));
      }
      if (batch.ejections > 0) {
        // Slot -1 holds the running total.
        for (const at of [slot, -1]) this.sql.exec("INSERT INTO ejections (slot, n) VALUES (?, ?) ON CONFLICT (slot) DO UPDATE SET n = n + excluded.n", at, batch.ejections);
      }
      // Batches from proxies older than per-backend counting carry only the total.
      for (const e of batch.ejectedBackends ?? []) {
        this.sql.exec("INSERT INTO ejection_totals (backend, n) VALUES (?, ?) ON CONFLICT (backend) DO UPDATE SET n = n + excluded.n", e.backend, e.count);
      }
      const errors = batch.events.filter((e) => isError(e));
      for (const e of errors) this.sql.exec("INSERT INTO errors (event) VALUES (?)", JSON.stringify(e));
      if (errors.length > 0) this.sql.exec("DELETE FROM errors WHERE id <= (SELECT MAX(id) FROM errors) - ?", KEPT_ERRORS);
      if (slot > this.prunedSlot) {
        this.sql.exec("DELETE FROM slots WHERE slot < ?", slot - RETENTION_SECONDS / SLOT_SECONDS - 1);
        this.sql.exec("DELETE FROM ejections WHERE slot >= 0 AND slot < ?", slot - RETENTION_SECONDS / SLOT_SECONDS - 1);
        this.sql.exec("DELETE FROM batches WHERE received_at < ?", now - BATCH_ID_MEMORY_MS);
        this.prunedSlot = slot;
      }
      return true;
    });
    if (applied) for (const event of batch.events) this.publish(event);
    return this.reply(batch.writer, now);
  }

  /** Whether anyone taps, and when the writer should send next. */
  private reply(writer: string | undefined, now: number): IngestReply {
    this.writers.touch(writer, now);
    const tapping = this.taps.size > 0;
    return { tapping, flushAfterMs: flushPace(this.writers.active(now), tapping).afterMs };
  }

  /**
   * Tells the TelemetryIndex that this service has traffic, at most once per REGISTER_EVERY_MS
   * (never per batch), so the mesh-wide views read only shards with recent telemetry.
   */
  private register(service: string, now: number): void {
    if (now - this.registeredAt < REGISTER_EVERY_MS) return;
    this.registeredAt = now;
    this.ctx.waitUntil(
      telemetryIndexOf(this.env)
        .record(service)
        .catch((error: unknown) => {
          // The next batch tries again; until then the views may leave this service out.
          this.registeredAt = 0;
          console.error(`weft: registering '${service}' in the telemetry index failed:`, error instanceof Error ? error.message : String(error));
        }),
    );
  }

  /** The stored series of the slots [`fromSlot`, `toSlot`] and the ejections in them. */
  window(fromSlot: number, toSlot: number): { rows: SlotSeries[]; ejections: number } {
    const rows = this.sql
      .exec<Row>(`SELECT slot, ${SELECT_STATS} FROM slots WHERE slot BETWEEN ? AND ? ORDER BY slot`, fromSlot, toSlot)
      .toArray()
      .map((row) => ({ ...seriesOf(row), slot: Number(row.slot) }));
    const ejected = this.sql.exec<{ n: number }>("SELECT COALESCE(SUM(n), 0) AS n FROM ejections WHERE slot BETWEEN ? AND ?", fromSlot, toSlot).one().n;
    return { rows, ejections: Number(ejected) };
  }

  /** Running totals since the shard began counting (Prometheus counters). */
  totals(): { series: SeriesStats[]; ejections: number; ejectedBackends: Record<string, number> } {
    const series = this.sql.exec<Row>(`SELECT ${SELECT_STATS} FROM totals ORDER BY route, backend, caller, code`).toArray().map(seriesOf);
    const ejected = this.sql.exec<{ n: number }>("SELECT COALESCE(SUM(n), 0) AS n FROM ejections WHERE slot = -1").one().n;
    const byBackend: Record<string, number> = {};
    for (const row of this.sql.exec<{ backend: string; n: number }>("SELECT backend, n FROM ejection_totals ORDER BY backend")) byBackend[row.backend] = Number(row.n);
    return { series, ejections: Number(ejected), ejectedBackends: byBackend };
  }

  /**
   * Running totals of attempts per backend. A rollout keeps a copy from the start of each step;
   * the difference is exactly the step's attempts, whatever the slot boundaries.
   */
  attemptTotals(): Record<string, AttemptStats> {
    const totals: Record<string, AttemptStats> = {};
    for (const row of this.sql.exec<Row>("SELECT * FROM attempt_totals")) {
      totals[text(row.backend)] = { count: Number(row.count), failures: Number(row.failures), buckets: BUCKET_COLUMNS.map((c) => Number(row[c])) };
    }
    return totals;
  }

  /** The newest errors first. */
  recentErrors(limit: number): TapEvent[] {
    return this.sql
      .exec<{ event: string }>("SELECT event FROM errors ORDER BY id DESC LIMIT ?", Math.max(1, Math.min(KEPT_ERRORS, limit)))
      .toArray()
      .map((row) => JSON.parse(row.event) as TapEvent);
  }

  /** `GET /tap`: a server-sent event stream of the service's requests, starting with recent ones. */
  override fetch(request: Request): Response {
    if (new URL(request.url).pathname !== "/tap") return new Response("not found", { status: 404 });
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const tap: Tap = { writer: writable.getWriter(), queued: 0, dropped: 0 };
    this.taps.add(tap);
    const replayed = this.recent.slice(-REPLAYED_EVENTS);
    this.send(tap, `retry: 2000\n: ${replayed.length} recent requests first, then live\n\n`);
    for (const event of replayed) this.send(tap, frame(event));
    this.heartbeat ??= setInterval(() => {
      // A client too far behind has frames on the way already; pinging it would only add to its queue.
      for (const tap of this.taps) if (tap.queued < TAP_MAX_QUEUED) this.send(tap, ": ping\n\n");
      if (this.taps.size === 0) this.stopHeartbeat();
    }, HEARTBEAT_MS);
    return new Response(readable, {
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" },
    });
  }

  private publish(event: TapEvent): void {
    this.recent.push(event);
    if (this.recent.length > REPLAYED_EVENTS * 2) this.recent.splice(0, this.recent.length - REPLAYED_EVENTS);
    if (this.taps.size === 0) return;
    const text = frame(event);
    for (const tap of this.taps) {
      if (tap.queued >= TAP_MAX_QUEUED) tap.dropped++;
      else this.send(tap, text);
    }
  }

  /** How far behind each open tap is: frames waiting for its client, and events dropped since it last caught up. */
  tapBacklog(): Array<{ queued: number; dropped: number }> {
    return [...this.taps].map((tap) => ({ queued: tap.queued, dropped: tap.dropped }));
  }

  /**
   * Writes to one tap. A write settles once the client has taken the frame, so `queued` is what
   * waits for a slow client. When a tap that dropped events has caught up (half its queue drained),
   * it is told how many it missed. A tap whose reader went away is removed.
   */
  private send(tap: Tap, text: string): void {
    tap.queued++;
    tap.writer.write(encoder.encode(text)).then(
      () => {
        tap.queued--;
        if (tap.dropped > 0 && tap.queued <= TAP_MAX_QUEUED / 2) {
          const dropped = tap.dropped;
          tap.dropped = 0;
          this.send(tap, `event: dropped\ndata: ${JSON.stringify({ dropped })}\n: ${dropped} requests dropped: this client read too slowly\n\n`);
        }
      },
      () => {
        this.taps.delete(tap);
        if (this.taps.size === 0) this.stopHeartbeat();
      },
    );
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }
}

/** One open tap stream: its writer, frames waiting for the client, events dropped since it caught up. */
interface Tap {
  writer: WritableStreamDefaultWriter<Uint8Array>;
  queued: number;
  dropped: number;
}

function frame(event: TapEvent): string {
  return `event: request\nid: ${event.spanId}\ndata: ${JSON.stringify(event)}\n\n`;
}

/** What the recent-errors list keeps: 5xx, and requests the proxy refused itself. */
export function isError(event: TapEvent): boolean {
  return isFailure(event.status) || (event.backend === null && event.status >= 400);
}
