/**
 * CartStore: one SQLite-backed Durable Object per cart, so every change to a cart is serialised
 * without locks. The table is created on first write and dropped on clear, so empty carts keep no
 * storage; a cart left alone for {@link ABANDONED_AFTER_MS} is deleted by its alarm, so abandoned carts
 * do not accumulate either.
 */
import { DurableObject } from "cloudflare:workers";

/** Most units of one sku a cart may hold. */
export const MAX_QTY = 99;

/** A cart untouched this long is deleted (every change pushes the deadline back). */
export const ABANDONED_AFTER_MS = 30 * 24 * 3_600_000;

/** A cart line as stored; prices are integer cents so totals never drift. */
export interface CartLine {
  sku: string;
  name: string;
  qty: number;
  priceCents: number;
}

type LineRow = { sku: string; name: string; qty: number; price_cents: number };

export class CartStore extends DurableObject<CartEnv> {
  /** The lines in the order their skus were first added. */
  lines(): CartLine[] {
    if (!this.hasTable()) return [];
    return this.ctx.storage.sql
      .exec<LineRow>("SELECT sku, name, qty, price_cents FROM lines ORDER BY rowid")
      .toArray()
      .map((row) => ({ sku: row.sku, name: row.name, qty: row.qty, priceCents: row.price_cents }));
  }

  /** Adds `line.qty` units (capped at {@link MAX_QTY}) and refreshes name and price from `line`. */
  async add(line: CartLine): Promise<CartLine[]> {
    await this.ctx.storage.setAlarm(Date.now() + ABANDONED_AFTER_MS);
    this.ctx.storage.sql.exec(
      `CREATE TABLE IF NOT EXISTS lines (
         sku TEXT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, price_cents INTEGER NOT NULL)`,
    );
    this.ctx.storage.sql.exec(
      `INSERT INTO lines (sku, name, qty, price_cents) VALUES (?1, ?2, min(?3, ?5), ?4)
       ON CONFLICT (sku) DO UPDATE SET
         qty = min(qty + excluded.qty, ?5), name = excluded.name, price_cents = excluded.price_cents`,
      line.sku,
      line.name,
      line.qty,
      line.priceCents,
      MAX_QTY,
    );
    return this.lines();
  }

  /** Removes the sku's line, if any. */
  remove(sku: string): CartLine[] {
    if (this.hasTable()) this.ctx.storage.sql.exec("DELETE FROM lines WHERE sku = ?", sku);
    return this.lines();
  }

  /** Empties the cart and releases its storage. */
  async clear(): Promise<void> {
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
  }

  /** The cart was abandoned: release everything it stored. */
  override async alarm(): Promise<void> {
    await this.clear();
  }

  private hasTable(): boolean {
    return (
      this.ctx.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lines'").toArray()
        .length > 0
    );
  }
}
