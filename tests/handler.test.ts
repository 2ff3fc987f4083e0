// The handler in process: route -> cache -> response, with the backend's fetch and the clock
// injected (no socket, no sleep).
import assert from "node:assert/strict";
import type { BackendOutcome } from "../src/backend.ts";
import { HealthCache } from "../src/cache.ts";
import { createHandler, type HandlerOptions, lookup, metricsHandler } from "../src/handler.ts";
import type { HealthRequest, HealthResponse } from "../src/health.ts";
import { Logger, type LogLevel } from "../src/log.ts";
import type { Route } from "../src/routes.ts";

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
    logformat: "%a %m %U %s %C",
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
