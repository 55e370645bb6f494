/**
 * The CLI's pure parts: argument parsing and its usage errors, split weights, config diffs and how
 * they read, the rollout progress line, TOML editing, and JSON line numbers.
 */
import { describe, expect, it } from "vitest";
import type { ServiceMetrics } from "../../shared/metrics.ts";
import { commandWords, globalsOf, parseCommandArgs, positionals, type ParsedArgs } from "../../cli/args.ts";
import { progressLine, type RolloutStatus } from "../../cli/commands/rollout.ts";
import { parseWeights } from "../../cli/commands/split.ts";
import { healthOf, moreLine, rankServices, summaryLine, type MeshOverview } from "../../cli/commands/status.ts";
import { diffConfigs, renderDiff, summarizeDiff } from "../../cli/diff.ts";
import { CliError, EXIT } from "../../cli/errors.ts";
import { originsOf } from "../../cli/manifest/check.ts";
import { jsonLines, lineOf } from "../../cli/manifest/locate.ts";
import { Manifest, type ManifestServiceInput } from "../../cli/manifest/schema.ts";
import { parsePlainToml, setSectionKey } from "../../cli/manifest/toml.ts";
import { plain } from "../../cli/output.ts";

function usageErrorOf(fn: () => unknown): CliError {
  try {
    fn();
  } catch (error) {
    if (error instanceof CliError) return error;
    throw error;
  }
  throw new Error("expected a usage error");
}

describe("argument parsing", () => {
  it("finds command words around global options, which may come anywhere", () => {
    expect(commandWords(["--url", "http://x", "rollout", "--json", "start", "pim"], 2)).toEqual({ words: ["rollout", "start"], rest: ["--url", "http://x", "--json", "pim"] });
    expect(commandWords(["split", "pim", "pim-v1=70"], 1)).toEqual({ words: ["split"], rest: ["pim", "pim-v1=70"] });
  });

  it("parses command and global options together", () => {
    const args = parseCommandArgs(["pim", "--route", "products", "--json", "--timeout", "2.5"], { route: { type: "string", description: "" } }, "split");
    expect(args.positionals).toEqual(["pim"]);
    expect(args.values.route).toBe("products");
    expect(globalsOf(args, "split")).toMatchObject({ json: true, timeoutMs: 2500, help: false });
  });

  it("turns unknown options, missing values and bad numbers into usage errors (exit 2) that point at --help", () => {
    const unknown = usageErrorOf(() => parseCommandArgs(["--bogus"], {}, "status"));
    expect(unknown.exitCode).toBe(EXIT.usage);
    expect(unknown.message).toContain("--bogus");
    expect(unknown.hint).toContain("weft status --help");
    expect(usageErrorOf(() => parseCommandArgs(["--url"], {}, "status")).exitCode).toBe(EXIT.usage);
    expect(usageErrorOf(() => globalsOf(parseCommandArgs(["--timeout", "soon"], {}, "status"), "status")).message).toContain("--timeout must be a number");
  });

  it("checks positionals: required, optional and variadic", () => {
    const args = (words: string[]): ParsedArgs => ({ values: {}, positionals: words });
    expect(usageErrorOf(() => positionals(args([]), ["service", "weights..."], "split")).message).toBe("missing <service> <weights>");
    expect(positionals(args(["pim", "a=1", "b=99"]), ["service", "weights..."], "split")).toHaveLength(3);
    expect(positionals(args([]), ["service?"], "status")).toEqual([]);
    expect(usageErrorOf(() => positionals(args(["a", "b"]), ["service?"], "status")).message).toBe("unexpected argument 'b'");
  });

  it("reads <backend>=<weight> words and refuses malformed ones before any request", () => {
    expect(parseWeights(["pim-v1=70", "pim-v2=30"], "split")).toEqual({ "pim-v1": 70, "pim-v2": 30 });
    expect(usageErrorOf(() => parseWeights(["pim-v1"], "split")).message).toContain("is not <backend>=<weight>");
    expect(usageErrorOf(() => parseWeights(["pim-v1=7.5"], "split")).message).toContain("whole number from 0 to 100");
    expect(usageErrorOf(() => parseWeights(["pim-v1=101"], "split")).message).toContain("whole number from 0 to 100");
    expect(usageErrorOf(() => parseWeights(["pim-v1=50", "pim-v1=50"], "split")).message).toContain("given twice");
    expect(usageErrorOf(() => parseWeights(["PIM=100"], "split")).message).toContain("not a backend name");
  });
});

