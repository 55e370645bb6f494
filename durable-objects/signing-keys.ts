/**
 * Egress signing keys. One SigningKeys object per service that calls third parties
 * (`idFromName(service)`), so no single object signs the whole mesh's egress; its private keys are
 * generated inside it, stored only in its own storage, and never returned by any method.
 *
 * Every shard publishes its public keys to the one JwksRegistry, which serves the JWKS. A new key is
 * published as soon as it exists but signs only after an activation delay longer than the JWKS cache
 * lifetime, so every vendor has it before the first token that needs it; the replaced key signs until
 * then and stays published until every token it signed has expired. No call fails across a rotation.
 *
 * Rotations run one at a time: a rotation asked for while one is under way (a double POST, or the
 * admin and the alarm together) joins it instead of starting another, and what a shard publishes is
 * always read back from its key table, never assembled from a list kept on the side.
 */
import { DurableObject } from "cloudflare:workers";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from "jose";
import type { EgressClaims } from "../shared/slice.ts";
import { plainStub, type PlainStub } from "./rpc.ts";

/** Signing algorithms Weft offers: ES256 by default, Ed25519 on request. */
export type SigningAlg = "ES256" | "EdDSA";

/** The longest a token lives; vendors should refuse anything longer. */
export const TOKEN_LIFETIME_SECONDS = 60;
/** Clock skew tolerated between the mesh and vendors, added to how long old keys stay published. */
const CLOCK_SKEW_SECONDS = 30;
const DEFAULT_ROTATION_HOURS = 24;
/** Longer than the JWKS can be cached anywhere (see jwksCaching): by then every vendor has the new key. */
export const DEFAULT_ACTIVATION_SECONDS = 65;

/** A public key as published in the JWKS: public parts only. */
export interface PublicJwk extends JWK {
  kid: string;
  alg: SigningAlg;
  use: "sig";
}

type KeyRow = {
  kid: string;
  alg: SigningAlg;
  private_jwk: string;
  public_jwk: string;
  created_at: number;
  /** When it starts signing. */
  activates_at: number;
  /** When it stops signing (a newer key activates); null while it is the newest. */
  retired_at: number | null;
};

/** The registry every shard publishes to (one object: it is read by the JWKS endpoint only). */
export function jwksRegistryOf(env: ControlPlaneEnv): PlainStub<JwksRegistry> {
  return plainStub<JwksRegistry>(env.JWKS_REGISTRY.get(env.JWKS_REGISTRY.idFromName("mesh")));
}

/** The activation delay a control plane runs with (WEFT_KEY_ACTIVATION_SECONDS, default 65 s). */
export function activationSecondsOf(env: ControlPlaneEnv): number {
  const seconds = Number(env.WEFT_KEY_ACTIVATION_SECONDS);
  return env.WEFT_KEY_ACTIVATION_SECONDS !== "" && Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_ACTIVATION_SECONDS;
}

/** What a rotation did. */
export interface Rotation {
  kid: string;
  previous: string | null;
  activatesAt: string;
}

/** The signing shard of `service`. */
export function signingKeysOf(env: ControlPlaneEnv, service: string): PlainStub<SigningKeys> {
  return plainStub<SigningKeys>(env.SIGNING_KEYS.get(env.SIGNING_KEYS.idFromName(service)));
}

