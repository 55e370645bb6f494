/**
 * The proxy's view of its service's config, cached in isolate memory and shared by the isolates of
 * one data center through the Cache API.
 *
 * Requests never wait on the control plane while the in-memory slice is fresh. A refresh first
 * reads the data center's shared entry (a local cache read, no Durable Object call); only when that
 * is missing or stale does it ask the service's SliceStore, and then it writes the answer back for
 * the other isolates. So the SliceStore sees about one read per data center per freshness period
 * (`SHARED_FRESH_MS`, set by the SliceStore), however many isolates serve the service there. A
 * Worker cannot keep a connection across requests, so the control plane cannot push; polling a
 * shared cache is the cheapest pull.
 *
 * The isolate that wrote the shared entry (its writer) renews it: it needs no cache read while the
 * entry is fresh (the cache holds what it wrote) and asks the SliceStore when the entry goes stale,
 * without a claim. The other isolates re-read the shared entry every {@link FRESH_MS}, and leave a
 * stale entry to its writer for {@link WRITER_GRACE_MS} before one of them claims the refresh. So a
 * quiet service, served by one isolate, costs one SliceStore read per freshness and no cache reads
 * or claims; a busy data center costs the same one read, and its other isolates a local cache read
 * each per {@link FRESH_MS}.
 *
 * Bounds kept:
 * - a split change is obeyed everywhere within the shared freshness (750 ms) + {@link FRESH_MS}
 *   (250 ms) + one SliceStore read: about 1 s. If the writer stops serving (its isolate evicted),
 *   add {@link WRITER_GRACE_MS} and a claim ({@link CLAIM_SETTLE_MS}) once: about 1.3 s;
 * - isolates that find an abandoned entry stale together elect one of them to ask (a claim written
 *   to the cache, last writer wins), so a busy data center still makes one read per period;
 * - a version never goes backwards in an isolate (an older shared entry is ignored);
 * - when the control plane is unreachable the last good slice keeps serving (an isolate that has
 *   none yet cannot read the shared entry either: it learns the cache key from its first answer).
 *
 * The cache key is a secret the SliceStore gives only to this service's proxies (the Cache API is
 * shared by every Worker of a zone): another service's proxy can neither read this slice nor plant one.
 */
import { disposeRpcResult, type ControlPlaneApi, type SliceRead, type SliceShare } from "../../shared/slice.ts";
import { withTimeout } from "./bounded.ts";
import { compileSlice, type CompileContext, type CompiledSlice } from "./plan.ts";

/** Below this age the in-memory slice is used as is; above it, the shared entry is read (in the background). */
export const FRESH_MS = 250;
/** Above this age a request waits for a refresh (bounded by {@link REFRESH_TIMEOUT_MS}); in between, it refreshes in the background. */
export const MAX_AGE_MS = 900;
const REFRESH_TIMEOUT_MS = 1_000;
const MAX_BACKOFF_MS = 5_000;
/** The named cache the shared entries live in. */
const SHARED_CACHE = "weft-config";
const SHARED_ORIGIN = "https://weft-config.internal/slice/";
/**
 * How long the Cache API keeps an entry. Freshness is decided by the entry's own `freshUntil`; this
 * only bounds how long a stale entry survives to serve as last good config during an outage.
 */
const SHARED_TTL_SECONDS = 3_600;
/**
 * How long a claim to refresh a stale entry holds: the claimant's SliceStore read must land by then,
 * or the next isolate to look claims it.
 */
export const CLAIM_MS = 1_500;
/**
 * How long a claimant waits before reading its claim back. Isolates that found the entry stale at
 * about the same moment all write claims; the last write wins, and after this pause every one of
 * them reads the same winner, so one SliceStore read per data center and period is made, not one per
 * isolate that looked in the same few milliseconds.
 */
export const CLAIM_SETTLE_MS = 30;
/**
 * How long past its freshness an entry is left to its writer to renew before another isolate
 * claims the refresh. One in-memory freshness: a writer that still serves requests renews sooner.
 */
export const WRITER_GRACE_MS = FRESH_MS;
/** A freshness longer than this, in an answer or an entry, is not believed (clock skew, corruption). */
export const MAX_SHARED_FRESH_MS = 10_000;
/** Shared entries above this size are ignored rather than parsed (a slice is a few KiB). */
const MAX_SHARED_BYTES = 1 << 20;

