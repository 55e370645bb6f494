/**
 * Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1) in and out of Weft's config, the GAMMA
 * (mesh) way: a `parentRef` of kind `Service` names a Weft service, each `backendRef` one of its
 * backends, each rule becomes one Weft route and the service takes the Gateway API's precedence.
 *
 * Pure: documents in (already parsed from YAML or JSON), routes out. A field Weft cannot honour is
 * reported with its path and a reason (as an implementation reports `Accepted=False` with reason
 * `UnsupportedValue`), and the route is not accepted: nothing is silently dropped. Weft's own route
 * settings that HTTPRoute has no field for (authentication, contracts, failover…) travel in the
 * annotation {@link OVERRIDES_ANNOTATION}, so `import(export(service))` gives the service's routes back.
 */
import { Cors, HttpMethod, Route, type HeaderModifier, type PathModifier, type RouteConfig, type RouteFilter, type RouteInput, type RouteMatch, type ServiceConfig } from "./config.ts";

export const API_VERSION = "gateway.networking.k8s.io/v1";
/** Route settings the HTTPRoute form cannot carry, as JSON: `{ "<route>": { "<field>": value | null } }` (null: absent). */
export const OVERRIDES_ANNOTATION = "weft.dev/route-overrides";
/** `listed` when the service tries routes in listed order rather than by the Gateway API's precedence. */
export const PRECEDENCE_ANNOTATION = "weft.dev/precedence";

/** Most HTTPRoute documents one file may hold, and most rules per route (the Gateway API's own limit is 16). */
export const MAX_DOCUMENTS = 256;
const MAX_RULES = 16;

/** Why a field stops a route from being accepted. */
export type FindingReason = "Invalid" | "UnsupportedValue" | "BackendNotFound" | "NoMatchingParent";

/** One field of one HTTPRoute that Weft refuses, named by its path in the document. */
export interface HttpRouteFinding {
  /** `namespace/name` of the HTTPRoute (or `#index` when it has no name). */
  route: string;
  /** JSONPath-like field: `spec.rules[0].filters[1].requestMirror.fraction`. */
  field: string;
  reason: FindingReason;
  message: string;
}

/** A rule's way into Weft: which HTTPRoute rule became which route. */
export interface RuleSource {
  route: string;
  rule: number;
  weftRoute: string;
}

/** The routes one service gets from the HTTPRoutes naming it. */
export interface ImportedService {
  service: string;
  routes: RouteInput[];
  /** `gateway-api`, or undefined for listed order (Weft's default, written by leaving it out). */
  precedence: "gateway-api" | undefined;
  sources: RuleSource[];
}

export type ImportResult = { kind: "ok"; services: ImportedService[] } | { kind: "refused"; findings: HttpRouteFinding[] };

/** What the import needs to know of the services: their names and backends' names. */
export interface KnownService {
  name: string;
  backends: ReadonlyArray<{ name: string }>;
}

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Collects findings for one HTTPRoute. */
class Findings {
  readonly list: HttpRouteFinding[] = [];
  readonly route: string;

  constructor(route: string) {
    this.route = route;
  }

  add(field: string, reason: FindingReason, message: string): void {
    this.list.push({ route: this.route, field, reason, message });
  }

  invalid(field: string, message: string): undefined {
    this.add(field, "Invalid", message);
    return undefined;
  }

  unsupported(field: string, message: string): undefined {
    this.add(field, "UnsupportedValue", message);
    return undefined;
  }

  /** Reports every field of `value` not in `known`; `why` explains the fields Weft knows but does not support. */
  fields(value: Json, at: string, known: ReadonlyArray<string>, why: Readonly<Record<string, string>> = {}): void {
    for (const key of Object.keys(value)) {
      const reason = why[key];
      const field = at === "" ? key : `${at}.${key}`;
      if (reason !== undefined) this.unsupported(field, reason);
      else if (!known.includes(key)) this.add(field, "UnsupportedValue", `unknown or unsupported field '${key}'`);
    }
  }

  record(value: unknown, at: string): Json | undefined {
    return isRecord(value) ? value : this.invalid(at, "must be an object");
  }

  list_(value: unknown, at: string, max: number): unknown[] | undefined {
    if (value === undefined) return [];
    if (!Array.isArray(value)) return this.invalid(at, "must be a list");
    const list: unknown[] = value;
    if (list.length > max) return this.invalid(at, `at most ${max} entries`);
    return list;
  }

  string(value: unknown, at: string, max = 1024): string | undefined {
    if (typeof value !== "string") return this.invalid(at, "must be a string");
    if (value.length > max) return this.invalid(at, `at most ${max} characters`);
    return value;
  }

  integer(value: unknown, at: string, min: number, max: number): number | undefined {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) return this.invalid(at, `must be an integer from ${min} to ${max}`);
    return value;
  }
}

/** Gateway API durations: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, as milliseconds. */
export function parseDuration(text: string): number | undefined {
  if (!/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(text)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of text.matchAll(/([0-9]{1,5})(ms|h|m|s)/g)) {
    const n = Number(amount);
    ms += unit === "h" ? n * 3_600_000 : unit === "m" ? n * 60_000 : unit === "s" ? n * 1_000 : n;
  }
  return ms;
}

