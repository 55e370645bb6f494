/**
 * RateCounter: one object per (scope, limit, shard) — `idFromName("pim/api-key/#7")` — holding the
 * counters of every key whose digest falls in that shard (shared/rate-limit.ts `shardOf`). Each key
 * paces its leasers, so its calls do not grow with the number of isolates while the limit is far:
 * a window limit answers with a lease size in tokens (its rate × 1 s: about a call a second per key, `leaseTarget`) and
 * reserves standing shares of its next windows for isolates whose lease outlasts the window
 * (`grantAhead`: charged to the window they are spent in, never over the limit); a token bucket,
 * once its calls pass a small budget, answers with a horizon that makes every isolate lease for
 * longer (durable-objects/pacing.ts `leaseHorizon`). The number
 * of objects per limit is fixed (`RATE_SHARDS`) whatever values the keys take, and each
 * counter row expires with its window: an alarm deletes expired rows, so storage holds only the keys
 * seen within the current window(s). Proxies lease tokens in small batches, so an object sees a
 * fraction of the requests it counts.
 *
 * Within one window, rows are bounded too: past {@link MAX_KEYS_PER_SHARD} live keys, a new key is
 * counted in the shard's shared overflow counter (its limit applies to all such keys together).
 * That fails closed for a key flood rather than growing without bound or forgetting counts.
 */
import { DurableObject } from "cloudflare:workers";
import { expiresAt, grant, grantAhead, initialState, leaseTarget, shardOf, type AheadAsk, type AheadGrant, type CounterState, type Grant, type LeaseAsk, type LimitSpec } from "../shared/rate-limit.ts";
import { HORIZON_MIN_HEADROOM, LEASE_PACE_WINDOW_MS, leaseHorizon } from "./pacing.ts";
import { plainStub, type PlainStub } from "./rpc.ts";

/** Live keys one shard stores before new keys share its overflow counter (RATE_SHARDS × this per limit). */
export const MAX_KEYS_PER_SHARD = 50_000;
/** Rows kept in memory (the rest are read from SQLite on demand). */
const MEMORY_ROWS = 256;
/** Distinct specs remembered for sharing between rows (a shard serves one limit, so usually one). */
const MEMORY_SPECS = 16;
/** Longest pause between two prunes while rows remain. */
const PRUNE_EVERY_MS = 60_000;
/** How long an ended counter stays readable by operators before it is pruned. */
const KEEP_ENDED_MS = 60_000;
const OVERFLOW_KEY = "~overflow";

/** What the counter of one key grants (`Grant` without its state). */
export type Lease = Omit<Grant, "state">;

interface Row {
  spec: string;
  state: CounterState;
  leases: number;
  expires: number;
  /** Lease calls since `since` and the horizon handed out (memory only: after eviction it starts over). */
  pace?: Pace;
}

interface Pace {
  since: number;
  calls: number;
  horizonMs: number;
}

/** The shard object that holds `counter` (`scope/limit/digest`); throws on a name `counterName` would not make. */
export function rateCounterOf(env: ControlPlaneEnv, counter: string): PlainStub<RateCounter> {
  const shard = shardOf(counter);
  if (shard === undefined) throw new TypeError("invalid counter name");
  return plainStub<RateCounter>(env.RATE_COUNTERS.get(env.RATE_COUNTERS.idFromName(shard)));
}

