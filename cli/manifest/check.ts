/**
 * `weft check`: static analysis of the manifest and the wrangler configs on disk, as `istioctl
 * analyze` does for Istio. Whole-mesh validity comes from the control plane's own validateMesh
 * (one set of rules, mapped to finding codes); this module adds what only the deploy facts show:
 * bindings, identities, reachability, policies, egress signing and stale generated files.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { HttpMethod, MeshConfig, normalizeService } from "../../shared/config.ts";
import { authorize } from "../../shared/authorize.ts";
import { validateMesh, type ConfigIssue } from "../../shared/validate.ts";
import { CONTROL_PLANE_CONFIG, deploymentsOf, type Deployment } from "../../scripts/deployments.ts";
import { CliError } from "../errors.ts";
import { adminConfigOf, displayPath, parseManifest, problemsOf, type JsonFile, type LoadedManifest, type Problem } from "./load.ts";
import { lineOf, pointerOf } from "./locate.ts";
import type { ProjectWorker } from "../project/workers.ts";
import { generateFiles, isProxyBinding, proxyBindings, sharedScripts, workerBindings, workerDeployments, workerSites } from "./generate.ts";
import { proxyScript, type Manifest, type ManifestService } from "./schema.ts";
import { parsePlainToml } from "./toml.ts";
import { loadProjectSecrets } from "../../scripts/secrets.ts";

export type Severity = "error" | "warning" | "info";

/** Where a finding is: a file, its line when known, and the path inside the file. */
export interface FindingLocation {
  file: string;
  line?: number;
  /** JSON pointer (manifest) or TOML table (wrangler config). */
  pointer?: string;
  /** The same place in words: `pim › route products › split.weights.pim-v3`. */
  where?: string;
}

/** One thing `weft check` found, and how to fix it. */
export interface Finding {
  severity: Severity;
  code: string;
  location: FindingLocation;
  message: string;
  fix: string;
}

const SEVERITY_ORDER: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/** Sorts findings: errors first, then warnings, then information; stable otherwise. */
export function sortFindings(findings: ReadonlyArray<Finding>): Finding[] {
  return [...findings].sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]);
}

