/**
 * The admin API client of the weft CLI: finds the control plane and its token, sends every request
 * with a timeout, and turns failures (problem+json, network errors) into {@link CliError}s that say
 * what went wrong and what to do.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT, type ErrorDetails } from "./errors.ts";

/** Where `npm start` serves the control plane when WEFT_ADMIN_PORT is not set. */
export const LOCAL_ADMIN_PORT = 8788;
const LOCAL_TOKEN_FILE = path.join(".weft", "admin-token");
/** Written by `npm start` with the control plane's URL, so custom ports need no flags. */
const LOCAL_URL_FILE = path.join(".weft", "admin-url");
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** The control plane a command talks to, and where its URL and token came from (never the token itself). */
export interface Target {
  url: string;
  token: string | undefined;
  urlSource: string;
  tokenSource: string | undefined;
}

/** The nearest directory at or above `from` that holds `.weft/` (where `npm start` keeps its state), else `fallback`. */
export function localStateRoot(from: string, fallback: string): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, ".weft"))) return dir;
    if (path.dirname(dir) === dir) return fallback;
  }
}

/**
 * `--url`, else WEFT_URL, else the local mesh of `npm start` (the URL it wrote to `.weft/admin-url`,
 * else 127.0.0.1:WEFT_ADMIN_PORT, default 8788).
 * The token: `--token`, else WEFT_ADMIN_TOKEN, else `.weft/admin-token` — the local file only for a
 * control plane on this machine, so a local token is never sent anywhere else.
 */
