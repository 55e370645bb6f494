/**
 * What applying a config would change, service by service: added and removed services, and inside
 * a service every changed value, with backends, routes and rate limits matched by name (so a
 * reordered list is not a change, except for routes, whose order decides which one matches).
 */
import { isDeepStrictEqual } from "node:util";
import { compactJson, plain, type Painter } from "./output.ts";

/** One difference inside a service. `path` names list items by their name: `["routes", "products", "split"]`. */
export interface ConfigChange {
  service: string;
  kind: "added" | "removed" | "changed";
  path: string[];
  before?: unknown;
  after?: unknown;
}

/** The difference between the live config and the desired one. */
export interface ConfigDiff {
  added: string[];
  removed: string[];
  changed: string[];
  changes: ConfigChange[];
}

/** A config as far as the diff needs it: services with names. */
export interface Comparable {
  services: ReadonlyArray<{ name: string }>;
}

/** Lists inside a service whose items are matched by `name`. */
const NAMED_LISTS = new Set(["backends", "routes", "rateLimits"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function nameOf(item: unknown, index: number): string {
  return isRecord(item) && typeof item.name === "string" ? item.name : `#${index}`;
}

function diffValue(service: string, before: unknown, after: unknown, path: string[], out: ConfigChange[]): void {
  if (isDeepStrictEqual(before, after)) return;
  if (isRecord(before) && isRecord(after)) {
    for (const key of Object.keys(before)) if (!(key in after)) out.push({ service, kind: "removed", path: [...path, key], before: before[key] });
    for (const [key, value] of Object.entries(after)) {
      if (!(key in before)) out.push({ service, kind: "added", path: [...path, key], after: value });
      else diffValue(service, before[key], value, [...path, key], out);
    }
    return;
  }
  if (Array.isArray(before) && Array.isArray(after) && path.length === 1 && NAMED_LISTS.has(path[0] ?? "")) {
    const old = new Map(before.map((item, i) => [nameOf(item, i), item]));
    const next = new Map(after.map((item, i) => [nameOf(item, i), item]));
    for (const [name, item] of old) if (!next.has(name)) out.push({ service, kind: "removed", path: [...path, name], before: item });
    for (const [name, item] of next) {
      if (!old.has(name)) out.push({ service, kind: "added", path: [...path, name], after: item });
      else diffValue(service, old.get(name), item, [...path, name], out);
    }
    if (path[0] === "routes") {
      const kept = (names: string[], other: Map<string, unknown>): string[] => names.filter((n) => other.has(n));
      const [from, to] = [kept([...old.keys()], next), kept([...next.keys()], old)];
      if (!isDeepStrictEqual(from, to)) out.push({ service, kind: "changed", path: [...path, "(order)"], before: from, after: to });
    }
    return;
  }
  out.push({ service, kind: "changed", path, before, after });
}

/** Compares the live config with the desired one (both as the control plane stores them). */
export function diffConfigs(live: Comparable, desired: Comparable): ConfigDiff {
  const old = new Map(live.services.map((s) => [s.name, s]));
  const next = new Map(desired.services.map((s) => [s.name, s]));
  const diff: ConfigDiff = { added: [], removed: [], changed: [], changes: [] };
  for (const [name, service] of old) {
    if (!next.has(name)) {
      diff.removed.push(name);
      diff.changes.push({ service: name, kind: "removed", path: [], before: service });
    }
  }
  for (const [name, service] of next) {
    const before = old.get(name);
    if (!before) {
      diff.added.push(name);
      diff.changes.push({ service: name, kind: "added", path: [], after: service });
      continue;
    }
    const changes: ConfigChange[] = [];
    diffValue(name, before, service, [], changes);
    if (changes.length > 0) {
      diff.changed.push(name);
      diff.changes.push(...changes);
    }
  }
  return diff;
}

/** True when applying would change nothing. */
export function isEmpty(diff: ConfigDiff): boolean {
  return diff.changes.length === 0;
}

/** `["routes", "products", "split", "weights", "pim-v1"]` → `route products › split.weights.pim-v1`. */
export function describeChangePath(path: ReadonlyArray<string>): string {
  const [list, name, ...rest] = path;
  if (list !== undefined && NAMED_LISTS.has(list) && name !== undefined) {
    if (name === "(order)") return "route order";
    const kind = list === "routes" ? "route" : list === "backends" ? "backend" : "rate limit";
    return rest.length > 0 ? `${kind} ${name} › ${rest.join(".")}` : `${kind} ${name}`;
  }
  return path.join(".");
}

function countOf(value: unknown, key: string, noun: string): string {
  const list = isRecord(value) ? value[key] : undefined;
  const n = Array.isArray(list) ? list.length : 0;
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** The diff as lines for a terminal: `+` added, `-` removed, `~` changed, grouped by service. */
export function renderDiff(diff: ConfigDiff, paint: Painter = plain): string[] {
  const lines: string[] = [];
  const services = [...new Set(diff.changes.map((c) => c.service))];
  for (const service of services) {
    const changes = diff.changes.filter((c) => c.service === service);
    const whole = changes.find((c) => c.path.length === 0);
    if (whole?.kind === "added") {
      lines.push(paint("green", `+ ${service}`) + paint("dim", `  (new service: ${countOf(whole.after, "backends", "backend")}, ${countOf(whole.after, "routes", "route")})`));
      continue;
    }
    if (whole?.kind === "removed") {
      lines.push(paint("red", `- ${service}`) + paint("dim", "  (service removed: its proxy will answer 404 until it is redeployed without it)"));
      continue;
    }
    lines.push(paint("yellow", `~ ${service}`));
    for (const change of changes) {
      const where = describeChangePath(change.path);
      if (change.kind === "added") lines.push(paint("green", `    + ${where}: ${compactJson(change.after)}`));
      else if (change.kind === "removed") lines.push(paint("red", `    - ${where}: ${compactJson(change.before)}`));
      else lines.push(`    ${paint("yellow", "~")} ${where}: ${paint("red", compactJson(change.before, 60))} → ${paint("green", compactJson(change.after, 60))}`);
    }
  }
  return lines;
}

/** `2 services changed, 1 added` for a summary line. */
export function summarizeDiff(diff: ConfigDiff): string {
  const parts = [
    diff.changed.length > 0 ? `${diff.changed.length} changed` : "",
    diff.added.length > 0 ? `${diff.added.length} added` : "",
    diff.removed.length > 0 ? `${diff.removed.length} removed` : "",
  ].filter(Boolean);
  return parts.length === 0 ? "no changes" : `services: ${parts.join(", ")}`;
}
