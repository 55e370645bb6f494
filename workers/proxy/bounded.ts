/** Small async helpers with limits: every wait has a deadline and every buffer a size cap. */

/** What {@link deadline} resolves to when time is up. */
export const TIMED_OUT = Symbol("timed out");

/**
 * Resolves to {@link TIMED_OUT} after `ms`; race it against the work. For service bindings this is
 * cheaper than an AbortSignal, which would make the runtime copy the request; an abandoned
 * subrequest ends with the invocation.
 */
export function deadline(ms: number): { expired: Promise<typeof TIMED_OUT>; clear(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return {
    expired,
    clear: () => {
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}

/** Rejects when `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timer = deadline(ms);
  try {
    const result = await Promise.race([promise, timer.expired]);
    if (result === TIMED_OUT) throw new Error(`${what} did not answer within ${ms} ms`);
    return result;
  } finally {
    timer.clear();
  }
}

/** Reads a body into memory, or answers "too-large" (and stops reading) as soon as it passes `limit` bytes. */
export async function readBounded(body: ReadableStream<Uint8Array> | null, limit: number): Promise<ArrayBuffer | "too-large"> {
  const read = await readPrefix(body, limit);
  if (read.kind === "complete") return read.bytes;
  await read.stream.cancel();
  return "too-large";
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The path and query of an absolute URL, without parsing the whole URL. */
export function pathAndQuery(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start < 0 ? "/" : url.slice(start);
}

/** The path of an absolute URL, without parsing the whole URL (this runs on every request). */
export function pathOf(url: string): string {
  const rest = pathAndQuery(url);
  let end = rest.length;
  const query = rest.indexOf("?");
  if (query >= 0) end = query;
  const hash = rest.indexOf("#");
  if (hash >= 0 && hash < end) end = hash;
  return rest.slice(0, end);
}

/** A body read up to a limit: all of it, or the stream to forward instead (its read prefix put back in front). */
export type Prefix = { kind: "complete"; bytes: ArrayBuffer } | { kind: "too-large"; stream: ReadableStream<Uint8Array> };

/**
 * Reads a body into memory if it fits in `limit` bytes. A larger body is not lost: the answer is a
 * stream that yields what was read and then the rest, so the caller can still pass it on unchanged
 * (a `log`-mode check must never change traffic).
 */
export async function readPrefix(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Prefix> {
  if (!body) return { kind: "complete", bytes: new ArrayBuffer(0) };
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > limit) {
      const stream = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          const next = chunks.shift();
          if (next) return controller.enqueue(next);
          const more = await reader.read();
          if (more.done) controller.close();
          else controller.enqueue(more.value);
        },
        cancel: (reason) => reader.cancel(reason),
      });
      return { kind: "too-large", stream };
    }
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { kind: "complete", bytes: out.buffer };
}

/**
 * Passes a body of unknown length (chunked) through, failing the stream once more than `limit`
 * bytes went by: a declared Content-Length is checked before anything is sent, a chunked body only
 * as it flows. `exceeded()` tells afterwards whether the limit was hit, so the failure is answered
 * 413 and not blamed on the backend.
 */
export function capped(body: ReadableStream<Uint8Array>, limit: number): { stream: ReadableStream<Uint8Array>; exceeded(): boolean } {
  let seen = 0;
  const stream = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > limit) controller.error(new RangeError(`request body larger than ${limit} bytes`));
        else controller.enqueue(chunk);
      },
    }),
  );
  return { stream, exceeded: () => seen > limit };
}