export type SliceState =
  | { kind: "ready"; slice: CompiledSlice }
  | { kind: "absent"; detail: string }
  | { kind: "unavailable"; detail: string };

/** A SliceStore answer that carries content (what a shared entry holds). */
export type PublishedRead = Exclude<SliceRead, { status: "unchanged" }>;

/** What a data center's cache holds for one service: the last answer of its SliceStore, and until when it is fresh (epoch ms). */
export interface SharedEntry {
  read: PublishedRead;
  freshUntil: number;
  /** An isolate claimed the refresh of this stale entry until then (epoch ms): the others wait for its answer. */
  refreshingUntil?: number;
  /** The claimant's random token (the last claim written wins). */
  claim?: string;
  /** The random id of the isolate that wrote this answer: it renews the entry when it goes stale. */
  writer?: string;
}

/** What a refresh does with the shared entry it read. */
export type SharedDecision =
  /** Fresh and newer than what this isolate serves: take it. */
  | { kind: "adopt"; read: PublishedRead }
  /** Fresh, nothing newer: this isolate is up to date. */
  | { kind: "current" }
  /**
   * Ask the SliceStore (and share its answer): the entry is missing, or stale and abandoned by its
   * writer (claimed first), or stale and this isolate's own (renewed without a claim).
   */
  | { kind: "ask"; reason: "missing" | "stale" | "renew" };

/** The config version a read carries. */
export function versionOfRead(read: PublishedRead): number {
  return read.status === "slice" ? read.slice.version : read.version;
}

/**
 * Decides a refresh from the shared entry (pure). `known` is the version this isolate serves
 * (undefined: none yet); `self` is this isolate's writer id.
 */
export function decideShared(entry: SharedEntry | undefined, known: number | undefined, now: number, self?: string): SharedDecision {
  if (entry === undefined) return { kind: "ask", reason: "missing" };
  const newer = known === undefined || versionOfRead(entry.read) > known;
  const implausible = entry.freshUntil - now > MAX_SHARED_FRESH_MS;
  if (now >= entry.freshUntil || implausible) {
    const mine = self !== undefined && entry.writer === self;
    if (mine && !implausible) return { kind: "ask", reason: "renew" };
    // Its writer renews it shortly, or another isolate is asking right now: wait for that answer rather than ask too.
    const writerRenews = !implausible && entry.writer !== undefined && now < entry.freshUntil + WRITER_GRACE_MS;
    const claimed = entry.refreshingUntil !== undefined && entry.refreshingUntil > now && entry.refreshingUntil - now <= CLAIM_MS;
    if (!writerRenews && !claimed) return { kind: "ask", reason: "stale" };
  }
  return newer ? { kind: "adopt", read: entry.read } : { kind: "current" };
}


/** The share settings of an answer, if they are well-formed. */
export function validShare(share: SliceShare | undefined): SliceShare | undefined {
  if (share === undefined || !/^[0-9a-f]{32}$/.test(share.key)) return undefined;
  if (!Number.isFinite(share.freshForMs) || share.freshForMs < 0 || share.freshForMs > MAX_SHARED_FRESH_MS) return undefined;
  return { key: share.key, freshForMs: share.freshForMs };
}

function isSharedEntry(value: unknown): value is SharedEntry {
  if (typeof value !== "object" || value === null) return false;
  const freshUntil: unknown = Reflect.get(value, "freshUntil");
  const read: unknown = Reflect.get(value, "read");
  if (typeof freshUntil !== "number" || typeof read !== "object" || read === null) return false;
  const status: unknown = Reflect.get(read, "status");
  return status === "slice" ? typeof Reflect.get(read, "slice") === "object" : status === "absent" && typeof Reflect.get(read, "version") === "number";
}

type Defer = (promise: Promise<unknown>) => void;

const NOTHING_LOADED: SliceState = { kind: "unavailable", detail: "no config loaded yet and the control plane is unreachable" };

