/**
 * Workers RPC through the mesh: `env.USERS.getUser(id)` on a binding to a service's proxy reaches
 * the proxy's entrypoint, which has no `getUser` of its own. Its prototype answers every method name
 * it does not define with a forwarder (see {@link withRpcForwarding}), so any method passes, and the
 * call takes the same steps an HTTP request does, in the same order, with the method where HTTP
 * has a path:
 *
 *   identity → authorization (rules with `rpc`) → route (`match.rpc`, else the catch-all route) →
 *   rate limit (key: the caller) →
 *   split (weighted; sticky on the calling service) → resilience (timeout; retries and failover for
 *   idempotent routes) → forward (the backend binding's own method) →
 *   telemetry (the method as the route; `outcome` ok/error and the error's name as labels, see
 *   `rpcSeriesCode` in shared/metrics.ts; the HTTP-equivalent `code` stays: 200 answered, 403
 *   refused, 404 no route, 429 rate-limited, 500 thrown or timed out)
 *
 * Arguments and results pass untouched — structured-clone values, stubs, `RpcTarget`s, functions,
 * streams — because the proxy hands the caller's arguments to the backend's stub and returns the
 * backend's promise: workerd pipelines both ways. An error thrown by the backend reaches the caller
 * as the backend threw it (its type and message, as far as Workers RPC carries them). A refused call
 * throws an `Error` whose message says why.
 *
 * The route's timeout bounds each attempt; its retries and failover apply only when the route marks
 * its methods `idempotent` (a thrown error is then tried again, as a failed idempotent request is).
 * Rate limits apply with the caller as key (an RPC call has no IP, headers or claims), and the
 * backend's rehearsal faults are injected as for HTTP. Not (yet) applied to RPC: contracts.
 *
 * Property reads (`await env.USERS.version`, getters). The proxy cannot tell a property from a
 * method: it answers every name synchronously, before any call, and both arrive as a name. So
 * properties are declared per service in the manifest (`proxy.rpcProperties: ["version",
 * "Admin.flags"]`), which `weft generate` writes into the proxy's vars as WEFT_RPC_PROPERTIES; a
 * declared name is answered with a promise of the backend's value (workerd awaits it for the
 * caller), through the same steps as a call (policy, route, split, metrics under the name). Limits:
 * an undeclared property read gets a function stub, not the value (the call shape differs from
 * Weft-less behaviour until declared); a declared name can no longer be called as a method;
 * properties of `RpcTarget`s and stubs a call returns need no declaration (they are the backend's
 * own stubs, not the proxy's).
 *
 * Named entrypoints. A caller's binding with `entrypoint = "Admin"` is rewired by `weft dev` and
 * `weft deploy` to the callee proxy's default entrypoint with `props.entrypoint = "Admin"` (the
 * deployer's, like `props.caller`: the caller's code cannot choose it). The proxy forwards such calls
 * to its binding `<backend binding>__Admin` (`{ service = <script>, entrypoint = "Admin" }`), which
 * `weft generate` writes for every name in the worker backend's `entrypoints` (`weft init` lists the
 * ones the project's bindings use); a backend without that binding refuses the call with a message
 * saying so. Routes, policies and metrics know these methods as `Admin.purge` (patterns `Admin.*`;
 * a pattern without a dot is about the default entrypoint only). `fetch()` on such a binding is the
 * entrypoint's own fetch, passed as the RPC call `Admin.fetch` (not the HTTP chain). A `mesh`
 * backend relays the entrypoint to the next proxy in the relay context.
 *
 * Trace context. Workers RPC carries no headers, and the runtime gives a callee nothing of its
 * caller's invocation, so:
 * - every RPC call is one hop of the proxy's telemetry (metric series, access log line, tap event)
 *   and, when sampled, one span `RPC <method>` (OpenTelemetry RPC attributes: `rpc.system`,
 *   `rpc.method`, plus `weft.rpc.outcome`, `error.type`, caller, backend, attempts);
 * - a call from a worker's code starts a new trace at the callee's proxy (sampled at
 *   `WEFT_TRACE_SAMPLE_RATE`): it is NOT parented to the trace of the HTTP request the calling
 *   worker is serving, even when a Weft proxy delivered that request — the worker's code would have
 *   to pass the context, and an RPC call has no place for it that works without Weft;
 * - a call one proxy relays to another service's proxy (a `mesh` backend) IS continued: the relaying
 *   proxy calls `__weftRelay(context, method, args)` ({@link RELAY_METHOD}) on the next proxy, with
 *   its own span as `traceparent` and the call's origin, what an HTTP hop sends as `traceparent` and
 *   `x-weft-origin`. The next proxy believes the trace from any mesh peer and the origin only from
 *   a proxy peer, as over HTTP ({@link unwrapRelay}); its span is a child of the relaying proxy's.
 * - the hop from a proxy to its backend worker carries no context (the worker's code sees a plain
 *   call), so calls the worker makes in turn start new traces at their proxies.
 */
