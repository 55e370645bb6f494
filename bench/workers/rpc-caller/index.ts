/**
 * Benchmark client for Workers RPC: one RPC call per HTTP request, its result as JSON. The load
 * generator speaks HTTP; what differs between the RPC cases is only what TARGET is bound to.
 */
import { disposeRpcResult } from "../../../shared/slice.ts";

/** The RPC method the caller uses (its type lives in another script). */
interface ProductApi {
  getProduct(sku: string): Promise<unknown>;
}

export default {
  async fetch(request, env): Promise<Response> {
    const sku = new URL(request.url).pathname.split("/").pop() || "bench-0001";
    const target: unknown = env.TARGET;
    const product = await (target as ProductApi).getProduct(sku);
    const response = Response.json(product);
    disposeRpcResult(product);
    return response;
  },
} satisfies ExportedHandler<RpcCallerEnv>;
