/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against the running
 * mesh. Sign-in, the graph and service cards with live data, a split changed through the page (then
 * read back from the admin API), and the live tap.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootTestMesh, TOKEN, waitFor, type TestMesh } from "./harness.ts";

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
    expect(Object.fromEntries(weights)).toEqual({ "pim-v1": "100", "pim-v2": "0", "pim-vendor": "0" });
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
    expect(pim.split).toEqual({ "pim-v1": 70, "pim-v2": 30, "pim-vendor": 0 });
  });

  it("streams live requests on the tap, including a traced one", async () => {
    await page.selectOption("#tap-service", "pim");
    await page.click("#tap-toggle");
    const traceId = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
    // Keep sending until the traced request shows up (the stream may still be connecting).
    await waitFor(async () => {
      await fetch(`${t.shop}/products/sku-1`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } }).then((r) => r.arrayBuffer());
      return (await page.$(`#tap-events tr[data-trace-id="${traceId}"]`)) !== null;
    }, 15_000, 500);
    const row = (await page.textContent(`#tap-events tr[data-trace-id="${traceId}"]`)) ?? "";
    expect(row).toContain("/products/sku-1");
    expect(row).toContain("200");
    await page.click("#tap-toggle");
  });

  it("ran without script errors or CSP violations", () => {
    expect(problems).toEqual([]);
  });
});
