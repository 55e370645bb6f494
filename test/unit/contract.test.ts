import { describe, expect, it } from "vitest";
import { checkJsonBody, compileContract, MAX_CONTRACT_ERRORS } from "../../shared/contract.ts";
import { RouteContract, type RouteContractInput } from "../../shared/policy-schemas.ts";

/** The seed's example: every order line needs a sku, a quantity and a non-negative price. */
const ORDER_SCHEMA = {
  type: "object",
  required: ["items"],
  properties: {
    items: {
      type: "array",
      items: {
        type: "object",
        required: ["sku", "qty", "price"],
        properties: { price: { type: "number", minimum: 0 } },
      },
    },
  },
};

function contract(input: RouteContractInput) {
  return compileContract(RouteContract.parse(input));
}

/** Messages RouteContract gives for an input, with their paths. */
function refusals(input: unknown): string[] {
  const parsed = RouteContract.safeParse(input);
  return parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
}

describe("RouteContract", () => {
  it("defaults to log mode with no schemas", () => {
    expect(RouteContract.parse({})).toEqual({ mode: "log" });
  });

  it("keeps the operator's schema exactly as written", () => {
    const parsed = RouteContract.parse({ mode: "enforce", request: ORDER_SCHEMA });
    compileContract(parsed);
    expect(JSON.stringify(parsed.request)).toBe(JSON.stringify(ORDER_SCHEMA));
    expect(Object.getOwnPropertyNames(parsed.request)).toEqual(Object.keys(ORDER_SCHEMA));
  });

  it("refuses a $ref that does not resolve, naming it", () => {
    const messages = refusals({ request: { type: "object", properties: { line: { $ref: "#/$defs/line" } } } });
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/^request: "\$ref": "#\/\$defs\/line" at \/properties\/line does not resolve/);
  });

  it("refuses remote $refs, which are never fetched", () => {
    expect(refusals({ response: { $ref: "https://schemas.example.com/order.json" } })[0]).toMatch(
      /^response: .*does not resolve.*remote schemas are never fetched/,
    );
  });

  it("accepts $refs into $defs and definitions", () => {
    const request = { $defs: { price: { type: "number", minimum: 0 } }, properties: { price: { $ref: "#/$defs/price" } } };
    expect(refusals({ request })).toEqual([]);
    const draft7 = { $schema: "http://json-schema.org/draft-07/schema#", definitions: { n: { type: "integer" } }, items: { $ref: "#/definitions/n" } };
    expect(refusals({ request: draft7 })).toEqual([]);
  });

  it.each([
    [{ type: "obj" }, /"type" at the schema root must be one of array, boolean/],
    [{ properties: { sku: { type: "string", pattern: "([a-z" } } }, /pattern "\(\[a-z" at \/properties\/sku is not a valid regular expression/],
    [{ patternProperties: { "(": {} } }, /pattern "\(" at the schema root is not a valid regular expression/],
    [{ required: "sku" }, /"required" at the schema root must be an array/],
    [{ $dynamicRef: "#node" }, /"\$dynamicRef" .* is not supported/],
    [{ $schema: "https://example.com/my-meta" }, /unsupported "\$schema"/],
  ])("refuses %j with a readable message", (request, message) => {
    const messages = refusals({ request });
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(message);
  });

  it("refuses non-object schemas, unknown modes and unknown keys", () => {
    expect(refusals({ request: true })).not.toEqual([]);
    expect(refusals({ mode: "block" })).not.toEqual([]);
    expect(refusals({ mode: "log", requests: ORDER_SCHEMA })).not.toEqual([]);
  });
});

