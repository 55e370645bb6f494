/**
 * Progressive delivery: what a rollout is, how its traffic moves, and how a step is judged. These are
 * pure functions; the RolloutStore Durable Object runs them on its alarms and applies the weights.
 *
 * The judge looks at the candidate's own attempts (counted per attempt by the proxies, before
 * retries or failover), so resilience cannot hide a bad release. Too little traffic never passes a
 * step: the rollout waits, says so, and fails after a bounded time instead of stalling silently.
 */
import * as z from "zod";
import { Name, type Weights } from "./config.ts";
import { addBuckets, noAttempts, quantileMs, type AttemptStats } from "./metrics.ts";

/** Thresholds a step must meet, over the candidate's attempts during that step. */
export const RolloutAnalysis = z.strictObject({
  /** Largest share of failed attempts (5xx, connect errors, timeouts) the candidate may have. */
  maxErrorRate: z.number().min(0).max(1).default(0.01),
  /** Largest p99 attempt latency (ms) the candidate may have; no latency check when absent. */
  maxP99Ms: z.int().min(1).max(300_000).optional(),
  /** Attempts the candidate needs in a step before the step can pass. */
  minRequests: z.int().min(1).max(10_000_000).default(100),
  /**
   * Compared with the baseline in the same step: the largest amount the candidate's error rate may
   * exceed the baseline's by (0.005 = half a percentage point). Judged when both have `minRequests`.
   */
  maxErrorRateIncrease: z.number().min(0).max(1).optional(),
  /** Compared with the baseline in the same step: the largest ratio of candidate p99 to baseline p99 (1.5 = 50% slower). */
  maxP99Ratio: z.number().min(1).max(100).optional(),
  /** How long a step may wait for `minRequests` after its time is up before the rollout fails. */
  trafficTimeoutSeconds: z.int().min(1).max(86_400).default(600),
});
export type RolloutAnalysis = z.infer<typeof RolloutAnalysis>;

/** Synthetic requests the service's proxy sends to the candidate (GET only), for quiet hours. */
export const RolloutProbe = z.strictObject({
  path: z.string().regex(/^\/[^#\s]*$/, "an absolute path such as /products?limit=1"),
  requestsPerMinute: z.int().min(1).max(600).default(60),
});
export type RolloutProbe = z.infer<typeof RolloutProbe>;

/** Where rollout events are POSTed (e.g. a chat webhook), signed like every egress call. */
export const RolloutWebhook = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
});
export type RolloutWebhook = z.infer<typeof RolloutWebhook>;

/** Whether a webhook URL may be called, or why not. */
export type WebhookCheck = { ok: true } | { ok: false; reason: string };

/** Dotted-quad IPv4 → its four numbers, or null. WHATWG URL parsing already normalised 0x7f.1 and friends. */
function ipv4(host: string): [number, number, number, number] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const parts = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])] as const;
  return parts.every((p) => p <= 255) ? [...parts] : null;
}

/** Addresses no webhook may target: this host, private networks, link-local (cloud metadata), CGNAT, multicast. */
function ipv4Kind(a: number, b: number): "loopback" | "private" | "public" {
  if (a === 127) return "loopback";
  if (a === 0 || a === 10 || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31)) return "private";
  if ((a === 192 && b === 168) || (a === 198 && (b === 18 || b === 19)) || a >= 224) return "private";
  return "public";
}

