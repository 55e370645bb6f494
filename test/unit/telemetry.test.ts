import { otlpBody, type FinishedSpan } from "../../workers/proxy/otlp.ts";
import { describe, expect, it } from "vitest";
import { mulberry32 } from "./prng.ts";
import {
  addBuckets,
  bucketOf,
  BUCKETS,
  golden,
  goldenBy,
  LATENCY_BOUNDS_MS,
  prometheusText,
  quantileMs,
  rateLimitedCount,
  serviceGraph,
  serviceMetrics,
  SLOT_SECONDS,
  windowSlots,
  type SeriesKey,
  type SeriesStats,
  type SlotSeries,
} from "../../shared/metrics.ts";
import { formatTraceparent, parseTraceparent, randomHex, validTracestate } from "../../shared/trace-context.ts";
import { accessHeaders, isSecretName, redactPath, redactValue, REDACTED } from "../../shared/redact.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** Bucket counts of `latencies`, recorded the way a proxy records them. */
function histogram(latencies: readonly number[]): number[] {
  const buckets = new Array<number>(BUCKETS).fill(0);
  for (const ms of latencies) {
    const i = bucketOf(ms);
    buckets[i] = (buckets[i] ?? 0) + 1;
  }
  return buckets;
}

/** Buckets with `n` samples in bucket `index` and none elsewhere. */
function only(index: number, n: number): number[] {
  const buckets = new Array<number>(BUCKETS).fill(0);
  buckets[index] = n;
  return buckets;
}

/** A series of `latencies` (one request each) with `attempts` (defaults to one per request). */
function series(key: Partial<SeriesKey>, latencies: readonly number[], attempts?: number): SeriesStats {
  return {
    route: key.route ?? "r",
    backend: key.backend ?? "b",
    caller: key.caller ?? "c",
    code: key.code ?? 200,
    count: latencies.length,
    attempts: attempts ?? latencies.length,
    sumMs: latencies.reduce((sum, ms) => sum + ms, 0),
    buckets: histogram(latencies),
  };
}

/** A series of `count` requests, all taking `ms`. */
function uniform(key: Partial<SeriesKey>, count: number, ms = 3, attempts?: number): SeriesStats {
  return series(key, new Array<number>(count).fill(ms), attempts);
}

function inSlot(slot: number, s: SeriesStats): SlotSeries {
  return { ...s, slot };
}

/** Random latencies spread log-uniformly over ~0.1 ms .. 30 s, so every bucket (+Inf too) gets some. */
function randomLatencies(random: () => number, n: number): number[] {
  return Array.from({ length: n }, () => Math.round(Math.exp(Math.log(0.1) + random() * (Math.log(30_000) - Math.log(0.1))) * 100) / 100);
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);
const iso = (slot: number): string => new Date(slot * SLOT_SECONDS * 1000).toISOString();

// ---------------------------------------------------------------------------------------------
// Histograms

describe("bucketOf", () => {
  it("has one bucket per bound plus +Inf, bounds strictly increasing", () => {
    expect(BUCKETS).toBe(LATENCY_BOUNDS_MS.length + 1);
    for (let i = 1; i < LATENCY_BOUNDS_MS.length; i++) {
      expect(LATENCY_BOUNDS_MS[i] ?? 0).toBeGreaterThan(LATENCY_BOUNDS_MS[i - 1] ?? Infinity);
    }
  });

  it("puts 0 ms (and sub-millisecond latencies) into bucket 0", () => {
    expect(bucketOf(0)).toBe(0);
    expect(bucketOf(0.3)).toBe(0);
  });

  it("puts a latency exactly on a bound into that bound's bucket, and just above it into the next", () => {
    LATENCY_BOUNDS_MS.forEach((bound, i) => {
      expect(bucketOf(bound)).toBe(i);
      expect(bucketOf(bound + 0.001)).toBe(i + 1);
    });
    expect(bucketOf(1)).toBe(0);
    expect(bucketOf(1.5)).toBe(1);
    expect(bucketOf(10)).toBe(3);
    expect(bucketOf(10.01)).toBe(4);
  });

  it("puts everything above the last bound into +Inf (index BUCKETS-1)", () => {
    expect(bucketOf(10_000.5)).toBe(BUCKETS - 1);
    expect(bucketOf(60_000)).toBe(BUCKETS - 1);
    expect(bucketOf(Number.POSITIVE_INFINITY)).toBe(BUCKETS - 1);
  });

  it("records every random latency into the bucket whose bounds contain it; counts add up", () => {
    const random = mulberry32(7);
    const latencies = randomLatencies(random, 2000);
    for (const ms of latencies) {
      const i = bucketOf(ms);
      const lower = i === 0 ? -Infinity : (LATENCY_BOUNDS_MS[i - 1] ?? Infinity);
      const upper = LATENCY_BOUNDS_MS[i] ?? Infinity;
      expect(ms).toBeGreaterThan(lower);
      expect(ms).toBeLessThanOrEqual(upper);
    }
    const buckets = histogram(latencies);
    expect(sum(buckets)).toBe(latencies.length);
    expect(buckets[BUCKETS - 1]).toBe(latencies.filter((ms) => ms > 10_000).length);
  });
});

