/**
 * Golden metrics: what proxies record, how the telemetry shards store it, and how the admin API and
 * `/metrics` present it. Latencies are kept as histograms (never as samples), so counts from many
 * isolates add up exactly and percentiles are estimated the way Prometheus' `histogram_quantile` does.
 */

/** Upper bounds (ms) of the latency buckets; one more bucket (+Inf) follows the last. */
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] as const;
/** Number of buckets including +Inf. */
export const BUCKETS = LATENCY_BOUNDS_MS.length + 1;
/** Seconds per stored time slot; windows are whole slots. */
export const SLOT_SECONDS = 10;

/** The bucket a latency falls into (Prometheus semantics: value ≤ bound). */
export function bucketOf(ms: number): number {
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) {
    if (ms <= (LATENCY_BOUNDS_MS[i] ?? 0)) return i;
  }
  return LATENCY_BOUNDS_MS.length;
}

/** Which requests one series counts: responses of `service` to `caller` on `route` from `backend`. */
export interface SeriesKey {
  route: string;
  /** Empty when the proxy answered itself before choosing a backend (refusals). */
  backend: string;
  caller: string;
  /** The HTTP status; for an RPC call, {@link rpcSeriesCode} (its status equivalent, outcome and error name in one number). */
  code: number;
}

/**
 * Error names an RPC series is labelled with: JavaScript's standard Error classes (the ones Workers
 * RPC rebuilds in the caller with their type), then `(other)` for any other name or a thrown
 * non-Error. Callee code chooses error names, and each name is a series, so the set is fixed.
 */
export const RPC_ERROR_NAMES = ["Error", "TypeError", "RangeError", "ReferenceError", "SyntaxError", "EvalError", "URIError", "AggregateError", "(other)"] as const;
/** A label value of {@link RPC_ERROR_NAMES}. */
export type RpcErrorName = (typeof RPC_ERROR_NAMES)[number];

/**
 * RPC series codes start here, above every HTTP status, so RPC and HTTP series share the stored
 * `code` column (and the telemetry shard's schema) without colliding: an RPC code is
 * `RPC_CODE_BASE + status × 100 + outcome`, where status is the HTTP equivalent (200 answered, 403
 * refused, 404 no route, 429 rate-limited, 500 thrown or timed out) and outcome is 0 for `ok`, else
 * 1 + the index of the error's name in {@link RPC_ERROR_NAMES}.
 */
export const RPC_CODE_BASE = 100_000;

/** The error-name label of `error` as thrown by a callee or the mesh: one of {@link RPC_ERROR_NAMES}. */
export function rpcErrorName(error: unknown): RpcErrorName {
  if (!(error instanceof Error)) return "(other)";
  const name = error.name;
  return RPC_ERROR_NAMES.find((n) => n === name && n !== "(other)") ?? "(other)";
}

/** The series code of an RPC call that ended with HTTP-equivalent `status`, ok (`error` undefined) or with an error of that name. */
export function rpcSeriesCode(status: number, error: RpcErrorName | undefined): number {
  return RPC_CODE_BASE + status * 100 + (error === undefined ? 0 : RPC_ERROR_NAMES.indexOf(error) + 1);
}

/** What a series code says: an HTTP status, or an RPC call's status equivalent, outcome and error name. */
export type SeriesOutcome = { kind: "http"; status: number } | { kind: "rpc"; status: number; outcome: "ok" } | { kind: "rpc"; status: number; outcome: "error"; error: RpcErrorName };

/** Decodes a series code (see {@link RPC_CODE_BASE}); codes outside the RPC range are HTTP statuses. */
export function seriesOutcome(code: number): SeriesOutcome {
  if (code < RPC_CODE_BASE) return { kind: "http", status: code };
  const rest = code - RPC_CODE_BASE;
  const status = Math.floor(rest / 100);
  const index = (rest % 100) - 1;
  if (index < 0) return { kind: "rpc", status, outcome: "ok" };
  return { kind: "rpc", status, outcome: "error", error: RPC_ERROR_NAMES[index] ?? "(other)" };
}

