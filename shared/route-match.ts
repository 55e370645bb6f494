/**
 * Route matching: a route's matches compiled once per config version into plain predicates, and the
 * order in which a service's matches are tried (its listed order, or the Gateway API's HTTPRoute
 * precedence). Pure: the proxy and the validator share it.
 */
import type { RouteMatch } from "./config.ts";
import { fullMatcher, isRegexProgram, type RegexProgram } from "./regex-program.ts";

/**
 * The compiled programs of a slice's regular expressions, by source (the control plane compiles
 * them with re2js: shared/regex.ts; the proxy only runs them).
 */
export type RegexPrograms = Readonly<Record<string, RegexProgram>>;

/** The program for `source`, checked; throws when the slice lacks it (a slice from an older control plane). */
function programFor(programs: RegexPrograms, source: string): RegexProgram {
  const program: unknown = Object.hasOwn(programs, source) ? programs[source] : undefined;
  if (!isRegexProgram(program)) throw new Error(`the slice carries no compiled program for the regular expression '${source.slice(0, 64)}' (apply the config again to republish it)`);
  return program;
}

/** Every regular expression a route's matches use: what a slice must carry compiled. */
export function regexSources(routes: ReadonlyArray<{ match: RouteMatch; matches?: RouteMatch[] | undefined }>): string[] {
  const sources = new Set<string>();
  for (const route of routes) {
    for (const match of route.matches ?? [route.match]) {
      if (match.pathRegex !== undefined) sources.add(match.pathRegex);
      for (const h of headerConditions(match)) if (h.type === "RegularExpression") sources.add(h.value);
      for (const q of match.query ?? []) if (q.type === "RegularExpression") sources.add(q.value);
    }
  }
  return [...sources];
}

/** What a match looks at. `query` is parsed only when some match needs it. */
export interface MatchInput {
  method: string;
  /** The canonical path (shared/path.ts). */
  path: string;
  headers: Headers;
  query(): URLSearchParams;
}

/** A compiled match. */
export interface CompiledMatch {
  test(input: MatchInput): boolean;
  /** The path prefix the match selects (for `ReplacePrefixMatch`), without a trailing `/`; `""` for the root. */
  prefix: string | undefined;
}

type ValueTest = (value: string | null) => boolean;

function valueTest(type: "Exact" | "RegularExpression", expected: string, programs: RegexPrograms): ValueTest {
  if (type === "Exact") return (value) => value === expected;
  const matches = fullMatcher(programFor(programs, expected));
  return (value) => value !== null && matches(value);
}

/** `/abc/` and `/abc` select the same segments; the root prefix is `""` (every path). */
export function segmentPrefix(prefix: string): string {
  return prefix.replace(/\/+$/, "");
}

/** Whether `path` lies under `prefix` (from {@link segmentPrefix}) whole segment by segment. */
export function underPrefix(path: string, prefix: string): boolean {
  return prefix === "" || path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 0x2f);
}

function pathTest(match: RouteMatch, programs: RegexPrograms): { test: (path: string) => boolean; prefix: string | undefined } {
  if (match.pathRegex !== undefined) {
    return { test: fullMatcher(programFor(programs, match.pathRegex)), prefix: undefined };
  }
  if (match.pathPrefix !== undefined) {
    const prefix = segmentPrefix(match.pathPrefix);
    return { test: (path) => underPrefix(path, prefix), prefix };
  }
  if (match.path.endsWith("*")) {
    // A raw prefix (`/orders*` matches `/orders-archive` too): Weft's own syntax, kept as it was.
    const raw = match.path.slice(0, -1);
    return { test: (path) => path.startsWith(raw), prefix: raw.endsWith("/") ? segmentPrefix(raw) : raw };
  }
  const exact = match.path;
  return { test: (path) => path === exact, prefix: undefined };
}

/** Header conditions as `[lowercase name, type, value]`, whichever way they were written. */
export function headerConditions(match: RouteMatch): Array<{ name: string; type: "Exact" | "RegularExpression"; value: string }> {
  const headers = match.headers;
  if (headers === undefined) return [];
  if (Array.isArray(headers)) return headers.map((h) => ({ name: h.name.toLowerCase(), type: h.type, value: h.value }));
  return Object.entries(headers).map(([name, value]) => ({ name: name.toLowerCase(), type: "Exact" as const, value }));
}

