/**
 * The per-route checks of the chain: end-user authentication and body contracts. Each returns the
 * value to continue with, or the problem response that ends the chain.
 */
import type { JWTPayload } from "jose";
import { checkJsonBody, type BodyCheck, type ContractCheck } from "../../shared/contract.ts";
import { isJsonContentType } from "../../shared/data-policy.ts";
import { problemResponse } from "../../shared/problem.ts";
import { authenticate } from "../../shared/user-auth.ts";
import { readPrefix } from "./bounded.ts";
import type { RoutePlan } from "./plan.ts";

/** Bodies larger than this are not buffered for contract checks (logged; refused in enforce mode). */
export const MAX_CONTRACT_BODY_BYTES = 1024 * 1024;

/** Continue with `value`, or stop with `response`. */
export type Step<T> = { kind: "continue"; value: T } | { kind: "stop"; response: Response };

/** Verifies the end user's token when the route asks for it; continues with the verified claims. */
export async function authenticateUser(auth: NonNullable<RoutePlan["auth"]>, request: Request): Promise<Step<JWTPayload>> {
  const result = await authenticate(request.headers.get("authorization"), auth.settings, auth.keys);
  if (result.kind === "authenticated") return { kind: "continue", value: result.claims };
  return {
    kind: "stop",
    response: problemResponse(
      401,
      "unauthenticated",
      "Authentication required",
      { detail: result.reason },
      { "www-authenticate": `Bearer error="invalid_token", error_description="${result.reason.replace(/"/g, "'")}"` },
    ),
  };
}

function logViolation(direction: "request" | "response", service: string, route: string, errors: unknown): void {
  console.error(JSON.stringify({ event: "contract-violation", level: "error", direction, service, route, errors }));
}

/** A checked body: what to send on (the bytes read, or the untouched stream when it was too large to check) and the verdict. */
type Checked = { body: ArrayBuffer | ReadableStream<Uint8Array>; result: ContractCheck | "too-large" };

/** Buffers (bounded) and checks a JSON body; a non-JSON body is reported without being read. */
async function checkBody(body: ReadableStream<Uint8Array> | null, contentType: string | null, check: BodyCheck): Promise<Checked | undefined> {
  if (!body) return undefined;
  if (!isJsonContentType(contentType)) {
    return { body, result: { kind: "fail", errors: [{ path: "", message: `expected a JSON body, got ${contentType ?? "no content type"}` }] } };
  }
  const read = await readPrefix(body, MAX_CONTRACT_BODY_BYTES);
  if (read.kind === "too-large") return { body: read.stream, result: "too-large" };
  return { body: read.bytes, result: checkJsonBody(new TextDecoder().decode(read.bytes), check) };
}

/**
 * Checks a request body against the route's contract. `enforce`: a violation is answered 422 and a
 * body too large to check 413, and nothing is forwarded. `log`: violations are logged and the
 * request goes on exactly as it came, whatever its size. Continues with the body to forward
 * (undefined: the request's own, untouched).
 */
export async function checkRequestContract(service: string, route: RoutePlan, request: Request): Promise<Step<ArrayBuffer | ReadableStream<Uint8Array> | undefined>> {
  const contract = route.contract;
  if (!contract?.checksRequest || request.method === "GET" || request.method === "HEAD") return { kind: "continue", value: undefined };
  const checked = await checkBody(request.body, request.headers.get("content-type"), contract.checkRequest);
  if (!checked) return { kind: "continue", value: undefined };
  const enforce = contract.mode === "enforce";
  if (checked.result === "too-large") {
    console.warn(JSON.stringify({ event: "contract-unchecked", direction: "request", service, route: route.name, reason: `body over ${MAX_CONTRACT_BODY_BYTES} bytes` }));
    if (enforce) return { kind: "stop", response: problemResponse(413, "too-large", "Body too large to check", { detail: `contract checks read at most ${MAX_CONTRACT_BODY_BYTES} bytes` }) };
  } else if (checked.result.kind === "fail") {
    logViolation("request", service, route.name, checked.result.errors);
    if (enforce) return { kind: "stop", response: problemResponse(422, "contract-violation", "Request breaks the route's contract", { route: route.name, errors: checked.result.errors }) };
  }
  return { kind: "continue", value: checked.body };
}

/**
 * Checks a backend's response body against the route's contract. `enforce`: a violation, or a body
 * too large to check, becomes a 502 (the backend's answer cannot be vouched for). `log`: the
 * response goes on exactly as the backend sent it.
 */
export async function checkResponseContract(service: string, route: RoutePlan, response: Response): Promise<Response> {
  const contract = route.contract;
  if (!contract?.checksResponse || !response.body || response.webSocket) return response;
  const checked = await checkBody(response.body, response.headers.get("content-type"), contract.checkResponse);
  if (!checked) return response;
  const enforce = contract.mode === "enforce";
  if (checked.result === "too-large") {
    console.warn(JSON.stringify({ event: "contract-unchecked", direction: "response", service, route: route.name, reason: `body over ${MAX_CONTRACT_BODY_BYTES} bytes` }));
    if (enforce) {
      await (checked.body instanceof ReadableStream ? checked.body.cancel() : undefined);
      return problemResponse(502, "contract-unchecked", "Backend response too large to check", { route: route.name, detail: `contract checks read at most ${MAX_CONTRACT_BODY_BYTES} bytes` });
    }
  } else if (checked.result.kind === "fail") {
    logViolation("response", service, route.name, checked.result.errors);
    if (enforce) return problemResponse(502, "contract-violation", "Backend response breaks the route's contract", { route: route.name, errors: checked.result.errors });
  }
  return new Response(checked.body, response);
}
