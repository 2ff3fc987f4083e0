import assert from "node:assert/strict";
import type { BackendOutcome } from "../src/check/backend.ts";
import { HealthCache, type HealthCacheOptions } from "../src/check/cache.ts";
import { fakeClock, settle } from "./support/clock.ts";

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

/** A Patroni body with member facts, as Patroni 3.x sends it. */
const member = (
  status: 200 | 503,
  { role = "master", state = "running", timeline = 1, xlog = 1000 } = {},
): BackendOutcome => ({
  ok: true,
  status,
  body: JSON.stringify({ state, role, timeline, xlog: { location: xlog } }),
  member: { role, state, timeline },
});

/** A backend that answers each request `latency` ms (fake time) after it, deciding when it answers or on receipt. */
function timedBackend(
  clock: ReturnType<typeof fakeClock>,
  reply: (key: string) => BackendOutcome = () => member(200),
  decides: "on receipt" | "when it answers" = "when it answers",
) {
  const backend = {
    latency: 100,
    /** When set, every request that ends gets this instead (a frozen or stopped Patroni). */
    failing: undefined as BackendOutcome | undefined,
    calls: [] as { key: string; at: number }[],
    open: new Map<string, number>(),
    /** Most requests ever open at once for one key. */
    maxOpen: 0,
    fetch(key: string): Promise<BackendOutcome> {
      backend.calls.push({ key, at: clock.ms });
      const open = (backend.open.get(key) ?? 0) + 1;
      backend.open.set(key, open);
      backend.maxOpen = Math.max(backend.maxOpen, open);
      const early = decides === "on receipt" ? reply(key) : undefined;
      return new Promise((resolve) =>
        clock.after(backend.latency, () => {
          backend.open.set(key, backend.open.get(key)! - 1);
          resolve(backend.failing ?? early ?? reply(key));
        })
      );
    },
    count: (key: string) => backend.calls.filter((c) => c.key === key).length,
  };
  return backend;
}

const timedOut: BackendOutcome = { ok: false, failure: "timeout", error: "no answer within 2s" };

/** A cache on the fake clock, recording its refreshes ahead and invalidations. */
function cacheOn(
  clock: ReturnType<typeof fakeClock>,
  options: Pick<HealthCacheOptions, "fetch"> & Partial<HealthCacheOptions>,
) {
  const refreshes: { key: string; at: number }[] = [];
  const invalidations: [string, string][] = [];
  const cache = new HealthCache({
    ttl: 1,
    ...clock.options,
    onRefreshAhead: (key) => refreshes.push({ key, at: clock.ms }),
    onInvalidate: (key, byKey) => invalidations.push([key, byKey]),
    ...options,
  });
  return { cache, refreshes, invalidations };
}

/** One check of each key at the same instant, waiting (moving time) until all are served. */
async function checkAll(clock: ReturnType<typeof fakeClock>, cache: HealthCache, keys: string[]) {
  const at = clock.ms;
  const served: { key: string; at: number; wait: number; result: string; status: number }[] = [];
  for (const key of keys) {
    cache.get(key).then(({ entry, result }) =>
      served.push({ key, at, wait: clock.ms - at, result, status: entry.status })
    );
  }
  await settle();
  while (served.length < keys.length) await clock.step();
  return served;
}

/** Checks every key every `every` ms until `to`, one round at a time (HAProxy waits for each). */
async function checkEvery(
  clock: ReturnType<typeof fakeClock>,
  cache: HealthCache,
  keys: string[],
  every: number,
  to: number,
) {
  const results = [];
  for (let t = clock.ms; t <= to; t = Math.max(t + every, clock.ms)) {
    await clock.advance(t);
    results.push(...await checkAll(clock, cache, keys));
  }
  return results;
}

// --- The cache as before refresh ahead (its timers never run here) ---

Deno.test("cache: an entry is fresh for exactly ttl from the moment the backend answered", async () => {
  const clock = fakeClock(1000);
  const backend = controlledBackend();
  const cache = new HealthCache({ ttl: 1, fetch: backend.fetch, ...clock.options });
  const first = cache.get("/primary");
  clock.ms = 1500; // the backend takes 500 ms to answer
  backend.calls[0].reply.resolve(ok(200));
  assert.equal((await first).result, "miss");
  clock.ms = 2499;
  const hit = await cache.get("/primary");
  assert.deepEqual([hit.result, hit.entry.status, hit.entry.storedAt], ["hit", 200, 1500]);
  clock.ms = 2500;
  const expired = cache.get("/primary");
  assert.equal(backend.calls.length, 2, "expired exactly at storedAt + ttl");
  backend.calls[1].reply.resolve(ok(503));
  assert.deepEqual([(await expired).result, (await expired).entry.status], ["miss", 503]);
});

