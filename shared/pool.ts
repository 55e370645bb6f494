/**
 * Bounded concurrency: the scripts (bundling, type generation), the weft CLI (per-service metrics)
 * and the control plane (fan-out to telemetry shards) run many independent async tasks, but never
 * all at once.
 */

/** Runs `task` over `items` with at most `limit` at once, keeping order in the results. */
export async function pool<T, R>(items: ReadonlyArray<T>, limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      const item = items[i];
      if (item !== undefined) results[i] = await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