describe("compileContract", () => {
  const orders = contract({ mode: "enforce", request: ORDER_SCHEMA });

  it("passes a valid order", () => {
    const body = { items: [{ sku: "tee-m", qty: 2, price: 19.9 }, { sku: "mug", qty: 1, price: 0 }] };
    expect(orders.checkRequest(body)).toEqual({ kind: "pass" });
  });

  it("fails an order line without a price, pointing at the line and naming the field", () => {
    const body = { items: [{ sku: "tee-m", qty: 2, price: 19.9 }, { sku: "mug", qty: 1 }] };
    const result = orders.checkRequest(body);
    expect(result).toEqual({
      kind: "fail",
      errors: [{ path: "/items/1", message: expect.stringContaining('"price"') as unknown }],
    });
  });

  it("reports every leaf problem with JSON-pointer paths, not the wrappers above them", () => {
    const body = { items: [{ sku: "tee-m", qty: 2, price: -1 }, { qty: 1, price: 3 }] };
    expect(orders.checkRequest(body)).toEqual({
      kind: "fail",
      errors: [
        { path: "/items/0/price", message: "-1 is less than 0." },
        { path: "/items/1", message: 'Instance does not have required property "sku".' },
      ],
    });
  });

  it("fails a body of the wrong type at the root", () => {
    expect(orders.checkRequest([])).toEqual({
      kind: "fail",
      errors: [{ path: "", message: 'Instance type "array" is invalid. Expected "object".' }],
    });
  });

  it(`keeps only the first ${MAX_CONTRACT_ERRORS} errors`, () => {
    const items = Array.from({ length: 25 }, (_, i) => ({ sku: `s${i}`, qty: 1 }));
    const result = orders.checkRequest({ items });
    if (result.kind !== "fail") throw new Error(`expected a failure, got ${result.kind}`);
    expect(result.errors).toHaveLength(MAX_CONTRACT_ERRORS);
    expect(result.errors.map((e) => e.path)).toEqual(Array.from({ length: MAX_CONTRACT_ERRORS }, (_, i) => `/items/${i}`));
  });

  it("skips a direction without a schema", () => {
    expect(orders.checksRequest).toBe(true);
    expect(orders.checksResponse).toBe(false);
    expect(orders.checkResponse({ anything: true })).toEqual({ kind: "skip" });
    expect(orders.mode).toBe("enforce");
  });

  it("decodes JSON-pointer paths for keys with '/', '~' and non-ASCII characters", () => {
    const c = contract({ response: { additionalProperties: { type: "string" } } });
    const result = c.checkResponse({ "a/b": 1, "t~n": 2, "prix€": 3 });
    if (result.kind !== "fail") throw new Error(`expected a failure, got ${result.kind}`);
    expect(result.errors.map((e) => e.path)).toEqual(["/a~1b", "/t~0n", "/prix€"]);
  });

  it("explains a property refused by additionalProperties: false", () => {
    const c = contract({ request: { type: "object", properties: { sku: { type: "string" } }, additionalProperties: false } });
    expect(c.checkRequest({ sku: "mug", debug: true })).toEqual({
      kind: "fail",
      errors: [{ path: "/debug", message: 'Property "debug" does not match additional properties schema: no value is allowed here.' }],
    });
  });

  it("follows $refs and uses draft 2020-12 by default (prefixItems)", () => {
    const c = contract({
      request: {
        $defs: { qty: { type: "integer", minimum: 1 } },
        type: "array",
        prefixItems: [{ type: "string" }, { $ref: "#/$defs/qty" }],
        items: false,
      },
    });
    expect(c.checkRequest(["mug", 2])).toEqual({ kind: "pass" });
    expect(c.checkRequest(["mug", 0])).toEqual({ kind: "fail", errors: [{ path: "/1", message: "0 is less than 1." }] });
    expect(c.checkRequest(["mug", 2, "extra"])).toMatchObject({ kind: "fail", errors: [{ path: "/2" }] });
  });

  it("honours an explicit older draft", () => {
    // Draft-07 ignores keywords next to a `$ref`; 2019-09 and later apply them.
    const schema = { definitions: { sku: { type: "string" } }, $ref: "#/definitions/sku", maxLength: 3 };
    const draft7 = contract({ request: { $schema: "http://json-schema.org/draft-07/schema#", ...schema } });
    const latest = contract({ request: schema });
    expect(draft7.checkRequest("tee-m")).toEqual({ kind: "pass" });
    expect(latest.checkRequest("tee-m")).toEqual({ kind: "fail", errors: [{ path: "", message: "String is too long (5 > 3)." }] });
    expect(draft7.checkRequest(42)).toMatchObject({ kind: "fail", errors: [{ path: "" }] });
  });

  it("can be reused: checks are independent of each other", () => {
    const bad = { items: [{ sku: "mug", qty: 1 }] };
    const good = { items: [{ sku: "mug", qty: 1, price: 1 }] };
    for (let i = 0; i < 3; i++) {
      expect(orders.checkRequest(bad).kind).toBe("fail");
      expect(orders.checkRequest(good).kind).toBe("pass");
    }
  });

  it("turns a value JSON cannot hold into a failure instead of throwing", () => {
    expect(orders.checkRequest(undefined)).toMatchObject({ kind: "fail", errors: [{ path: "" }] });
  });

  it("refuses to compile a schema that bypassed RouteContract", () => {
    expect(() => compileContract({ mode: "log", request: { $ref: "#/nowhere" } })).toThrow(/request schema is invalid/);
  });
});

