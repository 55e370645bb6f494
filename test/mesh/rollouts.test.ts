/**
 * Progressive delivery end to end, on the booted mesh with real traffic: a canary promoted step by
 * step (sticky shoppers never move back), a faulty candidate rolled back although retries and
 * failover hid its failures from shoppers, a rollout starved of traffic that waits and then fails,
 * manual actions racing each other, and manual split changes refused while a rollout owns the split.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, setSplit, waitFor, type TestMesh } from "./harness.ts";
import type { RolloutStatus } from "../../shared/rollout.ts";

let t: TestMesh;

beforeAll(async () => {
  t = await bootTestMesh();
});
afterAll(async () => {
  await t?.dispose();
});

interface Traffic {
  /** Responses by status, and each shopper's backends in the order seen. */
  statuses: Map<number, number>;
  placements: Map<string, string[]>;
  stop(): Promise<void>;
}

/** Shoppers browsing pim through the storefront's public route until stopped. */
function shop(shoppers: number, concurrency = 6): Traffic {
  const statuses = new Map<number, number>();
  const placements = new Map<string, string[]>();
  let running = true;
  let n = 0;
  const loop = async (): Promise<void> => {
    while (running) {
      const shopper = `shopper-${n++ % shoppers}`;
      const res = await fetch(`${t.shop}/products/sku-${(n % 5) + 1}`, { headers: { cookie: `shopper=${shopper}` } });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const backend = res.headers.get("x-weft-backend");
      if (backend) {
        const seen = placements.get(shopper) ?? [];
        if (seen[seen.length - 1] !== backend) seen.push(backend);
        placements.set(shopper, seen);
      }
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  return {
    statuses,
    placements,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function startRollout(service: string, body: Record<string, unknown>): Promise<Response> {
  return t.adminFetch(`/admin/services/${service}/rollouts`, { method: "POST", body: JSON.stringify(body) });
}

async function current(service: string): Promise<RolloutStatus> {
  const res = await t.adminFetch(`/admin/services/${service}/rollouts/current`);
  expect(res.status).toBe(200);
  return (await res.json()) as RolloutStatus;
}

async function until(service: string, states: ReadonlyArray<RolloutStatus["state"]>, ms: number): Promise<RolloutStatus> {
  let last: RolloutStatus | undefined;
  await waitFor(async () => {
    last = await current(service);
    return states.includes(last.state);
  }, ms, 200);
  if (!last) throw new Error("no status");
  return last;
}

async function pimWeights(): Promise<Record<string, number>> {
  const res = await t.adminFetch("/admin/services/pim");
  return ((await res.json()) as { split: Record<string, number> }).split;
}

async function action(service: string, name: string, headers: Record<string, string> = {}): Promise<Response> {
  return t.adminFetch(`/admin/services/${service}/rollouts/current/${name}`, { method: "POST", headers });
}

let faulted = false;

/** Injects rehearsal faults on pim's backends (cleared after the test). */
async function injectFaults(body: { faults: unknown[] }): Promise<void> {
  const res = await t.adminFetch("/admin/services/pim/faults", { method: "PUT", body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  faulted = true;
}

afterEach(async () => {
  // Leave pim as the demo has it: no rollout running, no faults, all traffic on pim-v1.
  const status = await t.adminFetch("/admin/services/pim/rollouts/current");
  if (status.status === 200) {
    const body = (await status.json()) as RolloutStatus;
    if (!["promoted", "rolled-back", "aborted"].includes(body.state)) await action("pim", "abort");
  }
  await t.adminFetch("/admin/services/pim/faults", { method: "DELETE" });
  await setSplit(t, "pim", { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
  if (faulted) {
    // Proxies report attempts about once a second: let the faulty candidate's last failures
    // arrive before the next test starts a rollout that would rightly count them.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    faulted = false;
  }
});

describe("canary", () => {
  it("moves traffic step by step and promotes the candidate; sticky shoppers only ever move to it", async () => {
    const traffic = shop(40);
    try {
      const res = await startRollout("pim", {
        backend: "pim-v2",
        strategy: "canary",
        steps: [20, 50],
        stepSeconds: 2,
        analysis: { maxErrorRate: 0.05, maxP99Ms: 5000, minRequests: 10 },
      });
      expect(res.status).toBe(201);
      expect(res.headers.get("location")).toBe("/admin/services/pim/rollouts/current");
      const started = (await res.json()) as RolloutStatus;
      expect(started).toMatchObject({ state: "progressing", weight: 20, step: 1, steps: [20, 50], baseline: ["pim-v1"], backend: "pim-v2" });
      expect(await pimWeights()).toEqual({ "pim-v1": 80, "pim-v2": 20, "pim-v3": 0, "pim-vendor": 0 });

      // One rollout at a time, and the split is the rollout's while it runs.
      const second = await startRollout("pim", { backend: "pim-v2", steps: [50], stepSeconds: 2 });
      expect(second.status).toBe(409);
      expect(second.headers.get("content-type")).toContain("application/problem+json");
      const manual = await t.adminFetch("/admin/services/pim/split", { method: "PUT", body: JSON.stringify({ weights: { "pim-v1": 50, "pim-v2": 50, "pim-v3": 0, "pim-vendor": 0 } }) });
      expect(manual.status).toBe(409);
      const problem = (await manual.json()) as { detail: string; rollout: string };
      expect(problem.rollout).toBe(started.id);
      expect(problem.detail).toContain("abort");
      expect(await pimWeights()).toEqual({ "pim-v1": 80, "pim-v2": 20, "pim-v3": 0, "pim-vendor": 0 });
      // Whole-config writes that would move the rolled-out split are refused too; others go through.
      const config = (await (await t.adminFetch("/admin/config")).json()) as { version: number; services: Array<{ name: string; routes: Array<{ split: { weights: Record<string, number> } }> }> };
      const moved = structuredClone(config.services);
      const pim = moved.find((svc) => svc.name === "pim");
      if (pim?.routes[0]) pim.routes[0].split.weights = { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 };
      const apply = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: moved }) });
      expect(apply.status).toBe(409);
      const rollback = await t.adminFetch("/admin/config/rollback", { method: "POST", body: JSON.stringify({ version: config.version - 1 }) });
      expect(rollback.status).toBe(409);
      const unchanged = await t.adminFetch("/admin/config", { method: "PUT", headers: { "if-match": "*" }, body: JSON.stringify({ services: config.services }) });
      expect(unchanged.status).toBe(200);

      const done = await until("pim", ["promoted", "rolled-back", "aborted"], 30_000);
      expect(done.state).toBe("promoted");
      expect(done.weight).toBe(100);
      expect(done.reason).toBeNull();
      expect(done.events.map((e) => e.type)).toEqual(["started", "step", "promoted"]);
      const step = done.events[1];
      expect(step?.candidate?.requests).toBeGreaterThanOrEqual(10);
      expect(step?.candidate?.errorRate).toBe(0);
      expect(await pimWeights()).toEqual({ "pim-v1": 0, "pim-v2": 100, "pim-v3": 0, "pim-vendor": 0 });
    } finally {
      await traffic.stop();
    }
    // Monotonic: a shopper who reached pim-v2 never went back to pim-v1.
    for (const [shopper, seen] of traffic.placements) {
      expect(seen.length, `${shopper}: ${seen.join(" → ")}`).toBeLessThanOrEqual(2);
      if (seen.length === 2) expect(seen).toEqual(["pim-v1", "pim-v2"]);
    }
    expect([...traffic.placements.values()].some((seen) => seen.length === 2)).toBe(true);

    // The split is free again; history keeps the rollout; the events reached the logs.
    const history = (await (await t.adminFetch("/admin/services/pim/rollouts")).json()) as { rollouts: RolloutStatus[] };
    expect(history.rollouts[0]?.state).toBe("promoted");
    const logged = t.logLines.filter((line) => line.startsWith('{"type":"weft.rollout"')).map((line) => JSON.parse(line) as { event: string; rollout: string });
    expect(logged.filter((l) => l.rollout === history.rollouts[0]?.id).map((l) => l.event)).toEqual(["started", "step", "promoted"]);
    const versions = (await (await t.adminFetch("/admin/config/versions?limit=10")).json()) as { versions: Array<{ reason: string }> };
    expect(versions.versions.some((v) => v.reason.includes("promoted"))).toBe(true);
  });

  it("rolls back a candidate that fails its attempts, even when retries and failover hide it from shoppers", async () => {
    await injectFaults({ faults: [{ backend: "pim-v2", abort: { percent: 30, status: 503 } }] });
    const traffic = shop(40);
    const started = Date.now();
    let done: RolloutStatus;
    try {
      const res = await startRollout("pim", {
        backend: "pim-v2",
        steps: [25, 50, 100],
        stepSeconds: 30,
        analysis: { maxErrorRate: 0.05, minRequests: 40 },
      });
      expect(res.status).toBe(201);
      done = await until("pim", ["promoted", "rolled-back", "aborted"], 20_000);
    } finally {
      await traffic.stop();
    }
    // Judged within the first step, long before its 30 s were up.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(done.state).toBe("rolled-back");
    expect(done.weight).toBe(0);
    expect(done.reason).toMatch(/error rate \d+(\.\d+)?% \(\d+ of \d+ attempts\) is above the maximum 5%/);
    const last = done.events[done.events.length - 1];
    expect(last?.type).toBe("rolled-back");
    expect(last?.candidate?.failures).toBeGreaterThan(0);
    expect(await pimWeights()).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
    // Shoppers barely noticed: retries and failover turned the candidate's failures into answers.
    const served = [...traffic.statuses].filter(([code]) => code < 500).reduce((sum, [, n]) => sum + n, 0);
    const failed = [...traffic.statuses].filter(([code]) => code >= 500).reduce((sum, [, n]) => sum + n, 0);
    expect(failed).toBeLessThan(served * 0.02);
  });
});

describe("compared with the baseline", () => {
  it("rolls back a candidate that is worse than the baseline in the same step, though within the absolute limit", async () => {
    await injectFaults({ faults: [{ backend: "pim-v2", abort: { percent: 20, status: 503 } }] });
    const traffic = shop(40);
    let done: RolloutStatus;
    try {
      const res = await startRollout("pim", {
        backend: "pim-v2",
        steps: [40, 100],
        stepSeconds: 3,
        analysis: { maxErrorRate: 0.5, minRequests: 30, maxErrorRateIncrease: 0.05 },
      });
      expect(res.status).toBe(201);
      // Two 3-second steps, each judged once its telemetry has arrived; generous on a loaded machine.
      done = await until("pim", ["promoted", "rolled-back", "aborted"], 40_000);
    } finally {
      await traffic.stop();
    }
    expect(done.state).toBe("rolled-back");
    expect(done.reason).toMatch(/^error rate [\d.]+% is [\d.]+% above the baseline's 0% \(at most \+5%\)$/);
    const last = done.events[done.events.length - 1];
    expect(last?.baseline?.requests).toBeGreaterThanOrEqual(30);
    expect(await pimWeights()).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
  }, 60_000);
});

describe("blue-green with synthetic probes", () => {
  const probe = { path: "/products/sku-1", requestsPerMinute: 600 };

  it("checks the candidate on probes alone (no shopper traffic), switches all traffic at once, then promotes", async () => {
    const res = await startRollout("pim", { backend: "pim-v2", strategy: "blue-green", stepSeconds: 2, probe, analysis: { minRequests: 8, maxErrorRate: 0 } });
    expect(res.status).toBe(201);
    expect((await res.json()) as RolloutStatus).toMatchObject({ steps: [0, 100], weight: 0, probe });
    // Before the switch the candidate has no shopper traffic at all.
    expect(await pimWeights()).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
    const probing = t.cron("weft-proxy-pim");
    const switched = await until("pim", ["promoted", "rolled-back", "aborted"], 30_000);
    await probing;
    expect(switched.state).toBe("promoted");
    // (Probes report once a second, so the 2 s check may wait a moment for its 8th request.)
    const moves = switched.events.filter((e) => e.type !== "waiting-for-traffic" && e.type !== "traffic-arrived");
    expect(moves.map((e) => e.type)).toEqual(["started", "step", "promoted"]);
    expect(moves[1]?.message).toContain("all traffic switched to pim-v2");
    expect(moves[1]?.candidate?.requests).toBeGreaterThanOrEqual(8);
    expect(moves[1]?.weight).toBe(100);
    expect(await pimWeights()).toEqual({ "pim-v1": 0, "pim-v2": 100, "pim-v3": 0, "pim-vendor": 0 });
    const logged = t.logLines.filter((line) => line.includes('"event":"rollout-probes"'));
    expect(logged.length).toBeGreaterThan(0);
  });

  it("a candidate failing its checks never gets shopper traffic", async () => {
    await injectFaults({ faults: [{ backend: "pim-v2", abort: { percent: 50, status: 500 } }] });
    const res = await startRollout("pim", { backend: "pim-v2", strategy: "blue-green", stepSeconds: 2, probe, analysis: { minRequests: 20, maxErrorRate: 0.01 } });
    expect(res.status).toBe(201);
    const probing = t.cron("weft-proxy-pim");
    const done = await until("pim", ["promoted", "rolled-back", "aborted"], 30_000);
    await probing;
    expect(done.state).toBe("rolled-back");
    expect(done.events.map((e) => e.weight)).toEqual([0, 0]);
    expect(done.reason).toContain("error rate");
    expect(await pimWeights()).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
  });
});

describe("too little traffic", () => {
  it("waits, says so, and fails after the traffic timeout instead of passing", async () => {
    const res = await startRollout("pim", {
      backend: "pim-v2",
      steps: [10],
      stepSeconds: 1,
      analysis: { maxErrorRate: 0.01, minRequests: 500, trafficTimeoutSeconds: 3 },
    });
    expect(res.status).toBe(201);
    const waiting = await until("pim", ["waiting-for-traffic"], 10_000);
    expect(waiting.current?.detail).toMatch(/of the 500 requests needed/);
    expect(waiting.events.map((e) => e.type)).toContain("waiting-for-traffic");
    expect(await pimWeights()).toEqual({ "pim-v1": 90, "pim-v2": 10, "pim-v3": 0, "pim-vendor": 0 });
    const done = await until("pim", ["promoted", "rolled-back", "aborted"], 10_000);
    expect(done.state).toBe("rolled-back");
    expect(done.reason).toMatch(/^not enough traffic: \d+ of the 500 requests needed after waiting 3 s$/);
    expect(await pimWeights()).toEqual({ "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
  });
});

describe("manual actions", () => {
  it("pause holds the split, resume goes on, and of a racing promote and abort exactly one wins", async () => {
    const res = await startRollout("pim", { backend: "pim-v2", steps: [10, 50], stepSeconds: 60, analysis: { minRequests: 10 } });
    expect(res.status).toBe(201);
    const revision = Number((res.headers.get("etag") ?? "").replaceAll('"', ""));

    const paused = await action("pim", "pause", { "if-match": `"${revision}"` });
    expect(paused.status).toBe(200);
    expect(((await paused.json()) as RolloutStatus).state).toBe("paused");
    // A second writer holding the old revision is refused.
    const stale = await action("pim", "resume", { "if-match": `"${revision}"` });
    expect(stale.status).toBe(412);
    expect(await pimWeights()).toEqual({ "pim-v1": 90, "pim-v2": 10, "pim-v3": 0, "pim-vendor": 0 });
    const again = await action("pim", "pause");
    expect(again.status).toBe(409);
    const resumed = await action("pim", "resume");
    expect(((await resumed.json()) as RolloutStatus).state).toBe("progressing");
    // Ticks that only refresh the step's numbers keep the revision, so an operator's If-Match holds.
    const ticking = (await t.adminFetch("/admin/services/pim/rollouts/current")).headers.get("etag") ?? "";
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect((await t.adminFetch("/admin/services/pim/rollouts/current")).headers.get("etag")).toBe(ticking);

    const results = await Promise.all([action("pim", "promote"), action("pim", "abort"), action("pim", "pause")]);
    const [promote, abort] = results;
    expect([promote?.status, abort?.status].sort()).toEqual([200, 409]);
    const status = await current("pim");
    const winner = promote?.status === 200 ? "promoted" : "aborted";
    expect(status.state).toBe(winner);
    expect(status.events.filter((e) => e.type === "promoted" || e.type === "aborted")).toHaveLength(1);
    expect(await pimWeights()).toEqual(winner === "promoted" ? { "pim-v1": 0, "pim-v2": 100, "pim-v3": 0, "pim-vendor": 0 } : { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
    // The split is free again once the rollout ended.
    expect((await t.adminFetch("/admin/services/pim")).headers.get("etag")).toBeTruthy();
    await setSplit(t, "pim", { "pim-v1": 70, "pim-v2": 30, "pim-v3": 0, "pim-vendor": 0 });
  });

  it("of two rollouts started at once, exactly one starts", async () => {
    const body = { backend: "pim-v2", steps: [10, 50], stepSeconds: 60 };
    const answers = await Promise.all([startRollout("pim", body), startRollout("pim", body), startRollout("pim", body)]);
    expect(answers.map((r) => r.status).sort()).toEqual([201, 409, 409]);
    const history = (await (await t.adminFetch("/admin/services/pim/rollouts?limit=100")).json()) as { rollouts: RolloutStatus[] };
    expect(history.rollouts.filter((r) => r.state === "progressing")).toHaveLength(1);
    expect(await pimWeights()).toEqual({ "pim-v1": 90, "pim-v2": 10, "pim-v3": 0, "pim-vendor": 0 });
  });

  it("refuses rollouts that cannot work before anything changes", async () => {
    const before = await t.adminFetch("/admin/config/versions?limit=1");
    const head = ((await before.json()) as { current: number }).current;
    const cases: Array<[Record<string, unknown>, number, string]> = [
      [{ backend: "pim-v9", steps: [10] }, 422, "no backend named 'pim-v9'"],
      [{ backend: "pim-v2", steps: [50, 20] }, 422, "strictly increasing"],
      [{ backend: "pim-v2", strategy: "blue-green" }, 422, "needs a probe"],
      [{ backend: "pim-v2", route: "nope" }, 422, "no route named 'nope'"],
      [{ backend: "pim-v1" }, 422, "no baseline"],
      [{ backend: "pim-v2", analysis: { maxErrorRate: 2 } }, 422, "maxErrorRate"],
    ];
    for (const [body, status, text] of cases) {
      const res = await startRollout("pim", body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(await res.text()).toContain(text);
    }
    const after = await t.adminFetch("/admin/config/versions?limit=1");
    expect(((await after.json()) as { current: number }).current).toBe(head);
    expect((await action("pim", "dance")).status).toBe(404);
  });
});
