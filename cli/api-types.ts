/**
 * The admin API's answers as the CLI reads them. Only the fields the CLI uses are listed; the
 * server may send more.
 */
import type { RouteMatch } from "../shared/config.ts";

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

/** The golden signals of `GET /admin/metrics`. */
export interface Golden {
  requests: number;
  rps: number;
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  statusClasses: Record<"1xx" | "2xx" | "3xx" | "4xx" | "5xx", number>;
  retries: number;
}

/** `GET /admin/metrics?service=&window=`. */
export interface ServiceMetrics {
  service: string;
  windowSeconds: number;
  total: Golden & { rateLimited: number; ejections: number };
  backends: Array<Golden & { backend: string }>;
}

/** `GET /admin/config/versions`. */
export interface VersionsView {
  current: number;
  versions: Array<{ version: number; createdAt: string; reason: string; changed: string[] }>;
}

/** One request of `GET /admin/tap`. */
export interface TapEvent {
  at: string;
  service: string;
  method: string;
  path: string;
  route: string | null;
  backend: string | null;
  caller: string;
  status: number;
  durationMs: number;
  traceId: string;
  spanId: string;
  attempts: number;
}
