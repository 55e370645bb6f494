/**
 * OTLP/HTTP trace export (JSON encoding, https://opentelemetry.io/docs/specs/otlp/): one POST per
 * batch of sampled spans to the collector the deployment names in WEFT_OTLP_ENDPOINT.
 */

/** Where spans go. */
export interface OtlpExporter {
  /** The collector's traces URL, e.g. `https://otel.example.com/v1/traces`. */
  endpoint: string;
  /** Extra headers, e.g. the collector's API key. */
  headers: Record<string, string>;
}

/** One proxy hop, finished. */
export interface FinishedSpan {
  traceId: string;
  spanId: string;
  parentId: string | undefined;
  name: string;
  startMs: number;
  endMs: number;
  status: number;
  attributes: Record<string, string | number>;
}

const EXPORT_TIMEOUT_MS = 5_000;
/** Spans per request; larger batches are split. */
const MAX_SPANS_PER_REQUEST = 512;
const SPAN_KIND_SERVER = 2;
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;

type AnyValue = { stringValue: string } | { intValue: string };

function attribute(key: string, value: string | number): { key: string; value: AnyValue } {
  return { key, value: typeof value === "number" ? { intValue: String(Math.trunc(value)) } : { stringValue: value } };
}

const nanos = (ms: number): string => `${BigInt(Math.trunc(ms)) * 1_000_000n}`;

/** The OTLP JSON body for `spans` of one service. */
export function otlpBody(service: string, spans: ReadonlyArray<FinishedSpan>): unknown {
  return {
    resourceSpans: [
      {
        resource: { attributes: [attribute("service.name", service), attribute("service.namespace", "weft")] },
        scopeSpans: [
          {
            scope: { name: "weft-proxy" },
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentId ? { parentSpanId: s.parentId } : {}),
              name: s.name,
              kind: SPAN_KIND_SERVER,
              startTimeUnixNano: nanos(s.startMs),
              endTimeUnixNano: nanos(s.endMs),
              attributes: Object.entries(s.attributes).map(([k, v]) => attribute(k, v)),
              status: { code: s.status >= 500 ? STATUS_ERROR : STATUS_UNSET },
            })),
          },
        ],
      },
    ],
  };
}

/** Sends `spans` to the collector; failures are logged (without the collector's headers), never thrown. */
export async function otlpSpans(exporter: OtlpExporter, service: string, spans: ReadonlyArray<FinishedSpan>): Promise<void> {
  for (let i = 0; i < spans.length; i += MAX_SPANS_PER_REQUEST) {
    try {
      const response = await fetch(exporter.endpoint, {
        method: "POST",
        headers: { ...exporter.headers, "content-type": "application/json" },
        body: JSON.stringify(otlpBody(service, spans.slice(i, i + MAX_SPANS_PER_REQUEST))),
        signal: AbortSignal.timeout(EXPORT_TIMEOUT_MS),
        redirect: "manual",
      });
      await response.body?.cancel();
      if (!response.ok) console.warn(JSON.stringify({ event: "otlp-export-failed", service, status: response.status }));
    } catch (error) {
      console.warn(JSON.stringify({ event: "otlp-export-failed", service, reason: error instanceof Error ? error.message : String(error) }));
    }
  }
}