function ipv6Kind(host: string): "loopback" | "private" | "public" {
  const h = host.toLowerCase();
  if (h === "::1") return "loopback";
  if (h === "::") return "private";
  const mapped = /^::ffff:(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/.exec(h);
  if (mapped) {
    if (mapped[1] !== undefined) {
      const v4 = ipv4(mapped[1]);
      return v4 ? ipv4Kind(v4[0], v4[1]) : "private";
    }
    const high = parseInt(mapped[2] ?? "0", 16);
    return ipv4Kind(high >> 8, high & 255);
  }
  const first = parseInt(h.split(":")[0] || "0", 16);
  // fc00::/7 unique local, fe80::/10 link-local, ff00::/8 multicast.
  if ((first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00) return "private";
  return "public";
}

/**
 * Whether the control plane may POST rollout events to `url`: https to a public host name or
 * address. Refused: plain http, `localhost` (and `*.localhost`), and IP literals in loopback,
 * private, link-local (169.254.0.0/16: cloud metadata), CGNAT, benchmarking and multicast ranges —
 * a webhook must never be a way into the network the control plane runs in. With
 * `allowLoopbackHttp` (WEFT_ENV=development only), http and https to loopback are accepted, as
 * Stripe's test mode accepts local endpoints.
 */
export function checkWebhookUrl(url: string, allowLoopbackHttp: boolean): WebhookCheck {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: "not a URL" };
  }
  if (parsed.username !== "" || parsed.password !== "") return { ok: false, reason: "a webhook URL must not carry credentials" };
  const host = parsed.hostname.toLowerCase().replace(/\.$/, "");
  const v4 = ipv4(host);
  const kind = host.startsWith("[")
    ? ipv6Kind(host.slice(1, -1))
    : v4
      ? ipv4Kind(v4[0], v4[1])
      : host === "localhost" || host.endsWith(".localhost")
        ? "loopback"
        : "public";
  if (kind === "loopback") {
    return allowLoopbackHttp && (parsed.protocol === "http:" || parsed.protocol === "https:")
      ? { ok: true }
      : { ok: false, reason: `'${host}' is this machine: loopback webhooks are accepted only with WEFT_ENV=development` };
  }
  if (kind === "private") return { ok: false, reason: `'${host}' is a private, link-local or reserved address; webhooks go to public hosts only` };
  if (parsed.protocol !== "https:") return { ok: false, reason: "a webhook must use https" };
  if (!host.startsWith("[") && !host.includes(".")) return { ok: false, reason: `'${host}' is not a public host name` };
  return { ok: true };
}

export const RolloutStrategy = z.enum(["canary", "blue-green"]);
export type RolloutStrategy = z.infer<typeof RolloutStrategy>;

/** The body of `POST /admin/services/{service}/rollouts`. */
export const RolloutRequest = z
  .strictObject({
    /** The candidate backend (it must be one of the service's backends). */
    backend: Name,
    strategy: RolloutStrategy.default("canary"),
    /** The route whose split moves; the service's default route when absent. */
    route: Name.optional(),
    /** Canary weights of the candidate, in %, strictly increasing; promotion sets 100 after the last. */
    steps: z.array(z.int().min(1).max(100)).min(1).max(20).optional(),
    /** How long each step lasts before it is judged. */
    stepSeconds: z.int().min(1).max(86_400).default(60),
    analysis: RolloutAnalysis.default(RolloutAnalysis.parse({})),
    probe: RolloutProbe.optional(),
    webhook: RolloutWebhook.optional(),
  })
  .superRefine((request, ctx) => {
    const steps = request.steps;
    if (request.strategy === "blue-green") {
      if (steps) ctx.addIssue({ code: "custom", path: ["steps"], message: "blue-green has no steps: all traffic switches at once" });
      if (!request.probe) {
        ctx.addIssue({
          code: "custom",
          path: ["probe"],
          message: "blue-green needs a probe: the candidate gets no traffic before the switch, so probe requests are what it is checked on",
        });
      }
    }
    if (steps) {
      for (let i = 1; i < steps.length; i++) {
        if ((steps[i] ?? 0) <= (steps[i - 1] ?? 0)) ctx.addIssue({ code: "custom", path: ["steps", i], message: "steps must be strictly increasing" });
      }
    }
  });
export type RolloutRequest = z.infer<typeof RolloutRequest>;

/** The canary steps used when a request names none (as Flagger's default stepWeights). */
export const DEFAULT_STEPS = [5, 25, 50, 100];

/** The candidate's weight at each step: blue-green is a check at 0% then the switch to 100%. */
export function stepsOf(request: Pick<RolloutRequest, "strategy" | "steps">): number[] {
  return request.strategy === "blue-green" ? [0, 100] : [...(request.steps ?? DEFAULT_STEPS)];
}

export const ROLLOUT_STATES = ["progressing", "paused", "waiting-for-traffic", "promoted", "rolled-back", "aborted"] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

/** True once a rollout can no longer change. */
export function isFinished(state: RolloutState): boolean {
  return state === "promoted" || state === "rolled-back" || state === "aborted";
}

/** `now` − `before` per backend: the attempts made since a snapshot of running totals. */
export function attemptsSince(now: Readonly<Record<string, AttemptStats>>, before: Readonly<Record<string, AttemptStats>>, backends: ReadonlyArray<string>): AttemptStats {
  const sum = noAttempts();
  for (const backend of backends) {
    const current = now[backend];
    if (!current) continue;
    const old = before[backend] ?? noAttempts();
    sum.count += current.count - old.count;
    sum.failures += current.failures - old.failures;
    addBuckets(sum.buckets, current.buckets.map((n, i) => n - (old.buckets[i] ?? 0)));
  }
  return sum;
}

