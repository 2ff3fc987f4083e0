// The handler in process: route -> cache -> response, with the backend's fetch and the clock
// injected (no socket, no sleep).
import assert from "node:assert/strict";
import type { BackendOutcome } from "../src/check/backend.ts";
import { HealthCache } from "../src/check/cache.ts";
import type { CacheEntry } from "../src/check/cache.ts";
import {
  agentReply,
  type AgentResponderOptions,
  createAgentResponder,
  createHandler,
  downReply,
  type HandlerOptions,
  lookup,
  metricsHandler,
} from "../src/check/handler.ts";
import type { AgentRequest, HealthRequest, HealthResponse } from "../src/check/health.ts";
import { Logger, type LogLevel } from "../src/log.ts";
import { Witness } from "../src/check/witness.ts";
import type { Route } from "../src/check/routes.ts";
import { NOT_A_CHECK } from "./support/targets.ts";

const PRIMARY = JSON.stringify({ state: "running", role: "master" });

/** A handler over a cache whose backend the test controls, on a clock the test moves. */
function setup(
  options: Partial<HandlerOptions> & { level?: LogLevel; format?: "text" | "json" } = {},
) {
  const clock = { now: 10_000 };
  const fetches: { key: string; reply: PromiseWithResolvers<BackendOutcome> }[] = [];
  const cacheOptions = {
    ttl: 5,
    now: () => clock.now,
    fetch: (key: string) => {
      const reply = Promise.withResolvers<BackendOutcome>();
      fetches.push({ key, reply });
      return reply.promise;
    },
    // A cache that schedules refreshes ahead gets a timer that never fires: the test moves time.
    setTimer: () => 0,
    clearTimer: () => {},
  };
  const cache = new HealthCache(cacheOptions);
  const lines: string[] = [];
  const log = new Logger({
    level: options.level ?? "notice",
    format: options.format,
    write: (l) => lines.push(l),
  });
  const seen: { route: Route["kind"]; status: number; cache: string }[] = [];
  const handle = createHandler({
    cache,
    log,
    accessLogTemplate: "%a %m %U %s %C",
    now: () => clock.now,
    onResponse: (route, _req, res, cache) =>
      seen.push({ route: route.kind, status: res.status, cache }),
    ...options,
  });
  return { clock, fetches, cache, lines, seen, handle };
}

function req(target: string, method = "GET", hasBody = false): HealthRequest {
  return { method, target, remote: "127.0.0.1:5", hasBody };
}

/** The handler's result, awaited, and whether it came synchronously. */
async function run(
  handle: (r: HealthRequest) => HealthResponse | Promise<HealthResponse>,
  r: HealthRequest,
) {
  const result = handle(r);
  return { sync: !(result instanceof Promise), res: await result };
}

Deno.test("handler: a miss asks the backend once; hits come from memory, synchronously, with their age", async () => {
  const t = setup();
  const pending = t.handle(req("/primary"));
  assert.ok(pending instanceof Promise, "a miss waits for the backend");
  assert.deepEqual(t.fetches.map((f) => f.key), ["/primary"]);
  t.clock.now += 150;
  t.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  const miss = await pending;
  assert.deepEqual(
    [miss.status, miss.body, miss.headers["x-cache"], miss.headers.age],
    [200, PRIMARY, "MISS", "0"],
  );
  assert.equal(miss.headers["content-type"], "application/json");
  t.clock.now += 2_500;
  const hit = await run(t.handle, req("/primary"));
  assert.equal(hit.sync, true);
  assert.deepEqual(
    [hit.res.status, hit.res.body, hit.res.headers["x-cache"], hit.res.headers.age],
    [200, PRIMARY, "HIT", "2"],
  );
  assert.equal(hit.res.reused, true, "a hit may be encoded once and written many times");
  assert.equal((await run(t.handle, req("/primary"))).res, hit.res, "same second, same object");
  t.clock.now += 1_000;
  const older = (await run(t.handle, req("/primary"))).res;
  assert.notEqual(older, hit.res);
  assert.equal(older.headers.age, "3");
  assert.equal(t.fetches.length, 1);
  assert.deepEqual(t.seen.map((s) => s.cache), ["miss", "hit", "hit", "hit"]);
});

