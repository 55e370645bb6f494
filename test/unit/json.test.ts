import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { checkJsonBody, compileContract } from "../../shared/contract.ts";
import { jsonDepthExceeds, MAX_JSON_DEPTH, parseJson } from "../../shared/json.ts";
import { RouteContract } from "../../shared/policy-schemas.ts";

const nested = (depth: number): string => `${"[".repeat(depth)}${"]".repeat(depth)}`;

describe("jsonDepthExceeds", () => {
  it("counts arrays and objects, up to the bound inclusive", () => {
    expect(jsonDepthExceeds(nested(MAX_JSON_DEPTH))).toBe(false);
    expect(jsonDepthExceeds(nested(MAX_JSON_DEPTH + 1))).toBe(true);
    expect(jsonDepthExceeds(`${'{"a":'.repeat(65)}1${"}".repeat(65)}`)).toBe(true);
    expect(jsonDepthExceeds('{"a":[{"b":[1,2,{"c":3}]}]}', 5)).toBe(false);
    expect(jsonDepthExceeds('{"a":[{"b":[1,2,{"c":3}]}]}', 4)).toBe(true);
  });

  it("ignores brackets inside strings, escaped quotes included", () => {
    expect(jsonDepthExceeds(JSON.stringify({ text: "[".repeat(1_000) }))).toBe(false);
    expect(jsonDepthExceeds(JSON.stringify({ text: `\\"${"{".repeat(100)}` }))).toBe(false);
    expect(jsonDepthExceeds(`["\\\\", ${nested(MAX_JSON_DEPTH)}]`)).toBe(true);
  });

  it("parses what is shallow enough and says why it does not", () => {
    expect(parseJson('{"a":[1]}')).toEqual({ kind: "ok", value: { a: [1] } });
    expect(parseJson(nested(20_000))).toEqual({ kind: "too-deep", maxDepth: MAX_JSON_DEPTH });
    expect(parseJson("{")).toEqual({ kind: "invalid" });
  });
});

describe("deep bodies", () => {
  it("fail a contract check with one clear error (the proxy's 422), never a crash", () => {
    const contract = compileContract(RouteContract.parse({ mode: "enforce", request: { type: "array" } }));
    expect(checkJsonBody(nested(20_000), contract.checkRequest)).toEqual({
      kind: "fail",
      errors: [{ path: "", message: `The body nests deeper than ${MAX_JSON_DEPTH} levels.` }],
    });
    expect(checkJsonBody(nested(10), contract.checkRequest)).toEqual({ kind: "pass" });
  });

  it("are refused by the admin API with 400 problem+json", async () => {
    const body = `{"services":${nested(20_000)}}`;
    const response = await exports.default.fetch(
      new Request("https://weft.test/admin/config", {
        method: "PUT",
        headers: { authorization: "Bearer test-admin-token", "content-type": "application/json" },
        body,
      }),
    );
    expect(response.status).toBe(400);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect((await response.json<{ type: string }>()).type).toBe("urn:weft:problem:json-too-deep");
  });
});