export class SliceCache {
  private state: SliceState | undefined;
  /** The version `state` was built from (undefined: nothing loaded). */
  private version: number | undefined;
  /** The answer `state` was built from, to share again when the SliceStore says "unchanged". */
  private raw: PublishedRead | undefined;
  /** Learnt from the SliceStore's answers; without it this isolate cannot use the shared cache. */
  private share: SliceShare | undefined;
  private cache: Promise<Cache> | undefined;
  /**
   * The entry this isolate last shared. Used when the cache has none (evicted, or a Cache API that
   * stores nothing, as on workers.dev), so that case costs one SliceStore read per freshness per
   * isolate, not one per in-memory refresh.
   */
  private own: SharedEntry | undefined;
  /** This isolate's writer id in the entries it shares. */
  private readonly id = crypto.randomUUID();
  /** When the slice was last confirmed current, and until when that confirmation holds. */
  private checkedAt = 0;
  private freshUntil = 0;
  private retryAt = 0;
  private failures = 0;
  private background: Promise<void> | undefined;

  /**
   * @param source only `readSlice` is used (the CONTROL_PLANE binding in production).
   * @param clock epoch ms; tests pass their own to step through freshness without waiting.
   */
  constructor(
    private readonly service: string,
    private readonly source: Pick<ControlPlaneApi, "readSlice">,
    private readonly compiling: { context: CompileContext; onCompiled: (slice: CompiledSlice) => void },
    private readonly clock: () => number = Date.now,
  ) {}

  /** The config version this isolate serves (undefined: none loaded yet). */
  get servedVersion(): number | undefined {
    return this.version;
  }

  /**
   * The slice to serve this request with: synchronously while the cache is usable (the hot path
   * never awaits here), or a promise when this request must wait for a refresh. `waitUntil` keeps
   * background refreshes (and writes to the shared cache) alive.
   */
  current(waitUntil: Defer): SliceState | Promise<SliceState> {
    const now = this.clock();
    if (this.state) {
      if (now < this.freshUntil) return this.state;
      const age = now - this.checkedAt;
      // Wait only when the config may be stale and the control plane is believed healthy; during an
      // outage requests are served from the last good config without ever waiting on it.
      if (age < MAX_AGE_MS || this.failures > 0) {
        if (!this.background && now >= this.retryAt) {
          this.background = this.refresh(true, waitUntil).finally(() => (this.background = undefined));
          waitUntil(this.background);
        }
        return this.state;
      }
    } else if (now < this.retryAt) {
      return NOTHING_LOADED;
    }
    return this.refresh(true, waitUntil).then(() => this.state ?? NOTHING_LOADED);
  }

  /**
   * The slice as the control plane has it now, for work that must not act on a stale one (the
   * cron trigger): asks the SliceStore, not the shared cache; falls back to the last good config
   * when the control plane is unreachable.
   */
  async fresh(): Promise<SliceState> {
    await (this.background ?? this.refresh(false, undefined));
    return this.state ?? NOTHING_LOADED;
  }