/** Milliseconds as a Gateway API duration (`1500ms`, `2s`). */
export function formatDuration(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000}s` : `${ms}ms`;
}

/** Scales relative weights to integer percentages summing to 100 (largest remainder); exact when they already sum to 100. */
export function percentWeights(weights: ReadonlyArray<[string, number]>): Record<string, number> {
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  const out: Record<string, number> = {};
  if (total === 0) return out;
  const shares = weights.map(([name, w]) => ({ name, exact: (w * 100) / total }));
  let given = 0;
  for (const share of shares) {
    out[share.name] = (out[share.name] ?? 0) + Math.floor(share.exact);
    given += Math.floor(share.exact);
  }
  const byRemainder = [...shares].sort((a, b) => (b.exact % 1) - (a.exact % 1));
  for (let i = 0; given < 100 && i < byRemainder.length; i++, given++) {
    const name = byRemainder[i]?.name ?? "";
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

/** A Weft route name from an HTTPRoute's name and a rule index, when the rule has no `name`. */
function routeName(httpRoute: string, rule: number): string {
  const slug = httpRoute.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 56).replace(/-+$/, "");
  return `${slug || "route"}-${rule}`;
}

const HEADER_NAME = /^[A-Za-z0-9-]+$/;

/** One Gateway API match as a Weft match, or undefined after reporting why. */
function importMatch(value: unknown, at: string, f: Findings): RouteMatch | undefined {
  const match = f.record(value, at);
  if (!match) return undefined;
  f.fields(match, at, ["path", "headers", "queryParams", "method"]);
  const out: RouteMatch = { path: "/*" };
  if (match.path !== undefined) {
    const path = f.record(match.path, `${at}.path`);
    if (!path) return undefined;
    f.fields(path, `${at}.path`, ["type", "value"]);
    const type = path.type ?? "PathPrefix";
    const text = f.string(path.value ?? "/", `${at}.path.value`);
    if (text === undefined) return undefined;
    if (type === "Exact") out.path = text;
    else if (type === "PathPrefix") {
      // PathPrefix "/" takes every path: Weft's default match, written the default way.
      if (text.replace(/\/+$/, "") !== "") out.pathPrefix = text;
    } else if (type === "RegularExpression") out.pathRegex = text;
    else return f.invalid(`${at}.path.type`, "must be Exact, PathPrefix or RegularExpression");
    if (type === "Exact" && (!text.startsWith("/") || /[*?#\s]/.test(text))) return f.unsupported(`${at}.path.value`, "an Exact path must start with '/' and have no '*', '?', '#' or spaces");
  }
  if (match.method !== undefined) {
    const method = HttpMethod.safeParse(match.method);
    if (!method.success) return f.unsupported(`${at}.method`, `${typeof match.method === "string" ? match.method : "this method"} is not proxied by Weft (Workers do not receive CONNECT or TRACE)`);
    out.methods = [method.data];
  }
  const headers = f.list_(match.headers, `${at}.headers`, 16);
  const query = f.list_(match.queryParams, `${at}.queryParams`, 16);
  if (!headers || !query) return undefined;
  const conditions = (list: unknown[], where: string): Array<{ name: string; type: "Exact" | "RegularExpression"; value: string }> | undefined => {
    const found: Array<{ name: string; type: "Exact" | "RegularExpression"; value: string }> = [];
    for (const [i, item] of list.entries()) {
      const entry = f.record(item, `${where}[${i}]`);
      if (!entry) return undefined;
      f.fields(entry, `${where}[${i}]`, ["name", "type", "value"]);
      const name = f.string(entry.name, `${where}[${i}].name`, 256);
      const text = f.string(entry.value, `${where}[${i}].value`, 4096);
      const type = entry.type ?? "Exact";
      if (type !== "Exact" && type !== "RegularExpression") return f.invalid(`${where}[${i}].type`, "must be Exact or RegularExpression");
      if (name === undefined || text === undefined) return undefined;
      found.push({ name, type, value: text });
    }
    return found;
  };
  const headerList = conditions(headers, `${at}.headers`);
  const queryList = conditions(query, `${at}.queryParams`);
  if (!headerList || !queryList) return undefined;
  if (headerList.length > 0) {
    // Exact-only headers are written the way Weft's own configs write them: an object.
    const plain = headerList.every((h) => h.type === "Exact" && HEADER_NAME.test(h.name) && h.value.length <= 256);
    out.headers = plain ? Object.fromEntries(headerList.map((h) => [h.name, h.value])) : headerList;
  }
  if (queryList.length > 0) out.query = queryList;
  return out;
}

/** Matches equal but for their method are one Weft match with several methods. */
function mergeMethods(matches: RouteMatch[]): RouteMatch[] {
  const merged: RouteMatch[] = [];
  for (const match of matches) {
    const last = merged[merged.length - 1];
    if (last?.methods && match.methods && JSON.stringify({ ...last, methods: [] }) === JSON.stringify({ ...match, methods: [] })) {
      last.methods = [...last.methods, ...match.methods.filter((m) => !last.methods?.includes(m))];
    } else merged.push({ ...match });
  }
  return merged;
}

function importHeaderModifier(value: unknown, at: string, f: Findings): HeaderModifier | undefined {
  const modifier = f.record(value, at);
  if (!modifier) return undefined;
  f.fields(modifier, at, ["set", "add", "remove"]);
  const out: HeaderModifier = {};
  for (const key of ["set", "add"] as const) {
    const list = f.list_(modifier[key], `${at}.${key}`, 16);
    if (!list) return undefined;
    const entries: Array<{ name: string; value: string }> = [];
    for (const [i, item] of list.entries()) {
      const entry = f.record(item, `${at}.${key}[${i}]`);
      if (!entry) return undefined;
      f.fields(entry, `${at}.${key}[${i}]`, ["name", "value"]);
      const name = f.string(entry.name, `${at}.${key}[${i}].name`, 256);
      const text = f.string(entry.value, `${at}.${key}[${i}].value`, 4096);
      if (name === undefined || text === undefined) return undefined;
      entries.push({ name, value: text });
    }
    if (entries.length > 0) out[key] = entries;
  }
  const remove = f.list_(modifier.remove, `${at}.remove`, 16);
  if (!remove) return undefined;
  const names: string[] = [];
  for (const [i, item] of remove.entries()) {
    const name = f.string(item, `${at}.remove[${i}]`, 256);
    if (name === undefined) return undefined;
    names.push(name);
  }
  if (names.length > 0) out.remove = names;
  return out;
}

function importPathModifier(value: unknown, at: string, f: Findings): PathModifier | undefined {
  const path = f.record(value, at);
  if (!path) return undefined;
  f.fields(path, at, ["type", "replaceFullPath", "replacePrefixMatch"]);
  if (path.type === "ReplaceFullPath") {
    const full = f.string(path.replaceFullPath, `${at}.replaceFullPath`);
    return full === undefined ? undefined : { type: "ReplaceFullPath", replaceFullPath: full };
  }
  if (path.type === "ReplacePrefixMatch") {
    const prefix = f.string(path.replacePrefixMatch, `${at}.replacePrefixMatch`);
    return prefix === undefined ? undefined : { type: "ReplacePrefixMatch", replacePrefixMatch: prefix === "" ? "/" : prefix };
  }
  return f.invalid(`${at}.type`, "must be ReplaceFullPath or ReplacePrefixMatch");
}

const FILTER_FIELDS: Readonly<Record<string, string>> = {
  RequestHeaderModifier: "requestHeaderModifier",
  ResponseHeaderModifier: "responseHeaderModifier",
  RequestRedirect: "requestRedirect",
  URLRewrite: "urlRewrite",
  RequestMirror: "requestMirror",
  CORS: "cors",
};

/** One Gateway API filter as a Weft filter. */
function importFilter(value: unknown, at: string, f: Findings): RouteFilter | undefined {
  const filter = f.record(value, at);
  if (!filter) return undefined;
  const type = f.string(filter.type, `${at}.type`, 64);
  if (type === undefined) return undefined;
  const field = FILTER_FIELDS[type];
  if (field === undefined) {
    const why: Record<string, string> = {
      ExtensionRef: "Weft has no extension filters",
      ExternalAuth: "Weft's end-user authentication is the route's 'auth' setting, not an external auth filter",
    };
    return f.unsupported(`${at}.type`, why[type] ?? `unknown filter type '${type}'`);
  }
  f.fields(filter, at, ["type", field]);
  const body = filter[field];
  const where = `${at}.${field}`;
  if (type === "RequestHeaderModifier" || type === "ResponseHeaderModifier") {
    const modifier = importHeaderModifier(body, where, f);
    return modifier ? { type, ...modifier } : undefined;
  }
  const spec = f.record(body, where);
  if (!spec) return undefined;
  if (type === "RequestRedirect") {
    f.fields(spec, where, ["scheme", "hostname", "port", "path", "statusCode"]);
    const redirect: Extract<RouteFilter, { type: "RequestRedirect" }> = { type, statusCode: 302 };
    if (spec.scheme !== undefined) {
      if (spec.scheme !== "http" && spec.scheme !== "https") return f.invalid(`${where}.scheme`, "must be http or https");
      redirect.scheme = spec.scheme;
    }
    if (spec.hostname !== undefined) {
      const hostname = f.string(spec.hostname, `${where}.hostname`, 253);
      if (hostname === undefined) return undefined;
      redirect.hostname = hostname;
    }
    if (spec.port !== undefined) {
      const port = f.integer(spec.port, `${where}.port`, 1, 65_535);
      if (port === undefined) return undefined;
      redirect.port = port;
    }
    if (spec.path !== undefined) {
      const path = importPathModifier(spec.path, `${where}.path`, f);
      if (!path) return undefined;
      redirect.path = path;
    }
    if (spec.statusCode !== undefined) {
      const code = spec.statusCode;
      if (code !== 301 && code !== 302 && code !== 303 && code !== 307 && code !== 308) return f.invalid(`${where}.statusCode`, "must be 301, 302, 303, 307 or 308");
      redirect.statusCode = code;
    }
    return redirect;
  }
  if (type === "RequestMirror") return importMirror(spec, where, f);
  if (type === "CORS") {
    // Same field names as Weft's CORS filter; the route schema checks the values.
    f.fields(spec, where, ["allowOrigins", "allowCredentials", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge"]);
    const cors = Cors.safeParse({ type: "CORS", ...spec });
    if (!cors.success) return f.invalid(`${where}.${cors.error.issues[0]?.path.join(".") ?? ""}`.replace(/\.$/, ""), cors.error.issues[0]?.message ?? "invalid");
    return cors.data;
  }
  f.fields(spec, where, ["hostname", "path"]);
  const rewrite: Extract<RouteFilter, { type: "URLRewrite" }> = { type: "URLRewrite" };
  if (spec.hostname !== undefined) {
    const hostname = f.string(spec.hostname, `${where}.hostname`, 253);
    if (hostname === undefined) return undefined;
    rewrite.hostname = hostname;
  }
  if (spec.path !== undefined) {
    const path = importPathModifier(spec.path, `${where}.path`, f);
    if (!path) return undefined;
    rewrite.path = path;
  }
  return rewrite;
}

/** `requestMirror`: a backendRef of the service and the share copied (percent, fraction, or all). */
function importMirror(spec: Json, where: string, f: Findings): RouteFilter | undefined {
  f.fields(spec, where, ["backendRef", "percent", "fraction"]);
  const ref = f.record(spec.backendRef, `${where}.backendRef`);
  if (!ref) return undefined;
  f.fields(ref, `${where}.backendRef`, ["group", "kind", "name", "namespace", "port"]);
  if ((ref.kind !== undefined && ref.kind !== "Service") || (ref.group !== undefined && ref.group !== "" && ref.group !== "core")) {
    return f.unsupported(`${where}.backendRef.kind`, "a mirror names one of the service's backends (kind Service)");
  }
  const backend = f.string(ref.name, `${where}.backendRef.name`, 63);
  if (backend === undefined) return undefined;
  if (ref.port !== undefined && f.integer(ref.port, `${where}.backendRef.port`, 1, 65_535) === undefined) return undefined;
  const mirror: Extract<RouteFilter, { type: "RequestMirror" }> = { type: "RequestMirror", backend };
  if (spec.percent !== undefined) {
    const percent = f.integer(spec.percent, `${where}.percent`, 0, 100);
    if (percent === undefined) return undefined;
    mirror.percent = percent;
  }
  if (spec.fraction !== undefined) {
    const fraction = f.record(spec.fraction, `${where}.fraction`);
    if (!fraction) return undefined;
    f.fields(fraction, `${where}.fraction`, ["numerator", "denominator"]);
    const numerator = f.integer(fraction.numerator, `${where}.fraction.numerator`, 0, 1_000_000);
    const denominator = fraction.denominator === undefined ? 100 : f.integer(fraction.denominator, `${where}.fraction.denominator`, 1, 1_000_000);
    if (numerator === undefined || denominator === undefined) return undefined;
    mirror.fraction = { numerator, denominator };
  }
  return mirror;
}

/** A parentRef naming a Weft service, or undefined after reporting why it cannot. */
function importParent(value: unknown, at: string, f: Findings, services: ReadonlyMap<string, KnownService>): KnownService | undefined {
  const parent = f.record(value, at);
  if (!parent) return undefined;
  f.fields(parent, at, ["group", "kind", "name", "namespace", "port"], { sectionName: "Weft services have one port and no sections" });
  if (parent.kind !== "Service" || (parent.group !== undefined && parent.group !== "" && parent.group !== "core")) {
    return f.unsupported(`${at}.kind`, "Weft is a mesh: a route's parent is a Service (group \"\", kind Service), the GAMMA way; Gateways are not supported");
  }
  const name = f.string(parent.name, `${at}.name`, 253);
  if (name === undefined) return undefined;
  if (parent.port !== undefined && f.integer(parent.port, `${at}.port`, 1, 65_535) === undefined) return undefined;
  const service = services.get(name);
  if (!service) {
    f.add(`${at}.name`, "NoMatchingParent", `no Weft service '${name}' (services: ${[...services.keys()].join(", ") || "none"})`);
    return undefined;
  }
  return service;
}

interface ImportedRule {
  route: RouteInput;
  services: KnownService[];
}

/** Weights, per-backend filters and the sticky key of a rule, checked against each parent's backends. */
function importBackends(rule: Json, at: string, f: Findings, parents: ReadonlyArray<KnownService>, fallback: boolean): Pick<RouteInput, "split" | "backendFilters"> | undefined {
  const refs = f.list_(rule.backendRefs, `${at}.backendRefs`, 16);
  if (!refs) return undefined;
  const weights: Array<[string, number]> = [];
  const backendFilters: Record<string, Array<Extract<RouteFilter, { type: "RequestHeaderModifier" | "ResponseHeaderModifier" }>>> = {};
  for (const [i, item] of refs.entries()) {
    const where = `${at}.backendRefs[${i}]`;
    const ref = f.record(item, where);
    if (!ref) return undefined;
    f.fields(ref, where, ["group", "kind", "name", "namespace", "port", "weight", "filters"]);
    if ((ref.kind !== undefined && ref.kind !== "Service") || (ref.group !== undefined && ref.group !== "" && ref.group !== "core")) {
      return f.unsupported(`${where}.kind`, "a backendRef names one of the service's backends (kind Service)");
    }
    const name = f.string(ref.name, `${where}.name`, 253);
    if (name === undefined) return undefined;
    if (ref.port !== undefined && f.integer(ref.port, `${where}.port`, 1, 65_535) === undefined) return undefined;
    const weight = ref.weight === undefined ? 1 : f.integer(ref.weight, `${where}.weight`, 0, 1_000_000);
    if (weight === undefined) return undefined;
    for (const parent of parents) {
      if (!parent.backends.some((b) => b.name === name)) {
        f.add(`${where}.name`, "BackendNotFound", `service '${parent.name}' has no backend '${name}' (it has: ${parent.backends.map((b) => b.name).join(", ")})`);
      }
    }
    if (weights.some(([n]) => n === name)) return f.unsupported(`${where}.name`, `backend '${name}' is listed twice in one rule`);
    weights.push([name, weight]);
    const filters = f.list_(ref.filters, `${where}.filters`, 4);
    if (!filters) return undefined;
    const list: Array<Extract<RouteFilter, { type: "RequestHeaderModifier" | "ResponseHeaderModifier" }>> = [];
    for (const [j, filterValue] of filters.entries()) {
      const filter = importFilter(filterValue, `${where}.filters[${j}]`, f);
      if (!filter) continue;
      if (filter.type !== "RequestHeaderModifier" && filter.type !== "ResponseHeaderModifier") {
        f.unsupported(`${where}.filters[${j}].type`, "per-backend filters may modify request or response headers only");
        continue;
      }
      list.push(filter);
    }
    if (list.length > 0) backendFilters[name] = list;
  }
  if (weights.length === 0) {
    if (!fallback) return f.unsupported(`${at}.backendRefs`, "a rule without backendRefs answers 500 in the Gateway API; Weft needs a backend unless the rule redirects");
    // A redirect answers before any backend is chosen; Weft's schema still wants a split, so the
    // service's first backend stands in (export leaves it out again).
    const first = parents[0]?.backends[0]?.name;
    return first === undefined ? undefined : { split: { weights: { [first]: 100 } } };
  }
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  if (total === 0) return f.unsupported(`${at}.backendRefs`, "every backendRef has weight 0: the Gateway API answers 500 for such a rule; Weft refuses it");
  return { split: { weights: percentWeights(weights) }, ...(Object.keys(backendFilters).length > 0 ? { backendFilters } : {}) };
}

function importSessionPersistence(value: unknown, at: string, f: Findings): string | undefined {
  const session = f.record(value, at);
  if (!session) return undefined;
  f.fields(session, at, ["sessionName", "type", "cookieConfig"], {
    absoluteTimeout: "Weft's sticky sessions do not expire (a shopper keeps their backend while weights change)",
    idleTimeout: "Weft's sticky sessions do not expire",
  });
  const type = session.type ?? "Cookie";
  if (type !== "Cookie" && type !== "Header") return f.invalid(`${at}.type`, "must be Cookie or Header");
  const name = session.sessionName === undefined ? "weft-session" : f.string(session.sessionName, `${at}.sessionName`, 128);
  if (name === undefined) return undefined;
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) return f.unsupported(`${at}.sessionName`, "use letters, digits, '_', '.' and '-'");
  if (session.cookieConfig !== undefined) {
    const config = f.record(session.cookieConfig, `${at}.cookieConfig`);
    if (!config) return undefined;
    f.fields(config, `${at}.cookieConfig`, ["lifetimeType"]);
    if (config.lifetimeType !== undefined && config.lifetimeType !== "Permanent") {
      return f.unsupported(`${at}.cookieConfig.lifetimeType`, "Weft's sticky cookie is Permanent (Max-Age one year), so a shopper keeps their backend across visits");
    }
  }
  return `${type === "Cookie" ? "cookie" : "header"}:${name}`;
}

function importRetry(value: unknown, at: string, f: Findings): RouteInput["retries"] {
  const retry = f.record(value, at);
  if (!retry) return undefined;
  f.fields(retry, at, ["codes", "attempts", "backoff"]);
  const out: NonNullable<RouteInput["retries"]> = {};
  if (retry.attempts !== undefined) {
    const attempts = f.integer(retry.attempts, `${at}.attempts`, 0, 1_000);
    if (attempts === undefined) return undefined;
    if (attempts > 4) return f.unsupported(`${at}.attempts`, "Weft retries at most 4 times (5 attempts in all), so that retries cannot multiply load on a failing backend");
    out.attempts = attempts + 1;
  }
  if (retry.codes !== undefined) {
    const codes = f.list_(retry.codes, `${at}.codes`, 100);
    if (!codes) return undefined;
    const statuses: number[] = [];
    for (const [i, code] of codes.entries()) {
      const status = f.integer(code, `${at}.codes[${i}]`, 400, 599);
      if (status === undefined) return undefined;
      if (status < 500) return f.unsupported(`${at}.codes[${i}]`, "Weft retries server errors (5xx) only: a 4xx answer would be the same again");
      statuses.push(status);
    }
    out.statuses = statuses;
  }
  if (retry.backoff !== undefined) {
    const text = f.string(retry.backoff, `${at}.backoff`, 32);
    const ms = text === undefined ? undefined : parseDuration(text);
    if (ms === undefined) return f.invalid(`${at}.backoff`, "must be a duration such as 100ms or 1s");
    if (ms > 5_000) return f.unsupported(`${at}.backoff`, "at most 5s between retries");
    out.backoff = { baseMs: ms, capMs: Math.min(30_000, ms * 10) };
  }
  return out;
}

/** One rule as one Weft route. */
function importRule(value: unknown, at: string, f: Findings, context: { httpRoute: string; index: number; parents: KnownService[] }): ImportedRule | undefined {
  const rule = f.record(value, at);
  if (!rule) return undefined;
  f.fields(rule, at, ["name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"]);
  const name = rule.name === undefined ? routeName(context.httpRoute, context.index) : f.string(rule.name, `${at}.name`, 63);
  if (name === undefined) return undefined;
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(name)) return f.invalid(`${at}.name`, "use lowercase letters, digits and '-' (a DNS label)");
  const matchList = f.list_(rule.matches, `${at}.matches`, 64);
  const filterList = f.list_(rule.filters, `${at}.filters`, 16);
  if (!matchList || !filterList) return undefined;
  const matches = mergeMethods(matchList.flatMap((m, i) => importMatch(m, `${at}.matches[${i}]`, f) ?? []));
  if (matches.length > 16) return f.unsupported(`${at}.matches`, "at most 16 distinct matches per rule");
  const filters = filterList.flatMap((item, i) => importFilter(item, `${at}.filters[${i}]`, f) ?? []);
  const backends = importBackends(rule, at, f, context.parents, filters.some((x) => x.type === "RequestRedirect"));
  const route: RouteInput = { name, split: backends?.split ?? { weights: {} } };
  if (matches.length === 1) route.match = matches[0];
  else if (matches.length > 1) route.matches = matches;
  if (filters.length > 0) route.filters = filters;
  if (backends?.backendFilters) route.backendFilters = backends.backendFilters;
  if (rule.sessionPersistence !== undefined) {
    const sticky = importSessionPersistence(rule.sessionPersistence, `${at}.sessionPersistence`, f);
    if (sticky !== undefined) route.split = { ...route.split, sticky };
  }
  if (rule.timeouts !== undefined) {
    const timeouts = f.record(rule.timeouts, `${at}.timeouts`);
    if (timeouts) {
      f.fields(timeouts, `${at}.timeouts`, ["request", "backendRequest"]);
      for (const [field, key] of [["request", "timeoutMs"], ["backendRequest", "attemptTimeoutMs"]] as const) {
        if (timeouts[field] === undefined) continue;
        const text = f.string(timeouts[field], `${at}.timeouts.${field}`, 32);
        const ms = text === undefined ? undefined : parseDuration(text);
        // "0s" turns the timeout off, which is Weft's default (no setting).
        if (ms === undefined) f.invalid(`${at}.timeouts.${field}`, "must be a duration such as 10s or 500ms");
        else if (ms > 300_000) f.unsupported(`${at}.timeouts.${field}`, "at most 300s (5m)");
        else if (ms > 0) route[key] = ms;
      }
    }
  }
  if (rule.retry !== undefined) {
    const retries = importRetry(rule.retry, `${at}.retry`, f);
    if (retries) route.retries = retries;
  }
  return { route, services: context.parents };
}

/** The route overrides carried in the annotation, checked to be `{ route: { field: value } }`. */
function overridesOf(metadata: Json, f: Findings): Record<string, Json> {
  const annotations = isRecord(metadata.annotations) ? metadata.annotations : {};
  const text = annotations[OVERRIDES_ANNOTATION];
  if (text === undefined) return {};
  const at = `metadata.annotations["${OVERRIDES_ANNOTATION}"]`;
  if (typeof text !== "string" || text.length > 262_144) return f.invalid(at, "must be a JSON string of at most 256 KiB") ?? {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return f.invalid(at, "is not valid JSON") ?? {};
  }
  if (!isRecord(parsed) || !Object.values(parsed).every(isRecord)) return f.invalid(at, "must map route names to objects of route fields") ?? {};
  const out: Record<string, Json> = {};
  for (const [name, fields] of Object.entries(parsed)) if (isRecord(fields)) out[name] = fields;
  return out;
}

/** Applies a route's overrides (each field replaced, `null` removing it) and checks the result with Weft's route schema. */
function finishRoute(route: RouteInput, overrides: Json | undefined, at: string, f: Findings): RouteInput | undefined {
  const out: Json = { ...route };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    if (key === "name") continue;
    if (value === null) delete out[key];
    else out[key] = value;
  }
  const parsed = Route.safeParse(out);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const weftPath = issue.path.map(String);
    const from = overrides && weftPath[0] !== undefined && weftPath[0] in overrides ? `metadata.annotations["${OVERRIDES_ANNOTATION}"]` : at;
    f.invalid(`${from}${fieldOf(weftPath)}`, issue.message);
  }
  return undefined;
}

/** A Weft route field path as the HTTPRoute rule field it came from, where they correspond one to one. */
function fieldOf(path: ReadonlyArray<string>): string {
  const [head, ...rest] = path;
  const tail = rest.length > 0 ? ` (${rest.join(".")})` : "";
  if (head === "filters" && rest[0] !== undefined) return `.filters[${rest[0]}]${rest.length > 1 ? ` (${rest.slice(1).join(".")})` : ""}`;
  if (head === "match" || head === "matches") return `.matches${tail}`;
  if (head === "split" || head === "backendFilters") return `.backendRefs${tail}`;
  if (head === "timeoutMs") return ".timeouts.request";
  if (head === "attemptTimeoutMs") return ".timeouts.backendRequest";
  if (head === "retries") return `.retry${tail}`;
  return head === undefined ? "" : `.${head}${tail}`;
}

interface ParsedHttpRoute {
  key: string;
  created: string;
  precedence: "listed" | "gateway-api";
  rules: ImportedRule[];
  sources: RuleSource[];
}

function importOne(doc: Json, index: number, services: ReadonlyMap<string, KnownService>, findings: HttpRouteFinding[]): ParsedHttpRoute | undefined {
  const metadata = isRecord(doc.metadata) ? doc.metadata : {};
  const name = typeof metadata.name === "string" ? metadata.name : undefined;
  const namespace = typeof metadata.namespace === "string" ? metadata.namespace : "default";
  const key = name === undefined ? `#${index}` : `${namespace}/${name}`;
  const f = new Findings(key);
  if (doc.apiVersion !== API_VERSION) f.unsupported("apiVersion", `must be ${API_VERSION}`);
  if (!isRecord(doc.metadata)) f.invalid("metadata", "must be an object");
  if (name === undefined || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name) || name.length > 253) f.invalid("metadata.name", "must be a Kubernetes object name (lowercase DNS subdomain)");
  f.fields(doc, "", ["apiVersion", "kind", "metadata", "spec", "status"]);
  const spec = f.record(doc.spec, "spec");
  if (!spec || name === undefined) {
    findings.push(...f.list);
    return undefined;
  }
  f.fields(spec, "spec", ["parentRefs", "rules"], { hostnames: "a GAMMA route applies to every request to its Service; Weft does not match on Host (use a header match on 'host' if needed)" });
  const parentList = f.list_(spec.parentRefs, "spec.parentRefs", 32) ?? [];
  const parents = parentList.flatMap((p, i) => importParent(p, `spec.parentRefs[${i}]`, f, services) ?? []);
  if (parentList.length === 0) f.invalid("spec.parentRefs", "name at least one Service (kind: Service) the route applies to");
  const ruleList = f.list_(spec.rules ?? [{}], "spec.rules", MAX_RULES) ?? [];
  const overrides = overridesOf(metadata, f);
  const rules: ImportedRule[] = [];
  const sources: RuleSource[] = [];
  ruleList.forEach((value, i) => {
    const rule = importRule(value, `spec.rules[${i}]`, f, { httpRoute: name, index: i, parents });
    if (!rule) return;
    const route = finishRoute(rule.route, overrides[rule.route.name ?? ""], `spec.rules[${i}]`, f);
    if (!route) return;
    rule.route = route;
    rules.push(rule);
    sources.push({ route: key, rule: i, weftRoute: rule.route.name ?? "" });
  });
  const names = rules.map((r) => r.route.name);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) f.invalid(`spec.rules[${i}].name`, `two rules are named '${n ?? ""}'`);
  });
  const annotations = isRecord(metadata.annotations) ? metadata.annotations : {};
  const precedence = annotations[PRECEDENCE_ANNOTATION] === "listed" ? "listed" : "gateway-api";
  findings.push(...f.list);
  if (f.list.length > 0) return undefined;
  return { key, created: typeof metadata.creationTimestamp === "string" ? metadata.creationTimestamp : "", precedence, rules, sources };
}

