/**
 * ConfigStore: the mesh config's source of truth. Every accepted change is a new version; history is
 * kept per service (a service's row is written only in versions that change it), so a version is
 * cheap however large the mesh is. Only admin writes reach this object; proxies read their slices
 * from the per-service {@link SliceStore} shards, which this object keeps up to date through an
 * outbox drained by its alarm.
 */
import { DurableObject } from "cloudflare:workers";
import type { FaultRule, MeshConfig, Policy, RateLimitRule, ServiceConfig, ServiceResilience, SplitUpdate, Weights } from "../shared/config.ts";
import { defaultRoute, toSlice, type RolloutLock, type SliceRead, type StoredService } from "../shared/slice.ts";
import { byName, pageNames, type ListFilter, type Page, type PageRequest } from "../shared/paging.ts";
import { rebalance } from "../shared/split.ts";
import { validateMesh, type ConfigIssue } from "../shared/validate.ts";
import { compileProgram } from "../shared/regex.ts";
import { serviceView, type ServiceView } from "../shared/views.ts";
import { plainStub, type PlainStub } from "./rpc.ts";
import type { SliceStore } from "./slice-store.ts";

/** Outcome of a write: the new state, or why nothing was changed. */
export type WriteResult<T> =
  | { ok: true; value: T }
  | { ok: false; reason: "invalid"; issues: ConfigIssue[] }
  | { ok: false; reason: "stale"; current: number }
  | { ok: false; reason: "not-found"; detail: string }
  | { ok: false; reason: "conflict"; detail: string; rollout: string };

/** A refused write. */
export type WriteRefusal = Exclude<WriteResult<never>, { ok: true }>;

/** What a change to one service does: its next config and the history entry, or why it is refused. */
type ServiceChange = { next: ServiceConfig; reason: string; lock?: RolloutLock | null } | WriteRefusal;

/** The split a rollout starts from. */
export interface RolloutStart {
  route: string;
  weights: Weights;
  version: number;
}

/** One entry of `GET /admin/config/versions`. */
export interface VersionInfo {
  version: number;
  createdAt: string;
  reason: string;
  changed: string[];
}

/** Result of a config write that may have changed several services. */
export interface ConfigWrite {
  version: number;
  changed: string[];
}

interface CurrentService {
  version: number;
  stored: StoredService;
}

const PUBLISH_CONCURRENCY = 50;
/**
 * Versions kept in the history (the current one always among them). Older versions cannot be read
 * or rolled back to; each service keeps the one document those kept versions still need.
 */
export const KEPT_VERSIONS = 500;
/** History is pruned every this many versions, so a write rarely pays for it. */
const PRUNE_EVERY = 25;

/** The mesh has one ConfigStore; it serves admin writes and shard cold starts only. */
export function configStoreOf(env: ControlPlaneEnv): PlainStub<ConfigStore> {
  return plainStub<ConfigStore>(env.CONFIG_STORE.get(env.CONFIG_STORE.idFromName("mesh")));
}

/** The shard holding `service`'s published slice. */
export function sliceStoreOf(env: ControlPlaneEnv, service: string): PlainStub<SliceStore> {
  return plainStub<SliceStore>(env.SLICE_STORE.get(env.SLICE_STORE.idFromName(service)));
}
const MAX_RETRY_DELAY_MS = 60_000;

