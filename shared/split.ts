/**
 * Weighted, sticky and monotonic traffic splitting.
 *
 * The key space is cut into {@link SLOTS} slots, each owned by one backend; a backend with weight w
 * owns exactly w slots. A sticky key hashes to a slot, so a shopper's backend is the slot's owner.
 *
 * Why slots and not a hash of (key, weights): no function of the current weights alone can be
 * monotonic over every sequence of changes with three or more backends (A,B,C: 50/50/0 → 50/0/50 →
 * 0/50/50 must send A's shoppers to B, while 50/50/0 → 0/50/50 directly must send them to C). The
 * slot layout carries the history instead: when weights change, only the slots that must move are
 * moved, and only from backends whose weight went down to backends whose weight went up.
 */

/** Number of slots: weights are integer percentages, so one slot per percent is exact. */
export const SLOTS = 100;

/** Run-length encoded slot owners, in slot order: `[{ backend: "pim-v1", slots: 90 }, { backend: "pim-v2", slots: 10 }]`. */
export type Layout = Array<{ backend: string; slots: number }>;

/** Expands a layout into one owner per slot. */
export function expandLayout(layout: Layout): string[] {
  const slots: string[] = [];
  for (const run of layout) {
    for (let i = 0; i < run.slots; i++) slots.push(run.backend);
  }
  return slots;
}

function compressSlots(slots: ReadonlyArray<string>): Layout {
  const layout: Layout = [];
  for (const owner of slots) {
    const last = layout[layout.length - 1];
    if (last && last.backend === owner) last.slots++;
    else layout.push({ backend: owner, slots: 1 });
  }
  return layout;
}

/**
 * Moves the fewest slots needed for `weights`, starting from `previous` (or a fresh layout).
 * A slot only changes owner from a backend whose weight went down (or that was removed) to one whose
 * weight went up. Weights must be integers summing to {@link SLOTS}; zero-weight backends own nothing.
 */
export function rebalance(previous: Layout | undefined, weights: Readonly<Record<string, number>>): Layout {
  const total = Object.values(weights).reduce((sum, w) => sum + w, 0);
  if (total !== SLOTS) throw new RangeError(`weights must sum to ${SLOTS}, got ${total}`);
  const owners: Array<string | undefined> = previous ? expandLayout(previous) : new Array<undefined>(SLOTS);
  if (owners.length !== SLOTS) owners.length = SLOTS;
  const held = new Map<string, number>();
  for (const owner of owners) if (owner !== undefined) held.set(owner, (held.get(owner) ?? 0) + 1);

  // Release: each backend gives up its surplus, highest slots first (deterministic).
  for (let slot = SLOTS - 1; slot >= 0; slot--) {
    const owner = owners[slot];
    if (owner === undefined) continue;
    const want = weights[owner] ?? 0;
    const have = held.get(owner) ?? 0;
    if (have > want) {
      owners[slot] = undefined;
      held.set(owner, have - 1);
    }
  }
  // Claim: backends below their weight take free slots, lowest first, in the order weights list them.
  let slot = 0;
  for (const [backend, want] of Object.entries(weights)) {
    let have = held.get(backend) ?? 0;
    while (have < want) {
      while (owners[slot] !== undefined) slot++;
      owners[slot] = backend;
      have++;
    }
    held.set(backend, have);
  }
  return compressSlots(owners.map((owner) => owner ?? ""));
}

/** 32-bit FNV-1a with a murmur3 finaliser: fast, and sequential ids (`shopper-1`, `-2`) spread evenly. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The slot a sticky key falls in. `salt` keeps one shopper's slot independent across routes. */
export function slotOf(salt: string, key: string): number {
  return hash32(`${salt}\u0000${key}`) % SLOTS;
}

/** Result of {@link decideSplit}: which backend, and whether the choice is sticky for this caller. */
export type SplitDecision =
  | { kind: "sticky"; backend: string; slot: number }
  | { kind: "random"; backend: string; slot: number };

/**
 * Picks the backend for one request. With a sticky key the same key always lands on the same slot;
 * without one a random slot is drawn (`random` in [0, 1)). `owners` is {@link expandLayout}'s output.
 */
export function decideSplit(
  owners: ReadonlyArray<string>,
  salt: string,
  stickyValue: string | undefined,
  random: number,
): SplitDecision {
  if (stickyValue !== undefined && stickyValue !== "") {
    const slot = slotOf(salt, stickyValue);
    return { kind: "sticky", backend: owners[slot] ?? "", slot };
  }
  const slot = Math.min(SLOTS - 1, Math.floor(random * SLOTS));
  return { kind: "random", backend: owners[slot] ?? "", slot };
}

/** Weights a layout realises (for display and checks). */
export function layoutWeights(layout: Layout): Record<string, number> {
  const weights: Record<string, number> = {};
  for (const run of layout) weights[run.backend] = (weights[run.backend] ?? 0) + run.slots;
  return weights;
}
