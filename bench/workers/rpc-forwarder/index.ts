/**
 * Benchmark floor for Workers RPC: forwards `getProduct` to the upstream over its service binding and
 * nothing else. An RPC proxy on Workers cannot be faster than this; the Weft proxy is measured against it.
 */
import { WorkerEntrypoint } from "cloudflare:workers";

/** The upstream's RPC method, as this worker calls it (its type lives in another script). */
interface ProductApi {
  getProduct(sku: string): Promise<unknown>;
}

export default class RpcForwarder extends WorkerEntrypoint<RpcForwarderEnv> {
  getProduct(sku: string): Promise<unknown> {
    const upstream: unknown = this.env.UPSTREAM;
    return (upstream as ProductApi).getProduct(sku);
  }
}