/** The HTTP status (or an RPC call's equivalent) a series code counts. */
export function statusOf(code: number): number {
  return code < RPC_CODE_BASE ? code : Math.floor((code - RPC_CODE_BASE) / 100);
}

/** Counts of one series; `attempts` − `count` is the number of retries. */
export interface SeriesStats extends SeriesKey {
  count: number;
  attempts: number;
  sumMs: number;
  buckets: number[];
}

/** One live request, as the tap streams it and the recent-errors list keeps it. */
export interface TapEvent {
  at: string;
  service: string;
  method: string;
  path: string;
  route: string | null;
  backend: string | null;
  caller: string;
  status: number;
  durationMs: number;
  /** Null when the request was not traced (no mesh caller's trace context, not sampled here). */
  traceId: string | null;
  spanId: string | null;
  sampled: boolean;
  attempts: number;
}

/**
 * Attempts of one backend: every try counts, before retries or failover hide it (a request that
 * failed on the candidate and succeeded on failover is one failed attempt of the candidate).
 */
export interface AttemptStats {
  count: number;
  /** 5xx answers, connect errors and timeouts. */
  failures: number;
  buckets: number[];
}

/** An empty {@link AttemptStats}. */
export function noAttempts(): AttemptStats {
  return { count: 0, failures: 0, buckets: new Array<number>(BUCKETS).fill(0) };
}

/** What a proxy isolate sends its service's telemetry shard, about once a second while busy. */
export interface TelemetryBatch {
  service: string;
  /**
   * Unique per batch, and the same on every re-send of it: the shard applies each id at most once,
   * so a batch re-queued after a timeout whose first RPC still committed is not counted twice.
   */
  batchId: string;
  /** Epoch ms the batch's first request finished; the batch is stored in that time slot. */
  at: number;
  series: SeriesStats[];
  /** Backends this isolate ejected during the batch (the sum of `ejectedBackends`). */
  ejections: number;
  /** Ejections per backend, for `weft_ejections_total{service,backend}` (absent from proxies older than it). */
  ejectedBackends?: Array<{ backend: string; count: number }>;
  /** Requests for the tap and the recent-errors list (sampled, errors, and a few others). */
  events: TapEvent[];
  /** Attempts per backend (what rollouts judge candidates on). */
  attempts: Array<AttemptStats & { backend: string }>;
  /**
   * A random id of the sending isolate (the same on all its batches), so the shard can count its
   * writers and pace them; absent from proxies older than pacing.
   */
  writer?: string;
}

/** The shard's answer: whether anyone is tapping the service (then proxies send more events), and when to send the next batch. */
export interface IngestReply {
  tapping: boolean;
  /**
   * How long the writer should gather before its next batch (ms), chosen by the shard so that its
   * writes per second stay near a fixed budget whatever the number of isolates; absent from older shards.
   */
  flushAfterMs?: number;
}

/** True for responses that count as failures in the success rate (as Linkerd: 5xx only; for RPC, a call the callee failed or that timed out). */
export function isFailure(code: number): boolean {
  return statusOf(code) >= 500;
}

/** Adds `from` into `into` (same bucket layout). */
export function addBuckets(into: number[], from: ReadonlyArray<number>): void {
  for (let i = 0; i < BUCKETS; i++) into[i] = (into[i] ?? 0) + (from[i] ?? 0);
}

/**
 * Estimates the `q` quantile (0..1) from bucket counts, interpolating linearly inside the bucket as
 * `histogram_quantile` does. The +Inf bucket answers with the last finite bound. Null without data.
 */
export function quantileMs(buckets: ReadonlyArray<number>, q: number): number | null {
  const total = buckets.reduce((sum, n) => sum + n, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    const count = buckets[i] ?? 0;
    if (count > 0 && seen + count >= rank) {
      const upper = LATENCY_BOUNDS_MS[i];
      if (upper === undefined) return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1] ?? null;
      const lower = i === 0 ? 0 : (LATENCY_BOUNDS_MS[i - 1] ?? 0);
      return round(lower + (upper - lower) * ((rank - seen) / count), 2);
    }
    seen += count;
  }
  return null;
}

