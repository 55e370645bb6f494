/**
 * HTTPRoute files through the real weft bin against a running mesh: apply, diff, export and the
 * round trip apply(export(x)) = x, refusals that name the field, and `weft check -f routes.yaml`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SHOP_DIR } from "../../scripts/deployments.ts";
import { bootTestMesh, TOKEN, waitFor, type EchoReply, type TestMesh } from "../mesh/harness.ts";
import { weft as runWeft, type WeftOptions, type WeftRun } from "./run.ts";

let t: TestMesh;
let env: Record<string, string>;
let dir: string;

beforeAll(async () => {
  t = await bootTestMesh();
  env = { WEFT_URL: t.admin, WEFT_ADMIN_TOKEN: TOKEN };
  dir = mkdtempSync(path.join(tmpdir(), "weft-httproute-"));
});
afterAll(async () => {
  await t?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function weft(args: ReadonlyArray<string>, options: WeftOptions = {}): Promise<WeftRun> {
  return runWeft(args, { ...options, env: { ...env, ...options.env } });
}

function file(name: string, text: string): string {
  const target = path.join(dir, name);
  writeFileSync(target, text);
  return target;
}

async function configVersion(): Promise<number> {
  const res = await t.adminFetch("/admin/config");
  return ((await res.json()) as { version: number }).version;
}

/** Two HTTPRoutes in one YAML file, both for the echo service (under /echo, where its proxy is routed). */
const ROUTES = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo-matching
  namespace: shop
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
    port: 80
  rules:
  - name: catch-all
    matches:
    - path: { type: PathPrefix, value: / }
    backendRefs:
    - { name: echo-a, port: 8080 }
  - name: v2
    matches:
    - path: { type: PathPrefix, value: /echo/v2 }
    - headers: [{ name: version, value: two }]
    backendRefs:
    - { name: echo-b, port: 8080 }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo-headers
  namespace: shop
spec:
  parentRefs: [{ kind: Service, name: echo }]
  rules:
  - name: set-header
    matches: [{ path: { type: Exact, value: /echo/set } }]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{ name: X-Header-Set, value: set-overwrites-values }]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{ name: X-Answer, value: from-route }]
    backendRefs: [{ name: echo-a }]
