import { RE2JS } from "re2js";
import { describe, expect, it } from "vitest";
import { isRegexProgram, matchesFully, MAX_PROGRAM_INSTRUCTIONS } from "../../shared/regex-program.ts";
import { compileProgram, regexProblem } from "../../shared/regex.ts";

/** Patterns of the kinds route matches use, and the RE2 features a program must carry. */
const PATTERNS = [
  "/products/[0-9]+",
  "/api/v[12]/.*",
  "/(orders|carts)/[a-f0-9-]{36}(/items)?",
  "(?i)/Admin/.*",
  "(?i)k",
  "[[:alpha:]]+-[[:digit:]]*",
  "\\p{L}+",
  "\\p{Greek}*x",
  "\\PL+",
  "a*b?c+",
  "(a|ab)(c|bcd)(d*)",
  "^/start$",
  "\\A/x\\z",
  "(?m)^a$\\n^b$",
  "\\bword\\b.*",
  "x\\By",
  ".",
  "(?s).",
  "[^/]+",
  "",
  "(?U)a+?b",
  "a{2,4}",
  "(a|a)*b",
  "[😀-😂]+",
  "é+",
  "(?i)ǅ",
];
const INPUTS = [
  "", "/products/123", "/products/", "/products/12a", "/api/v1/anything", "/api/v3/x", "/orders/0123abcd-0123-abcd-0123-0123456789ab",
  "/carts/0123abcd-0123-abcd-0123-0123456789ab/items", "/ADMIN/users", "/admin/", "k", "K", "\u212a", "abc-123", "abc-", "Straße",
  "αβγx", "x", "123", "aaabcc", "ac", "abcd", "abbcd", "/start", "/x", "a\nb", "word", "word up", "words", "xy", "x y", "\n", "/a/b",
  "ab", "aab", "aaaa", "aaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "😀😁😂", "😀x", "ééé", "ǆ", "Ǆ", "ǅ", "\ud800",
];

describe("compiled RE2 programs (what the proxy runs) match exactly as re2js does", () => {
  it("agrees with re2js's own full match on every pattern × input", () => {
    for (const source of PATTERNS) {
      const program = compileProgram(source);
      expect(isRegexProgram(JSON.parse(JSON.stringify(program)))).toBe(true);
      const reference = RE2JS.compile(source);
      for (const input of INPUTS) {
        expect({ source, input, matches: matchesFully(program, input) }).toEqual({ source, input, matches: reference.testExact(input) });
      }
    }
  });

  it("stays linear on a pattern that makes a backtracking engine take minutes", () => {
    const program = compileProgram("(a|a)*b");
    // 100,000 a's: a backtracking engine would need 2^100000 steps; the VM does one pass.
    expect(matchesFully(program, "a".repeat(100_000))).toBe(false);
    expect(matchesFully(program, `${"a".repeat(100_000)}b`)).toBe(true);
  });

  it("refuses what it cannot run, saying why: invalid RE2, lookbehind, programs past the bounds", () => {
    expect(regexProblem("(")).toMatch(/missing closing \)/);
    expect(regexProblem("a(?=b)")).toBeDefined();
    expect(regexProblem("(?<=a)b")).toBeDefined();
    expect(regexProblem("(?:a{1000}){1000}")).toBeDefined();
    expect(regexProblem(`(?:${"[a-z]{100}".repeat(50)})`)).toMatch(new RegExp(`${MAX_PROGRAM_INSTRUCTIONS}`));
  });

  it("accepts only well-formed programs from a slice: jumps inside the program, known opcodes, ranges in pairs", () => {
    const good = compileProgram("/a+");
    expect(isRegexProgram(good)).toBe(true);
    expect(isRegexProgram({ ...good, start: good.inst.length })).toBe(false);
    expect(isRegexProgram({ start: 0, inst: [[8, 5, 0, [1, 2]]] })).toBe(false);
    expect(isRegexProgram({ start: 0, inst: [[99, 0, 0, []]] })).toBe(false);
    expect(isRegexProgram({ start: 0, inst: [[8, 0, 0, [1]]] })).toBe(false);
    expect(isRegexProgram({ start: 0, inst: [] })).toBe(false);
    expect(isRegexProgram("nope")).toBe(false);
  });
});