/** What a step's numbers were: the candidate's attempts and the baseline's, side by side (and compared, when the analysis asks). */
export interface StepNumbers {
  requests: number;
  failures: number;
  errorRate: number | null;
  p99Ms: number | null;
}

function numbersOf(stats: AttemptStats): StepNumbers {
  return {
    requests: stats.count,
    failures: stats.failures,
    errorRate: stats.count === 0 ? null : Number((stats.failures / stats.count).toFixed(5)),
    p99Ms: quantileMs(stats.buckets, 0.99),
  };
}

/** The judgement of a step so far. */
export type Verdict =
  | { kind: "pass"; candidate: StepNumbers; baseline: StepNumbers }
  | { kind: "fail"; reason: string; candidate: StepNumbers; baseline: StepNumbers }
  | { kind: "insufficient"; reason: string; candidate: StepNumbers; baseline: StepNumbers };

/**
 * Judges the candidate's attempts in a step. Failures are counted against `max(requests,
 * minRequests)`, so a step fails as soon as its error budget is spent, without waiting for the
 * traffic that could not make it pass any more; latency is judged only with enough requests.
 */
export function judgeStep(candidate: AttemptStats, baseline: AttemptStats, analysis: RolloutAnalysis): Verdict {
  const c = numbersOf(candidate);
  const b = numbersOf(baseline);
  const budgetRate = candidate.failures / Math.max(candidate.count, analysis.minRequests);
  if (candidate.failures > 0 && budgetRate > analysis.maxErrorRate) {
    const rate = c.errorRate ?? 0;
    return {
      kind: "fail",
      reason: `error rate ${percent(rate)} (${candidate.failures} of ${candidate.count} attempts) is above the maximum ${percent(analysis.maxErrorRate)}` +
        (b.errorRate !== null ? `; baseline ${percent(b.errorRate)} of ${b.requests}` : ""),
      candidate: c,
      baseline: b,
    };
  }
  if (candidate.count < analysis.minRequests) {
    return { kind: "insufficient", reason: `${candidate.count} of the ${analysis.minRequests} requests needed`, candidate: c, baseline: b };
  }
  if (analysis.maxP99Ms !== undefined && c.p99Ms !== null && c.p99Ms > analysis.maxP99Ms) {
    return {
      kind: "fail",
      reason: `p99 latency ${c.p99Ms} ms is above the maximum ${analysis.maxP99Ms} ms` + (b.p99Ms !== null ? `; baseline p99 ${b.p99Ms} ms` : ""),
      candidate: c,
      baseline: b,
    };
  }
  // Against the baseline: only when it carried enough traffic in the same step to be a fair yardstick.
  if (baseline.count >= analysis.minRequests) {
    const increase = (c.errorRate ?? 0) - (b.errorRate ?? 0);
    if (analysis.maxErrorRateIncrease !== undefined && increase > analysis.maxErrorRateIncrease) {
      return {
        kind: "fail",
        reason: `error rate ${percent(c.errorRate ?? 0)} is ${percent(increase)} above the baseline's ${percent(b.errorRate ?? 0)} (at most +${percent(analysis.maxErrorRateIncrease)})`,
        candidate: c,
        baseline: b,
      };
    }
    if (analysis.maxP99Ratio !== undefined && c.p99Ms !== null && b.p99Ms !== null && b.p99Ms > 0 && c.p99Ms > b.p99Ms * analysis.maxP99Ratio) {
      return {
        kind: "fail",
        reason: `p99 latency ${c.p99Ms} ms is ${Number((c.p99Ms / b.p99Ms).toFixed(2))}× the baseline's ${b.p99Ms} ms (at most ${analysis.maxP99Ratio}×)`,
        candidate: c,
        baseline: b,
      };
    }
  }
  return { kind: "pass", candidate: c, baseline: b };
}

function percent(rate: number): string {
  return `${Number((rate * 100).toFixed(2))}%`;
}

/** Where a step stands, for the state machine. */
export interface StepClock {
  /** ms since the step's window began (pauses excluded). */
  elapsedMs: number;
  stepSeconds: number;
  trafficTimeoutSeconds: number;
  /** Index of the step (into the rollout's steps) and how many steps there are. */
  index: number;
  count: number;
}

