import assert from "node:assert/strict";
import { renderMarkdown, soakGrowth } from "../bench/report.ts";
import { type LoadStats, noMeasurements, type Results } from "../bench/types.ts";
import { footprintRun, freshnessRun } from "./support/bench_runs.ts";

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

/** Results with nothing measured. */
function emptyResults(): Results {
  return {
    options: {
      quick: false,
      runs: 5,
      durationS: 4,
      soakS: 60,
      trials: 5,
      idle: 2000,
      idleMeasureS: 4,
      stuck: 1500,
      stuckHoldS: 25,
      flips: 2,
      quietS: 5,
      threads: 2,
      connections: 50,
      only: new Set([9, 10, 11]),
      targets: ["patroniglue", "nginx"],
      out: "BENCHMARKS.md",
      chart: "bench/chart.png",
      denoFlags: [],
    },
    settings: { ttl: 1, timeout: 2, delayMs: 2 },
    date: "2026-01-01T00:00:00.000Z",
    machine: { cpus: 2, model: "test", memGiB: 1, kernel: "test", loadStart: [0, 0, 0] },
    loadEnd: [0, 0, 0],
    versions: { deno: "2", v8: "1", nginx: "nginx version: nginx/1", haproxy: "absent", wrk: "4" },
    elapsedS: 1,
    targets: ["patroniglue", "nginx"],
    skipped: [],
    ...noMeasurements(),
  };
}

/** The result cell of the targets-table row that starts with `what`. */
function verdictOf(md: string, what: string): string {
  const row = md.split("\n").find((l) => l.startsWith(`| ${what}`));
  assert.ok(row, `no row ${what}`);
  return row.split(" | ").at(-1)!.replace(/ \|$/, "");
}

Deno.test("bench report: results saved before (9)-(11) existed still render, as not measured", () => {
  const r = emptyResults();
  delete r.stuckTls;
  delete r.httpsHit;
  delete r.freshness;
  const md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(9) 1500 stuck TLS clients: RSS growth"), "not measured");
  assert.equal(verdictOf(md, "(11) freshness: longest old-role answer"), "not measured");
  assert.ok(!md.includes("## (9)") && !md.includes("## (10)") && !md.includes("## (11)"));
});

Deno.test("bench report: (9), (10) and (11) get their sections and their bars' verdicts", () => {
  const r = emptyResults();
  const held = (rssWith: number, stillOpen: number) => ({
    count: 1500,
    opened: 1500,
    openMs: 800,
    rssBefore: 50_000,
    rssWith,
    heldAtRss: 1500,
    heldAfterChecks: 1500,
    holdS: 25,
    stillOpen,
    stillOpenByKind: [stillOpen, 0, 0],
    checkEveryMs: 10,
  });
  const latency = { n: 400, p50: 2, p95: 3, p99: 4, max: 9, errors: 0 };
  r.stuckTls = {
    patroniglue: { ...held(110_000, 1500), baseline: latency, loaded: latency },
    bare: held(100_000, 1500),
  };
  const wrk = { rps: 100, p50: 1, p99: 2, requests: 400, non2xx: 0, errors: 0 };
  const stats = { runs: [{ ...wrk, startedAt: 0, endedAt: 4000 }], ...wrk, non2xx: 0 };
  r.httpsHit = { patroniglue: stats, nginx: { ...stats, rps: 200 } };
  r.freshness = {
    patroniglue: freshnessRun({
      checks: [[1900, 1901, 0, 200], [2000, 2200, 1, 200]],
      gets: [[2000, 1], [8000, 0]],
    }),
  };
  const md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  for (const s of ["## (9) 1500 stuck TLS clients", "## (10) HTTPS", "## (11) Freshness"]) {
    assert.ok(md.includes(s), s);
  }
  assert.equal(verdictOf(md, "(9) 1500 stuck TLS clients: RSS growth"), "PASS"); // 60 ≤ 1.2 × 50
  assert.equal(verdictOf(md, "(9) HTTPS check p95"), "PASS");
  assert.equal(verdictOf(md, "(9) stuck TLS clients still open 25 s later"), "**MISS**");
  assert.equal(verdictOf(md, "(10) HTTPS cache hits"), "no bar");
  assert.match(md, /\| \(10\) HTTPS cache hits[^\n]*ratios 0\.50×/);
  assert.equal(verdictOf(md, "(11) freshness: longest old-role answer"), "**MISS**"); // 901 ms
  assert.equal(verdictOf(md, "(11) checks that waited"), "PASS");
  assert.equal(verdictOf(md, "(11) backend GETs per route"), "PASS");
  assert.equal(verdictOf(md, "(11) backend GETs once nobody checks"), "**MISS**"); // at 8000
});

