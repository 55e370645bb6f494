/**
 * `weft init`'s plan: a mesh manifest for the workers a project already has. One service per worker,
 * each service binding between the project's workers becomes a `calls` entry (the caller's identity
 * on the callee's proxy), and workers with routes or that no other worker calls are public. Pure: the
 * command reads the configs and writes the file.
 */
import path from "node:path";
import type { ManifestInput, ManifestServiceInput } from "../manifest/schema.ts";
import type { ProjectWorker, UnreadableConfig } from "./workers.ts";

/** Where `weft generate` and `weft deploy` write in a user's project: a folder Weft owns. */
export const PROJECT_FILES = {
  config: ".weft/deploy/mesh.json",
  proxy: ".weft/deploy/proxy/wrangler.toml",
  workers: ".weft/deploy/workers",
} as const;

/** The compatibility date of the proxies init writes (the one the proxy is tested with). */
export const PROXY_COMPATIBILITY_DATE = "2026-11-01";

/** Something init saw and could not map, or mapped in a way the user should know of. */
export interface InitNote {
  worker: string;
  message: string;
}

/** What init found and what it will write. */
export interface InitPlan {
  manifest: ManifestInput;
  services: Array<{ service: string; worker: string; config: string; public: boolean; calls: Record<string, string> }>;
  notes: InitNote[];
}

const NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const SCRIPT_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;
/** A named entrypoint Weft can route: an exported class name (the manifest's `entrypoints`). */
const ENTRYPOINT = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/;

/** A mesh name (a DNS label) for a worker name: lowercase, other characters as '-', at most 63. */
export function serviceNameOf(worker: string): string {
  const name = worker
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return name || "worker";
}

/** An env binding name for the proxy's binding to a worker: `product-api` → `PRODUCT_API`. */
export function bindingNameOf(worker: string): string {
  const name = worker.toUpperCase().replace(/[^A-Z0-9_]+/g, "_");
  return /^[A-Z_]/.test(name) ? name : `W_${name}`;
}

