/**
 * The page's script, inlined. It only talks to this worker's /api endpoints and builds DOM nodes
 * with textContent, so nothing a service returns is ever parsed as HTML.
 */
export const SCRIPT = `
"use strict";
const euro = new Intl.NumberFormat("en-IE", { style: "currency", currency: "EUR" });
const $ = (id) => document.getElementById(id);

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// crypto.randomUUID needs a secure context; plain-http hosts other than localhost lack it.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(path, init) {
  const res = await fetch(path, init);
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && (body.detail || body.title)) || res.status + " " + res.statusText);
  return body;
}

function renderCart(cart) {
  const list = $("lines");
  list.replaceChildren();
  if (cart.items.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "Your cart is empty.";
    list.append(li);
  }
  for (const item of cart.items) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = item.qty + " × " + item.name;
    const right = document.createElement("span");
    right.textContent = euro.format(item.qty * item.price);
    const remove = document.createElement("button");
    remove.className = "link";
    remove.title = "Remove";
    remove.textContent = "✕";
    remove.dataset.remove = item.sku;
    right.append(remove);
    li.append(label, right);
    list.append(li);
  }
  $("total").textContent = euro.format(cart.total);
  $("place").disabled = cart.items.length === 0;
}

async function refresh() {
  try { renderCart(await api("/api/cart")); } catch (err) { say("Cart unavailable: " + err.message, true); }
}

async function placeOrder() {
  const button = $("place");
  button.disabled = true;
  say("Placing order…", false);
  // One key per click: a retry of this click can never create a second order.
  const init = { method: "POST", headers: { "idempotency-key": newKey() } };
  try {
    let order;
    try { order = await api("/api/orders", init); }
    catch (err) { if (!(err instanceof TypeError)) throw err; order = await api("/api/orders", init); }
    say("Order " + order.orderId.slice(0, 8) + " placed: " + euro.format(order.total) + ". Thank you!", false);
  } catch (err) {
    say("Could not place the order: " + err.message, true);
  }
  await refresh();
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  try {
    if (button.dataset.sku) {
      button.disabled = true;
      renderCart(await api("/api/cart/items", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ sku: button.dataset.sku, qty: 1 }),
      }));
      say("Added " + button.dataset.name + ".", false);
    } else if (button.dataset.remove) {
      renderCart(await api("/api/cart/items/" + encodeURIComponent(button.dataset.remove), { method: "DELETE" }));
    } else if (button.id === "place") {
      await placeOrder();
    }
  } catch (err) {
    say(err.message, true);
  } finally {
    if (button.dataset.sku) button.disabled = false;
  }
});

refresh();
`;
