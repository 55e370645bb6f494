/**
 * Benchmark floor: forwards every request over a service binding and nothing else. A proxy on
 * Workers cannot be faster than this; the Weft proxy is measured against it.
 */
export default {
  fetch(request, env): Promise<Response> {
    return env.UPSTREAM.fetch(request);
  },
} satisfies ExportedHandler<BareProxyEnv>;