import { authorize, rpcMethodMatches } from "../../shared/authorize.ts";
import { rpcErrorName, rpcSeriesCode } from "../../shared/metrics.ts";
import { decideFault, healthyOwners } from "../../shared/resilience.ts";
import { decideSplit } from "../../shared/split.ts";
import { formatTraceparent } from "../../shared/trace-context.ts";
import { deadline, sleep, TIMED_OUT } from "./bounded.ts";
import type { SliceState } from "./config-cache.ts";
import { identify, INTERNET, isIdentity, ORIGIN_HEADER, peerOf, type Identity, type Peer } from "./identity.ts";
import type { CompiledSlice, RoutePlan } from "./plan.ts";
import type { ServiceProxy } from "./service.ts";
import { beginHop, type Hop, type RequestLine, type Trail } from "./telemetry.ts";

/** Names a forwarder never answers: the entrypoint's own handlers and what runtimes probe objects for. */
const RESERVED = new Set([
  "then", "catch", "finally", "constructor", "toJSON", "fetch", "connect", "scheduled", "queue", "tail", "tailStream", "trace", "email", "alarm", "test",
  "webSocketMessage", "webSocketClose", "webSocketError", "self", "env", "ctx", "dup", "onRpcBroken",
]);

/** A method name worth forwarding: an identifier, bounded. */
const METHOD = /^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/;

/**
 * The method a proxy calls on the next service's proxy (a `mesh` backend) to relay an RPC call with
 * its context, since Workers RPC carries no headers: `__weftRelay(context, method, args)`. The next
 * proxy unwraps it ({@link unwrapRelay}) and serves `method(...args)` as if called directly.
 */
export const RELAY_METHOD = "__weftRelay";

/** What a relayed RPC call carries besides its method and arguments: what HTTP hops send as headers. */
export interface RelayContext {
  /** On whose behalf the call is made (`x-weft-origin` over HTTP); believed from proxy peers only. */
  origin?: string;
  /** The relaying hop's W3C `traceparent` (its span as the parent); believed from mesh peers, as over HTTP. */
  traceparent?: string;
  /** The named entrypoint the call is for (undefined: the default one); believed from proxy peers only, as it is deploy-time config. */
  entrypoint?: string;
  /** A property read, not a call (`args` is then empty). */
  read?: boolean;
}

/** Longest `traceparent` a relay may carry (version 00 is 55 characters; later versions may append). */
const MAX_TRACEPARENT = 256;

/** A relayed call, unwrapped: the call itself and the context believed from this peer; or why it is refused. */
export type Unwrapped =
  | { kind: "call"; method: string; args: unknown[]; origin: string | undefined; traceparent: string | undefined; entrypoint: string | undefined; read: boolean }
  | { kind: "refused"; reason: string };

/**
 * Unwraps `__weftRelay(context, method, args)` (pure). The internet cannot relay (it has no binding
 * to a proxy's RPC anyway); the origin is believed only from a proxy peer, as `x-weft-origin` is,
 * so worker code cannot call on behalf of another service; the trace context from any mesh peer,
 * as `traceparent` is over HTTP. Malformed or oversized context is ignored, not refused.
 */
export function unwrapRelay(peer: Peer, args: ReadonlyArray<unknown>): Unwrapped {
  if (peer.kind === "internet") return { kind: "refused", reason: `${RELAY_METHOD}() is for Weft proxies: only mesh peers relay calls` };
  const [context, method, inner] = args;
  if (typeof method !== "string" || !METHOD.test(method) || method === RELAY_METHOD || !Array.isArray(inner)) {
    return { kind: "refused", reason: `${RELAY_METHOD}() takes (context, method, args)` };
  }
  const ctx: Record<string, unknown> = typeof context === "object" && context !== null ? { ...context } : {};
  const origin = peer.kind === "proxy" && isIdentity(ctx.origin) ? ctx.origin : undefined;
  const traceparent = typeof ctx.traceparent === "string" && ctx.traceparent.length <= MAX_TRACEPARENT ? ctx.traceparent : undefined;
  const entrypoint = peer.kind === "proxy" ? entrypointOf(ctx) : undefined;
  const read = ctx.read === true;
  const list: unknown[] = read ? PROPERTY_READ : inner;
  return { kind: "call", method, args: list, origin, traceparent, entrypoint, read };
}

