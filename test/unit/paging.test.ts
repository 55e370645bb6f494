import { describe, expect, it } from "vitest";
import { decodeCursor, encodeCursor, ListQuery, MAX_PAGE, matchesFilter, pageNames } from "../../shared/paging.ts";

const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `svc-${String(i).padStart(4, "0")}`);

/** Every page of `all` with `limit`, following `next` to the end. */
function walk(all: ReadonlyArray<string>, limit: number, filter = {}): { pages: string[][]; totals: number[] } {
  const pages: string[][] = [];
  const totals: number[] = [];
  let after: string | undefined;
  for (;;) {
    const page = pageNames(all, filter, { limit, after });
    pages.push(page.items);
    totals.push(page.total);
    if (page.next === null) return { pages, totals };
    const read = decodeCursor(page.next);
    if (!read.ok) throw new Error(read.detail);
    after = read.after;
  }
}

describe("cursors", () => {
  it("round-trip a service name and refuse anything they did not make", () => {
    expect(decodeCursor(encodeCursor("svc-0042"))).toEqual({ ok: true, after: "svc-0042" });
    for (const bad of ["", "svc-0042", "c1.", "c1.!!", `c1.${btoa("Not A Name")}`, `c1.${"A".repeat(200)}`, "c2.c3ZjLTAwNDI"]) {
      expect(decodeCursor(bad).ok, bad).toBe(false);
    }
  });
});

describe("pageNames", () => {
  it("walks every name exactly once, in name order, whatever order they come in", () => {
    const all = names(250);
    const shuffled = [...all].reverse();
    const { pages, totals } = walk(shuffled, 100);
    expect(pages.map((p) => p.length)).toEqual([100, 100, 50]);
    expect(pages.flat()).toEqual(all);
    expect(new Set(totals)).toEqual(new Set([250]));
  });

  it("has no next cursor when the page ends the list, also on an exact fit", () => {
    expect(pageNames(names(100), {}, { limit: 100 }).next).toBeNull();
    expect(pageNames(names(101), {}, { limit: 100 }).next).not.toBeNull();
    expect(pageNames([], {}, { limit: 10 })).toEqual({ items: [], total: 0, next: null });
  });

  it("keeps its place when services are added or removed between pages (stable order)", () => {
    const all = names(30);
    const first = pageNames(all, {}, { limit: 10 });
    const read = first.next ? decodeCursor(first.next) : null;
    if (!read?.ok) throw new Error("no cursor");
    // svc-0005 (already shown) is deleted and a new service sorting before the cursor appears.
    const changed = [...all.filter((n) => n !== "svc-0005"), "aaa-new"];
    const second = pageNames(changed, {}, { limit: 10, after: read.after });
    expect(second.items[0]).toBe("svc-0010");
    expect(second.total).toBe(30);
  });

  it("filters by exact name, by a list of names and by substring, totals counting the matches", () => {
    const all = [...names(20), "checkout", "cart", "cart-v2"];
    expect(pageNames(all, { service: "cart" }, { limit: 10 })).toEqual({ items: ["cart"], total: 1, next: null });
    expect(pageNames(all, { q: "cart" }, { limit: 10 }).items).toEqual(["cart", "cart-v2"]);
    expect(pageNames(all, { names: ["svc-0003", "cart", "missing"] }, { limit: 10 }).items).toEqual(["cart", "svc-0003"]);
    const prefix = walk(all, 4, { q: "svc-001" });
    expect(prefix.pages.flat()).toEqual(names(20).slice(10));
    expect(prefix.totals[0]).toBe(10);
    expect(matchesFilter("cart", { service: "cart", q: "x" })).toBe(false);
  });
});

describe("ListQuery", () => {
  it("defaults, bounds and decodes what a list query may say", () => {
    expect(ListQuery.parse({})).toEqual({ limit: 100 });
    const parsed = ListQuery.parse({ limit: "5", q: "Cart", cursor: encodeCursor("cart"), names: "a,b" });
    expect(parsed).toEqual({ limit: 5, q: "cart", cursor: "cart", names: ["a", "b"] });
    for (const bad of [{ limit: "0" }, { limit: String(MAX_PAGE + 1) }, { limit: "ten" }, { cursor: "nope" }, { service: "Not_A_Name" }, { q: "x".repeat(64) }, { names: Array.from({ length: 101 }, (_, i) => `s${i}`).join(",") }]) {
      const result = ListQuery.safeParse(bad);
      expect(result.success, JSON.stringify(bad)).toBe(false);
      expect(result.error?.issues.length).toBeGreaterThan(0);
    }
  });
});
