/**
 * The telemetry step: every proxied request becomes a metric sample, an access log line, a tap event
 * (when someone watches or it failed) and, when sampled, a span. A request is counted into its
 * metric series at once (a few additions, nothing kept); only requests that become a log line, tap
 * event or span keep a record, turned into those later. Batches go out every 1-10 s (as the service's
 * telemetry shard paces this isolate, so the shard's load does not grow with the isolate count), in
 * `waitUntil` after responses have gone out, so telemetry stays off the response path. Batches go to
 * the service's telemetry shard over the CONTROL_PLANE binding, spans to the OTLP collector if one is
 * configured, data points to Analytics Engine if it is bound.
 */
import {
  bucketOf,
  BUCKETS,
  isFailure,
  noAttempts,
  seriesOutcome,
  type AttemptStats,
  type SeriesStats,
  type TapEvent,
  type TelemetryBatch,
} from "../../shared/metrics.ts";
import { accessHeaders, redactPath } from "../../shared/redact.ts";
import { disposeRpcResult, type ControlPlaneApi } from "../../shared/slice.ts";
import { formatTraceparent, parseTraceparent, randomHex } from "../../shared/trace-context.ts";
import { pathAndQuery, sleep, withTimeout } from "./bounded.ts";
import { otlpSpans, type FinishedSpan, type OtlpExporter } from "./otlp.ts";

/** A batch is sent this long after its first request, until the telemetry shard paces this isolate otherwise. */
const FLUSH_MS = 1_000;
/** The pace a shard may set is believed within these bounds (waitUntil keeps an isolate ~30 s after its last response). */
const MIN_PACE_MS = 250;
const MAX_PACE_MS = 20_000;

/**
 * How long to gather before the next batch, from the shard's reply (pure): the shard paces its
 * writers so its load does not grow with the isolate count (durable-objects/pacing.ts); a reply
 * from an older shard, or an implausible pace, means the default second.
 */
export function nextFlushDelay(flushAfterMs: number | undefined): number {
  if (flushAfterMs === undefined || !Number.isFinite(flushAfterMs)) return FLUSH_MS;
  return Math.min(MAX_PACE_MS, Math.max(MIN_PACE_MS, Math.round(flushAfterMs)));
}
/** Kept records are absorbed in chunks of about this many. */
const ABSORB_AT = 128;
const MAX_EVENTS_PER_BATCH = 1_000;
const MAX_SPANS_PER_BATCH = 2_048;
/** Tap events per batch while someone is tapping (like `linkerd viz tap --max-rps`). */
const TAP_EVENTS_PER_BATCH = 100;
/** Events per batch kept even when nobody taps, so a new tap starts with recent requests. */
const RECENT_EVENTS_PER_BATCH = 5;
const SHARD_TIMEOUT_MS = 5_000;

/**
 * What telemetry reads of a request: a `Request` has this shape; an RPC call gives the same three
 * facts without building one (workers/proxy/rpc.ts).
 */
export interface RequestLine {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
}

/**
 * This request's hop of its trace. A request is traced when a mesh caller sent a trace context, or
 * when this edge samples it; otherwise it carries no trace and costs nothing here.
 */
export interface Hop {
  startedAt: number;
  /** The trace, if the request is traced. */
  traceId: string | undefined;
  /** This hop's span, when it records one (sampled requests). */
  spanId: string | undefined;
  /** The caller's span, if the trace came from a mesh caller. */
  parentId: string | undefined;
  sampled: boolean;
  /** The `traceparent` the backend must receive instead of the request's own; undefined: leave the request's headers as they are. */
  traceparent: string | undefined;
  /** The request carries trace headers the backend must not receive (an untrusted caller's). */
  dropTrace: boolean;
  /** The internet client's own trace id, kept only on this hop's span (for correlation with browser traces). */
  clientTraceId: string | undefined;
}

/**
 * Reads or starts the trace. A mesh caller's trace context is continued (its sampled flag decides);
 * an unsampled one passes through untouched, so the request is not copied for it. The internet may
 * neither force sampling nor choose trace ids (either would let anyone flood the trace store or
 * splice requests into other traces), so its trace headers are dropped and the edge decides with
 * `sampleRate`, as Envoy sanitises tracing headers of external requests.
 */
