/**
 * Egress signing keys: the public JWKS (no auth; vendors fetch it) and key administration.
 *
 * The JWKS is public, so it must cost the control plane nothing per request: it is built at most
 * once per isolate per few seconds (one build at a time), shared between the isolates of a data
 * center through the Cache API under one fixed key (a query string cannot make a miss), and only a
 * build touches the ConfigStore and the JwksRegistry. Every layer of caching — this isolate, the
 * Cache API, and the vendor's own cache including stale-while-revalidate — together stays shorter
 * than the key activation delay, so a vendor always has a rotated key before it signs.
 */
import { Hono } from "hono";
import { activationSecondsOf, jwksRegistryOf, signingKeysOf, type PublicJwk } from "../../durable-objects/signing-keys.ts";
import { configStoreOf } from "../../durable-objects/config-store.ts";

/** How long each layer may keep the JWKS. */
export interface JwksCaching {
  /** In this isolate's memory. */
  isolateMs: number;
  /** In the data center's Cache API. */
  edgeSeconds: number;
  /** `Cache-Control: max-age` for vendors. */
  maxAgeSeconds: number;
  /** `Cache-Control: stale-while-revalidate` for vendors. */
  staleSeconds: number;
}

/**
 * The caching of the JWKS for a control plane whose keys sign `activationSeconds` after they are
 * published: 2 s + 5 s + 28 s + 13 s = 48 s for the default 65 s, scaled down (to nothing) for
 * shorter delays, so the sum of every layer is always below the activation delay.
 */
export function jwksCaching(activationSeconds: number): JwksCaching {
  const budget = Math.max(0, activationSeconds) * 0.8;
  return {
    isolateMs: Math.floor(Math.min(2, budget * 0.04) * 1000),
    edgeSeconds: Math.floor(Math.min(5, budget * 0.1)),
    maxAgeSeconds: Math.floor(Math.min(30, budget * 0.55)),
    staleSeconds: Math.floor(Math.min(15, budget * 0.25)),
  };
}

/** Services whose proxies sign egress calls: those with an external backend, plus any that already have keys. */
async function signingServices(env: ControlPlaneEnv): Promise<string[]> {
  const [services, registered] = await Promise.all([configStoreOf(env).listServices(), jwksRegistryOf(env).services()]);
  const egress = services.filter((s) => s.backends.some((b) => b.type === "external")).map((s) => s.name);
  return [...new Set([...egress, ...registered])].sort();
}

/**
 * The published keys, read from the registry. Keys are generated on first use: building the JWKS
 * counts as a use for every egress service, so a vendor's first fetch already holds their keys.
 */
export async function publishedKeys(env: ControlPlaneEnv): Promise<PublicJwk[]> {
  const registry = jwksRegistryOf(env);
  const [wanted, registered] = await Promise.all([signingServices(env), registry.services()]);
  const missing = wanted.filter((s) => !registered.includes(s));
  await Promise.all(missing.map((s) => signingKeysOf(env, s).ensure(s)));
  return registry.keys();
}

/** Options of a {@link JwksCache}; tests give each cache its own Cache API key. */
export interface JwksCacheOptions {
  /** The Cache API key (a URL of our own, never the request's). */
  cacheKey?: string;
  /** Builds the key set; default {@link publishedKeys}. */
  build?: (env: ControlPlaneEnv) => Promise<PublicJwk[]>;
}

/** The JWKS body, cached in this isolate and in the data center's Cache API. */
export class JwksCache {
  private readonly cacheKey: string;
  private readonly build: (env: ControlPlaneEnv) => Promise<PublicJwk[]>;
  private held: { body: string; until: number } | undefined;
  /** The build under way: concurrent misses share it, so a flood causes one build. */
  private loading: Promise<string> | undefined;

  constructor(options: JwksCacheOptions = {}) {
    this.cacheKey = options.cacheKey ?? "https://weft-control-plane.internal/.well-known/jwks.json";
    this.build = options.build ?? publishedKeys;
  }

  /** The JWKS as JSON text. */
  async body(env: ControlPlaneEnv, caching: JwksCaching): Promise<string> {
    const now = Date.now();
    if (this.held && now < this.held.until) return this.held.body;
    this.loading ??= this.load(env, caching).finally(() => (this.loading = undefined));
    return this.loading;
  }

  /** Forgets the cached set (after a rotation through this isolate). */
  async invalidate(): Promise<void> {
    this.held = undefined;
    await caches.default.delete(this.cacheKey);
  }

  private async load(env: ControlPlaneEnv, caching: JwksCaching): Promise<string> {
    const edge = caching.edgeSeconds > 0 ? await caches.default.match(this.cacheKey) : undefined;
    let body: string;
    if (edge) {
      body = await edge.text();
    } else {
      body = JSON.stringify({ keys: await this.build(env) });
      if (caching.edgeSeconds > 0) {
        await caches.default.put(
          this.cacheKey,
          new Response(body, { headers: { "content-type": "application/json", "cache-control": `max-age=${caching.edgeSeconds}` } }),
        );
      }
    }
    this.held = { body, until: Date.now() + caching.isolateMs };
    return body;
  }
}

/** The isolate's JWKS cache, shared by the JWKS endpoint and key rotation. */
const sharedCache = new JwksCache();

/** `GET /.well-known/jwks.json`. */
export function jwksApi(cache: JwksCache = sharedCache): Hono<{ Bindings: ControlPlaneEnv }> {
  const app = new Hono<{ Bindings: ControlPlaneEnv }>();
  app.get("/jwks.json", async (c) => {
    const caching = jwksCaching(activationSecondsOf(c.env));
    const body = await cache.body(c.env, caching);
    // Vendors refetch on an unknown kid; max-age + stale-while-revalidate + our own caching stay
    // below the activation delay, so a cached JWKS never lacks a key that signs.
    return new Response(body, {
      headers: {
        "content-type": "application/json",
        "cache-control": `public, max-age=${caching.maxAgeSeconds}, stale-while-revalidate=${caching.staleSeconds}`,
      },
    });
  });
  return app;
}

/** `/admin/keys`: list and rotate (mounted behind the admin token). */
export function keysAdminApi(cache: JwksCache = sharedCache): Hono<{ Bindings: ControlPlaneEnv }> {
  const app = new Hono<{ Bindings: ControlPlaneEnv }>();
  app.get("/", async (c) => c.json({ keys: await publishedKeys(c.env) }));
  app.post("/rotate", async (c) => {
    const services = await signingServices(c.env);
    const rotated = await Promise.all(
      services.map(async (service) => ({ service, ...(await signingKeysOf(c.env, service).rotate(service)) })),
    );
    await cache.invalidate();
    return c.json({ rotated, keys: await jwksRegistryOf(c.env).keys() });
  });
  return app;
}
