/**
 * VendorLedger: the demo vendor's only state, in one SQLite-backed Durable Object — the jti replay
 * store (every accepted mesh token's jti, kept until the token could no longer verify) and the log
 * of received notifications that `GET /notify/received` shows.
 *
 * One object serves the whole vendor: it is the single point where "have I seen this jti?" can be
 * answered atomically, and a demo's traffic is far below one object's capacity.
 */
import { DurableObject } from "cloudflare:workers";
import { CLOCK_TOLERANCE_S } from "./verify.ts";

/** A notification as the vendor received it. */
export interface ReceivedMessage {
  id: string;
  /** ISO 8601 time of receipt. */
  receivedAt: string;
  /** The calling mesh service (token `sub`). */
  sub: string;
  /** The audience the token was minted for (token `aud`). */
  aud: string;
  jti: string;
  /** The W3C trace context the call carried (the mesh propagates it to third parties), or null. */
  traceparent: string | null;
  /** The validated JSON body, as sent. */
  body: unknown;
}

/**
 * A logged message as {@link VendorLedger.list} returns it: the body stays JSON text, because RPC
 * typing turns a method returning `unknown` (or a recursive JSON type) into an unusable type.
 */
export type LoggedMessage = Omit<ReceivedMessage, "body"> & { bodyJson: string };

/** A logged message with its body parsed back. */
export function fromLog(message: LoggedMessage): ReceivedMessage {
  const { bodyJson, ...rest } = message;
  const body: unknown = JSON.parse(bodyJson);
  return { ...rest, body };
}

/** Messages `list()` returns at most, newest first. */
export const LIST_LIMIT = 100;

// The log is a demo inspection aid, not an archive: older messages are dropped beyond this.
const KEEP_MESSAGES = 1000;

// A jti must be remembered for as long as its token can still verify: exp plus the verifier's clock
// tolerance; the extra margin covers clock differences between the verifying isolate and this object.
const JTI_RETENTION_S = CLOCK_TOLERANCE_S + 30;

// Expired jtis are purged on writes, at most this often, so a busy vendor does not scan every call.
const PURGE_INTERVAL_MS = 30_000;

/** The vendor's one ledger object. */
export function ledgerOf(env: VendorEnv): DurableObjectStub<VendorLedger> {
  return env.LEDGER.get(env.LEDGER.idFromName("vendor"));
}

export class VendorLedger extends DurableObject<VendorEnv> {
  private readonly sql: SqlStorage;
  private lastPurge = 0;

  constructor(ctx: DurableObjectState, env: VendorEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS jtis (jti TEXT PRIMARY KEY, keep_until INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS jtis_by_keep_until ON jtis (keep_until);
      CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, received_at TEXT NOT NULL,
        sub TEXT NOT NULL, aud TEXT NOT NULL, jti TEXT NOT NULL, body TEXT NOT NULL, traceparent TEXT);
    `);
    // Ledgers created before the traceparent column existed get it added.
    const columns = this.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('messages')").toArray();
    if (!columns.some((c) => c.name === "traceparent")) this.sql.exec("ALTER TABLE messages ADD COLUMN traceparent TEXT");
  }

  /**
   * Records `jti` (of a token expiring at `exp`, seconds since the epoch) and returns true if it had
   * not been seen. Atomic: the read and the write run with no await in between, and a Durable
   * Object runs one such section at a time, so two concurrent calls cannot both get true.
   */
  firstSeen(jti: string, exp: number): boolean {
    const nowS = Math.floor(Date.now() / 1000);
    this.purgeIfDue();
    const row = this.sql.exec<{ keep_until: number }>("SELECT keep_until FROM jtis WHERE jti = ?", jti).toArray()[0];
    // A row past its retention that the purge has not reached yet no longer counts.
    if (row !== undefined && row.keep_until >= nowS) return false;
    this.sql.exec("INSERT OR REPLACE INTO jtis (jti, keep_until) VALUES (?, ?)", jti, exp + JTI_RETENTION_S);
    return true;
  }

  /** Appends a received notification to the log. */
  record(message: ReceivedMessage): void {
    this.sql.exec(
      "INSERT INTO messages (id, received_at, sub, aud, jti, body, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?)",
      message.id,
      message.receivedAt,
      message.sub,
      message.aud,
      message.jti,
      JSON.stringify(message.body),
      message.traceparent,
    );
    this.sql.exec("DELETE FROM messages WHERE seq <= (SELECT MAX(seq) FROM messages) - ?", KEEP_MESSAGES);
  }

  /** The newest {@link LIST_LIMIT} received notifications, newest first. */
  list(): LoggedMessage[] {
    return this.sql
      .exec<{ id: string; received_at: string; sub: string; aud: string; jti: string; body: string; traceparent: string | null }>(
        "SELECT id, received_at, sub, aud, jti, body, traceparent FROM messages ORDER BY seq DESC LIMIT ?",
        LIST_LIMIT,
      )
      .toArray()
      .map((row) => ({ id: row.id, receivedAt: row.received_at, sub: row.sub, aud: row.aud, jti: row.jti, traceparent: row.traceparent, bodyJson: row.body }));
  }

  private purgeIfDue(): void {
    const now = Date.now();
    if (now - this.lastPurge < PURGE_INTERVAL_MS) return;
    this.lastPurge = now;
    this.sql.exec("DELETE FROM jtis WHERE keep_until < ?", Math.floor(now / 1000));
  }
}
