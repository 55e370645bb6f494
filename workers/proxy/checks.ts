/**
 * The per-route checks of the chain: end-user authentication and body contracts. Each returns the
 * request (or response) to continue with, or the problem response that ends the chain.
 */
import { checkJsonBody, type BodyCheck, type ContractCheck } from "../../shared/contract.ts";
import { isJsonContentType } from "../../shared/data-policy.ts";
import { problemResponse } from "../../shared/problem.ts";
import { authenticate, CLAIMS_HEADER, encodeClaims } from "../../shared/user-auth.ts";
import { readBounded } from "./bounded.ts";
import type { CompiledRoute } from "./compile.ts";

/** Bodies larger than this are not buffered for contract checks (logged; refused in enforce mode). */
export const MAX_CONTRACT_BODY_BYTES = 1024 * 1024;

/** Continue with `value`, or stop with `response`. */
export type Step<T> = { kind: "continue"; value: T } | { kind: "stop"; response: Response };

/**
 * Verifies the end user's token when the route asks for it; the verified claims replace whatever
 * `x-weft-claims` the request had. `headers` is the backend's header set so far (undefined: unchanged).
 */
export async function authenticateUser(route: CompiledRoute, request: Request, headers: Headers): Promise<Step<Headers>> {
  if (!route.auth) return { kind: "continue", value: headers };
  const result = await authenticate(request.headers.get("authorization"), route.auth.settings, route.auth.keys);
  if (result.kind === "refused") {
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
  headers.set(CLAIMS_HEADER, encodeClaims(result.claims));
  return { kind: "continue", value: headers };
}

function logViolation(direction: "request" | "response", service: string, route: string, check: Extract<ContractCheck, { kind: "fail" }>): void {
  console.error(JSON.stringify({ event: "contract-violation", level: "error", direction, service, route, errors: check.errors }));
}

type BodyOutcome =
  | { kind: "not-json"; result: Extract<ContractCheck, { kind: "fail" }> }
  | { kind: "too-large" }
  | { kind: "checked"; bytes: ArrayBuffer; result: ContractCheck };

/** Buffers (bounded) and checks a JSON body; a non-JSON body is reported without being read. */
async function checkBody(body: ReadableStream<Uint8Array> | null, contentType: string | null, check: BodyCheck): Promise<BodyOutcome> {
  if (body && !isJsonContentType(contentType)) {
    return { kind: "not-json", result: { kind: "fail", errors: [{ path: "", message: `expected a JSON body, got ${contentType ?? "no content type"}` }] } };
  }
  const bytes = await readBounded(body, MAX_CONTRACT_BODY_BYTES);
  if (bytes === "too-large") return { kind: "too-large" };
  return { kind: "checked", bytes, result: checkJsonBody(new TextDecoder().decode(bytes), check) };
}

const tooLarge = (): Response =>
  problemResponse(413, "too-large", "Body too large to check", { detail: `contract checks read at most ${MAX_CONTRACT_BODY_BYTES} bytes` });

/** Checks a request body against the route's contract; in enforce mode a violation is answered 422. */
export async function checkRequestContract(service: string, route: CompiledRoute, request: Request): Promise<Step<Request>> {
  const contract = route.contract;
  if (!contract?.checksRequest || request.method === "GET" || request.method === "HEAD") return { kind: "continue", value: request };
  const outcome = await checkBody(request.body, request.headers.get("content-type"), contract.checkRequest);
  if (outcome.kind === "too-large") return { kind: "stop", response: tooLarge() };
  if (outcome.result.kind === "fail") {
    logViolation("request", service, route.name, outcome.result);
    if (contract.mode === "enforce") {
      return { kind: "stop", response: problemResponse(422, "contract-violation", "Request breaks the route's contract", { route: route.name, errors: outcome.result.errors }) };
    }
  }
  return { kind: "continue", value: outcome.kind === "checked" ? new Request(request, { body: outcome.bytes }) : request };
}

/** Checks a response body against the route's contract; in enforce mode a violation becomes a 502. */
export async function checkResponseContract(service: string, route: CompiledRoute, response: Response): Promise<Response> {
  const contract = route.contract;
  if (!contract?.checksResponse || !response.body) return response;
  const outcome = await checkBody(response.body, response.headers.get("content-type"), contract.checkResponse);
  if (outcome.kind === "too-large") return tooLarge();
  if (outcome.result.kind === "fail") {
    logViolation("response", service, route.name, outcome.result);
    if (contract.mode === "enforce") {
      return problemResponse(502, "contract-violation", "Backend response breaks the route's contract", { route: route.name, errors: outcome.result.errors });
    }
  }
  return outcome.kind === "checked" ? new Response(outcome.bytes, response) : response;
}
