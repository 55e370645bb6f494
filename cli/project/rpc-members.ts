/**
 * Learning which RPC members of a project's workers are properties, for `weft init`.
 *
 * A proxy cannot tell a property read (`await env.USERS.version`) from a method call: both reach it
 * as a name. So the properties are declared per service (`proxy.rpcProperties` in the manifest), and
 * `weft init` fills that list from the callees' own code: it bundles each worker other workers call
 * (as `weft dev` does), loads the module on workerd, and reads the getters of its default export
 * and of the named entrypoints others bind to — from the classes' prototypes (up to
 * `WorkerEntrypoint`) and, for a default-export object, its getters and non-function values.
 *
 * What it cannot see: class fields and properties a constructor assigns (they exist only on an
 * instance, and instantiating an entrypoint needs a real request), and members added at run time.
 * Declare those by hand. A module that does not load without its bindings is reported, not guessed.
 */
import path from "node:path";
import type { Miniflare, V4WorkerOptions as WorkerOptions } from "miniflare";
import { bundleMains, loadMiniflare } from "../../scripts/mesh.ts";
import type { ProjectWorker, WranglerApi } from "./workers.ts";

/** One worker to inspect, and the named entrypoints other workers bind to. */
export interface RpcCallee {
  worker: ProjectWorker;
  entrypoints: ReadonlyArray<string>;
}

/** What was learnt: property names per worker (`version`, `Admin.flags`), and workers that could not be read. */
export interface RpcMembersFound {
  properties: Map<string, string[]>;
  unreadable: Array<{ worker: string; reason: string }>;
}

/** Properties listed per service at most (the manifest's bound). */
const MAX_PROPERTIES = 64;
const PROPERTY = /^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/;

/**
 * The inspecting module, run beside the worker's own bundled code: lists, per export, the member
 * names that are properties. JavaScript for workerd, kept as text.
 */
const INSPECTOR = `import { WorkerEntrypoint } from "cloudflare:workers";
import * as exported from "./__weft_worker.js";
const STOP = new Set([Object.prototype, Function.prototype, WorkerEntrypoint.prototype]);
function properties(value) {
  const names = new Set();
  if (typeof value === "function") {
    for (let proto = value.prototype; proto && !STOP.has(proto); proto = Object.getPrototypeOf(proto)) {
      for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(proto))) if (d.get) names.add(name);
    }
  } else if (typeof value === "object" && value !== null) {
    for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(value))) if (d.get || typeof d.value !== "function") names.add(name);
  }
  return [...names];
}
export default {
  fetch() {
    const out = {};
    for (const [name, value] of Object.entries(exported)) out[name] = properties(value);
    return Response.json(out);
  },
};`;

function isMemberList(value: unknown): value is Record<string, string[]> {
  return typeof value === "object" && value !== null && Object.values(value).every((v) => Array.isArray(v) && v.every((n) => typeof n === "string"));
}

/** The property names a callee's proxy must answer as reads, from what its exports hold (pure). */
export function propertyNames(members: Readonly<Record<string, ReadonlyArray<string>>>, entrypoints: ReadonlyArray<string>): string[] {
  const names = [...(members.default ?? []).filter((n) => PROPERTY.test(n))];
  for (const entrypoint of entrypoints) names.push(...(members[entrypoint] ?? []).filter((n) => PROPERTY.test(n)).map((n) => `${entrypoint}.${n}`));
  return [...new Set(names)].sort().slice(0, MAX_PROPERTIES);
}

/**
 * Loads each callee's module on workerd (no bindings: only its exports are read) and returns the
 * properties of its default export and named entrypoints. Never throws for one worker's sake.
 */
export async function findRpcProperties(wrangler: WranglerApi, callees: ReadonlyArray<RpcCallee>): Promise<RpcMembersFound> {
  const found: RpcMembersFound = { properties: new Map(), unreadable: [] };
  const withCode = callees.filter((c) => c.worker.main !== undefined);
  if (withCode.length === 0) return found;
  let code: Map<string, string>;
  try {
    code = await bundleMains(withCode.flatMap((c) => (c.worker.main ? [c.worker.main] : [])));
  } catch (error) {
    for (const c of withCode) found.unreadable.push({ worker: c.worker.name, reason: `could not bundle it (${firstLine(error)})` });
    return found;
  }
  const { Miniflare, convertV4MiniflareOptions } = await loadMiniflare();
  // One Miniflare per worker: a module that fails to load must not hide the others' members.
  for (const callee of withCode) {
    const main = callee.worker.main ?? "";
    let mf: Miniflare | undefined;
    try {
      // The worker's own compatibility date and flags (nodejs_compat…), none of its bindings.
      const converted: unknown = wrangler.miniflareWorkerOptions(callee.worker.configPath, callee.worker.env).workerOptions;
      const date: unknown = typeof converted === "object" && converted !== null ? Reflect.get(converted, "compatibilityDate") : undefined;
      const flags: unknown = typeof converted === "object" && converted !== null ? Reflect.get(converted, "compatibilityFlags") : undefined;
      const root = path.dirname(main);
      const worker: WorkerOptions = {
        name: "weft-inspect",
        ...(typeof date === "string" ? { compatibilityDate: date } : {}),
        ...(Array.isArray(flags) ? { compatibilityFlags: flags.filter((f): f is string => typeof f === "string") } : {}),
        modulesRoot: root,
        modules: [
          { type: "ESModule", path: path.join(root, "__weft_inspect.js"), contents: INSPECTOR },
          { type: "ESModule", path: path.join(root, "__weft_worker.js"), contents: code.get(main) ?? "" },
        ],
      };
      mf = new Miniflare(convertV4MiniflareOptions({ host: "127.0.0.1", port: 0, workers: [worker] }));
      const members: unknown = await (await mf.dispatchFetch("http://inspect.local/")).json();
      if (!isMemberList(members)) throw new Error("the inspector answered something else");
      const names = propertyNames(members, callee.entrypoints);
      if (names.length > 0) found.properties.set(callee.worker.name, names);
    } catch (error) {
      found.unreadable.push({ worker: callee.worker.name, reason: `its module did not load on its own (${firstLine(error)})` });
    } finally {
      // A runtime that failed to start has nothing to dispose of, and says so by throwing.
      await mf?.dispose().catch(() => undefined);
    }
  }
  return found;
}

/** The part of an error worth a line: the module's own uncaught error when workerd reports one, else the first line. */
function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const uncaught = /Uncaught ([^\n"\\]*)/.exec(message)?.[1];
  return (uncaught ?? message.split("\n")[0] ?? "").slice(0, 200);
}
