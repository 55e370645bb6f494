/**
 * Regular expressions from configuration: RE2 syntax, parsed and compiled by re2js (a port of RE2)
 * on the control plane, and run by the proxy as compiled programs (shared/regex-program.ts) in time
 * linear in the input, so no pattern an operator writes can make a request backtrack for seconds.
 * JavaScript's own RegExp backtracks (`(a|a)*b` on 30 `a`s takes minutes), so it is never used on
 * patterns from outside.
 *
 * This module pulls in re2js (its Unicode tables are most of its size): the control plane, the
 * validator and the CLI import it; the proxy imports only regex-program.ts.
 */
import { RE2JS } from "re2js";
import { fullMatcher, isRegexProgram, MAX_PROGRAM_INSTRUCTIONS, MAX_PROGRAM_RUNES, Op, type RegexInst, type RegexProgram } from "./regex-program.ts";

/** A compiled pattern that answers "does the whole value match?". */
export interface FullMatcher {
  readonly source: string;
  test(value: string): boolean;
}

/** re2js's instruction, as its compiled program holds it (re2js types it loosely). */
interface Re2jsInst {
  op: number;
  out: number;
  arg: number;
  runes: ArrayLike<number> | null;
}

/** re2js's `RE2Flags.FOLD_CASE` on a rune instruction: match the rune in any case. */
const FOLD_CASE = 1;
/** re2js's lookbehind instructions (its extension to RE2 syntax), which programs do not carry. */
const LOOKBEHIND_OPS = new Set([12, 13]);

function re2jsProgram(source: string): { start: number; inst: Re2jsInst[] } {
  const prog: unknown = RE2JS.compile(source).re2().prog;
  if (typeof prog !== "object" || prog === null) throw new Error("re2js gave no program");
  const start: unknown = Reflect.get(prog, "start");
  const inst: unknown = Reflect.get(prog, "inst");
  if (typeof start !== "number" || !Array.isArray(inst)) throw new Error("re2js gave a program of an unknown shape");
  return { start, inst: inst.filter((i): i is Re2jsInst => typeof i === "object" && i !== null) };
}

/**
 * Every rune `r` matches when case is ignored, as sorted ranges: re2js's own case folding, read
 * from the class `(?i)[\x{0}r]` (with NUL beside it, so re2js cannot shorten it back to one folded
 * rune), NUL then taken out again.
 */
function foldedRanges(r: number): number[] {
  if (r <= 0) return [r, r];
  const { inst } = re2jsProgram(`(?i)[\\x{0}\\x{${r.toString(16)}}]`);
  const ranges = Array.from(inst.find((i) => i.op === Op.RUNE)?.runes ?? []);
  if (ranges.length < 2 || ranges[0] !== 0) return [r, r];
  if ((ranges[1] ?? 0) === 0) return ranges.slice(2);
  ranges[0] = 1;
  return ranges;
}

/** One re2js instruction as a program instruction: runes as ranges, case folding expanded. */
function toInst(i: Re2jsInst): RegexInst {
  const runes = i.runes ? Array.from(i.runes) : [];
  if (i.op === Op.RUNE1) return [Op.RUNE1, i.out, 0, [runes[0] ?? -1, runes[0] ?? -1]];
  if (i.op === Op.RUNE) {
    const single = runes[0] ?? -1;
    if (runes.length === 1) return (i.arg & FOLD_CASE) !== 0 ? [Op.RUNE, i.out, 0, foldedRanges(single)] : [Op.RUNE1, i.out, 0, [single, single]];
    return [Op.RUNE, i.out, 0, runes];
  }
  return [i.op, i.out, i.arg, []];
}

/**
 * Compiles a pattern into the program the proxy runs. Throws with the reason when the pattern is
 * not valid RE2, uses lookbehind, or compiles beyond the program bounds.
 */
export function compileProgram(source: string): RegexProgram {
  const compiled = re2jsProgram(source);
  if (compiled.inst.some((i) => LOOKBEHIND_OPS.has(i.op))) throw new Error("lookbehind is not RE2 syntax");
  if (compiled.inst.length > MAX_PROGRAM_INSTRUCTIONS) throw new Error(`compiles to more than ${MAX_PROGRAM_INSTRUCTIONS} instructions`);
  const program: RegexProgram = { start: compiled.start, inst: compiled.inst.map(toInst) };
  if (!isRegexProgram(program)) throw new Error(`compiles beyond the bounds a proxy runs (${MAX_PROGRAM_INSTRUCTIONS} instructions, ${MAX_PROGRAM_RUNES} rune bounds)`);
  return program;
}

/** Why `source` is not a pattern Weft can run, or undefined when it is. */
export function regexProblem(source: string): string | undefined {
  try {
    compileProgram(source);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** Compiles a pattern (already validated) into a full-match tester: the program the proxy would run. */
export function compileFullMatch(source: string): FullMatcher {
  return { source, test: fullMatcher(compileProgram(source)) };
}
