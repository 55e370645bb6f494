/**
 * ConfigService: the RPC entrypoint proxies bind to (`entrypoint = "ConfigService"`). It is reachable
 * only through service bindings that the deployer gives to proxies, never from the internet.
 *
 * Each binding names the one service its proxy serves in its props (`props = { service = "cart" }`,
 * written by `weft generate`); a worker's code cannot change its bindings' props. Every call is
 * answered for that service only: a proxy cannot read another service's slice, sign as another
 * service, feed another service's telemetry (which rollouts judge on) or spend its rate limits. A
 * binding without the prop is refused. The methods keep their `service` argument for compatibility;
 * it must equal the bound service.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { Name } from "../../shared/config.ts";
import { disposeRpcResult, type ControlPlaneApi, type EgressClaims, type SliceRead, type VendorTokenRequest } from "../../shared/slice.ts";
import { vendorTokensOf, webhookDeliveriesOf } from "../../durable-objects/vendors.ts";
import { sliceStoreOf } from "../../durable-objects/config-store.ts";
import { signingKeysOf } from "../../durable-objects/signing-keys.ts";
import { rateCounterOf } from "../../durable-objects/rate-counter.ts";
import { MAX_LEASE_BATCH, plainLease, shardOf, type AheadAsk, type Grant, type LeaseAsk, type LimitSpec } from "../../shared/rate-limit.ts";
import type { IngestReply, TelemetryBatch } from "../../shared/metrics.ts";
import { telemetryStoreOf } from "../../durable-objects/telemetry-store.ts";

/** Bounds on one telemetry batch (a proxy sends far less); larger ones are refused. */
const MAX_BATCH_SERIES = 10_000;
const MAX_BATCH_EVENTS = 5_000;
/** A batch id: 1-64 characters of a UUID's or base64url's alphabet. */
const BATCH_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The service a binding's props name, if they name a valid one. */
export function boundServiceOf(props: unknown): string | undefined {
  if (typeof props !== "object" || props === null || !("service" in props)) return undefined;
  const service = props.service;
  return typeof service === "string" && Name.safeParse(service).success ? service : undefined;
}

/** Whether a call naming `claimed` may proceed on a binding for `bound`, or why not. */
export type BindingCheck = { ok: true; service: string } | { ok: false; reason: string };

/** Decides one call: `claimed` is the service the proxy names, `bound` the one its binding's props name. */
export function checkBinding(bound: string | undefined, claimed: string): BindingCheck {
  if (bound === undefined) {
    return { ok: false, reason: "this CONTROL_PLANE binding has no props.service: bind it with props = { service = \"<service>\" } (weft generate does)" };
  }
  if (claimed !== bound) return { ok: false, reason: `this binding serves '${bound}', not ${JSON.stringify(String(claimed).slice(0, 64))}` };
  return { ok: true, service: bound };
}

export class ConfigService extends WorkerEntrypoint<ControlPlaneEnv> implements ControlPlaneApi {
  /** The bound service, after checking that the call is about it; throws otherwise. */
  private serviceFor(claimed: string): string {
    const check = checkBinding(boundServiceOf(this.ctx.props), claimed);
    if (!check.ok) throw new TypeError(check.reason);
    return check.service;
  }

  /** The service's slice if it changed since `knownVersion` (0 when the proxy has none). */
  async readSlice(claimed: string, knownVersion: number): Promise<SliceRead> {
    const service = this.serviceFor(claimed);
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
  async signEgress(claimed: string, claims: EgressClaims): Promise<{ token: string; kid: string }> {
    const service = this.serviceFor(claimed);
    const signed = await signingKeysOf(this.env, service).sign(service, claims);
    const plain = { token: signed.token, kid: signed.kid };
    disposeRpcResult(signed);
    return plain;
  }

  /** A counter belongs to its scope's service; provider quotas (`egress/...`) to every bound proxy. */
  private checkCounterOwner(counter: string): void {
    const owner = counter.split("/", 1)[0] ?? "";
    this.serviceFor(owner === "egress" ? (boundServiceOf(this.ctx.props) ?? "") : owner);
  }

  /**
   * Leases rate-limit tokens from the counter `scope/limit/digest` (shared/rate-limit.ts
   * `counterName`), in its shard. A provider's quota counters (`egress/<provider>/...`) are shared
   * by every service that calls the provider, so any bound proxy may lease from them; every other
   * counter belongs to the bound service.
   */
  async leaseTokens(counter: string, spec: LimitSpec, want: number, ahead?: AheadAsk): Promise<Omit<Grant, "state">> {
    if (typeof counter !== "string" || counter.length > 512 || shardOf(counter) === undefined) throw new TypeError("invalid counter name");
    this.checkCounterOwner(counter);
    const leased = await rateCounterOf(this.env, counter).lease(spec, want, counter, ahead);
    const plain = plainLease(leased);
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
      this.checkCounterOwner(ask.counter);
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
          if (one) answers[index] = plainLease(one);
        }
        disposeRpcResult(leased);
      }),
    );
    return answers;
  }

  /** Stores a proxy's telemetry batch in its service's shard. */
  async recordTelemetry(batch: TelemetryBatch): Promise<IngestReply> {
    this.serviceFor(batch.service);
    // The id is stored for a while (deduplication): bounded, like everything keyed by a caller's value.
    if (typeof batch.batchId !== "string" || !BATCH_ID.test(batch.batchId)) throw new TypeError("invalid batch id");
    if (batch.series.length > MAX_BATCH_SERIES || batch.events.length > MAX_BATCH_EVENTS) throw new RangeError("telemetry batch too large");
    const reply = await telemetryStoreOf(this.env, batch.service).ingest(batch);
    const plain: IngestReply = { tapping: reply.tapping, ...(reply.flushAfterMs !== undefined ? { flushAfterMs: reply.flushAfterMs } : {}) };
    disposeRpcResult(reply);
    return plain;
  }

  /** Records a verified webhook delivery in its service's replay store. */
  async claimWebhookDelivery(claimed: string, key: string, ttlSeconds: number): Promise<"first" | "replay" | "full"> {
    const service = this.serviceFor(claimed);
    if (!/^[0-9a-f]{64}$/.test(key)) throw new TypeError("invalid delivery key");
    return webhookDeliveriesOf(this.env, service).claim(key, ttlSeconds, Date.now());
  }

  /**
   * A client-credentials token from the object of that OAuth client: the key hashes everything that
   * makes a token, the secret included, so two proxies share a token only if they share the client.
   */
  async vendorToken(claimed: string, request: VendorTokenRequest): Promise<{ accessToken: string; expiresAt: number }> {
    this.serviceFor(claimed);
    if (!/^https?:\/\//.test(request.tokenUrl) || request.clientId.length > 256 || request.clientSecret.length > 4_096) throw new TypeError("invalid token request");
    const identity = JSON.stringify([request.tokenUrl, request.clientId, request.scope ?? "", request.audience ?? "", request.authMethod, request.clientSecret]);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(identity)));
    const key = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    const token = await vendorTokensOf(this.env, key).token(request);
    const plain = { accessToken: token.accessToken, expiresAt: token.expiresAt };
    disposeRpcResult(token);
    return plain;
  }
}
