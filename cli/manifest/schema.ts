/**
 * The mesh manifest (`weft.manifest.json`): the one file that says what the mesh is. It is the
 * admin config (services, backends, routes, policies — the same schema `PUT /admin/config` takes)
 * plus the deploy facts wrangler needs: each service's public routes, the worker script behind each
 * worker backend, which services each worker calls (service bindings that carry its identity), and
 * the proxies' settings. `weft generate` writes the admin config and the wrangler configs from it.
 */
import * as z from "zod";
import { ExternalBackend, MeshBackend, Name, Service, WorkerBackend } from "../../shared/config.ts";

/** The manifest format this CLI reads. */
export const MANIFEST_VERSION = 1;
/** The manifest's file name, looked for from the working directory upwards. */
export const MANIFEST_FILE = "weft.manifest.json";

const BindingName = WorkerBackend.shape.binding;

/** A worker's name as wrangler deploys it (`weft-pim-v1`). */
export const ScriptName = z
  .string()
  .max(63)
  .regex(/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/, "a worker name: lowercase letters, digits, '-' and '_'");

/**
 * A worker backend, plus the deploy facts: the worker script its binding points to, and the
 * services that worker calls (binding name → service). Each call becomes a service binding to the
 * callee's proxy with `props = { caller = "<this service>" }`: the identity the callee's policies see.
 */
export const ManifestWorkerBackend = WorkerBackend.extend({
  script: ScriptName,
  calls: z.record(BindingName, Name).optional(),
  /**
   * Named entrypoints of the worker (`export class Admin extends WorkerEntrypoint`) that callers
   * reach through the proxy: the proxy gets a binding `<binding>__<Entrypoint>` to each, and a
   * caller's binding with `entrypoint = "Admin"` is rewired to the proxy with `props.entrypoint`.
   */
  entrypoints: z
    .array(z.string().regex(/^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/, "an exported class name such as Admin"))
    .max(32)
    .refine((names) => !names.includes("default"), "the default entrypoint is the backend itself")
    .optional(),
});

export const ManifestBackend = z.discriminatedUnion("type", [ManifestWorkerBackend, MeshBackend, ExternalBackend]);
export type ManifestBackend = z.infer<typeof ManifestBackend>;

/** A public route of a service's proxy, as wrangler takes it (`routes` of the proxy's env). */
export const PublicRoute = z.strictObject({
  pattern: z.string().min(1).regex(/^[^\s]+$/, "a route pattern such as shop.example.com/products/*"),
  zone_name: z.string().min(1).optional(),
  zone_id: z.string().min(1).optional(),
  custom_domain: z.boolean().optional(),
});
export type PublicRoute = z.infer<typeof PublicRoute>;

const VarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a variable name such as WEFT_ACCESS_LOG");
const Vars = z.record(VarName, z.string()).refine((vars) => !("WEFT_SERVICE" in vars), "WEFT_SERVICE is set by weft generate (the service's name)");

/** A Durable Object binding of a proxy; `script` names the worker that defines the class (default: the proxy). */
export const DurableObjectBinding = z.strictObject({
  name: BindingName,
  className: z.string().regex(/^[A-Za-z_$][A-Za-z0-9_$]*$/, "a class name such as RolloutStore"),
  script: ScriptName.optional(),
});
export type DurableObjectBinding = z.infer<typeof DurableObjectBinding>;

/** Per-service proxy settings, on top of the manifest-wide `proxy` ones. */
export const ServiceProxy = z.strictObject({
  vars: Vars.optional(),
  durableObjects: z.array(DurableObjectBinding).optional(),
  /**
   * Names callers read as properties over RPC (`await env.USERS.version`, getters), not call: the
   * proxy cannot tell them from methods, so they are declared (`Admin.flags` on a named entrypoint).
   * Written into the proxy's vars as WEFT_RPC_PROPERTIES; a change needs the proxy redeployed.
   */
  rpcProperties: z
    .array(z.string().regex(/^([A-Za-z_$][A-Za-z0-9_$]{0,63}\.)?[A-Za-z_$][A-Za-z0-9_$]{0,127}$/, "a property name such as version, or Admin.version on a named entrypoint"))
    .max(64)
    .optional(),
});

/** A service: its admin config (the `Service` schema) plus where it is deployed and reached. */
export const ManifestService = Service.extend({
  /** Why the service exists; written above its proxy env in the generated wrangler config. */
  description: z.string().optional(),
  /** Internet routes to the service's proxy; none for services only other services call. */
  publicRoutes: z.array(PublicRoute).optional(),
  /**
   * Reached from the internet even without routes (its proxy on workers.dev when deployed; under
   * `weft dev`, the entry on WEFT_PORT for every path no public route takes).
   */
  public: z.boolean().optional(),
  backends: z.array(ManifestBackend).min(1, "a service needs at least one backend"),
  proxy: ServiceProxy.optional(),
});
export type ManifestService = z.infer<typeof ManifestService>;

export const Manifest = z.strictObject({
  manifestVersion: z.literal(MANIFEST_VERSION),
  /** Where `weft generate` writes, relative to the manifest. */
  files: z
    .strictObject({
      config: z.string().min(1).default("config/mesh.json"),
      proxy: z.string().min(1).default("workers/proxy/wrangler.toml"),
      /**
       * Set in projects whose worker configs Weft must not edit: `weft generate`/`weft deploy` write
       * each backend worker's config, with its bindings pointed at the proxies, into this folder
       * (`<folder>/<worker>/wrangler.json`) instead of changing the `services` key in place.
       */
      workers: z.string().min(1).optional(),
    })
    .default({ config: "config/mesh.json", proxy: "workers/proxy/wrangler.toml" }),
  /** The control plane worker every proxy binds to (as CONTROL_PLANE) for its config, signing and telemetry. */
  controlPlane: z
    .strictObject({
      script: ScriptName.default("weft-control-plane"),
      entrypoint: z.string().min(1).default("ConfigService"),
      /** Vars of the control plane as `weft deploy` deploys it in a project (e.g. WEFT_PUBLIC_URL), over the package's defaults. */
      vars: z.record(VarName, z.string()).optional(),
    })
    .default({ script: "weft-control-plane", entrypoint: "ConfigService" }),
  /** The proxy worker: one deployment per service, `<script>-<service>`. */
  proxy: z.strictObject({
    script: ScriptName.default("weft-proxy"),
    /**
     * Entry module, relative to the generated proxy config. Default: the Weft package's proxy
     * (`workers/proxy/index.ts` of this repository or of `node_modules/weft`).
     */
    main: z.string().min(1).optional(),
    compatibilityDate: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "a date such as 2026-11-01"),
    compatibilityFlags: z.array(z.string().min(1)).optional(),
    /** Vars of every proxy (services may override); WEFT_SERVICE is added per service. */
    vars: Vars.default({}),
    /** Durable Object bindings of every proxy. */
    durableObjects: z.array(DurableObjectBinding).optional(),
    /** Cron triggers of every proxy (`[triggers] crons`). */
    crons: z.array(z.string().min(1)).optional(),
  }),
  services: z.array(ManifestService),
});
export type Manifest = z.infer<typeof Manifest>;
export type ManifestInput = z.input<typeof Manifest>;
export type ManifestServiceInput = ManifestInput["services"][number];

/** The worker deployment of a service's proxy. */
export function proxyScript(manifest: Pick<Manifest, "proxy">, service: string): string {
  return `${manifest.proxy.script}-${service}`;
}
