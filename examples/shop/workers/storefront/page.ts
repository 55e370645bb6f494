/**
 * The shop page, rendered on the server from pim's product list. `html` escapes every interpolated
 * value, so product data cannot inject markup.
 */
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { Product, ProductList } from "./catalog.ts";
import { SCRIPT } from "./page-script.ts";
import { STYLE } from "./page-style.ts";

const euro = new Intl.NumberFormat("en-IE", { style: "currency", currency: "EUR" });

function stockText(stock: number): string {
  if (stock === 0) return "Sold out";
  return stock < 5 ? `Only ${stock} left` : `${stock} in stock`;
}

function productCard(p: Product) {
  return html`<article class="product">
    <span class="category">${p.category}</span>
    <h2>${p.name}</h2>
    <div class="badges">${(p.badges ?? []).map((b) => html`<span class="badge">${b}</span>`)}</div>
    <span class="price">${euro.format(p.price)}</span>
    <span class="stock">${stockText(p.stock)}</span>
    <button data-sku="${p.sku}" data-name="${p.name}" ${p.stock === 0 ? "disabled" : ""}>Add to cart</button>
  </article>`;
}

/**
 * The whole page. `nonce` must match the response's Content-Security-Policy, which allows only this
 * page's own inline style and script.
 */
export function renderPage(list: ProductList, shopperId: string, nonce: string): HtmlEscapedString | Promise<HtmlEscapedString> {
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Weft Outfitters</title>
  <style nonce="${nonce}">${raw(STYLE)}</style>
</head>
<body>
  <header>
    <h1>Weft <span>Outfitters</span></h1>
    <span class="version ${list.version}" title="The pim version the mesh routed you to">catalog served by pim ${list.version}</span>
  </header>
  <main>
    <section class="products" aria-label="Products">${list.products.map(productCard)}</section>
    <aside aria-label="Cart">
      <h2>Your cart</h2>
      <ul id="lines"><li class="empty">Loading…</li></ul>
      <div class="total"><span>Total</span><span id="total">–</span></div>
      <button id="place" disabled>Place order</button>
      <div id="status" role="status"></div>
    </aside>
  </main>
  <footer>Demo shop behind the Weft service mesh · shopper ${shopperId.slice(0, 8)}</footer>
  <script nonce="${nonce}">${raw(SCRIPT)}</script>
</body>
</html>`;
}
