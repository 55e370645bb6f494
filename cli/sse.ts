/**
 * Reading server-sent events (the tap) with an idle limit: a stream that stays silent longer than
 * the server's heartbeat allows is treated as dead, so a half-open connection never hangs the CLI.
 */

/** One event of the stream; comments (`: text`) come through with `event` = "comment". */
export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/** Why a stream stopped. */
export type StreamEnd = "ended" | "idle" | "aborted" | "stopped";

/**
 * Calls `onEvent` for each event until the stream ends, nothing arrives for `idleMs`, `signal`
 * aborts, or `onEvent` returns false ("stopped"); resolves with which of these happened. The stream is always cancelled on return.
 */
export async function readEvents(stream: ReadableStream<Uint8Array>, idleMs: number, signal: AbortSignal, onEvent: (event: SseEvent) => boolean | void): Promise<StreamEnd> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopped = new Promise<"idle" | "aborted">((resolve) => {
    const onAbort = (): void => resolve("aborted");
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
  });
  const idle = (): Promise<"idle"> =>
    new Promise((resolve) => {
      timer = setTimeout(() => resolve("idle"), idleMs);
    });
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), stopped, idle()]);
      clearTimeout(timer);
      if (next === "idle" || next === "aborted") return next;
      if (next.done) return "ended";
      buffer += decoder.decode(next.value, { stream: true });
      let split: number;
      while ((split = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, split);
        buffer = buffer.slice(split).replace(/^\r?\n\r?\n/, "");
        const event: SseEvent = { event: "message", id: undefined, data: "" };
        const data: string[] = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(":")) {
            if (onEvent({ event: "comment", id: undefined, data: line.slice(1).trim() }) === false) return "stopped";
            continue;
          }
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event.event = value;
          else if (field === "id") event.id = value;
          else if (field === "data") data.push(value);
        }
        if (data.length === 0) continue;
        event.data = data.join("\n");
        if (onEvent(event) === false) return "stopped";
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => undefined);
  }
}

/** Waits `ms`, or less if `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