/** What the state machine does next. */
export type Transition =
  | { kind: "wait"; state: "progressing" | "waiting-for-traffic"; dueInMs: number }
  | { kind: "advance"; index: number }
  | { kind: "promote" }
  | { kind: "rollback"; reason: string };

/**
 * The next move of a running step: fail at once on a failing verdict; before the step's time is up
 * keep going; after it, advance on a pass, or wait for traffic until the traffic timeout.
 */
export function nextTransition(verdict: Verdict, clock: StepClock): Transition {
  if (verdict.kind === "fail") return { kind: "rollback", reason: verdict.reason };
  const stepMs = clock.stepSeconds * 1000;
  if (clock.elapsedMs < stepMs) return { kind: "wait", state: "progressing", dueInMs: stepMs - clock.elapsedMs };
  if (verdict.kind === "pass") return clock.index + 1 < clock.count ? { kind: "advance", index: clock.index + 1 } : { kind: "promote" };
  const deadlineMs = stepMs + clock.trafficTimeoutSeconds * 1000;
  if (clock.elapsedMs >= deadlineMs) {
    return { kind: "rollback", reason: `not enough traffic: ${verdict.reason} after waiting ${clock.trafficTimeoutSeconds} s` };
  }
  return { kind: "wait", state: "waiting-for-traffic", dueInMs: deadlineMs - clock.elapsedMs };
}

/**
 * The split with the candidate at `weight`%: the other backends share the rest in proportion to
 * their weights when the rollout began (largest remainder, so the sum is exactly 100).
 */
export function stepWeights(initial: Readonly<Weights>, candidate: string, weight: number): Weights {
  const others = Object.entries(initial).filter(([name]) => name !== candidate);
  const base = others.reduce((sum, [, w]) => sum + w, 0);
  const rest = 100 - weight;
  const weights: Weights = {};
  if (base === 0) {
    // Nothing else had traffic: the first other backend takes the rest (the caller refuses this case).
    others.forEach(([name], i) => (weights[name] = i === 0 ? rest : 0));
  } else {
    const shares = others.map(([name, w]) => ({ name, exact: (w * rest) / base }));
    for (const s of shares) weights[s.name] = Math.floor(s.exact);
    let left = rest - shares.reduce((sum, s) => sum + Math.floor(s.exact), 0);
    for (const s of [...shares].sort((a, b) => b.exact - Math.floor(b.exact) - (a.exact - Math.floor(a.exact)))) {
      if (left <= 0) break;
      weights[s.name] = (weights[s.name] ?? 0) + 1;
      left--;
    }
  }
  weights[candidate] = weight;
  // Keep the operator's order of backends, so diffs of the config stay readable.
  const ordered: Weights = {};
  for (const name of Object.keys(initial)) ordered[name] = weights[name] ?? 0;
  if (!(candidate in ordered)) ordered[candidate] = weight;
  return ordered;
}

/** One entry of a rollout's timeline. */
export interface RolloutEvent {
  at: string;
  type: "started" | "step" | "waiting-for-traffic" | "traffic-arrived" | "paused" | "resumed" | "promoted" | "rolled-back" | "aborted";
  message: string;
  weight: number;
  /** 1-based step number. */
  step: number;
  candidate?: StepNumbers;
  baseline?: StepNumbers;
}

/** A rollout as `GET /admin/services/{service}/rollouts/current` shows it. */
export interface RolloutStatus {
  id: string;
  service: string;
  route: string;
  backend: string;
  /** Backends that had traffic when the rollout began. */
  baseline: string[];
  strategy: RolloutStrategy;
  state: RolloutState;
  /** The candidate's weight now, in %. */
  weight: number;
  /** 1-based number of the current step, of `steps.length`. */
  step: number;
  steps: number[];
  stepSeconds: number;
  analysis: RolloutAnalysis;
  probe: RolloutProbe | null;
  webhook: string | null;
  /** The split when the rollout began: where traffic goes back to on rollback or abort (candidate at 0%). */
  initialWeights: Weights;
  /** Why it ended, for rolled-back and aborted. */
  reason: string | null;
  /** The current step's numbers so far. */
  current: { candidate: StepNumbers; baseline: StepNumbers; verdict: Verdict["kind"]; detail: string | null } | null;
  createdAt: string;
  updatedAt: string;
  endedAt: string | null;
  /** Increases with every change; the ETag of the rollout. */
  revision: number;
  events: RolloutEvent[];
}
