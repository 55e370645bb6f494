/**
 * RolloutStore: one object per service (`idFromName(service)`) running that service's rollouts as a
 * state machine on alarms. Each alarm reads the candidate's and baseline's attempt totals from the
 * service's TelemetryStore (never a proxy's request path), judges the step (`shared/rollout.ts`) and
 * moves the split through the ConfigStore, where the rollout holds the route so no one else changes
 * it meanwhile. Everything needed to go on is in SQLite: after a restart the next alarm continues.
 */
import { DurableObject } from "cloudflare:workers";
import type { Weights } from "../shared/config.ts";
import { bodySha256 } from "../shared/egress.ts";
import type { AttemptStats } from "../shared/metrics.ts";
import {
  attemptsSince,
  checkWebhookUrl,
  isFinished,
  judgeStep,
  nextTransition,
  stepsOf,
  stepWeights,
  type RolloutEvent,
  type RolloutRequest,
  type RolloutState,
  type RolloutStatus,
  type Verdict,
} from "../shared/rollout.ts";
import { disposeRpcResult } from "../shared/slice.ts";
import { configStoreOf, type WriteRefusal, type WriteResult } from "./config-store.ts";
import { plainStub, type PlainStub } from "./rpc.ts";
import { signingKeysOf } from "./signing-keys.ts";
import { telemetryStoreOf } from "./telemetry-store.ts";

/** The rollouts of `service`. */
export function rolloutStoreOf(env: ControlPlaneEnv, service: string): PlainStub<RolloutStore> {
  return plainStub<RolloutStore>(env.ROLLOUTS.get(env.ROLLOUTS.idFromName(service)));
}

/** Manual actions of `POST /admin/services/{service}/rollouts/current/{action}`. */
export const ROLLOUT_ACTIONS = ["pause", "resume", "abort", "promote"] as const;
export type RolloutAction = (typeof ROLLOUT_ACTIONS)[number];

/** What the object keeps per rollout besides what the admin API shows. */
interface RolloutRecord {
  status: RolloutStatus;
  stepIndex: number;
  /** When the current step's window began (moved forward by pauses, so they do not count). */
  windowStartedAt: number;
  /** ms of the step that had passed when it was paused. */
  pausedElapsedMs: number | null;
  /**
   * Attempt totals when the step's weights were written. Attempts reported a moment late from
   * just before (the previous step's, at a lower weight) count in the step: they are the same
   * candidate's, and a failure right after the change must never be missed.
   */
  snapshot: Record<string, AttemptStats>;
  /** The full webhook URL (a secret for most chat services; the status shows its origin only). */
  webhookUrl: string | null;
  /** False until the ConfigStore has the split (and, once finished, the released hold) this record says. */
  synced: boolean;
}

const MAX_EVENTS = 500;
const HISTORY_IDS_PASSED_AS_STALE = 50;
/** Rollouts kept per service (the history API serves at most 100); older ones are deleted on each start. */
export const KEPT_ROLLOUTS = 100;
/** How often a step is judged while it runs. */
const MIN_TICK_MS = 1_000;
const MAX_TICK_MS = 5_000;
/** Retry delay for a ConfigStore or telemetry call that failed. */
const RETRY_MS = 5_000;
const WEBHOOK_TIMEOUT_MS = 5_000;

function tickMs(stepSeconds: number): number {
  return Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.round((stepSeconds * 1000) / 6)));
}

export class RolloutStore extends DurableObject<ControlPlaneEnv> {
  private readonly sql: SqlStorage;
  /** Changes run one at a time: an alarm and a manual action never interleave across their awaits. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS rollouts (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL)");
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private latest(): RolloutRecord | null {
    const row = this.sql.exec<{ doc: string }>("SELECT doc FROM rollouts ORDER BY seq DESC LIMIT 1").toArray()[0];
    return row ? (JSON.parse(row.doc) as RolloutRecord) : null;
  }

  /**
   * Stores the record. `changed` (a new state, step, weight or event) bumps the revision, the
   * rollout's ETag; a tick that only refreshed the live numbers does not, so an operator's
   * If-Match stays valid while the rollout merely runs.
   */
  private save(record: RolloutRecord, changed = true): void {
    if (changed) record.status.revision++;
    record.status.updatedAt = new Date().toISOString();
    this.sql.exec("UPDATE rollouts SET doc = ? WHERE id = ?", JSON.stringify(record), record.status.id);
  }

  /** The newest rollout of the service (running or ended), or null if it never had one. */
  current(): RolloutStatus | null {
    return this.latest()?.status ?? null;
  }

