/**
 * Running a compiled RE2 program: the proxy's half of regular-expression matching.
 *
 * The control plane parses and compiles each pattern from the config with re2js (a port of RE2;
 * shared/regex.ts) and puts the compiled program in the slice it publishes. The proxy only runs
 * programs, with the Pike VM below: the set of threads advances one code point at a time, so a
 * match costs O(input × program) whatever the pattern, the guarantee RE2 gives. This keeps re2js's
 * parser and Unicode tables (~49 KiB gzip, more than half of the proxy's bundle) out of the proxy.
 *
 * Programs are plain JSON (they travel in the slice): instructions `[op, out, arg, runes]` with
 * RE2's opcodes. Case folding is expanded into rune ranges at compile time, so the VM needs no
 * Unicode tables; lookbehind (a re2js extension) is refused when the config is validated.
 */

/** RE2's instruction opcodes (re2js `Inst`), the subset a program may use. */
export const Op = {
  ALT: 1,
  ALT_MATCH: 2,
  CAPTURE: 3,
  EMPTY_WIDTH: 4,
  FAIL: 5,
  MATCH: 6,
  NOP: 7,
  RUNE: 8,
  RUNE1: 9,
  RUNE_ANY: 10,
  RUNE_ANY_NOT_NL: 11,
} as const;

/** RE2's empty-width conditions (`^`, `$`, `\A`, `\z`, `\b`, `\B`). */
export const Empty = {
  BEGIN_LINE: 1,
  END_LINE: 2,
  BEGIN_TEXT: 4,
  END_TEXT: 8,
  WORD_BOUNDARY: 16,
  NO_WORD_BOUNDARY: 32,
} as const;

/**
 * One instruction: opcode, next instruction, argument (ALT's other branch, EMPTY_WIDTH's
 * conditions), and for rune instructions the sorted inclusive ranges `[lo, hi, lo, hi, …]`.
 */
export type RegexInst = [op: number, out: number, arg: number, runes: number[]];

/** A compiled pattern, matched against whole values. */
export interface RegexProgram {
  start: number;
  inst: RegexInst[];
}

/**
 * Instructions one program may have. A match costs up to (value length × live threads), and live
 * threads are bounded by the program. Measured (Node, 8 KiB path): `/products/[0-9]+` (14
 * instructions) ~0 ms, `/(a|b|c|d)*[0-9]+` (9) 1.4 ms, `/(.*a){20}x` (104) 10 ms, `(?:.*a.*){50}b`
 * (253) 28 ms, `/(.*){100}x` (404, refused) 41 ms. Envoy's default RE2 program-size limit is 100;
 * 256 keeps ordinary route patterns well inside it and the worst a pattern can cost about 30 ms.
 */
export const MAX_PROGRAM_INSTRUCTIONS = 256;
/** Rune range bounds one program may carry in all (`\p{L}` alone is ~1,300 ranges). */
export const MAX_PROGRAM_RUNES = 65_536;

const OPS = new Set<number>(Object.values(Op));

/** Whether `value` is a well-formed program within the bounds: every jump lands on an instruction. */
export function isRegexProgram(value: unknown): value is RegexProgram {
  if (typeof value !== "object" || value === null) return false;
  const start: unknown = Reflect.get(value, "start");
  const inst: unknown = Reflect.get(value, "inst");
  if (!Array.isArray(inst) || inst.length === 0 || inst.length > MAX_PROGRAM_INSTRUCTIONS) return false;
  const inRange = (n: unknown): boolean => Number.isInteger(n) && typeof n === "number" && n >= 0 && n < inst.length;
  if (!inRange(start)) return false;
  let runes = 0;
  for (const entry of inst) {
    if (!Array.isArray(entry) || entry.length !== 4) return false;
    const fields: unknown[] = entry;
    const [op, out, arg, ranges] = fields;
    if (typeof op !== "number" || !OPS.has(op) || !Number.isInteger(out) || !Number.isInteger(arg) || !Array.isArray(ranges)) return false;
    if (op !== Op.MATCH && op !== Op.FAIL && !inRange(out)) return false;
    if ((op === Op.ALT || op === Op.ALT_MATCH) && !inRange(arg)) return false;
    runes += ranges.length;
    if (runes > MAX_PROGRAM_RUNES || ranges.length % 2 !== 0 || !ranges.every((r) => Number.isInteger(r))) return false;
  }
  return true;
}

function isWordRune(r: number): boolean {
  return (r >= 0x61 && r <= 0x7a) || (r >= 0x41 && r <= 0x5a) || (r >= 0x30 && r <= 0x39) || r === 0x5f;
}

/** The empty-width conditions that hold between rune `before` and rune `after` (-1: the text's edge). */
function emptyContext(before: number, after: number): number {
  let flags = 0;
  if (before < 0) flags |= Empty.BEGIN_TEXT | Empty.BEGIN_LINE;
  else if (before === 0x0a) flags |= Empty.BEGIN_LINE;
  if (after < 0) flags |= Empty.END_TEXT | Empty.END_LINE;
  else if (after === 0x0a) flags |= Empty.END_LINE;
  flags |= isWordRune(before) !== isWordRune(after) ? Empty.WORD_BOUNDARY : Empty.NO_WORD_BOUNDARY;
  return flags;
}

