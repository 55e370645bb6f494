import { describe, expect, it } from "vitest";
import {
  CALLER_HEADER,
  DEADLINE_HEADER,
  deadlineOf,
  FROM_INTERNET,
  identify,
  identityEdits,
  INTERNET,
  isIdentity,
  MAX_IDENTITY_LENGTH,
  ORIGIN_HEADER,
  PEER_HEADER,
  peerOf,
  readCookie,
  type Identity,
} from "../../workers/proxy/identity.ts";
import { HeaderEdits } from "../../workers/proxy/outbound.ts";

/** The headers a backend receives from a route that may relay (`relays`) to another service's proxy. */
function sendOn(who: Identity, headers: Record<string, string>, relays = true): Headers {
  const received = new Headers(headers);
  const edits = new HeaderEdits();
  identityEdits(edits, received, who, relays);
  return edits.apply(received) ?? received;
}
const relayedBy = (service: string): Record<string, string> => ({ caller: service, hop: "proxy" });

describe("peerOf: the peer as the deployer's binding props describe it", () => {
  it.each<[string, unknown, ReturnType<typeof peerOf>]>([
    ["no props (a public route)", undefined, { kind: "internet" }],
    ["empty props", {}, { kind: "internet" }],
    ["a worker's call", { caller: "cart" }, { kind: "worker", service: "cart" }],
    ["a proxy's relay", { caller: "storefront", hop: "proxy" }, { kind: "proxy", service: "storefront" }],
    ["an unknown hop is worker code", { caller: "cart", hop: "gateway" }, { kind: "worker", service: "cart" }],
    ["a caller that is no service name", { caller: "Cart Service" }, { kind: "internet" }],
    ["a caller too long to be a name", { caller: "a".repeat(MAX_IDENTITY_LENGTH + 1) }, { kind: "internet" }],
    ["a caller that is not a string", { caller: 7 }, { kind: "internet" }],
    ["props claiming to be the internet", { caller: INTERNET, hop: "proxy" }, { kind: "internet" }],
  ])("%s", (_name, props, expected) => {
    expect(peerOf(props)).toEqual(expected);
  });
});

describe("identify: peer and origin", () => {
  it("gives the internet's requests the internet as peer and origin, whatever headers they send", () => {
    expect(identify(undefined, new Headers({ [ORIGIN_HEADER]: "orders", [CALLER_HEADER]: "orders" }))).toEqual(FROM_INTERNET);
  });

  it("keeps the internet as origin of a request another service's proxy relays (the laundering of issue 14)", () => {
    // storefront's proxy forwards an internet request to its mesh backend: the origin travels with it.
    expect(identify(relayedBy("storefront"), new Headers({ [ORIGIN_HEADER]: INTERNET }))).toEqual({ peer: "storefront", origin: INTERNET });
  });

  it("keeps the origin across several relays", () => {
    expect(identify(relayedBy("edge"), new Headers({ [ORIGIN_HEADER]: "cart" }))).toEqual({ peer: "edge", origin: "cart" });
  });

  it("makes a worker's own call its own origin, ignoring an origin header its code set (forgery)", () => {
    expect(identify({ caller: "cart" }, new Headers({ [ORIGIN_HEADER]: "orders" }))).toEqual({ peer: "cart", origin: "cart" });
    expect(identify({ caller: "cart" }, new Headers({ [ORIGIN_HEADER]: INTERNET }))).toEqual({ peer: "cart", origin: "cart" });
  });

  it("treats a proxy's request without a valid origin header as the proxy's own (probes, health checks)", () => {
    expect(identify(relayedBy("storefront"), new Headers())).toEqual({ peer: "storefront", origin: "storefront" });
    expect(identify(relayedBy("storefront"), new Headers({ [ORIGIN_HEADER]: "*" }))).toEqual({ peer: "storefront", origin: "storefront" });
    expect(identify(relayedBy("storefront"), new Headers({ [ORIGIN_HEADER]: "Orders" }))).toEqual({ peer: "storefront", origin: "storefront" });
    expect(identify(relayedBy("storefront"), new Headers({ [ORIGIN_HEADER]: "o".repeat(MAX_IDENTITY_LENGTH + 1) }))).toEqual({ peer: "storefront", origin: "storefront" });
  });

  it("accepts only service names and 'internet' as identities, of bounded length", () => {
    expect(isIdentity("cart")).toBe(true);
    expect(isIdentity(INTERNET)).toBe(true);
    expect(isIdentity("a".repeat(MAX_IDENTITY_LENGTH))).toBe(true);
    for (const bad of ["", "*", "-cart", "cart-", "cart,orders", "cart orders", "a".repeat(MAX_IDENTITY_LENGTH + 1), 1, null]) {
      expect(isIdentity(bad)).toBe(false);
    }
  });
});