  /** Past and current rollouts, newest first. */
  history(limit: number): RolloutStatus[] {
    return this.sql
      .exec<{ doc: string }>("SELECT doc FROM rollouts ORDER BY seq DESC LIMIT ?", limit)
      .toArray()
      .map((row) => (JSON.parse(row.doc) as RolloutRecord).status);
  }

  /** Starts a rollout of `request.backend`, unless one is running. */
  start(service: string, request: RolloutRequest): Promise<WriteResult<RolloutStatus>> {
    return this.serial(async () => {
      const running = this.latest();
      if (running && !isFinished(running.status.state)) {
        return conflict(running.status, `rollout ${running.status.id} is ${running.status.state}; one rollout per service at a time (abort or promote it first)`);
      }
      const seq = this.sql.exec<{ n: number | null }>("SELECT MAX(seq) AS n FROM rollouts").one().n ?? 0;
      const id = `${service}-${seq + 1}`;
      // Every earlier rollout here has ended, so a hold one of them left behind (a crash between
      // its last two writes) may be replaced.
      const ended = this.sql
        .exec<{ id: string }>("SELECT id FROM rollouts ORDER BY seq DESC LIMIT ?", HISTORY_IDS_PASSED_AS_STALE)
        .toArray()
        .map((r) => r.id);
      const snapshot = await this.attemptTotals(service);
      const begun = await configStoreOf(this.env).beginRollout(
        service,
        { id, backend: request.backend, route: request.route, ...(request.probe ? { probe: request.probe } : {}) },
        ended,
      );
      if (!begun.ok) return plain(begun);
      const steps = stepsOf(request);
      const initial = structuredClone(begun.value.weights);
      const now = Date.now();
      const at = new Date(now).toISOString();
      const record: RolloutRecord = {
        status: {
          id,
          service,
          route: begun.value.route,
          backend: request.backend,
          baseline: Object.entries(initial).filter(([name, weight]) => name !== request.backend && weight > 0).map(([name]) => name),
          strategy: request.strategy,
          state: "progressing",
          weight: steps[0] ?? 0,
          step: 1,
          steps,
          stepSeconds: request.stepSeconds,
          analysis: request.analysis,
          probe: request.probe ?? null,
          webhook: request.webhook ? new URL(request.webhook.url).origin : null,
          initialWeights: initial,
          reason: null,
          current: null,
          createdAt: at,
          updatedAt: at,
          endedAt: null,
          revision: 0,
          events: [],
        },
        stepIndex: 0,
        windowStartedAt: now,
        pausedElapsedMs: null,
        snapshot,
        webhookUrl: request.webhook?.url ?? null,
        synced: false,
      };
      this.sql.exec("INSERT INTO rollouts (seq, id, doc) VALUES (?, ?, ?)", seq + 1, id, JSON.stringify(record));
      this.sql.exec("DELETE FROM rollouts WHERE seq <= ?", seq + 1 - KEPT_ROLLOUTS);
      // The alarm is stored with the record, before anything else is awaited: whatever happens
      // next, the rollout goes on (the alarm writes the split again if this first write is lost).
      await this.ctx.storage.setAlarm(now + tickMs(request.stepSeconds));
      const first = request.strategy === "blue-green"
        ? `checking ${request.backend} on probe traffic before switching (${request.analysis.minRequests} requests needed)`
        : `step 1 of ${steps.length}: ${request.backend} at ${record.status.weight}%`;
      this.event(record, "started", `rollout of ${request.backend} started (${request.strategy}, baseline ${record.status.baseline.join(", ")}); ${first}`);
      await this.applyStep(record);
      this.save(record);
      return { ok: true, value: record.status };
    });
  }

  /** A manual action on the running rollout; `ifRevision` (from If-Match) guards against acting on a stale view. */
  act(action: RolloutAction, ifRevision: number | undefined, note: string | undefined): Promise<WriteResult<RolloutStatus>> {
    return this.serial(async () => {
      const record = this.latest();
      if (!record) return { ok: false, reason: "not-found", detail: "this service has no rollout" } satisfies WriteRefusal;
      const status = record.status;
      if (ifRevision !== undefined && ifRevision !== status.revision) return { ok: false, reason: "stale", current: status.revision } satisfies WriteRefusal;
      if (isFinished(status.state)) return conflict(status, `rollout ${status.id} already ended (${status.state}); start a new one`);
      const now = Date.now();
      const by = note ? ` by operator: ${note}` : " by operator";
      switch (action) {
        case "pause":
          if (status.state === "paused") return conflict(status, `rollout ${status.id} is already paused`);
          record.pausedElapsedMs = Math.max(0, now - record.windowStartedAt);
          status.state = "paused";
          this.event(record, "paused", `paused${by} at ${status.weight}% (step ${status.step} of ${status.steps.length}); the split stays as it is`);
          await this.ctx.storage.deleteAlarm();
          break;
        case "resume":
          if (status.state !== "paused") return conflict(status, `rollout ${status.id} is ${status.state}, not paused`);
          record.windowStartedAt = now - (record.pausedElapsedMs ?? 0);
          record.pausedElapsedMs = null;
          status.state = "progressing";
          this.event(record, "resumed", `resumed${by} at ${status.weight}% (step ${status.step} of ${status.steps.length})`);
          await this.ctx.storage.setAlarm(now);
          break;
        case "abort":
          await this.finish(record, "aborted", `aborted${by}`);
          break;
        case "promote":
          await this.finish(record, "promoted", `promoted${by}`);
          break;
      }
      this.save(record);
      return { ok: true, value: record.status };
    });
  }

