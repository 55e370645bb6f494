/**
 * Issue 14, High 1: identity through `mesh` backends. The "relay" service's proxy forwards
 * /relay/* to the echo service's proxy (a mesh backend, props { caller = "relay", hop = "proxy" }).
 * An internet request relayed that way must stay an internet request at echo: echo's internet deny
 * rules apply, its backend is told no service is the caller, and allowing "relay" does not let the
 * internet through.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, RELAY_SERVICE, RELAYED_ECHO_SERVICE, waitFor, type EchoReply, type TestMesh } from "./harness.ts";

let t: TestMesh;
beforeAll(async () => {
  t = await bootTestMesh({ services: [RELAYED_ECHO_SERVICE, RELAY_SERVICE] });
});
afterAll(async () => {
  await t?.dispose();
});

async function setEchoPolicy(policy: unknown): Promise<void> {
  const res = await t.adminFetch("/admin/services/echo/policy", { method: "PUT", body: JSON.stringify(policy) });
  if (res.status !== 200) throw new Error(`policy refused: ${res.status} ${await res.text()}`);
}

async function clearEchoPolicy(): Promise<void> {
  expect((await t.adminFetch("/admin/services/echo/policy", { method: "DELETE" })).status).toBe(200);
  await waitFor(async () => (await fetch(`${t.shop}/echo/x`, { signal: AbortSignal.timeout(10_000) })).status === 200, 5_000);
}

const relayed = (path: string, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${t.shop}/relay${path}`, { headers, signal: AbortSignal.timeout(10_000) });

describe("identity through a mesh backend", () => {
  it("tells echo's backend that a relayed internet request has no service as caller, and who relayed it", async () => {
    const res = await relayed("/hello", { "x-weft-origin": "cart", "x-weft-caller": "cart", "x-weft-peer": "cart" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as EchoReply;
    expect(body.path).toBe("/relay/hello");
    expect(body.headers["x-weft-caller"]).toBeUndefined(); // the origin is the internet
    expect(body.headers["x-weft-peer"]).toBe("relay");
  });

  it("applies echo's internet deny rules to internet requests relayed by another service", async () => {
    try {
      await setEchoPolicy({ allow: [{ from: ["*"] }], deny: [{ from: ["internet"], paths: ["/relay/secret/*"] }] });
      await waitFor(async () => (await relayed("/secret/x")).status === 403, 5_000);
      const denied = await relayed("/secret/x", { "x-weft-origin": "relay" }); // claiming another origin does not help
      expect(denied.status).toBe(403);
      expect(denied.headers.get("content-type")).toBe("application/problem+json");
      expect((await relayed("/public")).status).toBe(200);
    } finally {
      await clearEchoPolicy();
    }
  });

  it("does not let the internet borrow the relaying service's allow rules; `peers` lets it through that relay only", async () => {
    try {
      await setEchoPolicy({ allow: [{ from: ["relay"] }] });
      await waitFor(async () => (await relayed("/x")).status === 403, 5_000);
      await setEchoPolicy({ allow: [{ from: ["internet"], peers: ["relay"] }] });
      await waitFor(async () => (await relayed("/x")).status === 200, 5_000);
      // The same internet request straight to echo's own public route has no relay as peer.
      expect((await fetch(`${t.shop}/echo/x`, { signal: AbortSignal.timeout(10_000) })).status).toBe(403);
    } finally {
      await clearEchoPolicy();
    }
  });

  it("keeps a worker's own call its own origin, whatever x-weft-origin its code sends", async () => {
    const linkUrl = (await t.mesh.mf.unsafeGetDirectURL("weft-test-link")).origin;
    const res = await fetch(`${linkUrl}/call/echo/from-cart`, { headers: { "x-weft-origin": "internet", "x-weft-peer": "relay" }, signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as EchoReply;
    expect(body.headers["x-weft-caller"]).toBe("cart");
    expect(body.headers["x-weft-peer"]).toBeUndefined();
  });
});
