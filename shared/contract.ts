/**
 * Per-route body contracts: a JSON Schema for request and/or response bodies, either logged
 * (`log`) or enforced (`enforce`: the proxy answers 422 and forwards nothing).
 *
 * Validation uses @cfworker/json-schema because Workers forbid `eval`/`new Function`, which
 * code-generating validators need. It interprets the schema on every check, so "compiling" here
 * means the one-off work: cloning, indexing every subschema by URI (`dereference`) and proving
 * that every `$ref` and regex is usable, so a check never throws on a stored contract.
 */
import { dereference, validate, type OutputUnit, type Schema, type SchemaDraft } from "@cfworker/json-schema";
import { parseJson } from "./json.ts";
import type { JsonSchemaDocument, RouteContract } from "./policy-schemas.ts";

/** Errors reported per failed check: enough to fix a payload, few enough for a log line. */
export const MAX_CONTRACT_ERRORS = 10;

/** Meta-schema URIs we accept in `$schema`, normalised (no scheme, no trailing `#`). */
const DRAFTS: Readonly<Record<string, SchemaDraft>> = {
  "json-schema.org/draft/2020-12/schema": "2020-12",
  "json-schema.org/draft/2019-09/schema": "2019-09",
  "json-schema.org/draft-07/schema": "7",
  "json-schema.org/draft-04/schema": "4",
};

const INSTANCE_TYPES = new Set(["array", "boolean", "integer", "null", "number", "object", "string"]);

interface CompiledSchema {
  readonly schema: Schema;
  readonly draft: SchemaDraft;
  readonly lookup: Record<string, Schema | boolean>;
}

type Compilation = { kind: "compiled"; compiled: CompiledSchema } | { kind: "invalid"; message: string };

/**
 * The library reports locations as URI fragments (`#/items/1`, keys percent-encoded); operators
 * and clients expect plain JSON pointers (`/items/1`).
 */
function toJsonPointer(fragment: string): string {
  const hash = fragment.indexOf("#");
  const raw = hash === -1 ? "" : fragment.slice(hash + 1);
  try {
    // The library percent-encodes `#` separately from encodeURI, which decodeURI would leave alone.
    return decodeURI(raw.replace(/%23/g, "#"));
  } catch {
    return raw;
  }
}