  /** One step of the state machine. */
  override async alarm(): Promise<void> {
    await this.serial(async () => {
      const record = this.latest();
      if (!record) return;
      const status = record.status;
      if (isFinished(status.state)) {
        if (!record.synced) await this.applyStep(record);
        if (!record.synced) await this.ctx.storage.setAlarm(Date.now() + RETRY_MS);
        this.save(record, false);
        return;
      }
      if (status.state === "paused") return;
      if (!record.synced) await this.applyStep(record);

      let totals: Record<string, AttemptStats>;
      try {
        totals = await this.attemptTotals(status.service);
      } catch (error) {
        console.warn(JSON.stringify({ event: "rollout-telemetry-unreachable", rollout: status.id, reason: error instanceof Error ? error.message : String(error) }));
        await this.ctx.storage.setAlarm(Date.now() + RETRY_MS);
        return;
      }
      const now = Date.now();
      const candidate = attemptsSince(totals, record.snapshot, [status.backend]);
      const baseline = attemptsSince(totals, record.snapshot, status.baseline);
      const verdict = judgeStep(candidate, baseline, status.analysis);
      status.current = { candidate: verdict.candidate, baseline: verdict.baseline, verdict: verdict.kind, detail: verdict.kind === "pass" ? null : verdict.reason };
      const transition = nextTransition(verdict, {
        elapsedMs: now - record.windowStartedAt,
        stepSeconds: status.stepSeconds,
        trafficTimeoutSeconds: status.analysis.trafficTimeoutSeconds,
        index: record.stepIndex,
        count: status.steps.length,
      });

      let changed = true;
      switch (transition.kind) {
        case "wait": {
          changed = transition.state !== status.state;
          if (transition.state === "waiting-for-traffic" && status.state !== "waiting-for-traffic") {
            this.event(record, "waiting-for-traffic", `step ${status.step} time is up but ${verdict.kind === "insufficient" ? verdict.reason : "traffic is short"}; waiting up to ${status.analysis.trafficTimeoutSeconds} s`, verdict);
          }
          status.state = transition.state;
          await this.ctx.storage.setAlarm(now + Math.max(250, Math.min(tickMs(status.stepSeconds), transition.dueInMs)));
          break;
        }
        case "advance": {
          if (status.state === "waiting-for-traffic") this.event(record, "traffic-arrived", `enough traffic for step ${status.step}`, verdict);
          const passed = status.step;
          record.stepIndex = transition.index;
          status.step = transition.index + 1;
          status.weight = status.steps[transition.index] ?? 100;
          status.state = "progressing";
          record.snapshot = totals;
          record.windowStartedAt = now;
          status.current = null;
          const what = status.strategy === "blue-green" ? `checks passed; all traffic switched to ${status.backend}, ${status.baseline.join(", ")} kept ready to switch back` : `step ${passed} passed; step ${status.step} of ${status.steps.length}: ${status.backend} at ${status.weight}%`;
          this.event(record, "step", what, verdict);
          await this.applyStep(record);
          await this.ctx.storage.setAlarm(now + tickMs(status.stepSeconds));
          break;
        }
        case "promote":
          await this.finish(record, "promoted", `step ${status.step} passed; ${status.backend} promoted to 100%`, verdict);
          break;
        case "rollback":
          await this.finish(record, "rolled-back", transition.reason, verdict);
          break;
      }
      this.save(record, changed);
    });
  }

  /** The service's running attempt totals per backend, as a plain copy. */
  private async attemptTotals(service: string): Promise<Record<string, AttemptStats>> {
    const totals = await telemetryStoreOf(this.env, service).attemptTotals();
    const copy = structuredClone(totals);
    disposeRpcResult(totals);
    return copy;
  }

