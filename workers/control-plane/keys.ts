/**
 * Egress signing keys: the public JWKS (no auth; vendors fetch it) and key administration.
 */
import { Hono } from "hono";
import { jwksRegistryOf, signingKeysOf, type PublicJwk } from "../../durable-objects/signing-keys.ts";
import { configStoreOf } from "../../durable-objects/config-store.ts";

/** Services whose proxies sign egress calls: those with an external backend, plus any that already have keys. */
async function signingServices(env: ControlPlaneEnv): Promise<string[]> {
  const [services, registered] = await Promise.all([configStoreOf(env).listServices(), jwksRegistryOf(env).services()]);
  const egress = services.filter((s) => s.backends.some((b) => b.type === "external")).map((s) => s.name);
  return [...new Set([...egress, ...registered])].sort();
}

/** Keys are generated on first use: the first JWKS read counts as a use for every egress service. */
async function publishedKeys(env: ControlPlaneEnv): Promise<PublicJwk[]> {
  const registry = jwksRegistryOf(env);
  const [wanted, registered] = await Promise.all([signingServices(env), registry.services()]);
  const missing = wanted.filter((s) => !registered.includes(s));
  await Promise.all(missing.map((s) => signingKeysOf(env, s).ensure(s)));
  return registry.keys();
}

/** `GET /.well-known/jwks.json`. */
export function jwksApi(): Hono<{ Bindings: ControlPlaneEnv }> {
  const app = new Hono<{ Bindings: ControlPlaneEnv }>();
  app.get("/jwks.json", async (c) => {
    const keys = await publishedKeys(c.env);
    // Shorter than the time a replaced key stays published (token lifetime + skew), so a cached
    // JWKS never lacks a key whose tokens are still live; vendors refetch on an unknown kid.
    c.header("cache-control", "public, max-age=60, stale-while-revalidate=30");
    return c.json({ keys });
  });
  return app;
}

/** `/admin/keys`: list and rotate (mounted behind the admin token). */
export function keysAdminApi(): Hono<{ Bindings: ControlPlaneEnv }> {
  const app = new Hono<{ Bindings: ControlPlaneEnv }>();
  app.get("/", async (c) => c.json({ keys: await publishedKeys(c.env) }));
  app.post("/rotate", async (c) => {
    const services = await signingServices(c.env);
    const rotated = await Promise.all(
      services.map(async (service) => ({ service, ...(await signingKeysOf(c.env, service).rotate(service)) })),
    );
    return c.json({ rotated, keys: await jwksRegistryOf(c.env).keys() });
  });
  return app;
}