const round = (value: number, digits: number): number => Number(value.toFixed(digits));

/** Requests by status class. */
export interface StatusClasses {
  "1xx": number;
  "2xx": number;
  "3xx": number;
  "4xx": number;
  "5xx": number;
}

/** The golden signals of a set of series over a window. */
export interface Golden {
  requests: number;
  rps: number;
  /** Share of responses that were not 5xx; null without requests. */
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  statusClasses: StatusClasses;
  retries: number;
}

/** Summarizes `series` over a window of `seconds`. */
export function golden(series: ReadonlyArray<SeriesStats>, seconds: number): Golden {
  const buckets = new Array<number>(BUCKETS).fill(0);
  const classes: StatusClasses = { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0 };
  let requests = 0;
  let failures = 0;
  let attempts = 0;
  for (const s of series) {
    requests += s.count;
    attempts += s.attempts;
    if (isFailure(s.code)) failures += s.count;
    const cls = `${Math.min(5, Math.max(1, Math.floor(statusOf(s.code) / 100)))}xx`;
    if (cls === "1xx" || cls === "2xx" || cls === "3xx" || cls === "4xx" || cls === "5xx") classes[cls] += s.count;
    addBuckets(buckets, s.buckets);
  }
  return {
    requests,
    rps: round(requests / Math.max(1, seconds), 3),
    successRate: requests === 0 ? null : round((requests - failures) / requests, 5),
    p50Ms: quantileMs(buckets, 0.5),
    p95Ms: quantileMs(buckets, 0.95),
    p99Ms: quantileMs(buckets, 0.99),
    statusClasses: classes,
    retries: Math.max(0, attempts - requests),
  };
}

/** Groups series by one label and summarizes each group. */
export function goldenBy<K extends "route" | "backend" | "caller">(
  series: ReadonlyArray<SeriesStats>,
  label: K,
  seconds: number,
): Array<Golden & Record<K, string>> {
  const groups = new Map<string, SeriesStats[]>();
  for (const s of series) {
    const group = groups.get(s[label]);
    if (group) group.push(s);
    else groups.set(s[label], [s]);
  }
  return [...groups.entries()]
    .map(([value, members]) => Object.assign(golden(members, seconds), labelled(label, value)))
    .sort((a, b) => b.requests - a.requests);
}

function labelled<K extends string>(label: K, value: string): Record<K, string> {
  const out: Partial<Record<K, string>> = {};
  out[label] = value;
  return out as Record<K, string>;
}

