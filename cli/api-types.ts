/**
 * The admin API's answers as the CLI reads them. Only the fields the CLI uses are listed; the
 * server may send more.
 */
import type { RouteMatch } from "../shared/config.ts";

// The telemetry answers are the control plane's own types.
export type { Golden, ServiceMetrics, TapEvent } from "../shared/metrics.ts";

/** A backend as `GET /admin/services` shows it. */
export interface BackendView {
  name: string;
  type: "worker" | "mesh" | "external";
  binding?: string;
  service?: string;
  origin?: string | string[];
  provider?: string;
}

/** A route as `GET /admin/services` shows it. */
export interface RouteView {
  name: string;
  match: RouteMatch;
  /** Every match of a route with several (the first is `match`). */
  matches?: RouteMatch[];
  split: Record<string, number>;
  sticky: string | null;
}

/** One service of `GET /admin/services` (and `GET /admin/services/{s}`). */
export interface ServiceView {
  name: string;
  backends: BackendView[];
  split: Record<string, number>;
  sticky: string | null;
  routes: RouteView[];
  policy: unknown;
  version: number;
}

/** `GET /admin/config/versions`. */
export interface VersionsView {
  current: number;
  versions: Array<{ version: number; createdAt: string; reason: string; changed: string[] }>;
}
