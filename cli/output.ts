/**
 * Terminal output: human text to stdout, diagnostics to stderr, `--json` documents to stdout, colors
 * only on a terminal that wants them (not with NO_COLOR or --no-color, never in pipes).
 */

// eslint-disable-next-line no-control-regex -- ANSI escape sequences start with ESC (0x1b)
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/** SGR codes of the few styles the CLI uses. */
const STYLES = { bold: "1", dim: "2", red: "31", green: "32", yellow: "33", blue: "34", cyan: "36" } as const;
export type Style = keyof typeof STYLES;

/** Applies styles to text, or leaves it plain when colors are off. */
export type Painter = (style: Style | Style[], text: string) => string;

/** A painter that never colors (pipes, files, NO_COLOR). */
export const plain: Painter = (_style, text) => text;

function painter(enabled: boolean): Painter {
  if (!enabled) return plain;
  return (style, text) => {
    const codes = (Array.isArray(style) ? style : [style]).map((s) => STYLES[s]).join(";");
    return `\x1b[${codes}m${text}\x1b[0m`;
  };
}

/** Where and how a command writes. */
export interface Output {
  /** `--json` was given: stdout gets JSON documents only. */
  readonly json: boolean;
  /** stdout is an interactive terminal (redrawing screens, progress bars, prompts). */
  readonly interactive: boolean;
  /** Colors for stdout. */
  readonly paint: Painter;
  /** Colors for stderr. */
  readonly paintErr: Painter;
  /** One line of human output (suppressed with --json). */
  line(text?: string): void;
  /** Raw text to stdout (screen redraws, progress lines); suppressed with --json. */
  write(text: string): void;
  /** One diagnostic line to stderr (always shown). */
  note(text: string): void;
  /** One JSON document (or JSON line of a stream) to stdout. */
  document(value: unknown): void;
}

/** Options deciding colors and terminal behaviour. */
export interface OutputOptions {
  json: boolean;
  noColor: boolean;
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** Builds the process's output from its streams, environment and flags. */
export function createOutput(options: OutputOptions): Output {
  const wantsColor = !options.noColor && !("NO_COLOR" in options.env && options.env.NO_COLOR !== "") && options.env.TERM !== "dumb";
  const interactive = options.stdout.isTTY === true;
  return {
    json: options.json,
    interactive,
    paint: painter(wantsColor && interactive && !options.json),
    paintErr: painter(wantsColor && options.stderr.isTTY === true),
    line: (text = "") => {
      if (!options.json) options.stdout.write(`${text}\n`);
    },
    write: (text) => {
      if (!options.json) options.stdout.write(text);
    },
    note: (text) => {
      options.stderr.write(`${text}\n`);
    },
    document: (value) => {
      options.stdout.write(`${JSON.stringify(value)}\n`);
    },
  };
}

/** Length of text as shown (ANSI color codes take no columns). */
export function visibleLength(text: string): number {
  return text.replace(ANSI, "").length;
}

/** Pads styled text to `width` visible columns. */
export function pad(text: string, width: number, align: "left" | "right" = "left"): string {
  const gap = " ".repeat(Math.max(0, width - visibleLength(text)));
  return align === "left" ? text + gap : gap + text;
}

/** A column of {@link table}: its heading and whether numbers align right. */
export interface Column {
  title: string;
  align?: "left" | "right";
}

/** Rows under headings, columns sized to their widest cell, two spaces apart. */
export function table(columns: ReadonlyArray<Column>, rows: ReadonlyArray<ReadonlyArray<string>>, paint: Painter = plain): string[] {
  const widths = columns.map((c, i) => Math.max(c.title.length, ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const render = (cells: ReadonlyArray<string>): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 && columns[i]?.align !== "right" ? cell : pad(cell, widths[i] ?? 0, columns[i]?.align)))
      .join("  ")
      .trimEnd();
  return [paint("dim", render(columns.map((c) => c.title))), ...rows.map(render)];
}

/** `0.98765` → `98.77%`; null (no requests) → `-`. */
export function formatPercent(share: number | null | undefined, digits = 2): string {
  return share === null || share === undefined ? "-" : `${(share * 100).toFixed(digits)}%`;
}

/** Milliseconds for a table: `12 ms`, `1.2 s`; null → `-`. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "-";
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

/** Requests per second for a table. */
export function formatRps(rps: number | null | undefined): string {
  if (rps === null || rps === undefined) return "-";
  return rps >= 100 ? rps.toFixed(0) : rps.toFixed(2);
}

/** A bar `width` cells wide, `fraction` (0..1) of it filled. Unicode blocks on a terminal, `#` elsewhere. */
export function progressBar(fraction: number, width: number, unicode: boolean): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return unicode ? "█".repeat(filled) + "░".repeat(width - filled) : "#".repeat(filled) + "-".repeat(width - filled);
}

/** A JSON value on one line, cut to `max` characters. */
export function compactJson(value: unknown, max = 100): string {
  const text = value === undefined ? "(none)" : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
