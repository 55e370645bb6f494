/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against the running
 * mesh. Sign-in, the graph and service cards with live data, a split changed through the page (then
 * read back from the admin API), the live tap, and rollouts: followed, paused, resumed and promoted
 * in the page, and started from a card's form.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, setSplit, TOKEN, waitFor, type TestMesh } from "./harness.ts";
import type { RolloutStatus } from "../../shared/rollout.ts";

/** Debian's package; override with WEFT_CHROMIUM. */
const CHROMIUM = process.env.WEFT_CHROMIUM ?? "/usr/bin/chromium";

let t: TestMesh;
let browser: Browser;
let page: Page;
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install it (Debian: apt-get install chromium) or set WEFT_CHROMIUM to a Chromium binary`);
  }
  [t, browser] = await Promise.all([bootTestMesh(), chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] })]);
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  // CSP violations and script errors show up here; the page must have none.
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of (401|412|422)/.test(message.text())) problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(error.message));
  // Some traffic, so the graph and the cards have something to show.
  for (let i = 0; i < 20; i++) await fetch(`${t.shop}/products/sku-${(i % 5) + 1}`).then((r) => r.arrayBuffer());
});
afterAll(async () => {
  await browser?.close();
  await t?.dispose();
});

/** Shoppers browsing pim through the storefront until the returned function is called. */
function shopTraffic(concurrency = 4): () => Promise<void> {
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      await fetch(`${t.shop}/products/sku-1`).then((r) => r.arrayBuffer(), () => undefined);
    }
  });
  return async () => {
    running = false;
    await Promise.all(loops);
  };
}

async function rollout(): Promise<RolloutStatus> {
  const res = await t.adminFetch("/admin/services/pim/rollouts/current");
  expect(res.status).toBe(200);
  return (await res.json()) as RolloutStatus;
}

async function rolloutUntil(state: RolloutStatus["state"]): Promise<RolloutStatus> {
  let last: RolloutStatus | undefined;
  await waitFor(async () => (last = await rollout()).state === state, 5_000, 100);
  if (!last) throw new Error("no rollout");
  return last;
}

async function splitInputs(): Promise<Record<string, string>> {
  const pairs = await page.$$eval('.service-card[data-service="pim"] input[data-backend-number]', (inputs) =>
    inputs.map((i) => [i.getAttribute("data-backend-number") ?? "", (i as HTMLInputElement).value] as const),
  );
  return Object.fromEntries(pairs);
}

/** pim as the demo has it: no rollout running, all traffic on pim-v1. */
async function resetPim(): Promise<void> {
  const res = await t.adminFetch("/admin/services/pim/rollouts/current");
  if (res.status === 200 && !["promoted", "rolled-back", "aborted"].includes(((await res.json()) as RolloutStatus).state)) {
    await t.adminFetch("/admin/services/pim/rollouts/current/abort", { method: "POST" });
  } else if (res.status !== 200) {
    await res.arrayBuffer();
  }
  await setSplit(t, "pim", { "pim-v1": 100, "pim-v2": 0, "pim-v3": 0, "pim-vendor": 0 });
}

describe("dashboard", () => {
  it("asks for the admin token and refuses a wrong one", async () => {
    const res = await fetch(`${t.admin}/`);
    expect(res.headers.get("content-security-policy")).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    await page.goto(`${t.admin}/`);
    await page.fill("#token-input", "not-the-token");
    await page.click("#signin-button");
    await page.waitForFunction(() => (document.querySelector("#signin-error")?.textContent ?? "").length > 0);
    expect(await page.isVisible("#app")).toBe(false);
  });

  it("signs in and shows the shop's services in the graph and as cards with their split", async () => {
    await page.fill("#token-input", TOKEN);
    await page.click("#signin-button");
    await page.waitForSelector("#app", { state: "visible" });
    for (const service of ["storefront", "pim", "cart", "orders", "notify"]) {
      await page.waitForSelector(`#graph [data-node="${service}"]`);
      await page.waitForSelector(`.service-card[data-service="${service}"]`);
    }
    // pim had traffic: its card shows a request rate, and the graph an edge from the internet.
    await page.waitForSelector('#graph [data-node="internet"]', { timeout: 15_000 });
    const weights = await page.$$eval('.service-card[data-service="pim"] input[data-backend-number]', (inputs) =>
      inputs.map((i) => [i.getAttribute("data-backend-number"), (i as HTMLInputElement).value]),
    );
    expect(Object.fromEntries(weights)).toEqual({ "pim-v1": "100", "pim-v2": "0", "pim-v3": "0", "pim-vendor": "0" });
    await page.waitForSelector('.chart[data-service="pim"]');
  });

  it("changes a split through the page, with confirmation, and the admin API reports it", async () => {
    const card = '.service-card[data-service="pim"]';
    await page.fill(`${card} input[data-backend-number="pim-v1"]`, "70");
    await page.fill(`${card} input[data-backend-number="pim-v2"]`, "30");
    await page.click(`${card} [data-action="apply-split"]`);
    await page.waitForSelector("#confirm-dialog[open]");
    const summary = (await page.textContent("#confirm-dialog")) ?? "";
    expect(summary).toContain("pim-v1 100 → 70");
    expect(summary).toContain("pim-v2 0 → 30");
    // Nothing is written before the confirmation.
    expect(((await (await t.adminFetch("/admin/services/pim")).json()) as { split: Record<string, number> }).split["pim-v1"]).toBe(100);
    await page.click("#confirm-yes");
    await page.waitForFunction((sel) => /Split updated/.test(document.querySelector(`${sel} [data-role="split-status"]`)?.textContent ?? ""), card);
    const pim = (await (await t.adminFetch("/admin/services/pim")).json()) as { split: Record<string, number> };
    expect(pim.split).toEqual({ "pim-v1": 70, "pim-v2": 30, "pim-v3": 0, "pim-vendor": 0 });
  });

  it("streams live requests on the tap", async () => {
    await page.selectOption("#tap-service", "pim");
    await page.click("#tap-toggle");
    const marker = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");
    const rowText = async (): Promise<string | undefined> =>
      (await page.$$eval("#tap-events tr", (rows) => rows.map((r) => r.textContent ?? ""))).find((text) => text.includes(marker));
    // Keep sending until the request shows up (the stream may still be connecting).
    await waitFor(async () => {
      await fetch(`${t.shop}/products/sku-1?tap=${marker}`).then((r) => r.arrayBuffer());
      return (await rowText()) !== undefined;
    }, 15_000, 500);
    const row = (await rowText()) ?? "";
    expect(row).toContain("/products/sku-1");
    expect(row).toContain("200");
    await page.click("#tap-toggle");
  });

  describe("rollouts", () => {
    const card = '.service-card[data-service="pim"]';
    const panel = `${card} [data-role="rollout"]`;

    it("follows a canary in the page, pauses, resumes and promotes it there; meanwhile the split is the rollout's", async () => {
      const stopTraffic = shopTraffic();
      try {
        // A split confirmed after the rollout took the service is refused, and the page says so.
        await page.fill(`${card} input[data-backend-number="pim-v1"]`, "90");
        await page.fill(`${card} input[data-backend-number="pim-v2"]`, "10");
        await page.click(`${card} [data-action="apply-split"]`);
        await page.waitForSelector("#confirm-dialog[open]");
        const res = await t.adminFetch("/admin/services/pim/rollouts", {
          method: "POST",
          // Long steps and more traffic than arrives: nothing changes by itself while the page acts.
          body: JSON.stringify({ backend: "pim-v2", strategy: "canary", steps: [20, 50], stepSeconds: 20, analysis: { minRequests: 100_000 } }),
        });
        expect(res.status).toBe(201);
        const started = (await res.json()) as RolloutStatus;
        await page.click("#confirm-yes");
        await page.waitForFunction((sel) => /Not applied/.test(document.querySelector(`${sel} [data-role="split-status"]`)?.textContent ?? ""), card);

        await page.waitForSelector(`${panel}[data-state="progressing"] [data-role="rollout-event"][data-type="started"]`);
        expect(await page.getAttribute(panel, "data-rollout-id")).toBe(started.id);
        expect(await page.textContent(`${panel} [data-role="rollout-step"]`)).toContain("Step 1 of 2");
        expect(await page.getAttribute(`${panel} [data-role="rollout-progress"]`, "aria-valuenow")).toBe("20");
        expect(await page.$$eval(`${panel} [data-role="rollout-progress"] [data-step]`, (marks) => marks.map((m) => m.textContent))).toEqual(["20%", "50%"]);

        // The split controls are the rollout's while it runs, showing its weights.
        await page.waitForFunction((sel) => {
          const inputs = [...document.querySelectorAll<HTMLInputElement>(`${sel} input[data-backend-number]`)];
          return inputs.length === 4 && inputs.every((i) => i.disabled) && document.querySelector<HTMLButtonElement>(`${sel} [data-action="apply-split"]`)?.disabled === true;
        }, card);
        expect(await page.textContent(`${card} [data-role="split-lock"]`)).toContain(`rollout ${started.id} owns this split`);
        expect(await splitInputs()).toEqual({ "pim-v1": "80", "pim-v2": "20", "pim-v3": "0", "pim-vendor": "0" });

        // The step is judged once its weights settled: candidate and baseline numbers, and what is missing.
        await page.waitForFunction((sel) => /\d+ of the 100000 requests needed/.test(document.querySelector(`${sel} [data-role="rollout-detail"]`)?.textContent ?? ""), panel, { timeout: 15_000 });
        expect(await page.textContent(`${panel} [data-numbers="candidate"]`)).toContain("pim-v2");
        expect(await page.textContent(`${panel} [data-numbers="baseline"]`)).toContain("pim-v1");

        await page.click(`${panel} [data-rollout-action="pause"]`);
        expect((await rolloutUntil("paused")).id).toBe(started.id);
        await page.waitForSelector(`${panel}[data-state="paused"] [data-role="rollout-event"][data-type="paused"]`);
        expect(await page.isVisible(`${panel} [data-rollout-action="pause"]`)).toBe(false);
        expect(await page.textContent(`${panel} [data-role="rollout-status"]`)).toContain("Paused");

        await page.click(`${panel} [data-rollout-action="resume"]`);
        await rolloutUntil("progressing");
        await page.waitForSelector(`${panel} [data-role="rollout-event"][data-type="resumed"]`);

        await page.click(`${panel} [data-rollout-action="promote"]`);
        await page.waitForSelector("#confirm-dialog[open]");
        expect(await page.textContent("#confirm-dialog")).toContain(`promote ${started.id} now → pim-v2 100%`);
        await page.fill("#confirm-reason", "looks good in the dashboard");
        await page.click("#confirm-yes");
        const promoted = await rolloutUntil("promoted");
        expect(promoted.events.at(-1)?.type).toBe("promoted");
        expect(promoted.events.at(-1)?.message).toContain("looks good in the dashboard");
        await page.waitForSelector(`${panel}[data-state="promoted"] [data-role="rollout-event"][data-type="promoted"]`);
        // Newest last.
        expect(await page.$$eval(`${panel} [data-role="rollout-event"]`, (rows) => rows.map((r) => r.getAttribute("data-type")))).toEqual(["started", "paused", "resumed", "promoted"]);
        expect(await page.isVisible(`${panel} [data-rollout-action]`)).toBe(false);

        // Released: the controls come back with the promoted weights.
        await page.waitForFunction((sel) => {
          const inputs = [...document.querySelectorAll<HTMLInputElement>(`${sel} input[data-backend-number]`)];
          return inputs.length === 4 && inputs.every((i) => !i.disabled) && inputs.some((i) => i.dataset.backendNumber === "pim-v2" && i.value === "100");
        }, card);
        expect(await page.isVisible(`${card} [data-role="split-lock"]`)).toBe(false);
      } finally {
        await stopTraffic();
        await resetPim();
      }
    });

    it("starts a rollout from the card's form and explains a refused one", async () => {
      try {
        const form = `${card} [data-role="rollout-form"]`;
        await page.click(`${card} [data-action="start-rollout"]`);
        await page.waitForSelector(form, { state: "visible" });
        await page.selectOption(`${form} select[name="backend"]`, "pim-v2");
        await page.selectOption(`${form} select[name="strategy"]`, "blue-green");
        expect(await page.isVisible(`${form} input[name="steps"]`)).toBe(false);
        await page.click(`${form} [data-action="submit-rollout"]`);
        await page.waitForFunction((sel) => /needs a probe/.test(document.querySelector(`${sel} [data-role="rollout-form-errors"]`)?.textContent ?? ""), form);
        expect(await page.textContent(`${form} [data-role="rollout-form-errors"]`)).toContain("Probe path: blue-green needs a probe");
        expect(await page.getAttribute(`${form} input[name="probePath"]`, "aria-invalid")).toBe("true");

        await page.selectOption(`${form} select[name="strategy"]`, "canary");
        await page.fill(`${form} input[name="steps"]`, "10, 40");
        await page.fill(`${form} input[name="stepSeconds"]`, "30");
        await page.fill(`${form} input[name="maxErrorRate"]`, "0.02");
        await page.fill(`${form} input[name="maxP99Ms"]`, "900");
        await page.fill(`${form} input[name="minRequests"]`, "50");
        await page.fill(`${form} input[name="maxErrorRateIncrease"]`, "0.005");
        await page.fill(`${form} input[name="maxP99Ratio"]`, "1.5");
        await page.click(`${form} [data-action="submit-rollout"]`);
        await page.waitForSelector(`${panel}[data-state="progressing"]`);
        expect(await page.isVisible(form)).toBe(false);
        const id = await page.getAttribute(panel, "data-rollout-id");
        const current = await rollout();
        expect(current).toMatchObject({
          id,
          backend: "pim-v2",
          strategy: "canary",
          steps: [10, 40],
          stepSeconds: 30,
          analysis: { maxErrorRate: 0.02, maxP99Ms: 900, minRequests: 50, trafficTimeoutSeconds: 600, maxErrorRateIncrease: 0.005, maxP99Ratio: 1.5 },
          probe: null,
        });
        expect(await page.textContent(`${panel} [data-role="rollout-status"]`)).toContain(`Started ${current.id}`);

        expect((await t.adminFetch("/admin/services/pim/rollouts/current/abort", { method: "POST" })).status).toBe(200);
        await page.waitForSelector(`${panel}[data-state="aborted"] [data-role="rollout-event"][data-type="aborted"]`);
        expect(await page.textContent(`${panel} [data-role="rollout-reason"]`)).toContain("aborted by operator");
      } finally {
        await resetPim();
      }
    });
  });

  it("ran without script errors or CSP violations", () => {
    expect(problems).toEqual([]);
  });
});
