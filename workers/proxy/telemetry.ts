/**
 * The telemetry step: every proxied request becomes a metric sample, an access log line, a tap event
 * (when someone watches or it failed) and, when sampled, a span. Requests only push a small record;
 * everything else (aggregation, log lines, spans) happens in a batch about once a second, in
 * `waitUntil` after responses have gone out, so telemetry stays off the response path. Batches go to
 * the service's telemetry shard over the CONTROL_PLANE binding, spans to the OTLP collector if one is
 * configured, data points to Analytics Engine if it is bound.
 */
import {
  addBuckets,
  bucketOf,
  BUCKETS,
  isFailure,
  noAttempts,
  type AttemptStats,
  type SeriesStats,
  type TapEvent,
  type TelemetryBatch,
} from "../../shared/metrics.ts";
import { accessHeaders, redactPath } from "../../shared/redact.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { formatTraceparent, parseTraceparent, randomHex, validTracestate } from "../../shared/trace-context.ts";
import { pathAndQuery, sleep, withTimeout } from "./bounded.ts";
import { otlpSpans, type FinishedSpan, type OtlpExporter } from "./otlp.ts";

/** A batch is sent this long after its first request. */
const FLUSH_MS = 1_000;
/** Pending records are absorbed in chunks of about this many. */
const ABSORB_AT = 128;
const MAX_EVENTS_PER_BATCH = 1_000;
const MAX_SPANS_PER_BATCH = 2_048;
/** Tap events per batch while someone is tapping (like `linkerd viz tap --max-rps`). */
const TAP_EVENTS_PER_BATCH = 100;
/** Events per batch kept even when nobody taps, so a new tap starts with recent requests. */
const RECENT_EVENTS_PER_BATCH = 5;
const SHARD_TIMEOUT_MS = 5_000;

/** This request's hop of its trace: accepted from the caller or started here. */
export interface Hop {
  startedAt: number;
  traceId: string;
  /** This hop's span. */
  spanId: string;
  /** The caller's span, if the trace came from outside this hop. */
  parentId: string | undefined;
  sampled: boolean;
  /** What the backend receives: same trace, this hop's span as parent. */
  traceparent: string;
  tracestate: string | undefined;
}

/** Reads or starts the trace; `sampleRate` decides for traces that start here (parent-based otherwise). */
export function beginHop(request: Request, sampleRate: number, now: number): Hop {
  const incoming = parseTraceparent(request.headers.get("traceparent"));
  const ids = randomHex(incoming ? 8 : 24);
  const traceId = incoming ? incoming.traceId : ids.slice(16);
  const spanId = ids.slice(0, 16);
  const sampled = incoming ? incoming.sampled : Math.random() < sampleRate;
  return {
    startedAt: now,
    traceId,
    spanId,
    parentId: incoming?.parentId,
    sampled,
    traceparent: formatTraceparent(traceId, spanId, sampled),
    tracestate: incoming ? validTracestate(request.headers.get("tracestate")) : undefined,
  };
}

/** What the chain learned about a request on its way: filled in as steps run. */
export interface Trail {
  route: string | undefined;
  backend: string | undefined;
  attempts: number;
  /** The resilience step counted each attempt itself (see {@link countAttempt}). */
  counted: boolean;
}

interface Finished {
  hop: Hop;
  endedAt: number;
  request: Request;
  caller: string;
  route: string;
  backend: string;
  status: number;
  attempts: number;
  counted: boolean;
}

/** How a proxy deployment reports (its wrangler vars). */
export interface TelemetrySettings {
  accessLog: "all" | "errors" | "off";
  sampleRate: number;
  otlp: OtlpExporter | undefined;
  analytics: AnalyticsEngineDataset | undefined;
}

/** Reads the settings from the proxy's vars; unknown values fall back to the defaults. */
export function telemetrySettings(env: ProxyEnv): TelemetrySettings {
  const accessLog = env.WEFT_ACCESS_LOG === "errors" || env.WEFT_ACCESS_LOG === "off" ? env.WEFT_ACCESS_LOG : "all";
  const rate = Number(env.WEFT_TRACE_SAMPLE_RATE);
  const endpoint = env.WEFT_OTLP_ENDPOINT;
  // Optional secret (`wrangler secret put WEFT_OTLP_HEADERS`), e.g. "authorization=Bearer abc".
  const headers: unknown = Reflect.get(env, "WEFT_OTLP_HEADERS");
  const analytics: unknown = Reflect.get(env, "WEFT_ANALYTICS");
  return {
    accessLog,
    sampleRate: Number.isFinite(rate) && rate >= 0 && rate <= 1 ? rate : 0.01,
    otlp: endpoint ? { endpoint, headers: parseHeaderList(typeof headers === "string" ? headers : "") } : undefined,
    analytics: isDataset(analytics) ? analytics : undefined,
  };
}

