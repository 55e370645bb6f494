/**
 * Forwarding to a backend. Internal workers are reached through service bindings. Third parties are
 * reached only at their configured origin (every URL is built from it, and redirects are never
 * followed), with personal data scrubbed by the backend's egress policy and a short-lived JWT bound
 * to the exact method, URL and body. Every call has a timeout.
 */
import { rewriteJsonBody } from "../../shared/data-policy.ts";
import { bodySha256, egressUrl } from "../../shared/egress.ts";
import { problemResponse } from "../../shared/problem.ts";
import type { ControlPlaneApi } from "../../shared/slice.ts";
import { deadline, readBounded, TIMED_OUT, withTimeout } from "./bounded.ts";
import { checkEgressQuota } from "./rate-limit.ts";
import type { CompiledBackend, Target } from "./plan.ts";
import { INTERNET, MESH_HEADER_PREFIX } from "./identity.ts";

/** How long a third party may take when its route sets no timeout (Envoy's default route timeout). */
export const DEFAULT_EGRESS_TIMEOUT_MS = 15_000;
/** Larger declared bodies are refused before anything is sent. */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Egress bodies are buffered to scrub and hash them; larger ones are refused. */
export const MAX_EGRESS_BODY_BYTES = 1024 * 1024;
const SIGNING_TIMEOUT_MS = 2_000;

/** Headers a third party never receives: the shopper's credentials and the mesh's own headers. */
const NOT_FOR_THIRD_PARTIES = ["cookie", "authorization", "host", "content-length"];

/** Outcome of one forwarding attempt. */
export type ForwardResult = { kind: "response"; response: Response } | { kind: "failed"; response: Response; injected?: boolean };

/** Who is calling out, for the egress token. */
export interface EgressContext {
  service: string;
  caller: string;
  controlPlane: ControlPlaneApi;
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
export async function forward(backend: CompiledBackend, request: Request, egress: EgressContext, timeoutMs: number | undefined): Promise<ForwardResult> {
  const target = backend.target;
  if (target.kind === "missing") return failed(502, "upstream-unavailable", "Backend unavailable", target.reason, backend.name);
  if (target.kind === "binding") {
    const timer = timeoutMs === undefined ? undefined : deadline(timeoutMs);
    try {
      const response = await (timer ? Promise.race([target.fetcher.fetch(request), timer.expired]) : target.fetcher.fetch(request));
      return response === TIMED_OUT ? timedOut(backend.name, timeoutMs ?? 0) : { kind: "response", response };
    } catch (error) {
      return unreachable(backend.name, error);
    } finally {
      timer?.clear();
    }
  }
  const ms = timeoutMs ?? DEFAULT_EGRESS_TIMEOUT_MS;
  const signal = AbortSignal.timeout(ms);
  try {
    return await toThirdParty(backend.name, target, request, egress, signal);
  } catch (error) {
    return signal.aborted ? timedOut(backend.name, ms) : unreachable(backend.name, error);
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
  const destination = egressUrl(base, url.pathname, url.search);
  if (destination.kind === "refused") return failed(403, "egress-refused", "Egress refused", destination.detail, name);
  if (target.quota) {
    // The provider's quota is spent only by calls that will really be sent.
    const refused = await checkEgressQuota(target.provider, target.quota, egress.controlPlane);
    if (refused) {
      await request.body?.cancel();
      return { kind: "failed", response: refused };
    }
  }

  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  const read = hasBody ? await readBounded(request.body, MAX_EGRESS_BODY_BYTES) : new ArrayBuffer(0);
  if (read === "too-large") return failed(413, "too-large", "Request body too large", `egress bodies are limited to ${MAX_EGRESS_BODY_BYTES} bytes`, name);
  let body: ArrayBuffer = read;
  if (target.egress && body.byteLength > 0) {
    const rewrite = rewriteJsonBody(body, request.headers.get("content-type"), target.egress);
    // A body the policy applies to but cannot read might carry the very data it must strip.
    if (rewrite.kind === "invalid-json") return failed(422, "egress-unreadable", "Egress refused", "the body is not valid JSON, so the egress data policy cannot be applied", name);
    if (rewrite.kind === "changed") {
      body = new TextEncoder().encode(rewrite.body).slice().buffer;
      console.log(JSON.stringify({ event: "egress-data-policy", backend: name, removed: rewrite.removed, masked: rewrite.masked }));
    }
  }

  const signed = await withTimeout(
    egress.controlPlane.signEgress(egress.service, {
      // The mesh service on whose behalf the call leaves; a shopper is not a service, the proxy's own service is.
      sub: egress.caller === INTERNET ? egress.service : egress.caller,
      aud: target.provider,
      htm: request.method,
      htu: destination.htu,
      body_sha256: await bodySha256(body),
    }),
    SIGNING_TIMEOUT_MS,
    "egress signer",
  ).catch((error: unknown) => error instanceof Error ? error : new Error(String(error)));
  if (signed instanceof Error) return failed(502, "egress-unsigned", "Egress not signed", `could not sign the call: ${signed.message}`, name);

  const headers = new Headers(request.headers);
  for (const header of NOT_FOR_THIRD_PARTIES) headers.delete(header);
  for (const header of [...headers.keys()]) if (header.startsWith(MESH_HEADER_PREFIX)) headers.delete(header);
  headers.set("authorization", `Bearer ${signed.token}`);
  // Latency-aware balancing learns from every answer (and every failure) of this origin.
  const sent = Date.now();
  const done = target.balancer.start(base, sent);
  try {
    const response = await fetch(destination.url, {
      method: request.method,
      headers,
      ...(hasBody ? { body } : {}),
      redirect: "manual",
      signal,
    });
    done({ latencyMs: Date.now() - sent, success: response.status < 500, now: Date.now() });
    return { kind: "response", response };
  } catch (error) {
    done({ latencyMs: Date.now() - sent, success: false, now: Date.now() });
    throw error;
  }
}
