/**
 * RateCounter: one object per (service, limit, key), `idFromName("pim/api-key/abc")`. Sharding by key
 * keeps every counter off any global object; proxies lease tokens in small batches, so an object sees
 * a fraction of the requests it counts.
 */
import { DurableObject } from "cloudflare:workers";
import { grant, initialState, type CounterState, type Grant, type LimitSpec } from "../shared/rate-limit.ts";
import { plainStub, type PlainStub } from "./rpc.ts";

/** The counter for `counter` (`service/limit/key`). */
export function rateCounterOf(env: ControlPlaneEnv, counter: string): PlainStub<RateCounter> {
  return plainStub<RateCounter>(env.RATE_COUNTERS.get(env.RATE_COUNTERS.idFromName(counter)));
}

export class RateCounter extends DurableObject<ControlPlaneEnv> {
  private state: CounterState | undefined;
  private spec: string | undefined;
  /** Lease calls served: how often proxies had to ask (the cost of the limit). */
  private leases = 0;

  /** Grants up to `want` tokens. State lives in memory and storage; a changed spec starts afresh. */
  async lease(spec: LimitSpec, want: number): Promise<Omit<Grant, "state">> {
    const now = Date.now();
    const specKey = JSON.stringify(spec);
    if (this.state === undefined) {
      const stored = await this.ctx.storage.get<{ spec: string; state: CounterState; leases?: number }>("counter");
      if (stored && stored.spec === specKey) [this.state, this.spec, this.leases] = [stored.state, stored.spec, stored.leases ?? 0];
    }
    this.leases++;
    const current = this.state && this.spec === specKey ? this.state : initialState(spec, now);
    const result = grant(spec, current, Math.max(0, Math.floor(want)), now);
    this.state = result.state;
    this.spec = specKey;
    // Written without awaiting: the output gate holds the reply until it is durable.
    void this.ctx.storage.put("counter", { spec: specKey, state: result.state, leases: this.leases });
    return { granted: result.granted, validUntil: result.validUntil, retryAt: result.retryAt, remaining: result.remaining };
  }

  /** The live counter, for operators. */
  async read(): Promise<{ spec: LimitSpec | null; state: CounterState | null; leases: number }> {
    const stored = await this.ctx.storage.get<{ spec: string; state: CounterState; leases?: number }>("counter");
    return stored ? { spec: JSON.parse(stored.spec) as LimitSpec, state: stored.state, leases: stored.leases ?? 0 } : { spec: null, state: null, leases: 0 };
  }
}
