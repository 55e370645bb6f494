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
import type { Grant, LimitSpec } from "../../shared/rate-limit.ts";
import type { IngestReply, TelemetryBatch } from "../../shared/metrics.ts";
import { telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";

/** Bounds on one telemetry batch (a proxy sends far less); larger ones are refused. */
const MAX_BATCH_SERIES = 10_000;
const MAX_BATCH_EVENTS = 5_000;
/** A batch id: 1-64 characters of a UUID's or base64url's alphabet. */
const BATCH_ID = /^[A-Za-z0-9_-]{1,64}$/;

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

  /** Leases rate-limit tokens from the counter `service/limit/key`. */
  async leaseTokens(counter: string, spec: LimitSpec, want: number): Promise<Omit<Grant, "state">> {
    const service = counter.split("/", 1)[0] ?? "";
    if (!Name.safeParse(service).success || counter.length > 512) throw new TypeError("invalid counter name");
    const leased = await rateCounterOf(this.env, counter).lease(spec, want);
    const plain = { granted: leased.granted, validUntil: leased.validUntil, retryAt: leased.retryAt, remaining: leased.remaining };
    disposeRpcResult(leased);
    return plain;
  }

  /** Stores a proxy's telemetry batch in its service's shard. */
  async recordTelemetry(batch: TelemetryBatch): Promise<IngestReply> {
    if (!Name.safeParse(batch.service).success) throw new TypeError("invalid service name");
    // The id is stored for a while (deduplication): bounded, like everything keyed by a caller's value.
    if (typeof batch.batchId !== "string" || !BATCH_ID.test(batch.batchId)) throw new TypeError("invalid batch id");
    if (batch.series.length > MAX_BATCH_SERIES || batch.events.length > MAX_BATCH_EVENTS) throw new RangeError("telemetry batch too large");
    const reply = await telemetryStoreOf(this.env, batch.service).ingest(batch);
    const plain = { tapping: reply.tapping };
    disposeRpcResult(reply);
    return plain;
  }
}
