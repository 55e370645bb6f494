/**
 * A rollout survives a restart of the whole runtime (every Durable Object evicted, state on disk):
 * its state, timeline and pending alarm come back and it finishes on its own. Its events reach a
 * webhook, signed with the mesh's keys and verifiable against the public JWKS.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { RolloutStatus } from "../../shared/rollout.ts";
import { bootTestMesh, waitFor, type TestMesh } from "./harness.ts";

interface Delivery {
  authorization: string;
  body: string;
}

let dir: string;
let hook: Server;
let hookUrl: string;
const deliveries: Delivery[] = [];
let t: TestMesh | undefined;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-rollout-"));
  hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      deliveries.push({ authorization: req.headers.authorization ?? "", body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
  const address = hook.address();
  hookUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/hooks/team-chat-secret-path`;
});
afterAll(async () => {
  await t?.dispose();
  await new Promise((resolve) => hook.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

async function browse(mesh: TestMesh, ms: number, stop = (): boolean => false): Promise<void> {
  const end = Date.now() + ms;
  let n = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < end && !stop()) await (await fetch(`${mesh.shop}/products/sku-${(n++ % 5) + 1}`)).arrayBuffer();
  };
  await Promise.all(Array.from({ length: 4 }, loop));
}

async function status(mesh: TestMesh): Promise<RolloutStatus> {
  return (await (await mesh.adminFetch("/admin/services/pim/rollouts/current")).json()) as RolloutStatus;
}

it("keeps its state and alarms across a restart, then finishes; webhook deliveries are signed", async () => {
  const first = await bootTestMesh({ persistTo: dir });
  t = first;
  const started = await first.adminFetch("/admin/services/pim/rollouts", {
    method: "POST",
    body: JSON.stringify({ backend: "pim-v2", steps: [10, 40], stepSeconds: 2, analysis: { minRequests: 5, maxErrorRate: 0.05 }, webhook: { url: hookUrl } }),
  });
  expect(started.status).toBe(201);
  const begun = (await started.json()) as RolloutStatus;
  // The status shows where the webhook goes, never its (secret) path.
  expect(begun.webhook).toBe(new URL(hookUrl).origin);
  expect(JSON.stringify(begun)).not.toContain("team-chat-secret-path");
  await browse(first, 1_000);
  const before = await status(first);
  expect(before.state).toBe("progressing");
  const { adminPort, vendorPort } = first;
  await first.dispose();
  t = undefined;

  const second = await bootTestMesh({ persistTo: dir, seed: false, adminPort, vendorPort });
  t = second;
  const after = await status(second);
  expect(after.id).toBe(begun.id);
  expect(after.events.slice(0, before.events.length)).toEqual(before.events);
  // Nobody touches the rollout: its alarm resumes it, traffic lets it pass.
  let done: RolloutStatus | undefined;
  const traffic = browse(second, 15_000, () => done?.state === "promoted" || done?.state === "rolled-back");
  await waitFor(async () => {
    done = await status(second);
    return done.state === "promoted" || done.state === "rolled-back";
  }, 20_000, 250);
  await traffic;
  expect(done?.state).toBe("promoted");
  expect(done?.events.map((e) => e.type).filter((type) => type === "step" || type === "promoted")).toEqual(["step", "promoted"]);
  const split = (await (await second.adminFetch("/admin/services/pim")).json()) as { split: Record<string, number>; rollout: unknown };
  expect(split).toMatchObject({ split: { "pim-v1": 0, "pim-v2": 100 }, rollout: null });

  // Every event reached the webhook, signed by the mesh for this receiver and this very body.
  await waitFor(async () => Promise.resolve(deliveries.some((d) => d.body.includes('"promoted"'))), 5_000);
  const jwks = createRemoteJWKSet(new URL(`${second.admin}/.well-known/jwks.json`));
  for (const delivery of deliveries) {
    const token = delivery.authorization.replace(/^Bearer /, "");
    const { payload } = await jwtVerify(token, jwks, { issuer: `http://127.0.0.1:${adminPort}`, audience: new URL(hookUrl).origin });
    expect(payload.htu).toBe(hookUrl);
    expect(payload.htm).toBe("POST");
    const digest = Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(delivery.body))).toString("base64url");
    expect(payload.body_sha256).toBe(digest);
  }
  const kinds = deliveries.map((d) => (JSON.parse(d.body) as { event: { type: string } }).event.type);
  expect(kinds).toContain("started");
  expect(kinds).toContain("promoted");
}, 60_000);