Deno.test("handler: checks in flight share one backend request; the expired entry is asked again", async () => {
  const t = setup();
  const a = t.handle(req("/replica?lag=1MB&tag_dc=a"));
  const b = t.handle(req("/replica?tag_dc=a&lag=1MB"));
  assert.equal(t.fetches.length, 1, "one canonical key, one request");
  t.fetches[0].reply.resolve({ ok: true, status: 503, body: "{}" });
  assert.deepEqual(
    [(await a).headers["x-cache"], (await b).headers["x-cache"], (await b).status],
    ["MISS", "COALESCED", 503],
  );
  t.clock.now += 5_000;
  const again = t.handle(req("/replica?tag_dc=a&lag=1MB"));
  assert.ok(again instanceof Promise);
  assert.equal(t.fetches.length, 2);
  t.fetches[1].reply.resolve({ ok: true, status: 200, body: "{}" });
  assert.equal((await again).status, 200);
});

Deno.test("handler: a backend failure is a 503 with the reason, counted as an error, never a stale 200", async () => {
  const t = setup();
  const first = t.handle(req("/primary"));
  t.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  await first;
  t.clock.now += 5_000;
  const failed = t.handle(req("/primary"));
  t.fetches[1].reply.resolve({ ok: false, failure: "timeout", error: "no answer within 1s" });
  const res = await failed;
  assert.equal(res.status, 503);
  assert.deepEqual(JSON.parse(res.body), { error: "no answer within 1s" });
  assert.deepEqual(t.seen.map((s) => s.cache), ["miss", "error"]);
});

Deno.test("handler: HEAD keeps the GET body (the listener drops it); OPTIONS has none", async () => {
  const t = setup();
  const first = t.handle(req("/primary", "HEAD"));
  t.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  assert.equal((await first).body, PRIMARY);
  const options = (await run(t.handle, req("/primary", "OPTIONS"))).res;
  assert.deepEqual([options.status, options.body, options.reused], [200, "", undefined]);
});

Deno.test("handler: local responses never reach the backend", async () => {
  const t = setup();
  const cases: [HealthRequest, number, string | RegExp][] = [
    [req("/health"), 200, '{"healthy":true}'],
    [req("/health", "HEAD"), 200, '{"healthy":true}'],
    [req("/failover", "POST"), 404, '{"error":"not found"}'],
    [req("/config"), 404, '{"error":"not found"}'],
    [req("/../primary"), 404, '{"error":"not found"}'],
    [req("/primary", "POST"), 405, '{"error":"method not allowed"}'],
    [req(`/replica?lag=${"9".repeat(3000)}`), 414, /longer than 2048 bytes/],
    [req("/primary", "GET", true), 413, '{"error":"request body not allowed"}'],
    [req("/metrics"), 404, '{"error":"not found"}'],
  ];
  for (const [r, status, body] of cases) {
    const { sync, res } = await run(t.handle, r);
    assert.equal(sync, true, `${r.method} ${r.target.slice(0, 30)}`);
    assert.equal(res.status, status, `${r.method} ${r.target.slice(0, 30)}`);
    if (typeof body === "string") assert.equal(res.body, body);
    else assert.match(res.body, body);
  }
  const notAllowed = (await run(t.handle, req("/primary", "DELETE"))).res;
  assert.equal(notAllowed.headers.allow, "GET, HEAD, OPTIONS");
  assert.equal(t.fetches.length, 0);
  assert.ok(t.seen.every((s) => s.cache === "local"));
});

Deno.test("handler: /metrics is served on the frontend only when asked to", async () => {
  const t = setup({ metrics: () => "patroniglue_up 1\n" });
  const res = (await run(t.handle, req("/metrics"))).res;
  assert.deepEqual([res.status, res.body], [200, "patroniglue_up 1\n"]);
  assert.match(res.headers["content-type"], /^text\/plain; version=0\.0\.4/);
  const only = metricsHandler(() => "m 1\n");
  assert.equal((await only(req("/metrics"))).status, 200);
  assert.equal((await only(req("/primary"))).status, 404);
  assert.equal((await only(req("/metrics", "POST"))).status, 405);
});

