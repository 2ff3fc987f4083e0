// Metrics in-process: the freshness and agent counters render as Prometheus counters.
import assert from "node:assert/strict";
import { Metrics } from "../src/metrics.ts";
import { parseExposition, sampleValue } from "./support/prometheus.ts";

const metrics = () =>
  new Metrics({ version: "0", startTime: 0, cacheEntries: () => 0, backendInFlight: () => 0 });

Deno.test("metrics: refreshes ahead and invalidations are counted by route", () => {
  const m = metrics();
  m.countRefreshAhead("/primary");
  m.countRefreshAhead("/primary");
  m.countRefreshAhead("/replica");
  m.countInvalidation("/replica", "/primary");
  const { samples, types } = parseExposition(m.render());
  const ahead = "patroniglue_cache_refreshes_ahead_total";
  const ended = "patroniglue_cache_invalidations_total";
  assert.equal(types.get(ahead), "counter");
  assert.equal(types.get(ended), "counter");
  assert.equal(sampleValue(samples, ahead, { route: "/primary" }), 2);
  assert.equal(sampleValue(samples, ahead, { route: "/replica" }), 1);
  assert.equal(sampleValue(samples, ended, { route: "/replica", by: "/primary" }), 1);
  assert.equal(sampleValue(samples, ended, { route: "/primary" }), undefined);
});

Deno.test("metrics: agent checks are counted by check and word", () => {
  const m = metrics();
  m.countAgentCheck("/primary", "up");
  m.countAgentCheck("/primary", "maint");
  m.countAgentCheck("/primary", "maint");
  m.countAgentCheck("/replica", "down");
  const { samples, types } = parseExposition(m.render());
  const agent = "patroniglue_agent_checks_total";
  assert.equal(types.get(agent), "counter");
  assert.equal(sampleValue(samples, agent, { check: "/primary", word: "up" }), 1);
  assert.equal(sampleValue(samples, agent, { check: "/primary", word: "maint" }), 2);
  assert.equal(sampleValue(samples, agent, { check: "/replica", word: "down" }), 1);
});
