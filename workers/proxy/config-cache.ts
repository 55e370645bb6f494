/**
 * The proxy's view of its service's config, cached in isolate memory.
 *
 * Requests never wait on the control plane while the cached slice is fresh; a background refresh
 * (one RPC per isolate, at most every {@link FRESH_MS}) picks up changes, so a split change is obeyed
 * within about a second. When the control plane is unreachable the last good slice keeps serving.
 */
import { disposeRpcResult, type ControlPlaneApi } from "../../shared/slice.ts";
import { withTimeout } from "./bounded.ts";
import { compileSlice, type CompileContext, type CompiledSlice } from "./plan.ts";

/** Below this age the cached slice is used as is. */
export const FRESH_MS = 400;
/** Above this age a request waits for a refresh (bounded by {@link REFRESH_TIMEOUT_MS}); in between, it refreshes in the background. */
export const MAX_AGE_MS = 900;
const REFRESH_TIMEOUT_MS = 1_000;
const MAX_BACKOFF_MS = 5_000;

export type SliceState =
  | { kind: "ready"; slice: CompiledSlice }
  | { kind: "absent"; detail: string }
  | { kind: "unavailable"; detail: string };

export class SliceCache {
  private state: SliceState | undefined;
  private checkedAt = 0;
  private retryAt = 0;
  private failures = 0;
  private background: Promise<void> | undefined;

  constructor(
    private readonly service: string,
    private readonly source: ControlPlaneApi,
    private readonly compiling: { context: CompileContext; onCompiled: (slice: CompiledSlice) => void },
  ) {}

  /**
   * The slice to serve this request with: synchronously while the cache is usable (the hot path
   * never awaits here), or a promise when this request must wait for a refresh. `waitUntil` keeps
   * background refreshes alive.
   */
  current(waitUntil: (promise: Promise<unknown>) => void): SliceState | Promise<SliceState> {
    const now = Date.now();
    if (this.state) {
      const age = now - this.checkedAt;
      if (age < FRESH_MS) return this.state;
      // Wait only when the config may be stale and the control plane is believed healthy; during an
      // outage requests are served from the last good config without ever waiting on it.
      if (age < MAX_AGE_MS || this.failures > 0) {
        if (!this.background && now >= this.retryAt) {
          this.background = this.refresh().finally(() => (this.background = undefined));
          waitUntil(this.background);
        }
        return this.state;
      }
    } else if (now < this.retryAt) {
      return { kind: "unavailable", detail: "no config loaded yet and the control plane is unreachable" };
    }
    return this.refresh().then(
      () => this.state ?? { kind: "unavailable", detail: "no config loaded yet and the control plane is unreachable" },
    );
  }

  /**
   * The slice as the control plane has it now, for work that must not act on a stale one (the
   * cron trigger); falls back to the last good config when the control plane is unreachable.
   */
  async fresh(): Promise<SliceState> {
    await (this.background ?? this.refresh());
    return this.state ?? { kind: "unavailable", detail: "no config loaded yet and the control plane is unreachable" };
  }

  private async refresh(): Promise<void> {
    const known = this.state?.kind === "ready" ? this.state.slice.version : 0;
    try {
      const read = await withTimeout(this.source.readSlice(this.service, known), REFRESH_TIMEOUT_MS, "control plane");
      if (read.status === "slice") {
        const slice = compileSlice(read.slice, this.compiling.context);
        this.compiling.onCompiled(slice);
        this.state = { kind: "ready", slice };
      }
      else if (read.status === "absent") this.state = { kind: "absent", detail: `the mesh config has no service '${this.service}'` };
      disposeRpcResult(read);
      if (this.failures > 0) console.log(`weft proxy ${this.service}: control plane reachable again (config version ${known})`);
      this.checkedAt = Date.now();
      this.failures = 0;
      this.retryAt = 0;
    } catch (error) {
      this.failures++;
      this.retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.failures);
      if (this.state?.kind === "ready") {
        if (this.failures === 1) {
          console.warn(
            `weft proxy ${this.service}: control plane unreachable (${String(error)}); serving last good config version ${this.state.slice.version}`,
          );
        }
      } else {
        console.error(`weft proxy ${this.service}: cannot load config: ${String(error)}`);
      }
    }
  }
}
