// The agent-check listener in process (framing, deadlines, floods, shutdown; then over the real
// handler, cache and backend), and main.ts with an `agent:` section (replies, metrics, SIGHUP, stop).
import assert from "node:assert/strict";
import { type AgentOptions, serveAgent } from "../src/net/agent.ts";
import { PatroniClient } from "../src/check/backend.ts";
import { parseConfig } from "../src/config/config.ts";
import { Service } from "../src/service.ts";
import { HealthCache } from "../src/check/cache.ts";
import { createAgentResponder, createHandler, type MismatchWord } from "../src/check/handler.ts";
import type { AgentHandler, AgentRequest } from "../src/check/health.ts";
import { serveHttp1 } from "../src/net/http1.ts";
import { Logger } from "../src/log.ts";
import { HEALTH_CHECK_PATHS } from "../src/check/routes.ts";
import { agentCheck, readToClose } from "./support/agent_client.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { NOT_A_CHECK } from "./support/targets.ts";
import {
  clientHello,
  configText,
  freePort,
  GlueProcess,
  runGlue,
  sleep,
  spawnWithFileLimit,
  writeConfig,
} from "./support/glue.ts";
import { parseExposition, sampleValue } from "./support/prometheus.ts";

/** A listener whose handler replies `up #<line>` (or `down #<refusal>`) and records each request; `/hold` waits for `release`. */
function scripted(options: Partial<AgentOptions> = {}) {
  const seen: AgentRequest[] = [];
  const held = Promise.withResolvers<void>();
  const handle: AgentHandler = (req) => {
    seen.push(req);
    const reply = req.refused ? `down #${req.refused}` : `up #${req.line ?? "(none)"}`;
    return req.line === "/hold" ? held.promise.then(() => reply) : reply;
  };
  const server = serveAgent({
    transport: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    ...options,
  }, handle);
  return {
    server,
    seen,
    port: server.addr.port,
    release: () => held.resolve(),
    [Symbol.asyncDispose]: () => (held.resolve(), server.shutdown()),
  };
}

