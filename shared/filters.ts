/**
 * The Gateway API's HTTPRoute filters as pure functions: header changes, redirect locations and
 * URL rewrites computed from the canonical request path and the prefix the route matched. The proxy
 * (workers/proxy/index.ts) runs them as steps of its chain; nothing here touches a Request.
 */
import type { HeaderModifier, PathModifier, RequestMirror, RequestRedirect, UrlRewrite } from "./config.ts";
import { segmentPrefix } from "./route-match.ts";

/** Where header changes go: the proxy's HeaderEdits on the way in, a response's Headers on the way out. */
export interface HeaderSink {
  set(name: string, value: string): void;
  append(name: string, value: string): void;
  delete(name: string): void;
}

/**
 * Applies one modifier: `set` replaces, `add` appends (a header already present gets a second
 * value, as Envoy and the conformance tests expect), `remove` deletes. Names are protected by the
 * schema (no `x-weft-*`, trace or framing headers), so a filter cannot forge the mesh's own headers.
 */
export function applyHeaderModifier(modifier: HeaderModifier, sink: HeaderSink): void {
  for (const { name, value } of modifier.set ?? []) sink.set(name, value);
  for (const { name, value } of modifier.add ?? []) sink.append(name, value);
  for (const name of modifier.remove ?? []) sink.delete(name);
}

/**
 * `ReplacePrefixMatch`: the matched prefix (whole segments) replaced, the rest kept, per the
 * Gateway API's table: prefix `/foo`, replacement `/xyz`: `/foo/bar` → `/xyz/bar`, `/foo` → `/xyz`;
 * replacement `/`: `/foo/bar` → `/bar`, `/foo` → `/`. Trailing slashes of prefix and replacement
 * do not count.
 */
export function replacePrefix(path: string, prefix: string, replacement: string): string {
  const matched = segmentPrefix(prefix);
  const rest = path.startsWith(matched) ? path.slice(matched.length) : path;
  const head = segmentPrefix(replacement);
  const joined = rest === "" || rest.startsWith("/") ? `${head}${rest}` : `${head}/${rest}`;
  return joined === "" ? "/" : joined;
}

/** The path a path modifier makes of `path` (`prefix`: the prefix the route matched, when it matched one). */
export function modifiedPath(modifier: PathModifier, path: string, prefix: string | undefined): string {
  if (modifier.type === "ReplaceFullPath") return modifier.replaceFullPath;
  // The schema refuses ReplacePrefixMatch on a route without a prefix match; keep the path if it ever gets here.
  return prefix === undefined ? path : replacePrefix(path, prefix, modifier.replacePrefixMatch);
}

/** The request as a redirect or rewrite sees it. */
export interface FilterRequest {
  /** The request URL (scheme, host, port and query are read from it). */
  url: URL;
  /** The canonical path the route matched. */
  path: string;
  /** The prefix of the match that selected the route (see CompiledMatch.prefix). */
  prefix: string | undefined;
}

const WELL_KNOWN_PORTS: Readonly<Record<string, string>> = { "http:": "80", "https:": "443" };

/**
 * The `Location` of a redirect. Per the Gateway API: an unset scheme, hostname or path keeps the
 * request's; an unset port is the scheme's well-known port when the filter sets a scheme, else the
 * request's port; a well-known port is left out of the URL. The query string is kept.
 */
export function redirectLocation(filter: RequestRedirect, request: FilterRequest): string {
  const scheme = filter.scheme ? `${filter.scheme}:` : request.url.protocol;
  const hostname = filter.hostname ?? request.url.hostname;
  const requestPort = request.url.port || WELL_KNOWN_PORTS[request.url.protocol] || "";
  const port = filter.port !== undefined ? String(filter.port) : filter.scheme ? WELL_KNOWN_PORTS[scheme] ?? "" : requestPort;
  const authority = port === "" || port === WELL_KNOWN_PORTS[scheme] ? hostname : `${hostname}:${port}`;
  const path = filter.path ? modifiedPath(filter.path, request.path, request.prefix) : request.path;
  return `${scheme}//${authority}${path}${request.url.search}`;
}

/**
 * The URL the backend receives after a `URLRewrite` (query kept). A new hostname replaces the whole
 * authority, port included, as Envoy's host rewrite replaces the Host header.
 */
export function rewrittenUrl(filter: UrlRewrite, request: FilterRequest): string {
  const host = filter.hostname ?? request.url.host;
  const path = filter.path ? modifiedPath(filter.path, request.path, request.prefix) : request.path;
  return `${request.url.protocol}//${host}${path}${request.url.search}`;
}

/** The share of requests (0-100) a RequestMirror filter copies: its percent, its fraction, or all. */
export function mirrorPercent(filter: Pick<RequestMirror, "percent" | "fraction">): number {
  if (filter.fraction) return (filter.fraction.numerator * 100) / filter.fraction.denominator;
  return filter.percent ?? 100;
}
