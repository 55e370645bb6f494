/**
 * The dashboard at `/`: one static page (dashboard.html) that signs in with the admin token and
 * reads the admin API from the browser. Served with a CSP that allows exactly its own inline
 * script (by hash) and same-origin requests, so nothing injected could run or phone home.
 */
import type { Context } from "hono";
import page from "./dashboard.html";

let policy: string | undefined;

/** The page's inline script, as the CSP hash must cover it. */
function inlineScript(html: string): string {
  const start = html.indexOf("<script>");
  const end = html.indexOf("</script>", start);
  if (start < 0 || end < 0) throw new Error("dashboard.html has no inline script");
  return html.slice(start + "<script>".length, end);
}

async function contentSecurityPolicy(): Promise<string> {
  if (policy === undefined) {
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(inlineScript(page)));
    const hash = btoa(String.fromCharCode(...new Uint8Array(digest)));
    policy = [
      "default-src 'none'",
      `script-src 'sha256-${hash}'`,
      "style-src 'unsafe-inline'",
      "connect-src 'self'",
      "img-src 'self' data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; ");
  }
  return policy;
}

/** `GET /`: the dashboard page. */
export async function dashboard(c: Context): Promise<Response> {
  return c.html(page, 200, {
    "content-security-policy": await contentSecurityPolicy(),
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  });
}
