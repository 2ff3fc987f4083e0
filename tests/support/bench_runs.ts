// Raw bench results for the report tests: one freshness run (scenario 11) and one footprint
// (scenario 12) to vary.
import type { FootprintResult, MemoryGroups, MemoryView } from "../../bench/footprint.ts";
import type { FreshnessRaw } from "../../bench/types.ts";

/** A run of (11) with two flips (at 1000 and 4000 ms), ttl 1 s, a 6 s window, 5 s of quiet. */
export function freshnessRun(over: Partial<FreshnessRaw> = {}): FreshnessRaw {
  return {
    ttlMs: 1000,
    patroniMs: 150,
    spanMs: 6000,
    quietMs: 5000,
    routes: ["/primary", "/replica"],
    flips: [1000, 4000],
    startRole: "primary",
    checks: [],
    gets: [],
    lastAnsweredAt: 6000,
    ...over,
  };
}

/** One process's memory: every group `kib`, executable code `code` KiB. */
function memory(kib: number, code: number): MemoryView {
  const groups: MemoryGroups = {
    "executable code": code,
    "executable read-only data": kib,
    "executable writable data": kib,
    "V8 heap pages": kib,
    "malloc heap": kib,
    "other anonymous": kib,
    "libraries and files": kib,
    "stacks and kernel": kib,
  };
  const rss = Object.values(groups).reduce((a, b) => a + b, 0);
  return {
    groups,
    rollup: { rss, pss: rss / 2, private: rss / 4, shared: rss * 3 / 4, anonymous: rss / 4 },
  };
}

/** A run of (12): the runtime alone and patroniglue; counts and costs scale with `scale`. */
export function footprintRun(scale = 1): FootprintResult {
  return {
    v8Flags: "--optimize-for-size,--max-opt=2",
    processes: [
      { name: "deno, the runtime alone", idle: memory(1024, 10 * 1024), threads: 7 },
      {
        name: "patroniglue",
        idle: memory(2048, 20 * 1024),
        load: memory(3072, 22 * 1024),
        threads: 7,
        rps: 50_000,
      },
    ],
    gc: {
      hits: 100_000,
      scavenges: 200 * scale,
      markCompacts: 1,
      allocated: 150_000_000,
      promoted: 1_000_000,
      maxHeap: 12 << 20,
      oldGenLimit: 12 << 20,
      liveAfterGc: 4 << 20,
      pauseMs: 80,
    },
    phases: [
      {
        phase: "the runtime started",
        heap: 3000,
        code: 10_000,
        readOnlyData: 10_000,
        anonymous: 9000,
      },
      { phase: "+ src/http1.ts", heap: 3100, code: 10_100, readOnlyData: 10_000, anonymous: 9000 },
    ],
    profile: {
      categories: [{ what: "the write syscall (op_write)", share: 0.5 }],
      functions: [{ what: "serveConnection http1.ts:88", share: 0.01 }],
      samples: 4000,
      seconds: 4,
    },
    instructions: [{
      name: "patroniglue",
      hits: 10_000,
      perHit: 25_000 * scale,
      executable: 20_000 * scale,
      generated: 4000 * scale,
      other: 1000 * scale,
    }],
    cpuPerHit: [{ name: "patroniglue", user: 5, system: 7 }],
  };
}
