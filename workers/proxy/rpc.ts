/**
 * Workers RPC through the mesh: `env.USERS.getUser(id)` on a binding to a service's proxy reaches
 * the proxy's entrypoint, which has no `getUser` of its own. Its prototype answers every method name
 * it does not define with a forwarder (see {@link withRpcForwarding}), so any method passes, and the
 * call takes the same steps an HTTP request does, in the same order, with the method where HTTP
 * has a path:
 *
 *   identity → authorization (rules with `rpc`) → route (`match.rpc`, else the catch-all route) →
 *   split (weighted; sticky on the calling service) → forward (the backend binding's own method) →
 *   telemetry (the method as the route; ok as 200, a thrown error as 500)
 *
 * Arguments and results pass untouched — structured-clone values, stubs, `RpcTarget`s, functions,
 * streams — because the proxy hands the caller's arguments to the backend's stub and returns the
 * backend's promise: workerd pipelines both ways. An error thrown by the backend reaches the caller
 * as the backend threw it (its type and message, as far as Workers RPC carries them). A refused call
 * throws an `Error` whose message says why.
 *
 * Not (yet) applied to RPC: retries, timeouts, failover, faults, rate limits, contracts, and
 * property reads (`await env.USERS.version`): the proxy cannot tell a property from a method, so
 * every name is a method.
 */
import { authorize, rpcMethodMatches } from "../../shared/authorize.ts";
import { healthyOwners } from "../../shared/resilience.ts";
import { decideSplit } from "../../shared/split.ts";
import type { SliceState } from "./config-cache.ts";
import { identify, INTERNET } from "./identity.ts";
import type { CompiledSlice, RoutePlan } from "./plan.ts";
import type { ServiceProxy } from "./service.ts";
import { beginHop, type Trail } from "./telemetry.ts";

/** Names a forwarder never answers: the entrypoint's own handlers and what runtimes probe objects for. */
const RESERVED = new Set(["then", "catch", "finally", "constructor", "toJSON", "fetch", "connect", "scheduled", "queue", "tail", "trace", "email", "alarm", "test", "env", "ctx", "dup", "onRpcBroken"]);

/** A method name worth forwarding: an identifier, bounded. */
const METHOD = /^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/;

/** One RPC call into the service. */
export interface RpcCall {
  proxy: ServiceProxy;
  /** The binding's props (who is calling, as the deployer set it). */
  props: unknown;
  method: string;
  args: unknown[];
  waitUntil: (promise: Promise<unknown>) => void;
}

/** The route an RPC call takes: an RPC route whose pattern matches, else the first catch-all route. */
export function rpcRoute(routes: ReadonlyArray<RoutePlan>, method: string): RoutePlan | undefined {
  return routes.find((r) => r.rpc?.kind === "route" && rpcMethodMatches(r.rpc.pattern, method)) ?? routes.find((r) => r.rpc?.kind === "fallback");
}

/** A call refused by the mesh: thrown into the caller, which sees this message. */
function refused(message: string): Error {
  return new Error(`weft: ${message}`);
}

/** Calls `method` on the backend's binding (its stub), with the caller's arguments. */
function callBackend(slice: CompiledSlice, backendName: string, method: string, args: unknown[]): unknown {
  const backend = slice.backends.get(backendName);
  if (!backend || backend.target.kind !== "binding") {
    throw refused(`backend '${backendName}' of service '${slice.service}' is not a worker reachable over RPC`);
  }
  const stub: object = backend.target.fetcher;
  const fn: unknown = Reflect.get(stub, method);
  if (typeof fn !== "function") throw refused(`backend '${backendName}' of service '${slice.service}' has no RPC method '${method}'`);
  return Reflect.apply(fn, stub, args);
}

/** Serves one RPC call: the steps above, then the backend's own answer. */
export async function serveRpc(call: RpcCall): Promise<unknown> {
  const { proxy, method, waitUntil } = call;
  const who = identify(call.props, new Headers());
  // Telemetry sees an RPC call as a POST to /<method> (access log, tap, traces), its route as the method.
  const request = new Request(`https://${proxy.service}.rpc/${method}`, { method: "POST" });
  const hop = beginHop(request, who.peer !== INTERNET, proxy.telemetry.settings.sampleRate, Date.now());
  const trail: Trail = { route: method, backend: undefined, attempts: 1, configVersion: undefined };
  // One telemetry record per call, whatever the outcome: 200 answered, 403 refused, 404 no route, 500 failed.
  let status = 500;
  try {
    if (!METHOD.test(method)) throw refused(`'${method.slice(0, 64)}' is not an RPC method name`);
    const state: SliceState = await proxy.config.current(waitUntil);
    if (state.kind !== "ready") throw refused(`service '${proxy.service}' is not configured: ${state.detail}`);
    const slice = state.slice;
    trail.configVersion = slice.version;

    // authorization
    const decision = authorize(slice.policy, { origin: who.origin, peer: who.peer, method: "RPC", path: "", rpc: method });
    if (decision.kind === "deny") {
      status = 403;
      throw refused(`'${who.origin}' may not call ${method}() on service '${slice.service}' (${decision.reason})`);
    }
    // route
    const route = rpcRoute(slice.routes, method);
    if (!route) {
      status = 404;
      throw refused(`service '${slice.service}' has no route for RPC method ${method}() (add a route with "match": {"rpc": "${method}"}, or a catch-all route)`);
    }
    // split: weighted; a sticky route keeps each calling service on one backend
    const avoid = proxy.health.avoiding(Date.now());
    const owners = avoid.size === 0 ? route.owners : healthyOwners(route.owners, route.weights, avoid);
    const backend = decideSplit(owners, route.salt, route.sticky ? who.origin : undefined, Math.random()).backend;
    trail.backend = backend;

    // forward, recording the outcome for outlier detection, rollouts and metrics
    const startedAt = Date.now();
    let result: unknown;
    try {
      result = await callBackend(slice, backend, method, call.args);
    } catch (error) {
      proxy.recordOutcome(backend, false, startedAt, Date.now());
      throw error;
    }
    proxy.recordOutcome(backend, true, startedAt, Date.now());
    status = 200;
    return result;
  } finally {
    proxy.telemetry.finish(hop, request, who.peer, trail, status, waitUntil);
  }
}

/** What an entrypoint class needs to forward RPC calls: how to serve one with its own `this`. */
export type RpcServer<T> = (self: T, method: string, args: unknown[]) => Promise<unknown>;

/**
 * Gives `Entrypoint` a prototype that answers every method name it does not define with a
 * forwarder to `serve`. workerd looks RPC methods up on the instance's prototype chain, so an
 * unknown name finds the forwarder; the entrypoint's own methods (`fetch`, `scheduled`) are found
 * first and keep their meaning.
 */
export function withRpcForwarding<T extends object>(Entrypoint: abstract new (...args: never[]) => T, serve: RpcServer<T>): void {
  const own: unknown = Reflect.get(Entrypoint, "prototype");
  if (typeof own !== "object" || own === null) return;
  const parent: unknown = Object.getPrototypeOf(own);
  if (typeof parent !== "object" || parent === null) return;
  const forwarding = new Proxy(parent, {
    get(target, property, receiver: T): unknown {
      if (typeof property !== "string" || RESERVED.has(property) || property in target) return Reflect.get(target, property, receiver);
      return function forward(this: T, ...args: unknown[]): Promise<unknown> {
        return serve(this, property, args);
      };
    },
  });
  Object.setPrototypeOf(own, forwarding);
}