export class ConfigStore extends DurableObject<ControlPlaneEnv> {
  private readonly sql: SqlStorage;
  private readonly current = new Map<string, CurrentService>();
  /** Service names in list order, built on the first list after a change (lists page through it). */
  private sortedNames: string[] | null = null;
  private head = 0;

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS versions (
        version INTEGER PRIMARY KEY, created_at TEXT NOT NULL, reason TEXT NOT NULL, changed TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS service_docs (
        service TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT, PRIMARY KEY (service, version));
      CREATE TABLE IF NOT EXISTS outbox (
        service TEXT PRIMARY KEY, version INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS subscribers (service TEXT PRIMARY KEY);
    `);
    this.head = this.sql.exec<{ v: number | null }>("SELECT MAX(version) AS v FROM versions").one().v ?? 0;
    for (const [name, entry] of this.servicesAt(this.head)) this.current.set(name, entry);
  }

  /** Services as of `version` (deleted ones left out), with the version that last changed each. */
  private servicesAt(version: number): Map<string, CurrentService> {
    const rows = this.sql.exec<{ service: string; version: number; doc: string | null }>(
      `SELECT d.service, d.version, d.doc FROM service_docs d
       WHERE d.version = (SELECT MAX(version) FROM service_docs WHERE service = d.service AND version <= ?)
       ORDER BY d.service`,
      version,
    );
    const services = new Map<string, CurrentService>();
    for (const row of rows) {
      if (row.doc !== null) services.set(row.service, { version: row.version, stored: JSON.parse(row.doc) as StoredService });
    }
    return services;
  }

  /** The current config version (0 before the first write). */
  version(): number {
    return this.head;
  }

  /** The oldest version still kept (1 before any pruning). */
  private oldestKept(): number {
    return Math.max(1, this.head - KEPT_VERSIONS + 1);
  }

  /** The whole config at `version` (default: current), or null if that version does not exist (or was pruned). */
  readConfig(version?: number): { version: number; config: MeshConfig } | null {
    const at = version ?? this.head;
    if (at < 0 || at > this.head || (version !== undefined && (at === 0 || at < this.oldestKept()))) return null;
    const services = at === this.head ? this.current : this.servicesAt(at);
    return { version: at, config: { services: [...services.values()].map((s) => s.stored.config) } };
  }

  /** Every service as the admin API shows it. */
  listServices(): ServiceView[] {
    return [...this.current.values()]
      .map((s) => serviceView(s.stored, s.version))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * One page of services as the admin API shows them: only the page's views are built and sent,
   * so a 4,000-service mesh answers a page of 100 without serializing the whole config.
   */
  pageServices(filter: ListFilter, page: PageRequest): Page<ServiceView> {
    const names = pageNames(this.serviceNames(), filter, page);
    return { ...names, items: this.readServices(names.items) };
  }

  /** The names of every service, in list order: what the mesh-wide views page and filter. */
  serviceNames(): string[] {
    this.sortedNames ??= [...this.current.keys()].sort(byName);
    return this.sortedNames;
  }

  /** The named services that exist, in the order given. */
  readServices(names: ReadonlyArray<string>): ServiceView[] {
    return names.flatMap((name) => {
      const entry = this.current.get(name);
      return entry ? [serviceView(entry.stored, entry.version)] : [];
    });
  }

  /** One service as the admin API shows it, or null. */
  readService(name: string): ServiceView | null {
    const entry = this.current.get(name);
    return entry ? serviceView(entry.stored, entry.version) : null;
  }

  /**
   * The slice a proxy needs, for a {@link SliceStore} shard that has none yet. The shard becomes a
   * subscriber: later changes to its service are pushed to it. Shards nobody has asked for are never
   * written, so a change to a 4,000-service config touches only the services that have proxies running.
   */
  readSlice(service: string): SliceRead {
    this.sql.exec("INSERT OR IGNORE INTO subscribers (service) VALUES (?)", service);
    const entry = this.current.get(service);
    return entry
      ? { status: "slice", slice: toSlice(entry.stored, entry.version, compileProgram) }
      : { status: "absent", version: this.head };
  }

  /** History, newest first. */
  listVersions(limit: number): VersionInfo[] {
    return this.sql
      .exec<{ version: number; created_at: string; reason: string; changed: string }>(
        "SELECT version, created_at, reason, changed FROM versions ORDER BY version DESC LIMIT ?",
        limit,
      )
      .toArray()
      .map((row) => ({
        version: row.version,
        createdAt: row.created_at,
        reason: row.reason,
        changed: JSON.parse(row.changed) as string[],
      }));
  }

  /** Replaces the whole config. `ifMatch` is the config version the writer last read. */
  applyConfig(config: MeshConfig, ifMatch: number | undefined, reason: string): WriteResult<ConfigWrite> {
    if (ifMatch !== undefined && ifMatch !== this.head) return { ok: false, reason: "stale", current: this.head };
    return this.commit(config.services, reason);
  }

  /**
   * Sets the weights (and optionally the sticky key) of one route of one service; the default route
   * unless `routeName` is given. `ifMatch` is the service's version as last read.
   */
  setSplit(
    service: string,
    update: SplitUpdate,
    routeName: string | undefined,
    ifMatch: number | undefined,
  ): WriteResult<ServiceView> {
    return this.updateService(service, ifMatch, (current) => {
      const target = routeName === undefined ? defaultRoute(current.routes) : current.routes.find((r) => r.name === routeName);
      if (!target) return notFound(`service '${service}' has no route named '${routeName ?? ""}'`);
      const lock = this.current.get(service)?.stored.rollout;
      if (lock && lock.route === target.name) return rolloutConflict(service, lock);
      const sticky = update.sticky === undefined ? target.split.sticky : (update.sticky ?? undefined);
      return {
        next: {
          ...current,
          routes: current.routes.map((r) =>
            r === target ? { ...r, split: { weights: update.weights, ...(sticky ? { sticky } : {}) } } : r,
          ),
        },
        reason: `split ${service}/${target.name}: ${formatWeights(update.weights)}`,
      };
    });
  }

  /** Sets (or, with null, removes) a service's authorization policy. */
  setPolicy(service: string, policy: Policy | null, ifMatch: number | undefined): WriteResult<ServiceView> {
    return this.updateService(service, ifMatch, (current) => {
      const { policy: _previous, ...rest } = current;
      return {
        next: policy ? { ...rest, policy } : rest,
        reason: policy ? `policy ${service}: ${policy.allow.length} allow, ${policy.deny.length} deny rules` : `policy ${service} removed`,
      };
    });
  }

  /** Replaces the resilience settings (timeout, retries, failover) of a service's routes; routes not named lose theirs. */
  setResilience(service: string, settings: ServiceResilience, ifMatch: number | undefined): WriteResult<ServiceView> {
    return this.updateService(service, ifMatch, (current) => {
      const unknown = Object.keys(settings.routes).filter((name) => !current.routes.some((r) => r.name === name));
      if (unknown.length > 0) return notFound(`service '${service}' has no route named ${unknown.map((n) => `'${n}'`).join(", ")}`);
      return {
        next: {
          ...current,
          routes: current.routes.map(({ timeoutMs: _t, retries: _r, failover: _f, mirror: _m, honoursIdempotencyKey: _k, ...route }) => ({ ...route, ...settings.routes[route.name] })),
        },
        reason: `resilience ${service}: ${Object.keys(settings.routes).join(", ") || "cleared"}`,
      };
    });
  }

  /** Sets (or, with an empty list, clears) a service's injected faults. */
  setFaults(service: string, faults: FaultRule[], ifMatch: number | undefined): WriteResult<ServiceView> {
    return this.updateService(service, ifMatch, (current) => {
      const { faults: _previous, ...rest } = current;
      return {
        next: faults.length > 0 ? { ...rest, faults } : rest,
        reason: faults.length > 0 ? `faults ${service}: ${faults.map((f) => f.backend).join(", ")}` : `faults ${service} cleared`,
      };
    });
  }

  /** Sets (or, with an empty list, removes) a service's rate limits. */
  setRateLimits(service: string, limits: RateLimitRule[], ifMatch: number | undefined): WriteResult<ServiceView> {
    return this.updateService(service, ifMatch, (current) => {
      const { rateLimits: _previous, ...rest } = current;
      const named = limits.map((rule, i) => ({ ...rule, name: rule.name ?? `limit-${i}` }));
      return {
        next: named.length > 0 ? { ...rest, rateLimits: named } : rest,
        reason: named.length > 0 ? `rate limits ${service}: ${named.map((l) => `${l.name} ${l.limit}/${l.periodSeconds}s`).join(", ")}` : `rate limits ${service} removed`,
      };
    });
  }

  /** Read-modify-write of one service, validated and committed like any other change. */
  private updateService(service: string, ifMatch: number | undefined, change: (current: ServiceConfig) => ServiceChange): WriteResult<ServiceView> {
    const entry = this.current.get(service);
    if (!entry) return notFound(`no service named '${service}'`);
    if (ifMatch !== undefined && ifMatch !== entry.version) return { ok: false, reason: "stale", current: entry.version };
    const changed = change(entry.stored.config);
    if ("ok" in changed) return changed;
    const services = [...this.current.values()].map((s) => (s.stored.config.name === service ? changed.next : s.stored.config));
    const locks = changed.lock === undefined ? undefined : new Map([[service, changed.lock]]);
    const result = this.commit(services, changed.reason, locks);
    if (!result.ok) return result;
    const view = this.readService(service);
    return view ? { ok: true, value: view } : notFound(`no service named '${service}'`);
  }

  /**
   * Puts a route of `service` under rollout `lock.id` (the default route unless `lock.route` names
   * one): from now on only that rollout changes the route's split. Answers the split it starts
   * from. Idempotent for the same rollout id; another rollout's lock is a conflict unless it is
   * listed in `stale` (the RolloutStore, the only writer of locks, knows those have ended).
   */
  beginRollout(service: string, lock: Omit<RolloutLock, "route"> & { route?: string | undefined }, stale: ReadonlyArray<string>): WriteResult<RolloutStart> {
    const entry = this.current.get(service);
    if (!entry) return notFound(`no service named '${service}'`);
    const config = entry.stored.config;
    const route = lock.route === undefined ? defaultRoute(config.routes) : config.routes.find((r) => r.name === lock.route);
    if (!route) return invalid(["route"], `service '${service}' has no route named '${lock.route ?? ""}'`);
    const held = entry.stored.rollout;
    if (held && held.id === lock.id) return { ok: true, value: { route: route.name, weights: route.split.weights, version: entry.version } };
    if (held && !stale.includes(held.id)) return rolloutConflict(service, held);
    if (!config.backends.some((b) => b.name === lock.backend)) {
      return invalid(["backend"], `service '${service}' has no backend named '${lock.backend}' (backends: ${config.backends.map((b) => b.name).join(", ")})`);
    }
    const others = Object.entries(route.split.weights).filter(([name, weight]) => name !== lock.backend && weight > 0);
    if (others.length === 0) {
      return invalid(["backend"], `'${lock.backend}' already has all of route '${route.name}''s traffic: there is no baseline to compare it with`);
    }
    const full: RolloutLock = { id: lock.id, route: route.name, backend: lock.backend, ...(lock.probe ? { probe: lock.probe } : {}) };
    const services = [...this.current.values()].map((s) => s.stored.config);
    const result = this.commit(services, `rollout ${lock.id} of ${lock.backend} on ${service}/${route.name} started`, new Map([[service, full]]));
    if (!result.ok) return result;
    return { ok: true, value: { route: route.name, weights: route.split.weights, version: result.value.version } };
  }