  /** Ends the rollout: the candidate at 100% (promoted) or back to 0% (rolled back, aborted). */
  private async finish(record: RolloutRecord, state: Extract<RolloutState, "promoted" | "rolled-back" | "aborted">, reason: string, verdict?: Verdict): Promise<void> {
    const status = record.status;
    status.state = state;
    status.weight = state === "promoted" ? 100 : 0;
    status.reason = state === "promoted" ? null : reason;
    status.endedAt = new Date().toISOString();
    const where = state === "promoted" ? `${status.backend} at 100%, ${status.baseline.join(", ")} at 0%` : `${status.backend} back at 0%`;
    this.event(record, state, `${state}: ${reason} (${where})`, verdict);
    await this.applyStep(record);
    if (!record.synced) await this.ctx.storage.setAlarm(Date.now() + RETRY_MS);
    else await this.ctx.storage.deleteAlarm();
  }

  /** Writes the split this record wants (and releases the hold once it has ended). */
  private async applyStep(record: RolloutRecord): Promise<void> {
    const status = record.status;
    const weights: Weights = stepWeights(status.initialWeights, status.backend, status.weight);
    const finished = isFinished(status.state);
    const label = finished ? `rollout ${status.id} ${status.state}` : `rollout ${status.id} step ${status.step}/${status.steps.length}`;
    try {
      const written = await configStoreOf(this.env).setRolloutSplit(status.service, status.id, weights, label, finished);
      record.synced = written.ok;
      if (!written.ok) console.error(JSON.stringify({ event: "rollout-split-refused", rollout: status.id, reason: written.reason, ...("detail" in written ? { detail: written.detail } : {}) }));
      disposeRpcResult(written);
    } catch (error) {
      record.synced = false;
      console.warn(JSON.stringify({ event: "rollout-split-unsent", rollout: status.id, reason: error instanceof Error ? error.message : String(error) }));
    }
  }

  /** Adds an event to the timeline, the logs (beside the access lines) and the webhook. */
  private event(record: RolloutRecord, type: RolloutEvent["type"], message: string, verdict?: Verdict): void {
    const status = record.status;
    const event: RolloutEvent = {
      at: new Date().toISOString(),
      type,
      message,
      weight: status.weight,
      step: status.step,
      ...(verdict ? { candidate: verdict.candidate, baseline: verdict.baseline } : {}),
    };
    status.events.push(event);
    if (status.events.length > MAX_EVENTS) status.events.splice(0, status.events.length - MAX_EVENTS);
    const { type: kind, ...details } = event;
    console.log(JSON.stringify({ type: "weft.rollout", service: status.service, rollout: status.id, backend: status.backend, state: status.state, event: kind, ...details }));
    if (record.webhookUrl) this.ctx.waitUntil(this.notify(record.webhookUrl, status, event));
  }

  /** POSTs one event to the webhook, signed by the mesh (verify it against the JWKS). Never throws. */
  private async notify(url: string, status: RolloutStatus, event: RolloutEvent): Promise<void> {
    const body = new TextEncoder().encode(
      JSON.stringify({ service: status.service, rollout: status.id, backend: status.backend, state: status.state, weight: status.weight, reason: status.reason, event, text: `[weft] ${status.service}: ${event.message}` }),
    );
    const target = new URL(url);
    const host = target.host;
    // Checked again at send time: a rollout stored before the rule existed must not reach inside.
    const allowed = checkWebhookUrl(url, this.env.WEFT_ENV === "development");
    if (!allowed.ok) {
      console.warn(JSON.stringify({ event: "rollout-webhook-refused", rollout: status.id, host, reason: allowed.reason }));
      return;
    }
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        const signed = await signingKeysOf(this.env, status.service).sign(status.service, {
          sub: `weft-rollouts/${status.service}`,
          aud: target.origin,
          htm: "POST",
          htu: `${target.origin}${target.pathname}`,
          body_sha256: await bodySha256(body.slice().buffer),
        });
        const response = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${signed.token}` },
          body,
          redirect: "manual",
          signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
        });
        await response.body?.cancel();
        if (response.ok) return;
        console.warn(JSON.stringify({ event: "rollout-webhook-refused", rollout: status.id, host, status: response.status, attempt }));
      } catch (error) {
        // The URL itself is often a secret (chat webhooks): only its host is logged.
        console.warn(JSON.stringify({ event: "rollout-webhook-failed", rollout: status.id, host, attempt, reason: error instanceof Error ? error.name : "error" }));
      }
    }
  }
}

function conflict(status: RolloutStatus, detail: string): WriteRefusal {
  return { ok: false, reason: "conflict", rollout: status.id, detail };
}

/** A plain copy of an RPC result that is a refusal. */
function plain(result: WriteRefusal): WriteRefusal {
  const copy = structuredClone(result);
  disposeRpcResult(result);
  return copy;
}