export function beginHop(request: { readonly headers: Headers }, trusted: boolean, sampleRate: number, now: number): Hop {
  const header = request.headers.get("traceparent");
  const incoming = trusted ? parseTraceparent(header) : undefined;
  if (incoming) {
    if (!incoming.sampled) return { startedAt: now, traceId: incoming.traceId, spanId: undefined, parentId: incoming.parentId, sampled: false, traceparent: undefined, dropTrace: false, clientTraceId: undefined };
    const spanId = randomHex(8);
    return { startedAt: now, traceId: incoming.traceId, spanId, parentId: incoming.parentId, sampled: true, traceparent: formatTraceparent(incoming.traceId, spanId, true), dropTrace: false, clientTraceId: undefined };
  }
  // A tracestate without a traceparent is ignored by every tracer (W3C Trace Context §3.3.1), so only a traceparent makes the headers worth dropping.
  const dropTrace = header !== null;
  if (Math.random() >= sampleRate) return { startedAt: now, traceId: undefined, spanId: undefined, parentId: undefined, sampled: false, traceparent: undefined, dropTrace, clientTraceId: undefined };
  const ids = randomHex(24);
  const traceId = ids.slice(16);
  const spanId = ids.slice(0, 16);
  const clientTraceId = dropTrace ? parseTraceparent(header)?.traceId : undefined;
  return { startedAt: now, traceId, spanId, parentId: undefined, sampled: true, traceparent: formatTraceparent(traceId, spanId, true), dropTrace, clientTraceId };
}

/** What the chain learned about a request on its way: filled in as steps run. */
export interface Trail {
  route: string | undefined;
  backend: string | undefined;
  attempts: number;
  /** The config version the request was served with (access lines say it, so a change can be followed). */
  configVersion: number | undefined;
  /** The series code when it is not the HTTP status: an RPC call's outcome (`rpcSeriesCode`, shared/metrics.ts). */
  seriesCode?: number;
}

interface Finished {
  hop: Hop;
  endedAt: number;
  request: RequestLine;
  caller: string;
  route: string;
  backend: string;
  status: number;
  /** The series code: `status` for HTTP, the RPC outcome's code for RPC calls. */
  code: number;
  attempts: number;
  configVersion: number | undefined;
  /** Becomes a tap event (if the batch has room). */
  event: boolean;
  /** Becomes an access log line. */
  log: boolean;
}

/**
 * Which requests get an access log line: `all`, `errors` (failed, retried, rate-limited, refused or
 * slow ones: the deployed default, as Istio's and Linkerd's full access logs are opt-in), a share of
 * all requests (`sample:0.01`, for traffic studies; notable requests are always logged), or `off`.
 */
export type AccessLogMode = { kind: "all" } | { kind: "errors" } | { kind: "off" } | { kind: "sample"; rate: number };

/** How a proxy deployment reports (its wrangler vars). */
export interface TelemetrySettings {
  accessLog: AccessLogMode;
  /** Requests slower than this are logged in `errors` mode. */
  slowMs: number;
  sampleRate: number;
  otlp: OtlpExporter | undefined;
  analytics: AnalyticsEngineDataset | undefined;
}

/** Parses `WEFT_ACCESS_LOG`; anything it does not know means the deployed default, `errors`. */
export function accessLogMode(raw: string | undefined): AccessLogMode {
  if (raw === "all" || raw === "off") return { kind: raw };
  const sample = /^sample:(0(\.\d+)?|1(\.0+)?)$/.exec(raw ?? "");
  if (sample) return { kind: "sample", rate: Number(sample[1]) };
  return { kind: "errors" };
}

