import assert from "node:assert/strict";
import { stuckTlsBars, stuckTlsCost } from "../bench/stuck_tls.ts";
import type { CheckLatency, StuckTlsResult } from "../bench/types.ts";

const latency = (p95: number, errors = 0): CheckLatency => ({
  n: 400,
  p50: p95 / 2,
  p95,
  p99: p95 * 1.5,
  max: p95 * 2,
  errors,
});

/** 1,500 clients held; RSS in KiB. */
function result(over: Partial<StuckTlsResult> = {}): StuckTlsResult {
  return {
    count: 1500,
    opened: 1500,
    openMs: 900,
    rssBefore: 50_000,
    rssWith: 110_000,
    heldAtRss: 1500,
    heldAfterChecks: 1500,
    holdS: 25,
    stillOpen: 0,
    stillOpenByKind: [0, 0, 0],
    baseline: latency(4),
    loaded: latency(6),
    checkEveryMs: 10,
    ...over,
  };
}

Deno.test("bench stuck TLS: the cost is the RSS growth, per client still held when it was taken", () => {
  assert.deepEqual(stuckTlsCost(result()), { growthKiB: 60_000, perClientKiB: 40 });
  assert.equal(stuckTlsCost(result({ heldAtRss: 1000 })).perClientKiB, 60);
  assert.ok(Number.isNaN(stuckTlsCost(result({ heldAtRss: 0 })).perClientKiB));
});

Deno.test("bench stuck TLS: RSS growth at most 1.2x the bare server's", () => {
  const bare = result({
    rssBefore: 40_000,
    rssWith: 90_000,
    baseline: undefined,
    loaded: undefined,
  });
  assert.equal(stuckTlsBars(result(), bare).rss, true); // 60 MB vs 1.2 × 50
  assert.equal(stuckTlsBars(result({ rssWith: 110_001 }), bare).rss, false);
  assert.equal(stuckTlsBars(result(), undefined).rss, undefined);
});

Deno.test("bench stuck TLS: p95 with the clients at most 2x without + 20 ms, and no failed check", () => {
  assert.equal(stuckTlsBars(result({ loaded: latency(28) }), undefined).p95, true);
  assert.equal(stuckTlsBars(result({ loaded: latency(28.1) }), undefined).p95, false);
  assert.equal(stuckTlsBars(result({ loaded: latency(5, 1) }), undefined).p95, false);
  assert.equal(stuckTlsBars(result({ loaded: undefined }), undefined).p95, undefined);
});

Deno.test("bench stuck TLS: every client connected and none still open", () => {
  assert.equal(stuckTlsBars(result(), undefined).closed, true);
  assert.equal(stuckTlsBars(result({ stillOpen: 1 }), undefined).closed, false);
  assert.equal(stuckTlsBars(result({ opened: 1499 }), undefined).closed, false);
});
