/**
 * The product list as the storefront reads it from pim.
 */
import * as z from "zod";
import { expectJson, meshFetch } from "../../../../shared/mesh-client.ts";

const Product = z.object({
  sku: z.string(),
  name: z.string(),
  category: z.string(),
  price: z.number(),
  stock: z.int(),
  version: z.string(),
  badges: z.array(z.string()).optional(),
});
export type Product = z.infer<typeof Product>;

const ProductList = z.object({ products: z.array(Product), version: z.string() });
export type ProductList = z.infer<typeof ProductList>;

/** All products, through the pim proxy, as seen by the shopper whose cookie `headers` carry. */
export async function fetchProducts(pim: Fetcher, headers: Record<string, string>): Promise<ProductList> {
  const res = await meshFetch(pim, "pim", "/products", { headers });
  return expectJson(res, "pim", ProductList);
}
