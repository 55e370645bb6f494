/**
 * The demo catalog: 20 products derived from fixed tables, so every deployment (and both pim
 * versions) serves byte-identical names, prices and stock without a database.
 */

/** v1 and v2 are good releases; v3 is the demo's deliberately bad one (see index.ts). */
export type PimVersion = "v1" | "v2" | "v3";

/** A product as pim v1 serves it. Prices are EUR with at most 2 decimals. */
export interface ProductV1 {
  sku: string;
  name: string;
  category: string;
  price: number;
  currency: "EUR";
  stock: number;
  version: PimVersion;
}

/** v2 adds merchandising badges, so a human can tell which version answered. */
export interface ProductV2 extends ProductV1 {
  badges: string[];
}

export type Product = ProductV1 | ProductV2;

interface Material {
  name: string;
  premiumCents: number;
  eco: boolean;
}

interface Article {
  name: string;
  category: string;
  baseCents: number;
}

const MATERIALS: ReadonlyArray<Material> = [
  { name: "Merino Wool", premiumCents: 900, eco: false },
  { name: "Organic Cotton", premiumCents: 300, eco: true },
  { name: "Linen", premiumCents: 500, eco: true },
  { name: "Recycled Nylon", premiumCents: 200, eco: true },
  { name: "Alpaca", premiumCents: 1400, eco: false },
];

const ARTICLES: ReadonlyArray<Article> = [
  { name: "Socks", category: "accessories", baseCents: 850 },
  { name: "Beanie", category: "accessories", baseCents: 1950 },
  { name: "T-Shirt", category: "tops", baseCents: 2450 },
  { name: "Scarf", category: "accessories", baseCents: 3200 },
];

interface CatalogEntry {
  sku: string;
  name: string;
  category: string;
  priceCents: number;
  stock: number;
  eco: boolean;
}

function buildCatalog(): CatalogEntry[] {
  const entries: CatalogEntry[] = [];
  ARTICLES.forEach((article, a) => {
    MATERIALS.forEach((material, m) => {
      const n = a * MATERIALS.length + m + 1;
      entries.push({
        sku: `sku-${n}`,
        name: `${material.name} ${article.name}`,
        category: article.category,
        priceCents: article.baseCents + material.premiumCents,
        // Varied but fixed: every seventh product is sold out, the rest spread over 1..48.
        stock: n % 7 === 0 ? 0 : (n * 37) % 49,
        eco: material.eco,
      });
    });
  });
  return entries;
}

const CATALOG: ReadonlyArray<CatalogEntry> = buildCatalog();
const BY_SKU: ReadonlyMap<string, CatalogEntry> = new Map(CATALOG.map((e) => [e.sku, e]));

function badgesOf(entry: CatalogEntry): string[] {
  const badges: string[] = [];
  if (entry.stock === 0) badges.push("sold out");
  else if (entry.stock < 5) badges.push("only a few left");
  if (entry.eco) badges.push("eco");
  if (entry.priceCents >= 4000) badges.push("premium");
  return badges;
}

function present(entry: CatalogEntry, version: PimVersion): Product {
  const product: ProductV1 = {
    sku: entry.sku,
    name: entry.name,
    category: entry.category,
    price: entry.priceCents / 100,
    currency: "EUR",
    stock: entry.stock,
    version,
  };
  return version === "v1" ? product : { ...product, badges: badgesOf(entry) };
}

/** All products in sku order, shaped for `version`. */
export function listProducts(version: PimVersion): Product[] {
  return CATALOG.map((entry) => present(entry, version));
}

/** One product, or undefined for an unknown sku. */
export function findProduct(sku: string, version: PimVersion): Product | undefined {
  const entry = BY_SKU.get(sku);
  return entry && present(entry, version);
}
