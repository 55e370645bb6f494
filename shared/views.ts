/** How the admin API presents stored state. */
import type { Backend, FaultRule, Policy, RateLimitRule, RouteMatch, RouteResilience, StickyKey, Weights } from "./config.ts";
import { defaultRoute, type StoredService } from "./slice.ts";

/** One service in `GET /admin/services`; `split` is the default route's weights. */
export interface ServiceView {
  name: string;
  backends: Backend[];
  split: Weights;
  sticky: StickyKey | null;
  routes: Array<{ name: string; match: RouteMatch; matches?: RouteMatch[]; split: Weights; sticky: StickyKey | null } & RouteResilience>;
  /** The authorization policy, or null when every caller is allowed. */
  policy: Policy | null;
  /** Injected faults (rehearsals); empty in normal operation. */
  faults: FaultRule[];
  /** Rate limits; empty when none. */
  rateLimits: RateLimitRule[];
  /** The rollout that owns a route's split right now, or null. */
  rollout: { id: string; route: string; backend: string } | null;
  /** The config version that last changed this service; use it as `If-Match`. */
  version: number;
}

/** Builds the admin view of a stored service. */
export function serviceView(stored: StoredService, version: number): ServiceView {
  const { config } = stored;
  const main = defaultRoute(config.routes);
  return {
    name: config.name,
    backends: config.backends,
    split: main?.split.weights ?? {},
    sticky: main?.split.sticky ?? null,
    routes: config.routes.map((r) => ({
      name: r.name,
      match: r.match,
      ...(r.matches ? { matches: r.matches } : {}),
      split: r.split.weights,
      sticky: r.split.sticky ?? null,
      ...(r.timeoutMs !== undefined ? { timeoutMs: r.timeoutMs } : {}),
      ...(r.retries ? { retries: r.retries } : {}),
      ...(r.failover ? { failover: r.failover } : {}),
      ...(r.mirror ? { mirror: r.mirror } : {}),
    })),
    policy: config.policy ?? null,
    faults: config.faults ?? [],
    rateLimits: config.rateLimits ?? [],
    rollout: stored.rollout ? { id: stored.rollout.id, route: stored.rollout.route, backend: stored.rollout.backend } : null,
    version,
  };
}

/** A service's resilience settings by route, as `GET /admin/services/{service}/resilience` shows them. */
export function resilienceView(config: { routes: ReadonlyArray<RouteResilience & { name: string }> }): { routes: Record<string, RouteResilience> } {
  const routes: Record<string, RouteResilience> = {};
  for (const route of config.routes) {
    const settings: RouteResilience = {
      ...(route.timeoutMs !== undefined ? { timeoutMs: route.timeoutMs } : {}),
      ...(route.retries ? { retries: route.retries } : {}),
      ...(route.failover ? { failover: route.failover } : {}),
      ...(route.mirror ? { mirror: route.mirror } : {}),
      ...(route.honoursIdempotencyKey ? { honoursIdempotencyKey: true } : {}),
    };
    if (Object.keys(settings).length > 0) routes[route.name] = settings;
  }
  return { routes };
}
