/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent` is
 * `version-traceid-parentid-flags`, e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
 * Parsing follows the spec's rules for versions this code does not know, so a future version from a
 * client still continues its trace.
 */

/** The parts of a valid `traceparent`. */
export interface TraceParent {
  traceId: string;
  parentId: string;
  sampled: boolean;
}

const HEX = /^[0-9a-f]+$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/** Parses a `traceparent` header; undefined when absent or invalid (the hop then starts a new trace). */
export function parseTraceparent(value: string | null | undefined): TraceParent | undefined {
  if (!value) return undefined;
  const header = value.trim();
  if (header.length < 55) return undefined;
  const version = header.slice(0, 2);
  if (!HEX.test(version) || version === "ff") return undefined;
  // Version 00 is exactly 55 characters; later versions may append fields after a dash.
  if (version === "00" ? header.length !== 55 : header.length > 55 && header[55] !== "-") return undefined;
  if (header[2] !== "-" || header[35] !== "-" || header[52] !== "-") return undefined;
  const traceId = header.slice(3, 35);
  const parentId = header.slice(36, 52);
  const flags = header.slice(53, 55);
  if (!HEX.test(traceId) || !HEX.test(parentId) || !HEX.test(flags)) return undefined;
  if (traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  return { traceId, parentId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** The `traceparent` a hop sends on: same trace, this hop's span as the parent. */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}

/**
 * `bytes` random bytes as lowercase hex (trace ids: 16, span ids: 8), never all zeros. Ids need to
 * be unique, not secret, so V8's fast PRNG is used (as OpenTelemetry's JS SDK does), not the
 * cryptographic one, which costs a call into the runtime on every request.
 */
export function randomHex(bytes: number): string {
  let out = "";
  for (let i = 0; i < bytes; i += 4) {
    const word = Math.floor(Math.random() * 0x1_0000_0000);
    out += word.toString(16).padStart(8, "0").slice(0, Math.min(4, bytes - i) * 2);
  }
  return /^0*$/.test(out) && bytes > 0 ? randomHex(bytes) : out;
}

/** `tracestate` is passed on unchanged if it is within the spec's limits (512 characters, 32 members). */
export function validTracestate(value: string | null): string | undefined {
  if (!value || value.length > 512) return undefined;
  return value.split(",").length <= 32 ? value : undefined;
}