/** Compiles one match; every condition it has must hold. Its regular expressions come compiled in `programs`. */
export function compileMatch(match: RouteMatch, programs: RegexPrograms): CompiledMatch {
  const path = pathTest(match, programs);
  const methods = match.methods ? new Set<string>(match.methods) : undefined;
  const headers = headerConditions(match).map((h) => ({ name: h.name, test: valueTest(h.type, h.value, programs) }));
  const query = (match.query ?? []).map((q) => ({ name: q.name, test: valueTest(q.type, q.value, programs) }));
  return {
    prefix: path.prefix,
    test: (input) => {
      if (!path.test(input.path)) return false;
      if (methods !== undefined && !methods.has(input.method)) return false;
      for (const h of headers) if (!h.test(input.headers.get(h.name))) return false;
      if (query.length > 0) {
        const params = input.query();
        for (const q of query) if (!q.test(params.get(q.name))) return false;
      }
      return true;
    },
  };
}

/** One match of one route, at its place in the order matches are tried. */
export interface OrderedMatch<R> {
  route: R;
  routeIndex: number;
  match: RouteMatch;
  matchIndex: number;
}

/** The kind of path a match has, in the Gateway API's precedence order (exact first). */
function pathRank(match: RouteMatch): { rank: number; length: number } {
  if (match.pathRegex !== undefined) return { rank: 1, length: match.pathRegex.length };
  if (match.pathPrefix !== undefined) return { rank: 2, length: match.pathPrefix.length };
  if (match.path.endsWith("*")) return { rank: 2, length: match.path.length - 1 };
  return { rank: 0, length: match.path.length };
}

/**
 * Negative when `a` takes precedence over `b` under the Gateway API's HTTPRoute rules: an exact path
 * first, then (implementation-specific, as Envoy Gateway does) regular expressions, then prefixes —
 * longer before shorter within each kind — then a method match, more header matches, more query
 * parameter matches. Ties keep their listed order (the spec's route age/name and rule order).
 */
export function comparePrecedence(a: RouteMatch, b: RouteMatch): number {
  const pa = pathRank(a);
  const pb = pathRank(b);
  if (pa.rank !== pb.rank) return pa.rank - pb.rank;
  if (pa.length !== pb.length) return pb.length - pa.length;
  const ma = a.methods ? 1 : 0;
  const mb = b.methods ? 1 : 0;
  if (ma !== mb) return mb - ma;
  const ha = headerConditions(a).length;
  const hb = headerConditions(b).length;
  if (ha !== hb) return hb - ha;
  return (b.query?.length ?? 0) - (a.query?.length ?? 0);
}

/**
 * Every match of every route, in the order they are tried: listed order (routes, then their
 * matches), or sorted by {@link comparePrecedence} with listed order breaking ties.
 */
export function orderMatches<R extends { match: RouteMatch; matches?: RouteMatch[] | undefined }>(
  routes: ReadonlyArray<R>,
  precedence: "listed" | "gateway-api" | undefined,
): Array<OrderedMatch<R>> {
  const all = routes.flatMap((route, routeIndex) => (route.matches ?? [route.match]).map((match, matchIndex) => ({ route, routeIndex, match, matchIndex })));
  if (precedence !== "gateway-api") return all;
  // Array.prototype.sort is stable, so equal precedence keeps the listed order.
  return all.sort((a, b) => comparePrecedence(a.match, b.match));
}

/** A match in a few words for terminals: `GET,HEAD prefix /v2 +2 headers +1 query`. */
export function describeMatch(match: RouteMatch): string {
  if (match.rpc !== undefined) return `rpc ${match.rpc}`;
  const path = match.pathRegex !== undefined ? `regex ${match.pathRegex}` : match.pathPrefix !== undefined ? `prefix ${match.pathPrefix}` : match.path;
  const headers = headerConditions(match).length;
  const query = match.query?.length ?? 0;
  return [match.methods ? match.methods.join(",") : "", path, headers > 0 ? `+${headers} header${headers === 1 ? "" : "s"}` : "", query > 0 ? `+${query} query` : ""].filter(Boolean).join(" ");
}