function where(schema: Schema): string {
  const pointer = toJsonPointer(schema.__absolute_uri__ ?? "");
  return pointer === "" ? "at the schema root" : `at ${pointer}`;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Checks one subschema for what the validator would only discover (by throwing) mid-check. */
function unusable(schema: Schema, lookup: Record<string, Schema | boolean>): string | undefined {
  if (Object.hasOwn(schema, "$dynamicRef")) {
    return `"$dynamicRef" ${where(schema)} is not supported by the validator; use "$ref"`;
  }
  const ref: unknown = schema.$ref;
  if (ref !== undefined) {
    if (typeof ref !== "string") return `"$ref" ${where(schema)} must be a string`;
    if (lookup[schema.__absolute_ref__ ?? ref] === undefined) {
      return `"$ref": "${ref}" ${where(schema)} does not resolve within this schema (remote schemas are never fetched; put shared definitions under "$defs")`;
    }
  }
  const type: unknown = schema.type;
  const types: unknown[] = Array.isArray(type) ? type : type === undefined ? [] : [type];
  for (const t of types) {
    if (typeof t !== "string" || !INSTANCE_TYPES.has(t)) {
      return `"type" ${where(schema)} must be one of ${[...INSTANCE_TYPES].join(", ")}`;
    }
  }
  const required: unknown = schema.required;
  if (required !== undefined && !(Array.isArray(required) && required.every((r) => typeof r === "string"))) {
    return `"required" ${where(schema)} must be an array of property names`;
  }
  const patterns: unknown[] = [schema.pattern, ...Object.keys(schema.patternProperties ?? {})];
  for (const pattern of patterns) {
    if (pattern === undefined) continue;
    if (typeof pattern !== "string") return `"pattern" ${where(schema)} must be a string`;
    if (pattern.length > MAX_PATTERN_LENGTH) return `pattern ${where(schema)} is longer than ${MAX_PATTERN_LENGTH} characters`;
    try {
      // Same flags as the validator, so a pattern accepted here is one it can run.
      new RegExp(pattern, "u");
    } catch (error) {
      return `pattern ${JSON.stringify(pattern)} ${where(schema)} is not a valid regular expression: ${describeError(error)}`;
    }
    const risk = backtrackingRisk(pattern);
    if (risk !== undefined) return `pattern ${JSON.stringify(pattern)} ${where(schema)} is refused: ${risk}`;
  }
  return undefined;
}

/** Longest `pattern` / `patternProperties` key accepted. */
export const MAX_PATTERN_LENGTH = 1_000;

interface GroupFrame {
  /** A quantifier other than an exact count `{n}` appears inside (at any depth). */
  quantified: boolean;
  /** A `|` appears inside (at any depth). */
  alternation: boolean;
}

/** Parses a quantifier at `i`: its length and whether it repeats (may match its atom more than once); undefined if none. */
function quantifierAt(pattern: string, i: number): { length: number; repeats: boolean; exact: boolean } | undefined {
  const c = pattern[i];
  let length: number;
  let repeats: boolean;
  let exact = false;
  if (c === "*" || c === "+") [length, repeats] = [1, true];
  else if (c === "?") [length, repeats] = [1, false];
  else if (c === "{") {
    const match = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i, i + 24));
    if (!match) return undefined;
    const min = Number(match[1]);
    const max = match[2] === undefined ? min : match[3] === "" ? Infinity : Number(match[3]);
    [length, repeats, exact] = [match[0].length, max > 1, match[2] === undefined];
  } else return undefined;
  // A lazy marker belongs to the quantifier.
  if (pattern[i + length] === "?") length++;
  return { length, repeats, exact };
}

/**
 * Why a pattern could backtrack catastrophically on the JavaScript engine, or undefined when it is
 * safe by construction. Conservative (as static checks must be): a repeated group may contain
 * neither another quantifier nor an alternation (`(a+)+`, `(a|a)*`, `(\w+\s?)*` are refused;
 * `^[a-z]+(-[a-z]+)?$`, `(ab){3}`, `^(GET|POST)$` are accepted), and backreferences are refused. The
 * validator runs JavaScript's backtracking engine (Workers cannot load RE2), so refusing such
 * patterns when a contract is written is what keeps a 27-character string from costing seconds.
 */