  /**
   * Sets the split of the route rollout `id` holds; with `release`, also ends its hold. Writing
   * the weights already in place changes nothing (no new version), so the rollout can repeat a
   * write it is unsure of. Releasing a hold that is already gone is not an error.
   */
  setRolloutSplit(service: string, id: string, weights: Weights, reason: string, release: boolean): WriteResult<ServiceView> {
    const lock = this.current.get(service)?.stored.rollout;
    if (!lock || lock.id !== id) {
      const view = this.readService(service);
      if (release && view) return { ok: true, value: view };
      return lock ? rolloutConflict(service, lock) : notFound(`rollout ${id} does not hold a split of '${service}'`);
    }
    return this.updateService(service, undefined, (current) => ({
      next: {
        ...current,
        routes: current.routes.map((r) => (r.name === lock.route ? { ...r, split: { ...r.split, weights } } : r)),
      },
      reason: `${reason}: ${formatWeights(weights)}`,
      // Naming the hold marks this write as the rollout's own.
      lock: release ? null : lock,
    }));
  }

  /**
   * Makes `version`'s config current again, as a new version. Sticky layouts are moved from the
   * current layout to that version's weights, so shoppers still only move where weights changed.
   */
  rollback(version: number, ifMatch: number | undefined): WriteResult<ConfigWrite> {
    if (ifMatch !== undefined && ifMatch !== this.head) return { ok: false, reason: "stale", current: this.head };
    const target = this.readConfig(version);
    if (!target || version === 0) return { ok: false, reason: "not-found", detail: `no config version ${version}` };
    return this.commit(target.config.services, `rollback to version ${version}`);
  }

