/**
 * The Gateway API's CORS filter as pure functions: does an `Origin` match the allowed ones, what a
 * preflight answer carries, and what a cross-origin answer gets added. The proxy answers preflights
 * itself (nothing reaches the backend) and adds the response headers to backend answers.
 */

/** A route's CORS settings (the Gateway API's `HTTPCORSFilter`, names as there). */
export interface CorsPolicy {
  allowOrigins: string[];
  allowCredentials?: boolean | undefined;
  allowMethods?: string[] | undefined;
  allowHeaders?: string[] | undefined;
  exposeHeaders?: string[] | undefined;
  maxAge?: number | undefined;
}

/** The Gateway API's default `maxAge` (seconds) when none is given. */
export const DEFAULT_MAX_AGE = 5;

const DEFAULT_PORTS: Readonly<Record<string, string>> = { http: "80", https: "443" };

/** `scheme://host[:port]` split, the port made explicit; undefined when it is not an origin. */
function parseOrigin(origin: string): { scheme: string; host: string; port: string } | undefined {
  const parts = /^([a-z][a-z0-9+.-]*):\/\/([^/:?#]+)(?::(\d{1,5}))?$/i.exec(origin);
  if (!parts) return undefined;
  const scheme = (parts[1] ?? "").toLowerCase();
  return { scheme, host: (parts[2] ?? "").toLowerCase(), port: parts[3] ?? DEFAULT_PORTS[scheme] ?? "" };
}

/**
 * Whether `origin` is allowed. `*` allows every origin; a `*` in a pattern's host matches any
 * labels to its left (`https://*.bar.com` takes `https://a.b.bar.com`, not `https://bar.com`); an
 * omitted port is the scheme's default.
 */
export function originAllowed(policy: Pick<CorsPolicy, "allowOrigins">, origin: string): boolean {
  const parsed = parseOrigin(origin);
  if (!parsed) return false;
  return policy.allowOrigins.some((pattern) => {
    if (pattern === "*") return true;
    const allowed = parseOrigin(pattern);
    if (!allowed || allowed.scheme !== parsed.scheme || allowed.port !== parsed.port) return false;
    if (allowed.host.startsWith("*")) return parsed.host.endsWith(allowed.host.slice(1)) && parsed.host.length > allowed.host.length - 1;
    return allowed.host === parsed.host;
  });
}

/** Whether a request is a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method). */
export function isPreflight(method: string, headers: Headers): boolean {
  return method === "OPTIONS" && headers.has("origin") && headers.has("access-control-request-method");
}

/**
 * The headers of a preflight answer, or undefined when the origin is not allowed (the proxy then
 * answers without CORS headers, and the browser refuses the real request). The allowed origin is
 * always echoed (never `*`), which is right with and without credentials; wildcard methods and
 * headers echo what was asked for, as credentialed requests require.
 */
export function preflightHeaders(policy: CorsPolicy, headers: Headers): Array<[string, string]> | undefined {
  const origin = headers.get("origin") ?? "";
  if (!originAllowed(policy, origin)) return undefined;
  const out: Array<[string, string]> = [["access-control-allow-origin", origin], ["vary", "Origin"]];
  const methods = policy.allowMethods ?? [];
  const asked = headers.get("access-control-request-method") ?? "";
  if (methods.includes("*")) out.push(["access-control-allow-methods", asked]);
  else if (methods.length > 0) out.push(["access-control-allow-methods", methods.join(", ")]);
  const allowHeaders = policy.allowHeaders ?? [];
  const askedHeaders = headers.get("access-control-request-headers");
  if (allowHeaders.includes("*")) {
    if (askedHeaders) out.push(["access-control-allow-headers", askedHeaders]);
  } else if (allowHeaders.length > 0) out.push(["access-control-allow-headers", allowHeaders.join(", ")]);
  if (policy.exposeHeaders && policy.exposeHeaders.length > 0) out.push(["access-control-expose-headers", policy.exposeHeaders.join(", ")]);
  out.push(["access-control-max-age", String(policy.maxAge ?? DEFAULT_MAX_AGE)]);
  if (policy.allowCredentials === true) out.push(["access-control-allow-credentials", "true"]);
  return out;
}

/** The headers added to an answer to a cross-origin request from an allowed origin (none otherwise). */
export function responseHeaders(policy: CorsPolicy, origin: string | null): Array<[string, string]> {
  if (origin === null || !originAllowed(policy, origin)) return [];
  const out: Array<[string, string]> = [["access-control-allow-origin", origin], ["vary", "Origin"]];
  if (policy.allowCredentials === true) out.push(["access-control-allow-credentials", "true"]);
  if (policy.exposeHeaders && policy.exposeHeaders.length > 0) out.push(["access-control-expose-headers", policy.exposeHeaders.join(", ")]);
  return out;
}
