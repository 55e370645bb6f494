/**
 * Whole-document checks that zod's shape checks cannot express. A config that fails any of them is
 * refused before it is stored, so a proxy never receives a config that cannot work.
 */
import { rpcMethodMatches } from "./authorize.ts";
import type { Backend, MeshConfig, RouteMatch, ServiceConfig } from "./config.ts";
import { headerConditions, orderMatches, segmentPrefix, underPrefix } from "./route-match.ts";

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

/** Does path condition of `a` take every path `b`'s does? Conservative: false when unsure (regular expressions). */
function pathCovers(a: RouteMatch, b: RouteMatch): boolean {
  if (a.pathRegex !== undefined) return b.pathRegex === a.pathRegex;
  if (a.pathPrefix !== undefined) {
    const p = segmentPrefix(a.pathPrefix);
    if (p === "") return true;
    if (b.pathRegex !== undefined) return false;
    if (b.pathPrefix !== undefined) return underPrefix(segmentPrefix(b.pathPrefix), p);
    return b.path.endsWith("*") ? b.path.slice(0, -1).startsWith(`${p}/`) : underPrefix(b.path, p);
  }
  if (a.path.endsWith("*")) {
    const raw = a.path.slice(0, -1);
    if (raw === "/" || raw === "") return true;
    if (b.pathRegex !== undefined) return false;
    if (b.pathPrefix !== undefined) return (segmentPrefix(b.pathPrefix) || "/").startsWith(raw);
    return b.path.replace(/\*$/, "").startsWith(raw);
  }
  return b.pathRegex === undefined && b.pathPrefix === undefined && !b.path.endsWith("*") && a.path === b.path;
}

/** Each of `a`'s conditions is also one of `b`'s (same name, kind and value). */
function conditionsCovered(a: ReadonlyArray<{ name: string; type: string; value: string }>, b: ReadonlyArray<{ name: string; type: string; value: string }>): boolean {
  return a.every((ca) => b.some((cb) => cb.name === ca.name && cb.type === ca.type && cb.value === ca.value));
}

/** Does match `a` take every request match `b` takes? (Then `b`, tried after `a`, never wins.) Conservative. */
export function routeCovers(a: RouteMatch, b: RouteMatch): boolean {
  // RPC routes match RPC calls only, by method; HTTP routes never shadow them (nor they HTTP routes).
  if (a.rpc !== undefined || b.rpc !== undefined) return a.rpc !== undefined && b.rpc !== undefined && rpcMethodMatches(a.rpc, b.rpc.replace(/\*$/, "")) && (a.rpc.endsWith("*") || !b.rpc.endsWith("*"));
  if (!pathCovers(a, b)) return false;
  if (a.methods && !(b.methods && b.methods.every((m) => a.methods?.includes(m)))) return false;
  if (!conditionsCovered(headerConditions(a), headerConditions(b))) return false;
  return conditionsCovered(a.query ?? [], b.query ?? []);
}

/** The literal path a match's paths all start with, for indexing: `undefined` for a regular expression. */
function literalPrefix(match: RouteMatch): { text: string; exact: boolean } | undefined {
  if (match.pathRegex !== undefined) return undefined;
  if (match.pathPrefix !== undefined) return { text: segmentPrefix(match.pathPrefix), exact: false };
  return match.path.endsWith("*") ? { text: match.path.slice(0, -1), exact: false } : { text: match.path, exact: true };
}

type Indexed = { order: number; route: ServiceConfig["routes"][number]; match: RouteMatch };

/**
 * The matches seen so far, indexed by path so that finding one that covers a new match looks only
 * at matches whose path could cover it (same exact path, a prefix of it, or the same regular
 * expression), not at every earlier one: validation stays linear in the number of routes for real
 * configs (8,000 routes included).
 */