Deno.test("agent: a line ending in LF or CRLF gets one reply line ending in LF, then the close", async () => {
  await using s = scripted();
  const lf = await agentCheck(s.port, "/replica?lag=1MB\n");
  assert.deepEqual([lf.text, lf.closed], ["up #/replica?lag=1MB\n", true]);
  const crlf = await agentCheck(s.port, "/primary\r\n");
  assert.deepEqual([crlf.text, crlf.closed], ["up #/primary\n", true]);
  const more = await agentCheck(s.port, "/primary\n/replica\nanything\x00\n");
  assert.equal(more.text, "up #/primary\n", "one line per connection; what follows is ignored");
  const split = await (async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await conn.write(new TextEncoder().encode("/rep"));
    await sleep(50); // pieces closer than the line wait make one line
    await conn.write(new TextEncoder().encode("lica\r"));
    await sleep(20);
    await conn.write(new TextEncoder().encode("\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    conn.close();
    return new TextDecoder().decode(buf.subarray(0, n!));
  })();
  assert.equal(split, "up #/replica\n");
  assert.deepEqual(s.seen.map((r) => r.line), [
    "/replica?lag=1MB",
    "/primary",
    "/primary",
    "/replica",
  ]);
});

Deno.test("agent: no byte within 100 ms asks the default check; an empty line or the end of input too, at once", async () => {
  await using s = scripted();
  const silent = await agentCheck(s.port);
  assert.deepEqual([silent.text, silent.closed], ["up #(none)\n", true]);
  assert.ok(silent.ms >= 100 && silent.ms < 2000, `${silent.ms.toFixed(0)} ms`);
  const eof = await agentCheck(s.port, "", { closeWrite: true });
  assert.equal(eof.text, "up #(none)\n");
  assert.ok(eof.ms < 100, `${eof.ms.toFixed(0)} ms`);
  const empty = await agentCheck(s.port, "\r\n");
  assert.equal(empty.text, "up #\n");
  assert.deepEqual(s.seen.map((r) => r.line), [undefined, undefined, ""]);
  assert.ok(s.seen.every((r) => r.refused === undefined && /^127\.0\.0\.1:\d+$/.test(r.remote)));
});

Deno.test("agent: 1 KiB with its line ending is read; a longer line is refused as soon as 1 KiB is in", async () => {
  await using s = scripted({ headTimeoutMs: 60_000 });
  const longest = `/${"a".repeat(1021)}\r\n`;
  assert.equal(longest.length, 1024);
  assert.equal((await agentCheck(s.port, longest)).text, `up #/${"a".repeat(1021)}\n`);
  const over = await agentCheck(s.port, `/${"a".repeat(1023)}\n`);
  assert.deepEqual([over.text, over.closed], ["down #line too long\n", true]);
  const flood = await agentCheck(s.port, "a".repeat(200_000));
  assert.deepEqual([flood.text, flood.closed], ["down #line too long\n", true]);
  assert.ok(flood.ms < 4000, `${flood.ms.toFixed(0)} ms`);
  assert.deepEqual(s.seen.map((r) => r.refused), [undefined, "line too long", "line too long"]);
});

Deno.test("agent: binary junk, a TLS ClientHello, a lone CR, a space or a NUL are refused at once", async () => {
  await using s = scripted({ headTimeoutMs: 60_000 });
  const junk: (string | Uint8Array)[] = [
    await clientHello(),
    new Uint8Array([0xff, 0xfe, 0x00, 0x01]),
    "/primary\rx\n",
    "GET /primary HTTP/1.1\r\n\r\n",
    "/prim\x00ary\n",
    "/primary\t\n",
    "/prim\u00e9ry\n",
  ];
  for (const bytes of junk) {
    const r = await agentCheck(s.port, bytes);
    assert.deepEqual([r.text, r.closed], ["down #malformed line\n", true], String(bytes));
    assert.ok(r.ms < 4000, `${r.ms.toFixed(0)} ms`);
  }
  assert.ok(s.seen.every((r) => r.refused === "malformed line" && r.line === undefined));
});

Deno.test("agent: a line without its newline is taken as sent after the line wait's silence, or at the end of the input", async () => {
  await using s = scripted({ headTimeoutMs: 400 });
  // HAProxy's `agent-send "/primary"` (no \n): waiting for more would let HAProxy time out.
  const silent = await agentCheck(s.port, "/primary");
  assert.deepEqual([silent.text, silent.closed], ["up #/primary\n", true]);
  assert.ok(silent.ms >= 90 && silent.ms < 390, `${silent.ms.toFixed(0)} ms`);
  const cr = await agentCheck(s.port, "/replica\r");
  assert.equal(cr.text, "up #/replica\n");
  const ended = await agentCheck(s.port, "/primary", { closeWrite: true });
  assert.equal(ended.text, "up #/primary\n");
  assert.ok(ended.ms < 90, `${ended.ms.toFixed(0)} ms`);
  assert.deepEqual(s.seen.map((r) => r.line), ["/primary", "/replica", "/primary"]);
});

Deno.test("agent: a line still dripping at the head deadline is refused", async () => {
  await using s = scripted({ headTimeoutMs: 400 });
  // A client dripping a byte at a time cannot hold it past the head deadline from accept.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  const drip = setInterval(() => conn.write(new Uint8Array([0x61])).catch(() => {}), 30);
  const started = performance.now();
  const buf = new Uint8Array(64);
  const n = await conn.read(buf);
  clearInterval(drip);
  conn.close();
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "down #incomplete line\n");
  assert.ok(performance.now() - started < 3000);
  assert.equal(s.seen[0].refused, "incomplete line");
});

