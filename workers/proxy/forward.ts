/**
 * Forwarding to a backend. Internal workers are reached through service bindings. Third parties are
 * reached only at their configured origin (every URL is built from it, and redirects are never
 * followed), with an allowlist of request headers, personal data scrubbed from body and query by the
 * backend's egress policy (fail closed), and the credential its `auth` names (egress-credentials.ts;
 * by default a short-lived JWT bound to the exact method, URL and body). Every call has a timeout.
 */
import { env as workerEnv } from "cloudflare:workers";
import { egressHeaders, rewriteEgressBody, scrubQuery, stripsFields } from "../../shared/data-policy.ts";
import { bodySha256, egressUrl } from "../../shared/egress.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { deadline, readBounded, TIMED_OUT } from "./bounded.ts";
import { secretsFrom, vendorCredential, type Credential, type CredentialDeps, type EgressCall } from "./egress-credentials.ts";
import type { RateLimiter } from "./rate-limit.ts";
import type { CompiledBackend, Target } from "./plan.ts";
import { INTERNET } from "./identity.ts";

/** How long a third party may take when its route sets no timeout (Envoy's default route timeout). */
export const DEFAULT_EGRESS_TIMEOUT_MS = 15_000;
/** Larger declared bodies are refused before anything is sent. */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Egress bodies are buffered to scrub and hash them; larger ones are refused. */
export const MAX_EGRESS_BODY_BYTES = 1024 * 1024;

/** Outcome of one forwarding attempt. */
export type ForwardResult = { kind: "response"; response: Response } | { kind: "failed"; response: Response; injected?: boolean };

/** Who is calling out, for the egress token. */
export interface EgressContext {
  service: string;
  caller: string;
  controlPlane: ControlPlaneApi;
  /** The service's rate-limit state, which also counts providers' shared quotas. */
  limiter: RateLimiter;
}

function failed(status: number, slug: string, title: string, detail: string, backend: string): ForwardResult {
  return { kind: "failed", response: problemResponse(status, slug, title, { detail, backend }) };
}

/** The result for a backend that did not answer within `ms`. */
export function timedOut(backend: string, ms: number): ForwardResult {
  return failed(504, "upstream-timeout", "Backend timed out", `backend '${backend}' did not answer within ${ms} ms`, backend);
}

/** The result for a backend that could not be reached at all. */
export function unreachable(backend: string, error: unknown): ForwardResult {
  const reason = error instanceof Error ? error.message : String(error);
  return failed(502, "upstream-unavailable", "Backend unavailable", `backend '${backend}' could not be reached: ${reason}`, backend);
}

/**
 * Sends `request` to `backend`, or says why it could not. `timeoutMs` is the route's; internal
 * workers without one are waited for as long as the platform lets them run.
 */
export function forward(backend: CompiledBackend, request: Request, egress: EgressContext, timeoutMs: number | undefined): Promise<ForwardResult> {
  const target = backend.target;
  if (target.kind === "missing") return Promise.resolve(failed(502, "upstream-unavailable", "Backend unavailable", target.reason, backend.name));
  if (target.kind === "binding") return toWorker(backend.name, target.fetcher, request, timeoutMs);
  return toExternal(backend.name, target, request, egress, timeoutMs ?? DEFAULT_EGRESS_TIMEOUT_MS);
}

/**
 * A service binding call. Without a timeout it is one `fetch` and one `then` (this runs on every
 * request; an async wrapper here cost more than the rest of the attempt).
 */
function toWorker(name: string, fetcher: Fetcher, request: Request, timeoutMs: number | undefined): Promise<ForwardResult> {
  const answered = (response: Response): ForwardResult => ({ kind: "response", response });
  const failedToReach = (error: unknown): ForwardResult => unreachable(name, error);
  if (timeoutMs === undefined) return fetcher.fetch(request).then(answered, failedToReach);
  const timer = deadline(timeoutMs);
  return Promise.race([fetcher.fetch(request), timer.expired])
    .then((response) => (response === TIMED_OUT ? timedOut(name, timeoutMs) : answered(response)), failedToReach)
    .finally(() => timer.clear());
}

async function toExternal(name: string, target: Extract<Target, { kind: "external" }>, request: Request, egress: EgressContext, ms: number): Promise<ForwardResult> {
  const signal = AbortSignal.timeout(ms);
  try {
    return await toThirdParty(name, target, request, egress, signal);
  } catch (error) {
    return signal.aborted ? timedOut(name, ms) : unreachable(name, error);
  }
}

