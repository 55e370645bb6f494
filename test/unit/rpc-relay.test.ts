/**
 * RPC calls relayed between proxies (a `mesh` backend): RPC carries no headers, so the relaying
 * proxy passes the origin and trace context as the first argument of `__weftRelay`, and the next
 * proxy believes each part only from the peers the HTTP path believes its header from.
 */
import { describe, expect, it } from "vitest";
import { parseTraceparent } from "../../shared/trace-context.ts";
import { rpcMethodMatches } from "../../shared/authorize.ts";
import { RpcMethodPattern } from "../../shared/config.ts";
import { declaredProperties, entrypointBinding, entrypointOf, PROPERTY_READ, qualifiedMethod, RELAY_METHOD, relayContext, unwrapRelay } from "../../workers/proxy/rpc.ts";
import { beginHop } from "../../workers/proxy/telemetry.ts";

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("unwrapRelay", () => {
  it("serves the relayed method with its arguments, believing origin and trace from a proxy peer", () => {
    const args = [1, { a: 2 }];
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [{ origin: "web", traceparent: TRACEPARENT }, "getUser", args])).toEqual({
      kind: "call",
      method: "getUser",
      args,
      origin: "web",
      traceparent: TRACEPARENT,
      entrypoint: undefined,
      read: false,
    });
  });

  it("takes the trace but not the origin from worker code, which may not call on behalf of another service", () => {
    expect(unwrapRelay({ kind: "worker", service: "web" }, [{ origin: "admin", traceparent: TRACEPARENT }, "getUser", []])).toEqual({
      kind: "call",
      method: "getUser",
      args: [],
      origin: undefined,
      traceparent: TRACEPARENT,
      entrypoint: undefined,
      read: false,
    });
  });

  it("refuses the internet and malformed relays, and ignores malformed or oversized context", () => {
    expect(unwrapRelay({ kind: "internet" }, [{}, "getUser", []]).kind).toBe("refused");
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [{}, "get-user", []]).kind).toBe("refused");
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [{}, RELAY_METHOD, []]).kind).toBe("refused");
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [{}, "getUser", "not a list"]).kind).toBe("refused");
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [{ origin: "Not A Service", traceparent: "x".repeat(10_000) }, "getUser", []])).toEqual({
      kind: "call",
      method: "getUser",
      args: [],
      origin: undefined,
      traceparent: undefined,
      entrypoint: undefined,
      read: false,
    });
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [null, "getUser", []])).toMatchObject({ kind: "call", origin: undefined, traceparent: undefined });
  });
});

describe("relayContext", () => {
  const rpcRequest = (traceparent?: string): Request => new Request("https://users.rpc/getUser", traceparent ? { method: "POST", headers: { traceparent } } : { method: "POST" });

  it("carries the origin and this hop's own span as the parent when the call is sampled", () => {
    const hop = beginHop(rpcRequest(TRACEPARENT), true, 0, 0);
    const context = relayContext({ peer: "edge", origin: "web" }, hop);
    expect(context.origin).toBe("web");
    const relayed = parseTraceparent(context.traceparent);
    expect(relayed).toEqual({ traceId: "4bf92f3577b34da6a3ce929d0e0e4736", parentId: hop.spanId, sampled: true });
    expect(hop.spanId).not.toBe("00f067aa0ba902b7");
  });

  it("passes an unsampled context on unchanged, so the next hop follows the same decision; no trace, no traceparent", () => {
    const unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    expect(relayContext({ peer: "web", origin: "web" }, beginHop(rpcRequest(unsampled), true, 1, 0))).toEqual({ origin: "web", traceparent: unsampled });
    expect(relayContext({ peer: "internet", origin: "internet" }, beginHop(rpcRequest(), false, 0, 0))).toEqual({});
  });
});