  /**
   * Validates and stores a whole new config. Rollout holds carry over, and a change to a held
   * route's split (or to what the rollout needs) is refused, unless `locks` says this write is the
   * rollout's own (a new hold, or null to end one).
   */
  private commit(services: ServiceConfig[], reason: string, locks?: ReadonlyMap<string, RolloutLock | null>): WriteResult<ConfigWrite> {
    const issues = validateMesh({ services }, { allowLocalhostHttp: this.env.WEFT_ENV === "development" });
    if (issues.length > 0) return { ok: false, reason: "invalid", issues };

    const changes: Array<[string, StoredService | null]> = [];
    for (const service of services) {
      const previous = this.current.get(service.name)?.stored;
      const lock = locks?.has(service.name) ? locks.get(service.name) : previous?.rollout;
      if (previous?.rollout && !locks?.has(service.name) && breaksRollout(previous, service)) return rolloutConflict(service.name, previous.rollout);
      const layouts: StoredService["layouts"] = {};
      for (const route of service.routes) layouts[route.name] = rebalance(previous?.layouts[route.name], route.split.weights);
      const stored: StoredService = { config: service, layouts, ...(lock ? { rollout: lock } : {}) };
      if (!previous || JSON.stringify(previous) !== JSON.stringify(stored)) changes.push([service.name, stored]);
    }
    const kept = new Set(services.map((s) => s.name));
    for (const [name, entry] of this.current) {
      if (kept.has(name)) continue;
      if (entry.stored.rollout) return rolloutConflict(name, entry.stored.rollout);
      changes.push([name, null]);
    }
    if (changes.length === 0) return { ok: true, value: { version: this.head, changed: [] } };

    const version = this.head + 1;
    const changed = changes.map(([name]) => name);
    this.ctx.storage.transactionSync(() => {
      this.sql.exec(
        "INSERT INTO versions (version, created_at, reason, changed) VALUES (?, ?, ?, ?)",
        version,
        new Date().toISOString(),
        reason,
        JSON.stringify(changed),
      );
      for (const [name, stored] of changes) {
        this.sql.exec(
          "INSERT INTO service_docs (service, version, doc) VALUES (?, ?, ?)",
          name,
          version,
          stored ? JSON.stringify(stored) : null,
        );
        this.sql.exec(
          `INSERT INTO outbox (service, version) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM subscribers WHERE service = ?)
           ON CONFLICT (service) DO UPDATE SET version = excluded.version, attempts = 0`,
          name,
          version,
          name,
        );
      }
    });
    this.head = version;
    this.sortedNames = null;
    for (const [name, stored] of changes) {
      if (stored) this.current.set(name, { version, stored });
      else this.current.delete(name);
    }
    if (version % PRUNE_EVERY === 0) this.pruneHistory();
    // Publication is asynchronous and retried until every subscribed shard has the change (see alarm()).
    if (this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n > 0) void this.ctx.storage.setAlarm(Date.now());
    return { ok: true, value: { version, changed } };
  }

