import assert from "node:assert/strict";
import {
  flipSchedule,
  freshnessBars,
  freshnessFigures,
  freshnessLimits,
  oldRoleResponses,
  roleAfter,
  routeStatus,
} from "../bench/freshness.ts";
import { freshnessRun } from "./support/bench_runs.ts";

Deno.test("bench freshness: flips alternate the role, and each route's status follows it", () => {
  assert.deepEqual([0, 1, 2, 3].map((n) => roleAfter("primary", n)), [
    "primary",
    "replica",
    "primary",
    "replica",
  ]);
  assert.equal(roleAfter("replica", 1), "primary");
  assert.deepEqual(
    [routeStatus("/primary", "primary"), routeStatus("/primary", "replica")],
    [200, 503],
  );
  assert.deepEqual(
    [routeStatus("/replica", "primary"), routeStatus("/replica", "replica")],
    [503, 200],
  );
  assert.throws(() => routeStatus("/leader", "primary"), /no status model/);
});

Deno.test("bench freshness: one flip per slot, at phases against the ttl that never line up", () => {
  const flips = flipSchedule(9, 3000, 1000);
  assert.equal(flips.length, 9);
  flips.forEach((at, k) => {
    assert.ok(at >= k * 3000 + 1000 && at < k * 3000 + 2000, `flip ${k} at ${at}`);
  });
  // Each flip's phase against the one before (a target re-times itself at each flip) is spread.
  const gaps = flips.slice(1).map((at, k) => (at - flips[k]) % 1000).sort((a, b) => a - b);
  for (const p of gaps) assert.ok(p >= 50 && p <= 950, `gap phase ${p} is near a ttl boundary`);
  for (let i = 1; i < gaps.length; i++) {
    assert.ok(gaps[i] - gaps[i - 1] >= 50, `gap phases ${gaps[i - 1]} and ${gaps[i]}`);
  }
  assert.deepEqual(flipSchedule(9, 3000, 1000), flips, "the same schedule every time");
  assert.throws(() => flipSchedule(3, 500, 1000), /at least a ttl/);
});

Deno.test("bench freshness: an old-role answer is judged by the flip before its answer", () => {
  const raw = freshnessRun({
    checks: [
      [500, 510, 0, 200], // before any flip
      [1300, 1302, 0, 200], // /primary still 200 after the demotion: old, 302 ms
      [1400, 1401, 1, 503], // /replica still 503: old, 401 ms
      [1500, 1501, 0, 503], // new role
      [900, 1100, 0, 200], // sent before the flip, answered after it from the old role: old, 100
      [3950, 4120, 0, 200], // answered after the promotion with the new role: not old
      [4050, 4060, 0, 503], // still the replica's 503 after the promotion: old, 60 ms
      [1600, 1700, 1, 0], // failed: not an answer
    ],
  });
  assert.deepEqual(oldRoleResponses(raw), { perFlip: [401, 60], count: 4 });
  assert.deepEqual(oldRoleResponses(freshnessRun({ checks: [[1200, 1201, 1, 200]] })), {
    perFlip: [0, 0],
    count: 0,
  });
});

Deno.test("bench freshness: waited, failed and backend GETs count the window only", () => {
  const raw = freshnessRun({
    checks: [
      [-500, -340, 0, 200], // warm-up: not counted
      [100, 260, 0, 200], // waited (160 ms)
      [200, 299, 0, 200], // 99 ms: did not wait
      [300, 400, 1, 503], // 100 ms: waited
      [400, 5400, 1, 0], // failed, not "waited"
      [6000, 6200, 0, 200], // sent at the window's end: not counted
    ],
    gets: [[-400, 0], [100, 0], [300, 1], [5999, 1], [6100, 0], [6500, 0], [7100, 1], [7290, 0]],
    lastAnsweredAt: 6200,
  });
  const f = freshnessFigures(raw);
  assert.deepEqual(f.checks, [2, 2]);
  assert.deepEqual(f.waited, [1, 1]);
  assert.deepEqual(f.failed, [0, 1]);
  assert.deepEqual(f.gets, [1, 2]);
  // Idle from 6200 + 1000 + 100 = 7300: 6500, 7100 and 7290 trail the last check, none after.
  assert.equal(f.trailingGets, 3);
  assert.equal(f.idleGets, 0);
  assert.equal(f.idleMs, 3900);
  assert.equal(freshnessFigures({ ...raw, gets: [[7301, 0]] }).idleGets, 1);
});

Deno.test("bench freshness: the bars are ttl/2 + Patroni, one wait per flip per route, span/ttl + flips GETs, no idle GET", () => {
  const raw = freshnessRun();
  const limits = freshnessLimits(raw);
  assert.deepEqual(limits, { oldRoleMs: 650, waitedPerRoute: 2, getsPerRoute: 8 });
  const good = {
    ...freshnessFigures(raw),
    longestOldRoleMs: 650,
    waited: [2, 2],
    gets: [8, 8],
  };
  assert.deepEqual(freshnessBars(good, limits), {
    oldRole: true,
    waited: true,
    gets: true,
    idle: true,
  });
  assert.deepEqual(
    freshnessBars(
      { ...good, longestOldRoleMs: 651, waited: [2, 3], gets: [9, 8], idleGets: 1 },
      limits,
    ),
    { oldRole: false, waited: false, gets: false, idle: false },
  );
  const shortQuiet = freshnessFigures(freshnessRun({ quietMs: 1000 }));
  assert.equal(freshnessBars(shortQuiet, limits).idle, undefined);
});