Deno.test("agent: a client that never reads nor closes is let go after the linger; one flooding it too", async () => {
  await using s = scripted();
  const quiet = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await quiet.write(new TextEncoder().encode("/primary\n"));
  const flooding = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await flooding.write(new TextEncoder().encode("/replica\n"));
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  let pushing = true;
  const pushed = (async () => {
    try {
      while (pushing) await flooding.write(chunk);
    } catch { /* closed by the server */ }
  })();
  await sleep(1600); // the linger (1 s) and a sweep
  pushing = false;
  assert.deepEqual(await readToClose(quiet, 1000), { text: "up #/primary\n", closed: true });
  assert.equal((await readToClose(flooding, 1000)).closed, true, "the server closed its side");
  await pushed;
  assert.deepEqual(s.seen.map((r) => r.line), ["/primary", "/replica"]);
});

Deno.test("agent: 2,000 connections at once (silent, half-sent, junk) while checks are still answered", async () => {
  await using s = scripted({ headTimeoutMs: 3000, lineWaitMs: 3000 });
  const enc = new TextEncoder();
  const conns: Deno.Conn[] = [];
  try {
    // Silent ones get the default check at the head deadline (the line wait is as long here).
    const sends = ["", "/prim", "\x16\x03\x01"];
    for (let i = 0; i < 2000; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, () => Deno.connect({ hostname: "127.0.0.1", port: s.port })),
      );
      await Promise.all(batch.map((c, j) => {
        const send = sends[(i + j) % 3];
        return send ? c.write(enc.encode(send)).catch(() => 0) : 0;
      }));
      conns.push(...batch);
    }
    const latencies: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await agentCheck(s.port, "/primary\n");
      assert.deepEqual([r.text, r.closed], ["up #/primary\n", true]);
      latencies.push(r.ms);
    }
    latencies.sort((a, b) => a - b);
    console.log(
      `measure: agent checks beside 2000 other connections: p50 ${
        latencies[25].toFixed(1)
      } ms, max ${latencies[49].toFixed(1)} ms`,
    );
    // Every one of the 2,000 gets its reply and is closed within the head deadline and the linger.
    const replies = await Promise.all(conns.map(async (c) => (await readToClose(c, 8000)).text));
    const counts = new Map<string, number>();
    for (const r of replies) counts.set(r, (counts.get(r) ?? 0) + 1);
    assert.deepEqual(
      Object.fromEntries(counts),
      {
        "up #(none)\n": 667,
        "down #incomplete line\n": 667,
        "down #malformed line\n": 666,
      },
    );
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* read to its close */ }
    }
  }
});

Deno.test("agent: shutdown closes connections waiting for a line, lets a reply in progress finish, leaves nothing open", async () => {
  const s = scripted();
  const waiting = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await waiting.write(new TextEncoder().encode("/prim"));
  const busy = agentCheck(s.port, "/hold\n");
  while (s.seen.length === 0) await sleep(5);
  const stopped = s.server.shutdown();
  await sleep(50);
  s.release();
  await stopped;
  assert.equal((await busy).text, "up #/hold\n");
  assert.equal(await waiting.read(new Uint8Array(16)).catch(() => null), null);
  waiting.close();
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: s.port }));
});

// Over the real handler, cache and backend client, in front of the simulated Patroni.