/** Reads the settings from the proxy's vars; unknown values fall back to the defaults. */
export function telemetrySettings(env: ProxyEnv): TelemetrySettings {
  const rate = Number(env.WEFT_TRACE_SAMPLE_RATE);
  const slow = Number(Reflect.get(env, "WEFT_SLOW_MS"));
  const endpoint = env.WEFT_OTLP_ENDPOINT;
  // Optional secret (`wrangler secret put WEFT_OTLP_HEADERS`), e.g. "authorization=Bearer abc".
  const headers: unknown = Reflect.get(env, "WEFT_OTLP_HEADERS");
  const analytics: unknown = Reflect.get(env, "WEFT_ANALYTICS");
  return {
    accessLog: accessLogMode(env.WEFT_ACCESS_LOG),
    slowMs: Number.isFinite(slow) && slow > 0 ? slow : DEFAULT_SLOW_MS,
    sampleRate: Number.isFinite(rate) && rate >= 0 && rate <= 1 ? rate : 0.01,
    otlp: endpoint ? { endpoint, headers: parseHeaderList(typeof headers === "string" ? headers : "") } : undefined,
    analytics: isDataset(analytics) ? analytics : undefined,
  };
}

/** A request slower than this is worth a log line even in `errors` mode. */
const DEFAULT_SLOW_MS = 1_000;

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

/** Batches that could not be delivered and are sent again, as they were (same id), with the next flush. */
const MAX_UNSENT_BATCHES = 30;

/** One service's telemetry in this isolate. */
export class ServiceTelemetry {
  /**
   * Requests that become a log line, tap event or span, not yet absorbed. The others are only
   * counted at once: keeping every request (and its Request) until the batch made the garbage
   * collector copy them in every scavenge they survived.
   */
  private records: Finished[] = [];
  /** Absorbed since the last batch was sent. */
  private series = new Map<string, SeriesStats>();
  private events: TapEvent[] = [];
  private tapped = 0;
  private spans: FinishedSpan[] = [];
  /** Attempts per backend since the last batch: every try, before retries or failover decide what the caller sees. */
  private attempts = new Map<string, AttemptStats>();
  /** Ejections per backend since the last batch. */
  private ejections = new Map<string, number>();
  private unsent: TelemetryBatch[] = [];
  private batchAt = 0;
  private scheduled = false;
  private absorbing = false;
  /** The shard said someone is tapping this service: send more events. */
  private tapping = false;
  /** How long a batch gathers, as the shard last said. */
  private flushAfterMs = FLUSH_MS;
  /** This isolate's id in its batches: the shard counts its writers by it to pace them. */
  private readonly writer = crypto.randomUUID();

  constructor(
    private readonly service: string,
    private readonly controlPlane: ControlPlaneApi,
    readonly settings: TelemetrySettings,
  ) {}

  /** Finished requests kept until the next absorb (those that become a tap event, log line or span). */
  get keptRecords(): number {
    return this.records.length;
  }

  /** How long a batch gathers before it is sent, as the telemetry shard last paced this isolate (ms). */
  get nextFlushMs(): number {
    return this.flushAfterMs;
  }

  /**
   * Counts one attempt on one backend. Rollouts judge a candidate on these, so resilience cannot
   * hide a bad release.
   */
  countAttempt(backend: string, failed: boolean, ms: number): void {
    let stats = this.attempts.get(backend);
    if (!stats) this.attempts.set(backend, (stats = noAttempts()));
    stats.count++;
    if (failed) stats.failures++;
    const bucket = bucketOf(ms);
    stats.buckets[bucket] = (stats.buckets[bucket] ?? 0) + 1;
  }

  /** Counts an ejection of `backend` by outlier detection. */
  countEjection(backend: string): void {
    this.ejections.set(backend, (this.ejections.get(backend) ?? 0) + 1);
  }