Deno.test("handler: it never throws: a failing cache is a 500 and an error line", async () => {
  const t = setup();
  const broken = setup({
    cache: { peek: () => undefined, get: () => Promise.reject(new Error("boom")) } as never,
  });
  const res = await broken.handle(req("/primary"));
  assert.deepEqual([res.status, res.body], [500, '{"error":"internal error"}']);
  assert.match(broken.lines.join("\n"), /ERROR handler failed: boom uri=\/primary/);
  const sync = setup({
    cache: {
      peek: () => {
        throw new Error("sync boom");
      },
    } as never,
  });
  assert.equal((await run(sync.handle, req("/primary"))).res.status, 500);
  assert.equal(t.lines.length, 0);
});

Deno.test("handler: the access log line follows logformat (text) or has stable fields (json)", async () => {
  const text = setup({ level: "info" });
  await text.handle(req("/health"));
  assert.match(text.lines[0], /INFO 127\.0\.0\.1:5 GET \/health 200 local$/);
  const json = setup({ level: "debug", format: "json" });
  const pending = json.handle(req("/primary"));
  json.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  await pending;
  const [cache, access] = json.lines.map((l) => JSON.parse(l));
  assert.deepEqual([cache.msg, cache.key, cache.result, cache.status], [
    "cache",
    "/primary",
    "miss",
    200,
  ]);
  assert.deepEqual(
    [access.msg, access.remote, access.method, access.uri, access.status, access.cache],
    ["request", "127.0.0.1:5", "GET", "/primary", 200, "miss"],
  );
  assert.equal(typeof access.duration_ms, "number");
});

Deno.test("handler: lookup gives a fresh entry synchronously, else the cache's request", async () => {
  const t = setup();
  const cold = lookup(t.cache, "/primary");
  assert.ok(cold instanceof Promise);
  t.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  const { entry, result } = await cold;
  assert.deepEqual([entry.status, result], [200, "miss"]);
  assert.equal(lookup(t.cache, "/primary"), entry);
});

// The agent-check rules, on the same cache as the HTTP handler.

const REPLICA = JSON.stringify({ state: "running", role: "replica" });

/** An agent responder (and the HTTP handler) over one cache whose backend the test controls. */
function agentSetup(
  options: Partial<AgentResponderOptions> & { level?: LogLevel; format?: "text" | "json" } = {},
) {
  const t = setup({ level: options.level, format: options.format });
  const checks: [string, string][] = [];
  const log = new Logger({
    level: options.level ?? "notice",
    format: options.format,
    write: (l) => t.lines.push(l),
  });
  const respond = createAgentResponder({
    cache: t.cache,
    log,
    mismatch: "maint",
    defaultCheck: "/primary",
    onResponse: (check, word) => checks.push([check, word]),
    ...options,
  });
  return { ...t, respond, checks };
}

function agentReq(line?: string): AgentRequest {
  return { line, remote: "127.0.0.1:6" };
}

function entry(status: number, extra: Partial<CacheEntry> = {}): CacheEntry {
  return { status, body: "{}", storedAt: 0, ...extra };
}

Deno.test("agent rules: 200 is up ready, a running member's 503 the mismatch word, anything else down with a reason", () => {
  const running = { role: "replica", state: "running" };
  const cases: [CacheEntry, string, string][] = [
    [entry(200, { member: { role: "master", state: "running" } }), "up ready", "up ready"],
    [entry(200), "up ready", "up ready"],
    [entry(503, { member: running }), "maint", "drain"],
    [entry(503, { member: { role: "replica", state: "stopped" } }), "down #member stopped", ""],
    [entry(503, { member: { role: "master", state: "starting" } }), "down #member starting", ""],
    [entry(503), "down #member state unknown", ""],
    [entry(503, { failure: "timeout" }), "down #patroni unreachable (timeout)", ""],
    [entry(503, { failure: "refused" }), "down #patroni unreachable (refused)", ""],
    [entry(503, { failure: "tls" }), "down #patroni unreachable (tls)", ""],
    [entry(503, { failure: "error" }), "down #patroni unreachable (error)", ""],
    [entry(503, { failure: "invalid" }), "down #invalid patroni response", ""],
  ];
  for (const [e, maint, drain] of cases) {
    assert.equal(agentReply(e, "maint", "/replica"), maint, JSON.stringify(e));
    assert.equal(agentReply(e, "drain", "/replica"), drain || maint, JSON.stringify(e));
  }
});