/** The HTTP frontend and the agent listener on one cache, as the service wires them. */
function stack(
  fake: FakePatroni,
  options: {
    timeout?: number;
    mismatch?: MismatchWord;
    check?: string;
    ttl?: number;
    headTimeoutMs?: number;
  } = {},
) {
  const log = new Logger({ level: "error", write: () => {} });
  const client = new PatroniClient({
    host: "127.0.0.1",
    port: fake.port,
    scheme: "http",
    insecure: false,
    timeout: options.timeout ?? 1,
  });
  const cache = new HealthCache({
    ttl: options.ttl ?? 5,
    fetch: (key) => client.fetchPatroniStatus(key),
  });
  const checks: [string, string][] = [];
  const agent = serveAgent(
    {
      transport: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
      headTimeoutMs: options.headTimeoutMs,
    },
    createAgentResponder({
      cache,
      log,
      mismatch: options.mismatch ?? "maint",
      defaultCheck: options.check ?? "/primary",
      onResponse: (check, word) => checks.push([check, word]),
    }),
  );
  const http = serveHttp1(
    { transport: Deno.listen({ hostname: "127.0.0.1", port: 0 }) },
    createHandler({ cache, log, accessLogTemplate: "" }),
  );
  return {
    checks,
    agentPort: agent.addr.port,
    httpUrl: `http://127.0.0.1:${http.addr.port}`,
    ask: async (line?: string) =>
      (await agentCheck(agent.addr.port, line === undefined ? "" : `${line}\n`)).text,
    async [Symbol.asyncDispose]() {
      await Promise.all([agent.shutdown(), http.shutdown()]);
      cache.close();
      client.close();
    },
  };
}

Deno.test("agent: an agent check and an HTTP check of /primary within one ttl cost Patroni one request", async () => {
  await using fake = await FakePatroni.start({ delayMs: 100 });
  await using s = stack(fake);
  const [agent, http] = await Promise.all([
    s.ask("/primary"),
    fetch(`${s.httpUrl}/primary`).then(async (
      r,
    ) => [r.status, r.headers.get("x-cache"), await r.text()]),
  ]);
  assert.equal(agent, "up ready\n");
  assert.equal(http[0], 200);
  assert.equal(fake.count("/primary"), 1, "concurrent: one flight");
  assert.equal(await s.ask(), "up ready\n", "the default check, /primary: a hit");
  const later = await fetch(`${s.httpUrl}/primary`);
  await later.body?.cancel();
  assert.equal(later.headers.get("x-cache"), "HIT");
  assert.equal(fake.count("/primary"), 1);
  assert.equal(fake.requests, 1);
  assert.deepEqual(s.checks, [["/primary", "up"], ["/primary", "up"]]);
});

Deno.test("agent: unsafe or unknown targets are refused without contacting Patroni", async () => {
  await using fake = await FakePatroni.start();
  await using s = stack(fake);
  for (const line of NOT_A_CHECK) {
    assert.equal(await s.ask(line), "down #not a health check\n", line);
  }
  assert.equal(await s.ask("POST /failover"), "down #malformed line\n");
  assert.deepEqual([...fake.counts], [], "Patroni was never asked");
  assert.equal(fake.connections.size, 0);
  assert.ok(s.checks.every(([check, word]) => check === "other" && word === "down"));
});

Deno.test("agent: a frozen Patroni gives down within backend.timeout", async () => {
  await using fake = await FakePatroni.start();
  await using s = stack(fake, { timeout: 0.3, ttl: 0.1 });
  fake.freeze();
  const started = performance.now();
  assert.equal(await s.ask("/primary"), "down #patroni unreachable (timeout)\n");
  const ms = performance.now() - started;
  assert.ok(ms >= 290 && ms < 1500, `${ms.toFixed(0)} ms`);
  fake.thaw();
  await sleep(150);
  assert.equal(await s.ask("/primary"), "up ready\n");
  assert.deepEqual(s.checks.map(([, w]) => w), ["down", "up"]);
});

Deno.test("agent: a healthy replica is maint or drain (agent.mismatch), the primary up ready, a member not running down", async () => {
  await using fake = await FakePatroni.start({ role: "replica" });
  {
    await using maint = stack(fake, { ttl: 0 });
    assert.equal(await maint.ask("/primary"), "maint\n");
    assert.equal(await maint.ask("/replica?lag=1MB"), "up ready\n");
    fake.lagBytes = 10 << 20;
    assert.equal(await maint.ask("/replica?lag=1MB"), "maint\n", "lagging, yet running");
  }
  {
    await using drain = stack(fake, { ttl: 0, mismatch: "drain", check: "/replica" });
    assert.equal(await drain.ask("/primary"), "drain\n");
    fake.role = "primary";
    assert.equal(await drain.ask(), "drain\n", "the default check, /replica, on the primary");
    assert.equal(await drain.ask("/primary"), "up ready\n");
    const body = fake.body();
    fake.body = () => ({ ...body, state: "stopped", role: "replica" });
    fake.role = "replica";
    assert.equal(await drain.ask("/primary"), "down #member stopped\n");
    assert.deepEqual(drain.checks.map(([, w]) => w), ["drain", "drain", "up", "down"]);
  }
});