function isDataset(value: unknown): value is AnalyticsEngineDataset {
  return typeof value === "object" && value !== null && typeof Reflect.get(value, "writeDataPoint") === "function";
}

function parseHeaderList(raw: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of raw.split(",")) {
    const eq = pair.indexOf("=");
    if (eq > 0) headers[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return headers;
}

/** Ejections by service since the last batch (outlier detection reports them here). */
const ejections = new Map<string, number>();

/** Counts an ejection of one of `service`'s backends for the next batch. */
export function countEjection(service: string): void {
  ejections.set(service, (ejections.get(service) ?? 0) + 1);
}

/** Attempts by service and backend since the last batch. */
const attemptCounts = new Map<string, Map<string, AttemptStats>>();

/**
 * Counts one attempt on one backend: every try, before retries or failover decide what the caller
 * sees. Rollouts judge a candidate on these, so resilience cannot hide a bad release.
 */
export function countAttempt(service: string, backend: string, failed: boolean, ms: number): void {
  let byBackend = attemptCounts.get(service);
  if (!byBackend) attemptCounts.set(service, (byBackend = new Map<string, AttemptStats>()));
  let stats = byBackend.get(backend);
  if (!stats) byBackend.set(backend, (stats = noAttempts()));
  stats.count++;
  if (failed) stats.failures++;
  const bucket = bucketOf(ms);
  stats.buckets[bucket] = (stats.buckets[bucket] ?? 0) + 1;
}

function takeAttempts(service: string): Array<AttemptStats & { backend: string }> {
  const byBackend = attemptCounts.get(service);
  if (!byBackend || byBackend.size === 0) return [];
  attemptCounts.delete(service);
  return [...byBackend].map(([backend, stats]) => ({ backend, ...stats }));
}

function restoreAttempts(service: string, unsent: ReadonlyArray<AttemptStats & { backend: string }>): void {
  let byBackend = attemptCounts.get(service);
  if (!byBackend) attemptCounts.set(service, (byBackend = new Map<string, AttemptStats>()));
  for (const { backend, ...old } of unsent) {
    const current = byBackend.get(backend);
    if (!current) byBackend.set(backend, old);
    else {
      current.count += old.count;
      current.failures += old.failures;
      addBuckets(current.buckets, old.buckets);
    }
  }
}

/** One service's telemetry in this isolate. */
export class ServiceTelemetry {
  /** Finished requests not yet absorbed: the only per-request work is one push here. */
  private records: Finished[] = [];
  /** Absorbed since the last batch was sent. */
  private series = new Map<string, SeriesStats>();
  private events: TapEvent[] = [];
  private tapped = 0;
  private spans: FinishedSpan[] = [];
  private batchAt = 0;
  private scheduled = false;
  private absorbing = false;
  /** The shard said someone is tapping this service: send more events. */
  private tapping = false;

  constructor(
    private readonly service: string,
    private readonly controlPlane: ControlPlaneApi,
    readonly settings: TelemetrySettings,
  ) {}

  /** Records a finished request: one push; a batch is scheduled by its first request. */
  finish(hop: Hop, request: Request, caller: string, trail: Trail, status: number, waitUntil: (p: Promise<unknown>) => void): void {
    this.records.push({ hop, endedAt: Date.now(), request, caller, route: trail.route ?? "", backend: trail.backend ?? "", status, attempts: trail.attempts, counted: trail.counted });
    if (!this.scheduled) {
      this.scheduled = true;
      waitUntil(sleep(FLUSH_MS).then(() => this.flush()));
    } else if (this.records.length >= ABSORB_AT && !this.absorbing) {
      // Busy isolate: absorb in small chunks after the responses went out, not in one long pause.
      this.absorbing = true;
      waitUntil(sleep(0).then(() => this.absorb()));
    }
  }

  /** Sends what was absorbed since the last batch. Never throws. */
  async flush(): Promise<void> {
    this.absorb();
    this.scheduled = false;
    const attempts = takeAttempts(this.service);
    if (this.series.size === 0 && attempts.length === 0) return;
    const ejected = ejections.get(this.service) ?? 0;
    ejections.delete(this.service);
    const at = this.series.size > 0 ? this.batchAt : Date.now();
    const batch: TelemetryBatch = { service: this.service, batchId: crypto.randomUUID(), at, series: [...this.series.values()], ejections: ejected, events: this.events, attempts };
    const spans = this.spans;
    this.series = new Map();
    this.events = [];
    this.tapped = 0;
    this.spans = [];
    const sends: Array<Promise<void>> = [this.sendBatch(batch)];
    if (this.settings.otlp && spans.length > 0) sends.push(otlpSpans(this.settings.otlp, this.service, spans));
    if (this.settings.analytics) writeAnalytics(this.settings.analytics, this.service, batch.series);
    await Promise.all(sends);
  }

  /** Turns pending records into series, log lines, tap events and spans. */
  private absorb(): void {
    const records = this.records;
    this.records = [];
    this.absorbing = false;
    if (records.length === 0) return;
    if (this.series.size === 0) this.batchAt = records[0]?.endedAt ?? Date.now();
    const logs = this.settings.accessLog;
    for (const r of records) {
      const ms = r.endedAt - r.hop.startedAt;
      const id = seriesId(r.route, r.backend, r.caller, r.status);
      let s = this.series.get(id);
      if (!s) {
        s = { route: r.route, backend: r.backend, caller: r.caller, code: r.status, count: 0, attempts: 0, sumMs: 0, buckets: new Array<number>(BUCKETS).fill(0) };
        this.series.set(id, s);
      }
      s.count++;
      s.attempts += r.attempts;
      s.sumMs += ms;
      const bucket = bucketOf(ms);
      s.buckets[bucket] = (s.buckets[bucket] ?? 0) + 1;
      // A request the resilience step did not see was exactly one attempt on its backend.
      if (!r.counted && r.backend !== "") countAttempt(this.service, r.backend, isFailure(r.status), ms);
      const notable = r.hop.sampled || isFailure(r.status) || (r.backend === "" && r.status >= 400);
      if (notable || this.tapped < (this.tapping ? TAP_EVENTS_PER_BATCH : RECENT_EVENTS_PER_BATCH)) {
        if (!notable) this.tapped++;
        if (this.events.length < MAX_EVENTS_PER_BATCH) this.events.push(this.eventOf(r, ms));
      }
      if (logs === "all" || (logs === "errors" && isFailure(r.status))) this.writeLog(r, ms);
      if (r.hop.sampled && this.settings.otlp && this.spans.length < MAX_SPANS_PER_BATCH) this.spans.push(spanOf(r));
    }
  }

  private eventOf(r: Finished, durationMs: number): TapEvent {
    return {
      at: new Date(r.endedAt).toISOString(),
      service: this.service,
      method: r.request.method,
      path: redactPath(pathAndQuery(r.request.url)),
      route: r.route || null,
      backend: r.backend || null,
      caller: r.caller,
      status: r.status,
      durationMs,
      traceId: r.hop.traceId,
      spanId: r.hop.spanId,
      sampled: r.hop.sampled,
      attempts: r.attempts,
    };
  }

  /** One JSON line per request (Workers Logs indexes JSON lines): the tap event plus a few headers. */
  private writeLog(r: Finished, durationMs: number): void {
    console.log(
      JSON.stringify({ type: "weft.access", ...this.eventOf(r, durationMs), retries: Math.max(0, r.attempts - 1), headers: accessHeaders(r.request.headers) }),
    );
  }

  private async sendBatch(batch: TelemetryBatch): Promise<void> {
    try {
      const reply = await withTimeout(this.controlPlane.recordTelemetry(batch), SHARD_TIMEOUT_MS, "telemetry shard");
      this.tapping = reply.tapping;
    } catch (error) {
      // Counts survive a control-plane outage: they go again with the next batch (events do not).
      restoreAttempts(this.service, batch.attempts);
      for (const old of batch.series) {
        const id = seriesId(old.route, old.backend, old.caller, old.code);
        const current = this.series.get(id);
        if (!current) this.series.set(id, old);
        else {
          current.count += old.count;
          current.attempts += old.attempts;
          current.sumMs += old.sumMs;
          addBuckets(current.buckets, old.buckets);
        }
      }
      if (this.series.size > 0 && this.batchAt === 0) this.batchAt = batch.at;
      console.warn(JSON.stringify({ event: "telemetry-unsent", service: this.service, series: batch.series.length, reason: error instanceof Error ? error.message : String(error) }));
    }
  }
}

function seriesId(route: string, backend: string, caller: string, code: number): string {
  return `${route}\u0000${backend}\u0000${caller}\u0000${code}`;
}

function spanOf(r: Finished): FinishedSpan {
  return {
    traceId: r.hop.traceId,
    spanId: r.hop.spanId,
    parentId: r.hop.parentId,
    name: `${r.request.method} ${r.route || "(no route)"}`,
    startMs: r.hop.startedAt,
    endMs: r.endedAt,
    status: r.status,
    attributes: {
      "http.request.method": r.request.method,
      "url.path": redactPath(pathAndQuery(r.request.url)),
      "http.route": r.route,
      "http.response.status_code": r.status,
      "weft.caller": r.caller,
      "weft.backend": r.backend,
      "weft.attempts": r.attempts,
    },
  };
}

/** One Analytics Engine data point per series and batch: blobs are the labels, doubles the counts. */
function writeAnalytics(dataset: AnalyticsEngineDataset, service: string, series: ReadonlyArray<SeriesStats>): void {
  for (const s of series) {
    dataset.writeDataPoint({ indexes: [service], blobs: [service, s.route, s.backend, s.caller, String(s.code)], doubles: [s.count, s.attempts, s.sumMs, ...s.buckets] });
  }
}
