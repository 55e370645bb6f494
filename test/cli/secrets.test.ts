/**
 * Local vendor secrets: `.weft/secrets.env` parsing, environment variables winning, and the
 * `weft check` warning for secrets the config names but nothing sets.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { secretFindings } from "../../cli/manifest/check.ts";
import { MeshConfig, normalizeService } from "../../shared/config.ts";
import { loadLocalSecrets, loadProjectSecrets, parseSecretsEnv, secretNamesOf, secretsFileIn } from "../../scripts/secrets.ts";

describe("parseSecretsEnv / loadLocalSecrets", () => {
  it("reads NAME=value lines, skipping comments, blanks and names that are not secret names", () => {
    const text = '# vendor secrets\n\nSTRIPE_WEBHOOK_SECRET=whsec_abc=\nQUOTED="a b"\nlower=ignored\n=nothing\nPEM=-----BEGIN PRIVATE KEY-----\\nMII\n';
    expect(parseSecretsEnv(text)).toEqual({ STRIPE_WEBHOOK_SECRET: "whsec_abc=", QUOTED: "a b", PEM: "-----BEGIN PRIVATE KEY-----\\nMII" });
  });

  it("lets environment variables of the same name win, and picks up names the config uses", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-secrets-"));
    const file = path.join(dir, "secrets.env");
    writeFileSync(file, "STRIPE_WEBHOOK_SECRET=from-file\nNOTIFY_API_KEY=from-file\n");
    const env = { STRIPE_WEBHOOK_SECRET: "from-env", PIM_API_KEY: "from-env-only", WEFT_ADMIN_TOKEN: "never" };
    expect(loadLocalSecrets(file, ["PIM_API_KEY", "WEFT_ADMIN_TOKEN"], env)).toEqual({ STRIPE_WEBHOOK_SECRET: "from-env", NOTIFY_API_KEY: "from-file", PIM_API_KEY: "from-env-only" });
    expect(loadLocalSecrets(path.join(dir, "absent.env"), [], env)).toEqual({});
  });

  it("reads a project's own .weft/secrets.env, given the project's directory (what weft dev binds to the proxies)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-project-secrets-"));
    mkdirSync(path.join(dir, ".weft"));
    writeFileSync(path.join(dir, ".weft", "secrets.env"), "NOTIFY_API_KEY=from-project\n");
    expect(secretsFileIn(dir)).toBe(path.join(dir, ".weft", "secrets.env"));
    expect(loadProjectSecrets(dir, ["PIM_API_KEY"], { PIM_API_KEY: "from-env", OTHER: "not named" })).toEqual({ NOTIFY_API_KEY: "from-project", PIM_API_KEY: "from-env" });
    expect(loadProjectSecrets(path.join(dir, "elsewhere"), [], {})).toEqual({});
  });
});

describe("weft check: unset-secret", () => {
  const config = MeshConfig.parse({
    services: [
      {
        name: "orders",
        backends: [
          { name: "orders", type: "worker", binding: "ORDERS" },
          { name: "courier", type: "external", origin: "https://courier.example.com", auth: { type: "bearer", secret: "COURIER_API_KEY" } },
        ],
        routes: [
          { name: "hooks", match: { path: "/hooks" }, split: { weights: { orders: 100 } }, webhook: { scheme: "stripe", secret: ["STRIPE_NEW", "STRIPE_OLD"] } },
          { name: "all", split: { weights: { orders: 100 } } },
        ],
      },
    ],
  });
  const normalized = { services: config.services.map(normalizeService) };

  function findings(files: Record<string, string>, env: NodeJS.ProcessEnv, context?: Parameters<typeof secretFindings>[4]): Array<{ path: ReadonlyArray<string | number>; message: string; fix: string }> {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-check-"));
    mkdirSync(path.join(dir, ".weft"));
    for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, ".weft", name), text);
    const out: Array<{ path: ReadonlyArray<string | number>; message: string; fix: string }> = [];
    secretFindings(normalized, dir, env, { add: (_severity, _code, p, message, fix) => out.push({ path: p, message, fix }) }, context);
    return out;
  }

  it("in a project Weft was added to, tells how weft dev and the project's proxy config take the secret", () => {
    const found = findings({}, {}, { runner: "weft dev", proxyConfig: ".weft/deploy/proxy/wrangler.toml" });
    expect(found[0]?.fix).toBe("Add a line COURIER_API_KEY=<value> to .weft/secrets.env (or export it) for weft dev; in production run `wrangler secret put COURIER_API_KEY --env orders -c .weft/deploy/proxy/wrangler.toml`.");
  });

  it("warns for each named secret set nowhere, at the place that names it", () => {
    const found = findings({}, {});
    expect(found.map((f) => f.path.join("/"))).toEqual(["services/0/backends/1/auth/secret", "services/0/routes/0/webhook/secret"]);
    expect(found[1]?.message).toContain("STRIPE_NEW or STRIPE_OLD");
    expect(found[0]?.fix).toContain("wrangler secret put COURIER_API_KEY --env orders");
  });

  it("is satisfied by .weft/secrets.env, by the environment, and by one of several rotation names", () => {
    expect(findings({ "secrets.env": "COURIER_API_KEY=x\n" }, { STRIPE_OLD: "y" })).toEqual([]);
  });

  it("lists the secret names a config refers to (for npm start)", () => {
    expect(secretNamesOf(config)).toEqual(["COURIER_API_KEY", "STRIPE_NEW", "STRIPE_OLD"]);
  });
});