Deno.test("agent rules: a leader check's 503 from a member in the leader's role is down, never maint or drain", () => {
  const as = (role: string) => entry(503, { member: { role, state: "running" } });
  const cases: [string, string, string][] = [
    ["/primary", "master", "down #master without the leader lock"],
    ["/primary", "primary", "down #primary without the leader lock"],
    ["/", "master", "down #master without the leader lock"],
    ["/read-write", "master", "down #master without the leader lock"],
    ["/leader", "standby_leader", "down #standby_leader without the leader lock"],
    ["/standby-leader", "standby_leader", "down #standby_leader without the leader lock"],
    // Members in another role: the mismatch word.
    ["/primary", "replica", "drain"],
    ["/primary", "standby_leader", "drain"],
    ["/standby-leader", "master", "drain"],
    ["/replica", "master", "drain"],
    ["/read-only", "replica", "drain"], // a lagging (or noloadbalance) replica
  ];
  for (const [path, role, reply] of cases) {
    assert.equal(agentReply(as(role), "drain", path), reply, `${path} ${role}`);
  }
});

Deno.test("agent rules: a reason from Patroni's body is one short printable ASCII line", () => {
  const odd = entry(503, { member: { role: "replica", state: "crashed\nup ready\u00e9\t" } });
  assert.equal(agentReply(odd, "maint", "/replica"), "down #member crashed?up ready??");
  const long = agentReply(
    entry(503, { member: { role: "r", state: "x".repeat(500) } }),
    "maint",
    "/replica",
  );
  assert.equal(long, `down #member ${"x".repeat(73)}`);
  assert.equal(downReply("a\r\nb"), "down #a??b");
});

Deno.test("agent: a check shares the HTTP check's cache entry and single flight; a hit is synchronous", async () => {
  const t = agentSetup();
  const http = t.handle(req("/primary"));
  const agent = t.respond(agentReq("/primary"));
  assert.ok(agent instanceof Promise);
  assert.deepEqual(t.fetches.map((f) => f.key), ["/primary"], "one backend request for both");
  t.fetches[0].reply.resolve({
    ok: true,
    status: 200,
    body: PRIMARY,
    member: { role: "master", state: "running" },
  });
  assert.equal((await http).status, 200);
  assert.equal(await agent, "up ready");
  const hit = t.respond(agentReq("/primary"));
  assert.equal(hit, "up ready", "a fresh entry is answered without waiting");
  assert.equal((await run(t.handle, req("/primary"))).res.headers["x-cache"], "HIT");
  assert.equal(t.fetches.length, 1);
  assert.deepEqual(t.checks, [["/primary", "up"], ["/primary", "up"]]);
});

Deno.test("agent: no line or an empty one asks the default check; a query is made canonical as over HTTP", async () => {
  const t = agentSetup({ defaultCheck: "/replica?tag_dc=a&lag=1MB", mismatch: "drain" });
  const none = t.respond(agentReq());
  const empty = t.respond(agentReq(""));
  const same = t.respond(agentReq("/replica?lag=1MB&tag_dc=a"));
  assert.deepEqual(t.fetches.map((f) => f.key), ["/replica?lag=1MB&tag_dc=a"]);
  t.fetches[0].reply.resolve({
    ok: true,
    status: 503,
    body: REPLICA,
    member: { role: "replica", state: "running" },
  });
  assert.deepEqual(await Promise.all([none, empty, same]), ["drain", "drain", "drain"]);
  assert.deepEqual(t.checks.map(([c]) => c), ["/replica", "/replica", "/replica"]);
});

Deno.test("agent: unsafe or unknown targets are refused at once, without the backend", () => {
  const t = agentSetup();
  for (const line of NOT_A_CHECK) {
    assert.equal(t.respond(agentReq(line)), "down #not a health check", line);
  }
  const params = Array.from({ length: 17 }, (_, i) => `p${i}=1`).join("&");
  assert.equal(t.respond(agentReq(`/replica?${params}`)), "down #more than 16 query parameters");
  assert.equal(t.fetches.length, 0);
  assert.ok(t.checks.every(([check, word]) => check === "other" && word === "down"));
  assert.equal(t.checks.length, NOT_A_CHECK.length + 1);
});

Deno.test("agent: input the listener refused is down with its reason, counted as other", () => {
  const t = agentSetup();
  const reply = t.respond({ refused: "line too long", remote: "127.0.0.1:6" });
  assert.equal(reply, "down #line too long");
  assert.deepEqual(t.checks, [["other", "down"]]);
  assert.equal(t.fetches.length, 0);
});

