import assert from "node:assert/strict";
import type { BackendOutcome } from "../src/backend.ts";
import { HealthCache } from "../src/cache.ts";

/** A backend whose answers the test releases one by one. */
function controlledBackend() {
  const calls: { key: string; reply: PromiseWithResolvers<BackendOutcome> }[] = [];
  return {
    calls,
    fetch(key: string) {
      const reply = Promise.withResolvers<BackendOutcome>();
      calls.push({ key, reply });
      return reply.promise;
    },
  };
}

const ok = (status: 200 | 503, role = "master"): BackendOutcome => ({
  ok: true,
  status,
  body: JSON.stringify({ role }),
});

Deno.test("cache: an answer is fresh for exactly ttl from the moment the backend answered", async () => {
  let now = 1000;
  const backend = controlledBackend();
  const cache = new HealthCache({ ttl: 1, fetch: backend.fetch, now: () => now });
  const first = cache.get("/primary");
  now = 1500; // the backend takes 500 ms to answer
  backend.calls[0].reply.resolve(ok(200));
  assert.equal((await first).result, "miss");
  now = 2499;
  const hit = await cache.get("/primary");
  assert.deepEqual([hit.result, hit.entry.status, hit.entry.storedAt], ["hit", 200, 1500]);
  now = 2500;
  const expired = cache.get("/primary");
  assert.equal(backend.calls.length, 2, "expired exactly at storedAt + ttl");
  backend.calls[1].reply.resolve(ok(503));
  assert.deepEqual([(await expired).result, (await expired).entry.status], ["miss", 503]);
});

Deno.test("cache: concurrent requests for a cold key share one backend request", async () => {
  const backend = controlledBackend();
  const cache = new HealthCache({ ttl: 1, fetch: backend.fetch, now: () => 0 });
  const pending = Array.from({ length: 50 }, () => cache.get("/replica?lag=1MB"));
  assert.equal(backend.calls.length, 1);
  assert.equal(cache.inFlight, 1);
  backend.calls[0].reply.resolve(ok(200, "replica"));
  const results = await Promise.all(pending);
  assert.equal(results[0].result, "miss");
  assert.ok(results.slice(1).every((r) => r.result === "coalesced" && r.entry.status === 200));
  assert.equal(cache.inFlight, 0);
});

Deno.test("cache: distinct keys are distinct entries", async () => {
  const calls: string[] = [];
  const cache = new HealthCache({
    ttl: 1,
    fetch: (key) => (calls.push(key), Promise.resolve(ok(200))),
    now: () => 0,
  });
  await cache.get("/primary");
  await cache.get("/replica");
  await cache.get("/primary");
  assert.deepEqual(calls, ["/primary", "/replica"]);
});

Deno.test("cache: a failure is a 503 with an error body, cached for ttl, never a stale 200", async () => {
  let now = 0;
  const outcomes: BackendOutcome[] = [
    ok(200),
    { ok: false, failure: "timeout", error: "no answer within 2s" },
    ok(200),
  ];
  let calls = 0;
  const cache = new HealthCache({
    ttl: 1,
    fetch: () => Promise.resolve(outcomes[calls++]),
    now: () => now,
  });
  assert.equal((await cache.get("/primary")).entry.status, 200);
  now = 1000;
  const failed = await cache.get("/primary");
  assert.equal(failed.entry.status, 503);
  assert.equal(failed.entry.failure, "timeout");
  assert.deepEqual(JSON.parse(failed.entry.body), { error: "no answer within 2s" });
  now = 1999;
  assert.deepEqual([(await cache.get("/primary")).result, calls], ["hit", 2]);
  now = 2000;
  assert.equal((await cache.get("/primary")).entry.status, 200);
  assert.equal(calls, 3);
});

Deno.test("cache: ttl 0 stores nothing but still coalesces", async () => {
  const backend = controlledBackend();
  const cache = new HealthCache({ ttl: 0, fetch: backend.fetch, now: () => 0 });
  const a = cache.get("/primary"), b = cache.get("/primary");
  assert.equal(backend.calls.length, 1);
  backend.calls[0].reply.resolve(ok(200));
  assert.deepEqual([(await a).result, (await b).result], ["miss", "coalesced"]);
  assert.equal(cache.size, 0);
  const c = cache.get("/primary");
  assert.equal(backend.calls.length, 2);
  backend.calls[1].reply.resolve(ok(200));
  await c;
});

Deno.test("cache: entries are bounded; expired ones go first, then the oldest", async () => {
  let now = 0;
  const cache = new HealthCache({
    ttl: 10,
    maxEntries: 3,
    fetch: () => Promise.resolve(ok(200)),
    now: () => now,
  });
  for (let i = 0; i < 100; i++) {
    now = i;
    await cache.get(`/replica?lag=${i}`);
    assert.ok(cache.size <= 3);
  }
  assert.equal((await cache.get("/replica?lag=99")).result, "hit");
  assert.equal((await cache.get("/replica?lag=0")).result, "miss");
});

Deno.test("cache: the sweep frees expired entries only", async () => {
  let now = 0;
  const cache = new HealthCache({ ttl: 1, fetch: () => Promise.resolve(ok(200)), now: () => now });
  await cache.get("/a");
  now = 600;
  await cache.get("/b");
  now = 1000;
  assert.equal(cache.sweep(), 1);
  assert.equal(cache.size, 1);
  assert.equal((await cache.get("/b")).result, "hit");
  now = 1600;
  assert.equal(cache.sweep(), 1);
  assert.equal(cache.size, 0);
});