export function resolveTarget(flags: { url: string | undefined; token: string | undefined }, env: NodeJS.ProcessEnv, stateRoot: string): Target {
  let url: string;
  let urlSource: string;
  if (flags.url) [url, urlSource] = [flags.url, "--url"];
  else if (env.WEFT_URL) [url, urlSource] = [env.WEFT_URL, "WEFT_URL"];
  else if (!env.WEFT_ADMIN_PORT && existsSync(path.join(stateRoot, LOCAL_URL_FILE))) {
    [url, urlSource] = [readFileSync(path.join(stateRoot, LOCAL_URL_FILE), "utf8").trim(), "the local mesh (.weft/admin-url, written by npm start)"];
  } else [url, urlSource] = [`http://127.0.0.1:${env.WEFT_ADMIN_PORT || LOCAL_ADMIN_PORT}`, "the local mesh's address (npm start)"];
  let parsed: URL;
  try {
    parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    throw new CliError(EXIT.usage, `the control plane URL from ${urlSource} is not an http(s) URL: '${url}'`, "Give the control plane's address, e.g. --url https://weft.example.com");
  }
  const base = `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
  if (flags.token) return { url: base, token: flags.token, urlSource, tokenSource: "--token" };
  if (env.WEFT_ADMIN_TOKEN) return { url: base, token: env.WEFT_ADMIN_TOKEN, urlSource, tokenSource: "WEFT_ADMIN_TOKEN" };
  const tokenFile = path.join(stateRoot, LOCAL_TOKEN_FILE);
  if (LOOPBACK.has(parsed.hostname) && existsSync(tokenFile)) {
    const token = readFileSync(tokenFile, "utf8").trim();
    if (token) return { url: base, token, urlSource, tokenSource: ".weft/admin-token" };
  }
  return { url: base, token: undefined, urlSource, tokenSource: undefined };
}

/** A successful admin API answer. */
export interface ApiResponse<T> {
  status: number;
  /** The ETag's version number (`"12"` → 12), when the response has one. */
  version: number | undefined;
  body: T;
}

/** How one request is sent. */
export interface CallOptions {
  body?: unknown;
  /** Sent as `If-Match: "<version>"`. */
  ifMatch?: number;
  /** Recorded with config changes (`x-weft-reason`). */
  reason?: string;
  /** What to do when the server answers with this status (added to the error's hint). */
  hints?: Readonly<Record<number, string>>;
}

interface ProblemBody {
  title?: string;
  detail?: string;
  type?: string;
  issues?: Array<{ path?: Array<string | number>; message?: string }>;
  [key: string]: unknown;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses `"12"` / `W/"12"` into 12. */
export function etagVersion(etag: string | null): number | undefined {
  const match = etag ? /^\s*(?:W\/)?"(\d+)"/.exec(etag) : null;
  return match?.[1] ? Number(match[1]) : undefined;
}

/** The reason a fetch failed, in words an operator recognises (ECONNREFUSED, ENOTFOUND, …). */
function networkReason(error: unknown): string {
  if (error instanceof Error) {
    const cause: unknown = error.cause;
    if (isRecord(cause) && typeof cause.code === "string") return cause.code;
    if (cause instanceof Error) return cause.message;
    return error.message;
  }
  return String(error);
}

/** Talks to one control plane's admin API. */
export class AdminClient {
  readonly target: Target;
  private readonly timeoutMs: number;
  private readonly interrupt: AbortSignal;
  constructor(target: Target, timeoutMs: number, interrupt: AbortSignal) {
    this.target = target;
    this.timeoutMs = timeoutMs;
    this.interrupt = interrupt;
  }

  private unreachableHint(): string {
    return this.target.urlSource.startsWith("the local mesh")
      ? "Is the local mesh running? Start it with `npm start`, or point the CLI at a control plane with WEFT_URL or --url."
      : `Check the address (from ${this.target.urlSource}) and that the control plane is deployed (\`npm run deploy\`).`;
  }

  private headers(options: CallOptions, accept: string): Headers {
    if (this.target.token === undefined) {
      throw new CliError(
        EXIT.unavailable,
        "no admin token",
        "Set WEFT_ADMIN_TOKEN or pass --token (the control plane's WEFT_ADMIN_TOKEN secret; `npm start` keeps the local one in .weft/admin-token).",
      );
    }
    const headers = new Headers({ authorization: `Bearer ${this.target.token}`, accept });
    if (options.body !== undefined) headers.set("content-type", "application/json");
    if (options.ifMatch !== undefined) headers.set("if-match", `"${options.ifMatch}"`);
    if (options.reason !== undefined) headers.set("x-weft-reason", options.reason.replace(/[^\x20-\x7e]/g, "?").slice(0, 200));
    return headers;
  }

  /** Sends `fetch` with the timeout, mapping network failures and timeouts to exit 3. */
  private async send(route: string, init: RequestInit, timeoutMs: number): Promise<Response> {
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      return await fetch(`${this.target.url}${route}`, { ...init, signal: AbortSignal.any([timeout, this.interrupt]) });
    } catch (error) {
      if (this.interrupt.aborted) throw new CliError(EXIT.interrupted, "interrupted");
      if (timeout.aborted) {
        throw new CliError(EXIT.unavailable, `the control plane at ${this.target.url} did not answer within ${timeoutMs / 1000} s`, `${this.unreachableHint()} Use --timeout for slow links.`);
      }
      throw new CliError(EXIT.unavailable, `cannot reach the control plane at ${this.target.url} (${networkReason(error)})`, this.unreachableHint());
    }
  }

  /** One JSON request. Non-2xx answers throw a CliError built from the problem document. */
  async call<T>(method: string, route: string, options: CallOptions = {}): Promise<ApiResponse<T>> {
    const response = await this.send(
      route,
      { method, headers: this.headers(options, "application/json"), ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}) },
      this.timeoutMs,
    );
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      throw new CliError(EXIT.unavailable, `the control plane at ${this.target.url} broke off its answer (${networkReason(error)})`, this.unreachableHint());
    }
    const type = response.headers.get("content-type") ?? "";
    let json: unknown;
    if (/json/i.test(type)) {
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
    }
    if (response.ok && json !== undefined) return { status: response.status, version: etagVersion(response.headers.get("etag")), body: json as T };
    if (!response.ok && isRecord(json)) throw this.problem(method, route, response, json, options);
    throw new CliError(
      EXIT.unavailable,
      `${this.target.url} did not answer like a Weft control plane (${method} ${route}: HTTP ${response.status}, ${type || "no content type"})`,
      `Check the URL (from ${this.target.urlSource}): it must be the control plane's, not the shop's.`,
      { status: response.status },
    );
  }

  private problem(method: string, route: string, response: Response, problem: ProblemBody, options: CallOptions): CliError {
    const status = response.status;
    const issues = (problem.issues ?? []).map((i) => ({ path: (i.path ?? []).join("."), message: i.message ?? "" }));
    const details: ErrorDetails = { status, request: `${method} ${route}`, ...(problem.type ? { type: problem.type } : {}), ...(issues.length > 0 ? { issues } : {}) };
    for (const key of ["currentVersion", "backend", "state"]) if (problem[key] !== undefined) details[key] = problem[key];
    const what = problem.detail ?? problem.title ?? `HTTP ${status}`;
    const custom = options.hints?.[status];
    if (status === 401 || status === 403) {
      return new CliError(
        EXIT.unavailable,
        `the control plane refused the admin token${this.target.tokenSource ? ` from ${this.target.tokenSource}` : ""}: ${what}`,
        "Use the control plane's WEFT_ADMIN_TOKEN (locally: .weft/admin-token) via WEFT_ADMIN_TOKEN or --token.",
        details,
      );
    }
    if (status === 503 && problem.type?.endsWith(":admin-token-missing")) return new CliError(EXIT.unavailable, what, undefined, details);
    // "No such endpoint" (as opposed to "no such service"): the URL is not this API's, e.g. the shop's.
    if (status === 404 && /^no (route|resource) (for|at) [A-Z]+ \//.test(problem.detail ?? "")) {
      return new CliError(
        EXIT.unavailable,
        `${this.target.url} did not answer like a Weft control plane (${method} ${route}: ${what})`,
        `Check the URL (from ${this.target.urlSource}): it must be the control plane's, not the shop's, and the control plane as new as the CLI.`,
        details,
      );
    }
    const hint =
      custom ??
      (status === 412
        ? `Somebody changed it since it was read${typeof problem.currentVersion === "number" ? ` (now version ${problem.currentVersion})` : ""}: re-run the command to work from the current state.`
        : status === 422
          ? "Nothing was changed. Fix the listed problems and try again."
          : status === 404 && problem.type?.endsWith(":unknown-service")
            ? "`weft status` lists the services."
            : status >= 500
              ? "The control plane failed; nothing was changed unless it said so. Try again shortly."
              : undefined);
    return new CliError(EXIT.failed, what, hint, details);
  }

  /**
   * Opens a server-sent event stream. The timeout covers connecting and the response headers; the
   * caller watches the stream itself (heartbeats arrive every 15 s).
   */
  async stream(route: string, abort: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const connect = new AbortController();
    const timer = setTimeout(() => connect.abort(), this.timeoutMs);
    let response: Response;
    try {
      response = await fetch(`${this.target.url}${route}`, {
        headers: this.headers({}, "text/event-stream"),
        signal: AbortSignal.any([connect.signal, abort, this.interrupt]),
      });
    } catch (error) {
      if (this.interrupt.aborted || abort.aborted) throw new CliError(EXIT.ok, "interrupted");
      if (connect.signal.aborted) throw new CliError(EXIT.unavailable, `the control plane at ${this.target.url} did not answer within ${this.timeoutMs / 1000} s`, this.unreachableHint());
      throw new CliError(EXIT.unavailable, `cannot reach the control plane at ${this.target.url} (${networkReason(error)})`, this.unreachableHint());
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok || !response.body) {
      const text = await response.text().catch(() => "");
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (isRecord(json)) throw this.problem("GET", route, response, json, {});
      throw new CliError(EXIT.unavailable, `${this.target.url} did not answer like a Weft control plane (GET ${route}: HTTP ${response.status})`, `Check the URL (from ${this.target.urlSource}).`);
    }
    return response.body;
  }
}
