/**
 * ConfigService: the RPC entrypoint proxies bind to (`entrypoint = "ConfigService"`). It is reachable
 * only through service bindings, never from the internet, and reads the caller's shard only.
 */
import { WorkerEntrypoint } from "cloudflare:workers";
import { Name } from "../../shared/config.ts";
import type { SliceRead } from "../../shared/slice.ts";
import { sliceStoreOf } from "../../durable-objects/config-store.ts";

export class ConfigService extends WorkerEntrypoint<ControlPlaneEnv> {
  /** The service's slice if it changed since `knownVersion` (0 when the proxy has none). */
  async readSlice(service: string, knownVersion: number): Promise<SliceRead> {
    if (!Name.safeParse(service).success) throw new TypeError(`invalid service name: ${JSON.stringify(service)}`);
    return sliceStoreOf(this.env, service).read(service, knownVersion);
  }
}
