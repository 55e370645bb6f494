/**
 * Regular expressions from configuration: RE2 syntax, matched by re2js (a port of RE2) in time
 * linear in the input, so no pattern an operator writes can make a request backtrack for seconds.
 * JavaScript's own RegExp backtracks (`(a|a)*b` on 30 `a`s takes minutes), so it is never used on
 * patterns from outside.
 */
import { RE2JS } from "re2js";

/** A compiled pattern that answers "does the whole value match?". */
export interface FullMatcher {
  readonly source: string;
  test(value: string): boolean;
}

/** Why `source` is not a valid RE2 pattern, or undefined when it is. */
export function regexProblem(source: string): string | undefined {
  try {
    RE2JS.compile(source);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Compiles a pattern (already validated) into a full-match tester. */
export function compileFullMatch(source: string): FullMatcher {
  const pattern = RE2JS.compile(source);
  return { source, test: (value) => pattern.testExact(value) };
}
