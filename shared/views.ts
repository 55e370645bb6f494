/** How the admin API presents stored state. */
import type { Backend, Policy, RouteMatch, StickyKey, Weights } from "./config.ts";
import { defaultRoute, type StoredService } from "./slice.ts";

/** One service in `GET /admin/services`; `split` is the default route's weights. */
export interface ServiceView {
  name: string;
  backends: Backend[];
  split: Weights;
  sticky: StickyKey | null;
  routes: Array<{ name: string; match: RouteMatch; split: Weights; sticky: StickyKey | null }>;
  /** The authorization policy, or null when every caller is allowed. */
  policy: Policy | null;
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
    routes: config.routes.map((r) => ({ name: r.name, match: r.match, split: r.split.weights, sticky: r.split.sticky ?? null })),
    policy: config.policy ?? null,
    version,
  };
}