export function backtrackingRisk(pattern: string): string | undefined {
  const stack: GroupFrame[] = [{ quantified: false, alternation: false }];
  let lastGroup: GroupFrame | undefined;
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    const top = stack[stack.length - 1] ?? { quantified: false, alternation: false };
    if (c === "\\") {
      const next = pattern[i + 1] ?? "";
      if (/[1-9]/.test(next) || next === "k") return "backreferences are not supported";
      // \u{…} and \p{…} carry braces that are not quantifiers.
      const braced = (next === "u" || next === "p" || next === "P") && pattern[i + 2] === "{" ? pattern.indexOf("}", i) : -1;
      i = braced >= 0 ? braced + 1 : i + 2;
      lastGroup = undefined;
      continue;
    }
    if (c === "[") {
      i++;
      while (i < pattern.length && pattern[i] !== "]") i += pattern[i] === "\\" ? 2 : 1;
      i++;
      lastGroup = undefined;
      continue;
    }
    if (c === "(") {
      stack.push({ quantified: false, alternation: false });
      // Skip a group's prefix (`(?:`, `(?=`, `(?!`, `(?<=`, `(?<!`, `(?<name>`): its `?` is no quantifier.
      if (pattern[i + 1] !== "?") i++;
      else if (pattern[i + 2] === "<" && pattern[i + 3] !== "=" && pattern[i + 3] !== "!") i = pattern.indexOf(">", i) + 1;
      else i += pattern[i + 2] === "<" ? 4 : 3;
      lastGroup = undefined;
      continue;
    }
    if (c === ")") {
      const closed = stack.length > 1 ? stack.pop() : undefined;
      const parent = stack[stack.length - 1];
      if (closed && parent) {
        parent.quantified ||= closed.quantified;
        parent.alternation ||= closed.alternation;
      }
      lastGroup = closed;
      i++;
      continue;
    }
    if (c === "|") {
      top.alternation = true;
      lastGroup = undefined;
      i++;
      continue;
    }
    const quantifier = quantifierAt(pattern, i);
    if (quantifier) {
      if (quantifier.repeats && lastGroup && (lastGroup.quantified || lastGroup.alternation)) {
        return lastGroup.quantified
          ? "a repeated group contains another quantifier (nested repetition backtracks exponentially)"
          : "a repeated group contains an alternation (overlapping branches backtrack exponentially)";
      }
      if (!quantifier.exact) top.quantified = true;
      lastGroup = undefined;
      i += quantifier.length;
      continue;
    }
    lastGroup = undefined;
    i++;
  }
  return undefined;
}

