/**
 * Where things are in a JSON file: the line of every value by JSON pointer, so findings and
 * validation errors can say `weft.manifest.json:57` instead of only a path.
 */

/** RFC 6901 pointer of a path: `["services", 1, "a/b"]` → `/services/1/a~1b`. */
export function pointerOf(path: ReadonlyArray<string | number>): string {
  return path.map((part) => `/${String(part).replaceAll("~", "~0").replaceAll("/", "~1")}`).join("");
}

/**
 * Line (1-based) of every value in `text` (valid JSON) by pointer; for object members, the line of
 * the member's key. The root is `""`.
 */
export function jsonLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let i = 0;
  let line = 1;
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i] ?? "")) {
      if (text[i] === "\n") line++;
      i++;
    }
  };
  const readString = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (pointer: string): void => {
    skipSpace();
    if (!lines.has(pointer)) lines.set(pointer, line);
    const c = text[i];
    if (c === "{") {
      i++;
      skipSpace();
      while (text[i] !== "}" && i < text.length) {
        skipSpace();
        const keyLine = line;
        const key = readString();
        const child = `${pointer}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`;
        lines.set(child, keyLine);
        skipSpace();
        i++; // ':'
        value(child);
        skipSpace();
        if (text[i] === ",") i++;
        skipSpace();
      }
      i++;
    } else if (c === "[") {
      i++;
      skipSpace();
      let index = 0;
      while (text[i] !== "]" && i < text.length) {
        value(`${pointer}/${index++}`);
        skipSpace();
        if (text[i] === ",") i++;
        skipSpace();
      }
      i++;
    } else if (c === '"') {
      readString();
    } else {
      while (i < text.length && !/[\s,}\]]/.test(text[i] ?? "")) i++;
    }
  };
  value("");
  return lines;
}

/** The line of `pointer`, or of its nearest ancestor that exists (a missing key is reported where its parent is). */
export function lineOf(lines: ReadonlyMap<string, number>, pointer: string): number | undefined {
  for (let p = pointer; ; p = p.slice(0, p.lastIndexOf("/"))) {
    const found = lines.get(p);
    if (found !== undefined) return found;
    if (p === "") return undefined;
  }
}
