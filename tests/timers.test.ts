import assert from "node:assert/strict";
import { FIRST_TIMER_ID, installLeanTimers, leanTimers, timerDelayMs } from "../src/timers.ts";

Deno.test("timers: a timeout runs once, with its arguments, no sooner than asked", async () => {
  const timers = leanTimers();
  const fired = Promise.withResolvers<{ args: unknown[]; at: number }>();
  const started = performance.now();
  const id = timers.setTimeout(
    (...args) => fired.resolve({ args, at: performance.now() }),
    20,
    1,
    "x",
  );
  assert.ok(Number.isInteger(id) && id >= FIRST_TIMER_ID, `id ${id}`);
  const { args, at } = await fired.promise;
  assert.deepEqual(args, [1, "x"]);
  assert.ok(at - started >= 19, `fired after ${at - started} ms`); // the runtime rounds to 1 ms
});

Deno.test("timers: a cleared timeout never runs; ids are distinct; clearing twice or nothing is harmless", async () => {
  const timers = leanTimers();
  let ran = false;
  const a = timers.setTimeout(() => ran = true, 5);
  const b = timers.setTimeout(() => ran = true, 5);
  assert.notEqual(a, b);
  timers.clearTimeout(a);
  timers.clearTimeout(b);
  timers.clearTimeout(a);
  timers.clearTimeout(undefined);
  const later = Promise.withResolvers<void>();
  timers.setTimeout(later.resolve, 30);
  await later.promise;
  assert.equal(ran, false);
});

Deno.test("timers: an interval repeats until cleared, also from its own callback", async () => {
  const timers = leanTimers();
  const runs: number[] = [];
  const done = Promise.withResolvers<void>();
  const id = timers.setInterval(
    (n) => {
      runs.push(n as number);
      if (runs.length === 3) {
        timers.clearInterval(id);
        timers.setTimeout(done.resolve, 30); // time for a fourth run, which must not come
      }
    },
    2,
    7,
  );
  await done.promise;
  assert.deepEqual(runs, [7, 7, 7]);
});

Deno.test("timers: delays as node:timers takes them: at least 1 ms, a fraction rounded up (never early), not a number or too long 1 ms", () => {
  assert.deepEqual(
    [0, -5, 0.4, 1, 999.2, 1000, NaN, undefined, 2 ** 31 - 1, 2 ** 40].map(timerDelayMs),
    [1, 1, 1, 1, 1000, 1000, 1, 1, 2 ** 31 - 1, 1],
  );
});

Deno.test("timers: a callback must be a function, and one at 0 ms still runs", async () => {
  const timers = leanTimers();
  assert.throws(() => timers.setTimeout("code" as unknown as () => void, 1), TypeError);
  const ran = Promise.withResolvers<void>();
  timers.setTimeout(ran.resolve, 0);
  await ran.promise;
});

Deno.test("timers: installed over the globals, then put back", async () => {
  const original = globalThis.setTimeout;
  const restore = installLeanTimers();
  let id: unknown;
  try {
    assert.notEqual(globalThis.setTimeout, original);
    const fired = Promise.withResolvers<void>();
    id = setTimeout(fired.resolve, 1);
    await fired.promise;
  } finally {
    restore();
  }
  assert.ok(typeof id === "number" && id >= FIRST_TIMER_ID, `id ${id}`);
  assert.equal(globalThis.setTimeout, original);
});
