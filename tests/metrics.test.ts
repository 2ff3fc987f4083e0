// Metrics in-process (the freshness and agent counters, the member, connections, the process) and
// from main.ts under deno.json's permission set; promtool accepts every family.
import assert from "node:assert/strict";
import type { BackendOutcome } from "../src/check/backend.ts";
import { parseConfig } from "../src/config/config.ts";
import { Logger } from "../src/log.ts";
import { Metrics, readProcessStats } from "../src/metrics.ts";
import { Service } from "../src/service.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { configText, freePorts, GlueProcess, sleep, writeConfig } from "./support/glue.ts";
import {
  checkMetrics,
  HAS_PROMTOOL,
  parseExposition,
  type Sample,
  sampleValue,
} from "./support/prometheus.ts";

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

const ok = (role: string, state = "running", timeline?: number): BackendOutcome => ({
  ok: true,
  status: 200,
  body: "{}",
  member: timeline === undefined ? { role, state } : { role, state, timeline },
});

Deno.test("metrics: the member as Patroni last described it, and role changes", () => {
  const m = metrics();
  const info = "patroniglue_member_info";
  const changes = "patroniglue_member_role_changes_total";
  let { samples, types } = parseExposition(m.render());
  assert.equal(types.get(info), "gauge");
  assert.equal(types.get(changes), "counter");
  assert.equal(samples.filter((s) => s.name === info).length, 0, "nothing before a description");
  assert.equal(sampleValue(samples, changes), 0);

  m.countBackend("/primary", ok("master", "running", 3), 0.01, 100);
  m.countBackend("/replica", ok("master", "running", 3), 0.01, 110);
  ({ samples } = parseExposition(m.render()));
  assert.deepEqual(samples.filter((s) => s.name === info), [
    { name: info, labels: { role: "master", state: "running", timeline: "3" }, value: 1 },
  ]);
  assert.equal(sampleValue(samples, changes), 0, "the first description is no change");

  // A demotion; then a body from a request sent before it arrives late: it changes nothing.
  m.countBackend("/primary", ok("replica", "running", 3), 0.01, 200);
  m.countBackend("/replica", ok("master", "running", 3), 0.2, 150);
  // A failure keeps the last description; a body without facts too.
  m.countBackend("/primary", { ok: false, failure: "timeout", error: "timed out" }, 2, 300);
  m.countBackend("/primary", { ok: true, status: 503, body: "" }, 0.01, 310);
  ({ samples } = parseExposition(m.render()));
  assert.deepEqual(samples.filter((s) => s.name === info).map((s) => s.labels), [
    { role: "replica", state: "running", timeline: "3" },
  ]);
  assert.equal(sampleValue(samples, changes), 1);

  // State and timeline alone are no role change; a body without a timeline has no timeline label.
  m.countBackend("/primary", ok("replica", "starting"), 0.01, 400);
  m.countBackend("/primary", ok("master", "running", 4), 0.01, 500);
  m.countBackend("/primary", ok("primary", "running", 4), 0.01, 600);
  ({ samples } = parseExposition(m.render()));
  assert.deepEqual(samples.filter((s) => s.name === info).map((s) => s.labels), [
    { role: "primary", state: "running", timeline: "4" },
  ]);
  assert.equal(sampleValue(samples, changes), 3);
  m.countBackend("/primary", ok("primary", "stopped"), 0.01, 700);
  assert.deepEqual(
    parseExposition(m.render()).samples.filter((s) => s.name === info).map((s) => s.labels),
    [{ role: "primary", state: "stopped" }],
  );
});

Deno.test("metrics: a request's send time defaults to its duration before now", () => {
  const m = metrics();
  m.countBackend("/primary", ok("master"), 0);
  // Sent 5 s ago (a slow Patroni), after the description above was asked for: ignored.
  m.countBackend("/primary", ok("replica"), 5);
  assert.equal(m.member?.role, "master");
  assert.equal(m.roleChanges, 0);
});