  /**
   * Forgets versions older than the last {@link KEPT_VERSIONS}. A service document older than the
   * oldest kept version is deleted once a newer one (still at or before that version) replaces it,
   * so every kept version can still be rebuilt; a service deleted before it is forgotten entirely.
   */
  pruneHistory(): { versions: number; documents: number } {
    const floor = this.oldestKept();
    if (floor <= 1) return { versions: 0, documents: 0 };
    return this.ctx.storage.transactionSync(() => {
      const versions = this.sql.exec("DELETE FROM versions WHERE version < ?", floor).rowsWritten;
      let documents = this.sql.exec(
        `DELETE FROM service_docs WHERE version < ?1 AND EXISTS (
           SELECT 1 FROM service_docs newer WHERE newer.service = service_docs.service
             AND newer.version > service_docs.version AND newer.version <= ?1)`,
        floor,
      ).rowsWritten;
      // What is left before the floor is each service's state at the floor; a deletion there is nothing.
      documents += this.sql.exec("DELETE FROM service_docs WHERE version < ? AND doc IS NULL", floor).rowsWritten;
      return { versions, documents };
    });
  }

  /** Drains the outbox: pushes each changed service's slice to its shard; failures retry with backoff. */
  override async alarm(): Promise<void> {
    const pending = this.sql
      .exec<{ service: string; version: number; attempts: number }>("SELECT service, version, attempts FROM outbox")
      .toArray();
    let maxAttempts = 0;
    for (let i = 0; i < pending.length; i += PUBLISH_CONCURRENCY) {
      const batch = pending.slice(i, i + PUBLISH_CONCURRENCY);
      const results = await Promise.allSettled(batch.map((row) => this.publish(row.service, row.version)));
      results.forEach((result, j) => {
        const row = batch[j];
        if (!row) return;
        if (result.status === "fulfilled") {
          this.sql.exec("DELETE FROM outbox WHERE service = ? AND version = ?", row.service, row.version);
        } else {
          console.error(`weft: publishing config for '${row.service}' failed (attempt ${row.attempts + 1}):`, String(result.reason));
          this.sql.exec("UPDATE outbox SET attempts = attempts + 1 WHERE service = ?", row.service);
          maxAttempts = Math.max(maxAttempts, row.attempts + 1);
        }
      });
    }
    const left = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM outbox").one().n;
    if (left > 0) {
      const delay = maxAttempts === 0 ? 0 : Math.min(MAX_RETRY_DELAY_MS, 500 * 2 ** maxAttempts);
      await this.ctx.storage.setAlarm(Date.now() + delay);
    }
  }