Deno.test("cache: concurrent requests for a cold key share one backend request", async () => {
  const clock = fakeClock();
  const backend = controlledBackend();
  const cache = new HealthCache({ ttl: 1, fetch: backend.fetch, ...clock.options });
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
  const clock = fakeClock();
  const calls: string[] = [];
  const cache = new HealthCache({
    ttl: 1,
    fetch: (key) => (calls.push(key), Promise.resolve(ok(200))),
    ...clock.options,
  });
  await cache.get("/primary");
  await cache.get("/replica");
  await cache.get("/primary");
  assert.deepEqual(calls, ["/primary", "/replica"]);
});

Deno.test("cache: a failure is a 503 with an error body, cached for ttl, never a stale 200", async () => {
  const clock = fakeClock();
  const outcomes: BackendOutcome[] = [
    ok(200),
    { ok: false, failure: "timeout", error: "no answer within 2s" },
    ok(200),
  ];
  let calls = 0;
  const cache = new HealthCache({
    ttl: 1,
    fetch: () => Promise.resolve(outcomes[calls++]),
    ...clock.options,
  });
  assert.equal((await cache.get("/primary")).entry.status, 200);
  clock.ms = 1000;
  const failed = await cache.get("/primary");
  assert.equal(failed.entry.status, 503);
  assert.equal(failed.entry.failure, "timeout");
  assert.deepEqual(JSON.parse(failed.entry.body), { error: "no answer within 2s" });
  clock.ms = 1999;
  assert.deepEqual([(await cache.get("/primary")).result, calls], ["hit", 2]);
  clock.ms = 2000;
  assert.equal((await cache.get("/primary")).entry.status, 200);
  assert.equal(calls, 3);
});

Deno.test("cache: ttl 0 stores nothing but still coalesces", async () => {
  const clock = fakeClock();
  const backend = controlledBackend();
  const cache = new HealthCache({ ttl: 0, fetch: backend.fetch, ...clock.options });
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
  const clock = fakeClock();
  const cache = new HealthCache({
    ttl: 10,
    maxEntries: 3,
    fetch: () => Promise.resolve(ok(200)),
    ...clock.options,
  });
  for (let i = 0; i < 100; i++) {
    clock.ms = i;
    await cache.get(`/replica?lag=${i}`);
    assert.ok(cache.size <= 3);
  }
  assert.equal((await cache.get("/replica?lag=99")).result, "hit");
  assert.equal((await cache.get("/replica?lag=0")).result, "miss");
});

Deno.test("cache: the sweep frees expired entries only", async () => {
  const clock = fakeClock();
  const cache = new HealthCache({
    ttl: 1,
    fetch: () => Promise.resolve(ok(200)),
    ...clock.options,
  });
  await cache.get("/a");
  clock.ms = 600;
  await cache.get("/b");
  clock.ms = 1000;
  assert.equal(cache.sweep(), 1);
  assert.equal(cache.size, 1);
  assert.equal((await cache.get("/b")).result, "hit");
  clock.ms = 1600;
  assert.equal(cache.sweep(), 1);
  assert.equal(cache.size, 0);
});

// --- Member facts ---

Deno.test("cache: an entry keeps the member facts its outcome carries", async () => {
  const clock = fakeClock();
  const outcomes = [member(200, { role: "replica", timeline: 3 }), ok(200)];
  const cache = new HealthCache({
    ttl: 1,
    fetch: (key) => Promise.resolve(outcomes[Number(key)]),
    ...clock.options,
  });
  assert.deepEqual((await cache.get("0")).entry.member, {
    role: "replica",
    state: "running",
    timeline: 3,
  });
  assert.equal((await cache.get("1")).entry.member, undefined);
});

// --- Refresh ahead ---

Deno.test("refresh ahead: a used route gets its successor by expiry; a check at expiry is a hit", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  const first = cache.get("/primary");
  await clock.advance(100);
  assert.deepEqual([(await first).result, (await first).entry.storedAt], ["miss", 100]);
  await clock.advance(500);
  assert.equal(cache.peek("/primary")?.storedAt, 100, "checked during its life");
  await clock.advance(1100); // the first entry's expiry
  assert.deepEqual(refreshes.map((r) => r.key), ["/primary"]);
  assert.equal(backend.calls.length, 2);
  const atExpiry = await cache.get("/primary");
  assert.equal(atExpiry.result, "hit");
  assert.equal(atExpiry.entry.storedAt, 1100, "asked at 1000, one ttl after the first request");
  cache.close();
});

Deno.test("refresh ahead: a route checked all along never waits and costs one GET per ttl", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache } = cacheOn(clock, { fetch: backend.fetch });
  const first = cache.get("/primary");
  await clock.advance(100);
  await first;
  const results = await checkEvery(clock, cache, ["/primary"], 50, 10_100);
  assert.ok(results.every((r) => r.result === "hit"), "no check waited");
  // 10 s of use at ttl 1 s: the cold fetch and ten refreshes (a little over one per ttl).
  assert.ok(backend.calls.length >= 10 && backend.calls.length <= 12, `${backend.calls.length}`);
  cache.close();
});