Deno.test("metrics: open connections by listener, and the process's resource use", () => {
  const m = new Metrics({
    version: "0",
    startTime: 1,
    cacheEntries: () => 0,
    backendInFlight: () => 0,
    backendTimeout: () => 2.5,
    openConnections: () => ({ frontend: 7, agent: 2 }),
    processStats: () => ({ residentBytes: 50 * 2 ** 20, cpuSeconds: 1.25 }),
  });
  const { samples, types } = parseExposition(m.render());
  const open = "patroniglue_open_connections";
  assert.equal(types.get(open), "gauge");
  assert.equal(sampleValue(samples, open, { listener: "frontend" }), 7);
  assert.equal(sampleValue(samples, open, { listener: "agent" }), 2);
  assert.equal(sampleValue(samples, open, { listener: "metrics" }), undefined);
  assert.equal(types.get("process_cpu_seconds_total"), "counter");
  assert.equal(sampleValue(samples, "process_cpu_seconds_total"), 1.25);
  assert.equal(types.get("process_resident_memory_bytes"), "gauge");
  assert.equal(sampleValue(samples, "process_resident_memory_bytes"), 50 * 2 ** 20);
  assert.equal(types.get("patroniglue_backend_timeout_seconds"), "gauge");
  assert.equal(sampleValue(samples, "patroniglue_backend_timeout_seconds"), 2.5);
  // What the runtime does not tell is left out, never shown as 0.
  const bare = new Metrics({
    version: "0",
    startTime: 1,
    cacheEntries: () => 0,
    backendInFlight: () => 0,
    processStats: () => ({}),
  });
  const names = new Set(parseExposition(bare.render()).samples.map((s) => s.name));
  assert.ok(!names.has("process_cpu_seconds_total"));
  assert.ok(!names.has("process_resident_memory_bytes"));
  assert.ok(!names.has(open));
  assert.ok(!names.has("patroniglue_backend_timeout_seconds"));
});

Deno.test("metrics: readProcessStats reads this process's resident size and CPU time", () => {
  const first = readProcessStats();
  assert.ok(first.residentBytes! > 10 * 2 ** 20, `resident ${first.residentBytes}`);
  assert.ok(first.cpuSeconds! > 0, `cpu ${first.cpuSeconds}`);
  // Work until the CPU time moves (on a busy machine this process may get little of it).
  const deadline = Date.now() + 30_000;
  let spins = 0;
  while (readProcessStats().cpuSeconds! <= first.cpuSeconds!) {
    for (let i = 0; i < 1e5; i++) spins += i % 7;
    assert.ok(Date.now() < deadline, "CPU time did not move in 30 s of work");
  }
  assert.ok(spins >= 0, "the work is not optimized away");
});

Deno.test({
  name: "metrics: promtool check metrics accepts every family, each with samples",
  ignore: !HAS_PROMTOOL,
  async fn() {
    const m = new Metrics({
      version: "1.2.3",
      startTime: 1,
      cacheEntries: () => 1,
      backendInFlight: () => 0,
      backendTimeout: () => 2,
      openConnections: () => ({ frontend: 1, agent: 0, metrics: 1 }),
    });
    m.countRequest("/primary", "GET", 200, "hit");
    m.countBackend("/primary", ok("master", "running", 2), 0.004);
    m.countRefreshAhead("/primary");
    m.countInvalidation("/replica", "/primary");
    m.countAgentCheck("/primary", "up");
    const text = m.render();
    const { samples, types } = parseExposition(text);
    for (const name of types.keys()) {
      assert.ok(samples.some((s) => s.name.startsWith(name)), `${name} has samples`);
    }
    assert.equal(await checkMetrics(text), "");
  },
});

/** Scrapes `url` and parses it. */
async function scrape(url: string): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const text = await res.text();
  return { text, samples: parseExposition(text).samples };
}

/** Scrapes `url` until `done` holds for what it reads (at most 10 s); returns that scrape. */
async function scrapeUntil(
  url: string,
  done: (samples: Sample[]) => boolean,
  what: string,
): Promise<Sample[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { samples } = await scrape(url);
    if (done(samples)) return samples;
    assert.ok(
      Date.now() < deadline,
      `not within 10 s: ${what}: ${
        samples.filter((s) => s.name === "patroniglue_open_connections").map((s) =>
          `${s.labels.listener}=${s.value}`
        )
      }`,
    );
    await sleep(20);
  }
}

/** The status of a GET of `url`, its body read. */
const status = (url: string) => fetch(url).then(async (r) => (await r.body?.cancel(), r.status));

