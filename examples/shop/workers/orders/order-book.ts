/**
 * OrderBook: a SQLite-backed Durable Object holding orders and the idempotency keys that created
 * them. Each method runs without awaiting, so check-then-insert is atomic: two requests with the
 * same key can never both create an order. Keys expire after {@link IDEMPOTENCY_KEY_TTL_MS} (24 h, as
 * Stripe's do): an expired key is ignored at once and deleted by the object's alarm, so the key table
 * holds at most a day of orders however many keys clients invent.
 */
import { DurableObject } from "cloudflare:workers";
import * as z from "zod";

const OrderLines = z.array(z.object({ sku: z.string(), name: z.string(), qty: z.int(), priceCents: z.int() }));

/** How long an Idempotency-Key keeps answering with its order. */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3_600_000;
/** How often expired keys are swept while any remain. */
const SWEEP_EVERY_MS = 3_600_000;

/** An order line; prices are integer cents so totals never drift. */
export type OrderLine = z.infer<typeof OrderLines>[number];

/** An order as stored. */
export interface Order {
  orderId: string;
  cartId: string;
  lines: OrderLine[];
  totalCents: number;
  createdAt: string;
}

/** What {@link OrderBook.place} did; `conflict` means the key already created an order for another cart. */
export type PlaceResult =
  | { outcome: "created"; order: Order }
  | { outcome: "replayed"; order: Order }
  | { outcome: "conflict"; order: Order };

type OrderRow = { order_id: string; cart_id: string; lines: string; total_cents: number; created_at: string };

const SELECT_ORDER = "SELECT order_id, cart_id, lines, total_cents, created_at FROM orders";

function fromRow(row: OrderRow): Order {
  return {
    orderId: row.order_id,
    cartId: row.cart_id,
    lines: OrderLines.parse(JSON.parse(row.lines)),
    totalCents: row.total_cents,
    createdAt: row.created_at,
  };
}

export class OrderBook extends DurableObject<OrdersEnv> {
  constructor(ctx: DurableObjectState, env: OrdersEnv) {
    super(ctx, env);
    // `seq` orders the book newest-first without trusting clocks.
    ctx.storage.sql.exec(`
      CREATE TABLE IF NOT EXISTS orders (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id TEXT NOT NULL UNIQUE,
        cart_id TEXT NOT NULL,
        lines TEXT NOT NULL,
        total_cents INTEGER NOT NULL,
        created_at TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS idempotency_keys (
        key TEXT PRIMARY KEY,
        order_id TEXT NOT NULL REFERENCES orders (order_id));`);
    // Books created before keys expired have no created_at: add it, counting their keys from now.
    const columns = ctx.storage.sql.exec<{ name: string }>("PRAGMA table_info(idempotency_keys)").toArray();
    if (!columns.some((c) => c.name === "created_at")) {
      ctx.storage.sql.exec("ALTER TABLE idempotency_keys ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0");
      ctx.storage.sql.exec("UPDATE idempotency_keys SET created_at = ?", Date.now());
    }
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (created_at)");
  }

  /** The order an idempotency key created, if the key has not expired. */
  byKey(key: string, now = Date.now()): Order | undefined {
    const row = this.ctx.storage.sql
      .exec<OrderRow>(
        `${SELECT_ORDER} WHERE order_id = (SELECT order_id FROM idempotency_keys WHERE key = ? AND created_at > ?)`,
        key,
        now - IDEMPOTENCY_KEY_TTL_MS,
      )
      .toArray()[0];
    return row && fromRow(row);
  }

  /** How many idempotency keys are stored (expired ones not yet swept included). */
  keyCount(): number {
    return this.ctx.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM idempotency_keys").one().n;
  }

  /** Deletes the keys expired at `now`; answers how many. */
  sweep(now = Date.now()): number {
    return this.ctx.storage.sql.exec("DELETE FROM idempotency_keys WHERE created_at <= ?", now - IDEMPOTENCY_KEY_TTL_MS).rowsWritten;
  }

