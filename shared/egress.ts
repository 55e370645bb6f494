/**
 * Egress to third parties: where a call may go, and the claims that bind its token to it.
 */
import { base64url } from "./encoding.ts";

/** Base URL of an external backend: its origin plus base path, without a trailing slash. */
export function egressBase(origin: string): string {
  const url = new URL(origin);
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** Outcome of {@link egressUrl}. */
export type EgressTarget = { kind: "ok"; url: string; htu: string } | { kind: "refused"; detail: string };

/**
 * The URL a proxied request goes to on a third party: base + request path + query. The result must
 * still be on the configured origin; anything that would leave it (path tricks such as `//evil.example`
 * or `/..`) is refused rather than normalised.
 */
export function egressUrl(base: string, path: string, search: string): EgressTarget {
  const origin = new URL(base).origin;
  if (!path.startsWith("/") || path.startsWith("//") || /(^|\/)\.\.?(\/|$)/.test(path) || /%2e|%2f|%5c|\\/i.test(path)) {
    return { kind: "refused", detail: `path '${path}' is not allowed on an external backend` };
  }
  const url = new URL(base + path + search);
  if (url.origin !== origin) return { kind: "refused", detail: `'${url.origin}' is not the configured origin ${origin}` };
  return { kind: "ok", url: url.href, htu: `${url.origin}${url.pathname}` };
}

/** base64url (no padding) SHA-256 of a body, as the `body_sha256` claim carries it. */
export async function bodySha256(body: ArrayBuffer): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", body)));
}