describe("config diff", () => {
  const service = (name: string, weights: Record<string, number>, extra: Record<string, unknown> = {}) => ({
    name,
    backends: Object.keys(weights).map((b) => ({ name: b, type: "worker", binding: b.toUpperCase().replace(/-/g, "_") })),
    routes: [{ name: "all", match: { path: "/*" }, split: { weights } }],
    ...extra,
  });

  it("matches services, backends and routes by name and reports each changed value", () => {
    const live = { services: [service("pim", { "pim-v1": 100, "pim-v2": 0 }), service("cart", { cart: 100 }), service("old", { old: 100 })] };
    const desired = {
      services: [service("cart", { cart: 100 }, { policy: { allow: [{ from: ["orders"] }], deny: [] } }), service("pim", { "pim-v1": 70, "pim-v2": 30 }), service("search", { search: 100 })],
    };
    const diff = diffConfigs(live, desired);
    expect(diff.added).toEqual(["search"]);
    expect(diff.removed).toEqual(["old"]);
    expect(diff.changed.sort()).toEqual(["cart", "pim"]);
    expect(diff.changes).toContainEqual({ service: "pim", kind: "changed", path: ["routes", "all", "split", "weights", "pim-v1"], before: 100, after: 70 });
    expect(diff.changes).toContainEqual({ service: "cart", kind: "added", path: ["policy"], after: { allow: [{ from: ["orders"] }], deny: [] } });
    // Reordering services or backends is not a change.
    expect(diffConfigs(live, { services: [...live.services].reverse() }).changes).toEqual([]);
  });

  it("reports a change of route order (first match wins), not just of route contents", () => {
    const routes = [
      { name: "a", match: { path: "/a/*" }, split: { weights: { x: 100 } } },
      { name: "b", match: { path: "/*" }, split: { weights: { x: 100 } } },
    ];
    const before = { services: [{ name: "s", routes }] };
    const after = { services: [{ name: "s", routes: [...routes].reverse() }] };
    const diff = diffConfigs(before, after);
    expect(diff.changes).toEqual([{ service: "s", kind: "changed", path: ["routes", "(order)"], before: ["a", "b"], after: ["b", "a"] }]);
  });

  it("renders one line per change, grouped by service, with +/-/~ marks", () => {
    const diff = diffConfigs(
      { services: [service("pim", { "pim-v1": 100, "pim-v2": 0 }), service("old", { old: 100 })] },
      { services: [service("pim", { "pim-v1": 70, "pim-v2": 30 }), service("search", { search: 100 })] },
    );
    expect(renderDiff(diff, plain)).toEqual([
      "- old  (service removed: its proxy will answer 404 until it is redeployed without it)",
      "~ pim",
      "    ~ route all › split.weights.pim-v1: 100 → 70",
      "    ~ route all › split.weights.pim-v2: 0 → 30",
      "+ search  (new service: 1 backend, 1 route)",
    ]);
    expect(summarizeDiff(diff)).toBe("services: 1 changed, 1 added, 1 removed");
  });
});