/** Whether rune `r` lies in the sorted ranges (binary search: classes such as `\p{L}` are long). */
function inRanges(ranges: number[], r: number): boolean {
  let lo = 0;
  let hi = (ranges.length >> 1) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const first = ranges[mid * 2] ?? 0;
    if (r < first) hi = mid - 1;
    else if (r > (ranges[mid * 2 + 1] ?? -1)) lo = mid + 1;
    else return true;
  }
  return false;
}

/** A sparse set of instruction indexes: O(1) add, membership and clear (Russ Cox's trick). */
class ThreadList {
  readonly dense: Uint32Array;
  private readonly sparse: Uint32Array;
  size = 0;
  constructor(capacity: number) {
    this.dense = new Uint32Array(capacity);
    this.sparse = new Uint32Array(capacity);
  }
  has(pc: number): boolean {
    const i = this.sparse[pc] ?? 0;
    return i < this.size && this.dense[i] === pc;
  }
  add(pc: number): void {
    this.sparse[pc] = this.size;
    this.dense[this.size++] = pc;
  }
}

/**
 * Compiles a (checked) program into a full-match test: the instructions unpacked into typed arrays
 * and the thread lists allocated once, so a request's match allocates nothing. Matching is
 * synchronous, so one matcher's scratch space is never used by two matches at once.
 */
export function fullMatcher(program: RegexProgram): (value: string) => boolean {
  const size = program.inst.length;
  const ops = Int32Array.from(program.inst, (i) => i[0]);
  const outs = Int32Array.from(program.inst, (i) => i[1]);
  const args = Int32Array.from(program.inst, (i) => i[2]);
  const runes = program.inst.map((i) => i[3]);
  // Only a program with `^`, `$`, `\b`… needs the empty-width context of each position.
  const needsContext = program.inst.some((i) => i[0] === Op.EMPTY_WIDTH);
  let current = new ThreadList(size);
  let next = new ThreadList(size);
  const stack = new Int32Array(size * 2 + 2);

  const matchesRune = (pc: number, r: number): boolean => {
    switch (ops[pc]) {
      case Op.RUNE1:
        return runes[pc]?.[0] === r;
      case Op.RUNE:
        return inRanges(runes[pc] ?? [], r);
      case Op.RUNE_ANY:
        return true;
      case Op.RUNE_ANY_NOT_NL:
        return r !== 0x0a;
      default:
        return false;
    }
  };

  /**
   * Adds `pc` and every instruction reachable from it without consuming a rune (`context`: the
   * empty-width conditions here). Iterative: a long chain of empty instructions cannot overflow the
   * stack; each instruction is pushed at most twice (once per incoming edge of an ALT).
   */
  const addThread = (list: ThreadList, pc: number, context: number): void => {
    let top = 0;
    stack[top++] = pc;
    while (top > 0) {
      const at = stack[--top] ?? 0;
      if (list.has(at)) continue;
      list.add(at);
      switch (ops[at]) {
        case Op.ALT:
        case Op.ALT_MATCH:
          // Order does not matter for a yes/no full match.
          stack[top++] = args[at] ?? 0;
          stack[top++] = outs[at] ?? 0;
          break;
        case Op.NOP:
        case Op.CAPTURE:
          stack[top++] = outs[at] ?? 0;
          break;
        case Op.EMPTY_WIDTH:
          if (((args[at] ?? 0) & ~context) === 0) stack[top++] = outs[at] ?? 0;
          break;
        default:
          break;
      }
    }
  };

  return (value) => {
    current.size = 0;
    let at = 0;
    let rune = value.length > 0 ? (value.codePointAt(0) ?? -1) : -1;
    addThread(current, program.start, needsContext ? emptyContext(-1, rune) : 0);
    while (current.size > 0) {
      if (rune < 0) {
        for (let i = 0; i < current.size; i++) if (ops[current.dense[i] ?? 0] === Op.MATCH) return true;
        return false;
      }
      const width = rune > 0xffff ? 2 : 1;
      const following = at + width < value.length ? (value.codePointAt(at + width) ?? -1) : -1;
      const context = needsContext ? emptyContext(rune, following) : 0;
      next.size = 0;
      for (let i = 0; i < current.size; i++) {
        const pc = current.dense[i] ?? 0;
        if (matchesRune(pc, rune)) addThread(next, outs[pc] ?? 0, context);
      }
      [current, next] = [next, current];
      at += width;
      rune = following;
    }
    return false;
  };
}

/** Whether the whole of `value` matches `program` (RE2's full match). Compiles a matcher per call: use {@link fullMatcher} for repeated matches. */
export function matchesFully(program: RegexProgram, value: string): boolean {
  return fullMatcher(program)(value);
}