  /** Sweeps expired keys; keeps sweeping hourly while any key is left. */
  override async alarm(): Promise<void> {
    this.sweep();
    if (this.keyCount() > 0) await this.ctx.storage.setAlarm(Date.now() + SWEEP_EVERY_MS);
  }

  /** Stores `order`, unless `key` already created one: then that order is returned instead. */
  async place(order: Order, key: string | null): Promise<PlaceResult> {
    const now = Date.now();
    const result = this.ctx.storage.transactionSync((): PlaceResult => {
      const existing = key === null ? undefined : this.byKey(key, now);
      if (existing) return { outcome: existing.cartId === order.cartId ? "replayed" : "conflict", order: existing };
      this.ctx.storage.sql.exec(
        "INSERT INTO orders (order_id, cart_id, lines, total_cents, created_at) VALUES (?, ?, ?, ?, ?)",
        order.orderId,
        order.cartId,
        JSON.stringify(order.lines),
        order.totalCents,
        order.createdAt,
      );
      if (key !== null) {
        // An expired key may still have its row (the sweep is hourly): reuse it for the new order.
        this.ctx.storage.sql.exec(
          `INSERT INTO idempotency_keys (key, order_id, created_at) VALUES (?, ?, ?)
           ON CONFLICT (key) DO UPDATE SET order_id = excluded.order_id, created_at = excluded.created_at`,
          key,
          order.orderId,
          now,
        );
      }
      return { outcome: "created", order };
    });
    if (key !== null && (await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(now + SWEEP_EVERY_MS);
    return result;
  }

  /** One order by id. */
  get(orderId: string): Order | undefined {
    const row = this.ctx.storage.sql.exec<OrderRow>(`${SELECT_ORDER} WHERE order_id = ?`, orderId).toArray()[0];
    return row && fromRow(row);
  }

  /** Records a provider's payment of `orderId` (see {@link markPaid}). */
  markPaid(orderId: string, paymentId: string, eventId: string): MarkPaid {
    return markPaid(this.ctx.storage.sql, orderId, paymentId, eventId);
  }

  /** `paid` once a payment webhook marked the order paid, else `placed`. */
  paymentStatus(orderId: string): PaymentStatus {
    return paymentStatus(this.ctx.storage.sql, orderId);
  }

  /** The newest `limit` orders, newest first. */
  recent(limit: number): Order[] {
    return this.ctx.storage.sql.exec<OrderRow>(`${SELECT_ORDER} ORDER BY seq DESC LIMIT ?`, limit).toArray().map(fromRow);
  }
}

/** An order's payment state as the payment provider's webhooks report it. */
export type PaymentStatus = "placed" | "paid";

/** What {@link markPaid} did. */
export type MarkPaid = "paid" | "already-paid" | "unknown-order";

// Payment state lives in its own table, created on first use, so the orders table stays as it is.
const PAYMENTS_TABLE = `CREATE TABLE IF NOT EXISTS payments (
  order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
  payment_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  paid_at TEXT NOT NULL)`;

/** Marks `orderId` paid (idempotent: a second event for a paid order changes nothing). */
export function markPaid(sql: SqlStorage, orderId: string, paymentId: string, eventId: string): MarkPaid {
  sql.exec(PAYMENTS_TABLE);
  if (sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM orders WHERE order_id = ?", orderId).one().n === 0) return "unknown-order";
  if (sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM payments WHERE order_id = ?", orderId).one().n > 0) return "already-paid";
  sql.exec("INSERT INTO payments (order_id, payment_id, event_id, paid_at) VALUES (?, ?, ?, ?)", orderId, paymentId, eventId, new Date().toISOString());
  return "paid";
}

/** Whether `orderId` has been paid. */
export function paymentStatus(sql: SqlStorage, orderId: string): PaymentStatus {
  sql.exec(PAYMENTS_TABLE);
  return sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM payments WHERE order_id = ?", orderId).one().n > 0 ? "paid" : "placed";
}