Deno.test("agent: seeded random lines always get one well-formed reply; only allowlisted checks reach Patroni", async () => {
  await using fake = await FakePatroni.start();
  await using s = stack(fake, { ttl: 0.05, headTimeoutMs: 300 });
  let state = 0x2545f491; // a fixed seed: the same 300 cases every run
  const int = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state >>> 8) % n;
  };
  const seeds = ["/primary", "/replica?lag=1MB&tag_dc=a", "/read-only", "/failover", "/%2e%2e/"];
  const pieces = [
    "/",
    "?",
    "&",
    "=",
    "%",
    "%00",
    "..",
    "\r",
    "\n",
    " ",
    "\x00",
    "\xff",
    "#",
    "lag",
  ];
  const cases = Array.from({ length: 300 }, () => {
    let line = seeds[int(seeds.length)];
    for (let k = int(4); k > 0; k--) {
      const at = int(line.length + 1);
      line = line.slice(0, at) + pieces[int(pieces.length)] + line.slice(at + int(2));
    }
    const bytes = [...line].map((c) => c.charCodeAt(0) & 0xff);
    return {
      line,
      bytes: new Uint8Array(int(3) === 0 ? bytes : [...bytes, 10]),
      eof: int(2) === 0,
    };
  });
  const replies = new Map<string, number>();
  const worker = async () => {
    for (let c; (c = cases.pop());) {
      const r = await agentCheck(s.agentPort, c.bytes, { closeWrite: c.eof });
      const what = JSON.stringify(c.line);
      assert.match(r.text, /^(up ready|maint|drain|down #[\x20-\x7e]{1,80})\n$/, what);
      assert.ok(r.closed, what);
      const word = r.text.split(/[ \n]/)[0];
      replies.set(word, (replies.get(word) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: 20 }, worker));
  for (const target of fake.counts.keys()) {
    assert.ok(HEALTH_CHECK_PATHS.has(new URL(target, "http://x").pathname), target);
  }
  assert.ok(
    (replies.get("up") ?? 0) > 0 && (replies.get("down") ?? 0) > 0,
    JSON.stringify([...replies]),
  );
});

Deno.test("agent: the service starts, rebinds, removes and stops its agent listener, leaving nothing open", async () => {
  await using fake = await FakePatroni.start();
  const [http, a, b] = [freePort(), freePort(), freePort()];
  const config = (agent: string) =>
    parseConfig(configText(http, fake.port, { top: agent }), "test.yml");
  const log = new Logger({ level: "error", write: () => {} });
  const service = await Service.start(await config(`agent:\n  port: ${a}`), log, "test");
  try {
    assert.deepEqual(service.agent, { address: `127.0.0.1:${a}`, check: "/primary" });
    assert.equal((await agentCheck(a, "/replica\n")).text, "maint\n");
    await service.reload(await config(`agent:\n  port: ${b}\n  mismatch: drain`));
    assert.equal((await agentCheck(b, "/replica\n")).text, "drain\n");
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: a }));
    await service.reload(await config(""));
    assert.equal(service.agent, undefined);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: b }));
    await service.reload(await config(`agent:\n  port: ${a}`));
  } finally {
    await service.stop(); // the sanitizers fail the test if a listener or a timer is left
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: a }));
});

// main.ts with an `agent:` section, as users run it.

