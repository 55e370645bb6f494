/**
 * Product lookups through the pim proxy (demo shop: used by cart and orders).
 */
import * as z from "zod";
import { DependencyError, expectJson, isJson, meshFetch } from "../../../shared/mesh-client.ts";

const PimProduct = z.object({
  sku: z.string(),
  name: z.string(),
  price: z.number().nonnegative(),
});
export type PimProduct = z.infer<typeof PimProduct>;

/**
 * The product for `sku`, or undefined when pim says it does not exist. `forward` carries the
 * shopper's cookie (one pim version per shopper) and the caller's deadline (see forwardFrom).
 */
export async function lookupProduct(pim: Fetcher, sku: string, forward: Record<string, string>): Promise<PimProduct | undefined> {
  const res = await meshFetch(pim, "pim", `/products/${encodeURIComponent(sku)}`, { headers: forward });
  if (res.status === 404 && isJson(res)) {
    // Only pim's own "unknown product" answer names the sku; any other 404 means the mesh misrouted.
    const body = z.object({ sku: z.literal(sku) }).safeParse(await res.json().catch(() => null));
    if (body.success) return undefined;
    throw new DependencyError("pim", "answered 404 without naming the product");
  }
  return expectJson(res, "pim", PimProduct);
}