`;

describe("weft apply/diff -f routes.yaml", () => {
  it("applies HTTPRoutes to the service they name, with the Gateway API's precedence, and then finds no differences", async () => {
    const routes = file("routes.yaml", ROUTES);
    const diff = await weft(["diff", "-f", routes]);
    expect(diff.code, diff.stderr).toBe(1);
    expect(diff.stdout).toMatch(/~ echo/);
    const applied = await weft(["apply", "-f", routes, "--yes", "--json"]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout)).toMatchObject({ applied: true, kind: "httproute", changed: ["echo"] });
    const again = await weft(["diff", "-f", routes]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const status = await weft(["status"]);
    expect(status.stdout).toMatch(/echo\/v2 +prefix \/echo\/v2 \(or 1 more\)/);
    expect(status.stdout).toMatch(/echo\/set-header +\/echo\/set /);

    // The proxy serves the new routes: precedence puts /echo/v2 (longer prefix) before /, and the
    // header match (prefix / and one header) before the bare catch-all (prefix /, no header).
    const send = async (p: string, headers: Record<string, string> = {}): Promise<{ res: Response; body: EchoReply }> => {
      const res = await fetch(`${t.shop}${p}`, { headers });
      return { res, body: (await res.json()) as EchoReply };
    };
    await waitFor(async () => (await send("/echo/v2/x")).body.backend === "echo-b", 8_000, 100);
    expect((await send("/echo/v2example")).body.backend).toBe("echo-a");
    expect((await send("/echo/other", { version: "two" })).body.backend).toBe("echo-b");
    const set = await send("/echo/set", { "x-header-set": "client" });
    expect(set.body.headers["x-header-set"]).toBe("set-overwrites-values");
    expect(set.res.headers.get("x-answer")).toBe("from-route");
  });

  it("exports the routes as HTTPRoutes that apply back to no change (apply(export(x)) is x), for every demo service", async () => {
    const out = path.join(dir, "exported.yaml");
    const exported = await weft(["export", "--format", "httproute", "-o", out]);
    expect(exported.code, exported.stderr).toBe(0);
    const diff = await weft(["diff", "-f", out]);
    expect(diff.code, diff.stdout + diff.stderr).toBe(0);
    // The --json form is a Kubernetes List, which apply reads as well.
    const json = await weft(["export", "--format", "httproute", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ apiVersion: "v1", kind: "List" });
    const jsonDiff = await weft(["diff", "-f", file("exported.json", json.stdout)]);
    expect(jsonDiff.code, jsonDiff.stdout + jsonDiff.stderr).toBe(0);
    const one = await weft(["export", "--format", "httproute", "echo"]);
    expect(one.stdout).toMatch(/^apiVersion: gateway.networking.k8s.io\/v1\nkind: HTTPRoute\n/);
    expect(one.stdout).toMatch(/name: echo-matching-0|name: catch-all/);
  });

  it("refuses an HTTPRoute naming the field and reason, and applies nothing", async () => {
    const before = await configVersion();
    const bad = file(
      "bad.yaml",
      ROUTES.replace("- { name: echo-b, port: 8080 }", "- { name: echo-z, port: 8080 }").replace("set: [{ name: X-Header-Set", "set: [{ name: X-Weft-Caller").concat("  - name: extended\n    filters: [{ type: ExtensionRef, extensionRef: { group: example.com, kind: Auth, name: x } }]\n    backendRefs: [{ name: echo-a }]\n"),
    );
    const run = await weft(["apply", "-f", bad, "--yes"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/not accepted \(nothing applied\)/);
    expect(run.stderr).toMatch(/HTTPRoute shop\/echo-matching › spec.rules\[1\].backendRefs\[0\].name: \[BackendNotFound\] service 'echo' has no backend 'echo-z'/);
    expect(run.stderr).toMatch(/HTTPRoute shop\/echo-headers › spec.rules\[0\].filters\[0\] \(set.0.name\): \[Invalid\]/);
    expect(run.stderr).toMatch(/spec.rules\[1\].filters\[0\].type: \[UnsupportedValue\] Weft has no extension filters/);
    expect(await configVersion()).toBe(before);
    const yaml = await weft(["apply", "-f", file("broken.yaml", "kind: HTTPRoute\n  bad: [indent"), "--yes"]);
    expect(yaml.code).toBe(1);
    expect(yaml.stderr).toMatch(/broken.yaml:\d+ is not valid YAML/);
  });

  it("checks an HTTPRoute file against the manifest's services without a control plane", async () => {
    const routes = file(
      "pim-routes.yaml",
      `kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\nmetadata: { name: pim }\nspec:\n  parentRefs: [{ kind: Service, name: pim }]\n  rules:\n  - backendRefs: [{ name: pim-v1, weight: 90 }, { name: pim-v9, weight: 10 }]\n`,
    );
    const run = await weft(["check", "-f", routes], { cwd: SHOP_DIR, env: { WEFT_URL: "http://127.0.0.1:9", WEFT_ADMIN_TOKEN: "none" } });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/httproute-not-accepted/);
    expect(run.stdout).toMatch(/spec.rules\[0\].backendRefs\[1\].name/);
    const good = await weft(["check", "-f", file("pim-good.yaml", readFileSync(routes, "utf8").replace("pim-v9", "pim-v2"))], { cwd: SHOP_DIR });
    expect(good.code, good.stdout).toBe(0);
    expect(good.stdout).toMatch(/pim-good.yaml \(against .*weft.manifest.json\): no problems found/);
  });
});