  /**
   * Records a finished request: counted into its series now; kept for later only if it becomes a
   * log line, tap event or span. A batch is scheduled by its first request.
   */
  finish(hop: Hop, request: RequestLine, caller: string, trail: Trail, status: number, waitUntil: (p: Promise<unknown>) => void): void {
    const endedAt = Date.now();
    const ms = endedAt - hop.startedAt;
    const route = trail.route ?? "";
    const backend = trail.backend ?? "";
    const code = trail.seriesCode ?? status;
    if (this.series.size === 0) this.batchAt = endedAt;
    this.count(route, backend, caller, code, trail.attempts, ms);
    const notable = this.notable(status, backend, trail.attempts, ms);
    // Tap events: every notable or sampled request, and a few others per batch (more while someone taps).
    const shown = notable || hop.sampled;
    const event = shown || this.tapped < (this.tapping ? TAP_EVENTS_PER_BATCH : RECENT_EVENTS_PER_BATCH);
    if (event && !shown) this.tapped++;
    const log = this.logs(notable);
    if (event || log || (hop.sampled && this.settings.otlp)) {
      this.records.push({ hop, endedAt, request, caller, route, backend, status, code, attempts: trail.attempts, configVersion: trail.configVersion, event, log });
    }
    if (!this.scheduled) {
      this.scheduled = true;
      waitUntil(sleep(this.flushAfterMs).then(() => this.flush()));
    } else if (this.records.length >= ABSORB_AT && !this.absorbing) {
      // Busy isolate: absorb in small chunks after the responses went out, not in one long pause.
      this.absorbing = true;
      waitUntil(sleep(0).then(() => this.absorb()));
    }
  }

  /** Sends what was absorbed since the last batch, and any batch an earlier flush could not deliver. Never throws. */
  async flush(): Promise<void> {
    this.absorb();
    this.scheduled = false;
    const retry = this.unsent;
    this.unsent = [];
    const batch = this.takeBatch();
    const spans = this.spans;
    this.spans = [];
    const sends: Array<Promise<void>> = [...retry, ...(batch ? [batch] : [])].map((b) => this.sendBatch(b));
    if (this.settings.otlp && spans.length > 0) sends.push(otlpSpans(this.settings.otlp, this.service, spans));
    if (this.settings.analytics && batch) writeAnalytics(this.settings.analytics, this.service, batch.series);
    await Promise.all(sends);
  }

  /** What was absorbed since the last batch, as one batch with a fresh id (undefined when there is nothing). */
  private takeBatch(): TelemetryBatch | undefined {
    if (this.series.size === 0 && this.attempts.size === 0 && this.ejections.size === 0) return undefined;
    const at = this.series.size > 0 ? this.batchAt : Date.now();
    const ejected = [...this.ejections].map(([backend, count]) => ({ backend, count }));
    const batch: TelemetryBatch = {
      // The shard applies a batch id once: a batch re-sent after a timeout whose first send did land is not counted twice.
      batchId: crypto.randomUUID(),
      service: this.service,
      at,
      series: [...this.series.values()],
      ejections: ejected.reduce((sum, e) => sum + e.count, 0),
      ejectedBackends: ejected,
      events: this.events,
      attempts: [...this.attempts].map(([backend, stats]) => ({ backend, ...stats })),
      writer: this.writer,
    };
    this.series = new Map();
    this.attempts = new Map();
    this.ejections = new Map();
    this.events = [];
    this.tapped = 0;
    return batch;
  }

  /** Is this request worth a log line in `errors` mode: failed, refused by the proxy, rate-limited, retried or slow? */
  private notable(status: number, backend: string, attempts: number, ms: number): boolean {
    return isFailure(status) || status === 429 || (backend === "" && status >= 400) || attempts > 1 || ms >= this.settings.slowMs;
  }

  /** Counts one request into its metric series. */
  private count(route: string, backend: string, caller: string, code: number, attempts: number, ms: number): void {
    const id = seriesId(route, backend, caller, code);
    let s = this.series.get(id);
    if (!s) {
      s = { route, backend, caller, code, count: 0, attempts: 0, sumMs: 0, buckets: new Array<number>(BUCKETS).fill(0) };
      this.series.set(id, s);
    }
    s.count++;
    s.attempts += attempts;
    s.sumMs += ms;
    const bucket = bucketOf(ms);
    s.buckets[bucket] = (s.buckets[bucket] ?? 0) + 1;
  }

  private logs(notable: boolean): boolean {
    const mode = this.settings.accessLog;
    if (mode.kind === "sample") return notable || Math.random() < mode.rate;
    return mode.kind === "all" || (mode.kind === "errors" && notable);
  }

