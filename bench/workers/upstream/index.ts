/**
 * Benchmark upstream: answers every request with the same small product document, as cheaply as a
 * worker can, so the benchmark measures what sits in front of it. Over Workers RPC,
 * `getProduct(sku)` answers the same product as an object (the RPC cases).
 */
import { WorkerEntrypoint } from "cloudflare:workers";

const PRODUCT = {
  sku: "bench-0001",
  name: "Merino crew-neck sweater",
  price: { amount: 8900, currency: "EUR" },
  stock: 42,
};
const PRODUCT_JSON = JSON.stringify(PRODUCT);

export default class Upstream extends WorkerEntrypoint<UpstreamEnv> {
  override fetch(): Response {
    return new Response(PRODUCT_JSON, { headers: { "content-type": "application/json" } });
  }

  getProduct(sku: string): typeof PRODUCT {
    return { ...PRODUCT, sku };
  }
}