/**
 * The context a call relayed to the next proxy carries (pure): the origin (unless the internet),
 * and this hop's trace — its own span when sampled, else the caller's unsampled context, passed on
 * so the next hop follows the same sampling decision.
 */
export function relayContext(who: Identity, hop: Hop, entrypoint?: string, read?: boolean): RelayContext {
  const traceparent = hop.traceparent ?? (hop.traceId !== undefined && hop.parentId !== undefined ? formatTraceparent(hop.traceId, hop.parentId, false) : undefined);
  return { ...(who.origin !== INTERNET ? { origin: who.origin } : {}), ...(traceparent ? { traceparent } : {}), ...(entrypoint ? { entrypoint } : {}), ...(read ? { read } : {}) };
}

/**
 * The `args` of a property read (`await env.USERS.version`): recognised by identity, not content, so
 * no call (whose arguments array is always its own) can be mistaken for one. Never passed to a call.
 */
export const PROPERTY_READ: unknown[] = [];

/** The last WEFT_RPC_PROPERTIES seen and its names: the var is the same for every call of an isolate. */
let declared: { raw: string; names: ReadonlySet<string> } = { raw: "", names: new Set() };

/** Names declared as properties (`version`, `Admin.flags`), from WEFT_RPC_PROPERTIES (comma-separated; bounded). */
export function declaredProperties(raw: string): ReadonlySet<string> {
  if (raw !== declared.raw) {
    const names = raw
      .split(",")
      .map((n) => n.trim())
      .filter((n) => n.length > 0 && n.length <= 192)
      .slice(0, 64);
    declared = { raw, names: new Set(names) };
  }
  return declared.names;
}

/** Whether callers of this entrypoint instance read `name` as a property (the deployer declared it) rather than call it. */
function isDeclaredProperty(receiver: object, name: string): boolean {
  const env: unknown = Reflect.get(receiver, "env");
  const raw: unknown = typeof env === "object" && env !== null ? Reflect.get(env, "WEFT_RPC_PROPERTIES") : undefined;
  if (typeof raw !== "string" || raw === "") return false;
  const ctx: unknown = Reflect.get(receiver, "ctx");
  const props: unknown = typeof ctx === "object" && ctx !== null ? Reflect.get(ctx, "props") : undefined;
  return declaredProperties(raw).has(qualifiedMethod(entrypointOf(props), name));
}

/** No headers: an RPC call's identity comes from the binding's props alone (shared, never changed). */
const NO_HEADERS = new Headers();

/**
 * An RPC call as telemetry and rate limits see it: a POST to `https://<service>.rpc/<method>` with
 * no headers but a relayed `traceparent`. Not a `Request`: building one per call (URL parsing, a
 * header list) is work nothing needs; the URL is made only when an access line, tap event or span
 * reads it.
 */
export function rpcRequestLine(service: string, label: string, headers: Headers): RequestLine {
  return {
    method: "POST",
    headers,
    get url(): string {
      return `https://${service}.rpc/${encodeURIComponent(label)}`;
    },
  };
}

/**
 * The named entrypoint a binding's props send calls to (`props.entrypoint`, set by `weft dev` and
 * `weft deploy` for a caller's binding with `entrypoint = "Admin"`); undefined: the default one.
 */
export function entrypointOf(props: unknown): string | undefined {
  if (typeof props !== "object" || props === null || !("entrypoint" in props)) return undefined;
  const entrypoint = props.entrypoint;
  return typeof entrypoint === "string" && ENTRYPOINT.test(entrypoint) && entrypoint !== "default" ? entrypoint : undefined;
}

/** A named entrypoint: an exported class name, bounded. */
const ENTRYPOINT = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/;

/** The name a call has in routes, policies and metrics: `method`, or `Entrypoint.method` on a named entrypoint. */
export function qualifiedMethod(entrypoint: string | undefined, method: string): string {
  return entrypoint === undefined ? method : `${entrypoint}.${method}`;
}

