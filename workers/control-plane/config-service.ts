/**
 * ConfigService: the RPC entrypoint proxies bind to (`entrypoint = "ConfigService"`). It is reachable
 * only through service bindings that the deployer gives to proxies, never from the internet.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { Name } from "../../shared/config.ts";
import type { ControlPlaneApi, EgressClaims, SliceRead } from "../../shared/slice.ts";
import { sliceStoreOf } from "../../durable-objects/config-store.ts";
import { signingKeysOf } from "../../durable-objects/signing-keys.ts";

export class ConfigService extends WorkerEntrypoint<ControlPlaneEnv> implements ControlPlaneApi {
  /** The service's slice if it changed since `knownVersion` (0 when the proxy has none). */
  async readSlice(service: string, knownVersion: number): Promise<SliceRead> {
    if (!Name.safeParse(service).success) throw new TypeError(`invalid service name: ${JSON.stringify(service)}`);
    return sliceStoreOf(this.env, service).read(service, knownVersion);
  }

  /**
   * Signs a token for one call from `service`'s proxy to a third party, in that service's signing
   * shard (the private key never leaves it).
   */
  async signEgress(service: string, claims: EgressClaims): Promise<{ token: string; kid: string }> {
    if (!Name.safeParse(service).success) throw new TypeError(`invalid service name: ${JSON.stringify(service)}`);
    return signingKeysOf(this.env, service).sign(service, claims);
  }
}