/** wrk medians of one target in (1). */
function hits(rps: number, p99: number, cpuUs?: number): LoadStats {
  const run = { rps, p50: p99 / 2, p99, requests: rps * 4, non2xx: 0, errors: 0 };
  return { runs: [{ ...run, startedAt: 0, endedAt: 4000, cpuUs }], ...run, cpuUs };
}

Deno.test("bench report: (1) is measured against the limit (0.9× its req/s, 1.5× its p99) and HAProxy's cache", () => {
  const r = emptyResults();
  r.hit = { patroniglue: hits(90_000, 1.5, 11), haproxy: hits(90_000, 1), limit: hits(100_000, 1) };
  let md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(1) cache hits: throughput against the limit"), "PASS"); // 0.90×
  assert.equal(verdictOf(md, "(1) cache hits: throughput against HAProxy's cache"), "PASS"); // equal
  assert.equal(verdictOf(md, "(1) cache hits: p99"), "PASS"); // 1.5×
  assert.match(md, /\| \*\*patroniglue\*\* \| 90,000 \| 0\.75 ms \| 1\.50 ms \| 11\.0 \|/);
  r.hit = { patroniglue: hits(89_999, 1.51), haproxy: hits(90_000, 1), limit: hits(100_000, 1) };
  md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(1) cache hits: throughput against the limit"), "**MISS**");
  assert.equal(verdictOf(md, "(1) cache hits: throughput against HAProxy's cache"), "**MISS**");
  assert.equal(verdictOf(md, "(1) cache hits: p99"), "**MISS**");
  delete r.hit.limit;
  md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(1) cache hits: throughput against the limit"), "not measured");
});

Deno.test("bench report: (7) RSS under load is at most 1.25× HAProxy's and idle at most 36 MiB", () => {
  const r = emptyResults();
  r.rssLoad = { patroniglue: 50 * 1024, haproxy: 40 * 1024 };
  r.rssIdle = { patroniglue: 36 * 1024, haproxy: 30 * 1024 };
  let md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(7) RSS under load"), "PASS"); // 50 = 1.25 × 40
  assert.equal(verdictOf(md, "(7) RSS idle"), "PASS");
  r.rssLoad = { patroniglue: 50 * 1024 + 1, haproxy: 40 * 1024 };
  r.rssIdle = { patroniglue: 36 * 1024 + 1 };
  md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(7) RSS under load"), "**MISS**");
  assert.equal(verdictOf(md, "(7) RSS idle"), "**MISS**");
  r.rssLoad = { patroniglue: 30 * 1024 };
  md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.equal(verdictOf(md, "(7) RSS under load"), "not measured"); // no HAProxy to compare with
});

Deno.test("bench report: (12) renders the footprint, beside the recorded baseline when there is one", () => {
  const r = emptyResults();
  r.footprint = footprintRun();
  let md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.ok(md.includes("## (12) Where the memory and a hit's time go"));
  assert.match(md, /\| executable code \| 10\.0 MiB \| 20\.0 MiB \| 22\.0 MiB \|/);
  assert.match(md, /\| scavenges per 100k hits \| 200\.0 \| — \|/);
  assert.match(md, /\| \+ src\/http1\.ts \| 3,100 \(\+100\) \|/);
  assert.match(md, /\| patroniglue \| 25,000 \(20,000 \/ 4,000 \/ 1,000\) \| — \|/);
  r.footprintBaseline = { label: "abc1234, 2026-01-01", footprint: footprintRun(2) };
  md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.match(md, /\| scavenges per 100k hits \| 200\.0 \| 400\.0 \|/);
  assert.match(
    md,
    /\| patroniglue \| 25,000 \(20,000 \/ 4,000 \/ 1,000\) \| 50,000 \(40,000 \/ 8,000 \/ 2,000\) \|/,
  );
  assert.ok(md.includes("before (abc1234, 2026-01-01)"));
  delete r.footprint;
  md = renderMarkdown(r, undefined, "BENCHMARKS.md");
  assert.ok(!md.includes("## (12)"));
});
