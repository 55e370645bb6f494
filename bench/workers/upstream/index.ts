/**
 * Benchmark upstream: answers every request with the same small product document, as cheaply as a
 * worker can, so the benchmark measures what sits in front of it.
 */
const PRODUCT = JSON.stringify({
  sku: "bench-0001",
  name: "Merino crew-neck sweater",
  price: { amount: 8900, currency: "EUR" },
  stock: 42,
});

export default {
  fetch(): Response {
    return new Response(PRODUCT, { headers: { "content-type": "application/json" } });
  },
} satisfies ExportedHandler<UpstreamEnv>;