/**
 * HTTPRoute documents → the routes of each service they name. Every HTTPRoute must be accepted
 * whole: one finding anywhere refuses the import (nothing is applied halfway). Routes of one
 * service from several HTTPRoutes are ordered as the Gateway API breaks ties between routes:
 * oldest `creationTimestamp`, then `namespace/name` alphabetically; rules keep their order.
 */
export function importHttpRoutes(docs: ReadonlyArray<unknown>, known: ReadonlyArray<KnownService>): ImportResult {
  const findings: HttpRouteFinding[] = [];
  if (docs.length > MAX_DOCUMENTS) return { kind: "refused", findings: [{ route: "(file)", field: "", reason: "Invalid", message: `at most ${MAX_DOCUMENTS} HTTPRoutes per file` }] };
  const services = new Map(known.map((s) => [s.name, s]));
  const parsed: ParsedHttpRoute[] = [];
  docs.forEach((doc, i) => {
    if (!isRecord(doc) || doc.kind !== "HTTPRoute") {
      findings.push({ route: `#${i}`, field: "kind", reason: "UnsupportedValue", message: "only kind: HTTPRoute documents are accepted here" });
      return;
    }
    const one = importOne(doc, i, services, findings);
    if (one) parsed.push(one);
  });
  const keys = parsed.map((p) => p.key);
  keys.forEach((key, i) => {
    if (keys.indexOf(key) !== i) findings.push({ route: key, field: "metadata.name", reason: "Invalid", message: "two HTTPRoutes with one namespace/name" });
  });
  if (findings.length > 0) return { kind: "refused", findings };
  parsed.sort((a, b) => (a.created && b.created && a.created !== b.created ? (a.created < b.created ? -1 : 1) : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const out = new Map<string, ImportedService>();
  for (const route of parsed) {
    route.rules.forEach((rule, r) => {
      for (const service of rule.services) {
        let entry = out.get(service.name);
        if (!entry) out.set(service.name, (entry = { service: service.name, routes: [], precedence: route.precedence === "listed" ? undefined : "gateway-api", sources: [] }));
        if (route.precedence === "listed") entry.precedence = undefined;
        entry.routes.push(rule.route);
        const source = route.sources[r];
        if (source) entry.sources.push(source);
      }
    });
  }
  for (const entry of out.values()) {
    const names = entry.routes.map((r) => r.name);
    names.forEach((n, i) => {
      const source = entry.sources[i];
      if (names.indexOf(n) !== i && source) findings.push({ route: source.route, field: `spec.rules[${source.rule}].name`, reason: "Invalid", message: `service '${entry.service}' gets two routes named '${n ?? ""}' (name the rules)` });
    });
  }
  return findings.length > 0 ? { kind: "refused", findings } : { kind: "ok", services: [...out.values()] };
}

/** A Weft match as Gateway API matches (one per method). */
function exportMatch(match: RouteMatch): Json[] {
  const out: Json = {};
  if (match.pathRegex !== undefined) out.path = { type: "RegularExpression", value: match.pathRegex };
  else if (match.pathPrefix !== undefined) out.path = { type: "PathPrefix", value: match.pathPrefix };
  else if (match.path === "/*") out.path = { type: "PathPrefix", value: "/" };
  else if (match.path.endsWith("*")) out.path = { type: "RegularExpression", value: `${quoteRe2(match.path.slice(0, -1))}.*` };
  else out.path = { type: "Exact", value: match.path };
  const headers = match.headers === undefined ? [] : Array.isArray(match.headers) ? match.headers : Object.entries(match.headers).map(([name, value]) => ({ name, type: "Exact" as const, value }));
  if (headers.length > 0) out.headers = headers.map((h) => ({ type: h.type, name: h.name, value: h.value }));
  if (match.query) out.queryParams = match.query.map((q) => ({ type: q.type, name: q.name, value: q.value }));
  return match.methods ? match.methods.map((method) => ({ ...out, method })) : [out];
}

/** Quotes a literal for RE2 (the characters RE2 treats as syntax). */
function quoteRe2(text: string): string {
  return text.replace(/[\\.+*?()|[\]{}^$]/g, "\\$&");
}

function exportFilter(filter: RouteFilter): Json {
  if (filter.type === "RequestMirror") {
    // HTTPRoute's percent is an integer: a fractional one is written as a fraction.
    const percent = filter.percent;
    const share = filter.fraction
      ? { fraction: filter.fraction }
      : percent === undefined
        ? {}
        : Number.isInteger(percent)
          ? { percent }
          : { fraction: { numerator: Math.round(percent * 10_000), denominator: 1_000_000 } };
    return { type: filter.type, requestMirror: { backendRef: { name: filter.backend }, ...share } };
  }
  const { type, ...body } = filter;
  const field = FILTER_FIELDS[type] ?? type;
  return { type, [field]: body };
}

/** The Gateway API form of one Weft route (a rule). */
function exportRule(route: RouteConfig): Json {
  const rule: Json = { name: route.name };
  rule.matches = (route.matches ?? [route.match]).flatMap(exportMatch);
  if (route.filters) rule.filters = route.filters.map(exportFilter);
  const redirects = route.filters?.some((x) => x.type === "RequestRedirect") === true;
  if (!redirects) {
    rule.backendRefs = Object.entries(route.split.weights).map(([name, weight]) => ({
      name,
      weight,
      ...(route.backendFilters?.[name] ? { filters: route.backendFilters[name].map(exportFilter) } : {}),
    }));
  }
  if (route.split.sticky) {
    const [kind, name] = route.split.sticky.split(":", 2);
    rule.sessionPersistence = { sessionName: name, type: kind === "cookie" ? "Cookie" : "Header" };
  }
  if (route.timeoutMs !== undefined || route.attemptTimeoutMs !== undefined) {
    rule.timeouts = {
      ...(route.timeoutMs !== undefined ? { request: formatDuration(route.timeoutMs) } : {}),
      ...(route.attemptTimeoutMs !== undefined ? { backendRequest: formatDuration(route.attemptTimeoutMs) } : {}),
    };
  }
  if (route.retries) {
    const backoff = route.retries.backoff;
    rule.retry = { attempts: route.retries.attempts - 1, codes: route.retries.statuses, ...(backoff === "adaptive" ? {} : { backoff: formatDuration(backoff.baseMs) }) };
  }
  return rule;
}

/**
 * One service's routes as one HTTPRoute named after the service, its parent the service. Settings
 * the HTTPRoute form cannot carry go into {@link OVERRIDES_ANNOTATION}, computed by importing the
 * exported rules back and keeping whatever differs — so importing the export gives these routes.
 */
export function exportHttpRoute(service: ServiceConfig): Json {
  const rules = service.routes.map(exportRule);
  const doc: Json = {
    apiVersion: API_VERSION,
    kind: "HTTPRoute",
    metadata: { name: service.name },
    spec: { parentRefs: [{ group: "", kind: "Service", name: service.name }], rules },
  };
  const back = importHttpRoutes([doc], [service]);
  const overrides: Record<string, Json> = {};
  if (back.kind !== "ok") {
    // Cannot happen for a valid service; if it does, carry every route whole rather than lose one.
    for (const route of service.routes) overrides[route.name] = { ...route };
  } else {
    const imported = back.services[0]?.routes ?? [];
    service.routes.forEach((route, i) => {
      const diff = routeDifference(imported[i], route);
      if (Object.keys(diff).length > 0) overrides[route.name] = diff;
    });
  }
  const annotations: Record<string, string> = {};
  if (Object.keys(overrides).length > 0) annotations[OVERRIDES_ANNOTATION] = JSON.stringify(overrides);
  if (service.precedence !== "gateway-api") annotations[PRECEDENCE_ANNOTATION] = "listed";
  if (Object.keys(annotations).length > 0) doc.metadata = { name: service.name, annotations };
  return doc;
}

/** The fields of `wanted` that `imported` lacks or has otherwise (`null`: a field `wanted` does not have). */
function routeDifference(imported: RouteInput | undefined, wanted: RouteConfig): Json {
  const canonical = (value: unknown): string => JSON.stringify(value, (_key, v: unknown) => (isRecord(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v));
  const have: Json = { ...(imported ?? {}) };
  // The import writes one match as `match` and several as `matches`, as normalizeService stores them.
  if (have.matches === undefined && have.match === undefined) have.match = { path: "/*" };
  if (Array.isArray(have.matches) && have.match === undefined) have.match = have.matches[0];
  const want: Json = { ...wanted };
  const diff: Json = {};
  for (const key of new Set([...Object.keys(have), ...Object.keys(want)])) {
    if (key === "name") continue;
    if (canonical(have[key]) !== canonical(want[key])) diff[key] = want[key] === undefined ? null : want[key];
  }
  // `match` is derived from `matches` when both exist; overriding `matches` is enough.
  if (want.matches !== undefined) delete diff.match;
  return diff;
}
