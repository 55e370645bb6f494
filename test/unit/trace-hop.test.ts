/**
 * The trace step: whose trace context a proxy continues. A mesh caller's is continued (and an
 * unsampled one passes through untouched, so the request need not be copied); the internet's is
 * never trusted: it can neither force sampling nor choose the trace id.
 */
import { describe, expect, it } from "vitest";
import { beginHop } from "../../workers/proxy/telemetry.ts";

const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";
const sampled = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;
const unsampled = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-00`;
const request = (headers: Record<string, string> = {}): Request => new Request("https://shop.example.com/products/sku-1", { headers });

describe("beginHop from the internet", () => {
  it("does not let a client force sampling: a sampled traceparent is dropped and the edge decides", () => {
    const hop = beginHop(request({ traceparent: sampled, tracestate: "vendor=x" }), false, 0, 1_000);
    expect(hop).toMatchObject({ sampled: false, traceId: undefined, traceparent: undefined, dropTrace: true });
  });

  it("does not let a client choose the trace id: a sampled hop starts its own trace, the client's id kept only for its span", () => {
    const hop = beginHop(request({ traceparent: sampled }), false, 1, 1_000);
    expect(hop.sampled).toBe(true);
    expect(hop.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(hop.traceId).not.toBe(CLIENT_TRACE);
    expect(hop.parentId).toBeUndefined();
    expect(hop.traceparent).toBe(`00-${hop.traceId}-${hop.spanId}-01`);
    expect(hop.clientTraceId).toBe(CLIENT_TRACE);
    expect(hop.dropTrace).toBe(true);
  });

  it("costs nothing for an unsampled request without trace headers: no id, no header change", () => {
    expect(beginHop(request(), false, 0, 5)).toEqual({
      startedAt: 5,
      traceId: undefined,
      spanId: undefined,
      parentId: undefined,
      sampled: false,
      traceparent: undefined,
      dropTrace: false,
      clientTraceId: undefined,
    });
  });
});

describe("beginHop from a mesh caller", () => {
  it("continues a sampled trace with a new span whose parent is the caller's", () => {
    const hop = beginHop(request({ traceparent: sampled }), true, 0, 1_000);
    expect(hop).toMatchObject({ traceId: CLIENT_TRACE, parentId: CLIENT_SPAN, sampled: true, dropTrace: false });
    expect(hop.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(hop.traceparent).toBe(`00-${CLIENT_TRACE}-${hop.spanId}-01`);
  });

  it("passes an unsampled trace through untouched, whatever this edge's sample rate", () => {
    const hop = beginHop(request({ traceparent: unsampled }), true, 1, 1_000);
    expect(hop).toMatchObject({ traceId: CLIENT_TRACE, sampled: false, traceparent: undefined, dropTrace: false });
  });

  it("starts a trace by its own sample rate when the caller sent none, or an invalid one", () => {
    expect(beginHop(request(), true, 1, 0).sampled).toBe(true);
    const invalid = beginHop(request({ traceparent: "00-zz-not-valid-01" }), true, 1, 0);
    expect(invalid.sampled).toBe(true);
    expect(invalid.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });
});