export class SigningKeys extends DurableObject<ControlPlaneEnv> {
  private readonly sql: SqlStorage;
  private active: { kid: string; alg: SigningAlg; key: CryptoKey; until: number } | undefined;
  /** The rotation under way, if any: every rotation asked for meanwhile joins it. */
  private rotation: Promise<Rotation> | undefined;

  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS keys (
      kid TEXT PRIMARY KEY, alg TEXT NOT NULL, private_jwk TEXT NOT NULL, public_jwk TEXT NOT NULL,
      created_at INTEGER NOT NULL, activates_at INTEGER NOT NULL, retired_at INTEGER)`);
    this.sql.exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
  }

  private service(): string | undefined {
    return this.sql.exec<{ v: string }>("SELECT v FROM meta WHERE k = 'service'").toArray()[0]?.v;
  }

  private alg(): SigningAlg {
    return this.env.WEFT_SIGNING_ALG === "EdDSA" ? "EdDSA" : "ES256";
  }

  /** Public keys still published: the active one and retired ones whose tokens may still be live. */
  publicKeys(now = Date.now()): PublicJwk[] {
    const horizon = now - (TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) * 1000;
    return this.sql
      .exec<Pick<KeyRow, "public_jwk">>(
        "SELECT public_jwk FROM keys WHERE retired_at IS NULL OR retired_at > ? ORDER BY created_at",
        horizon,
      )
      .toArray()
      .map((row) => JSON.parse(row.public_jwk) as PublicJwk);
  }

  /** Signs a token for one outbound request of `service`, generating the first key if needed. */
  async sign(service: string, claims: EgressClaims): Promise<{ token: string; kid: string }> {
    const active = await this.activeKey(service);
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ htm: claims.htm, htu: claims.htu, body_sha256: claims.body_sha256 })
      .setProtectedHeader({ alg: active.alg, kid: active.kid, typ: "JWT" })
      .setIssuer(this.env.WEFT_PUBLIC_URL)
      .setSubject(claims.sub)
      .setAudience(claims.aud)
      .setIssuedAt(now)
      .setExpirationTime(now + TOKEN_LIFETIME_SECONDS)
      .setJti(crypto.randomUUID())
      .sign(active.key);
    return { token, kid: active.kid };
  }

  /**
   * Adds a new key. It is published at once and signs after the activation delay (at once if it is
   * the shard's first key); the current key signs until then and stays published until its last
   * token has expired. Returns the new and previous key ids and when the switch happens.
   */
  rotate(service: string): Promise<Rotation> {
    // Generating a key awaits crypto, which lets other calls in: without this, two rotations would
    // both replace the same key, leave one new key never retired, and each publish a list lacking the
    // other's key.
    this.rotation ??= this.rotateNow(service).finally(() => (this.rotation = undefined));
    return this.rotation;
  }

  private async rotateNow(service: string): Promise<Rotation> {
    const now = Date.now();
    const previous = this.newestRow();
    const row = await this.generate(previous ? now + this.activationSeconds() * 1000 : now);
    // Publish first: if the registry is unreachable the rotation fails and nothing changes. What is
    // published is the table as it will be after this rotation (one writer at a time, see rotate()).
    await jwksRegistryOf(this.env).publish(service, [...this.publicKeys(now), JSON.parse(row.public_jwk) as PublicJwk]);
    this.ctx.storage.transactionSync(() => {
      this.sql.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('service', ?)", service);
      // Every key still unretired stops when the new one starts: normally just `previous`, but this
      // also heals a table left with several unretired keys by concurrent rotations of old versions.
      if (previous) this.sql.exec("UPDATE keys SET retired_at = ? WHERE retired_at IS NULL", row.activates_at);
      this.sql.exec(
        "INSERT INTO keys (kid, alg, private_jwk, public_jwk, created_at, activates_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
        row.kid,
        row.alg,
        row.private_jwk,
        row.public_jwk,
        now,
        row.activates_at,
      );
    });
    this.active = undefined;
    await this.scheduleAlarm();
    return { kid: row.kid, previous: previous?.kid ?? null, activatesAt: new Date(row.activates_at).toISOString() };
  }

  /** Ensures a key exists (without rotating) and returns the published public keys. */
  async ensure(service: string): Promise<PublicJwk[]> {
    await this.activeKey(service);
    return this.publicKeys();
  }

  /** Scheduled rotation, and withdrawal of retired keys once their tokens have expired. */
  override async alarm(): Promise<void> {
    const service = this.service();
    if (!service) return;
    const newest = this.newestRow();
    const rotationMs = this.rotationHours() * 3_600_000;
    if (!newest || Date.now() - newest.created_at >= rotationMs) {
      await this.rotate(service);
      return;
    }
    const horizon = Date.now() - (TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) * 1000;
    this.sql.exec("DELETE FROM keys WHERE retired_at IS NOT NULL AND retired_at <= ?", horizon);
    // Republished from the table every time, so a registry that missed a write catches up here.
    await jwksRegistryOf(this.env).publish(service, this.publicKeys());
    await this.scheduleAlarm();
  }

  private activationSeconds(): number {
    return activationSecondsOf(this.env);
  }

  private rotationHours(): number {
    const hours = Number(this.env.WEFT_KEY_ROTATION_HOURS);
    return Number.isFinite(hours) && hours > 0 ? hours : DEFAULT_ROTATION_HOURS;
  }

  private async scheduleAlarm(): Promise<void> {
    const newest = this.newestRow();
    const retiring = this.sql
      .exec<{ at: number | null }>("SELECT MIN(retired_at) AS at FROM keys WHERE retired_at IS NOT NULL")
      .one().at;
    const candidates = [
      newest ? newest.created_at + this.rotationHours() * 3_600_000 : Date.now(),
      ...(retiring !== null ? [retiring + (TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) * 1000 + 1_000] : []),
    ];
    await this.ctx.storage.setAlarm(Math.min(...candidates));
  }

  /** The most recently added key (possibly not signing yet). */
  private newestRow(): KeyRow | undefined {
    return this.sql.exec<KeyRow>("SELECT * FROM keys ORDER BY created_at DESC LIMIT 1").toArray()[0];
  }

  /** The key that signs at `now`. */
  private signingRow(now: number): KeyRow | undefined {
    return this.sql
      .exec<KeyRow>(
        "SELECT * FROM keys WHERE activates_at <= ? AND (retired_at IS NULL OR retired_at > ?) ORDER BY activates_at DESC LIMIT 1",
        now,
        now,
      )
      .toArray()[0];
  }

  private async activeKey(service: string): Promise<{ kid: string; alg: SigningAlg; key: CryptoKey }> {
    const now = Date.now();
    if (this.active && now < this.active.until) return this.active;
    let row = this.signingRow(now);
    if (!row) {
      await this.rotate(service);
      row = this.signingRow(Date.now());
      if (!row) throw new Error("signing key generation failed");
    }
    const key = await importJWK(JSON.parse(row.private_jwk) as JWK, row.alg);
    if (!(key instanceof CryptoKey)) throw new Error("unexpected key type");
    this.active = { kid: row.kid, alg: row.alg, key, until: row.retired_at ?? Number.POSITIVE_INFINITY };
    return this.active;
  }

  private async generate(activatesAt: number): Promise<KeyRow> {
    const alg = this.alg();
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}) });
    const publicJwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    const published: PublicJwk = { ...publicJwk, kid, alg, use: "sig" };
    return {
      kid,
      alg,
      private_jwk: JSON.stringify(await exportJWK(privateKey)),
      public_jwk: JSON.stringify(published),
      created_at: Date.now(),
      activates_at: activatesAt,
      retired_at: null,
    };
  }
}

/**
 * JwksRegistry: the public keys of every signing shard, as served at /.well-known/jwks.json. Written
 * only on key generation, rotation and withdrawal; read by the (cached) JWKS endpoint.
 */
export class JwksRegistry extends DurableObject<ControlPlaneEnv> {
  constructor(ctx: DurableObjectState, env: ControlPlaneEnv) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS shards (service TEXT PRIMARY KEY, keys TEXT NOT NULL)");
  }

  /** Replaces one shard's published keys. */
  publish(service: string, keys: PublicJwk[]): void {
    this.ctx.storage.sql.exec(
      "INSERT INTO shards (service, keys) VALUES (?, ?) ON CONFLICT (service) DO UPDATE SET keys = excluded.keys",
      service,
      JSON.stringify(keys),
    );
  }

  /** Services that have signing keys. */
  services(): string[] {
    return this.ctx.storage.sql.exec<{ service: string }>("SELECT service FROM shards ORDER BY service").toArray().map((r) => r.service);
  }

  /** Every published public key. */
  keys(): PublicJwk[] {
    return this.ctx.storage.sql
      .exec<{ keys: string }>("SELECT keys FROM shards ORDER BY service")
      .toArray()
      .flatMap((row) => JSON.parse(row.keys) as PublicJwk[]);
  }
}