Deno.test("agent (main.ts): replies on agent.port, the start line says where, /metrics counts by check and word", async () => {
  await using fake = await FakePatroni.start();
  const agentPort = freePort();
  const file = await writeConfig(
    configText(freePort(), fake.port, { top: `agent:\n  port: ${agentPort}` }),
  );
  await using glue = await GlueProcess.start(["-config", file]);
  assert.match(
    await glue.waitFor(/listening on/),
    new RegExp(
      `listening on http://127\\.0\\.0\\.1:\\d+, checking .*; agent checks on 127\\.0\\.0\\.1:${agentPort} \\(default /primary\\)$`,
    ),
  );
  assert.equal((await agentCheck(agentPort)).text, "up ready\n");
  assert.equal((await agentCheck(agentPort, "/primary\n")).text, "up ready\n");
  assert.equal((await agentCheck(agentPort, "/replica?lag=1MB\r\n")).text, "maint\n");
  assert.equal((await agentCheck(agentPort, "/switchover\n")).text, "down #not a health check\n");
  assert.equal(
    (await agentCheck(agentPort, "x".repeat(2000))).text,
    "down #line too long\n",
  );
  const { samples, types } = parseExposition(await (await fetch(`${glue.url}/metrics`)).text());
  const name = "patroniglue_agent_checks_total";
  assert.equal(types.get(name), "counter");
  assert.equal(sampleValue(samples, name, { check: "/primary", word: "up" }), 2);
  assert.equal(sampleValue(samples, name, { check: "/replica", word: "maint" }), 1);
  assert.equal(sampleValue(samples, name, { check: "other", word: "down" }), 2);
  assert.equal(fake.count("/primary"), 1, "one backend request for the /primary checks");
  assert.equal(fake.count("/switchover"), 0);
  assert.doesNotMatch(glue.stderr, /ERROR|WARN/);
});

Deno.test("agent (main.ts): SIGHUP applies check and mismatch in place, moves the port, refuses a busy one, removes the listener", async () => {
  await using fake = await FakePatroni.start({ role: "replica" });
  const port = freePort();
  const [a, b] = [freePort(), freePort()];
  const write = (agent: string) =>
    Deno.writeTextFile(file, configText(port, fake.port, { top: agent }));
  const file = await writeConfig(configText(port, fake.port, { top: `agent:\n  port: ${a}` }));
  await using glue = await GlueProcess.start(["-config", file]);
  const outcomes = () => glue.stderr.split("\n").filter((l) => /reloaded|reload refused/.test(l));
  const reloaded = async (match: RegExp) => {
    const before = outcomes().length;
    Deno.kill(glue.pid, "SIGHUP");
    while (outcomes().length === before) await sleep(20);
    assert.match(outcomes()[before], match);
  };
  assert.equal((await agentCheck(a)).text, "maint\n");

  // A connection in the middle of its line when the reload happens: the listener is the same one.
  const midway = await Deno.connect({ hostname: "127.0.0.1", port: a });
  await midway.write(new TextEncoder().encode("/prim"));
  await write(`agent:\n  port: ${a}\n  check: /replica\n  mismatch: drain`);
  await reloaded(
    new RegExp(
      `reloaded; agent\\.check: "/primary" -> "/replica"; agent\\.mismatch: "maint" -> "drain"; listening on \\S+; agent checks on 127\\.0\\.0\\.1:${a} \\(default /replica\\)`,
    ),
  );
  await midway.write(new TextEncoder().encode("ary\n"));
  const buf = new Uint8Array(64);
  const n = await midway.read(buf);
  midway.close();
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "drain\n");
  assert.equal((await agentCheck(a)).text, "up ready\n", "the default check is /replica now");

  await write(`agent:\n  port: ${b}\n  mismatch: drain`);
  await reloaded(new RegExp(`agent\\.port: ${a} -> ${b};.*agent checks on 127\\.0\\.0\\.1:${b} `));
  assert.equal((await agentCheck(b, "/primary\n")).text, "drain\n");
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: a }));

  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await write(`agent:\n  port: ${busy.addr.port}`);
  await reloaded(
    new RegExp(
      `ERROR reload refused, keeping the running configuration: cannot listen on 127\\.0\\.0\\.1:${busy.addr.port}`,
    ),
  );
  assert.equal((await agentCheck(b, "/primary\n")).text, "drain\n", "still the running config");

  await write("");
  await reloaded(/reloaded; .*agent\.port: \d+ -> unset; listening on \S+$/);
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: b }));
  await write(`agent:\n  port: ${a}`);
  await reloaded(new RegExp(`agent\\.port: unset -> ${a};.*agent checks on 127\\.0\\.0\\.1:${a} `));
  assert.equal((await agentCheck(a)).text, "maint\n");
  assert.equal(fake.count("/failover"), 0);
});

