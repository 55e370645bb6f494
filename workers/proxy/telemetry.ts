/**
 * The telemetry step: every proxied request becomes a metric sample, an access log line, a tap event
 * (when someone watches or it failed) and, when sampled, a span. Requests only push a small record;
 * everything else (aggregation, log lines, spans) happens in a batch about once a second, in
 * `waitUntil` after responses have gone out, so telemetry stays off the response path. Batches go to
 * the service's telemetry shard over the CONTROL_PLANE binding, spans to the OTLP collector if one is
 * configured, data points to Analytics Engine if it is bound.
 */
import {
  bucketOf,
  BUCKETS,
  isFailure,
  type SeriesStats,
  type TapEvent,
  type TelemetryBatch,
} from "../../shared/metrics.ts";
import { redactHeaders, redactPath } from "../../shared/redact.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { formatTraceparent, parseTraceparent, randomHex, validTracestate } from "../../shared/trace-context.ts";
import { withTimeout } from "./bounded.ts";
import { otlpSpans, type FinishedSpan, type OtlpExporter } from "./otlp.ts";

/** A batch is sent this long after its first request. */
const FLUSH_MS = 1_000;
/** A batch this large is sent at once. */
const MAX_RECORDS = 2_000;
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
}

interface Finished {
  hop: Hop;
  endedAt: number;
  method: string;
  url: string;
  headers: Headers;
  caller: string;
  route: string;
  backend: string;
  status: number;
  attempts: number;
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

/** One service's telemetry in this isolate. */
export class ServiceTelemetry {
  private records: Finished[] = [];
  private scheduled = false;
  /** The shard said someone is tapping this service: send more events. */
  private tapping = false;
  /** Series of batches the shard did not take, sent again with the next one. */
  private unsent: SeriesStats[] = [];

  constructor(
    private readonly service: string,
    private readonly controlPlane: ControlPlaneApi,
    readonly settings: TelemetrySettings,
  ) {}

  /** Records a finished request: one push, plus a scheduled batch for the first request of one. */
  finish(hop: Hop, request: Request, caller: string, trail: Trail, status: number, waitUntil: (p: Promise<unknown>) => void): void {
    this.records.push({
      hop,
      endedAt: Date.now(),
      method: request.method,
      url: request.url,
      headers: request.headers,
      caller,
      route: trail.route ?? "",
      backend: trail.backend ?? "",
      status,
      attempts: trail.attempts,
    });
    if (this.records.length >= MAX_RECORDS) {
      waitUntil(this.flush());
    } else if (!this.scheduled) {
      this.scheduled = true;
      waitUntil(new Promise((resolve) => setTimeout(resolve, FLUSH_MS)).then(() => this.flush()));
    }
  }

  /** Aggregates the pending records and sends them. Never throws. */
  async flush(): Promise<void> {
    const records = this.records;
    this.records = [];
    this.scheduled = false;
    if (records.length === 0) return;
    const batch = this.aggregate(records);
    this.writeLogs(records);
    const sends: Array<Promise<void>> = [this.sendBatch(batch)];
    const spans = this.settings.otlp ? records.filter((r) => r.hop.sampled).map(spanOf) : [];
    if (this.settings.otlp && spans.length > 0) sends.push(otlpSpans(this.settings.otlp, this.service, spans));
    if (this.settings.analytics) writeAnalytics(this.settings.analytics, this.service, batch.series);
    await Promise.all(sends);
  }

  private aggregate(records: Finished[]): TelemetryBatch {
    const series = new Map<string, SeriesStats>();
    for (const old of this.unsent) series.set(seriesId(old), old);
    this.unsent = [];
    const events: TapEvent[] = [];
    let tapped = 0;
    for (const r of records) {
      const id = `${r.route}\u0000${r.backend}\u0000${r.caller}\u0000${r.status}`;
      let s = series.get(id);
      if (!s) {
        s = { route: r.route, backend: r.backend, caller: r.caller, code: r.status, count: 0, attempts: 0, sumMs: 0, buckets: new Array<number>(BUCKETS).fill(0) };
        series.set(id, s);
      }
      const ms = r.endedAt - r.hop.startedAt;
      s.count++;
      s.attempts += r.attempts;
      s.sumMs += ms;
      s.buckets[bucketOf(ms)] = (s.buckets[bucketOf(ms)] ?? 0) + 1;
      const notable = r.hop.sampled || isFailure(r.status) || (r.backend === "" && r.status >= 400);
      if (notable || (this.tapping ? tapped < TAP_EVENTS_PER_BATCH : tapped < RECENT_EVENTS_PER_BATCH)) {
        if (!notable) tapped++;
        events.push(this.eventOf(r, ms));
      }
    }
    const ejected = ejections.get(this.service) ?? 0;
    ejections.delete(this.service);
    return { service: this.service, at: records[0]?.endedAt ?? Date.now(), series: [...series.values()], ejections: ejected, events };
  }

  private eventOf(r: Finished, durationMs: number): TapEvent {
    return {
      at: new Date(r.endedAt).toISOString(),
      service: this.service,
      method: r.method,
      path: redactPath(pathAndQuery(r.url)),
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

  /** One JSON line per request (Workers Logs indexes JSON lines), credentials redacted. */
  private writeLogs(records: Finished[]): void {
    if (this.settings.accessLog === "off") return;
    for (const r of records) {
      if (this.settings.accessLog === "errors" && !isFailure(r.status)) continue;
      console.log(
        JSON.stringify({
          type: "weft.access",
          time: new Date(r.endedAt).toISOString(),
          service: this.service,
          traceId: r.hop.traceId,
          spanId: r.hop.spanId,
          method: r.method,
          path: redactPath(pathAndQuery(r.url)),
          route: r.route || null,
          backend: r.backend || null,
          caller: r.caller,
          status: r.status,
          durationMs: r.endedAt - r.hop.startedAt,
          attempts: r.attempts,
          retries: Math.max(0, r.attempts - 1),
          headers: redactHeaders(r.headers),
        }),
      );
    }
  }

  private async sendBatch(batch: TelemetryBatch): Promise<void> {
    try {
      const reply = await withTimeout(this.controlPlane.recordTelemetry(batch), SHARD_TIMEOUT_MS, "telemetry shard");
      this.tapping = reply.tapping;
    } catch (error) {
      // Counts survive a control-plane outage: they go again with the next batch (events do not).
      this.unsent = batch.series;
      console.warn(JSON.stringify({ event: "telemetry-unsent", service: this.service, series: batch.series.length, reason: error instanceof Error ? error.message : String(error) }));
    }
  }
}

function seriesId(s: SeriesStats): string {
  return `${s.route}\u0000${s.backend}\u0000${s.caller}\u0000${s.code}`;
}

function pathAndQuery(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start < 0 ? "/" : url.slice(start);
}

function spanOf(r: Finished): FinishedSpan {
  return {
    traceId: r.hop.traceId,
    spanId: r.hop.spanId,
    parentId: r.hop.parentId,
    name: `${r.method} ${r.route || "(no route)"}`,
    startMs: r.hop.startedAt,
    endMs: r.endedAt,
    status: r.status,
    attributes: {
      "http.request.method": r.method,
      "url.path": redactPath(pathAndQuery(r.url)),
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