describe("output", () => {
  it("draws a rollout's progress from its weight and steps", () => {
    const status: RolloutStatus = {
      id: "pim-1",
      service: "pim",
      route: "products",
      backend: "pim-v2",
      baseline: ["pim-v1"],
      strategy: "canary",
      state: "progressing",
      weight: 25,
      step: 2,
      steps: [5, 25, 50, 100],
      stepSeconds: 60,
      analysis: { maxErrorRate: 0.01, minRequests: 100, trafficTimeoutSeconds: 600 },
      probe: null,
      webhook: null,
      initialWeights: { "pim-v1": 100, "pim-v2": 0 },
      reason: null,
      createdAt: "2026-11-22T00:00:00.000Z",
      updatedAt: "2026-11-22T00:01:00.000Z",
      endedAt: null,
      revision: 3,
      events: [],
      current: { candidate: { requests: 120, failures: 1, errorRate: 0.00833, p99Ms: 45 }, baseline: { requests: 400, failures: 0, errorRate: 0, p99Ms: 40 }, verdict: "insufficient", detail: null },
    };
    expect(progressLine(status, plain, false)).toBe("[######------------------]  25% → pim-v2  step 2/4 (5 · 25 · 50 · 100)  progressing  candidate: 120 req, 0.8% errors, p99 45 ms");
    expect(progressLine({ ...status, state: "promoted", weight: 100, step: 4 }, plain, true)).toBe("[████████████████████████] 100% → pim-v2  step 4/4 (5 · 25 · 50 · 100)  promoted");
  });

  it("calls a service without traffic idle, not failing", () => {
    const metrics = (requests: number, successRate: number | null, ejections = 0): ServiceMetrics => ({
      service: "pim",
      windowSeconds: 60,
      from: "2026-11-22T00:00:00.000Z",
      to: "2026-11-22T00:01:00.000Z",
      backends: [],
      routes: [],
      callers: [],
      timeline: [],
      total: { requests, rps: requests / 60, successRate, p50Ms: null, p95Ms: null, p99Ms: null, statusClasses: { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0 }, retries: 0, rateLimited: 0, ejections },
    });
    expect(healthOf(metrics(0, null))).toBe("idle");
    expect(healthOf(metrics(100, 1))).toBe("ok");
    expect(healthOf(metrics(100, 1, 2))).toBe("degraded");
    expect(healthOf(metrics(100, 0.95))).toBe("degraded");
    expect(healthOf(metrics(100, 0.5))).toBe("failing");
    expect(healthOf(null)).toBe("unknown");
  });
});

describe("status and top on a large mesh", () => {
  const row = (name: string, health: MeshOverview["rows"][number]["health"], rps: number): MeshOverview["rows"][number] => ({ name, health, rps, metrics: null });
  const rows = [row("idle-b", "idle", 0), row("busy", "ok", 50), row("idle-a", "idle", 0), row("quiet", "ok", 1), row("broken", "failing", 0.5), row("slow", "degraded", 3)];

  it("ranks failing and degraded services first for status, the busiest first for top, idle ones last by name", () => {
    expect(rankServices(rows, "attention").map((r) => r.name)).toEqual(["broken", "slow", "busy", "quiet", "idle-a", "idle-b"]);
    expect(rankServices(rows, "busiest").map((r) => r.name)).toEqual(["busy", "slow", "quiet", "broken", "idle-a", "idle-b"]);
  });

  it("summarizes the whole mesh in one line and says how to see what was left out", () => {
    const overview: MeshOverview = { total: 4000, active: 4, health: { ok: 2, degraded: 1, failing: 1, idle: 3996, unknown: 0 }, rows: rows.slice(0, 3) };
    expect(summaryLine(overview)).toBe("4,000 services: 4 with traffic (1 failing, 1 degraded), 3,996 idle");
    expect(moreLine(overview)).toBe("Showing 3 of 4,000 services (services with traffic first): --limit <n>, --all, --service <name> or --search <text> for others.");
    expect(moreLine({ ...overview, total: 3 })).toBeNull();
    expect(summaryLine({ total: 1, active: 0, health: { ok: 0, degraded: 0, failing: 0, idle: 1, unknown: 0 }, rows: [] })).toBe("1 service: 0 with traffic, 1 idle");
  });
});