describe("named entrypoints", () => {
  it("reads the entrypoint from the binding's props; default, malformed or absent mean the default entrypoint", () => {
    expect(entrypointOf({ caller: "web", entrypoint: "Admin" })).toBe("Admin");
    expect(entrypointOf({ caller: "web" })).toBeUndefined();
    expect(entrypointOf({ caller: "web", entrypoint: "default" })).toBeUndefined();
    expect(entrypointOf({ caller: "web", entrypoint: "Ad-min" })).toBeUndefined();
    expect(entrypointOf({ caller: "web", entrypoint: "A".repeat(65) })).toBeUndefined();
    expect(entrypointOf(undefined)).toBeUndefined();
    expect(qualifiedMethod("Admin", "purge")).toBe("Admin.purge");
    expect(qualifiedMethod(undefined, "purge")).toBe("purge");
    expect(entrypointBinding("USERS", "Admin")).toBe("USERS__Admin");
  });

  it("relays the entrypoint between proxies, believed from a proxy peer only", () => {
    expect(unwrapRelay({ kind: "proxy", service: "edge" }, [{ entrypoint: "Admin" }, "purge", []])).toMatchObject({ kind: "call", entrypoint: "Admin" });
    expect(unwrapRelay({ kind: "worker", service: "web" }, [{ entrypoint: "Admin" }, "purge", []])).toMatchObject({ kind: "call", entrypoint: undefined });
    expect(relayContext({ peer: "web", origin: "web" }, beginHop(new Request("https://u.rpc/x"), true, 0, 0), "Admin")).toEqual({ origin: "web", entrypoint: "Admin" });
  });

  it("matches method patterns per entrypoint: names without a dot are the default entrypoint's, `*` is every method", () => {
    expect(rpcMethodMatches("Admin.purge", "Admin.purge")).toBe(true);
    expect(rpcMethodMatches("Admin.*", "Admin.purge")).toBe(true);
    expect(rpcMethodMatches("Admin.p*", "Admin.purge")).toBe(true);
    expect(rpcMethodMatches("A*", "Admin.purge")).toBe(false);
    expect(rpcMethodMatches("A*", "Add")).toBe(true);
    expect(rpcMethodMatches("purge", "Admin.purge")).toBe(false);
    expect(rpcMethodMatches("*", "Admin.purge")).toBe(true);
    expect(rpcMethodMatches("Admin.*", "purge")).toBe(false);
    for (const ok of ["getUser", "get*", "*", "Admin.purge", "Admin.*", "Admin.p*"]) expect(RpcMethodPattern.safeParse(ok).success, ok).toBe(true);
    for (const bad of ["Admin.", ".purge", "a.b.c", "Admin.*x", "get-user", "**"]) expect(RpcMethodPattern.safeParse(bad).success, bad).toBe(false);
  });
});

describe("property reads", () => {
  it("reads declared names from WEFT_RPC_PROPERTIES, bounded in count and length", () => {
    expect([...declaredProperties("version, Admin.flags,,")]).toEqual(["version", "Admin.flags"]);
    expect(declaredProperties(Array.from({ length: 100 }, (_, i) => `p${i}`).join(",")).size).toBe(64);
    expect(declaredProperties(`${"x".repeat(193)},ok`).has("ok")).toBe(true);
    expect(declaredProperties(`${"x".repeat(193)},ok`).size).toBe(1);
    expect(declaredProperties("").size).toBe(0);
  });

  it("relays a read as a read: the next proxy gets the read marker, never the relaying proxy's arguments", () => {
    const relay = relayContext({ peer: "edge", origin: "web" }, beginHop(new Request("https://u.rpc/x"), true, 0, 0), undefined, true);
    expect(relay).toEqual({ origin: "web", read: true });
    const unwrapped = unwrapRelay({ kind: "proxy", service: "edge" }, [relay, "version", ["ignored"]]);
    expect(unwrapped.kind === "call" && unwrapped.args === PROPERTY_READ && unwrapped.read).toBe(true);
    expect(PROPERTY_READ).toEqual([]);
  });
});
