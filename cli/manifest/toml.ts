/**
 * Writing wrangler's TOML: values in the inline style the repository's configs use, and replacing
 * one key of one section of a hand-written config while leaving every other line (comments
 * included) as it was.
 */
import { isDeepStrictEqual } from "node:util";
import { parse as parseToml } from "smol-toml";

/** A parsed TOML document as plain JSON values (smol-toml returns null-prototype objects). */
export function parsePlainToml(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parseToml(text))) as Record<string, unknown>;
}

/** A TOML value this module writes. */
export type TomlValue = string | number | boolean | TomlValue[] | { [key: string]: TomlValue };

/** `value` as a TOML value; throws on what TOML cannot hold (null, undefined, functions). */
export function toToml(value: unknown): TomlValue {
  if (typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) return value;
  if (Array.isArray(value)) return value.map(toToml);
  if (typeof value === "object" && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toToml(v)]));
  throw new Error(`TOML cannot hold ${String(value)}`);
}

function key(name: string): string {
  return /^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name);
}

/**
 * One value on one line: `"text"`, `[1, 2]`, `{ a = "b", c = 1 }`. JSON's string escapes are all
 * valid TOML basic-string escapes, so strings are written with JSON.stringify.
 */
export function inline(value: TomlValue): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return `[${value.map(inline).join(", ")}]`;
  const members = Object.entries(value).map(([k, v]) => `${key(k)} = ${inline(v)}`);
  return members.length === 0 ? "{}" : `{ ${members.join(", ")} }`;
}

/** `name = [` + one element per line + `]`, or `name = []`; `comment` follows the opening bracket. */
export function multilineArray(name: string, items: ReadonlyArray<TomlValue>, comment?: string): string[] {
  const suffix = comment ? ` # ${comment}` : "";
  if (items.length === 0) return [`${key(name)} = []${suffix}`];
  return [`${key(name)} = [${suffix}`, ...items.map((item) => `  ${inline(item)},`), "]"];
}

/** One key/value line range of a section. */
interface KeyRange {
  key: string;
  start: number;
  end: number;
}

/** Brackets opened minus closed on a line, ignoring strings and comments. */
function depthChange(line: string): number {
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "#") break;
    if (c === '"' || c === "'") {
      const quote = c;
      i++;
      while (i < line.length && line[i] !== quote) i += quote === '"' && line[i] === "\\" ? 2 : 1;
    } else if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") depth--;
  }
  return depth;
}

/** The key/value ranges directly in `section` (`""` = top level, `env.v1` = `[env.v1]`), and where the section's header is. */
function sectionKeys(lines: ReadonlyArray<string>, section: string): { header: number; keys: KeyRange[] } {
  let current = "";
  let header = section === "" ? -1 : -2;
  const keys: KeyRange[] = [];
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] ?? "";
    const head = /^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$/.exec(text);
    if (head) {
      current = text.trimStart().startsWith("[[") ? `[[${head[1] ?? ""}]]` : (head[1] ?? "").replace(/\s*\.\s*/g, ".");
      if (current === section) header = i;
      continue;
    }
    const assignment = /^\s*("[^"]*"|[A-Za-z0-9_-]+)\s*=/.exec(text);
    if (!assignment) continue;
    let depth = depthChange(text);
    let end = i;
    while (depth > 0 && end + 1 < lines.length) depth += depthChange(lines[++end] ?? "");
    if (current === section) keys.push({ key: (assignment[1] ?? "").replace(/^"|"$/g, ""), start: i, end });
    i = end;
  }
  return { header, keys };
}

function tableAt(document: Record<string, unknown>, section: string): Record<string, unknown> | undefined {
  let table: unknown = document;
  for (const part of section === "" ? [] : section.split(".")) {
    table = typeof table === "object" && table !== null ? (table as Record<string, unknown>)[part] : undefined;
  }
  return typeof table === "object" && table !== null && !Array.isArray(table) ? (table as Record<string, unknown>) : undefined;
}

/**
 * Sets `name` in `section` of a TOML document to the given lines (`name = ...`), replacing the
 * key's current lines or adding them after the section's last key. Everything else stays as
 * written. The result is parsed again and compared with the original: if anything but that key
 * changed (a layout this function does not understand), it throws instead of writing a broken file.
 */
export function setSectionKey(text: string, section: string, name: string, replacement: ReadonlyArray<string>, expected: TomlValue): string {
  const lines = text.split("\n");
  const { header, keys } = sectionKeys(lines, section);
  if (header === -2) throw new Error(`no [${section}] section`);
  const existing = keys.find((k) => k.key === name);
  if (existing) lines.splice(existing.start, existing.end - existing.start + 1, ...replacement);
  else {
    const last = keys[keys.length - 1];
    lines.splice(last ? last.end + 1 : header + 1, 0, ...(last ? ["", ...replacement] : replacement));
  }
  const result = lines.join("\n");
  const before = parsePlainToml(text);
  const after = parsePlainToml(result);
  const afterTable = tableAt(after, section);
  const beforeTable = tableAt(before, section);
  if (!afterTable || !isDeepStrictEqual(afterTable[name], JSON.parse(JSON.stringify(expected)))) throw new Error(`could not set ${name} in [${section || "top level"}]`);
  if (beforeTable && name in beforeTable) afterTable[name] = beforeTable[name];
  else delete afterTable[name];
  if (!isDeepStrictEqual(before, after)) throw new Error(`setting ${name} in [${section || "top level"}] would change other settings`);
  return result;
}