/** Plans the manifest for `workers` (read from `root`). */
export function planInit(root: string, workers: ReadonlyArray<ProjectWorker>, unreadable: ReadonlyArray<UnreadableConfig> = []): InitPlan {
  const notes: InitNote[] = unreadable.map((u) => ({ worker: path.relative(root, u.configPath), message: `not read: ${u.reason}` }));
  const byName = new Map<string, ProjectWorker>();
  for (const worker of workers) {
    if (!SCRIPT_NAME.test(worker.name)) {
      notes.push({ worker: worker.name, message: "not a name Cloudflare deploys (lowercase letters, digits, '-' and '_'): left out" });
      continue;
    }
    const seen = byName.get(worker.name);
    if (seen) {
      notes.push({ worker: worker.name, message: `defined twice (${path.relative(root, seen.configPath)} and ${path.relative(root, worker.configPath)}); the first is used` });
      continue;
    }
    byName.set(worker.name, worker);
  }
  const serviceOf = new Map<string, string>();
  const taken = new Set<string>();
  for (const name of byName.keys()) {
    let service = serviceNameOf(name);
    for (let i = 2; taken.has(service); i++) service = `${serviceNameOf(name).slice(0, 60)}-${i}`;
    taken.add(service);
    serviceOf.set(name, service);
    if (service !== name) notes.push({ worker: name, message: `named '${service}' in the mesh (service names are DNS labels)` });
  }
  const calledByOthers = new Set<string>();
  /** Named entrypoints other workers bind to, per worker: its proxy gets a binding to each. */
  const entrypointsOf = new Map<string, Set<string>>();
  for (const worker of byName.values()) {
    for (const s of worker.serviceBindings) {
      if (s.service !== worker.name && byName.has(s.service)) calledByOthers.add(s.service);
      if (s.entrypoint && s.entrypoint !== "default" && byName.has(s.service) && ENTRYPOINT.test(s.entrypoint)) {
        const names = entrypointsOf.get(s.service) ?? new Set<string>();
        entrypointsOf.set(s.service, names.add(s.entrypoint));
      }
    }
  }

  const services: InitPlan["services"] = [];
  const manifestServices: ManifestServiceInput[] = [];
  for (const worker of byName.values()) {
    const service = serviceOf.get(worker.name) ?? serviceNameOf(worker.name);
    const calls: Record<string, string> = {};
    for (const binding of worker.serviceBindings) {
      const callee = serviceOf.get(binding.service);
      if (!callee) {
        notes.push({ worker: worker.name, message: `binding ${binding.binding} → '${binding.service}': not a worker of this project; it stays a direct binding, outside the mesh` });
        continue;
      }
      if (binding.entrypoint && binding.entrypoint !== "default" && !ENTRYPOINT.test(binding.entrypoint)) {
        notes.push({ worker: worker.name, message: `binding ${binding.binding} → '${binding.service}' (entrypoint ${binding.entrypoint.slice(0, 64)}): not an exported class name; it stays a direct binding, outside the mesh` });
        continue;
      }
      // A named entrypoint is reached through the callee's proxy too: weft dev/deploy give the binding props.entrypoint.
      calls[binding.binding] = callee;
    }
    for (const kind of worker.otherBindings) notes.push({ worker: worker.name, message: `${kind}: kept as configured (not routed through the mesh)` });
    if (worker.environments.length > 0) {
      notes.push({ worker: worker.name, message: `environments (${worker.environments.join(", ")}) are not mapped: the mesh uses the top-level config` });
    }
    if (!worker.main) notes.push({ worker: worker.name, message: "no `main` (assets only): its proxy forwards to its static assets" });
    const isPublic = worker.routes.length > 0 || !calledByOthers.has(worker.name);
    const entrypoints = [...(entrypointsOf.get(worker.name) ?? [])].sort();
    services.push({ service, worker: worker.name, config: path.relative(root, worker.configPath), public: isPublic, calls });
    manifestServices.push({
      name: service,
      description: `The worker '${worker.name}' (${path.relative(root, worker.configPath)}).`,
      ...(isPublic ? { public: true } : {}),
      ...(worker.routes.length > 0 ? { publicRoutes: worker.routes.map((pattern) => ({ pattern })) } : {}),
      backends: [
        {
          name: service,
          type: "worker",
          binding: bindingNameOf(worker.name),
          script: worker.name,
          ...(Object.keys(calls).length > 0 ? { calls } : {}),
          ...(entrypoints.length > 0 ? { entrypoints } : {}),
        },
      ],
      routes: [{ name: "all", match: { path: "/*" }, split: { weights: { [service]: 100 } } }],
    });
  }
  return {
    manifest: {
      manifestVersion: 1,
      files: { ...PROJECT_FILES },
      proxy: { compatibilityDate: PROXY_COMPATIBILITY_DATE },
      services: manifestServices,
    },
    services,
    notes,
  };
}

/** True when `name` is a valid mesh name (exported for tests of {@link serviceNameOf}). */
export function isServiceName(name: string): boolean {
  return NAME.test(name);
}

/** The workers other workers call (their scripts), with the named entrypoints they are called on: what {@link withRpcProperties} needs learnt. */
export function rpcCallees(plan: InitPlan): Array<{ script: string; entrypoints: string[] }> {
  const called = new Set(plan.services.flatMap((s) => Object.values(s.calls)));
  return plan.manifest.services.flatMap((service) =>
    called.has(service.name)
      ? service.backends.flatMap((b) => (b.type === "worker" && b.script ? [{ script: b.script, entrypoints: [...(b.entrypoints ?? [])] }] : []))
      : [],
  );
}

/**
 * The plan with each callee's RPC properties declared (`proxy.rpcProperties`), as learnt from its
 * code (cli/project/rpc-members.ts), and a note for each worker whose module could not be read.
 */
export function withRpcProperties(plan: InitPlan, found: { properties: ReadonlyMap<string, string[]>; unreadable: ReadonlyArray<{ worker: string; reason: string }> }): InitPlan {
  const services = plan.manifest.services.map((service): ManifestServiceInput => {
    const names = service.backends.flatMap((b) => (b.type === "worker" && b.script ? (found.properties.get(b.script) ?? []) : []));
    return names.length === 0 ? service : { ...service, proxy: { ...service.proxy, rpcProperties: [...new Set(names)] } };
  });
  const learnt = [...found.properties].map(([worker, names]) => ({ worker, message: `RPC properties learnt from its exports (read, not called, through the proxy): ${names.join(", ")}` }));
  const unread = found.unreadable.map((u) => ({ worker: u.worker, message: `RPC properties not learnt: ${u.reason}; declare any in proxy.rpcProperties by hand` }));
  return { ...plan, manifest: { ...plan.manifest, services }, notes: [...plan.notes, ...learnt, ...unread] };
}