Deno.test("refresh ahead: a route in use is asked one ttl after the request before (its latency before expiry, at most ttl/2)", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { ttl: 2, fetch: backend.fetch });
  backend.latency = 300;
  await checkEvery(clock, cache, ["/primary"], 50, 4500);
  // Asked at 0, stored at 300: asked again at 2000, 4000, ... (exactly one request per ttl).
  assert.deepEqual(backend.calls.map((c) => c.at), [0, 2000, 4000]);
  assert.equal(refreshes.length, 2);
  assert.equal((await cache.get("/primary")).result, "hit");
  // Slower than ttl/2 (a timeout after 1.5 s): asked 1 s (ttl/2) before expiry, not 1.5 s.
  backend.failing = timedOut;
  backend.latency = 1500;
  await checkEvery(clock, cache, ["/primary"], 50, 10_000);
  const failed = backend.calls.find((c) => c.at >= 6000)!;
  const next = backend.calls.find((c) => c.at > failed.at)!;
  assert.equal(next.at - (failed.at + 1500), 2000 - 1000);
  cache.close();
});

Deno.test("refresh ahead: an unused route is not refreshed; an idle cache fetches nothing, holds no timer", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  const once = cache.get("/replica"); // one check, never repeated
  await clock.advance(100);
  await once;
  await clock.advance(10_000);
  assert.deepEqual([backend.calls.length, refreshes.length, clock.timers], [1, 0, 0]);
  // In use for 2 s, then idle: at most one refresh after the last check, then nothing.
  await checkEvery(clock, cache, ["/replica"], 50, 12_000);
  const inUse = backend.calls.length;
  await clock.advance(20_000);
  assert.ok(backend.calls.length <= inUse + 1, `${backend.calls.length} > ${inUse} + 1`);
  const idle = backend.calls.length;
  await clock.advance(60_000);
  assert.deepEqual([backend.calls.length, clock.timers, cache.inFlight], [idle, 0, 0]);
});

Deno.test("refresh ahead: close() cancels the timer and every planned refresh", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache } = cacheOn(clock, { fetch: backend.fetch });
  await checkEvery(clock, cache, ["/primary", "/replica"], 50, 2000);
  await clock.advance(clock.ms + 150); // let any refresh in flight land
  cache.close();
  assert.equal(clock.timers, 0);
  const calls = backend.calls.length;
  assert.ok(cache.peek("/primary"), "entries stay");
  await clock.advance(10_000);
  assert.deepEqual([backend.calls.length, clock.timers], [calls, 0]);
});

Deno.test("refresh ahead: with the default timer, `using` leaves nothing running", async () => {
  const backend = controlledBackend();
  {
    using cache = new HealthCache({ ttl: 30, fetch: backend.fetch });
    const first = cache.get("/primary");
    backend.calls[0].reply.resolve(member(200));
    await first;
    assert.ok(cache.peek("/primary"));
  } // a pending timer here would fail the op sanitizer
  assert.equal(backend.calls.length, 1);
});

// --- Stagger ---

/** Gaps between consecutive refresh starts, over all keys. */
const gaps = (refreshes: { at: number }[]) =>
  refreshes.slice(1).map((r, i) => r.at - refreshes[i].at);

Deno.test("stagger: two routes first asked at the same instant are refreshed ~ttl/2 apart", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  const results = await checkEvery(clock, cache, ["/primary", "/replica"], 50, 10_000);
  assert.deepEqual(
    results.filter((r) => r.result !== "hit").length,
    2,
    "only the cold misses waited",
  );
  assert.ok(refreshes.length >= 18, `${refreshes.length}`);
  for (const gap of gaps(refreshes)) assert.ok(gap >= 400 && gap <= 500, `gap ${gap}`);
  // Alternating: never the same route twice in a row.
  assert.ok(refreshes.slice(1).every((r, i) => r.key !== refreshes[i].key));
  cache.close();
});

Deno.test("stagger: three routes are refreshed ~ttl/3 apart", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  const keys = ["/primary", "/replica", "/replica?lag=1MB"];
  const results = await checkEvery(clock, cache, keys, 50, 10_000);
  assert.equal(results.filter((r) => r.result !== "hit").length, 3);
  const steady = gaps(refreshes.filter((r) => r.at > 2000));
  assert.ok(steady.length >= 20, `${steady.length}`);
  for (const gap of steady) assert.ok(gap >= 250 && gap <= 340, `gap ${gap}`);
  cache.close();
});

Deno.test("stagger: a route that joins later is fitted between the others", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  await checkEvery(clock, cache, ["/primary"], 50, 3000);
  await checkEvery(clock, cache, ["/primary", "/replica"], 50, 10_000);
  const steady = gaps(refreshes.filter((r) => r.at > 5000));
  for (const gap of steady) assert.ok(gap >= 400 && gap <= 500, `gap ${gap}`);
  cache.close();
});

// --- Cross-route invalidation ---

