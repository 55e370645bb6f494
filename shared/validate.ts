/**
 * Whole-document checks that zod's shape checks cannot express. A config that fails any of them is
 * refused before it is stored, so a proxy never receives a config that cannot work.
 */
import { rpcMethodMatches } from "./authorize.ts";
import type { Backend, MeshConfig, RouteMatch, ServiceConfig } from "./config.ts";

/** One refusal, in the shape of a zod issue so clients see a single format. */
export interface ConfigIssue {
  code: "custom";
  path: Array<string | number>;
  message: string;
}

/** Options that differ between local development and production. */
export interface ValidateOptions {
  /** Accept `http://localhost` / `http://127.0.0.1` external origins (local development only). */
  allowLocalhostHttp: boolean;
}

const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

function issue(path: Array<string | number>, message: string): ConfigIssue {
  return { code: "custom", path, message };
}

/** Does route `a` match every request route `b` matches? (Then `b`, listed after `a`, is unreachable.) */
export function routeCovers(a: RouteMatch, b: RouteMatch): boolean {
  // RPC routes match RPC calls only, by method; HTTP routes never shadow them (nor they HTTP routes).
  if (a.rpc !== undefined || b.rpc !== undefined) return a.rpc !== undefined && b.rpc !== undefined && rpcMethodMatches(a.rpc, b.rpc.replace(/\*$/, "")) && (a.rpc.endsWith("*") || !b.rpc.endsWith("*"));
  const pathCovered = a.path.endsWith("*")
    ? b.path.replace(/\*$/, "").startsWith(a.path.slice(0, -1))
    : !b.path.endsWith("*") && a.path === b.path;
  if (!pathCovered) return false;
  if (a.methods && !(b.methods && b.methods.every((m) => a.methods?.includes(m)))) return false;
  const bHeaders = new Map(Object.entries(b.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return Object.entries(a.headers ?? {}).every(([k, v]) => bHeaders.get(k.toLowerCase()) === v);
}

/**
 * The routes seen so far, indexed by path so that finding one that shadows a new route looks only
 * at routes whose path could cover it (same exact path, or a prefix of it), not at every earlier
 * route: validation stays linear in the number of routes for real configs (8,000 routes included).
 */
class RouteIndex {
  private readonly exact = new Map<string, Array<{ order: number; route: ServiceConfig["routes"][number] }>>();
  private readonly prefixes = new Map<string, Array<{ order: number; route: ServiceConfig["routes"][number] }>>();
  /** Distinct prefix lengths in `prefixes`, so a lookup tries only lengths some route uses. */
  private readonly prefixLengths = new Set<number>();
  private count = 0;

  add(route: ServiceConfig["routes"][number]): void {
    const entry = { order: this.count++, route };
    const { path } = route.match;
    if (path.endsWith("*")) {
      const prefix = path.slice(0, -1);
      this.prefixLengths.add(prefix.length);
      const list = this.prefixes.get(prefix);
      if (list) list.push(entry);
      else this.prefixes.set(prefix, [entry]);
    } else {
      const list = this.exact.get(path);
      if (list) list.push(entry);
      else this.exact.set(path, [entry]);
    }
  }

  /** The first route added that matches every request `match` does (see {@link routeCovers}). */
  firstCovering(match: RouteMatch): ServiceConfig["routes"][number] | undefined {
    let best: { order: number; route: ServiceConfig["routes"][number] } | undefined;
    const consider = (list: ReadonlyArray<{ order: number; route: ServiceConfig["routes"][number] }> | undefined): void => {
      for (const candidate of list ?? []) {
        if (best && candidate.order >= best.order) return;
        if (routeCovers(candidate.route.match, match)) {
          best = candidate;
          return;
        }
      }
    };
    const bare = match.path.replace(/\*$/, "");
    if (!match.path.endsWith("*")) consider(this.exact.get(match.path));
    for (const length of this.prefixLengths) if (length <= bare.length) consider(this.prefixes.get(bare.slice(0, length)));
    return best?.route;
  }
}

function checkExternalOrigin(
  backend: Extract<Backend, { type: "external" }>,
  path: Array<string | number>,
  options: ValidateOptions,
): ConfigIssue[] {
  const origins = typeof backend.origin === "string" ? [backend.origin] : backend.origin;
  return origins.flatMap((origin, i) => {
    const at = typeof backend.origin === "string" ? [...path, "origin"] : [...path, "origin", i];
    const url = new URL(origin);
    const issues: ConfigIssue[] = [];
    if (url.protocol !== "https:" && !(options.allowLocalhostHttp && LOCAL_HOSTS.has(url.hostname))) {
      issues.push(
        issue(
          at,
          options.allowLocalhostHttp
            ? `external origin must use https (http is only accepted for localhost in development): ${origin}`
            : `external origin must use https: ${origin}`,
        ),
      );
    }
    if (url.username || url.password || url.search || url.hash || origin.includes("?") || origin.includes("#")) {
      issues.push(issue(at, `external origin must be scheme://host[:port][/base-path], without credentials, query or fragment`));
    }
    return issues;
  });
}

function checkService(service: ServiceConfig, index: number, options: ValidateOptions): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const at = (...rest: Array<string | number>) => ["services", index, ...rest];
  const backendNames = new Set<string>();
  service.backends.forEach((backend, b) => {
    if (backendNames.has(backend.name)) {
      issues.push(issue(at("backends", b, "name"), `duplicate backend '${backend.name}' in service '${service.name}'`));
    }
    backendNames.add(backend.name);
    if (backend.type === "external") issues.push(...checkExternalOrigin(backend, at("backends", b), options));
    if (backend.type === "mesh" && backend.service === service.name) {
      issues.push(issue(at("backends", b, "service"), `backend '${backend.name}' routes service '${service.name}' to itself`));
    }
  });

  const routeNames = new Set<string>();
  const earlier = new RouteIndex();
  service.routes.forEach((route, r) => {
    if (routeNames.has(route.name)) {
      issues.push(issue(at("routes", r, "name"), `duplicate route name '${route.name}' in service '${service.name}'`));
    }
    routeNames.add(route.name);
    const shadow = earlier.firstCovering(route.match);
    earlier.add(route);
    if (shadow) {
      issues.push(
        issue(
          at("routes", r, "match"),
          `route '${route.name}' is unreachable: route '${shadow.name}' before it matches every request it would`,
        ),
      );
    }
    let total = 0;
    for (const [backend, weight] of Object.entries(route.split.weights)) {
      total += weight;
      if (!backendNames.has(backend)) {
        issues.push(
          issue(
            at("routes", r, "split", "weights", backend),
            `unknown backend '${backend}' (service '${service.name}' has: ${[...backendNames].join(", ")})`,
          ),
        );
      }
    }
    if (total !== 100) {
      issues.push(issue(at("routes", r, "split", "weights"), `weights must sum to 100, got ${total}`));
    }
    if (route.mirror && !backendNames.has(route.mirror.backend)) {
      issues.push(issue(at("routes", r, "mirror", "backend"), `mirror backend '${route.mirror.backend}' is not a backend of service '${service.name}'`));
    }
    (route.failover ?? []).forEach((backend, f) => {
      if (!backendNames.has(backend)) {
        issues.push(issue(at("routes", r, "failover", f), `failover backend '${backend}' is not a backend of service '${service.name}'`));
      }
    });
  });
  const limitNames = new Set<string>();
  (service.rateLimits ?? []).forEach((rule, l) => {
    const name = rule.name ?? `limit-${l}`;
    if (limitNames.has(name)) issues.push(issue(at("rateLimits", l, "name"), `duplicate rate limit name '${name}'`));
    limitNames.add(name);
    for (const route of rule.routes ?? []) {
      if (!routeNames.has(route)) issues.push(issue(at("rateLimits", l, "routes"), `rate limit '${name}' names unknown route '${route}'`));
    }
    if (rule.burst !== undefined && rule.algorithm !== "token-bucket") {
      issues.push(issue(at("rateLimits", l, "burst"), `'burst' applies to algorithm 'token-bucket' only`));
    }
  });
  (service.faults ?? []).forEach((fault, f) => {
    if (!backendNames.has(fault.backend)) {
      issues.push(issue(at("faults", f, "backend"), `fault for unknown backend '${fault.backend}' (service '${service.name}' has: ${[...backendNames].join(", ")})`));
    }
  });
  return issues;
}

/** Services that reach each other through `mesh` backends must not form a cycle (a routing loop). */
function checkLoops(config: MeshConfig): ConfigIssue[] {
  const index = new Map(config.services.map((s, i) => [s.name, i]));
  const issues: ConfigIssue[] = [];
  config.services.forEach((service, s) => {
    service.backends.forEach((backend, b) => {
      if (backend.type === "mesh" && !index.has(backend.service)) {
        issues.push(
          issue(["services", s, "backends", b, "service"], `backend '${backend.name}' points at unknown service '${backend.service}'`),
        );
      }
    });
  });
  const state = new Map<string, "visiting" | "done">();
  const reported = new Set<string>();
  // One shared trail (pushed and popped), so a long chain of services costs linear time, not quadratic.
  const trail: string[] = [];
  const visit = (name: string): void => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      const cycle = [...trail.slice(trail.indexOf(name)), name];
      const key = [...cycle].sort().join(",");
      if (!reported.has(key)) {
        reported.add(key);
        issues.push(issue(["services", index.get(name) ?? 0], `routing loop: ${cycle.join(" → ")}`));
      }
      return;
    }
    state.set(name, "visiting");
    trail.push(name);
    const service = config.services[index.get(name) ?? -1];
    for (const backend of service?.backends ?? []) {
      // Self-references are reported by checkService; follow only edges to other services here.
      if (backend.type === "mesh" && backend.service !== name && index.has(backend.service)) visit(backend.service);
    }
    trail.pop();
    state.set(name, "done");
  };
  for (const service of config.services) visit(service.name);
  return issues;
}

/** All reasons `config` cannot work; empty when it can be stored. */
export function validateMesh(config: MeshConfig, options: ValidateOptions): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const seen = new Set<string>();
  config.services.forEach((service, s) => {
    if (seen.has(service.name)) issues.push(issue(["services", s, "name"], `duplicate service '${service.name}'`));
    seen.add(service.name);
    issues.push(...checkService(service, s, options));
  });
  issues.push(...checkLoops(config));
  return issues;
}
