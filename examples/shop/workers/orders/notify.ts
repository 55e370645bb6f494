/**
 * Order confirmations, sent through the mesh's `notify` service: its proxy signs the call to the
 * notifications provider and masks the customer's personal data on the way out.
 */
import { meshFetch } from "../../../../shared/mesh-client.ts";

/** What the provider receives (before the mesh's egress policy masks `to` and `customer.email`). */
export interface Confirmation {
  to: string;
  subject: string;
  text: string;
  customer: { email: string };
  order: { orderId: string; items: Array<{ sku: string; qty: number; price: number }>; total: number; currency: string };
}

/** Sends a confirmation; best effort, because the order is already placed whatever happens here. */
export async function sendConfirmation(notify: Fetcher, confirmation: Confirmation, trace: Record<string, string>): Promise<void> {
  try {
    const res = await meshFetch(notify, "notify", "/messages", {
      method: "POST",
      headers: { ...trace, "content-type": "application/json" },
      body: JSON.stringify(confirmation),
    });
    await res.body?.cancel();
    if (!res.ok) console.warn(`orders: confirmation for ${confirmation.order.orderId} refused with ${res.status}`);
  } catch (err) {
    console.warn(`orders: confirmation for ${confirmation.order.orderId} failed`, err);
  }
}