Deno.test("metrics from main.ts (deno.json's permissions): member, role change, connections, process", async () => {
  await using fake = await FakePatroni.start();
  const [port, metricsPort, agentPort] = freePorts(3);
  const file = await writeConfig(
    configText(port, fake.port, {
      cache: "  ttl: 0.2",
      top: `metrics:\n  host: 127.0.0.1\n  port: ${metricsPort}\n` +
        `agent:\n  host: 127.0.0.1\n  port: ${agentPort}`,
    }),
  );
  await using glue = await GlueProcess.start(["-config", file]);
  const url = `http://127.0.0.1:${metricsPort}/metrics`;
  const memberOf = (samples: Sample[]) =>
    samples.filter((s) => s.name === "patroniglue_member_info").map((s) => [s.labels, s.value]);
  const changes = (samples: Sample[]) =>
    sampleValue(samples, "patroniglue_member_role_changes_total");

  let { samples } = await scrape(url);
  assert.deepEqual(memberOf(samples), [], "nothing before Patroni has answered");
  assert.equal(changes(samples), 0);
  assert.equal(sampleValue(samples, "patroniglue_backend_timeout_seconds"), 1, "backend.timeout");
  assert.equal(await status(`${glue.url}/primary`), 200);
  ({ samples } = await scrape(url));
  assert.deepEqual(memberOf(samples), [[{ role: "master", state: "running", timeline: "1" }, 1]]);
  assert.equal(changes(samples), 0);

  // Demoted: the first check that reaches Patroni after the ttl sees it.
  fake.role = "replica";
  const deadline = Date.now() + 10_000;
  while (await status(`${glue.url}/primary`) !== 503) assert.ok(Date.now() < deadline);
  ({ samples } = await scrape(url));
  assert.deepEqual(memberOf(samples), [[{ role: "replica", state: "running", timeline: "1" }, 1]]);
  assert.equal(changes(samples), 1);

  // Connections held open on the frontend (no request yet); the checks above may have left
  // kept-alive connections open there. The scrape's own connection is the metrics listener's.
  const open = (listener: string) => (s: Sample[]) =>
    sampleValue(s, "patroniglue_open_connections", { listener });
  const before = open("frontend")((await scrape(url)).samples)!;
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      held.push(
        await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(glue.url).port) }),
      );
    }
    samples = await scrapeUntil(
      url,
      (s) => open("frontend")(s) === before + 4,
      `${before} + 4 open`,
    );
    assert.equal(open("metrics")(samples), 1);
    assert.equal(open("agent")(samples), 0);
  } finally {
    for (const conn of held) conn.close();
  }
  samples = await scrapeUntil(url, (s) => open("frontend")(s) === before, "the held ones closed");

  // The process metrics, under deno.json's permission set (no /proc there).
  const rss = sampleValue(samples, "process_resident_memory_bytes")!;
  assert.ok(rss > 10 * 2 ** 20 && rss < 1024 * 2 ** 20, `resident ${rss}`);
  assert.ok(sampleValue(samples, "process_cpu_seconds_total")! > 0);
  const started = sampleValue(samples, "process_start_time_seconds")!;
  assert.ok(Math.abs(started - Date.now() / 1000) < 60, `started ${started}`);
  if (HAS_PROMTOOL) assert.equal(await checkMetrics((await scrape(url)).text), "");
});

Deno.test("metrics: open agent and frontend connections, counted while they are open (in process)", async () => {
  await using fake = await FakePatroni.start();
  const [port, agentPort] = freePorts(2);
  const config = await parseConfig(
    configText(port, fake.port, { top: `agent:\n  host: 127.0.0.1\n  port: ${agentPort}` }),
    "test.yml",
  );
  const service = await Service.start(config, new Logger({ level: "error", write: () => {} }), "t");
  const open = (listener: string) =>
    sampleValue(parseExposition(service.metrics.render()).samples, "patroniglue_open_connections", {
      listener,
    });
  /** Polls the metrics each turn of the event loop until `done` (the connections' deadlines run on timers). */
  const until = async (done: () => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!done()) {
      assert.ok(Date.now() < deadline, `agent ${open("agent")}, frontend ${open("frontend")}`);
      await sleep(0);
    }
  };
  const held: Deno.Conn[] = [];
  try {
    assert.deepEqual([open("frontend"), open("agent"), open("metrics")], [0, 0, undefined]);
    // Agent connections without a line stay open 100 ms (then the default check is answered and
    // they linger until the client closes, 1 s at most); frontend ones 10 s without a request.
    for (let i = 0; i < 3; i++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port: agentPort }));
    }
    for (let i = 0; i < 2; i++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port: service.frontend.port }));
    }
    await until(() => open("agent") === 3 && open("frontend") === 2);
    for (const conn of held) conn.close();
    await until(() => open("agent") === 0 && open("frontend") === 0);
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await service.stop();
  }
});
