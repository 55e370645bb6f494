/**
 * ServiceHealth: one service's outlier detection across its backends, on a virtual clock.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_OUTLIER, isRelativeOutlier } from "../../shared/resilience.ts";
import { ServiceHealth } from "../../workers/proxy/health.ts";

describe("isRelativeOutlier", () => {
  it("needs enough attempts, a high enough error rate and a margin over the peers", () => {
    expect(isRelativeOutlier({ attempts: 30, failures: 10 }, { attempts: 30, failures: 0 })).toBe(true);
    expect(isRelativeOutlier({ attempts: 19, failures: 10 }, { attempts: 30, failures: 0 })).toBe(false); // too few attempts
    expect(isRelativeOutlier({ attempts: 30, failures: 5 }, { attempts: 30, failures: 0 })).toBe(false); // 17% < 20%
    expect(isRelativeOutlier({ attempts: 30, failures: 10 }, { attempts: 30, failures: 6 })).toBe(false); // 33% vs 20%: margin 13 < 15
    expect(isRelativeOutlier({ attempts: 30, failures: 10 }, { attempts: 0, failures: 0 })).toBe(false); // nothing to compare with
    expect(DEFAULT_OUTLIER.relativeMinRequests).toBe(20);
  });
});

describe("ServiceHealth", () => {
  /** Interleaves attempts: `v1` always succeeds, `v3` fails every third attempt (a third of its answers). */
  function run(health: ServiceHealth, attempts: number, v3FailsEvery: number, v1FailsEvery = 0): Array<{ at: number; backend: string }> {
    const ejections: Array<{ at: number; backend: string }> = [];
    for (let i = 0; i < attempts; i++) {
      const now = 1_000 + i * 10;
      if (health.avoiding(now).has("v3") === false) {
        const change = health.record("v3", (i + 1) % v3FailsEvery !== 0, now);
        if (change.kind === "ejected") ejections.push({ at: i, backend: "v3" });
      }
      const change = health.record("v1", v1FailsEvery === 0 || (i + 1) % v1FailsEvery !== 0, now);
      if (change.kind === "ejected") ejections.push({ at: i, backend: "v1" });
    }
    return ejections;
  }

  it("ejects a backend failing a third of its requests next to a healthy one, though it never fails five in a row", () => {
    const health = new ServiceHealth();
    const ejections = run(health, 40, 3);
    expect(ejections[0]).toEqual({ at: 20, backend: "v3" });
    expect(ejections.every((e) => e.backend === "v3")).toBe(true);
    expect(health.avoiding(1_000 + 40 * 10).has("v3")).toBe(true);
  });

  it("does not eject backends that fail alike (a shared dependency down): moving traffic would not help", () => {
    const health = new ServiceHealth();
    expect(run(health, 40, 3, 3)).toEqual([]);
  });

  it("lets an ejected backend back after the ejection, and forgets backends a new config removed", () => {
    const health = new ServiceHealth();
    run(health, 40, 3);
    expect(health.avoiding(1_000 + 400 + DEFAULT_OUTLIER.baseEjectionMs + 10).has("v3")).toBe(false);
    run(health, 40, 3);
    health.reconfigure(new Map([["v1", { healthCheck: undefined }]]));
    expect(health.avoiding(2_000).size).toBe(0);
  });
});
