/**
 * What must never reach a log line, a trace or the tap: credentials in headers, cookies, tokens in
 * query strings, and anything that looks like a JWT. Applied to every access log line and tap event.
 */

export const REDACTED = "[redacted]";

/** Headers always redacted, whatever their value. */
const SECRET_HEADERS = new Set(["authorization", "proxy-authorization", "cookie", "set-cookie", "x-weft-claims"]);
/** Names (headers or query parameters) that usually carry secrets. */
const SECRET_NAME = /token|secret|passw(or)?d|session|api[-_]?key|auth|signature|credential|jwt|sid$/i;
/** A JWT (three base64url parts, the first a JSON object) anywhere in a value. */
const JWT = /eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*/g;

/** Whether a header or parameter of this name is redacted outright. */
export function isSecretName(name: string): boolean {
  return SECRET_HEADERS.has(name.toLowerCase()) || SECRET_NAME.test(name);
}

/** A value with embedded JWTs replaced. */
export function redactValue(value: string): string {
  return value.includes("eyJ") ? value.replace(JWT, REDACTED) : value;
}

/** A path with query string, with secret-looking parameters and embedded JWTs redacted. */
export function redactPath(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf("?");
  if (q < 0) return redactValue(pathAndQuery);
  const params = pathAndQuery
    .slice(q + 1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      if (eq < 0) return redactValue(pair);
      let name = pair.slice(0, eq);
      try {
        name = decodeURIComponent(name);
      } catch {
        // keep the raw name
      }
      return isSecretName(name) ? `${pair.slice(0, eq)}=${REDACTED}` : redactValue(pair);
    });
  return `${redactValue(pathAndQuery.slice(0, q))}?${params.join("&")}`;
}

/**
 * Request headers an access line keeps (as Envoy's default format does): never credentials, and
 * values scrubbed of tokens. A fixed list keeps secrets out by construction and the line short.
 */
const LOGGED_HEADERS = ["user-agent", "referer", "x-forwarded-for", "x-request-id", "content-type", "content-length"];

/** The logged subset of `headers`, redacted. */
export function accessHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of LOGGED_HEADERS) {
    const value = headers.get(name);
    if (value !== null) out[name] = name === "referer" ? redactPath(value) : redactValue(value);
  }
  return out;
}
