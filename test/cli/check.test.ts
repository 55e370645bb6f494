/**
 * `weft check` on broken manifests (test/fixtures/manifests/<code>.json, each a variant of the
 * fixture project's weft.manifest.json with one problem), run through the real bin: every finding
 * type with its code, severity, location (file, line, JSON pointer) and a fix, and the exit codes.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, SHOP_DIR } from "../../scripts/deployments.ts";
import type { Finding } from "../../cli/manifest/check.ts";
import { weft, type WeftRun } from "./run.ts";

const FIXTURES = path.join(ROOT, "test", "fixtures", "manifests");
const relative = (...parts: string[]): string => path.join("test", "fixtures", "manifests", ...parts);

/** 1-based line of the first line containing `needle` after lines containing each of `after`, in order. */
function lineOf(file: string, needle: string, after: ReadonlyArray<string> = []): number {
  const lines = readFileSync(path.join(ROOT, file), "utf8").split("\n");
  let start = 0;
  for (const anchor of after) start = lines.findIndex((l, i) => i >= start && l.includes(anchor));
  const index = lines.findIndex((l, i) => i >= start && l.includes(needle));
  if (start < 0 || index < 0) throw new Error(`${needle} not in ${file}`);
  return index + 1;
}

interface Case {
  fixture: string;
  code: string;
  severity: Finding["severity"];
  /** Where the finding must point: a JSON pointer in the fixture, or a line of a wrangler config. */
  at: { pointer: string; needle: string; after?: string[] } | { file: string; needle: string; after?: string[] };
  message: RegExp;
}