describe("quantileMs", () => {
  it("is null without data", () => {
    expect(quantileMs([], 0.5)).toBeNull();
    expect(quantileMs(new Array<number>(BUCKETS).fill(0), 0.99)).toBeNull();
  });

  it("interpolates linearly inside the bucket (5,10]", () => {
    const buckets = only(3, 10);
    // rank = q·10; value = 5 + 5·rank/10
    expect(quantileMs(buckets, 0.5)).toBe(7.5);
    expect(quantileMs(buckets, 0.9)).toBe(9.5);
    expect(quantileMs(buckets, 0.1)).toBe(5.5);
    expect(quantileMs(buckets, 1)).toBe(10);
  });

  it("starts the first bucket at 0", () => {
    expect(quantileMs(only(0, 4), 0.5)).toBe(0.5);
    expect(quantileMs(only(0, 4), 0.25)).toBe(0.25);
  });

  it("finds the right bucket in a mixed distribution and skips empty buckets", () => {
    // 4 in (0,1], 4 in (2,5], 2 in (10,25]
    const buckets = new Array<number>(BUCKETS).fill(0);
    buckets[0] = 4;
    buckets[2] = 4;
    buckets[4] = 2;
    expect(quantileMs(buckets, 0.2)).toBe(0.5); // rank 2 of 4 in (0,1]
    expect(quantileMs(buckets, 0.4)).toBe(1); // rank 4: the top of bucket 0, not the empty (1,2]
    expect(quantileMs(buckets, 0.5)).toBe(2.75); // rank 5: 1 of 4 into (2,5]
    expect(quantileMs(buckets, 0.9)).toBe(17.5); // rank 9: 1 of 2 into (10,25]
    expect(quantileMs(buckets, 1)).toBe(25);
  });

  it("answers with the last finite bound when the quantile falls into +Inf", () => {
    const last = LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1];
    expect(quantileMs(only(BUCKETS - 1, 3), 0.5)).toBe(last);
    const buckets = only(BUCKETS - 1, 9);
    buckets[0] = 1;
    expect(quantileMs(buckets, 0.05)).toBe(0.5);
    expect(quantileMs(buckets, 0.5)).toBe(last);
    expect(quantileMs(buckets, 0.99)).toBe(last);
  });

  it("matches a histogram built from the samples (p50 of 1..100 ms)", () => {
    const latencies = Array.from({ length: 100 }, (_, i) => i + 1);
    // buckets: (0,1]:1 (1,2]:1 (2,5]:3 (5,10]:5 (10,25]:15 (25,50]:25 (50,100]:50
    // p50: rank 50, 25 seen before (25,50] → 25 + 25·25/25 = 50; p95: rank 95, 50 seen → 50 + 50·45/50 = 95
    const buckets = histogram(latencies);
    expect(quantileMs(buckets, 0.5)).toBe(50);
    expect(quantileMs(buckets, 0.95)).toBe(95);
    expect(quantileMs(buckets, 0.3)).toBe(30);
  });

  it("is monotonic in q and lands in the bucket of the true quantile (random latencies)", () => {
    const random = mulberry32(2026);
    for (let run = 0; run < 50; run++) {
      const latencies = randomLatencies(random, 1 + Math.floor(random() * 400));
      const buckets = histogram(latencies);
      expect(sum(buckets)).toBe(latencies.length);
      let previous = -Infinity;
      for (let q = 0.01; q <= 1; q += 0.01) {
        const value = quantileMs(buckets, q);
        expect(value).not.toBeNull();
        expect(value ?? -Infinity).toBeGreaterThanOrEqual(previous);
        previous = value ?? previous;
      }
      const sorted = [...latencies].sort((a, b) => a - b);
      for (const q of [0.5, 0.9, 0.95, 0.99]) {
        const k = Math.ceil(q * sorted.length); // the true q-quantile is the k-th smallest sample
        const truth = sorted[k - 1] ?? NaN;
        const b = bucketOf(truth);
        const estimate = quantileMs(buckets, q) ?? NaN;
        const upper = LATENCY_BOUNDS_MS[b];
        if (upper === undefined) {
          expect(estimate).toBe(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]);
        } else {
          expect(estimate).toBeGreaterThanOrEqual(b === 0 ? 0 : (LATENCY_BOUNDS_MS[b - 1] ?? 0));
          expect(estimate).toBeLessThanOrEqual(upper);
        }
      }
    }
  });

  it("gives the same answers for series merged with addBuckets as for all samples recorded into one", () => {
    const random = mulberry32(99);
    for (let run = 0; run < 30; run++) {
      const latencies = randomLatencies(random, 50 + Math.floor(random() * 200));
      const parts: number[][] = [[], [], []];
      for (const ms of latencies) parts[Math.floor(random() * parts.length)]?.push(ms);
      const merged = new Array<number>(BUCKETS).fill(0);
      for (const part of parts) addBuckets(merged, histogram(part));
      expect(merged).toEqual(histogram(latencies));
      for (const q of [0.5, 0.95, 0.99]) expect(quantileMs(merged, q)).toBe(quantileMs(histogram(latencies), q));
      const asSeries = parts.map((part, i) => series({ code: 200 + i }, part));
      const whole = golden([series({}, latencies)], 60);
      const split = golden(asSeries, 60);
      expect([split.requests, split.p50Ms, split.p95Ms, split.p99Ms]).toEqual([whole.requests, whole.p50Ms, whole.p95Ms, whole.p99Ms]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Golden signals

describe("golden", () => {
  const mixed = [
    uniform({ code: 200 }, 6, 3, 7),
    uniform({ code: 404 }, 2, 3, 2),
    uniform({ code: 503 }, 2, 3, 4),
    uniform({ code: 302 }, 1, 3, 1),
    uniform({ code: 101 }, 1, 3, 1),
  ];

  it("counts requests and status classes", () => {
    const g = golden(mixed, 60);
    expect(g.requests).toBe(12);
    expect(g.statusClasses).toEqual({ "1xx": 1, "2xx": 6, "3xx": 1, "4xx": 2, "5xx": 2 });
  });

  it("counts only 5xx as failures in the success rate (4xx are not)", () => {
    expect(golden(mixed, 60).successRate).toBe(0.83333); // 10 of 12
    expect(golden([uniform({ code: 429 }, 3), uniform({ code: 404 }, 5)], 60).successRate).toBe(1);
    expect(golden([uniform({ code: 500 }, 1), uniform({ code: 502 }, 3)], 60).successRate).toBe(0);
    expect(golden([uniform({ code: 200 }, 3), uniform({ code: 500 }, 1)], 60).successRate).toBe(0.75);
  });

  it("counts retries as attempts − requests, never negative", () => {
    expect(golden(mixed, 60).retries).toBe(3); // 15 attempts for 12 requests
    expect(golden([uniform({}, 5, 3, 5)], 60).retries).toBe(0);
    expect(golden([uniform({}, 5, 3, 2)], 60).retries).toBe(0);
  });

  it("computes rps as requests / seconds (rounded to 3 decimals)", () => {
    expect(golden(mixed, 60).rps).toBe(0.2);
    expect(golden([uniform({}, 1)], 30).rps).toBe(0.033);
    expect(golden([uniform({}, 50)], 10).rps).toBe(5);
    // A zero-length window does not divide by zero.
    expect(golden([uniform({}, 4)], 0).rps).toBe(4);
  });

  it("has latency quantiles of all series together", () => {
    const g = golden([uniform({ code: 200 }, 5, 7), uniform({ code: 500 }, 5, 7)], 60);
    expect(g.p50Ms).toBe(7.5);
    expect(g.p99Ms).toBe(9.95);
  });

  it("summarizes an empty set as zero requests with null rates and latencies", () => {
    expect(golden([], 60)).toEqual({
      requests: 0,
      rps: 0,
      successRate: null,
      p50Ms: null,
      p95Ms: null,
      p99Ms: null,
      statusClasses: { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0 },
      retries: 0,
    });
  });
});

describe("goldenBy", () => {
  const rows = [
    uniform({ backend: "v1", route: "list", code: 200 }, 3),
    uniform({ backend: "v2", route: "list", code: 200 }, 10),
    uniform({ backend: "v1", route: "get", code: 500 }, 2),
    uniform({ backend: "v3", route: "get", code: 200 }, 7),
  ];

  it("groups by the label and sorts groups by requests, busiest first", () => {
    const byBackend = goldenBy(rows, "backend", 60);
    expect(byBackend.map((g) => [g.backend, g.requests])).toEqual([
      ["v2", 10],
      ["v3", 7],
      ["v1", 5],
    ]);
    expect(byBackend.find((g) => g.backend === "v1")?.successRate).toBe(0.6);
    expect(sum(byBackend.map((g) => g.requests))).toBe(golden(rows, 60).requests);
  });

  it("groups by route", () => {
    const byRoute = goldenBy(rows, "route", 10);
    expect(byRoute.map((g) => [g.route, g.requests, g.rps])).toEqual([
      ["list", 13, 1.3],
      ["get", 9, 0.9],
    ]);
  });

  it("returns no groups for no series", () => {
    expect(goldenBy([], "caller", 60)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// /admin/metrics

describe("windowSlots", () => {
  const now = 1_000_005_000; // in slot 100000 (whose start is 1_000_000_000 ms)

  it("covers whole slots ending with the current one", () => {
    expect(windowSlots(60, now)).toEqual({ fromSlot: 99_995, toSlot: 100_000 });
    expect(windowSlots(10, now)).toEqual({ fromSlot: 100_000, toSlot: 100_000 });
    expect(windowSlots(3600, now)).toEqual({ fromSlot: 100_000 - 359, toSlot: 100_000 });
  });

  it("rounds partial slots up and never covers less than one slot", () => {
    expect(windowSlots(15, now)).toEqual({ fromSlot: 99_999, toSlot: 100_000 });
    expect(windowSlots(0, now)).toEqual({ fromSlot: 100_000, toSlot: 100_000 });
  });

  it("starts a new slot exactly on its boundary", () => {
    expect(windowSlots(10, 1_000_000_000).toSlot).toBe(100_000);
    expect(windowSlots(10, 999_999_999).toSlot).toBe(99_999);
  });
});

describe("rateLimitedCount", () => {
  it("counts only the proxy's own 429s (backend \"\"), not a backend's 429", () => {
    expect(
      rateLimitedCount([
        uniform({ backend: "", code: 429 }, 3),
        uniform({ backend: "v1", code: 429 }, 5),
        uniform({ backend: "", code: 503 }, 2),
        uniform({ backend: "", code: 429, route: "other" }, 4),
      ]),
    ).toBe(7);
    expect(rateLimitedCount([])).toBe(0);
  });
});

describe("serviceMetrics", () => {
  const fromSlot = 100;
  const toSlot = 105;
  const rows: SlotSeries[] = [
    inSlot(100, uniform({ backend: "v1", route: "list", caller: "storefront", code: 200 }, 4, 7)),
    inSlot(100, uniform({ backend: "v1", route: "list", caller: "storefront", code: 500 }, 1, 7)),
    inSlot(102, uniform({ backend: "", route: "list", caller: "internet", code: 429 }, 3)),
    inSlot(102, uniform({ backend: "v2", route: "get", caller: "internet", code: 429 }, 5)),
    inSlot(105, uniform({ backend: "v2", route: "get", caller: "storefront", code: 200 }, 6, 7, 8)),
  ];
  const m = serviceMetrics("pim", rows, 2, fromSlot, toSlot);

  it("describes the window", () => {
    expect(m.service).toBe("pim");
    expect(m.windowSeconds).toBe(60);
    expect(m.from).toBe(iso(100));
    expect(m.to).toBe(iso(106));
    expect(Date.parse(m.to) - Date.parse(m.from)).toBe(m.windowSeconds * 1000);
  });

  it("has one timeline point per slot of the window, in order, empty slots included", () => {
    expect(m.timeline.map((p) => p.at)).toEqual([100, 101, 102, 103, 104, 105].map(iso));
    expect(m.timeline.map((p) => p.requests)).toEqual([5, 0, 8, 0, 0, 6]);
    expect(m.timeline.map((p) => p.errors)).toEqual([1, 0, 0, 0, 0, 0]);
    expect(m.timeline[1]).toMatchObject({ p50Ms: null, p99Ms: null });
    expect(m.timeline[0]?.p50Ms).toBe(7.5);
  });

  it("totals equal the sum of the rows (and of the timeline)", () => {
    expect(m.total.requests).toBe(sum(rows.map((r) => r.count)));
    expect(m.total.requests).toBe(sum(m.timeline.map((p) => p.requests)));
    expect(m.total.statusClasses["5xx"]).toBe(sum(m.timeline.map((p) => p.errors)));
    expect(m.total.rps).toBe(0.317); // 19 requests / 60 s
    expect(m.total.retries).toBe(2);
    expect(m.total.ejections).toBe(2);
  });

  it("counts only refusals by the proxy as rate limited (a backend's own 429 is not)", () => {
    expect(m.total.rateLimited).toBe(3);
    expect(m.total.statusClasses["4xx"]).toBe(8);
  });

  it("lists backends without the proxy's own answers (backend \"\"), but routes and callers with them", () => {
    expect(m.backends.map((b) => [b.backend, b.requests])).toEqual([
      ["v2", 11],
      ["v1", 5],
    ]);
    expect(m.routes.map((r) => [r.route, r.requests])).toEqual([
      ["get", 11],
      ["list", 8],
    ]);
    expect(m.callers.map((c) => [c.caller, c.requests])).toEqual([
      ["storefront", 11],
      ["internet", 8],
    ]);
  });

  it("divides by the seconds that have passed when the window ends in the current slot", () => {
    // 1 s into slot 105: the window covers 51 s so far, not 60.
    const now = 105 * 10_000 + 1_000;
    const live = serviceMetrics("pim", rows, 2, fromSlot, toSlot, now);
    expect(live.total.rps).toBe(Number((19 / 51).toFixed(3)));
    expect(live.windowSeconds).toBe(60);
  });

  it("serves an empty window as zeros over all slots", () => {
    const empty = serviceMetrics("cart", [], 0, 10, 12);
    expect(empty.timeline).toHaveLength(3);
    expect(empty.total).toMatchObject({ requests: 0, successRate: null, rateLimited: 0, ejections: 0 });
    expect(empty.backends).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// /admin/graph

describe("serviceGraph", () => {
  const services = [
    {
      name: "cart",
      externalBackends: new Set(["stripe"]),
      series: [
        uniform({ caller: "storefront", backend: "stripe", code: 200 }, 3),
        uniform({ caller: "storefront", backend: "stripe", code: 502 }, 1),
        uniform({ caller: "storefront", backend: "cart-v1", code: 200 }, 1),
      ],
    },
    {
      name: "storefront",
      externalBackends: new Set<string>(),
      series: [uniform({ caller: "internet", backend: "sf-v1", code: 200 }, 10)],
    },
    { name: "orders", externalBackends: new Set(["paypal"]), series: [] },
  ];
  const graph = serviceGraph(services, 10);
  const nodeOf = (id: string) => graph.nodes.find((n) => n.id === id);
  const edgeOf = (source: string, target: string) => graph.edges.find((e) => e.source === source && e.target === target);

  it("has an edge caller → service for each caller label", () => {
    expect(edgeOf("internet", "storefront")).toMatchObject({ requests: 10, rps: 1, successRate: 1 });
    expect(edgeOf("storefront", "cart")).toMatchObject({ requests: 5, rps: 0.5, successRate: 0.8 });
  });

  it("has service → backend edges only for external backends", () => {
    expect(edgeOf("cart", "stripe")).toMatchObject({ requests: 4, successRate: 0.75 });
    expect(edgeOf("cart", "cart-v1")).toBeUndefined();
    expect(edgeOf("storefront", "sf-v1")).toBeUndefined();
    expect(graph.edges).toHaveLength(3);
  });

  it("gives nodes their kinds: internet, external, service", () => {
    expect(nodeOf("internet")?.kind).toBe("internet");
    expect(nodeOf("stripe")?.kind).toBe("external");
    expect(nodeOf("cart")?.kind).toBe("service");
    expect(nodeOf("storefront")?.kind).toBe("service");
    expect(nodeOf("cart-v1")).toBeUndefined();
  });

  it("keeps services without traffic as nodes, and every node once", () => {
    expect(nodeOf("orders")).toEqual({ id: "orders", kind: "service", rps: 0, successRate: null });
    expect(nodeOf("paypal")).toBeUndefined();
    const ids = graph.nodes.map((n) => n.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(["cart", "internet", "orders", "storefront", "stripe"]);
  });

  it("gives a service seen first as a caller its own traffic once its series are read", () => {
    // storefront appears as cart's caller before its own entry
    expect(nodeOf("storefront")).toEqual({ id: "storefront", kind: "service", rps: 1, successRate: 1 });
    expect(nodeOf("cart")).toMatchObject({ rps: 0.5, successRate: 0.8 });
    expect(graph.windowSeconds).toBe(10);
  });
});

// ---------------------------------------------------------------------------------------------
// Prometheus

describe("prometheusText", () => {
  const LE = ["0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
  const labels = 'service="pim",route="r",backend="b",caller="c"';
  const ok = series({ code: 200 }, [0.5, 3, 7, 12_000], 6);
  const failed = series({ code: 500 }, [40]);
  const refused = series({ backend: "", code: 429 }, [0.2, 0.2]);
  const text = prometheusText([
    { service: "pim", series: [ok, failed, refused], ejections: 3, ejectedBackends: { b: 2, "b-v3": 1 } },
    { service: "cart", series: [uniform({}, 1)], ejections: 0 },
  ]);
  const lines = text.split("\n");

  /** The value of the sample line starting with `prefix` followed by a space. */
  const sample = (prefix: string): number | undefined => {
    const line = lines.find((l) => l.startsWith(`${prefix} `));
    return line === undefined ? undefined : Number(line.slice(prefix.length + 1));
  };

  it("declares every family with HELP and TYPE", () => {
    for (const [name, type] of [
      ["weft_requests_total", "counter"],
      ["weft_request_duration_seconds", "histogram"],
      ["weft_retries_total", "counter"],
      ["weft_rate_limited_total", "counter"],
      ["weft_ejections_total", "counter"],
    ] as const) {
      expect(lines.filter((l) => l.startsWith(`# HELP ${name} `))).toHaveLength(1);
      expect(lines).toContain(`# TYPE ${name} ${type}`);
    }
    expect(text.endsWith("\n")).toBe(true);
  });

  it("groups each family's samples after its TYPE line (all services together)", () => {
    const familyOf = (line: string): string => {
      const name = line.startsWith("# ") ? (line.split(" ")[2] ?? "") : (/^[a-z_]+/.exec(line)?.[0] ?? "");
      return name.replace(/_(bucket|sum|count)$/, "");
    };
    const order = lines.filter((l) => l !== "").map(familyOf);
    const runs = order.filter((name, i) => name !== order[i - 1]);
    expect(runs).toEqual(["weft_requests_total", "weft_request_duration_seconds", "weft_retries_total", "weft_rate_limited_total", "weft_ejections_total"]);
  });

  it("writes every sample line as name{labels} value", () => {
    for (const line of lines.filter((l) => l !== "" && !l.startsWith("#"))) {
      expect(line).toMatch(/^[a-z_]+\{([a-z]+="[^"]*",)*[a-z]+="[^"]*"\} \d+(\.\d+)?$/);
    }
  });

  it("counts requests per series with all labels", () => {
    expect(lines).toContain(`weft_requests_total{${labels},code="200"} 4`);
    expect(lines).toContain(`weft_requests_total{${labels},code="500"} 1`);
    expect(lines).toContain('weft_requests_total{service="pim",route="r",backend="",caller="c",code="429"} 2');
    expect(lines).toContain('weft_requests_total{service="cart",route="r",backend="b",caller="c",code="200"} 1');
  });

  it("writes cumulative buckets with le in seconds, merging the codes of one (route, backend, caller)", () => {
    const bucketLines = lines.filter((l) => l.startsWith(`weft_request_duration_seconds_bucket{${labels},`));
    expect(bucketLines.map((l) => /le="([^"]+)"/.exec(l)?.[1])).toEqual(LE);
    // 0.5 → (0,1]; 3 → (2,5]; 7 → (5,10]; 40 (the 500) → (25,50]; 12000 → +Inf
    expect(bucketLines.map((l) => Number(l.split(" ")[1]))).toEqual([1, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5]);
    expect(lines.filter((l) => l.startsWith(`weft_request_duration_seconds_count{${labels}}`))).toHaveLength(1);
  });

  it("has _count equal to the +Inf bucket and _sum in seconds", () => {
    expect(sample(`weft_request_duration_seconds_count{${labels}}`)).toBe(5);
    expect(sample(`weft_request_duration_seconds_bucket{${labels},le="+Inf"}`)).toBe(5);
    expect(sample(`weft_request_duration_seconds_sum{${labels}}`)).toBe(12.0505);
    expect(sample('weft_request_duration_seconds_count{service="pim",route="r",backend="",caller="c"}')).toBe(2);
    expect(sample('weft_request_duration_seconds_sum{service="pim",route="r",backend="",caller="c"}')).toBe(0.0004);
  });

  it("exports retries per real backend, the proxy's rate-limit refusals and ejections", () => {
    expect(sample('weft_retries_total{service="pim",backend="b"}')).toBe(2);
    expect(lines.some((l) => l.startsWith('weft_retries_total{service="pim",backend=""}'))).toBe(false);
    expect(sample('weft_rate_limited_total{service="pim"}')).toBe(2);
    expect(sample('weft_rate_limited_total{service="cart"}')).toBe(0);
    expect(sample('weft_ejections_total{service="pim",backend="b"}')).toBe(2);
    expect(sample('weft_ejections_total{service="pim",backend="b-v3"}')).toBe(1);
    expect(lines.some((l) => l.startsWith('weft_ejections_total{service="cart"'))).toBe(false);
  });

  it('escapes ", \\ and newlines in label values', () => {
    const odd = prometheusText([{ service: "pim", series: [series({ route: 'a"b\\c\nd', caller: "x\\" }, [1])], ejections: 0 }]);
    expect(odd).toContain('weft_requests_total{service="pim",route="a\\"b\\\\c\\nd",backend="b",caller="x\\\\",code="200"} 1');
    // no raw newline inside a sample: every line is a comment or starts with a metric name
    for (const line of odd.split("\n").filter((l) => l !== "")) expect(line).toMatch(/^(# |weft_)/);
  });

  it("exports only the family headers when there are no services", () => {
    const empty = prometheusText([]).split("\n").filter((l) => l !== "");
    expect(empty).toHaveLength(10);
    expect(empty.every((l) => l.startsWith("# "))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// W3C trace context

describe("parseTraceparent", () => {
  const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
  const SPAN = "00f067aa0ba902b7";
  const valid = `00-${TRACE}-${SPAN}-01`;

  it("parses the spec's example", () => {
    expect(valid).toHaveLength(55);
    expect(parseTraceparent(valid)).toEqual({ traceId: TRACE, parentId: SPAN, sampled: true });
  });

  it.each([
    ["00", false],
    ["01", true],
    ["02", false],
    ["03", true],
    ["ff", true],
  ])("reads the sampled bit of flags %s as %s", (flags, sampled) => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-${flags}`)?.sampled).toBe(sampled);
  });

  it.each([
    ["null", null],
    ["undefined", undefined],
    ["empty", ""],
    ["too short", valid.slice(0, 54)],
    ["version 00 longer than 55", `${valid}-`],
    ["version 00 with extra fields", `${valid}-abcd`],
    ["version ff", `ff-${TRACE}-${SPAN}-01`],
    ["non-hex version", `0g-${TRACE}-${SPAN}-01`],
    ["uppercase version", `0A-${TRACE}-${SPAN}-01`],
    ["uppercase trace-id", `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ["uppercase parent-id", `00-${TRACE}-${SPAN.toUpperCase()}-01`],
    ["uppercase flags", `00-${TRACE}-${SPAN}-0A`],
    ["non-hex trace-id", `00-${TRACE.slice(0, 31)}g-${SPAN}-01`],
    ["non-hex flags", `00-${TRACE}-${SPAN}-0x`],
    ["all-zero trace-id", `00-${"0".repeat(32)}-${SPAN}-01`],
    ["all-zero parent-id", `00-${TRACE}-${"0".repeat(16)}-01`],
    ["wrong separators", `00_${TRACE}_${SPAN}_01`],
    ["trace-id one short", `00-${TRACE.slice(1)}-${SPAN}-01x`],
    ["future version without a dash after the flags", `cc-${TRACE}-${SPAN}-01x`],
    ["future version too short", `cc-${TRACE}-${SPAN}-0`],
  ])("rejects %s", (_name, header) => {
    expect(parseTraceparent(header)).toBeUndefined();
  });

  it("accepts future versions of 55 characters or longer with a dash after the flags", () => {
    const expected = { traceId: TRACE, parentId: SPAN, sampled: true };
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01`)).toEqual(expected);
    expect(parseTraceparent(`cc-${TRACE}-${SPAN}-01-what-the-future-will-be-like`)).toEqual(expected);
    expect(parseTraceparent(`fe-${TRACE}-${SPAN}-00-x`)).toEqual({ ...expected, sampled: false });
  });

  it("ignores surrounding whitespace", () => {
    expect(parseTraceparent(` ${valid}\t`)?.traceId).toBe(TRACE);
  });
});

describe("formatTraceparent and randomHex", () => {
  it("formats a version 00 header that parses back to the same ids and sampling", () => {
    for (const sampled of [true, false]) {
      const traceId = randomHex(16);
      const spanId = randomHex(8);
      const header = formatTraceparent(traceId, spanId, sampled);
      expect(header).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
      expect(parseTraceparent(header)).toEqual({ traceId, parentId: spanId, sampled });
    }
    expect(formatTraceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true)).toBe("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  });

  it("makes lowercase hex of twice the byte count, never all zeros, and different every time", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      for (const bytes of [1, 8, 16]) {
        const hex = randomHex(bytes);
        expect(hex).toHaveLength(bytes * 2);
        expect(hex).toMatch(/^[0-9a-f]+$/);
        expect(hex).not.toMatch(/^0+$/);
        if (bytes === 16) seen.add(hex);
      }
    }
    expect(seen.size).toBe(200);
  });

  it("eventually produces every hex digit in every position of a byte", () => {
    const high = new Set<string>();
    const low = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const hex = randomHex(1);
      high.add(hex[0] ?? "");
      low.add(hex[1] ?? "");
    }
    expect(high.size).toBe(16);
    expect(low.size).toBe(16);
  });
});

describe("validTracestate", () => {
  const members = (n: number): string => Array.from({ length: n }, (_, i) => `v${i}=x`).join(",");

  it("passes a tracestate within the limits on unchanged", () => {
    expect(validTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")).toBe("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    expect(validTracestate(members(32))).toBe(members(32));
  });

  it("drops a missing or empty tracestate", () => {
    expect(validTracestate(null)).toBeUndefined();
    expect(validTracestate("")).toBeUndefined();
  });

  it("drops more than 32 members", () => {
    expect(validTracestate(members(33))).toBeUndefined();
  });

  it("drops more than 512 characters, keeps exactly 512", () => {
    const at512 = `k=${"a".repeat(510)}`;
    expect(at512).toHaveLength(512);
    expect(validTracestate(at512)).toBe(at512);
    expect(validTracestate(`${at512}b`)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Redaction

describe("redact", () => {
  const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

  it.each([
    "token",
    "access_token",
    "TOKEN",
    "api_key",
    "api-key",
    "apikey",
    "password",
    "passwd",
    "session",
    "sessionId",
    "auth",
    "Authorization",
    "client_secret",
    "X-Amz-Signature",
    "credentials",
    "jwt",
    "sid",
    "jsessionid",
  ])("redacts the query parameter %s", (name) => {
    expect(redactPath(`/p?${name}=abc123&page=2`)).toBe(`/p?${name}=${REDACTED}&page=2`);
  });

  it("keeps harmless parameters, their order and the path", () => {
    const path = "/products/42?page=2&q=red+shoes&sort=price&lang=de&side=left";
    expect(redactPath(path)).toBe(path);
    expect(redactPath("/products/42")).toBe("/products/42");
    expect(redactPath("/search?q=shoes&flag")).toBe("/search?q=shoes&flag");
  });

  it("redacts secret parameters wherever they are and however many there are", () => {
    expect(redactPath("/cb?code=1&state=2&access_token=abc&refresh_token=def&x=3")).toBe(`/cb?code=1&state=2&access_token=${REDACTED}&refresh_token=${REDACTED}&x=3`);
    expect(redactPath("/login?password=")).toBe(`/login?password=${REDACTED}`);
  });

  it("recognises URL-encoded parameter names, keeping the name as sent", () => {
    expect(redactPath("/p?api%5Fkey=abc&a=1")).toBe(`/p?api%5Fkey=${REDACTED}&a=1`);
    expect(redactPath("/p?%74oken=abc")).toBe(`/p?%74oken=${REDACTED}`);
    expect(redactPath("/p?pass%77ord=hunter2")).toBe(`/p?pass%77ord=${REDACTED}`);
    // a malformed escape does not throw; the raw name is checked instead
    expect(redactPath("/p?%E0%A4%Atoken=abc")).toBe(`/p?%E0%A4%Atoken=${REDACTED}`);
    expect(redactPath("/p?%E0%A4%A=abc")).toBe("/p?%E0%A4%A=abc");
  });

  it("redacts JWT-looking values anywhere: path, harmless parameters, bare query items", () => {
    expect(redactPath(`/orders/${JWT}/items`)).toBe(`/orders/${REDACTED}/items`);
    expect(redactPath(`/p?next=${JWT}&page=1`)).toBe(`/p?next=${REDACTED}&page=1`);
    expect(redactPath(`/p?${JWT}`)).toBe(`/p?${REDACTED}`);
    expect(redactPath(`/p?return=%2Fa%3Fx%3D${JWT}`)).toBe(`/p?return=%2Fa%3Fx%3D${REDACTED}`);
  });

  it("redactValue replaces every embedded JWT and leaves other values alone", () => {
    expect(redactValue(`Bearer ${JWT}`)).toBe(`Bearer ${REDACTED}`);
    expect(redactValue(`${JWT} and ${JWT}`)).toBe(`${REDACTED} and ${REDACTED}`);
    expect(redactValue("Mozilla/5.0 (X11; Linux x86_64)")).toBe("Mozilla/5.0 (X11; Linux x86_64)");
    expect(redactValue("eyJ-but-not.a.jwt")).toBe("eyJ-but-not.a.jwt");
  });

  it("isSecretName knows credential headers and secret-looking names, case-insensitively", () => {
    for (const name of ["authorization", "Proxy-Authorization", "Cookie", "set-cookie", "x-weft-claims", "x-api-key", "x-auth-token", "X-Session"]) {
      expect(isSecretName(name)).toBe(true);
    }
    for (const name of ["content-type", "accept", "user-agent", "x-request-id", "page", "q"]) {
      expect(isSecretName(name)).toBe(false);
    }
  });

  it("accessHeaders keeps only its fixed list, never credentials, and redacts the referer's query", () => {
    const headers = new Headers({
      authorization: `Bearer ${JWT}`,
      "proxy-authorization": "Basic dXNlcjpwYXNz",
      cookie: "session=abc",
      "x-api-key": "k-123",
      "x-weft-claims": "{}",
      accept: "application/json",
      "user-agent": "curl/8.5.0",
      referer: "https://shop.example/checkout?session=abc&step=2",
      "x-forwarded-for": "203.0.113.7",
      "x-request-id": "req-1",
      "content-type": "application/json",
      "content-length": "17",
    });
    expect(accessHeaders(headers)).toEqual({
      "user-agent": "curl/8.5.0",
      referer: `https://shop.example/checkout?session=${REDACTED}&step=2`,
      "x-forwarded-for": "203.0.113.7",
      "x-request-id": "req-1",
      "content-type": "application/json",
      "content-length": "17",
    });
  });

  it("accessHeaders omits absent headers and scrubs JWTs from the ones it keeps", () => {
    const out = accessHeaders(new Headers({ "user-agent": `bot ${JWT}`, referer: `https://a.example/r/${JWT}`, authorization: "Basic x" }));
    expect(out).toEqual({ "user-agent": `bot ${REDACTED}`, referer: `https://a.example/r/${REDACTED}` });
    expect(accessHeaders(new Headers())).toEqual({});
  });
});

// ---------------------------------------------------------------------------------------------
// OTLP

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string; intValue?: string };
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: OtlpAttribute[];
  status: { code: number };
}

interface OtlpBody {
  resourceSpans: Array<{
    resource: { attributes: OtlpAttribute[] };
    scopeSpans: Array<{ scope: { name: string }; spans: OtlpSpan[] }>;
  }>;
}

describe("otlpBody", () => {
  const root: FinishedSpan = {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    parentId: undefined,
    name: "GET list",
    startMs: 1_700_000_000_123,
    endMs: 1_700_000_000_456,
    status: 200,
    attributes: { "http.request.method": "GET", "http.response.status_code": 200, "weft.attempts": 1 },
  };
  const child: FinishedSpan = { ...root, spanId: "b7ad6b7169203331", parentId: "00f067aa0ba902b7", name: "POST checkout", status: 503, attributes: {} };
  const notFound: FinishedSpan = { ...root, spanId: "0102030405060708", status: 404 };
  // Through JSON, as the exporter sends it.
  const body = JSON.parse(JSON.stringify(otlpBody("cart", [root, child, notFound]))) as OtlpBody;
  const spans = body.resourceSpans[0]?.scopeSpans[0]?.spans ?? [];

  it("names the service in the resource", () => {
    expect(body.resourceSpans).toHaveLength(1);
    const attributes = body.resourceSpans[0]?.resource.attributes ?? [];
    expect(attributes).toContainEqual({ key: "service.name", value: { stringValue: "cart" } });
    expect(body.resourceSpans[0]?.scopeSpans).toHaveLength(1);
  });

  it("keeps the spans, in order, with hex ids and parentSpanId only when there is a parent", () => {
    expect(spans.map((s) => s.spanId)).toEqual(["00f067aa0ba902b7", "b7ad6b7169203331", "0102030405060708"]);
    for (const s of spans) {
      expect(s.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(s.spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(s.kind).toBe(2);
    }
    expect("parentSpanId" in (spans[0] ?? {})).toBe(false);
    expect(spans[1]?.parentSpanId).toBe("00f067aa0ba902b7");
    expect(spans[1]?.name).toBe("POST checkout");
  });

  it("writes times as decimal strings of nanoseconds, exact beyond 2^53", () => {
    expect(spans[0]?.startTimeUnixNano).toBe("1700000000123000000");
    expect(spans[0]?.endTimeUnixNano).toBe("1700000000456000000");
    expect(BigInt(spans[0]?.endTimeUnixNano ?? "0") - BigInt(spans[0]?.startTimeUnixNano ?? "0")).toBe(333_000_000n);
  });

  it("writes strings as stringValue and numbers as intValue strings", () => {
    expect(spans[0]?.attributes).toEqual([
      { key: "http.request.method", value: { stringValue: "GET" } },
      { key: "http.response.status_code", value: { intValue: "200" } },
      { key: "weft.attempts", value: { intValue: "1" } },
    ]);
    expect(spans[1]?.attributes).toEqual([]);
  });

  it("marks 5xx as error (2) and everything else unset (0)", () => {
    expect(spans.map((s) => s.status.code)).toEqual([0, 2, 0]);
  });

  it("sends an empty span list for no spans", () => {
    const empty = otlpBody("cart", []) as OtlpBody;
    expect(empty.resourceSpans[0]?.scopeSpans[0]?.spans).toEqual([]);
  });
});