Deno.test("agent: a backend failure is down with its reason, never a stale up", async () => {
  const t = agentSetup();
  const first = t.respond(agentReq("/primary"));
  t.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  assert.equal(await first, "up ready");
  t.clock.now += 5_000;
  const failed = t.respond(agentReq("/primary"));
  t.fetches[1].reply.resolve({ ok: false, failure: "timeout", error: "no answer within 1s" });
  assert.equal(await failed, "down #patroni unreachable (timeout)");
  assert.deepEqual(t.checks, [["/primary", "up"], ["/primary", "down"]]);
});

Deno.test("agent: it never throws: a failing cache is down #internal error and an error line", async () => {
  const broken = agentSetup({
    cache: { peek: () => undefined, get: () => Promise.reject(new Error("boom")) } as never,
  });
  assert.equal(await broken.respond(agentReq("/primary")), "down #internal error");
  assert.match(broken.lines.join("\n"), /ERROR agent check failed: boom check=\/primary/);
  const sync = agentSetup({
    cache: {
      peek: () => {
        throw new Error("sync boom");
      },
    } as never,
  });
  assert.equal(sync.respond(agentReq("/replica")), "down #internal error");
  assert.deepEqual(sync.checks, [["/replica", "down"]]);
});

Deno.test("agent: one access line per check at info (text or json), none at the default level", async () => {
  const quiet = agentSetup();
  quiet.respond(agentReq("/failover"));
  assert.equal(quiet.lines.length, 0);
  const text = agentSetup({ level: "info" });
  text.respond(agentReq("/failover"));
  assert.match(
    text.lines[0],
    /INFO agent check remote=127\.0\.0\.1:6 check=\/failover cache=local duration_ms=[\d.]+ reply=down #not a health check$/,
  );
  const json = agentSetup({ level: "info", format: "json" });
  const pending = json.respond(agentReq("/primary\u0000"));
  assert.equal(pending, "down #not a health check");
  const miss = json.respond(agentReq());
  json.fetches[0].reply.resolve({ ok: true, status: 200, body: PRIMARY });
  await miss;
  const [refused, access] = json.lines.map((l) => JSON.parse(l));
  assert.equal(refused.check, "/primary\u0000");
  assert.deepEqual(
    [
      access.msg,
      access.remote,
      access.check,
      access.cache,
      access.reply,
      typeof access.duration_ms,
    ],
    ["agent check", "127.0.0.1:6", "/primary", "miss", "up ready", "number"],
  );
});

for (const witnessed of [false, true]) {
  Deno.test(`handler: a hit reads the clock once, for its freshness and its age alike${witnessed ? ", with the DCS witness beside the cache" : ""}`, async () => {
    let reads = 0;
    const clock = { now: 5_000 };
    const now = () => (reads++, clock.now);
    const cache = new HealthCache({
      ttl: 5,
      now,
      fetch: () => Promise.resolve({ ok: true, status: 200, body: PRIMARY } as BackendOutcome),
      setTimer: () => 0,
      clearTimer: () => {},
    });
    // A witness with no view: it judges every hit without a clock of its own.
    const witness = new Witness({ view: () => undefined, name: "n1", now: () => 0 });
    const handle = createHandler({
      cache,
      log: new Logger({ write: () => {} }),
      accessLogTemplate: "%U",
      now,
      witness: witnessed ? { cache, witness, patienceMs: 500 } : undefined,
    });
    await handle(req("/primary"));
    clock.now += 2_000;
    reads = 0;
    const hit = handle(req("/primary")) as HealthResponse;
    assert.equal(hit.headers.age, "2");
    assert.equal(hit.headers["x-cache"], "HIT");
    assert.equal(reads, 1);
  });
}

Deno.test("agent: a check answered from a held backend failure counts as an error, a miss or a hit alike", async () => {
  const t = agentSetup({ level: "info", format: "json" });
  const first = t.respond(agentReq("/primary"));
  t.fetches[0].reply.resolve({ ok: false, failure: "timeout", error: "no answer within 1s" });
  assert.equal(await first, "down #patroni unreachable (timeout)");
  assert.equal(await t.respond(agentReq("/primary")), "down #patroni unreachable (timeout)");
  assert.equal(t.fetches.length, 1, "the failure is held");
  const sources = t.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "agent check")
    .map((l) => l.cache);
  assert.deepEqual(sources, ["error", "error"]);
});