/** The proxy's binding to a backend's named entrypoint, as `weft generate` writes it: `<backend binding>__<Entrypoint>`. */
export function entrypointBinding(binding: string, entrypoint: string): string {
  return `${binding}__${entrypoint}`;
}

/** One RPC call into the service. */
export interface RpcCall {
  proxy: ServiceProxy;
  /** The binding's props (who is calling, as the deployer set it; `entrypoint` for a named one). */
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

/**
 * Calls `method` on the backend's binding (its stub), with the caller's arguments; on another
 * service's proxy (a `mesh` backend) through {@link RELAY_METHOD}, with the call's context.
 */
function callBackend(d: RpcDelivery, backendName: string): unknown {
  const { slice, method, args } = d;
  const backend = slice.backends.get(backendName);
  if (!backend || backend.target.kind !== "binding") {
    throw refused(`backend '${backendName}' of service '${slice.service}' is not a worker reachable over RPC`);
  }
  let stub: object = backend.target.fetcher;
  if (backend.mesh) {
    const relay: unknown = Reflect.get(stub, RELAY_METHOD);
    if (typeof relay !== "function") throw refused(`backend '${backendName}' of service '${slice.service}' is not a Weft proxy that relays RPC`);
    return Reflect.apply(relay, stub, [relayContext(d.who, d.hop, d.entrypoint, args === PROPERTY_READ), method, args]);
  }
  if (d.entrypoint !== undefined) {
    // The backend's named entrypoint: its own binding on this proxy, written by `weft generate` for each entrypoint the manifest lists.
    const name = entrypointBinding(backend.binding ?? backendName, d.entrypoint);
    const named: unknown = Reflect.get(d.proxy.bindings, name);
    if (typeof named !== "object" || named === null) {
      throw refused(`backend '${backendName}' of service '${slice.service}' has no binding ${name} to its entrypoint ${d.entrypoint}: list "${d.entrypoint}" in the "entrypoints" of backend '${backendName}' in weft.manifest.json (weft dev, weft generate and weft deploy then bind it)`);
    }
    stub = named;
  }
  // A declared property: read it (the stub's property is a promise of the backend's value).
  if (args === PROPERTY_READ) return Reflect.get(stub, method);
  const fn: unknown = Reflect.get(stub, method);
  if (typeof fn !== "function") throw refused(`backend '${backendName}' of service '${slice.service}' has no RPC method '${method}'`);
  return Reflect.apply(fn, stub, args);
}

/** What delivering one RPC call needs. */
interface RpcDelivery {
  proxy: ServiceProxy;
  slice: CompiledSlice;
  route: RoutePlan;
  backend: string;
  method: string;
  args: unknown[];
  trail: Trail;
  /** Who called and this hop's trace: what a relay to another service's proxy carries on. */
  who: Identity;
  hop: Hop;
  /** The backend's named entrypoint the call is for; undefined: its default entrypoint. */
  entrypoint: string | undefined;
}

/** A stream can be read once: a call carrying one is never made twice. */
function replayable(args: ReadonlyArray<unknown>): boolean {
  return !args.some((a) => a instanceof ReadableStream);
}

/** The backend's answer, or `late()` thrown when it takes longer than `timeoutMs` (the call itself cannot be cancelled). */
async function within<T>(answer: Promise<T>, timeoutMs: number | undefined, late: () => Error): Promise<T> {
  if (timeoutMs === undefined) return answer;
  const timer = deadline(timeoutMs);
  try {
    const result = await Promise.race([answer, timer.expired]);
    if (result === TIMED_OUT) throw late();
    return result;
  } finally {
    timer.clear();
  }
}

/**
 * The resilience step for RPC: the route's timeout bounds every attempt; when the route marks its
 * methods idempotent, a failed call is tried again (the route's `retries.attempts`, within the
 * service's retry budget), then on each failover backend. Otherwise the call is made once and its
 * error is the caller's. Every attempt's outcome is recorded.
 */
async function deliver(d: RpcDelivery): Promise<unknown> {
  const { proxy, slice, route, method, args, trail } = d;
  const again = route.idempotent && replayable(args);
  const perBackend = again ? (route.retries?.attempts ?? 1) : 1;
  const backends = [d.backend, ...(again ? route.failover.map((b) => b.name).filter((name) => name !== d.backend) : [])];
  proxy.health.budget.recordRequest(Date.now());
  let attempts = 0;
  let lastError: unknown;
  for (const backend of backends) {
    for (let i = 0; i < perBackend; i++) {
      if (attempts > 0 && !proxy.health.budget.tryRetry(Date.now())) throw lastError;
      attempts++;
      trail.backend = backend;
      trail.attempts = attempts;
      const startedAt = Date.now();
      try {
        const late = (): Error => refused(`backend '${backend}' of service '${slice.service}' did not answer ${method}() within ${route.timeoutMs ?? 0} ms`);
        const result = await within(withFault(slice, backend, () => callBackend(d, backend)), route.timeoutMs, late);
        proxy.recordOutcome(backend, true, startedAt, Date.now());
        return result;
      } catch (error) {
        proxy.recordOutcome(backend, false, startedAt, Date.now());
        lastError = error;
        if (!again) throw error;
      }
    }
  }
  throw lastError;
}

/**
 * A call with its backend's rehearsal fault applied first, exactly where a real failure would
 * happen: a delay counts against the call's time, an abort throws as a failing backend would.
 */
async function withFault(slice: CompiledSlice, backendName: string, call: () => unknown): Promise<unknown> {
  const fault = slice.backends.get(backendName)?.fault;
  const decision = fault ? decideFault([fault], backendName, Math.random(), Math.random()) : undefined;
  if (decision?.kind === "delay" || decision?.kind === "delay-then-abort") await sleep(decision.ms);
  if (decision?.kind === "abort" || decision?.kind === "delay-then-abort") throw refused(`injected fault on backend '${backendName}' (rehearsal)`);
  return call();
}

/** Serves one RPC call: the steps above, then the backend's own answer. */
export async function serveRpc(call: RpcCall): Promise<unknown> {
  const { proxy, waitUntil } = call;
  let { method, args } = call;
  let who: Identity;
  let traceparent: string | undefined;
  let entrypoint: string | undefined;
  if (method === RELAY_METHOD) {
    // Another proxy relays a call: its context arrives as the first argument (RPC carries no headers).
    const unwrapped = unwrapRelay(peerOf(call.props), args);
    if (unwrapped.kind === "refused") throw refused(unwrapped.reason);
    ({ method, args, traceparent, entrypoint } = unwrapped);
    // A relayed read is a read here too (PROPERTY_READ, by identity).
    who = identify(call.props, unwrapped.origin ? new Headers({ [ORIGIN_HEADER]: unwrapped.origin }) : NO_HEADERS);
  } else {
    who = identify(call.props, NO_HEADERS);
    entrypoint = entrypointOf(call.props);
  }
  // Routes, policies and metrics know a named entrypoint's methods as `Entrypoint.method`.
  const name = qualifiedMethod(entrypoint, method);
  // Telemetry sees an RPC call as a POST to /<method> (access log, tap, traces), its route as the
  // method: a bounded label, since callers choose method names. A relayed call's trace context is
  // its traceparent, so the hop continues the relaying proxy's trace.
  const label = METHOD.test(method) ? proxy.rpcRouteLabel(name) : "(other)";
  const request = rpcRequestLine(proxy.service, label, traceparent ? new Headers({ traceparent }) : NO_HEADERS);
  const hop = beginHop(request, who.peer !== INTERNET, proxy.telemetry.settings.sampleRate, Date.now());
  const trail: Trail = { route: label, backend: undefined, attempts: 1, configVersion: undefined };
  // One telemetry record per call, whatever the outcome: 200 answered, 403 refused, 404 no route,
  // 429 limited, 500 failed; with the outcome (ok/error) and the error's name (bounded) as labels.
  let status = 500;
  let failure: unknown;
  try {
    if (!METHOD.test(method)) throw refused(`'${method.slice(0, 64)}' is not an RPC method name`);
    const state: SliceState = await proxy.config.current(waitUntil);
    if (state.kind !== "ready") throw refused(`service '${proxy.service}' is not configured: ${state.detail}`);
    const slice = state.slice;
    trail.configVersion = slice.version;

    // authorization
    const decision = authorize(slice.policy, { origin: who.origin, peer: who.peer, method: "RPC", path: "", rpc: name });
    if (decision.kind === "deny") {
      status = 403;
      throw refused(`'${who.origin}' may not call ${name}() on service '${slice.service}' (${decision.reason})`);
    }
    // route
    const route = rpcRoute(slice.routes, name);
    if (!route) {
      status = 404;
      throw refused(`service '${slice.service}' has no route for RPC method ${name}() (add a route with "match": {"rpc": "${name}"}, or a catch-all route)`);
    }
    // rate limit: keyed by the caller (an RPC call has no IP, headers or claims)
    const limited = route.rateLimits.length === 0 ? undefined : await proxy.limiter.check(route.rateLimits, request, who.origin, undefined, waitUntil);
    if (limited?.kind === "deny") {
      status = 429;
      const retryAfter = limited.response.headers.get("retry-after");
      throw refused(`'${who.origin}' is over a rate limit of service '${slice.service}' for ${name}()${retryAfter ? `; retry after ${retryAfter} s` : ""}`);
    }
    // split: weighted; a sticky route keeps each calling service on one backend
    const avoid = proxy.health.avoiding(Date.now());
    const owners = avoid.size === 0 ? route.owners : healthyOwners(route.owners, route.weights, avoid);
    const backend = decideSplit(owners, route.salt, route.sticky ? who.origin : undefined, Math.random()).backend;
    trail.backend = backend;

    // resilience + forward, recording every attempt's outcome for outlier detection, rollouts and metrics
    const result = await deliver({ proxy, slice, route, backend, method, args, trail, who, hop, entrypoint });
    status = 200;
    return result;
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    trail.seriesCode = rpcSeriesCode(status, status === 200 ? undefined : rpcErrorName(failure));
    proxy.telemetry.finish(hop, request, who.peer, trail, status, waitUntil);
  }
}

/**
 * `fetch()` on a binding to a backend's named entrypoint: that entrypoint's own `fetch`, reached as
 * the RPC call `Entrypoint.fetch` (policy, route, split, metrics as for its other methods; the HTTP
 * chain's path routes and filters are the default entrypoint's and do not apply).
 */
export async function fetchNamedEntrypoint(answer: Promise<unknown>): Promise<Response> {
  const response = await answer;
  if (response instanceof Response) return response;
  throw new Error("weft: the backend's named entrypoint answered fetch() with something other than a Response");
}

/** What an entrypoint class needs to forward RPC calls: how to serve one with its own `this`. */
export type RpcServer<T> = (self: T, method: string, args: unknown[]) => Promise<unknown>;

/**
 * Answers every method name no class of `Entrypoint`'s chain defines with a forwarder to `serve`.
 * workerd looks RPC methods up on the instance's prototype chain, so an unknown name ends at the
 * forwarder. It sits at the bottom of the chain (below WorkerEntrypoint's own prototype), so every
 * name that exists — the entrypoint's `fetch` and `scheduled`, the runtime's `env` and `ctx` — is
 * found before it and costs nothing extra on the HTTP path.
 */
export function withRpcForwarding<T extends object>(Entrypoint: abstract new (...args: never[]) => T, serve: RpcServer<T>): void {
  let bottom: unknown = Reflect.get(Entrypoint, "prototype");
  // The last prototype before Object.prototype: WorkerEntrypoint's.
  while (typeof bottom === "object" && bottom !== null && Object.getPrototypeOf(bottom) !== Object.prototype) bottom = Object.getPrototypeOf(bottom);
  if (typeof bottom !== "object" || bottom === null) return;
  // An empty object over Object.prototype: workerd requires the chain to end in Object.
  const forwarding: object = new Proxy(Object.create(Object.prototype) as object, {
    get(target, property, receiver: T): unknown {
      if (typeof property !== "string" || RESERVED.has(property) || property in target) return Reflect.get(target, property, receiver);
      // A declared property (WEFT_RPC_PROPERTIES): its value, as a promise workerd awaits for the caller.
      if (isDeclaredProperty(receiver, property)) return serve(receiver, property, PROPERTY_READ);
      return function forward(this: T, ...args: unknown[]): Promise<unknown> {
        return serve(this, property, args);
      };
    },
  });
  // workerd looks up about ten handler names (tail, trace, alarm, webSocketMessage…) on every
  // instance it creates, once per request: answer those from an ordinary object in front of the
  // Proxy, so they cost a property lookup rather than a trap call each (~5 µs a request).
  const shield: Record<string, undefined> = Object.create(forwarding) as Record<string, undefined>;
  for (const name of RESERVED) if (!(name in bottom)) shield[name] = undefined;
  Object.setPrototypeOf(bottom, shield);
}