  /** Turns kept records into tap events, log lines and spans. */
  private absorb(): void {
    const records = this.records;
    this.records = [];
    this.absorbing = false;
    for (const r of records) {
      const ms = r.endedAt - r.hop.startedAt;
      if (r.event && this.events.length < MAX_EVENTS_PER_BATCH) this.events.push(this.eventOf(r, ms));
      if (r.log) this.writeLog(r, ms);
      const span = r.hop.sampled && this.settings.otlp && this.spans.length < MAX_SPANS_PER_BATCH ? spanOf(r) : undefined;
      if (span) this.spans.push(span);
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
      traceId: r.hop.traceId ?? null,
      spanId: r.hop.spanId ?? null,
      sampled: r.hop.sampled,
      attempts: r.attempts,
    };
  }

  /** One JSON line per request (Workers Logs indexes JSON lines): the tap event plus a few headers. */
  private writeLog(r: Finished, durationMs: number): void {
    console.log(
      JSON.stringify({
        type: "weft.access",
        ...this.eventOf(r, durationMs),
        retries: Math.max(0, r.attempts - 1),
        configVersion: r.configVersion ?? null,
        headers: accessHeaders(r.request.headers),
      }),
    );
  }

  private async sendBatch(batch: TelemetryBatch): Promise<void> {
    try {
      const reply = await withTimeout(this.controlPlane.recordTelemetry(batch), SHARD_TIMEOUT_MS, "telemetry shard");
      this.tapping = reply.tapping;
      this.flushAfterMs = nextFlushDelay(reply.flushAfterMs);
      // An RPC result holds the call's resources until disposed; the garbage collector may never get to it.
      disposeRpcResult(reply);
    } catch (error) {
      // Counts survive a control-plane outage: the batch goes again, unchanged, with the next flush (bounded).
      this.unsent.push(batch);
      if (this.unsent.length > MAX_UNSENT_BATCHES) this.unsent.shift();
      console.warn(JSON.stringify({ event: "telemetry-unsent", service: this.service, series: batch.series.length, reason: error instanceof Error ? error.message : String(error) }));
    }
  }
}

function seriesId(route: string, backend: string, caller: string, code: number): string {
  return `${route}\u0000${backend}\u0000${caller}\u0000${code}`;
}

function spanOf(r: Finished): FinishedSpan | undefined {
  const { traceId, spanId } = r.hop;
  if (traceId === undefined || spanId === undefined) return undefined;
  const rpc = r.code === r.status ? undefined : seriesOutcome(r.code);
  if (rpc?.kind === "rpc") {
    // An RPC call (workers/proxy/rpc.ts): OpenTelemetry's RPC conventions, the method as the name.
    return {
      traceId,
      spanId,
      parentId: r.hop.parentId,
      name: `RPC ${r.route || "(no route)"}`,
      startMs: r.hop.startedAt,
      endMs: r.endedAt,
      status: r.status,
      attributes: {
        "rpc.system": "cloudflare_workers_rpc",
        "rpc.method": r.route,
        "weft.rpc.outcome": rpc.outcome,
        ...(rpc.outcome === "error" ? { "error.type": rpc.error } : {}),
        "weft.rpc.status": r.status,
        "weft.caller": r.caller,
        "weft.backend": r.backend,
        "weft.attempts": r.attempts,
      },
    };
  }
  return {
    traceId,
    spanId,
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
      ...(r.hop.clientTraceId ? { "weft.client_trace_id": r.hop.clientTraceId } : {}),
    },
  };
}

/** One Analytics Engine data point per series and batch: blobs are the labels (an RPC call's outcome and error name last), doubles the counts. */
function writeAnalytics(dataset: AnalyticsEngineDataset, service: string, series: ReadonlyArray<SeriesStats>): void {
  for (const s of series) {
    const o = seriesOutcome(s.code);
    const rpc = o.kind === "rpc" ? [o.outcome, o.outcome === "error" ? o.error : ""] : [];
    dataset.writeDataPoint({ indexes: [service], blobs: [service, s.route, s.backend, s.caller, String(o.status), ...rpc], doubles: [s.count, s.attempts, s.sumMs, ...s.buckets] });
  }
}
