/**
 * Paging and filtering of the admin API's service lists (`/admin/services`, `/admin/metrics`,
 * `/admin/graph`). A 4,000-service mesh must not answer every list with every service: lists are
 * in name order, filtered by an exact name, a list of names or a substring, and cut into pages of
 * at most {@link MAX_PAGE}. The cursor names the last service of the page (opaque to clients), so
 * the order is stable while services come and go: a page never repeats or skips a service that
 * existed through both calls.
 */
import * as z from "zod";
import { Name } from "./config.ts";

/** Services per page unless `?limit=` says otherwise. */
export const DEFAULT_PAGE = 100;
/** The largest `?limit=`. */
export const MAX_PAGE = 1000;
/** The most names one `?names=` may list. */
export const MAX_NAMES = 100;
const CURSOR_PREFIX = "c1.";
/** A cursor is the prefix and a base64url name of at most 63 characters. */
const MAX_CURSOR_LENGTH = 100;

/** What a cursor says: where the next page starts, or why it cannot be read. */
export type CursorRead = { ok: true; after: string } | { ok: false; detail: string };

function base64url(text: string): string {
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** The cursor of the page that follows `last` (the name of the last service on this page). */
export function encodeCursor(last: string): string {
  return `${CURSOR_PREFIX}${base64url(last)}`;
}

/** Reads a cursor from {@link encodeCursor}; anything else is refused, never guessed at. */
export function decodeCursor(cursor: string): CursorRead {
  if (cursor.length > MAX_CURSOR_LENGTH || !cursor.startsWith(CURSOR_PREFIX)) return { ok: false, detail: "not a cursor this API gave out" };
  const body = cursor.slice(CURSOR_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) return { ok: false, detail: "not a cursor this API gave out" };
  let name: string;
  try {
    name = atob(body.replaceAll("-", "+").replaceAll("_", "/"));
  } catch {
    return { ok: false, detail: "not a cursor this API gave out" };
  }
  return Name.safeParse(name).success ? { ok: true, after: name } : { ok: false, detail: "not a cursor this API gave out" };
}

/** Which services a list shows: one by exact name, several by name, or those whose name contains `q`. */
export interface ListFilter {
  service?: string | undefined;
  names?: ReadonlyArray<string> | undefined;
  q?: string | undefined;
}

/** Does `name` pass `filter`? (All given conditions must hold.) */
export function matchesFilter(name: string, filter: ListFilter): boolean {
  if (filter.service !== undefined && name !== filter.service) return false;
  if (filter.names !== undefined && !filter.names.includes(name)) return false;
  if (filter.q !== undefined && !name.includes(filter.q)) return false;
  return true;
}

/** Plain code-unit order: the order cursors compare in (names are lowercase ASCII). */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One page of a list: its items, how many match the filter in all, and the next page's cursor. */
export interface Page<T> {
  items: T[];
  total: number;
  next: string | null;
}

/** Where a page starts and how long it is. */
export interface PageRequest {
  limit: number;
  /** The last name of the previous page (from its cursor). */
  after?: string | undefined;
}

/**
 * One page of `names` (any order; it is sorted here) that pass `filter`: at most `limit` names
 * after `after`, the total that pass the filter, and the cursor of the next page (null on the last).
 */
export function pageNames(names: Iterable<string>, filter: ListFilter, page: PageRequest): Page<string> {
  const matching = [...names].filter((name) => matchesFilter(name, filter)).sort(byName);
  const after = page.after;
  const start = after === undefined ? 0 : firstAfter(matching, after);
  const items = matching.slice(start, start + page.limit);
  const last = items.at(-1);
  const next = last !== undefined && start + items.length < matching.length ? encodeCursor(last) : null;
  return { items, total: matching.length, next };
}

/** Index of the first name greater than `after` in sorted `names` (binary search). */
function firstAfter(names: ReadonlyArray<string>, after: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byName(names[mid] ?? "", after) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `?cursor=`: decoded to the name the page starts after; an unreadable cursor is a zod issue (400). */
const Cursor = z
  .string()
  .max(MAX_CURSOR_LENGTH)
  .transform((value, ctx) => {
    const read = decodeCursor(value);
    if (read.ok) return read.after;
    ctx.addIssue({ code: "custom", message: read.detail });
    return z.NEVER;
  });

/** `?names=a,b,c`: up to {@link MAX_NAMES} exact names. */
const Names = z
  .string()
  .max(MAX_NAMES * 64)
  .transform((value) => value.split(",").filter((n) => n !== ""))
  .pipe(z.array(Name).min(1).max(MAX_NAMES));

/** The query parameters every paged list accepts. */
export const ListQuery = z.object({
  service: Name.optional(),
  names: Names.optional(),
  q: z.string().min(1).max(63).transform((q) => q.toLowerCase()).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_PAGE).default(DEFAULT_PAGE),
  cursor: Cursor.optional(),
});
/** A parsed {@link ListQuery}. */
export type ListQueryValue = z.infer<typeof ListQuery>;

/** The filter part of a parsed list query. */
export function filterOf(query: ListQueryValue): ListFilter {
  return { service: query.service, names: query.names, q: query.q };
}
