/**
 * `weft tap <service>`: every request the service's proxies handle, live, one line each (as
 * `linkerd viz tap`). Reconnects when the stream drops; Ctrl-C stops it (exit 0).
 */
import { flag, numberOption, positionals } from "../args.ts";
import type { TapEvent } from "../api-types.ts";
import type { Command } from "../command.ts";
import { EXIT } from "../errors.ts";
import { formatMs, type Painter } from "../output.ts";
import { readEvents, sleep } from "../sse.ts";

/** The server sends a heartbeat every 15 s; three missed ones mean the connection is dead. */
const IDLE_MS = 45_000;
const RECONNECT_MS = 2_000;
/** Span ids remembered to drop events a reconnect replays. */
const SEEN_LIMIT = 2_000;

/** One request as a tap line: time, method, path, status, latency, backend, route, caller, trace. */
export function tapLine(event: TapEvent, paint: Painter): string {
  const status = String(event.status);
  const coloured = event.status >= 500 ? paint("red", status) : event.status >= 400 ? paint("yellow", status) : paint("green", status);
  const time = event.at.slice(11, 23);
  const retries = event.attempts > 1 ? paint("yellow", ` attempts=${event.attempts}`) : "";
  return `${paint("dim", time)}  ${event.method} ${event.path}  ${coloured}  ${formatMs(event.durationMs)}  backend=${event.backend ?? "-"} route=${event.route ?? "-"} from=${event.caller}${retries}  ${event.traceId ? paint("dim", `trace=${event.traceId}`) : ""}`;
}

function isTapEvent(value: unknown): value is TapEvent {
  return typeof value === "object" && value !== null && "status" in value && "path" in value && "spanId" in value;
}

export const tapCommand: Command = {
  name: "tap",
  summary: "stream a service's requests live",
  usage: "<service>",
  description: `Shows every request the service's proxies handle as it happens: method, path, status, latency,
the backend and route that served it, the caller's identity and the trace id. --json prints one
JSON object per request (JSON lines). Runs until Ctrl-C (exit 0) or --limit requests.`,
  options: {
    limit: { type: "string", value: "<n>", description: "stop after n requests" },
    errors: { type: "boolean", description: "only failed requests (5xx, and requests the proxy refused)" },
    recent: { type: "boolean", description: "start with the service's recent requests, then live ones" },
  },
  examples: ["weft tap pim", "weft tap orders --errors", "weft tap pim --json --limit 10 | jq .status"],
  run: async (ctx) => {
    const [service = ""] = positionals(ctx.args, ["service"], ctx.command);
    const limit = numberOption(ctx.args, "limit", ctx.command, { min: 1, max: 1_000_000, integer: true });
    const onlyErrors = flag(ctx.args, "errors");
    const recent = flag(ctx.args, "recent");
    const api = ctx.api();
    const route = `/admin/tap?service=${encodeURIComponent(service)}`;
    const seen = new Set<string>();
    let shown = 0;
    let first = true;
    while (!ctx.interrupt.aborted) {
      const stream = await api.stream(route, ctx.interrupt);
      if (first) ctx.out.note(ctx.out.paintErr("dim", `Tapping ${service} at ${api.target.url}${onlyErrors ? " (errors only)" : ""}; Ctrl-C to stop.`));
      // The server replays its recent requests first and says how many; skip them unless asked.
      let skip = 0;
      const end = await readEvents(stream, IDLE_MS, ctx.interrupt, (event) => {
        if (event.event === "comment") {
          const replayed = /^(\d+) recent requests first/.exec(event.data);
          if (replayed && !(recent && first)) skip = Number(replayed[1]);
          return;
        }
        if (event.event === "dropped") {
          // The control plane drops events for a client that reads too slowly, and says how many.
          const dropped = /"dropped":\s*(\d+)/.exec(event.data)?.[1];
          if (dropped) ctx.out.note(ctx.out.paintErr("yellow", `… ${dropped} requests dropped: this terminal read too slowly`));
          return;
        }
        if (event.event !== "request") return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!isTapEvent(parsed)) return;
        const replay = skip > 0;
        if (replay) skip--;
        // Untraced requests have no span id: their own facts tell a replayed event from a new one.
        const key = parsed.spanId ?? `${parsed.at} ${parsed.method} ${parsed.path} ${parsed.status} ${parsed.durationMs}`;
        if (seen.has(key)) return;
        seen.add(key);
        if (seen.size > SEEN_LIMIT) seen.delete(seen.values().next().value ?? "");
        if (replay) return;
        if (onlyErrors && !(parsed.status >= 500 || (parsed.backend === null && parsed.status >= 400))) return;
        if (ctx.out.json) ctx.out.document(parsed);
        else ctx.out.line(tapLine(parsed, ctx.out.paint));
        shown++;
        if (limit !== undefined && shown >= limit) return false;
      });
      first = false;
      if (end === "aborted" || end === "stopped") break;
      ctx.out.note(ctx.out.paintErr("yellow", end === "idle" ? "tap: no data for 45 s; reconnecting" : "tap: the stream ended; reconnecting"));
      await sleep(RECONNECT_MS, ctx.interrupt);
    }
    return EXIT.ok;
  },
};
