/**
 * Typed views of Durable Object stubs. Workers RPC stubs map every return type structurally, which
 * turns the recursive JSON types in the mesh config (JSON Schemas, JWKs) into "excessively deep"
 * types. Our RPC payloads are plain JSON, so a stub is viewed through the object's own method
 * signatures instead; this is the one place that view is asserted.
 */

/** The public methods of `T`, each returning a promise of its (awaited) result. */
export type PlainStub<T> = {
  [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};

/** Views `stub` through the plain method signatures of the object class `T`. */
export function plainStub<T>(stub: DurableObjectStub): PlainStub<T> {
  return stub as unknown as PlainStub<T>;
}