/** Stores /replica with `before`, then fetches /primary which answers `after`. */
async function contradict(before: BackendOutcome, after: BackendOutcome) {
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache, invalidations } = cacheOn(clock, { ttl: 10, fetch: backend.fetch });
  const replica = cache.get("/replica");
  backend.calls[0].reply.resolve(before);
  await replica;
  clock.ms = 100;
  const primary = cache.get("/primary");
  backend.calls[1].reply.resolve(after);
  await primary;
  clock.ms = 200;
  const ended = cache.peek("/replica") === undefined;
  const next = cache.get("/replica");
  const asked = backend.calls.length === 3;
  backend.calls[2]?.reply.resolve(after);
  await next;
  cache.close();
  return { ended, asked, invalidations, primaryKept: cache.peek("/primary") !== undefined };
}

Deno.test("invalidation: a new role, state or timeline ends the other entries; xlog does not", async () => {
  const before = member(200, { role: "replica", state: "running", timeline: 1, xlog: 1 });
  const cases: [string, BackendOutcome, boolean][] = [
    ["role", member(503, { role: "master", timeline: 1, xlog: 1 }), true],
    ["timeline", member(503, { role: "replica", timeline: 2, xlog: 1 }), true],
    ["state", member(503, { role: "replica", state: "starting", xlog: 1 }), true],
    ["xlog", member(503, { role: "replica", timeline: 1, xlog: 999 }), false],
  ];
  for (const [change, after, ends] of cases) {
    const { ended, asked, invalidations, primaryKept } = await contradict(before, after);
    assert.deepEqual([ended, asked], [ends, ends], change);
    assert.deepEqual(invalidations, ends ? [["/replica", "/primary"]] : [], change);
    assert.ok(primaryKept, change);
  }
});

Deno.test("invalidation: the ended route's next check asks Patroni, never borrows another route's body", async () => {
  const { asked } = await contradict(
    member(200, { role: "replica" }),
    member(200, { role: "master" }),
  );
  assert.ok(asked);
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache } = cacheOn(clock, { ttl: 10, fetch: backend.fetch });
  const replica = cache.get("/replica");
  backend.calls[0].reply.resolve(member(200, { role: "replica" }));
  await replica;
  const primary = cache.get("/primary");
  backend.calls[1].reply.resolve(member(200, { role: "master" }));
  await primary;
  const next = cache.get("/replica");
  assert.equal(backend.calls[2].key, "/replica");
  backend.calls[2].reply.resolve(member(503, { role: "master" }));
  const { entry, result } = await next;
  assert.deepEqual([result, entry.status, entry.member?.role], ["miss", 503, "master"]);
  cache.close();
});

Deno.test("invalidation: a backend failure is cached as before and ends nothing", async () => {
  const failure: BackendOutcome = { ok: false, failure: "refused", error: "connection refused" };
  const { ended, invalidations, primaryKept } = await contradict(member(200), failure);
  assert.deepEqual([ended, invalidations, primaryKept], [false, [], true]);
});

Deno.test("invalidation: a body without member facts ends nothing", async () => {
  for (const body of ["", "[]", JSON.stringify({ role: "master" })]) {
    const after: BackendOutcome = { ok: true, status: 200, body };
    const { ended, invalidations } = await contradict(member(200), after);
    assert.deepEqual([ended, invalidations], [false, []], body);
  }
});

Deno.test("invalidation: an entry whose facts are unknown ends when the facts change, not when they agree", async () => {
  const unknown: BackendOutcome = { ok: false, failure: "invalid", error: "bad status line" };
  // No facts known yet: the first body with facts is a change.
  assert.equal((await contradict(unknown, member(200))).ended, true);
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache, invalidations } = cacheOn(clock, { ttl: 10, fetch: backend.fetch });
  const steps: [string, BackendOutcome][] = [
    ["/leader", member(200)],
    ["/replica", unknown],
    ["/primary", member(200)], // agrees with what is known: the unknown entry stays
    ["/read-only", member(200, { role: "replica" })], // a change: the unknown entry ends
  ];
  const kept = [];
  for (const [key, outcome] of steps) {
    const pending = cache.get(key);
    backend.calls.at(-1)!.reply.resolve(outcome);
    await pending;
    kept.push(cache.peek("/replica") !== undefined);
  }
  assert.deepEqual(kept, [false, true, true, false]);
  assert.deepEqual(invalidations.map(([key]) => key).sort(), ["/leader", "/primary", "/replica"]);
  cache.close();
});