Deno.test("agent (main.ts): a busy agent port refuses to start, with exit 1, naming the address", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const file = await writeConfig(
    configText(freePort(), freePort(), { top: `agent:\n  port: ${busy.addr.port}` }),
  );
  const { code, stderr } = await runGlue(["-config", file]);
  assert.equal(code, 1);
  assert.match(
    stderr,
    new RegExp(
      `ERROR cannot start: cannot listen on 127\\.0\\.0\\.1:${busy.addr.port}: .*in use`,
      "i",
    ),
  );
});

Deno.test("agent (main.ts): SIGTERM with agent connections open stops at once, nothing left listening", async () => {
  await using fake = await FakePatroni.start();
  const agentPort = freePort();
  const file = await writeConfig(
    configText(freePort(), fake.port, { top: `agent:\n  port: ${agentPort}` }),
  );
  const glue = await GlueProcess.start(["-config", file]);
  // A client still sending its line (a byte every 30 ms: never silent for the line wait).
  const waiting = await Deno.connect({ hostname: "127.0.0.1", port: agentPort });
  const drip = setInterval(() => waiting.write(new Uint8Array([0x61])).catch(() => {}), 30);
  await sleep(200);
  const started = performance.now();
  const { code, stderr } = await glue.stop("SIGTERM");
  const ms = performance.now() - started;
  clearInterval(drip);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /NOTICE stopped$/);
  assert.doesNotMatch(stderr, /longer than 5s/);
  assert.ok(ms < 3000, `${ms.toFixed(0)} ms`);
  assert.equal(await waiting.read(new Uint8Array(16)).catch(() => null), null);
  waiting.close();
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: agentPort }));
});

Deno.test("agent (main.ts): after a flood past the open-file limit, agent checks are answered again", async () => {
  await using fake = await FakePatroni.start();
  const agentPort = freePort();
  const file = await writeConfig(
    configText(freePort(), fake.port, { top: `agent:\n  port: ${agentPort}` }),
  );
  const { child, stderr } = spawnWithFileLimit(file, 200);
  const flood: Deno.Conn[] = [];
  try {
    while ((await agentCheck(agentPort, "/primary\n").catch(() => ({ text: "" }))).text === "") {
      await sleep(50);
    }
    try {
      for (let i = 0; i < 400; i++) {
        flood.push(await Deno.connect({ hostname: "127.0.0.1", port: agentPort }));
      }
    } catch { /* refused: the backlog is full while accepting waits */ }
    const started = performance.now();
    let reply = "";
    while (reply !== "up ready\n" && performance.now() - started < 20_000) {
      reply = (await agentCheck(agentPort, "/primary\n", { limitMs: 2000 }).catch(() => ({
        text: "",
      }))).text;
      if (reply !== "up ready\n") await sleep(100);
    }
    console.log(
      `measure: agent: answering again ${
        (performance.now() - started).toFixed(0)
      } ms after a flood of ${flood.length}`,
    );
    assert.equal(reply, "up ready\n");
  } finally {
    for (const c of flood) c.close();
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
  }
  const log = await stderr;
  assert.match(log, /ERROR cannot accept agent connections: .*; retrying/);
  assert.doesNotMatch(log, /panicked|Uncaught/);
});