describe("TOML editing", () => {
  const text = `# A worker\nname = "w"\nservices = [ # old\n  { binding = "A", service = "a" },\n]\n\n[env.v1]\nvars = { X = "1" }\n\n[[durable_objects.bindings]]\nname = "D"\nclass_name = "C"\n`;

  it("replaces one key of a section and keeps every other line", () => {
    const next = setSectionKey(text, "", "services", ["services = [", '  { binding = "B", service = "b" },', "]"], [{ binding: "B", service: "b" }]);
    expect(next).toBe(text.replace('services = [ # old\n  { binding = "A", service = "a" },', 'services = [\n  { binding = "B", service = "b" },'));
    expect(parsePlainToml(next).durable_objects).toEqual({ bindings: [{ name: "D", class_name: "C" }] });
  });

  it("adds a missing key after a section's last key", () => {
    const next = setSectionKey(text, "env.v1", "services", ["services = []"], []);
    expect(next).toContain('[env.v1]\nvars = { X = "1" }\n\nservices = []\n\n[[durable_objects.bindings]]');
    expect((parsePlainToml(next).env as Record<string, unknown>).v1).toEqual({ vars: { X: "1" }, services: [] });
  });

  it("refuses an edit that would change anything else", () => {
    expect(() => setSectionKey(text, "", "services", ['services = [{ binding = "B", service = "b" }]', 'main = "other.ts"'], [{ binding: "B", service: "b" }])).toThrow("would change other settings");
    expect(() => setSectionKey(text, "env.v9", "services", ["services = []"], [])).toThrow("no [env.v9] section");
  });
});

describe("JSON line numbers", () => {
  it("finds the line of every member by JSON pointer, and of the nearest parent for missing ones", () => {
    const text = '{\n  "services": [\n    {\n      "name": "pim",\n      "routes": [ { "split": { "weights": { "a/b": 1 } } } ]\n    }\n  ]\n}\n';
    const lines = jsonLines(text);
    expect(lines.get("/services/0/name")).toBe(4);
    expect(lines.get("/services/0/routes/0/split/weights/a~1b")).toBe(5);
    expect(lineOf(lines, "/services/0/policy/allow")).toBe(3);
  });
});

describe("origins that reach a service (weft check)", () => {
  it("follows mesh backends to the origins the relaying service receives, not the relay itself", () => {
    const service = (name: string, extra: Partial<ManifestServiceInput>): ManifestServiceInput => ({
      name,
      backends: [{ name, type: "worker", binding: "W", script: `weft-${name}` }],
      routes: [{ name: "all", match: { path: "/*" }, split: { weights: { [name]: 100 } } }],
      ...extra,
    });
    const manifest = Manifest.parse({
      manifestVersion: 1,
      proxy: { compatibilityDate: "2026-11-01" },
      services: [
        // edge is public and relays everything to api; batch's worker calls edge; api's worker calls db.
        service("edge", { publicRoutes: [{ pattern: "shop.test/*" }], backends: [{ name: "api", type: "mesh", service: "api", binding: "API" }], routes: [{ name: "all", split: { weights: { api: 100 } } }] }),
        service("batch", { backends: [{ name: "batch", type: "worker", binding: "B", script: "weft-batch", calls: { EDGE: "edge" } }] }),
        service("api", { backends: [{ name: "api", type: "worker", binding: "A", script: "weft-api", calls: { DB: "db" } }] }),
        service("db", {}),
      ],
    });
    const origins = originsOf(manifest);
    expect([...(origins.get("edge") ?? [])].sort()).toEqual(["batch", "internet"]);
    expect([...(origins.get("api") ?? [])].sort()).toEqual(["batch", "internet"]); // never "edge"
    expect([...(origins.get("db") ?? [])]).toEqual(["api"]);
    expect([...(origins.get("batch") ?? [])]).toEqual([]);
  });
});