Deno.test("invalidation: an old refresh landing after the flip does not bring back the old role", async () => {
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache, invalidations } = cacheOn(clock, { fetch: backend.fetch });
  const primary = member(200, { role: "master" }), demoted = member(503, { role: "replica" });
  const first = cache.get("/primary");
  clock.ms = 1; // Patroni took 1 ms: the refresh is planned 1 ms before expiry
  backend.calls[0].reply.resolve(primary);
  await first;
  clock.ms = 500;
  assert.ok(cache.peek("/primary"));
  await clock.advance(1000); // the refresh ahead of /primary starts, and hangs
  assert.deepEqual(backend.calls.map((c) => c.key), ["/primary", "/primary"]);
  assert.ok(cache.peek("/primary"), "fresh until 1000");
  // Started after it, a fetch for another route learns of the demotion.
  const leader = cache.get("/leader");
  backend.calls[2].reply.resolve(demoted);
  await leader;
  assert.deepEqual(invalidations, [["/primary", "/leader"]]);
  assert.equal(cache.peek("/primary"), undefined, "ended before its expiry");
  const check = cache.get("/primary"); // joins the refresh in flight
  assert.equal(backend.calls.length, 3, "single flight");
  backend.calls[1].reply.resolve(primary); // the old refresh lands, with the old role
  await settle();
  assert.equal(cache.peek("/primary"), undefined, "the old role is not stored");
  assert.ok(cache.peek("/leader"), "nor does it end the newer entry");
  assert.equal(backend.calls.length, 4, "the waiting check asks again");
  backend.calls[3].reply.resolve(demoted);
  const { entry, result } = await check;
  assert.deepEqual([result, entry.status, entry.member?.role], ["coalesced", 503, "replica"]);
  assert.deepEqual(invalidations, [["/primary", "/leader"]]);
  cache.close();
});

Deno.test("invalidation: an old refresh of a route in use is asked again at once, never stored", async () => {
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache } = cacheOn(clock, { fetch: backend.fetch });
  const first = cache.get("/primary");
  clock.ms = 1;
  backend.calls[0].reply.resolve(member(200, { role: "master" }));
  await first;
  clock.ms = 500;
  cache.peek("/primary");
  await clock.advance(1000);
  const leader = cache.get("/leader");
  backend.calls[2].reply.resolve(member(503, { role: "replica" }));
  await leader;
  backend.calls[1].reply.resolve(member(200, { role: "master" }));
  await settle();
  assert.equal(cache.peek("/primary"), undefined, "the old role is not stored");
  assert.deepEqual([backend.calls.length, backend.calls[3].key, cache.inFlight], [
    4,
    "/primary",
    1,
  ]);
  backend.calls[3].reply.resolve(member(503, { role: "replica" }));
  await settle();
  const { entry, result } = await cache.get("/primary");
  assert.deepEqual([result, entry.status, entry.member?.role], ["hit", 503, "replica"]);
  assert.ok(cache.peek("/leader"));
  cache.close();
});

Deno.test("invalidation: a contradicted fetch is asked again only within the backend timeout; never served", async () => {
  const clock = fakeClock();
  const calls: { key: string; timeoutMs: number; reply: PromiseWithResolvers<BackendOutcome> }[] =
    [];
  const fetch = (key: string, timeoutMs: number) => {
    const reply = Promise.withResolvers<BackendOutcome>();
    calls.push({ key, timeoutMs, reply });
    return reply.promise;
  };
  const { cache } = cacheOn(clock, { ttl: 10, timeoutMs: 2000, fetch });
  const answer = async (i: number, outcome: BackendOutcome) => {
    calls[i].reply.resolve(outcome);
    await settle();
  };
  // Patroni is slow to answer /primary; /leader, asked later, answers first: now a replica.
  const check = cache.get("/primary");
  assert.equal(calls[0].timeoutMs, 2000);
  clock.ms = 100;
  const leader = cache.get("/leader");
  await answer(1, member(503, { role: "replica" }));
  await leader;
  clock.ms = 1900;
  await answer(0, member(200, { role: "master" })); // the older body: contradicted, not served
  assert.deepEqual([calls.length, calls[2].key, calls[2].timeoutMs], [3, "/primary", 100]);
  clock.ms = 1950;
  await answer(2, member(503, { role: "replica" }));
  const asked = await check;
  assert.deepEqual([asked.result, asked.entry.status, asked.entry.member?.role], [
    "miss",
    503,
    "replica",
  ]);
  // A contradicted body landing after the backend timeout is not asked again: a 503 at once.
  clock.ms = 3000;
  const slow = cache.get("/sync");
  clock.ms = 3100;
  const fast = cache.get("/async");
  await answer(4, member(200, { role: "replica", timeline: 2 }));
  await fast;
  clock.ms = 5100;
  await answer(3, member(503, { role: "replica", timeline: 1 }));
  assert.equal(calls.length, 5, "not asked again");
  const { entry } = await slow;
  assert.deepEqual([entry.status, entry.failure, entry.member], [503, "timeout", undefined]);
  assert.equal(cache.peek("/sync"), undefined, "nothing contradicted is stored");
  cache.close();
});

