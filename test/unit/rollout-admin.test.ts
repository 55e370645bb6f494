import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { KEPT_ROLLOUTS, type RolloutStore } from "../../durable-objects/rollout-store.ts";
import { checkWebhookUrl } from "../../shared/rollout.ts";

const TOKEN = "test-admin-token";

function admin(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${TOKEN}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`https://weft.test${path}`, { ...init, headers }));
}

beforeAll(async () => {
  const res = await admin("/admin/config", {
    method: "PUT",
    headers: { "if-match": "*" },
    body: JSON.stringify({
      services: [
        {
          name: "web",
          backends: [
            { name: "web-a", type: "worker", binding: "A" },
            { name: "web-b", type: "worker", binding: "B" },
          ],
          routes: [{ split: { weights: { "web-a": 100, "web-b": 0 } } }],
        },
      ],
    }),
  });
  expect(res.status).toBe(200);
});

describe("checkWebhookUrl", () => {
  it("accepts https to public hosts", () => {
    for (const url of ["https://hooks.slack.com/services/T0/B0/secret", "https://93.184.216.34/hook", "https://[2606:4700::1111]/x", "https://chat.example.com:8443/x"]) {
      expect(checkWebhookUrl(url, false), url).toEqual({ ok: true });
    }
  });

  it("refuses plain http to public hosts, even in development", () => {
    for (const allow of [false, true]) expect(checkWebhookUrl("http://hooks.example.com/x", allow).ok).toBe(false);
  });

  it("refuses private, loopback, link-local and reserved addresses in every spelling URL parsing accepts", () => {
    const refused = [
      "https://10.0.0.5/x", "https://172.16.0.1/x", "https://172.31.255.255/x", "https://192.168.1.1/x",
      "https://169.254.169.254/latest/meta-data", "https://100.64.0.1/x", "https://0.0.0.0/x", "https://224.0.0.1/x",
      "https://127.0.0.1/x", "https://2130706433/x", "https://0x7f.1/x", "https://localhost/x", "https://api.localhost/x",
      "https://localhost./x", "https://[::1]/x", "https://[fd00::1]/x", "https://[fe80::1]/x", "https://[::ffff:10.0.0.1]/x",
      "https://[::ffff:127.0.0.1]/x", "https://[::]/x", "https://intranet/x", "https://user:pw@hooks.example.com/x", "not a url",
    ];
    for (const url of refused) expect(checkWebhookUrl(url, false).ok, url).toBe(false);
  });

  it("accepts loopback (http or https) only in development, and never private networks", () => {
    for (const url of ["http://127.0.0.1:9999/hook", "http://localhost:8080/x", "http://[::1]:3000/x"]) {
      expect(checkWebhookUrl(url, true), url).toEqual({ ok: true });
      expect(checkWebhookUrl(url, false).ok, url).toBe(false);
    }
    expect(checkWebhookUrl("http://192.168.1.10/x", true).ok).toBe(false);
    expect(checkWebhookUrl("http://169.254.169.254/x", true).ok).toBe(false);
  });
});

describe("rollout webhooks through the admin API", () => {
  it("refuses a rollout whose webhook targets the control plane's own network, naming the reason but not the URL", async () => {
    for (const url of ["http://hooks.example.com/x", "https://169.254.169.254/secret-path", "http://127.0.0.1:9/secret-path"]) {
      const res = await admin("/admin/services/web/rollouts", { method: "POST", body: JSON.stringify({ backend: "web-b", webhook: { url } }) });
      expect(res.status, url).toBe(422);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await res.text()).not.toContain("secret-path");
    }
    expect((await admin("/admin/services/web/rollouts/current")).status).toBe(404); // nothing started
  });
});

describe("rollout history retention", () => {
  it(`keeps the last ${KEPT_ROLLOUTS} rollouts of a service`, async () => {
    const stub = env.ROLLOUTS.get(env.ROLLOUTS.idFromName("web"));
    // 150 ended rollouts from the past.
    await runInDurableObject(stub, (_instance: RolloutStore, state) => {
      state.storage.sql.exec("CREATE TABLE IF NOT EXISTS rollouts (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL)");
      for (let seq = 1; seq <= 150; seq++) {
        state.storage.sql.exec("INSERT INTO rollouts (seq, id, doc) VALUES (?, ?, ?)", seq, `web-${seq}`, JSON.stringify({ status: { id: `web-${seq}`, state: "aborted" } }));
      }
    });
    const started = await admin("/admin/services/web/rollouts", { method: "POST", body: JSON.stringify({ backend: "web-b" }) });
    expect(started.status).toBe(201);
    await runInDurableObject(stub, (_instance: RolloutStore, state) => {
      const rows = state.storage.sql.exec<{ n: number; lo: number; hi: number }>("SELECT COUNT(*) AS n, MIN(seq) AS lo, MAX(seq) AS hi FROM rollouts").one();
      expect(rows).toEqual({ n: KEPT_ROLLOUTS, lo: 151 - KEPT_ROLLOUTS + 1, hi: 151 });
    });
    expect((await admin("/admin/services/web/rollouts/current/abort", { method: "POST" })).status).toBe(200);
  });
});