class RouteIndex {
  private readonly exact = new Map<string, Indexed[]>();
  private readonly prefixes = new Map<string, Indexed[]>();
  private readonly regexes = new Map<string, Indexed[]>();
  /** Distinct prefix lengths in `prefixes`, so a lookup tries only lengths some route uses. */
  private readonly prefixLengths = new Set<number>();
  private count = 0;

  add(route: ServiceConfig["routes"][number], match: RouteMatch): void {
    const entry = { order: this.count++, route, match };
    const literal = literalPrefix(match);
    const push = (map: Map<string, Indexed[]>, key: string): void => {
      const list = map.get(key);
      if (list) list.push(entry);
      else map.set(key, [entry]);
    };
    if (literal === undefined) push(this.regexes, match.pathRegex ?? "");
    else if (literal.exact) push(this.exact, literal.text);
    else {
      this.prefixLengths.add(literal.text.length);
      push(this.prefixes, literal.text);
    }
  }

  /** The first match added that takes every request `match` does (see {@link routeCovers}). */
  firstCovering(match: RouteMatch): Indexed | undefined {
    let best: Indexed | undefined;
    const consider = (list: ReadonlyArray<Indexed> | undefined): void => {
      for (const candidate of list ?? []) {
        if (best && candidate.order >= best.order) return;
        if (routeCovers(candidate.match, match)) {
          best = candidate;
          return;
        }
      }
    };
    const literal = literalPrefix(match);
    if (literal === undefined) consider(this.regexes.get(match.pathRegex ?? ""));
    if (literal?.exact) consider(this.exact.get(literal.text));
    const bare = literal?.text ?? "";
    // A root prefix is indexed as "" (pathPrefix "/") or "/" (path "/*"): both cover everything.
    for (const length of this.prefixLengths) if (length <= Math.max(bare.length, 1)) consider(this.prefixes.get((bare || "/").slice(0, length)));
    return best;
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

/**
 * Routes no request can reach: every match of the route is taken by an earlier match (in the order
 * the proxy tries them, see orderMatches) of another route.
 */
function checkShadows(service: ServiceConfig, at: (...rest: Array<string | number>) => Array<string | number>): ConfigIssue[] {
  const earlier = new RouteIndex();
  const shadowedBy = new Map<number, { left: number; by: string }>();
  service.routes.forEach((route, r) => shadowedBy.set(r, { left: (route.matches ?? [route.match]).length, by: "" }));
  for (const entry of orderMatches(service.routes, service.precedence)) {
    const cover = earlier.firstCovering(entry.match);
    earlier.add(entry.route, entry.match);
    const state = shadowedBy.get(entry.routeIndex);
    if (cover && cover.route !== entry.route && state) {
      state.left--;
      state.by ||= cover.route.name;
    }
  }
  const issues: ConfigIssue[] = [];
  service.routes.forEach((route, r) => {
    const state = shadowedBy.get(r);
    if (state && state.left === 0) {
      const what = service.precedence === "gateway-api" ? "takes precedence and matches" : "before it matches";
      issues.push(issue(at("routes", r, "match"), `route '${route.name}' is unreachable: route '${state.by}' ${what} every request it would`));
    }
  });
  return issues;
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
  issues.push(...checkShadows(service, at));
  service.routes.forEach((route, r) => {
    if (routeNames.has(route.name)) {
      issues.push(issue(at("routes", r, "name"), `duplicate route name '${route.name}' in service '${service.name}'`));
    }
    routeNames.add(route.name);
    for (const backend of Object.keys(route.backendFilters ?? {})) {
      if (!(backend in route.split.weights)) {
        issues.push(issue(at("routes", r, "backendFilters", backend), `backend filters for '${backend}', which is not in the route's split`));
      }
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
    (route.filters ?? []).forEach((filter, f) => {
      if (filter.type === "RequestMirror" && !backendNames.has(filter.backend)) {
        issues.push(issue(at("routes", r, "filters", f, "backend"), `mirror backend '${filter.backend}' is not a backend of service '${service.name}'`));
      }
    });
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