Deno.test("invalidation: an ended route in use is asked again at once; its next check joins that request", async () => {
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache, invalidations } = cacheOn(clock, { ttl: 10, fetch: backend.fetch });
  for (const [key, role] of [["/replica", "replica"], ["/leader", "replica"]]) {
    const pending = cache.get(key);
    backend.calls.at(-1)!.reply.resolve(member(key === "/replica" ? 200 : 503, { role }));
    await pending;
  }
  assert.ok(cache.peek("/replica"), "/replica is in use; /leader was never checked again");
  const primary = cache.get("/primary");
  backend.calls[2].reply.resolve(member(200, { role: "master" }));
  await primary;
  assert.deepEqual(invalidations.map(([key]) => key).sort(), ["/leader", "/replica"]);
  assert.deepEqual(backend.calls.map((c) => c.key), [
    "/replica",
    "/leader",
    "/primary",
    "/replica",
  ]);
  const next = cache.get("/replica");
  assert.equal(backend.calls.length, 4, "the check joins the request already asked");
  backend.calls[3].reply.resolve(member(503, { role: "master" }));
  const { entry, result } = await next;
  assert.deepEqual([result, entry.status], ["coalesced", 503]);
  assert.equal(cache.peek("/leader"), undefined, "an ended route nobody checks is not asked");
  cache.close();
});

/** A cache whose backend answers each request when the test says, by request number. */
function manual() {
  const clock = fakeClock();
  const backend = controlledBackend();
  const { cache, invalidations } = cacheOn(clock, { ttl: 10, fetch: backend.fetch });
  const ask = (key: string) => {
    const pending = cache.get(key);
    return { pending, reply: backend.calls.at(-1)!.reply };
  };
  return { cache, invalidations, ask, calls: backend.calls };
}

Deno.test("ordering: a body is judged against the newest fetch that reported the facts", async () => {
  const { cache, ask, calls } = manual();
  const old = member(200, { role: "master" }), now = member(503, { role: "replica" });
  const x = ask("/x");
  x.reply.resolve(old);
  await x.pending;
  const a = ask("/a"), b = ask("/b"), c = ask("/c"); // started in this order
  a.reply.resolve(now); // the flip: /x ends
  c.reply.resolve(now); // confirmed by a fetch started after /b
  await Promise.all([a.pending, c.pending]);
  b.reply.resolve(old); // started before /c's confirmation: older, so neither stored nor believed
  await settle();
  const roles = () => ["/x", "/a", "/b", "/c"].map((k) => cache.peek(k)?.member?.role);
  assert.deepEqual(roles(), [undefined, "replica", undefined, "replica"]);
  assert.equal(calls.length, 5, "the check waiting on /b asks again");
  calls[4].reply.resolve(now);
  assert.equal((await b.pending).entry.member?.role, "replica");
  assert.deepEqual(roles(), [undefined, "replica", "replica", "replica"]);
  cache.close();
});

Deno.test("ordering: an entry without facts fetched after the change is not ended by it", async () => {
  const { cache, ask, invalidations } = manual();
  const x = ask("/x");
  x.reply.resolve(member(200, { role: "master" }));
  await x.pending;
  const a = ask("/a"), b = ask("/b");
  b.reply.resolve({ ok: false, failure: "refused", error: "connection refused" });
  await b.pending;
  a.reply.resolve(member(503, { role: "replica" }));
  await a.pending;
  assert.deepEqual([!cache.peek("/x"), !!cache.peek("/b"), invalidations], [true, true, [[
    "/x",
    "/a",
  ]]]);
  cache.close();
});

// --- Guarantees kept with refresh ahead ---

Deno.test("guarantees: a slow refresh landing after expiry is joined by the checks that miss", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  const first = cache.get("/primary");
  await clock.advance(100);
  await first;
  cache.peek("/primary");
  backend.latency = 400; // Patroni slows down for the refresh
  await clock.advance(1000);
  assert.equal(refreshes.length, 1);
  assert.equal(backend.calls.length, 2);
  await clock.advance(1100); // expired, the refresh still in flight
  const late = [cache.get("/primary"), cache.get("/primary")];
  await clock.advance(1200);
  assert.equal(backend.calls.length, 2, "joined, not duplicated");
  await clock.advance(1500);
  const results = await Promise.all(late);
  assert.deepEqual(results.map((r) => r.result), ["coalesced", "coalesced"]);
  assert.ok(results[0].entry.storedAt > 1100);
  cache.close();
});

Deno.test("guarantees: a refresh timer that fires late never duplicates a miss in flight", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  await checkAll(clock, cache, ["/primary"]);
  cache.peek("/primary");
  clock.ms = 1150; // expired; the refresh planned for 993 has not run yet (a busy event loop)
  const late = checkAll(clock, cache, ["/primary"]);
  await clock.advance(1200); // now the timer runs, with the miss in flight
  const [check] = await late;
  assert.deepEqual([check.result, backend.calls.length, refreshes.length], ["miss", 2, 0]);
  cache.close();
});