describe("checkJsonBody", () => {
  const orders = contract({ mode: "log", request: ORDER_SCHEMA });

  it("parses and checks JSON text", () => {
    expect(checkJsonBody('{"items":[{"sku":"mug","qty":1,"price":9.5}]}', orders.checkRequest)).toEqual({ kind: "pass" });
    expect(checkJsonBody('{"items":[{"sku":"mug","qty":1}]}', orders.checkRequest)).toMatchObject({
      kind: "fail",
      errors: [{ path: "/items/0" }],
    });
  });

  it("fails text that is not JSON without quoting it", () => {
    const result = checkJsonBody("email=jane@example.com&total=3", orders.checkRequest);
    expect(result).toEqual({ kind: "fail", errors: [{ path: "", message: "The body is not valid JSON." }] });
    expect(checkJsonBody("  ", orders.checkRequest)).toEqual({
      kind: "fail",
      errors: [{ path: "", message: "The body is empty; a JSON document is expected." }],
    });
  });

  it("skips without parsing when the direction has no schema", () => {
    expect(checkJsonBody("not json at all", orders.checkResponse)).toEqual({ kind: "skip" });
  });
});

describe("patterns that could backtrack catastrophically", () => {
  const refused = ["^(a|a)*$", "^(a+)+$", "(\\w+\\s?)*$", "^([a-z]+-?)*$", "((ab)*c)+", "(?:a|b)+", "^(\\d+)*x", "(a)\\1", "(?<x>a)\\k<x>", "^(a*){2,}$"];
  it.each(refused)("refuses %s when the contract is written", (pattern) => {
    const parsed = RouteContract.safeParse({ mode: "enforce", request: { type: "string", pattern } });
    expect(parsed.success).toBe(false);
    if (!parsed.success) expect(parsed.error.issues[0]?.message).toMatch(/refused|not supported/);
  });

  it("refuses the evil pattern in patternProperties too", () => {
    const parsed = RouteContract.safeParse({ request: { type: "object", patternProperties: { "^(a|a)*$": { type: "string" } } } });
    expect(parsed.success).toBe(false);
  });

  const accepted = ["^[a-z]+$", "^sku-[0-9]{1,6}$", "^[a-z]+(-[a-z]+)?$", "(ab){3}", "^(GET|POST)$", "^(?:[A-Z]{2})-\\d+$", "^\\p{L}+$", "^\\u{1F600}+$", "^[(|)*]+$", "(?<year>\\d{4})-(?<month>\\d{2})"];
  it.each(accepted)("accepts %s", (pattern) => {
    expect(RouteContract.safeParse({ mode: "enforce", request: { type: "string", pattern } }).success).toBe(true);
  });

  it("bounds a pattern's length", () => {
    const parsed = RouteContract.safeParse({ request: { type: "string", pattern: "a".repeat(1_001) } });
    expect(parsed.success).toBe(false);
    expect(RouteContract.safeParse({ request: { type: "string", pattern: "a".repeat(1_000) } }).success).toBe(true);
  });
});
