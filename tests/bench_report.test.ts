import assert from "node:assert/strict";
import { soakGrowth } from "../bench/report.ts";

/** One sample per second: [seconds, VmRSS KiB, RssAnon KiB]. */
function samples(rssKiB: (second: number) => number, seconds = 100): [number, number, number][] {
  return Array.from({ length: seconds }, (_, t) => [t, rssKiB(t), 0]);
}

Deno.test("bench report: a GC sawtooth over the soak is not growth, whatever its phase at the end", () => {
  for (const phase of [0, 1, 2, 3]) {
    const sawtooth = samples((t) => 50_000 + ((t + phase) % 4) * 2_000);
    assert.equal(soakGrowth(sawtooth), 0);
  }
});

Deno.test("bench report: a steady rise is growth, warm-up in the first fifth is not", () => {
  assert.equal(soakGrowth(samples((t) => 50_000 + t * 100)), (99 - 39) * 100);
  assert.equal(soakGrowth(samples((t) => (t < 20 ? 30_000 + t * 1_000 : 60_000))), 0);
  assert.ok(Number.isNaN(soakGrowth(samples(() => 1, 4))));
});
