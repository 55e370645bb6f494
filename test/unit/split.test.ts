import { describe, expect, it } from "vitest";
import { mulberry32 } from "./prng.ts";
import { decideSplit, expandLayout, hash32, layoutWeights, rebalance, SLOTS, slotOf, type Layout } from "../../shared/split.ts";


/** Random integer weights over `backends` summing to 100 (some may be 0). */
function randomWeights(backends: string[], random: () => number): Record<string, number> {
  const cuts = backends.slice(1).map(() => Math.floor(random() * (SLOTS + 1))).sort((a, b) => a - b);
  const bounds = [0, ...cuts, SLOTS];
  return Object.fromEntries(backends.map((b, i) => [b, (bounds[i + 1] ?? 0) - (bounds[i] ?? 0)]));
}

describe("rebalance", () => {
  it("gives every backend exactly its weight in slots", () => {
    const layout = rebalance(undefined, { a: 90, b: 10 });
    expect(layoutWeights(layout)).toEqual({ a: 90, b: 10 });
    expect(expandLayout(layout)).toHaveLength(SLOTS);
  });

  it("refuses weights that do not sum to 100", () => {
    expect(() => rebalance(undefined, { a: 90, b: 5 })).toThrow(/sum to 100/);
  });

  it("keeps every shopper of a growing backend in place (10 → 30)", () => {
    const before = expandLayout(rebalance(undefined, { v1: 90, v2: 10 }));
    const after = expandLayout(rebalance(rebalance(undefined, { v1: 90, v2: 10 }), { v1: 70, v2: 30 }));
    before.forEach((owner, slot) => {
      if (owner === "v2") expect(after[slot]).toBe("v2");
    });
    expect(after.filter((o, s) => o !== before[s])).toHaveLength(20);
  });

  it("follows history where a stateless hash cannot (A,B,C: 50/50/0 → 50/0/50 → 0/50/50)", () => {
    const first = rebalance(undefined, { a: 50, b: 50, c: 0 });
    const second = rebalance(first, { a: 50, b: 0, c: 50 });
    const third = rebalance(second, { a: 0, b: 50, c: 50 });
    const s2 = expandLayout(second);
    const s3 = expandLayout(third);
    s2.forEach((owner, slot) => {
      if (owner === "a") expect(s3[slot]).toBe("b"); // only b went up in the last step
      if (owner === "c") expect(s3[slot]).toBe("c");
    });
  });

  it("is monotonic over long random sequences with 2-5 backends, added and removed", () => {
    const random = mulberry32(2026);
    const pool = ["b0", "b1", "b2", "b3", "b4", "b5", "b6"];
    for (let run = 0; run < 40; run++) {
      let backends = pool.slice(0, 2 + Math.floor(random() * 4));
      let weights = randomWeights(backends, random);
      let layout: Layout = rebalance(undefined, weights);
      for (let step = 0; step < 60; step++) {
        if (random() < 0.1) {
          // Swap one backend for a new one (a release replaces a version).
          const gone = backends[Math.floor(random() * backends.length)];
          const fresh = pool.find((b) => !backends.includes(b));
          if (fresh) backends = [...backends.filter((b) => b !== gone), fresh];
        }
        const next = randomWeights(backends, random);
        const nextLayout = rebalance(layout, next);
        const before = expandLayout(layout);
        const after = expandLayout(nextLayout);
        expect(layoutWeights(nextLayout)).toEqual(Object.fromEntries(Object.entries(next).filter(([, w]) => w > 0)));
        for (let slot = 0; slot < SLOTS; slot++) {
          const from = before[slot] ?? "";
          const to = after[slot] ?? "";
          if (from === to) continue;
          // A shopper only ever moves from a backend that went down to one that went up.
          expect(next[from] ?? 0).toBeLessThan(weights[from] ?? 0);
          expect(next[to] ?? 0).toBeGreaterThan(weights[to] ?? 0);
        }
        // ...and only as many as the change requires.
        const moved = before.filter((o, s) => o !== after[s]).length;
        const required = Object.keys({ ...weights, ...next }).reduce(
          (sum, b) => sum + Math.max(0, (next[b] ?? 0) - (weights[b] ?? 0)),
          0,
        );
        expect(moved).toBe(required);
        weights = next;
        layout = nextLayout;
      }
    }
  });
});

describe("decideSplit", () => {
  const owners = expandLayout(rebalance(undefined, { v1: 90, v2: 10 }));

  it("sends the same sticky key to the same backend every time", () => {
    const first = decideSplit(owners, "pim/products", "shopper-42", 0.3);
    for (let i = 0; i < 20; i++) expect(decideSplit(owners, "pim/products", "shopper-42", Math.random())).toEqual(first);
    expect(first.kind).toBe("sticky");
  });

  it("spreads sticky keys by weight (10,000 shoppers, 90/10 within 1.5 points)", () => {
    let v2 = 0;
    for (let i = 0; i < 10_000; i++) if (decideSplit(owners, "pim/products", `shopper-${i}`, 0).backend === "v2") v2++;
    expect(Math.abs(v2 / 10_000 - 0.1)).toBeLessThan(0.015);
  });

  it("spreads keyless requests by weight", () => {
    const random = mulberry32(7);
    let v2 = 0;
    for (let i = 0; i < 10_000; i++) if (decideSplit(owners, "s/r", undefined, random()).backend === "v2") v2++;
    expect(Math.abs(v2 / 10_000 - 0.1)).toBeLessThan(0.015);
  });

  it("hashes sequential ids uniformly over the slots", () => {
    const counts = new Array<number>(SLOTS).fill(0);
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const slot = slotOf("pim/products", `shopper-${i}`);
      counts[slot] = (counts[slot] ?? 0) + 1;
    }
    const expected = n / SLOTS;
    const chiSquare = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    // 99 degrees of freedom: the 99.9th percentile is ~148.
    expect(chiSquare).toBeLessThan(148);
    expect(hash32("a")).not.toBe(hash32("b"));
  });

  it("draws salt-independent slots per route", () => {
    let same = 0;
    for (let i = 0; i < 1000; i++) if (slotOf("pim/a", `k${i}`) === slotOf("cart/a", `k${i}`)) same++;
    expect(same).toBeLessThan(40); // ~10 expected by chance
  });
});