Deno.test("guarantees: a refresh that fails replaces the 200 at once (never a stale 200)", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache } = cacheOn(clock, { fetch: backend.fetch });
  await checkEvery(clock, cache, ["/primary"], 50, 1500);
  backend.failing = { ok: false, failure: "refused", error: "connection refused" };
  const results = await checkEvery(clock, cache, ["/primary"], 50, 4000);
  const firstFailure = results.findIndex((r) => r.status === 503);
  assert.ok(firstFailure >= 0);
  assert.ok(results.slice(firstFailure).every((r) => r.status === 503), "no 200 after the error");
  const failedFetch = backend.calls.find((c) => c.at > 1500)!.at + backend.latency;
  assert.equal(results[firstFailure].at, Math.ceil(failedFetch / 50) * 50);
  cache.close();
});

Deno.test("guarantees: no entry is served older than ttl, whatever the latency and check times", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache } = cacheOn(clock, { fetch: backend.fetch });
  let seed = 7;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  let served = 0;
  while (clock.ms < 30_000) {
    backend.latency = 20 + Math.floor(random() * 600);
    await clock.advance(clock.ms + Math.floor(random() * 120));
    const keys = random() < 0.5 ? ["/primary"] : ["/primary", "/replica"];
    for (const check of await checkAll(clock, cache, keys)) {
      const entry = cache.peek(check.key) ?? (await cache.get(check.key)).entry;
      assert.ok(clock.ms - entry.storedAt < 1000, `served ${clock.ms - entry.storedAt} ms old`);
      served++;
    }
  }
  assert.ok(served > 300);
  cache.close();
});

Deno.test("guarantees: a frozen Patroni gets one request per key at a time; checks get a 503 within its timeout", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { fetch: backend.fetch });
  const keys = ["/primary", "/replica"];
  await checkEvery(clock, cache, keys, 50, 2000);
  backend.failing = timedOut;
  backend.latency = 2000; // every request now ends in the backend's 2 s timeout
  const results = await checkEvery(clock, cache, keys, 50, 15_000);
  assert.equal(backend.maxOpen, 1, "never two requests open for one key");
  assert.ok(refreshes.length > 10, "refreshes ahead kept asking");
  const frozenResults = results.filter((r) => r.at >= 2100 + 1000);
  assert.ok(frozenResults.every((r) => r.status === 503));
  const longest = Math.max(...results.map((r) => r.wait));
  assert.ok(longest > 0 && longest <= 2000, `a check waited ${longest} ms`);
  cache.close();
});

Deno.test("guarantees: maxEntries holds with refresh ahead", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { maxEntries: 2, fetch: backend.fetch });
  let largest = 0;
  for (let t = 0; t < 8000; t += 50) {
    await clock.advance(t);
    largest = Math.max(largest, cache.size);
    // Two routes in use, and a third one asked now and then that pushes the oldest out.
    const keys = t % 1000 === 500
      ? ["/primary", "/replica", `/replica?lag=${t}`]
      : ["/primary", "/replica"];
    await checkAll(clock, cache, keys);
    largest = Math.max(largest, cache.size);
  }
  for (let t = 8000; t < 12_000; t += 10) {
    await clock.advance(t);
    largest = Math.max(largest, cache.size);
  }
  assert.equal(largest, 2);
  assert.ok(refreshes.length > 5, `${refreshes.length} refreshes`);
  cache.close();
});

Deno.test("guarantees: ttl 0 never refreshes and holds no timer", async () => {
  const clock = fakeClock();
  const backend = timedBackend(clock);
  const { cache, refreshes } = cacheOn(clock, { ttl: 0, fetch: backend.fetch });
  const results = await checkEvery(clock, cache, ["/primary"], 50, 3000);
  assert.ok(results.every((r) => r.result === "miss"));
  const checks = results.length;
  await clock.advance(10_000);
  assert.deepEqual([backend.calls.length, refreshes.length, cache.size, clock.timers], [
    checks,
    0,
    0,
    0,
  ]);
});

// --- The scenario, in simulated time ---

