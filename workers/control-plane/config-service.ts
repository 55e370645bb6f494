/**
 * ConfigService: the RPC entrypoint proxies bind to (`entrypoint = "ConfigService"`). It is reachable
 * only through service bindings that the deployer gives to proxies, never from the internet.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { Name } from "../../shared/config.ts";
import { disposeRpcResult, type ControlPlaneApi, type EgressClaims, type SliceRead } from "../../shared/slice.ts";
import { sliceStoreOf } from "../../durable-objects/config-store.ts";
import { signingKeysOf } from "../../durable-objects/signing-keys.ts";
import { rateCounterOf } from "../../durable-objects/rate-counter.ts";
import { MAX_LEASE_BATCH, shardOf, type Grant, type LeaseAsk, type LimitSpec } from "../../shared/rate-limit.ts";
import type { IngestReply, TelemetryBatch } from "../../shared/metrics.ts";
import { telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";

/** Bounds on one telemetry batch (a proxy sends far less); larger ones are refused. */
const MAX_BATCH_SERIES = 10_000;
const MAX_BATCH_EVENTS = 5_000;

export class ConfigService extends WorkerEntrypoint<ControlPlaneEnv> implements ControlPlaneApi {
  /** The service's slice if it changed since `knownVersion` (0 when the proxy has none). */
  async readSlice(service: string, knownVersion: number): Promise<SliceRead> {
    if (!Name.safeParse(service).success) throw new TypeError(`invalid service name: ${JSON.stringify(service)}`);
    const read = await sliceStoreOf(this.env, service).read(service, knownVersion);
    // Hand the caller a plain copy and release the stub's result right away.
    const plain = structuredClone(read);
    disposeRpcResult(read);
    return plain;
  }

  /**
   * Signs a token for one call from `service`'s proxy to a third party, in that service's signing
   * shard (the private key never leaves it).
   */
  async signEgress(service: string, claims: EgressClaims): Promise<{ token: string; kid: string }> {
    if (!Name.safeParse(service).success) throw new TypeError(`invalid service name: ${JSON.stringify(service)}`);
    const signed = await signingKeysOf(this.env, service).sign(service, claims);
    const plain = { token: signed.token, kid: signed.kid };
    disposeRpcResult(signed);
    return plain;
  }

  /** Leases rate-limit tokens from the counter `scope/limit/digest` (shared/rate-limit.ts `counterName`), in its shard. */
  async leaseTokens(counter: string, spec: LimitSpec, want: number): Promise<Omit<Grant, "state">> {
    if (shardOf(counter) === undefined) throw new TypeError("invalid counter name");
    const leased = await rateCounterOf(this.env, counter).lease(spec, want, counter);
    const plain = { granted: leased.granted, validUntil: leased.validUntil, retryAt: leased.retryAt, remaining: leased.remaining };
    disposeRpcResult(leased);
    return plain;
  }

  /**
   * Leases for several counters at once (a proxy charging keys it let through on their first sight):
   * one call per shard touched, in parallel. Answers in the order asked.
   */
  async leaseTokensBatch(asks: LeaseAsk[]): Promise<Array<Omit<Grant, "state">>> {
    if (asks.length > MAX_LEASE_BATCH) throw new RangeError("lease batch too large");
    const byShard = new Map<string, number[]>();
    for (const [index, ask] of asks.entries()) {
      const shard = shardOf(ask.counter);
      if (shard === undefined) throw new TypeError("invalid counter name");
      byShard.set(shard, [...(byShard.get(shard) ?? []), index]);
    }
    const answers: Array<Omit<Grant, "state">> = [];
    await Promise.all(
      [...byShard.values()].map(async (indexes) => {
        const first = asks[indexes[0] ?? 0];
        if (!first) return;
        const leased = await rateCounterOf(this.env, first.counter).leaseMany(indexes.map((i) => asks[i]).filter((a) => a !== undefined));
        for (const [n, index] of indexes.entries()) {
          const one = leased[n];
          if (one) answers[index] = { granted: one.granted, validUntil: one.validUntil, retryAt: one.retryAt, remaining: one.remaining };
        }
        disposeRpcResult(leased);
      }),
    );
    return answers;
  }

  /** Stores a proxy's telemetry batch in its service's shard. */
  async recordTelemetry(batch: TelemetryBatch): Promise<IngestReply> {
    if (!Name.safeParse(batch.service).success) throw new TypeError("invalid service name");
    if (batch.series.length > MAX_BATCH_SERIES || batch.events.length > MAX_BATCH_EVENTS) throw new RangeError("telemetry batch too large");
    const reply = await telemetryStoreOf(this.env, batch.service).ingest(batch);
    const plain = { tapping: reply.tapping };
    disposeRpcResult(reply);
    return plain;
  }
}