  private async publish(service: string, version: number): Promise<void> {
    const entry = this.current.get(service);
    await sliceStoreOf(this.env, service).publish(entry ? { status: "slice", slice: toSlice(entry.stored, entry.version, compileProgram) } : { status: "absent", version });
  }
}

function notFound(detail: string): WriteRefusal {
  return { ok: false, reason: "not-found", detail };
}

function invalid(path: string[], message: string): WriteRefusal {
  return { ok: false, reason: "invalid", issues: [{ code: "custom", path, message }] };
}

function rolloutConflict(service: string, lock: RolloutLock): WriteRefusal {
  return {
    ok: false,
    reason: "conflict",
    rollout: lock.id,
    detail: `rollout ${lock.id} of '${lock.backend}' owns the split of ${service}/${lock.route}; ` +
      `pause it, or end it with POST /admin/services/${service}/rollouts/current/abort (or promote) before changing that split`,
  };
}

/** Would storing `next` change what a running rollout owns: its route's split, the route, or its candidate? */
function breaksRollout(previous: StoredService, next: ServiceConfig): boolean {
  const lock = previous.rollout;
  if (!lock) return false;
  const before = previous.config.routes.find((r) => r.name === lock.route);
  const after = next.routes.find((r) => r.name === lock.route);
  if (!before || !after || !next.backends.some((b) => b.name === lock.backend)) return true;
  return JSON.stringify(before.split.weights) !== JSON.stringify(after.split.weights);
}

function formatWeights(weights: Readonly<Record<string, number>>): string {
  return Object.entries(weights)
    .map(([backend, weight]) => `${backend}=${weight}`)
    .join(" ");
}