/** The scenario, in simulated time: figures for one choice of flip moments. */
async function simulate(
  phase: number,
  decides: "on receipt" | "when it answers",
  checkers: "one at a time" | "on a fixed schedule" = "one at a time",
) {
  const TTL = 1000, LATENCY = 150, EVERY = 50, END = 27_000, ROUTES = ["/primary", "/replica"];
  const clock = fakeClock();
  let primary = true, timeline = 1;
  const truth = (key: string) => (key === "/primary") === primary ? 200 : 503;
  const backend = timedBackend(
    clock,
    (key) => member(truth(key), { role: primary ? "master" : "replica", timeline }),
    decides,
  );
  backend.latency = LATENCY;
  const { cache, refreshes, invalidations } = cacheOn(clock, { fetch: backend.fetch });
  const flips: number[] = [];
  for (let i = 0; i < 9; i++) {
    // One flip every 3 s, at a different moment of the refresh cycle each time.
    clock.after(1500 + 3000 * i + (phase + i * 389) % 1000, () => {
      primary = !primary;
      timeline++;
      flips.push(clock.ms);
    });
  }
  let oldRole = 0, wrongBeforeAnyFlip = 0;
  const waited = new Map(ROUTES.map((key) => [key, 0]));
  let jitter = phase + 1; // a seeded pseudo-random sequence
  // One checker per route, as one HAProxy: a check every 50 ms, never two at once; or, as the
  // bench's load, a check every 50 ms whatever the others are doing (a wait of 100 ms or more
  // counts: Patroni takes 150). Either way the first check of each route is cold, not counted.
  const checker = async (key: string, first: boolean): Promise<void> => {
    const started = clock.ms;
    if (checkers === "on a fixed schedule" && started + EVERY <= END) {
      // Every 50 ms give or take a few (real timers and networks jitter; an exact grid would
      // line every check up with refreshes that are an exact ttl apart).
      jitter = (jitter * 1103515245 + 12345) % 2 ** 31;
      clock.after(EVERY + (jitter % 7) - 3, () => void checker(key, false));
    }
    let status = cache.peek(key)?.status;
    if (status === undefined) status = (await cache.get(key)).entry.status;
    const wait = clock.ms - started;
    if (!first && (checkers === "one at a time" ? wait > 0 : wait >= 100)) {
      waited.set(key, waited.get(key)! + 1);
    }
    if (status !== truth(key)) {
      const flip = flips.findLast((at) => at <= clock.ms);
      if (flip === undefined) wrongBeforeAnyFlip++;
      else oldRole = Math.max(oldRole, clock.ms - flip);
    }
    const next = Math.max(started + EVERY, clock.ms);
    if (checkers === "one at a time" && next <= END) {
      clock.after(next - clock.ms, () => void checker(key, false));
    }
  };
  ROUTES.forEach((key, i) => clock.after(i * EVERY / 2, () => void checker(key, true)));
  await clock.advance(END);
  const gets = backend.calls.length;
  await clock.advance(END + TTL);
  const tail = backend.calls.length - gets;
  await clock.advance(END + 10 * TTL);
  const idle = backend.calls.length - gets - tail;
  const timers = clock.timers, inFlight = cache.inFlight;
  cache.close();
  return {
    flips: flips.length,
    wrongBeforeAnyFlip,
    longestOldRoleMs: oldRole,
    waitedAfterFlips: Object.fromEntries(waited),
    backendGets: gets,
    getsPerRoute: Object.fromEntries(ROUTES.map((k) => [k, backend.count(k)])),
    refreshesAhead: refreshes.length,
    invalidations: invalidations.length,
    getsInTheTtlAfterTheLastCheck: tail,
    getsOnceIdle: idle,
    timers,
    inFlight,
    targets: {
      longestOldRoleMs: TTL / 2 + LATENCY,
      waitedPerRoute: flips.length,
      backendGets: ROUTES.length * (END / TTL) + flips.length,
    },
  };
}

Deno.test("simulation: two routes at 20 checks/s, Patroni at 150 ms, ttl 1 s, 9 flips in 27 s", async () => {
  // Patroni decides when it answers (as FakePatroni does, after its delay) or as soon as it is
  // asked (the worst case: an old role until 150 ms after the flip); checkers one at a time (as
  // one HAProxy) or on a fixed schedule (as the bench); ten runs of each, the flips at other
  // moments of the refresh cycle in each.
  const worst = { longestOldRoleMs: 0, backendGets: 0, waited: 0 };
  for (let run = 0; run < 40; run++) {
    const phase = (run % 10) * 100;
    const decides = run % 20 < 10 ? "when it answers" : "on receipt";
    const checkers = run < 20 ? "one at a time" : "on a fixed schedule";
    const figures = await simulate(phase, decides, checkers);
    if (phase === 0) console.log(decides, checkers, JSON.stringify(figures));
    worst.longestOldRoleMs = Math.max(worst.longestOldRoleMs, figures.longestOldRoleMs);
    worst.backendGets = Math.max(worst.backendGets, figures.backendGets);
    worst.waited = Math.max(worst.waited, ...Object.values(figures.waitedAfterFlips));
    const { targets } = figures;
    const label = `${checkers}, ${decides}, phase ${phase}`;
    assert.deepEqual([figures.flips, figures.wrongBeforeAnyFlip], [9, 0]);
    assert.ok(
      figures.longestOldRoleMs <= targets.longestOldRoleMs,
      `${label}: ${figures.longestOldRoleMs} ms`,
    );
    for (const [key, n] of Object.entries(figures.waitedAfterFlips)) {
      assert.ok(n <= targets.waitedPerRoute, `${label}: ${key}: ${n} checks waited`);
    }
    assert.ok(figures.backendGets <= targets.backendGets, `${label}: ${figures.backendGets} GETs`);
    assert.ok(figures.getsInTheTtlAfterTheLastCheck <= 2);
    assert.deepEqual([figures.getsOnceIdle, figures.timers, figures.inFlight], [0, 0, 0]);
  }
  console.log("worst of 40 runs", JSON.stringify(worst));
});
