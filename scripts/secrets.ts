/**
 * Local vendor secrets: `.weft/secrets.env` (NAME=value lines, like wrangler's `.dev.vars`) and
 * environment variables of the same name, which win. `npm start` binds them to every proxy (as
 * `wrangler secret put` does in production); `weft check` warns about names the config uses that
 * are set nowhere. Light on purpose (no Miniflare): the CLI imports it.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

/** Where a project keeps its local vendor secrets: `<dir>/.weft/secrets.env` (NAME=value lines, like wrangler's `.dev.vars`). */
export function secretsFileIn(dir: string): string {
  return path.join(dir, ".weft", "secrets.env");
}


const SECRET_NAME = /^[A-Z][A-Z0-9_]{0,63}$/;

/** Parses `NAME=value` lines (blank lines and `#` comments skipped; one pair of quotes removed). */
export function parseSecretsEnv(text: string): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    const name = line.slice(0, eq).trim();
    if (eq < 1 || !SECRET_NAME.test(name)) continue;
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1);
    secrets[name] = value;
  }
  return secrets;
}

/**
 * Local vendor secrets: the lines of `file`, and for those names and `names` (the ones the config
 * refers to), environment variables of the same name, which win.
 */
export function loadLocalSecrets(file: string, names: readonly string[] = [], environment: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const secrets = existsSync(file) ? parseSecretsEnv(readFileSync(file, "utf8")) : {};
  for (const name of new Set([...Object.keys(secrets), ...names])) {
    const value = environment[name];
    if (SECRET_NAME.test(name) && !name.startsWith("WEFT_") && value !== undefined && value !== "") secrets[name] = value;
  }
  return secrets;
}

/**
 * A project's local vendor secrets: {@link loadLocalSecrets} of `<dir>/.weft/secrets.env`, with
 * environment variables of the names the config uses (`names`) winning. What `weft dev` binds to
 * every proxy (and `npm start`, with the repository's root).
 */
export function loadProjectSecrets(dir: string, names: readonly string[] = [], environment: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return loadLocalSecrets(secretsFileIn(dir), names, environment);
}

/**
 * Every secret name a mesh config refers to (external backends' `auth.secret`, routes'
 * `webhook.secret`), sorted and deduplicated: what `weft check` and `npm start` look for.
 */
export function secretNamesOf(config: unknown): string[] {
  const names = new Set<string>();
  const add = (value: unknown): void => {
    for (const name of Array.isArray(value) ? value : [value]) if (typeof name === "string" && SECRET_NAME.test(name)) names.add(name);
  };
  const services: unknown = typeof config === "object" && config !== null ? Reflect.get(config, "services") : undefined;
  for (const service of Array.isArray(services) ? services : []) {
    if (typeof service !== "object" || service === null) continue;
    const backends: unknown = Reflect.get(service, "backends");
    for (const backend of Array.isArray(backends) ? backends : []) {
      const auth: unknown = typeof backend === "object" && backend !== null ? Reflect.get(backend, "auth") : undefined;
      if (typeof auth === "object" && auth !== null) add(Reflect.get(auth, "secret"));
    }
    const routes: unknown = Reflect.get(service, "routes");
    for (const route of Array.isArray(routes) ? routes : []) {
      const webhook: unknown = typeof route === "object" && route !== null ? Reflect.get(route, "webhook") : undefined;
      if (typeof webhook === "object" && webhook !== null) add(Reflect.get(webhook, "secret"));
    }
  }
  return [...names].sort();
}
