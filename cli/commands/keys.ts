/**
 * `weft keys list|rotate`: the egress signing keys (public parts only; private keys never leave
 * their Durable Object) and rotating them.
 */
import { positionals } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT } from "../errors.ts";
import { table } from "../output.ts";

/** A published key as the JWKS lists it. */
interface PublicKey {
  kid: string;
  alg: string;
}

/** One service's rotation: its new key, the one it replaces, and when the new one starts signing. */
interface Rotation {
  service: string;
  kid: string;
  previous: string | null;
  activatesAt: string;
}

const listKeys: Command = {
  name: "list",
  summary: "the published egress signing keys (public parts)",
  description: "Lists the keys in the JWKS providers verify egress tokens with (GET /admin/keys).",
  examples: ["weft keys list", "weft keys list --json"],
  run: async (ctx) => {
    positionals(ctx.args, [], ctx.command);
    const { body } = await ctx.api().call<{ keys: PublicKey[] }>("GET", "/admin/keys");
    if (ctx.out.json) {
      ctx.out.document(body);
      return EXIT.ok;
    }
    if (body.keys.length === 0) ctx.out.line("No keys yet: a service gets one with its first call to an external backend.");
    for (const line of table([{ title: "KID" }, { title: "ALG" }], body.keys.map((k) => [k.kid, k.alg]), ctx.out.paint)) ctx.out.line(line);
    return EXIT.ok;
  },
};

const rotateKeys: Command = {
  name: "rotate",
  summary: "add a new signing key to every egress service",
  description: `Adds a new key to every service that calls third parties. The new key is published in the JWKS
at once and signs only after WEFT_KEY_ACTIVATION_SECONDS (longer than the JWKS cache lifetime),
so every provider has it before it is used; the old key signs until then and stays published until
its last token has expired. No call fails during a rotation.`,
  examples: ["weft keys rotate", "weft keys rotate --json"],
  run: async (ctx) => {
    positionals(ctx.args, [], ctx.command);
    const { body } = await ctx.api().call<{ rotated: Rotation[]; keys: PublicKey[] }>("POST", "/admin/keys/rotate");
    if (ctx.out.json) {
      ctx.out.document(body);
      return EXIT.ok;
    }
    if (body.rotated.length === 0) {
      ctx.out.line("No service calls a third party: there are no signing keys to rotate.");
      return EXIT.ok;
    }
    const lines = table(
      [{ title: "SERVICE" }, { title: "NEW KEY" }, { title: "REPLACES" }, { title: "SIGNS FROM" }],
      body.rotated.map((r) => [r.service, r.kid, r.previous ?? "-", r.activatesAt]),
      ctx.out.paint,
    );
    for (const line of lines) ctx.out.line(line);
    ctx.out.line(ctx.out.paint("dim", `${body.keys.length} keys published; providers pick the new ones up from the JWKS before they sign.`));
    return EXIT.ok;
  },
};

export const keysCommand: Command = {
  name: "keys",
  summary: "list or rotate the egress signing keys",
  subcommands: [listKeys, rotateKeys],
};
