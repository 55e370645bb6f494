/** RPC method names become metric routes; callers choose them, so an isolate reports at most a bounded number. */
import { describe, expect, it } from "vitest";
import { boundedLabel, MAX_RPC_LABELS } from "../../workers/proxy/service.ts";

describe("boundedLabel", () => {
  it("keeps the first names, folds the rest into (other), and keeps answering known names", () => {
    const seen = new Set<string>();
    for (let i = 0; i < MAX_RPC_LABELS; i++) expect(boundedLabel(seen, `m${i}`, MAX_RPC_LABELS)).toBe(`m${i}`);
    expect(boundedLabel(seen, "oneTooMany", MAX_RPC_LABELS)).toBe("(other)");
    expect(boundedLabel(seen, "m7", MAX_RPC_LABELS)).toBe("m7");
    expect(seen.size).toBe(MAX_RPC_LABELS);
  });
});
