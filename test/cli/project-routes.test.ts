/**
 * Public routes as users write them in wrangler configs, through `weft init --yes` and `weft dev`: a
 * custom domain (the whole host) and a zoned route with a path, each on its own worker; and what
 * the public entry answers when no public route matches (a problem naming the routes, not the
 * control plane's dashboard, which Miniflare's first worker used to be).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/deployments.ts";
import { spawnWeft, weft, type LiveWeft } from "./run.ts";

/** Writes a worker answering its own name and the path it got. */
function writeWorker(dir: string, name: string, config: Record<string, unknown>): void {
  mkdirSync(path.join(dir, name), { recursive: true });
  writeFileSync(path.join(dir, name, "wrangler.jsonc"), `// ${name}\n${JSON.stringify({ name, main: "index.js", compatibility_date: "2026-11-01", ...config }, null, 2)}\n`);
  writeFileSync(path.join(dir, name, "index.js"), `export default { fetch(request) { return Response.json({ worker: ${JSON.stringify(name)}, path: new URL(request.url).pathname }); } };\n`);
}

interface BootedProject {
  dir: string;
  dev: LiveWeft;
  url: string;
}

/** A project in a temp folder, `weft init --yes`, then `weft dev` on free ports. */
async function bootProject(workers: Record<string, Record<string, unknown>>): Promise<BootedProject> {
  const dir = mkdtempSync(path.join(tmpdir(), "weft-routes-"));
  symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"));
  for (const [name, config] of Object.entries(workers)) writeWorker(dir, name, config);
  const init = await weft(["init", "--yes"], { cwd: dir, timeoutMs: 60_000 });
  if (init.code !== 0) throw new Error(`weft init failed: ${init.stderr}`);
  const dev = spawnWeft(["dev", "--json"], { cwd: dir, env: { WEFT_PORT: "0", WEFT_ADMIN_PORT: "0" } });
  await dev.waitFor(/"rewired":[^\n]*\n/, "stdout", 60_000);
  const { url } = JSON.parse(dev.stdout()) as { url: string };
  return { dir, dev, url };
}

/** Boots the project before the suite's tests and stops it (Ctrl-C, exit 0) after; the public entry's URL. */
function useProject(workers: Record<string, Record<string, unknown>>): () => string {
  let project: BootedProject | undefined;
  beforeAll(async () => {
    project = await bootProject(workers);
  }, 120_000);
  afterAll(async () => {
    if (project) {
      expect(await project.dev.interrupt()).toBe(0);
      rmSync(project.dir, { recursive: true, force: true });
    }
  });
  return () => project?.url ?? "";
}

describe("a custom domain and a zoned route, each on its own worker", () => {
  const entry = useProject({
    site: { routes: [{ pattern: "www.example.com", custom_domain: true }] },
    api: { routes: [{ pattern: "www.example.com/v1/*", zone_name: "example.com" }] },
  });

  it("the custom domain takes every path; the zoned route its own", async () => {
    const url = entry();
    expect(await (await fetch(`${url}/`)).json()).toEqual({ worker: "site", path: "/" });
    expect(await (await fetch(`${url}/about`)).json()).toEqual({ worker: "site", path: "/about" });
    expect(await (await fetch(`${url}/v1/orders`)).json()).toEqual({ worker: "api", path: "/v1/orders" });
  });
});

describe("no public route matches", () => {
  // api has a route, so it is the only public service, and it covers /v1/* alone.
  const entry = useProject({ api: { routes: [{ pattern: "shop.example.com/v1/*", zone_name: "example.com" }] } });

  it("answers 404 problem+json naming the project's public routes, never the control plane", async () => {
    const res = await fetch(`${entry()}/`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(await res.json()).toEqual({
      type: "urn:weft:problem:no-public-route",
      title: "No public route",
      status: 404,
      routes: ["shop.example.com/v1/* → api"],
      detail: "no public route of this project matches /",
    });
    expect(await (await fetch(`${entry()}/v1/x`)).json()).toEqual({ worker: "api", path: "/v1/x" });
  });
});