describe("identityEdits: what the backend and the next proxy receive", () => {
  const send = (who: Identity, headers: Record<string, string>): Headers => sendOn(who, headers);

  it("strips every x-weft-* header from the internet and names no caller", () => {
    const headers = send(FROM_INTERNET, { [CALLER_HEADER]: "orders", [PEER_HEADER]: "orders", [DEADLINE_HEADER]: "5", "x-weft-anything": "1", "x-other": "kept" });
    expect(headers.get(CALLER_HEADER)).toBeNull();
    expect(headers.get(PEER_HEADER)).toBeNull();
    expect(headers.get(DEADLINE_HEADER)).toBeNull();
    expect(headers.get("x-weft-anything")).toBeNull();
    expect(headers.get("x-other")).toBe("kept");
    expect(headers.get(ORIGIN_HEADER)).toBe(INTERNET); // for the next proxy: the route has a mesh backend
  });

  it("changes nothing for an internet request without mesh headers on a route without mesh backends (no copy)", () => {
    const received = new Headers({ accept: "application/json", cookie: "shopper=1" });
    const edits = new HeaderEdits();
    identityEdits(edits, received, FROM_INTERNET, false);
    expect(edits.apply(received)).toBeUndefined();
  });

  it("names the origin as caller and the worker as no separate peer on a direct call, overriding what its code sent", () => {
    const headers = send({ peer: "cart", origin: "cart" }, { [CALLER_HEADER]: "payments", [PEER_HEADER]: "payments", [ORIGIN_HEADER]: "payments", [DEADLINE_HEADER]: "900" });
    expect(headers.get(CALLER_HEADER)).toBe("cart");
    expect(headers.get(PEER_HEADER)).toBeNull();
    expect(headers.get(ORIGIN_HEADER)).toBe("cart");
    expect(headers.get(DEADLINE_HEADER)).toBe("900"); // mesh peers' deadlines travel on
    // A route without mesh backends passes no origin on, whatever the worker sent.
    expect(sendOn({ peer: "cart", origin: "cart" }, { [ORIGIN_HEADER]: "payments" }, false).get(ORIGIN_HEADER)).toBeNull();
  });

  it("tells the backend of a relayed internet request that no service is its caller, and who relayed it", () => {
    const headers = send({ peer: "storefront", origin: INTERNET }, { [CALLER_HEADER]: "storefront", [ORIGIN_HEADER]: INTERNET, [DEADLINE_HEADER]: "900" });
    expect(headers.get(CALLER_HEADER)).toBeNull();
    expect(headers.get(PEER_HEADER)).toBe("storefront");
    expect(headers.get(ORIGIN_HEADER)).toBe(INTERNET);
    expect(headers.get(DEADLINE_HEADER)).toBe("900"); // set by the relaying proxy, which is trusted
  });

  it("hands the origin from proxy to proxy: what one proxy sends, the next identifies", () => {
    // internet → storefront's proxy → (mesh backend) → pim's proxy
    const atStorefront = identify(undefined, new Headers({ [ORIGIN_HEADER]: "orders" }));
    const sent = send(atStorefront, { [ORIGIN_HEADER]: "orders" });
    expect(identify(relayedBy("storefront"), sent)).toEqual({ peer: "storefront", origin: INTERNET });
    // cart's worker → storefront's proxy → pim's proxy
    const fromCart = identify({ caller: "cart" }, new Headers());
    expect(identify(relayedBy("storefront"), send(fromCart, {}))).toEqual({ peer: "storefront", origin: "cart" });
  });
});

describe("deadlineOf", () => {
  const request = new Request("https://svc.mesh/x", { headers: { [DEADLINE_HEADER]: "200" } });

  it("believes an inbound deadline from mesh peers, a relaying proxy included", () => {
    expect(deadlineOf(request, { peer: "cart", origin: "cart" }, 1_000, 0)).toBe(200);
    expect(deadlineOf(request, { peer: "storefront", origin: INTERNET }, 1_000, 0)).toBe(200);
  });

  it("ignores the internet's deadline header, keeping the route's timeout", () => {
    expect(deadlineOf(request, FROM_INTERNET, 1_000, 0)).toBe(1_000);
    expect(deadlineOf(request, FROM_INTERNET, undefined, 0)).toBeUndefined();
  });
});

describe("readCookie", () => {
  it("finds one cookie at a cookie boundary, decoded, without being fooled by names that contain it", () => {
    expect(readCookie("session=s1; shopper=abc; theme=light", "shopper")).toBe("abc");
    expect(readCookie("shopper=first", "shopper")).toBe("first");
    expect(readCookie("myshopper=1; shopper=2", "shopper")).toBe("2");
    expect(readCookie("a=shopper; shopper=3", "shopper")).toBe("3");
    expect(readCookie("x=1;shopper = spaced ;y=2", "shopper")).toBe("spaced");
    expect(readCookie("shopper=caf%C3%A9", "shopper")).toBe("café");
    expect(readCookie("shopper=%E0%A4%A", "shopper")).toBe("%E0%A4%A");
    expect(readCookie("shoppers=1; theme=dark", "shopper")).toBeUndefined();
    expect(readCookie(null, "shopper")).toBeUndefined();
    expect(readCookie("shopper", "shopper")).toBeUndefined();
  });
});