const CASES: Case[] = [
  { fixture: "unknown-backend", code: "unknown-backend", severity: "error", at: { pointer: "/services/1/routes/1/split/weights/api-v3", needle: '"api-v3"' }, message: /unknown backend 'api-v3' \(service 'api' has: api-v1, api-v2, payments\)/ },
  { fixture: "shadowed-route", code: "shadowed-route", severity: "error", at: { pointer: "/services/0/routes/1/match", needle: '"match"', after: ['"static"'] }, message: /route 'static' is unreachable: route 'all' before it/ },
  { fixture: "weights-sum", code: "weights-sum", severity: "error", at: { pointer: "/services/1/routes/1/split/weights", needle: '"weights"', after: ['"name": "api"', '"name": "all"'] }, message: /weights must sum to 100, got 90/ },
  { fixture: "missing-binding", code: "missing-binding", severity: "error", at: { file: relative("workers", "proxy", "wrangler.toml"), needle: "[env.api]" }, message: /the proxy of api has no API_V3 binding \(to weft-api-v2\): requests for backend 'api-v3' \(up to 10% of a route\) fail with 502/ },
  { fixture: "missing-control-plane", code: "missing-binding", severity: "error", at: { file: relative("broken", "proxy-without-control-plane.toml"), needle: "[env.api]" }, message: /the proxy of api has no CONTROL_PLANE binding .*: it cannot load its config/ },
  { fixture: "missing-control-plane", code: "egress-unsigned", severity: "error", at: { file: relative("broken", "proxy-without-control-plane.toml"), needle: "[env.api]" }, message: /calls from api to payments cannot be signed/ },
  { fixture: "unmet-weight", code: "unmet-weight", severity: "error", at: { pointer: "/services/0/routes/0/split/weights/api", needle: '"api": 30' }, message: /api's policy allows none of the requests web relays to it \(from 'internet', through 'web'\), so the 30% of route 'all' sent to api can never be served/ },
  { fixture: "denied-caller", code: "denied-caller", severity: "error", at: { pointer: "/services/0/backends/0/calls/API", needle: '"API": "api"' }, message: /web calls api, but api's policy allows no request from 'web'/ },
  { fixture: "no-policy", code: "no-policy", severity: "warning", at: { pointer: "/services/1/name", needle: '"name": "api"' }, message: /service 'api' has no authorization policy/ },
  { fixture: "egress-no-provider", code: "egress-no-provider", severity: "warning", at: { pointer: "/services/1/backends/2/name", needle: '"name": "payments"' }, message: /external backend 'payments' names no provider/ },
  { fixture: "egress-issuer", code: "egress-issuer", severity: "warning", at: { file: relative("workers", "control-example", "wrangler.toml"), needle: "WEFT_PUBLIC_URL =" }, message: /WEFT_PUBLIC_URL is 'https:\/\/weft\.example\.com'/ },
  { fixture: "insecure-origin", code: "insecure-origin", severity: "error", at: { pointer: "/services/1/backends/2/origin", needle: '"origin"' }, message: /external origin must use https/ },
  { fixture: "local-origin", code: "local-origin", severity: "warning", at: { pointer: "/services/1/backends/2/origin", needle: '"origin"' }, message: /accepted by the local mesh \(npm start\) only/ },
  { fixture: "wrong-identity", code: "wrong-identity", severity: "error", at: { file: relative("workers", "web-forged", "wrangler.toml"), needle: 'binding = "API"' }, message: /weft-web-forged calls weft-proxy-api as 'admin', but it is part of web/ },
  { fixture: "relay-identity", code: "wrong-identity", severity: "error", at: { file: relative("workers", "web-relay", "wrangler.toml"), needle: 'binding = "API"' }, message: /weft-web-relay calls weft-proxy-api with props \{"caller":"web","hop":"proxy"\}, not \{"caller":"web"\}: a worker marked as a relaying proxy could name any origin/ },
  { fixture: "bypasses-proxy", code: "bypasses-proxy", severity: "error", at: { file: relative("workers", "web-direct", "wrangler.toml"), needle: "API_DIRECT" }, message: /binds API_DIRECT straight to weft-api-v1, a backend of api/ },
  { fixture: "public-backend", code: "public-backend", severity: "error", at: { file: relative("workers", "api-public", "wrangler.toml"), needle: "#" }, message: /weft-api-public is reachable without its proxy \(workers_dev is not false\)/ },
  { fixture: "unknown-script", code: "unknown-script", severity: "warning", at: { pointer: "/services/0/backends/0/script", needle: '"weft-nowhere"' }, message: /no wrangler config in this repository deploys 'weft-nowhere'/ },
  { fixture: "unreachable-route", code: "unreachable-route", severity: "warning", at: { pointer: "/services/0/routes/1/match/path", needle: '"/admin/*"' }, message: /route 'admin' \(\/admin\/\*\) matches no path of web's public routes/ },
  { fixture: "unrouted-public-path", code: "unrouted-public-path", severity: "warning", at: { pointer: "/services/0/publicRoutes/0/pattern", needle: '"shop.test/cart/*"' }, message: /requests on shop\.test\/cart\/\* match none of web's routes/ },
  { fixture: "unreachable-service", code: "unreachable-service", severity: "warning", at: { pointer: "/services/2/name", needle: '"name": "batch"' }, message: /nothing reaches service 'batch'/ },
  { fixture: "routing-loop", code: "routing-loop", severity: "error", at: { pointer: "/services/0", needle: "{", after: ['"services"'] }, message: /routing loop: web → api → web/ },
  { fixture: "duplicate-public-route", code: "duplicate-public-route", severity: "error", at: { pointer: "/services/1/publicRoutes/0/pattern", needle: '"shop.test/*"', after: ['"name": "api"'] }, message: /shop\.test\/\* is a public route of both web and api/ },
  { fixture: "unknown-service", code: "unknown-service", severity: "error", at: { pointer: "/services/0/backends/0/calls/SEARCH", needle: '"SEARCH"' }, message: /web calls unknown service 'search'/ },
  { fixture: "invalid-manifest", code: "invalid-manifest", severity: "error", at: { pointer: "/services/1/routes/1/split/weigths", needle: '"weigths"' }, message: /Unrecognized key: "weigths"/ },
  { fixture: "stale-generated", code: "stale-generated", severity: "error", at: { file: relative("config", "mesh.json"), needle: "" }, message: /config\/mesh\.json is out of date with .*stale-generated\.json/ },
  { fixture: "binding-mismatch", code: "binding-mismatch", severity: "error", at: { file: relative("broken", "proxy-misbound.toml"), needle: '"API_V1"', after: ["[env.api]"] }, message: /the proxy of api binds API_V1 to weft-api-v2, the manifest says weft-api-v1$/ },
  { fixture: "wrong-service", code: "wrong-service", severity: "error", at: { file: relative("broken", "proxy-wrong-service.toml"), needle: "WEFT_SERVICE", after: ["[env.api]"] }, message: /\[env\.api\] sets WEFT_SERVICE = "web": the proxy would load another service's config/ },
  { fixture: "missing-proxy", code: "missing-proxy", severity: "error", at: { file: relative("broken", "proxy-without-api.toml"), needle: "#" }, message: /no \[env\.api\] for service 'api': its proxy weft-proxy-api is not deployed/ },
  { fixture: "duplicate-script", code: "duplicate-script", severity: "error", at: { pointer: "/services/1/backends/0/script", needle: '"weft-api-v1"', after: ['"name": "api-v1"'] }, message: /worker 'weft-api-v1' is a backend of web and api: its calls can carry only one identity/ },
  { fixture: "not-generated", code: "not-generated", severity: "error", at: { file: relative("broken", "never-generated", "wrangler.toml"), needle: "" }, message: /^the proxy's wrangler config does not exist$/ },
  { fixture: "not-generated", code: "not-generated", severity: "error", at: { file: relative("broken", "never-generated", "mesh.json"), needle: "" }, message: /never-generated\/mesh\.json does not exist$/ },
  { fixture: "invalid-origin", code: "invalid-origin", severity: "error", at: { pointer: "/services/1/backends/2/origin", needle: '"origin"' }, message: /external origin must be scheme:\/\/host\[:port\]\[\/base-path\], without credentials, query or fragment/ },
  { fixture: "duplicate-name", code: "duplicate-name", severity: "error", at: { pointer: "/services/1/routes/1/name", needle: '"name": "all"', after: ['"name": "api"', '"/pay/*"'] }, message: /duplicate route name 'all' in service 'api'/ },
  { fixture: "unknown-route", code: "unknown-route", severity: "error", at: { pointer: "/services/1/rateLimits/0/routes", needle: '"routes"', after: ['"rateLimits"'] }, message: /rate limit 'limit-0' names unknown route 'checkout'/ },
];

const runs = new Map<string, WeftRun>();
let repository: WeftRun;

beforeAll(async () => {
  const fixtures = [...new Set(CASES.map((c) => c.fixture))];
  // A few at a time: each is a Node process.
  for (let i = 0; i < fixtures.length; i += 4) {
    await Promise.all(
      fixtures.slice(i, i + 4).map(async (fixture) => {
        runs.set(fixture, await weft(["check", "--json", "-f", relative(`${fixture}.json`)]));
      }),
    );
  }
  // The demo shop, checked from its folder as a user checks theirs.
  repository = await weft(["check", "--json"], { cwd: SHOP_DIR });
});

const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

function findingsOf(fixture: string): Finding[] {
  const run = runs.get(fixture);
  if (!run) throw new Error(`no run for ${fixture}`);
  return (JSON.parse(run.stdout) as { findings: Finding[] }).findings;
}

describe("weft check finds", () => {
  it.each(CASES)("$code (fixture: $fixture), with its location and a fix", (c) => {
    const finding = findingsOf(c.fixture).find((f) => f.code === c.code && c.message.test(f.message));
    expect(finding, JSON.stringify(findingsOf(c.fixture), null, 1)).toBeDefined();
    expect(finding?.severity).toBe(c.severity);
    expect(finding?.message).toMatch(c.message);
    expect(finding?.fix.length).toBeGreaterThan(10);
    if ("pointer" in c.at) {
      const file = relative(`${c.fixture}.json`);
      expect(finding?.location).toMatchObject({ file, pointer: c.at.pointer, line: lineOf(file, c.at.needle, c.at.after) });
    } else {
      expect(finding?.location.file).toBe(c.at.file);
      // needle "": a finding about a whole file, without a line.
      expect(finding?.location.line).toBe(c.at.needle === "" ? undefined : lineOf(c.at.file, c.at.needle, c.at.after));
    }
    // Any error makes the check fail.
    if (c.severity === "error") expect(runs.get(c.fixture)?.code).toBe(1);
  });

  it("judges a mesh backend by the origins it relays, and never advises allowing the relaying service", async () => {
    // web is public: what it relays to api is the internet's requests. api allowing 'web' does not serve them.
    const unmet = findingsOf("unmet-weight").find((f) => f.code === "unmet-weight");
    expect(unmet?.fix).toContain('{"from":["internet"],"peers":["web"]}');
    expect(unmet?.fix).not.toMatch(/Allow 'web'/);
    // Allowing the internet through web (the advice) clears it; so does allowing the internet from anywhere.
    const dir = mkdtempSync(path.join(tmpdir(), "weft-check-"));
    temporary.push(dir);
    cpSync(FIXTURES, dir, { recursive: true });
    const manifestFile = path.join(dir, "weft.manifest.json");
    const manifest = JSON.parse(readFileSync(path.join(FIXTURES, "unmet-weight.json"), "utf8")) as { services: Array<{ name: string; policy?: unknown }> };
    for (const allow of [[{ from: ["internet"], peers: ["web"] }], [{ from: ["internet"] }]]) {
      const api = manifest.services.find((s) => s.name === "api");
      if (api) api.policy = { allow };
      writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
      expect((await weft(["generate", "-f", manifestFile])).code).toBe(0);
      const run = await weft(["check", "--json", "-f", manifestFile]);
      const codes = (JSON.parse(run.stdout) as { findings: Finding[] }).findings.map((f) => f.code);
      expect(codes, JSON.stringify(allow)).not.toContain("unmet-weight");
      expect(codes).not.toContain("denied-caller");
    }
  });

  it("each missing generated file once (a missing proxy config is not reported twice)", () => {
    const missing = findingsOf("not-generated").filter((f) => f.code === "not-generated");
    expect(missing.map((f) => f.location.file).sort()).toEqual([relative("broken", "never-generated", "mesh.json"), relative("broken", "never-generated", "wrangler.toml")]);
  });

  it("nothing wrong in the fixture project itself or in the repository's manifest (warnings only)", () => {
    expect(repository.code, repository.stderr).toBe(0);
    const findings = (JSON.parse(repository.stdout) as { findings: Finding[] }).findings;
    expect(findings.filter((f) => f.severity === "error")).toEqual([]);
    // The demo is open where that is safe: three services without a policy (orders has one: the
    // internet may not list orders), and its vendor runs on localhost.
    // `unset-secret` depends on this machine's .weft/secrets.env (npm start writes it): test/cli/secrets.test.ts covers it.
    expect(findings.map((f) => f.code).filter((code) => code !== "unset-secret").sort()).toEqual(["egress-issuer", "local-origin", "local-origin", "no-policy", "no-policy", "no-policy"]);
  });
});

describe("weft check output and exit codes", () => {
  it("names an unknown backend in words and exits 1", async () => {
    const run = await weft(["check", "-f", relative("unknown-backend.json")]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`${relative("unknown-backend.json")}:${lineOf(relative("unknown-backend.json"), '"api-v3"')}  error  unknown-backend  api › route all › split.weights.api-v3`);
    expect(run.stdout).toContain("unknown backend 'api-v3' (service 'api' has: api-v1, api-v2, payments)");
    expect(run.stdout).toContain("fix: Add a backend named 'api-v3' to service 'api'");
    expect(run.stdout).toMatch(/1 error, 0 warnings\.\n$/);
  });

  it("exits 0 on warnings alone and 1 with --strict; exits 0 with no findings", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-check-"));
    temporary.push(dir);
    cpSync(FIXTURES, dir, { recursive: true });
    // The proxy config names Weft's proxy by a path relative to itself: a copied project generates anew.
    expect((await weft(["generate", "-f", path.join(dir, "weft.manifest.json")])).code).toBe(0);
    const clean = await weft(["check", "-f", path.join(dir, "weft.manifest.json")]);
    expect(clean.code, clean.stdout).toBe(0);
    expect(clean.stdout).toContain("no problems found");
    // The no-policy variant, generated, leaves exactly one warning.
    cpSync(path.join(FIXTURES, "no-policy.json"), path.join(dir, "weft.manifest.json"));
    expect((await weft(["generate", "-f", path.join(dir, "weft.manifest.json")])).code).toBe(0);
    const warned = await weft(["check", "-f", path.join(dir, "weft.manifest.json"), "--json"]);
    expect(JSON.parse(warned.stdout)).toMatchObject({ ok: true, summary: { errors: 0, warnings: 1 } });
    expect(warned.code).toBe(0);
    expect((await weft(["check", "-f", path.join(dir, "weft.manifest.json"), "--strict"])).code).toBe(1);
  });

  it("in a project Weft was added to, reports a binding to a named entrypoint left out of `calls`", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-check-"));
    temporary.push(dir);
    cpSync(path.join(ROOT, "test", "fixtures", "projects", "rpc"), dir, { recursive: true });
    expect((await weft(["init", "--yes"], { cwd: dir })).code).toBe(0);
    const manifestFile = path.join(dir, "weft.manifest.json");
    expect((await weft(["check", "--json"], { cwd: dir })).stdout).not.toContain("bypasses-proxy");
    // Take the Admin binding out of web's calls: its calls would skip users' proxy.
    const manifest = JSON.parse(readFileSync(manifestFile, "utf8")) as { services: Array<{ backends: Array<{ calls?: Record<string, string> }> }> };
    for (const backend of manifest.services.flatMap((s) => s.backends)) delete backend.calls?.USERS_ADMIN;
    writeFileSync(manifestFile, JSON.stringify(manifest, null, 2));
    const run = await weft(["check", "--json"], { cwd: dir });
    expect(run.code).toBe(1);
    const findings = (JSON.parse(run.stdout) as { findings: Finding[] }).findings.filter((f) => f.code === "bypasses-proxy");
    expect(findings.map((f) => f.message)).toEqual([expect.stringMatching(/web binds USERS_ADMIN straight to users \(entrypoint Admin\), a backend of users/)]);
  });

  it("says where the manifest's JSON is broken", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "weft-check-"));
    temporary.push(dir);
    cpSync(path.join(FIXTURES, "weft.manifest.json"), path.join(dir, "weft.manifest.json"));
    const text = readFileSync(path.join(dir, "weft.manifest.json"), "utf8");
    writeFileSync(path.join(dir, "weft.manifest.json"), text.replace('"manifestVersion": 1,', '"manifestVersion": 1,,'));
    const run = await weft(["check"], { cwd: dir });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/weft\.manifest\.json:2 is not valid JSON/);
    const missing = await weft(["check", "-f", "nope.json"], { cwd: dir });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no such file: nope.json");
  });
});