/** One time slot of a service's timeline (for charts). */
export interface TimelinePoint {
  at: string;
  requests: number;
  errors: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** A service's metrics over a window, as `GET /admin/metrics` returns them. */
export interface ServiceMetrics {
  service: string;
  windowSeconds: number;
  from: string;
  to: string;
  total: Golden & { rateLimited: number; ejections: number };
  backends: Array<Golden & { backend: string }>;
  routes: Array<Golden & { route: string }>;
  callers: Array<Golden & { caller: string }>;
  timeline: TimelinePoint[];
}

/** A slot of stored series, as the telemetry shard returns it. */
export interface SlotSeries extends SeriesStats {
  slot: number;
}

/** Requests the proxy refused itself with 429 (its rate limits), as opposed to a backend's 429. */
export function rateLimitedCount(series: ReadonlyArray<SeriesStats>): number {
  return series.reduce((sum, s) => sum + (s.backend === "" && statusOf(s.code) === 429 ? s.count : 0), 0);
}

/**
 * Builds `GET /admin/metrics` from a shard's slots of the window [`fromSlot`, `toSlot`]. Rates are
 * per second that has passed (`now`, when the window ends in the current, partly filled slot).
 */
export function serviceMetrics(
  service: string,
  rows: ReadonlyArray<SlotSeries>,
  ejections: number,
  fromSlot: number,
  toSlot: number,
  now?: number,
): ServiceMetrics {
  const seconds = (toSlot - fromSlot + 1) * SLOT_SECONDS;
  const elapsed = now === undefined ? seconds : Math.min(seconds, Math.max(1, now / 1000 - fromSlot * SLOT_SECONDS));
  const bySlot = new Map<number, SlotSeries[]>();
  for (const row of rows) {
    const list = bySlot.get(row.slot);
    if (list) list.push(row);
    else bySlot.set(row.slot, [row]);
  }
  const timeline: TimelinePoint[] = [];
  for (let slot = fromSlot; slot <= toSlot; slot++) {
    const g = golden(bySlot.get(slot) ?? [], SLOT_SECONDS);
    timeline.push({ at: new Date(slot * SLOT_SECONDS * 1000).toISOString(), requests: g.requests, errors: g.statusClasses["5xx"], p50Ms: g.p50Ms, p99Ms: g.p99Ms });
  }
  return {
    service,
    windowSeconds: seconds,
    from: new Date(fromSlot * SLOT_SECONDS * 1000).toISOString(),
    to: new Date((toSlot + 1) * SLOT_SECONDS * 1000).toISOString(),
    total: { ...golden(rows, elapsed), rateLimited: rateLimitedCount(rows), ejections },
    backends: goldenBy(rows.filter((r) => r.backend !== ""), "backend", elapsed),
    routes: goldenBy(rows, "route", elapsed),
    callers: goldenBy(rows, "caller", elapsed),
    timeline,
  };
}

/** The slots a window of `seconds` ending now covers (the current, partly filled slot included). */
export function windowSlots(seconds: number, now: number): { fromSlot: number; toSlot: number } {
  const toSlot = Math.floor(now / 1000 / SLOT_SECONDS);
  return { fromSlot: toSlot - Math.max(1, Math.ceil(seconds / SLOT_SECONDS)) + 1, toSlot };
}

// ---------------------------------------------------------------------------------------------
// Service graph

/** A node of `GET /admin/graph`. */
export interface GraphNode {
  id: string;
  kind: "service" | "internet" | "external";
  rps: number;
  successRate: number | null;
}

/** An observed caller → callee edge. */
export interface GraphEdge {
  source: string;
  target: string;
  requests: number;
  rps: number;
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** The mesh as observed: every service, and edges for the calls seen in the window. */
export interface ServiceGraph {
  windowSeconds: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

/**
 * Builds the graph from each service's series: edges caller → service from the caller label, and
 * service → external backend (third parties) from the backend label.
 */
export function serviceGraph(
  services: ReadonlyArray<{ name: string; externalBackends: ReadonlySet<string>; series: ReadonlyArray<SeriesStats> }>,
  seconds: number,
): ServiceGraph {
  const nodes = new Map<string, GraphNode>();
  const edges: GraphEdge[] = [];
  const node = (id: string, kind: GraphNode["kind"]): void => {
    if (!nodes.has(id)) nodes.set(id, { id, kind, rps: 0, successRate: null });
  };
  for (const service of services) {
    node(service.name, "service");
    const g = golden(service.series, seconds);
    nodes.set(service.name, { id: service.name, kind: "service", rps: g.rps, successRate: g.successRate });
    for (const byCaller of goldenBy(service.series, "caller", seconds)) {
      node(byCaller.caller, byCaller.caller === "internet" ? "internet" : "service");
      edges.push(edgeOf(byCaller.caller, service.name, byCaller));
    }
    for (const byBackend of goldenBy(service.series.filter((s) => service.externalBackends.has(s.backend)), "backend", seconds)) {
      node(byBackend.backend, "external");
      edges.push(edgeOf(service.name, byBackend.backend, byBackend));
    }
  }
  return { windowSeconds: seconds, nodes: [...nodes.values()], edges };
}

function edgeOf(source: string, target: string, g: Golden): GraphEdge {
  return { source, target, requests: g.requests, rps: g.rps, successRate: g.successRate, p50Ms: g.p50Ms, p99Ms: g.p99Ms };
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition

/** Totals of one service since its shard began counting, for `/metrics`. */
export interface ServiceTotals {
  service: string;
  series: SeriesStats[];
  ejections: number;
  /** Ejections per backend (the per-backend counts began later than the total: their sum may be smaller). */
  ejectedBackends?: Record<string, number>;
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function labels(pairs: ReadonlyArray<[string, string]>): string {
  return `{${pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

/**
 * The labels a series code adds: `code` (the HTTP status, or an RPC call's equivalent), and for RPC
 * calls `outcome` (`ok`/`error`) and, on errors, `error` (the error's name). HTTP series carry
 * `code` only, exactly as before RPC calls were counted.
 */
function codeLabels(code: number): Array<[string, string]> {
  const decoded = seriesOutcome(code);
  if (decoded.kind === "http") return [["code", String(code)]];
  if (decoded.outcome === "ok") return [["code", String(decoded.status)], ["outcome", "ok"]];
  return [["code", String(decoded.status)], ["outcome", "error"], ["error", decoded.error]];
}

/** Renders totals in the Prometheus text format (version 0.0.4). */
export function prometheusText(all: ReadonlyArray<ServiceTotals>): string {
  const out: string[] = [];
  out.push("# HELP weft_requests_total Requests answered by Weft proxies.", "# TYPE weft_requests_total counter");
  for (const { service, series } of all) {
    for (const s of series) {
      out.push(`weft_requests_total${labels([["service", service], ["route", s.route], ["backend", s.backend], ["caller", s.caller], ...codeLabels(s.code)])} ${s.count}`);
    }
  }
  out.push("# HELP weft_request_duration_seconds Time from a request reaching the proxy to its response headers.", "# TYPE weft_request_duration_seconds histogram");
  for (const { service, series } of all) {
    // One histogram per (route, backend, caller): codes are summed, as Linkerd's latency has no code
    // label; an RPC call's outcome and error name are kept (bounded: ok, or one of RPC_ERROR_NAMES).
    const merged = new Map<string, { key: [string, string][]; buckets: number[]; sumMs: number; count: number }>();
    for (const s of series) {
      const key: [string, string][] = [["service", service], ["route", s.route], ["backend", s.backend], ["caller", s.caller], ...codeLabels(s.code).slice(1)];
      const id = JSON.stringify(key);
      let entry = merged.get(id);
      if (!entry) merged.set(id, (entry = { key, buckets: new Array<number>(BUCKETS).fill(0), sumMs: 0, count: 0 }));
      addBuckets(entry.buckets, s.buckets);
      entry.sumMs += s.sumMs;
      entry.count += s.count;
    }
    for (const { key, buckets, sumMs, count } of merged.values()) {
      let cumulative = 0;
      for (let i = 0; i < BUCKETS; i++) {
        cumulative += buckets[i] ?? 0;
        const bound = LATENCY_BOUNDS_MS[i];
        const le = bound === undefined ? "+Inf" : String(bound / 1000);
        out.push(`weft_request_duration_seconds_bucket${labels([...key, ["le", le]])} ${cumulative}`);
      }
      out.push(`weft_request_duration_seconds_sum${labels(key)} ${round(sumMs / 1000, 6)}`);
      out.push(`weft_request_duration_seconds_count${labels(key)} ${count}`);
    }
  }
  out.push("# HELP weft_retries_total Extra attempts proxies made (retries and failovers).", "# TYPE weft_retries_total counter");
  for (const { service, series } of all) {
    for (const r of goldenBy(series.filter((s) => s.backend !== ""), "backend", 1)) {
      out.push(`weft_retries_total${labels([["service", service], ["backend", r.backend]])} ${r.retries}`);
    }
  }
  out.push("# HELP weft_rate_limited_total Requests refused by a service's rate limits.", "# TYPE weft_rate_limited_total counter");
  for (const { service, series } of all) out.push(`weft_rate_limited_total${labels([["service", service]])} ${rateLimitedCount(series)}`);
  out.push("# HELP weft_ejections_total Times outlier detection ejected a backend, per service and backend.", "# TYPE weft_ejections_total counter");
  for (const { service, ejectedBackends } of all) {
    for (const [backend, n] of Object.entries(ejectedBackends ?? {})) out.push(`weft_ejections_total${labels([["service", service], ["backend", backend]])} ${n}`);
  }
  return `${out.join("\n")}\n`;
}