  private async refresh(useShared: boolean, defer: Defer | undefined): Promise<void> {
    // The writer of a fresh entry needs no cache read: the cache holds what it wrote.
    const own = this.own !== undefined && this.own.freshUntil > this.clock() ? this.own : undefined;
    const shared = useShared ? (own ?? (await this.readShared()) ?? this.own) : undefined;
    const decision = decideShared(shared, this.version, this.clock(), this.id);
    if (decision.kind !== "ask" && this.applyShared(decision)) {
      this.checked(this.clock(), FRESH_MS);
      return;
    }
    if (decision.kind === "ask" && decision.reason === "stale" && shared !== undefined && this.share !== undefined) {
      const claim = await this.claimRefresh(this.share, shared);
      if (claim.kind === "theirs") {
        // Another isolate asks the SliceStore (or already has): take what it shared if newer, else keep serving what this isolate has.
        const now = this.clock();
        const theirs = decideShared(claim.entry, this.version, now);
        if (theirs.kind === "adopt") this.applyShared(theirs);
        this.checked(now, FRESH_MS);
        return;
      }
    }
    const known = this.version ?? 0;
    try {
      const read = await withTimeout(this.source.readSlice(this.service, known), REFRESH_TIMEOUT_MS, "control plane");
      const answer: SliceRead = structuredClone(read);
      disposeRpcResult(read);
      this.share = validShare(answer.share) ?? this.share;
      if (answer.status !== "unchanged") this.apply(answer);
      const now = this.clock();
      // What this isolate now serves is the SliceStore's answer (or newer: versions never go back): share it.
      if (this.share && this.raw) {
        const written = this.writeShared(this.share, { read: this.raw, freshUntil: now + this.share.freshForMs, writer: this.id });
        if (defer) defer(written);
        else await written;
      }
      if (this.failures > 0) console.log(`weft proxy ${this.service}: control plane reachable again (config version ${this.version ?? 0})`);
      // Just read from the SliceStore: current for as long as the entry it shared is fresh.
      this.checked(now, Math.max(FRESH_MS, this.share?.freshForMs ?? 0));
      this.failures = 0;
      this.retryAt = 0;
    } catch (error) {
      this.failures++;
      this.retryAt = this.clock() + Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.failures);
      if (this.state?.kind === "ready") {
        if (this.failures === 1) {
          console.warn(
            `weft proxy ${this.service}: control plane unreachable (${String(error)}); serving last good config version ${this.state.slice.version}`,
          );
        }
      } else {
        console.error(`weft proxy ${this.service}: cannot load config: ${String(error)}`);
      }
    }
  }

  /** The slice was confirmed current at `now`; the next check is due after `freshForMs`. */
  private checked(now: number, freshForMs: number): void {
    this.checkedAt = now;
    this.freshUntil = now + freshForMs;
  }

  /** Takes a shared entry's decision; false when the entry could not be used (it is then treated as missing). */
  private applyShared(decision: Exclude<SharedDecision, { kind: "ask" }>): boolean {
    if (decision.kind === "current") return true;
    try {
      this.apply(decision.read);
      return true;
    } catch (error) {
      console.warn(`weft proxy ${this.service}: ignoring a shared config entry that does not compile (${String(error)})`);
      return false;
    }
  }

  /** Serves `read` from now on, unless it is older than what this isolate serves (versions never go backwards). */
  private apply(read: PublishedRead): void {
    const version = versionOfRead(read);
    if (this.version !== undefined && version <= this.version && this.state !== undefined) return;
    if (read.status === "slice") {
      const slice = compileSlice(read.slice, this.compiling.context);
      this.compiling.onCompiled(slice);
      this.state = { kind: "ready", slice };
    } else {
      this.state = { kind: "absent", detail: `the mesh config has no service '${this.service}'` };
    }
    this.version = version;
    this.raw = read;
  }

  private sharedUrl(share: SliceShare): string {
    return `${SHARED_ORIGIN}${share.key}`;
  }

  private openCache(): Promise<Cache> {
    this.cache ??= caches.open(SHARED_CACHE);
    return this.cache;
  }

  /** The data center's shared entry, or undefined (no key yet, none cached, unreadable). Never throws. */
  private async readShared(): Promise<SharedEntry | undefined> {
    const share = this.share;
    if (share === undefined) return undefined;
    try {
      const response = await (await this.openCache()).match(this.sharedUrl(share));
      if (!response) return undefined;
      const text = await response.text();
      if (text.length > MAX_SHARED_BYTES) return undefined;
      const parsed: unknown = JSON.parse(text);
      return isSharedEntry(parsed) ? parsed : undefined;
    } catch {
      // The cache is an optimisation: any failure means "ask the SliceStore".
      return undefined;
    }
  }

  /**
   * Claims the refresh of a stale shared entry: writes a claim, waits {@link CLAIM_SETTLE_MS}, reads
   * it back. True when this isolate's claim is the one that stuck (or the cache cannot tell).
   */
  private async claimRefresh(share: SliceShare, stale: SharedEntry): Promise<{ kind: "mine" } | { kind: "theirs"; entry: SharedEntry }> {
    const claim = crypto.randomUUID();
    await this.writeShared(share, { read: stale.read, freshUntil: stale.freshUntil, refreshingUntil: this.clock() + CLAIM_MS, claim });
    await new Promise((resolve) => setTimeout(resolve, CLAIM_SETTLE_MS));
    const winner = await this.readShared();
    // Gone from the cache, or still our claim: ask. Another claim, or a fresh answer already: theirs.
    return winner === undefined || winner.claim === claim ? { kind: "mine" } : { kind: "theirs", entry: winner };
  }

  /** Shares an answer with the data center's other isolates. Never throws. */
  private async writeShared(share: SliceShare, entry: SharedEntry): Promise<void> {
    if (entry.claim === undefined) this.own = entry;
    try {
      const response = new Response(JSON.stringify(entry), {
        headers: { "content-type": "application/json", "cache-control": `max-age=${SHARED_TTL_SECONDS}` },
      });
      await (await this.openCache()).put(this.sharedUrl(share), response);
    } catch (error) {
      console.warn(`weft proxy ${this.service}: could not share config through the cache (${String(error)})`);
    }
  }
}