async function toThirdParty(
  name: string,
  target: Extract<Target, { kind: "external" }>,
  request: Request,
  egress: EgressContext,
  signal: AbortSignal,
): Promise<ForwardResult> {
  const url = new URL(request.url);
  const started = Date.now();
  const base = target.balancer.pick(started, Math.random(), Math.random());
  const policy = target.egress;
  // Query parameters are scrubbed by the same rules as body fields (fail closed: `?email=` too).
  const query = policy ? scrubQuery(url.search, policy) : { kind: "unchanged" as const };
  const destination = egressUrl(base, url.pathname, query.kind === "changed" ? query.search : url.search);
  if (destination.kind === "refused") return failed(403, "egress-refused", "Egress refused", destination.detail, name);
  if (target.quota) {
    // The provider's quota is spent only by calls that will really be sent.
    const refused = await egress.limiter.egressQuota(target.provider, target.quota);
    if (refused) {
      await request.body?.cancel();
      return { kind: "failed", response: refused };
    }
  }

  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  const read = hasBody ? await readBounded(request.body, MAX_EGRESS_BODY_BYTES) : new ArrayBuffer(0);
  if (read === "too-large") return failed(413, "too-large", "Request body too large", `egress bodies are limited to ${MAX_EGRESS_BODY_BYTES} bytes`, name);
  let body: ArrayBuffer = read;
  const removed: string[] = query.kind === "changed" ? query.removed.map((p) => `?${p}`) : [];
  const masked: string[] = query.kind === "changed" ? query.masked.map((p) => `?${p}`) : [];
  if (policy && stripsFields(policy) && body.byteLength > 0) {
    // Fail closed: whatever its Content-Type claims, a body leaving under a policy must be JSON the
    // policy can read, or it does not leave (a text/plain string body may be JSON with an email in it).
    const rewrite = rewriteEgressBody(body, policy);
    if (rewrite.kind === "invalid-json") return failed(422, "egress-unreadable", "Egress refused", "the body is not valid JSON, so the egress data policy cannot be applied", name);
    if (rewrite.kind === "changed") {
      body = new TextEncoder().encode(rewrite.body).slice().buffer;
      removed.push(...rewrite.removed);
      masked.push(...rewrite.masked);
    }
  }
  if (removed.length > 0 || masked.length > 0) console.log(JSON.stringify({ event: "egress-data-policy", backend: name, removed, masked }));

  const call: EgressCall = {
    service: egress.service,
    // The mesh service on whose behalf the call leaves; a shopper is not a service, the proxy's own service is.
    subject: egress.caller === INTERNET ? egress.service : egress.caller,
    provider: target.provider,
    method: request.method,
    htu: destination.htu,
    bodySha256: () => bodySha256(body),
  };
  const deps: CredentialDeps = { controlPlane: egress.controlPlane, secrets: secretsFrom(workerEnv), bindings: workerEnv, now: Date.now() };
  // An allowlist, not a denylist: only headers a vendor needs leave (no cookies, shopper tokens,
  // client addresses, referers or keys the caller happened to send), then the mesh's credential.
  const headers = egressHeaders(request.headers, policy?.headers);
  const send = async (credential: Exclude<Credential, { kind: "failed" }>): Promise<Response> => {
    const outbound = new Headers(headers);
    for (const [header, value] of credential.headers) outbound.set(header, value);
    // Latency-aware balancing learns from every answer (and every failure) of this origin.
    const sent = Date.now();
    const done = target.balancer.start(base, sent);
    try {
      const init: RequestInit = { method: request.method, headers: outbound, ...(hasBody ? { body } : {}), redirect: "manual", signal };
      const response = await (credential.fetcher ? credential.fetcher.fetch(destination.url, init) : fetch(destination.url, init));
      done({ latencyMs: Date.now() - sent, success: response.status < 500, now: Date.now() });
      return response;
    } catch (error) {
      done({ latencyMs: Date.now() - sent, success: false, now: Date.now() });
      throw error;
    }
  };
  const credential = await vendorCredential(target.auth, call, deps);
  if (credential.kind === "failed") return failed(credential.status, credential.slug, "Egress credential unavailable", credential.detail, name);
  const response = await send(credential);
  if (response.status !== 401 || target.auth?.type !== "oauth2-client-credentials" || credential.token === undefined) return { kind: "response", response };
  // The provider no longer accepts the token (revoked, or its clock ran ahead): one fresh token, one retry.
  await response.body?.cancel();
  const fresh = await vendorCredential(target.auth, call, { ...deps, now: Date.now() }, credential.token);
  if (fresh.kind === "failed") return failed(fresh.status, fresh.slug, "Egress credential unavailable", fresh.detail, name);
  return { kind: "response", response: await send(fresh) };
}
