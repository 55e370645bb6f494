/**
 * Two test projects, both running Weft's code on workerd:
 * - unit: policies, validation, the control plane and its Durable Objects, inside the Workers
 *   runtime (@cloudflare/vitest-plugin, main = the control plane worker);
 * - mesh: the whole mesh booted from its wrangler configs (scripts/mesh.ts), driven over HTTP
 *   the way users drive it;
 * - cli: the weft CLI (cli/) on Node: its pure parts in-process, and the real bin as a child
 *   process against fixture manifests and a booted mesh.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

const TEST_ADMIN_TOKEN = "test-admin-token";
// The plugin checks wrangler.toml's required secrets against the environment; tests use a fixed token.
process.env.WEFT_ADMIN_TOKEN ??= TEST_ADMIN_TOKEN;
// weft dev joins wrangler's dev registry as `wrangler dev` does; tests keep theirs apart from the
// machine's, so no test reaches (or is reached by) a developer's own wrangler dev sessions.
process.env.WRANGLER_REGISTRY_PATH ??= mkdtempSync(path.join(tmpdir(), "weft-test-registry-"));

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              compatibilityFlags: ["nodejs_compat"],
              bindings: { WEFT_ADMIN_TOKEN: TEST_ADMIN_TOKEN, WEFT_ENV: "production", WEFT_KEY_ACTIVATION_SECONDS: "0" },
            },
          }),
        ],
        test: { name: "unit", include: ["test/unit/**/*.test.ts"] },
      },
      {
        test: {
          name: "mesh",
          include: ["test/mesh/**/*.test.ts"],
          environment: "node",
          testTimeout: 30_000,
          hookTimeout: 60_000,
          // Each file boots its own mesh; two at once is plenty on a 2-core machine.
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: "cli",
          include: ["test/cli/**/*.test.ts"],
          environment: "node",
          // A test runs up to twenty `weft` processes in a row against a booted mesh; on a loaded
          // 2-core CI machine that took over 30 s once. A guard against hangs, not a speed check.
          testTimeout: 60_000,
          hookTimeout: 60_000,
          maxWorkers: 2,
        },
      },
    ],
  },
});