/** Compiles a schema document once, or says why the validator cannot use it. */
export function compileSchema(document: Readonly<Record<string, unknown>>): Compilation {
  const declared = document.$schema;
  let draft: SchemaDraft = "2020-12";
  if (declared !== undefined) {
    const known = typeof declared === "string" ? DRAFTS[declared.replace(/^https?:\/\//, "").replace(/#$/, "")] : undefined;
    if (known === undefined) {
      return {
        kind: "invalid",
        message: `unsupported "$schema" ${JSON.stringify(declared)}: omit it (draft 2020-12) or name draft 2020-12, 2019-09, 07 or 04`,
      };
    }
    draft = known;
  }
  try {
    // dereference() writes bookkeeping properties into the schema objects: work on a private copy
    // so the parsed config (stored, hashed, echoed back to operators) is never touched.
    // The cast is the library's boundary: it takes any object and reports problems by throwing.
    const schema = structuredClone(document) as Schema;
    const lookup = dereference(schema);
    for (const sub of Object.values(lookup)) {
      if (typeof sub === "boolean") continue;
      const problem = unusable(sub, lookup);
      if (problem !== undefined) return { kind: "invalid", message: problem };
    }
    return { kind: "compiled", compiled: { schema, draft, lookup } };
  } catch (error) {
    return { kind: "invalid", message: `the schema cannot be used: ${describeError(error)}` };
  }
}

/** One violation: where in the body (a JSON pointer, `""` for the whole body) and what is wrong. */
export interface ContractViolation {
  path: string;
  message: string;
}

/** Result of checking one body. `skip`: the contract has no schema for that direction. */
export type ContractCheck = { kind: "pass" } | { kind: "skip" } | { kind: "fail"; errors: ContractViolation[] };

/** Checks one parsed JSON body against one direction of a compiled contract. */
export type BodyCheck = (body: unknown) => ContractCheck;

/** A contract ready for checking; build once per config version with {@link compileContract}. */
export interface CompiledContract {
  readonly mode: RouteContract["mode"];
  /** Whether request bodies are checked: when false the proxy need not buffer them. */
  readonly checksRequest: boolean;
  /** Whether response bodies are checked: when false the proxy need not buffer them. */
  readonly checksResponse: boolean;
  readonly checkRequest: BodyCheck;
  readonly checkResponse: BodyCheck;
}

// One shared function, so checkJsonBody can recognise "no schema" and skip parsing the body.
const skipCheck: BodyCheck = () => ({ kind: "skip" });

// Errors that only say "something below failed"; their children carry the useful message.
// Each always comes immediately before at least one child error.
const WRAPPERS = new Set([
  "$ref",
  "$recursiveRef",
  "allOf",
  "properties",
  "patternProperties",
  "additionalProperties",
  "unevaluatedProperties",
  "items",
  "prefixItems",
  "additionalItems",
  "unevaluatedItems",
  "dependentSchemas",
  "if",
]);

/** Reduces the library's error tree to its leaves, first {@link MAX_CONTRACT_ERRORS} only. */
function violations(errors: readonly OutputUnit[]): ContractViolation[] {
  const out: ContractViolation[] = [];
  for (let i = 0; i < errors.length && out.length < MAX_CONTRACT_ERRORS; i++) {
    const error = errors[i];
    if (error === undefined) continue;
    const next = errors[i + 1];
    if (WRAPPERS.has(error.keyword) && next !== undefined) {
      // A `false` subschema's own error ("False boolean schema.") says nothing; the wrapper's does.
      if (next.keyword === "false") {
        out.push({
          path: toJsonPointer(next.instanceLocation),
          message: `${error.error.replace(/\.$/, "")}: no value is allowed here.`,
        });
        i++;
      }
      continue;
    }
    const message = error.keyword === "false" ? "No value is allowed here." : error.error;
    out.push({ path: toJsonPointer(error.instanceLocation), message });
  }
  return out;
}

function checker(compiled: CompiledSchema): BodyCheck {
  return (body) => {
    try {
      // shortCircuit off: report up to MAX_CONTRACT_ERRORS problems at once, not just the first.
      const result = validate(body, compiled.schema, compiled.draft, compiled.lookup, false);
      return result.valid ? { kind: "pass" } : { kind: "fail", errors: violations(result.errors) };
    } catch (error) {
      // Only reachable with values JSON cannot produce (undefined, functions) or absurdly deep bodies.
      return { kind: "fail", errors: [{ path: "", message: `The body could not be checked: ${describeError(error)}` }] };
    }
  };
}

function compileDirection(document: JsonSchemaDocument | undefined, direction: string): BodyCheck {
  if (document === undefined) return skipCheck;
  const compilation = compileSchema(document);
  if (compilation.kind === "invalid") {
    throw new TypeError(`${direction} schema is invalid (was it parsed with RouteContract?): ${compilation.message}`);
  }
  return checker(compilation.compiled);
}

/**
 * Compiles a parsed {@link RouteContract} once; the returned checks never recompile. Throws a
 * TypeError only for a schema that {@link RouteContract} would have refused.
 */
export function compileContract(contract: RouteContract): CompiledContract {
  return {
    mode: contract.mode,
    checksRequest: contract.request !== undefined,
    checksResponse: contract.response !== undefined,
    checkRequest: compileDirection(contract.request, "request"),
    checkResponse: compileDirection(contract.response, "response"),
  };
}

/**
 * Parses a body's text and checks it. Text that is not JSON, or nests deeper than `MAX_JSON_DEPTH`,
 * fails with one error at the root (the proxy answers 422 in enforce mode); the
 * parser's own message is left out because it quotes the body, which may hold personal data.
 * With a contract's `checkRequest`/`checkResponse` for a direction without a schema, the text is
 * not even parsed and the result is `skip`.
 */
export function checkJsonBody(text: string, check: BodyCheck): ContractCheck {
  if (check === skipCheck) return { kind: "skip" };
  const parsed = parseJson(text);
  if (parsed.kind === "too-deep") {
    // Refused before parsing: the validator walks the body recursively and would overflow the stack.
    return { kind: "fail", errors: [{ path: "", message: `The body nests deeper than ${parsed.maxDepth} levels.` }] };
  }
  if (parsed.kind === "invalid") {
    const message = text.trim() === "" ? "The body is empty; a JSON document is expected." : "The body is not valid JSON.";
    return { kind: "fail", errors: [{ path: "", message }] };
  }
  return check(parsed.value);
}
