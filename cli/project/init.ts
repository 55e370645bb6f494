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

/** One version of a service mapped from a config's environments: a worker backend deployed with `--env`. */
export interface PlannedVersion {
  backend: string;
  script: string;
  env: string;
  weight: number;
}

/** What init found and what it will write. */
export interface InitPlan {
  manifest: ManifestInput;
  services: Array<{ service: string; worker: string; config: string; public: boolean; calls: Record<string, string>; versions?: PlannedVersion[] }>;
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

/** Whether a config's environments map to versions of one service, and if not, why not. */
export type EnvironmentMapping = { kind: "versions"; workers: ProjectWorker[] } | { kind: "not-mapped"; reason: string };

/**
 * The environments of one config as versions of one service — the way a user runs versions of one
 * worker (`weft-pim` deployed as `weft-pim-v1`, `weft-pim-v2`): only when every environment was read,
 * resolves to its own deployable name that no other worker of the project has, and has no routes of
 * its own (a routed environment is a separate deployment, e.g. staging, not a version behind one proxy).
 */
export function mapEnvironments(top: ProjectWorker, envWorkers: ReadonlyArray<ProjectWorker>, otherNames: ReadonlySet<string>): EnvironmentMapping {
  const read = top.environments.flatMap((env) => envWorkers.filter((w) => w.env === env));
  if (read.length !== top.environments.length) {
    const missing = top.environments.filter((env) => !envWorkers.some((w) => w.env === env));
    return { kind: "not-mapped", reason: `${missing.join(", ")} ${missing.length === 1 ? "has" : "have"} no name of its own or could not be read` };
  }
  const routed = read.filter((w) => w.routes.length > 0);
  if (routed.length > 0) return { kind: "not-mapped", reason: `${routed.map((w) => w.env ?? "").join(", ")} ${routed.length === 1 ? "has" : "have"} routes (a separate deployment, not a version)` };
  const odd = read.filter((w) => !SCRIPT_NAME.test(w.name) || otherNames.has(w.name));
  if (odd.length > 0) return { kind: "not-mapped", reason: `${odd.map((w) => `${w.env ?? ""} (${w.name})`).join(", ")}: not a deployable name, or one another worker has` };
  return { kind: "versions", workers: read };
}

/** Plans the manifest for `workers` (read from `root`; environments' workers carry `env`). */
export function planInit(root: string, workers: ReadonlyArray<ProjectWorker>, unreadable: ReadonlyArray<UnreadableConfig> = []): InitPlan {
  const notes: InitNote[] = unreadable.map((u) => ({ worker: path.relative(root, u.configPath), message: `not read: ${u.reason}` }));
  const byName = new Map<string, ProjectWorker>();
  for (const worker of workers) {
    if (worker.env !== undefined) continue;
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
  /** The configs whose environments become versions of one service, by top-level worker name. */
  const versionsOf = new Map<string, ProjectWorker[]>();
  for (const top of byName.values()) {
    if (top.environments.length === 0) continue;
    const envWorkers = workers.filter((w) => w.env !== undefined && w.configPath === top.configPath);
    const others = new Set([...workers.filter((w) => w.configPath !== top.configPath).map((w) => w.name), top.name]);
    const mapping = mapEnvironments(top, envWorkers, others);
    if (mapping.kind === "versions") versionsOf.set(top.name, mapping.workers);
    else notes.push({ worker: top.name, message: `environments (${top.environments.join(", ")}) are not mapped: ${mapping.reason}; the mesh uses the top-level config` });
  }
  /** Every script a service stands for: its worker, or its environments' workers (and their top-level name). */
  const scriptsOf = (top: ProjectWorker): ProjectWorker[] => versionsOf.get(top.name) ?? [top];
  const serviceOf = new Map<string, string>();
  const taken = new Set<string>();
  for (const name of byName.keys()) {
    let service = serviceNameOf(name);
    for (let i = 2; taken.has(service); i++) service = `${serviceNameOf(name).slice(0, 60)}-${i}`;
    taken.add(service);
    serviceOf.set(name, service);
    for (const version of versionsOf.get(name) ?? []) serviceOf.set(version.name, service);
    if (service !== name) notes.push({ worker: name, message: `named '${service}' in the mesh (service names are DNS labels)` });
  }
  const callers = [...byName.values()].flatMap(scriptsOf);
  const calledByOthers = new Set<string>();
  /** Named entrypoints other workers bind to, per callee service: each of its backends lists them. */
  const entrypointsOf = new Map<string, Set<string>>();
  for (const worker of callers) {
    const own = serviceOf.get(worker.name);
    for (const s of worker.serviceBindings) {
      const callee = serviceOf.get(s.service);
      if (callee === undefined) continue;
      if (callee !== own) calledByOthers.add(callee);
      if (s.entrypoint && s.entrypoint !== "default" && ENTRYPOINT.test(s.entrypoint)) {
        const names = entrypointsOf.get(callee) ?? new Set<string>();
        entrypointsOf.set(callee, names.add(s.entrypoint));
      }
    }
  }

  /** The calls of one worker: its bindings to the project's workers, as the callee service. */
  const callsOf = (worker: ProjectWorker, noteAs: string): Record<string, string> => {
    const calls: Record<string, string> = {};
    for (const binding of worker.serviceBindings) {
      const callee = serviceOf.get(binding.service);
      if (!callee) {
        notes.push({ worker: noteAs, message: `binding ${binding.binding} → '${binding.service}': not a worker of this project; it stays a direct binding, outside the mesh` });
        continue;
      }
      if (binding.entrypoint && binding.entrypoint !== "default" && !ENTRYPOINT.test(binding.entrypoint)) {
        notes.push({ worker: noteAs, message: `binding ${binding.binding} → '${binding.service}' (entrypoint ${binding.entrypoint.slice(0, 64)}): not an exported class name; it stays a direct binding, outside the mesh` });
        continue;
      }
      if (versionsOf.has(binding.service)) {
        notes.push({ worker: noteAs, message: `binding ${binding.binding} → '${binding.service}' (the top level of a config whose environments are versions): its calls go to service '${callee}', split between its versions` });
      }
      // A named entrypoint is reached through the callee's proxy too: weft dev/deploy give the binding props.entrypoint.
      calls[binding.binding] = callee;
    }
    return calls;
  };

  const services: InitPlan["services"] = [];
  const manifestServices: ManifestServiceInput[] = [];
  for (const worker of byName.values()) {
    const service = serviceOf.get(worker.name) ?? serviceNameOf(worker.name);
    const config = path.relative(root, worker.configPath);
    const entrypoints = [...(entrypointsOf.get(service) ?? [])].sort();
    const envWorkers = versionsOf.get(worker.name);
    const versions: PlannedVersion[] | undefined = envWorkers?.map((w, i) => ({ backend: serviceNameOf(w.name), script: w.name, env: w.env ?? "", weight: i === 0 ? 100 : 0 }));
    const backendWorkers = envWorkers ?? [worker];
    const allCalls: Record<string, string> = {};
    const backends = backendWorkers.map((w, i) => {
      const calls = callsOf(w, envWorkers ? `${worker.name} [env.${w.env ?? ""}]` : worker.name);
      Object.assign(allCalls, calls);
      return {
        name: versions?.[i]?.backend ?? service,
        type: "worker" as const,
        binding: bindingNameOf(w.name),
        script: w.name,
        ...(Object.keys(calls).length > 0 ? { calls } : {}),
        ...(entrypoints.length > 0 ? { entrypoints } : {}),
      };
    });
    for (const kind of [...new Set(backendWorkers.flatMap((w) => w.otherBindings))]) notes.push({ worker: worker.name, message: `${kind}: kept as configured (not routed through the mesh)` });
    if (versions) {
      notes.push({
        worker: worker.name,
        message: `environments (${versions.map((v) => v.env).join(", ")}) mapped as versions of one service '${service}': backends ${versions.map((v) => `${v.backend} (${v.script}, --env ${v.env}, weight ${v.weight})`).join(", ")}; move traffic with \`weft split ${service} ${versions.map((v, i) => `${v.backend}=${i === 0 ? 90 : i === 1 ? 10 : 0}`).join(" ")}\``,
      });
    }
    if (!worker.main) notes.push({ worker: worker.name, message: "no `main` (assets only): its proxy forwards to its static assets" });
    const routes = backendWorkers.flatMap((w) => w.routes);
    const isPublic = routes.length > 0 || !calledByOthers.has(service);
    services.push({ service, worker: worker.name, config, public: isPublic, calls: allCalls, ...(versions ? { versions } : {}) });
    manifestServices.push({
      name: service,
      description: versions ? `The worker '${worker.name}' (${config}), one version per environment: ${versions.map((v) => `${v.script} (--env ${v.env})`).join(", ")}.` : `The worker '${worker.name}' (${config}).`,
      ...(isPublic ? { public: true } : {}),
      ...(routes.length > 0 ? { publicRoutes: routes } : {}),
      backends,
      routes: [{ name: "all", match: { path: "/*" }, split: { weights: Object.fromEntries(versions ? versions.map((v) => [v.backend, v.weight]) : [[service, 100]]) } }],
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