export class RateCounter extends DurableObject<ControlPlaneEnv> {
  /** Recently used rows, oldest first (a Map keeps insertion order; a touched row is re-inserted). */
  private readonly rows = new Map<string, Row>();
  /** One string per distinct spec, shared by every row that uses it. */
  private readonly specs = new Map<string, string>();
  private liveKeys: number;
  private alarmAt: number | undefined;

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    sql.exec(`CREATE TABLE IF NOT EXISTS counters (
      key TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, leases INTEGER NOT NULL, expires INTEGER NOT NULL)`);
    sql.exec("CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires)");
    this.liveKeys = Number(sql.exec<{ n: number }>("SELECT count(*) AS n FROM counters").one().n);
  }

  /** Grants up to `want` tokens of one counter, and the standing share of its next windows `ahead` asks for if it fits. */
  async lease(spec: LimitSpec, want: number, counter: string, ahead?: AheadAsk): Promise<Lease> {
    return this.leaseOne({ counter, spec, want, ...(ahead ? { ahead } : {}) }, Date.now());
  }

  /** Grants several leases at once (one storage transaction); answers in the order asked. */
  async leaseMany(asks: readonly LeaseAsk[]): Promise<Lease[]> {
    const now = Date.now();
    return asks.map((ask) => this.leaseOne(ask, now));
  }

  private leaseOne(ask: LeaseAsk, now: number): Lease {
    const specKey = this.sharedSpec(JSON.stringify(ask.spec));
    let key = ask.counter;
    let row = this.load(key, now);
    if (row === undefined && this.liveKeys >= MAX_KEYS_PER_SHARD) {
      key = OVERFLOW_KEY;
      row = this.load(key, now);
    }
    const current = row && row.spec === specKey ? row.state : initialState(ask.spec, now);
    const result = grant(ask.spec, current, Math.max(0, Math.floor(ask.want)), now);
    const bucket = ask.spec.algorithm === "token-bucket";
    // Window limits: a lease size in tokens, and the standing share asked for (none near the limit).
    const target = bucket ? undefined : leaseTarget(ask.spec, result.state, now, result.remaining);
    const ahead = target !== undefined && ask.ahead ? grantAhead(ask.spec, result.state, ask.ahead) : { kind: "none" as const };
    const state = ahead.kind === "reserved" ? ahead.state : result.state;
    const pace = bucket ? this.paced(row?.pace, now, result.remaining / Math.max(1, ask.spec.limit)) : undefined;
    const next: Row = { spec: specKey, state, leases: (row?.leases ?? 0) + 1, expires: expiresAt(ask.spec, state), ...(pace ? { pace } : {}) };
    if (row === undefined) this.liveKeys++;
    this.remember(key, next);
    // Written without awaiting: the output gate holds the reply until it is durable.
    this.ctx.storage.sql.exec(
      "INSERT OR REPLACE INTO counters (key, spec, state, leases, expires) VALUES (?, ?, ?, ?, ?)",
      key,
      next.spec,
      JSON.stringify(next.state),
      next.leases,
      next.expires,
    );
    this.schedulePrune(next.expires);
    // Standing shares are in the next windows' counts already (state.ahead), so they never let the
    // key over its limit. A token bucket's leased tokens are out of the bucket already; with a horizon they may be spent
    // over it (else each isolate would call every second, however many isolates there are). An
    // isolate leases again only when its tokens run out, so it holds at most one lease (≤ 5% of the
    // limit) unspent: the burst bound stays one lease per isolate, as before.
    const horizonMs = pace?.horizonMs ?? 0;
    const validUntil = horizonMs > 0 ? Math.max(result.validUntil, now + horizonMs) : result.validUntil;
    const share: AheadGrant | undefined = ahead.kind === "reserved" ? ahead.grant : undefined;
    return {
      granted: result.granted,
      validUntil,
      retryAt: result.retryAt,
      remaining: result.remaining,
      ...(horizonMs > 0 ? { horizonMs } : {}),
      ...(target !== undefined ? { target } : {}),
      ...(share ? { ahead: share } : {}),
    };
  }

  /** Counts one lease call of a key and re-decides its horizon once per pace window (or at once when the limit is near). */
  private paced(previous: Pace | undefined, now: number, headroom: number): Pace {
    const pace = previous ?? { since: now, calls: 0, horizonMs: 0 };
    pace.calls++;
    const elapsed = now - pace.since;
    if (elapsed >= LEASE_PACE_WINDOW_MS || headroom < HORIZON_MIN_HEADROOM) {
      const next = leaseHorizon((pace.calls * 1000) / Math.max(1, elapsed), pace.horizonMs, headroom);
      pace.horizonMs = next.kind === "horizon" ? next.ms : 0;
      pace.since = now;
      pace.calls = 0;
    }
    return pace;
  }

  private sharedSpec(spec: string): string {
    const known = this.specs.get(spec);
    if (known !== undefined) return known;
    if (this.specs.size >= MEMORY_SPECS) this.specs.clear();
    this.specs.set(spec, spec);
    return spec;
  }

  /** The live row of `key`, from memory or storage; expired rows count as absent. */
  private load(key: string, now: number): Row | undefined {
    let row = this.rows.get(key);
    if (row === undefined) {
      const stored = this.ctx.storage.sql
        .exec<{ spec: string; state: string; leases: number; expires: number }>("SELECT spec, state, leases, expires FROM counters WHERE key = ?", key)
        .toArray()[0];
      if (stored === undefined) return undefined;
      row = { spec: stored.spec, state: JSON.parse(stored.state) as CounterState, leases: Number(stored.leases), expires: Number(stored.expires) };
      this.remember(key, row);
    }
    // An expired row is as good as none (a fresh counter grants the same), but it still occupies a key slot until pruned.
    return row.expires <= now ? { ...row, state: initialState(JSON.parse(row.spec) as LimitSpec, now) } : row;
  }

  private remember(key: string, row: Row): void {
    this.rows.delete(key);
    this.rows.set(key, row);
    if (this.rows.size > MEMORY_ROWS) {
      const oldest = this.rows.keys().next();
      if (!oldest.done) this.rows.delete(oldest.value);
    }
  }

  private schedulePrune(expires: number): void {
    const at = Math.max(expires + KEEP_ENDED_MS, Date.now() + PRUNE_EVERY_MS);
    if (this.alarmAt !== undefined && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  /** Deletes expired rows; runs again while rows remain. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const sql = this.ctx.storage.sql;
    sql.exec("DELETE FROM counters WHERE expires <= ?", now - KEEP_ENDED_MS);
    for (const [key, row] of this.rows) if (row.expires <= now - KEEP_ENDED_MS) this.rows.delete(key);
    this.liveKeys = Number(sql.exec<{ n: number }>("SELECT count(*) AS n FROM counters").one().n);
    this.alarmAt = undefined;
    const next = sql.exec<{ at: number | null }>("SELECT min(expires) AS at FROM counters").one().at;
    if (next !== null) this.schedulePrune(Number(next));
  }

  /**
   * The counter of one key, for operators (`counter` as `counterName` makes it): its last state, kept
   * until pruned after `expiresAt` (a window that has ended is shown as it ended).
   */
  async read(counter: string): Promise<{ spec: LimitSpec | null; state: CounterState | null; leases: number; expiresAt: number | null; shard: string; keys: number }> {
    let row = this.rows.get(counter);
    if (row === undefined) {
      this.load(counter, Date.now());
      row = this.rows.get(counter);
    }
    const shard = shardOf(counter) ?? "";
    return row
      ? { spec: JSON.parse(row.spec) as LimitSpec, state: row.state, leases: row.leases, expiresAt: row.expires, shard, keys: this.liveKeys }
      : { spec: null, state: null, leases: 0, expiresAt: null, shard, keys: this.liveKeys };
  }
}