/** `services/1/routes/0/split` in words, using the manifest's names. */
function describePath(manifest: { services?: ReadonlyArray<{ name?: unknown; routes?: ReadonlyArray<{ name?: unknown }>; backends?: ReadonlyArray<{ name?: unknown }> }> } | undefined, p: ReadonlyArray<string | number>): string {
  if (p[0] !== "services" || typeof p[1] !== "number") return p.join(".");
  const service = manifest?.services?.[p[1]];
  const parts = [typeof service?.name === "string" ? service.name : `services[${p[1]}]`];
  let rest = p.slice(2);
  if ((rest[0] === "routes" || rest[0] === "backends") && typeof rest[1] === "number") {
    const list = rest[0] === "routes" ? service?.routes : service?.backends;
    const name = list?.[rest[1]]?.name;
    parts.push(`${rest[0] === "routes" ? "route" : "backend"} ${typeof name === "string" ? name : `#${rest[1]}`}`);
    rest = rest.slice(2);
  }
  if (rest.length > 0) parts.push(rest.join("."));
  return parts.join(" › ");
}

/** Builds findings located in the manifest. */
class ManifestFindings {
  readonly findings: Finding[] = [];
  private readonly json: JsonFile;
  private readonly config: Parameters<typeof describePath>[0];
  constructor(json: JsonFile, config: Parameters<typeof describePath>[0]) {
    this.json = json;
    this.config = config;
  }

  add(severity: Severity, code: string, p: ReadonlyArray<string | number>, message: string, fix: string): void {
    const pointer = pointerOf(p);
    const line = lineOf(this.json.lines, pointer);
    this.findings.push({
      severity,
      code,
      location: { file: this.json.display, ...(line !== undefined ? { line } : {}), pointer: pointer || "/", where: describePath(this.config, p) },
      message,
      fix,
    });
  }
}

/** How the local mesh is run and where the proxies are deployed from, for the fix of an unset secret. */
export interface SecretsContext {
  /** `weft dev` (a project Weft was added to) or `npm start` (Weft's own repository). */
  runner: string;
  /** The proxies' wrangler config, as `wrangler secret put … --env <service> -c <it>` names it. */
  proxyConfig: string;
}

/**
 * Secrets the config names (external backends' `auth.secret`, routes' `webhook.secret`) that are
 * set neither in the project's `.weft/secrets.env` (beside the manifest) nor in the environment:
 * the local mesh would answer those calls 502 (credential) or 503 (webhook). A warning, since
 * production secrets live in Cloudflare (`wrangler secret put`), where this command cannot look.
 */
export function secretFindings(config: MeshConfig, manifestDir: string, environment: NodeJS.ProcessEnv, out: { add: ManifestFindings["add"] }, context: SecretsContext = { runner: "npm start", proxyConfig: "workers/proxy/wrangler.toml" }): void {
  const local = loadProjectSecrets(manifestDir, [], {});
  const isSet = (name: string): boolean => (environment[name] ?? "") !== "" || (local[name] ?? "") !== "";
  const warn = (names: string | readonly string[], p: ReadonlyArray<string | number>, what: string, service: string): void => {
    const list = typeof names === "string" ? [names] : names;
    // With several names (rotation) one set secret is enough.
    if (list.some(isSet)) return;
    out.add(
      "warning",
      "unset-secret",
      p,
      `${what} needs the secret ${list.join(" or ")}, which is not set locally (.weft/secrets.env or the environment)`,
      `Add a line ${list[0] ?? "NAME"}=<value> to .weft/secrets.env (or export it) for ${context.runner}; in production run \`wrangler secret put ${list[0] ?? "NAME"} --env ${service} -c ${context.proxyConfig}\`.`,
    );
  };
  config.services.forEach((service, s) => {
    service.backends.forEach((backend, b) => {
      if (backend.type === "external" && backend.auth && "secret" in backend.auth) warn(backend.auth.secret, ["services", s, "backends", b, "auth", "secret"], `backend '${backend.name}' of ${service.name}`, service.name);
    });
    service.routes.forEach((route, r) => {
      if (route.webhook) warn(route.webhook.secret, ["services", s, "routes", r, "webhook", "secret"], `webhook route '${route.name}' of ${service.name}`, service.name);
    });
  });
}

/** Builds findings located in a wrangler config. */
function tomlFinding(severity: Severity, code: string, file: string, cwd: string, section: string, needle: string | undefined, message: string, fix: string): Finding {
  let line: number | undefined;
  try {
    const lines = readFileSync(file, "utf8").split("\n");
    const header = section === "" ? 0 : lines.findIndex((l) => l.trim() === `[${section}]`);
    if (header >= 0) {
      line = header + 1;
      if (needle) {
        for (let i = header + (section === "" ? 0 : 1); i < lines.length && !(section !== "" && /^\s*\[/.test(lines[i] ?? "") && i > header); i++) {
          if (!(lines[i] ?? "").trimStart().startsWith("#") && (lines[i] ?? "").includes(needle)) {
            line = i + 1;
            break;
          }
        }
      }
    }
  } catch {
    line = undefined;
  }
  return {
    severity,
    code,
    location: { file: displayPath(file, cwd), ...(line !== undefined ? { line } : {}), pointer: section ? `[${section}]` : "(top level)" },
    message,
    fix,
  };
}

/** validateMesh's refusals as finding codes, with what to do about each. */
const VALIDATION_RULES: Array<{ pattern: RegExp; code: string; fix: (match: RegExpExecArray, where: string) => string }> = [
  { pattern: /^unknown backend '([^']+)' \(service '([^']+)'/, code: "unknown-backend", fix: (m) => `Add a backend named '${m[1] ?? ""}' to service '${m[2] ?? ""}', or take it out of the split (a typo of an existing backend, usually).` },
  { pattern: /^(mirror|failover) backend '([^']+)' is not a backend of service '([^']+)'/, code: "unknown-backend", fix: (m) => `Add a backend named '${m[2] ?? ""}' to service '${m[3] ?? ""}', or name one of its backends.` },
  { pattern: /^fault for unknown backend '([^']+)'/, code: "unknown-backend", fix: (m) => `Name one of the service's backends instead of '${m[1] ?? ""}', or remove the fault.` },
  { pattern: /^route '([^']+)' is unreachable: route '([^']+)' before it/, code: "shadowed-route", fix: (m) => `Move route '${m[1] ?? ""}' above route '${m[2] ?? ""}' (first match wins), or narrow '${m[2] ?? ""}''s match.` },
  { pattern: /^weights must sum to 100, got (\d+)/, code: "weights-sum", fix: (m) => `Change the weights so they add up to 100 (now ${m[1] ?? "?"}).` },
  { pattern: /^routing loop: (.*)/, code: "routing-loop", fix: () => "Break the cycle: one of these services must not route to the next through a mesh backend." },
  { pattern: /routes service '([^']+)' to itself/, code: "routing-loop", fix: () => "Point the mesh backend at another service." },
  { pattern: /^backend '([^']+)' points at unknown service '([^']+)'/, code: "unknown-service", fix: (m) => `Add service '${m[2] ?? ""}' to the manifest, or point backend '${m[1] ?? ""}' at an existing service.` },
  { pattern: /^external origin must use https/, code: "insecure-origin", fix: () => "Use the provider's https:// origin: tokens and personal data must not travel in clear text." },
  { pattern: /^external origin must be/, code: "invalid-origin", fix: () => "Give only scheme://host[:port][/base-path]; credentials belong in egress signing, not in the URL." },
  { pattern: /^duplicate /, code: "duplicate-name", fix: () => "Rename one of them: names identify services, backends, routes and limits in the API, metrics and sticky layouts." },
  { pattern: /names unknown route '([^']+)'/, code: "unknown-route", fix: (m) => `Name one of the service's routes instead of '${m[1] ?? ""}'.` },
  { pattern: /^'burst' applies/, code: "invalid-rate-limit", fix: () => "Remove `burst`, or use algorithm 'token-bucket'." },
];

function validationFinding(out: ManifestFindings, issue: ConfigIssue, where: (p: ReadonlyArray<string | number>) => string): void {
  for (const rule of VALIDATION_RULES) {
    const match = rule.pattern.exec(issue.message);
    if (match) {
      out.add("error", rule.code, issue.path, issue.message, rule.fix(match, where(issue.path)));
      return;
    }
  }
  out.add("error", "invalid-config", issue.path, issue.message, "The control plane refuses this config; fix the value at this path.");
}

/** Reached from the internet: public routes, or marked public (workers.dev; the `weft dev` entry). */
function isPublic(service: Manifest["services"][number]): boolean {
  return service.public === true || (service.publicRoutes?.length ?? 0) > 0;
}

/** Who calls each service: workers' `calls`, mesh backends, and `internet` for services with public routes. */
export function callersOf(manifest: Manifest): Map<string, Set<string>> {
  const callers = new Map<string, Set<string>>(manifest.services.map((s) => [s.name, new Set<string>()]));
  for (const service of manifest.services) {
    if (isPublic(service)) callers.get(service.name)?.add("internet");
    for (const backend of service.backends) {
      if (backend.type === "worker") for (const callee of Object.values(backend.calls ?? {})) callers.get(callee)?.add(service.name);
      if (backend.type === "mesh") callers.get(backend.service)?.add(service.name);
    }
  }
  return callers;
}

/**
 * Whose requests reach each service: the origins its policy's `from` matches. The internet for a
 * service with public routes, every service whose worker calls it, and through a `mesh` backend
 * whatever reaches the relaying service (a proxy relays the origin; it does not become it).
 */
export function originsOf(manifest: Manifest): Map<string, Set<string>> {
  const direct = new Map<string, Set<string>>(manifest.services.map((s) => [s.name, new Set<string>()]));
  const relays = new Map<string, Set<string>>(manifest.services.map((s) => [s.name, new Set<string>()]));
  for (const service of manifest.services) {
    if (isPublic(service)) direct.get(service.name)?.add("internet");
    for (const backend of service.backends) {
      if (backend.type === "worker") for (const callee of Object.values(backend.calls ?? {})) direct.get(callee)?.add(service.name);
      if (backend.type === "mesh") relays.get(backend.service)?.add(service.name);
    }
  }
  const origins = new Map<string, Set<string>>();
  const visit = (name: string, path: ReadonlySet<string>): Set<string> => {
    const known = origins.get(name);
    if (known) return known;
    const found = new Set(direct.get(name));
    // A relay loop is refused as routing-loop; stop at it rather than recurse forever.
    for (const relay of relays.get(name) ?? []) if (!path.has(relay)) for (const origin of visit(relay, new Set([...path, name]))) found.add(origin);
    origins.set(name, found);
    return found;
  };
  for (const service of manifest.services) visit(service.name, new Set());
  return origins;
}

/**
 * Whether `service`'s policy lets requests on behalf of `origin`, handed over by `peer`, through
 * at all (some path and method its rules allow).
 */
function mayCall(service: ManifestService, origin: string, peer: string = origin): boolean {
  const policy = service.policy;
  if (!policy) return true;
  const paths = new Set(["/", ...policy.allow.flatMap((rule) => (rule.paths ?? []).map((p) => p.replace(/\*$/, "x")))]);
  return HttpMethod.options.some((method) => [...paths].some((p) => authorize(policy, { origin, peer, method, path: p }).kind === "allow"));
}

/** The path part of a route pattern (`shop.example.com/products/*` → `/products/*`). */
function patternPath(pattern: string): string {
  const withoutScheme = pattern.replace(/^[a-z]+:\/\//i, "");
  const slash = withoutScheme.indexOf("/");
  return slash < 0 ? "/*" : withoutScheme.slice(slash);
}

/** Whether some request could match both path patterns. */
function pathsOverlap(a: string, b: string): boolean {
  const prefix = (p: string): [string, boolean] => (p.endsWith("*") ? [p.slice(0, -1), true] : [p, false]);
  const [pa, wa] = prefix(a);
  const [pb, wb] = prefix(b);
  if (wa && wb) return pa.startsWith(pb) || pb.startsWith(pa);
  if (wa) return pb.startsWith(pa);
  if (wb) return pa.startsWith(pb);
  return pa === pb;
}

const PLACEHOLDER_HOSTS = /(^|\.)(example\.(com|org|net)|localhost)$|^127\.0\.0\.1$/;

/** Findings about the manifest alone: validity, policies, reachability, egress. */
function manifestFindings(loaded: LoadedManifest, config: MeshConfig, out: ManifestFindings): void {
  const { manifest } = loaded;
  const where = (p: ReadonlyArray<string | number>): string => describePath(loaded.manifest, p);
  const strict = validateMesh(config, { allowLocalhostHttp: false });
  const lenient = validateMesh(config, { allowLocalhostHttp: true });
  for (const issue of lenient) validationFinding(out, issue, where);
  const lenientAt = new Set(lenient.map((i) => pointerOf(i.path)));
  for (const issue of strict) {
    if (lenientAt.has(pointerOf(issue.path)) || !/must use https/.test(issue.message)) continue;
    out.add("warning", "local-origin", issue.path, `${issue.message}: accepted by the local mesh (npm start) only`, "Before deploying, set the provider's https:// origin.");
  }
  for (const [script, services] of sharedScripts(manifest)) {
    const s = manifest.services.findIndex((svc) => svc.name === services[1]);
    const b = manifest.services[s]?.backends.findIndex((backend) => backend.type === "worker" && backend.script === script) ?? -1;
    out.add("error", "duplicate-script", ["services", s, "backends", b, "script"], `worker '${script}' is a backend of ${services.join(" and ")}: its calls can carry only one identity`, "Deploy the worker once per service (a script name each), or keep it in one service.");
  }

  const names = new Set(manifest.services.map((s) => s.name));
  const callers = callersOf(manifest);
  const origins = originsOf(manifest);
  const publicPatterns = new Map<string, string>();
  manifest.services.forEach((service, s) => {
    const at = (...rest: Array<string | number>): Array<string | number> => ["services", s, ...rest];
    const serviceCallers = [...(callers.get(service.name) ?? [])].sort();
    if (!service.policy) {
      // Rules match the origin, so the suggestion names whose requests arrive, not who relays them.
      const serviceOrigins = [...(origins.get(service.name) ?? [])].sort();
      const suggestion = JSON.stringify({ allow: [{ from: serviceOrigins.length > 0 ? serviceOrigins : ["internet"] }] });
      out.add("warning", "no-policy", at("name"), `service '${service.name}' has no authorization policy: every caller may call every path`, `Add "policy": ${suggestion} (whose requests reach it in this manifest) and narrow it by path and method.`);
    }
    if (serviceCallers.length === 0) {
      out.add("warning", "unreachable-service", at("name"), `nothing reaches service '${service.name}': it has no public route and no service calls it`, `Add "publicRoutes", or list it in the "calls" of a worker that uses it.`);
    }
    service.backends.forEach((backend, b) => {
      if (backend.type === "worker") {
        for (const [binding, callee] of Object.entries(backend.calls ?? {})) {
          if (!names.has(callee)) {
            out.add("error", "unknown-service", at("backends", b, "calls", binding), `${backend.name} calls unknown service '${callee}' (binding ${binding})`, `Add service '${callee}' to the manifest, or call one of: ${[...names].join(", ")}.`);
            continue;
          }
          const target = manifest.services.find((x) => x.name === callee);
          if (target && !mayCall(target, service.name)) {
            out.add("error", "denied-caller", at("backends", b, "calls", binding), `${backend.name} calls ${callee}, but ${callee}'s policy allows no request from '${service.name}': every call will be refused (403)`, `Allow '${service.name}' in ${callee}'s policy, or remove the call.`);
          }
        }
      }
      if (backend.type === "mesh") {
        // What this proxy relays keeps its origin: the target's rules judge the origins reaching
        // this service, with this service as the peer — never this service as the origin.
        const target = manifest.services.find((x) => x.name === backend.service);
        const weighted = service.routes.flatMap((route, r) => ((route.split.weights[backend.name] ?? 0) > 0 ? [{ route, r }] : []));
        const relayed = [...(origins.get(service.name) ?? [])].sort();
        if (target && relayed.length > 0 && !relayed.some((origin) => mayCall(target, origin, service.name))) {
          const first = weighted[0];
          const rule = JSON.stringify({ from: relayed, peers: [service.name] });
          out.add(
            "error",
            first ? "unmet-weight" : "denied-caller",
            first ? at("routes", first.r, "split", "weights", backend.name) : at("backends", b),
            `${backend.service}'s policy allows none of the requests ${service.name} relays to it (from ${relayed.map((o) => `'${o}'`).join(", ")}, through '${service.name}')${first ? `, so the ${first.route.split.weights[backend.name] ?? 0}% of route '${first.route.name ?? first.r}' sent to ${backend.name} can never be served (403)` : ""}`,
            `A rule's "from" matches the request's origin, not the proxy that relays it: if ${backend.service} should serve these requests, add ${rule} to its policy's "allow" (narrowed by path and method); otherwise move the weight to another backend.`,
          );
        }
      }
      if (backend.type === "external" && !backend.provider) {
        out.add("warning", "egress-no-provider", at("backends", b, "name"), `external backend '${backend.name}' names no provider: its egress tokens carry aud '${backend.name}'`, `Add "provider": the audience the provider verifies (tell them it, and the JWKS URL).`);
      }
    });

    // Routes no request can reach: a service only the internet calls gets only its public paths.
    const publicPaths = (service.publicRoutes ?? []).map((r) => patternPath(r.pattern));
    const internal = serviceCallers.some((c) => c !== "internet");
    if (!internal && publicPaths.length > 0) {
      service.routes.forEach((route, r) => {
        const path = route.match?.path ?? "/*";
        if (!publicPaths.some((p) => pathsOverlap(p, path))) {
          out.add("warning", "unreachable-route", at("routes", r, "match", "path"), `route '${route.name ?? r}' (${path}) matches no path of ${service.name}'s public routes (${publicPaths.join(", ")}), and no service calls ${service.name}`, `Add a public route for ${path}, or remove the route.`);
        }
      });
    }
    (service.publicRoutes ?? []).forEach((publicRoute, p) => {
      const path = patternPath(publicRoute.pattern);
      if (!service.routes.some((route) => pathsOverlap(route.match?.path ?? "/*", path))) {
        out.add("warning", "unrouted-public-path", at("publicRoutes", p, "pattern"), `requests on ${publicRoute.pattern} match none of ${service.name}'s routes: its proxy answers them 404`, `Add a route matching ${path} to ${service.name}, or remove the public route.`);
      }
      const owner = publicPatterns.get(publicRoute.pattern);
      if (owner !== undefined) {
        out.add("error", "duplicate-public-route", at("publicRoutes", p, "pattern"), `${publicRoute.pattern} is a public route of both ${owner} and ${service.name}`, "Give each pattern to one service: Cloudflare sends a request to one worker only.");
      }
      publicPatterns.set(publicRoute.pattern, service.name);
    });
  });
}

/** Findings about the proxy's wrangler config on disk against the manifest. */
function proxyFindings(loaded: LoadedManifest, cwd: string, out: Finding[]): void {
  const { manifest } = loaded;
  const file = path.resolve(loaded.dir, manifest.files.proxy);
  if (!existsSync(file)) {
    out.push({ severity: "error", code: "not-generated", location: { file: displayPath(file, cwd) }, message: "the proxy's wrangler config does not exist", fix: "Run `npx weft generate`." });
    return;
  }
  let deployments: Deployment[];
  try {
    deployments = deploymentsOf(file);
  } catch (error) {
    out.push({ severity: "error", code: "invalid-wrangler-config", location: { file: displayPath(file, cwd) }, message: error instanceof Error ? error.message : String(error), fix: "Run `npx weft generate` to rewrite it from the manifest." });
    return;
  }
  for (const service of manifest.services) {
    const name = proxyScript(manifest, service.name);
    const env = deployments.find((d) => d.env === service.name);
    const section = `env.${service.name}`;
    if (!env) {
      out.push(tomlFinding("error", "missing-proxy", file, cwd, "", undefined, `no [env.${service.name}] for service '${service.name}': its proxy ${name} is not deployed`, "Run `npx weft generate`."));
      continue;
    }
    if (env.vars.WEFT_SERVICE !== service.name) {
      out.push(tomlFinding("error", "wrong-service", file, cwd, section, "WEFT_SERVICE", `[env.${service.name}] sets WEFT_SERVICE = "${env.vars.WEFT_SERVICE ?? ""}": the proxy would load another service's config`, "Run `npx weft generate`."));
    }
    const external = service.backends.filter((b) => b.type === "external").map((b) => b.name);
    for (const wanted of proxyBindings(manifest, service)) {
      const have = env.services.find((s) => s.binding === wanted.binding);
      const backend = service.backends.find((b) => b.type !== "external" && b.binding === wanted.binding);
      const weight = Math.max(0, ...service.routes.map((r) => (backend ? (r.split.weights[backend.name] ?? 0) : 0)));
      if (!have) {
        const consequence =
          wanted.binding === "CONTROL_PLANE"
            ? "it cannot load its config"
            : `requests for backend '${backend?.name ?? wanted.binding}'${weight > 0 ? ` (up to ${weight}% of a route)` : ""} fail with 502`;
        out.push(tomlFinding("error", "missing-binding", file, cwd, section, undefined, `the proxy of ${service.name} has no ${wanted.binding} binding (to ${wanted.service}): ${consequence}`, "Run `npx weft generate`, then deploy the proxy."));
        if (wanted.binding === "CONTROL_PLANE" && external.length > 0) {
          out.push(tomlFinding("error", "egress-unsigned", file, cwd, section, undefined, `calls from ${service.name} to ${external.join(", ")} cannot be signed: signing goes through the CONTROL_PLANE binding`, "Run `npx weft generate`, then deploy the proxy."));
        }
        continue;
      }
      if (have.service !== wanted.service || (wanted.entrypoint !== undefined && have.entrypoint !== wanted.entrypoint) || JSON.stringify(have.props ?? null) !== JSON.stringify(wanted.props ?? null)) {
        out.push(tomlFinding("error", "binding-mismatch", file, cwd, section, `"${wanted.binding}"`, `the proxy of ${service.name} binds ${wanted.binding} to ${have.service}${have.entrypoint ? ` (${have.entrypoint})` : ""}, the manifest says ${wanted.service}${wanted.entrypoint ? ` (${wanted.entrypoint})` : ""}`, "Run `npx weft generate`, then deploy the proxy."));
      }
    }
  }
}

/** Findings about the backend workers' own configs: identity of their calls, direct reachability. */
function workerFindings(loaded: LoadedManifest, cwd: string, out: Finding[], manifestOut: ManifestFindings): void {
  const { manifest } = loaded;
  const deployments = workerDeployments(loaded);
  const backendScripts = new Map(manifest.services.flatMap((s) => s.backends.flatMap((b) => (b.type === "worker" ? [[b.script, s.name] as const] : []))));
  for (const site of workerSites(loaded, deployments)) {
    const s = manifest.services.findIndex((x) => x.name === site.service);
    const service = manifest.services[s];
    const b = service?.backends.findIndex((x) => x.name === site.backend) ?? -1;
    const deployment = site.deployment;
    if (!service) continue;
    if (!deployment) {
      manifestOut.add("warning", "unknown-script", ["services", s, "backends", b, "script"], `no wrangler config in this repository deploys '${site.script}' (backend ${site.backend} of ${site.service})`, `Check the name (workers here: ${deployments.map((d) => d.name).join(", ") || "none"}), or make sure the worker is deployed from elsewhere before its proxy.`);
      continue;
    }
    const section = deployment.env ? `env.${deployment.env}` : "";
    const config = parsePlainToml(readFileSync(deployment.configPath, "utf8"));
    const scoped = (deployment.env ? ((config.env as Record<string, Record<string, unknown>> | undefined)?.[deployment.env] ?? {}) : config);
    const workersDev = scoped.workers_dev ?? config.workers_dev;
    if (workersDev !== false || deployment.routes.length > 0) {
      out.push(tomlFinding("error", "public-backend", deployment.configPath, cwd, section, workersDev !== false ? "workers_dev" : "routes", `${site.script} is reachable without its proxy (${workersDev !== false ? "workers_dev is not false" : "it has routes of its own"}): callers could skip ${site.service}'s policies and claim any identity`, `Set workers_dev = false and preview_urls = false, and give public routes to ${site.service}'s proxy in the manifest ("publicRoutes").`));
    }
    const wanted = workerBindings(manifest, service, site.script, deployment.services);
    for (const binding of wanted.filter((w) => isProxyBinding(manifest, w))) {
      const have = deployment.services.find((x) => x.binding === binding.binding);
      const caller = typeof binding.props?.caller === "string" ? binding.props.caller : "";
      if (!have) {
        out.push(tomlFinding("error", "missing-binding", deployment.configPath, cwd, section, "services", `${site.script} calls ${binding.service} as ${binding.binding}, but its config has no such binding`, "Run `npx weft generate`."));
      } else if (have.service !== binding.service) {
        out.push(tomlFinding("error", "binding-mismatch", deployment.configPath, cwd, section, `"${binding.binding}"`, `${site.script} binds ${binding.binding} to ${have.service}; the manifest says ${binding.service}`, "Run `npx weft generate`."));
      } else if (have.props?.caller !== caller) {
        out.push(tomlFinding("error", "wrong-identity", deployment.configPath, cwd, section, `"${binding.binding}"`, `${site.script} calls ${binding.service} as '${typeof have.props?.caller === "string" ? have.props.caller : "internet"}', but it is part of ${site.service}: policies would judge it as the wrong service`, `Run \`npx weft generate\` (props = { caller = "${caller}" }).`));
      } else if (JSON.stringify(have.props ?? null) !== JSON.stringify(binding.props ?? null)) {
        // Only proxies relay: a worker whose props say hop = "proxy" could claim any origin in x-weft-origin.
        out.push(tomlFinding("error", "wrong-identity", deployment.configPath, cwd, section, `"${binding.binding}"`, `${site.script} calls ${binding.service} with props ${JSON.stringify(have.props)}, not ${JSON.stringify(binding.props)}${have.props?.hop !== undefined ? ": a worker marked as a relaying proxy could name any origin in x-weft-origin" : ""}`, `Run \`npx weft generate\` (props = { caller = "${caller}" }).`));
      }
    }
    for (const binding of deployment.services) {
      const owner = backendScripts.get(binding.service);
      if (owner !== undefined && owner !== site.service) {
        out.push(tomlFinding("error", "bypasses-proxy", deployment.configPath, cwd, section, `"${binding.binding}"`, `${site.script} binds ${binding.binding} straight to ${binding.service}, a backend of ${owner}: its calls skip ${owner}'s proxy (no policy, no identity, no metrics)`, `Call ${owner} through its proxy: add "${binding.binding}": "${owner}" to the "calls" of ${site.backend} and run \`npx weft generate\`.`));
      }
    }
  }
  const controlPlane = deployments.find((d) => d.name === manifest.controlPlane.script);
  const external = manifest.services.some((s) => s.backends.some((b) => b.type === "external"));
  if (controlPlane && external) {
    const publicUrl = controlPlane.vars.WEFT_PUBLIC_URL;
    const host = URL.canParse(publicUrl ?? "") ? new URL(publicUrl ?? "").hostname : "";
    if (!host || PLACEHOLDER_HOSTS.test(host)) {
      out.push(tomlFinding("warning", "egress-issuer", controlPlane.configPath, cwd, "vars", "WEFT_PUBLIC_URL", `the control plane's WEFT_PUBLIC_URL is ${publicUrl ? `'${publicUrl}'` : "not set"}: providers cannot fetch the JWKS that verifies egress tokens`, "Set WEFT_PUBLIC_URL to the control plane's public URL before deploying (providers fetch <url>/.well-known/jwks.json)."));
    }
  }
}

/** The workers of a project whose configs Weft leaves alone (`files.workers`): names that exist, calls that skip proxies. */
function projectWorkerFindings(loaded: LoadedManifest, project: ReadonlyArray<ProjectWorker>, out: ManifestFindings): void {
  const { manifest } = loaded;
  const byName = new Map(project.map((w) => [w.name, w]));
  const backendScripts = new Map(manifest.services.flatMap((s) => s.backends.flatMap((b) => (b.type === "worker" ? [[b.script, s.name] as const] : []))));
  manifest.services.forEach((service, s) => {
    service.backends.forEach((backend, b) => {
      if (backend.type !== "worker") return;
      const worker = byName.get(backend.script);
      if (!worker) {
        out.add("error", "unknown-script", ["services", s, "backends", b, "script"], `no wrangler config in this project defines the worker '${backend.script}' (backend ${backend.name} of ${service.name})`, `Check the name (workers here: ${project.map((w) => w.name).join(", ") || "none"}); \`weft dev\` and \`weft deploy\` need its config.`);
        return;
      }
      for (const binding of worker.serviceBindings) {
        const owner = backendScripts.get(binding.service);
        if (owner === undefined || owner === service.name || backend.calls?.[binding.binding] !== undefined) continue;
        // A named entrypoint passes the proxy too (the callee's backend lists it in `entrypoints`).
        const entrypoint = binding.entrypoint ? ` (entrypoint ${binding.entrypoint})` : "";
        const listIt = binding.entrypoint ? `, and "${binding.entrypoint}" to the "entrypoints" of ${binding.service}'s backend in ${owner}` : "";
        out.add("error", "bypasses-proxy", ["services", s, "backends", b, "calls"], `${worker.name} binds ${binding.binding} straight to ${binding.service}${entrypoint}, a backend of ${owner}: its calls would skip ${owner}'s proxy (no policy, no identity, no metrics)`, `Add "${binding.binding}": "${owner}" to the "calls" of ${backend.name}${listIt}.`);
      }
    });
  });
}

/**
 * In a project Weft was added to, the control plane is Weft's own (`weft deploy` writes its config):
 * its public URL is the manifest's `controlPlane.vars.WEFT_PUBLIC_URL`, else the package default.
 * Providers fetch the JWKS that verifies egress tokens from there, so a placeholder is a warning.
 */
function projectIssuerFindings(loaded: LoadedManifest, out: ManifestFindings): void {
  const { manifest } = loaded;
  if (!manifest.services.some((s) => s.backends.some((b) => b.type === "external"))) return;
  const own = manifest.controlPlane.vars?.WEFT_PUBLIC_URL;
  const publicUrl = own ?? deploymentsOf(CONTROL_PLANE_CONFIG)[0]?.vars.WEFT_PUBLIC_URL;
  const host = URL.canParse(publicUrl ?? "") ? new URL(publicUrl ?? "").hostname : "";
  if (host && !PLACEHOLDER_HOSTS.test(host)) return;
  out.add(
    "warning",
    "egress-issuer",
    own !== undefined ? ["controlPlane", "vars", "WEFT_PUBLIC_URL"] : ["controlPlane"],
    `the control plane's WEFT_PUBLIC_URL is ${publicUrl ? `'${publicUrl}'` : "not set"}${own === undefined ? " (Weft's default)" : ""}: providers cannot fetch the JWKS that verifies egress tokens`,
    'Set "controlPlane": {"vars": {"WEFT_PUBLIC_URL": "https://<your control plane>"}} in the manifest before deploying (providers fetch <url>/.well-known/jwks.json).',
  );
}

/** Generated files that differ from what the manifest generates now. */
function staleFindings(loaded: LoadedManifest, cwd: string, out: Finding[]): void {
  let files;
  try {
    files = generateFiles(loaded, cwd);
  } catch (error) {
    // An invalid manifest generates nothing; its problems are already findings.
    if (error instanceof CliError) return;
    throw error;
  }
  const proxyFile = path.resolve(loaded.dir, loaded.manifest.files.proxy);
  for (const file of files) {
    const current = existsSync(file.file) ? readFileSync(file.file, "utf8") : undefined;
    if (current === undefined) {
      // A missing proxy config is already a finding of proxyFindings (which runs for invalid manifests too).
      if (file.file === proxyFile) continue;
      out.push({ severity: "error", code: "not-generated", location: { file: file.display }, message: `${file.display} does not exist`, fix: "Run `npx weft generate`." });
    } else if (current !== file.content) {
      out.push({ severity: "error", code: "stale-generated", location: { file: file.display }, message: `${file.display} is out of date with ${loaded.display} (${file.owns})`, fix: "Run `npx weft generate` and commit the result; never edit generated files by hand." });
    }
  }
}

/** Everything `weft check` finds in a manifest file and the wrangler configs next to it. */
export function checkManifest(json: JsonFile, cwd: string, project?: ReadonlyArray<ProjectWorker>): Finding[] {
  const raw = typeof json.value === "object" && json.value !== null ? (json.value as Parameters<typeof describePath>[0]) : undefined;
  const parsed = parseManifest(json);
  if (!parsed.ok) {
    const out = new ManifestFindings(json, raw);
    for (const problem of parsed.problems) out.add("error", "invalid-manifest", problem.path, problem.message, fixForShape(problem));
    return out.findings;
  }
  const loaded = parsed.loaded;
  const out = new ManifestFindings(json, loaded.manifest);
  const shaped = MeshConfig.safeParse(adminConfigOf(loaded.raw));
  if (shaped.success) {
    const config = { services: shaped.data.services.map(normalizeService) };
    manifestFindings(loaded, config, out);
    const project = loaded.manifest.files.workers !== undefined;
    const proxyConfig = path.relative(loaded.dir, path.resolve(loaded.dir, loaded.manifest.files.proxy));
    secretFindings(config, loaded.dir, process.env, out, { runner: project ? "weft dev" : "npm start", proxyConfig });
  }
  else for (const problem of problemsOf(shaped.error.issues)) out.add("error", "invalid-manifest", problem.path, problem.message, fixForShape(problem));
  const files: Finding[] = [];
  if (loaded.manifest.files.workers !== undefined) {
    // A project Weft was added to: its generated files live under .weft/ and are written afresh by
    // every `weft dev` and `weft deploy`, and the workers' own configs are never edited.
    projectWorkerFindings(loaded, project ?? [], out);
    projectIssuerFindings(loaded, out);
  } else {
    proxyFindings(loaded, cwd, files);
    workerFindings(loaded, cwd, files, out);
    staleFindings(loaded, cwd, files);
  }
  return sortFindings([...out.findings, ...files]);
}

function fixForShape(problem: Problem): string {
  if (/Unrecognized key/.test(problem.message)) return "Remove or correct the key (a typo, usually): the manifest accepts only known keys.";
  if (/expected 1/.test(problem.message) && problem.path[0] === "manifestVersion") return 'Start the manifest with "manifestVersion": 1.';
  return "Correct the value at this path; the README's manifest section lists every field.";
}
