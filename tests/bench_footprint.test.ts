import assert from "node:assert/strict";
import {
  type CpuProfile,
  gcFigures,
  instructionsByObject,
  memoryGroups,
  profileShares,
  rollupOf,
} from "../bench/footprint.ts";

/** One /proc/PID/smaps mapping with its resident KiB. */
function mapping(from: number, kib: number, rssKiB: number, perms: string, path = ""): string {
  const start = from.toString(16).padStart(12, "0");
  const end = (from + kib * 1024).toString(16).padStart(12, "0");
  return `${start}-${end} ${perms} 00000000 00:00 0    ${path}\nSize: ${kib} kB\nRss: ${rssKiB} kB\nPss: ${rssKiB} kB\n`;
}

Deno.test("bench footprint: mappings are grouped by what backs them", () => {
  const exe = "/usr/lib/node_modules/deno/deno";
  const smaps = [
    mapping(0x1000000, 4000, 3000, "r--p", exe),
    mapping(0x2000000, 60000, 18000, "r-xp", exe),
    mapping(0x6000000, 2000, 2000, "rw-p", exe),
    mapping(0x7000000, 3000, 2500, "rw-p", "[heap]"),
    mapping(0x8000000, 256, 256, "rw-p"),
    mapping(0x9000000, 256, 100, "rw-p"),
    mapping(0xa000000, 512, 300, "rw-p"),
    mapping(0xb000000, 1800, 1500, "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
    mapping(0xc000000, 132, 40, "rw-p", "[stack]"),
  ].join("");
  assert.deepEqual(memoryGroups(smaps), {
    "executable code": 18000,
    "executable read-only data": 3000,
    "executable writable data": 2000,
    "V8 heap pages": 356,
    "malloc heap": 2500,
    "other anonymous": 300,
    "libraries and files": 1500,
    "stacks and kernel": 40,
  });
});

Deno.test("bench footprint: smaps_rollup gives resident, proportional, private and shared KiB", () => {
  const text = [
    "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0    [rollup]",
    "Rss:               47820 kB",
    "Pss:               23035 kB",
    "Pss_Anon:          12808 kB",
    "Shared_Clean:      34296 kB",
    "Shared_Dirty:         52 kB",
    "Private_Clean:       664 kB",
    "Private_Dirty:     12808 kB",
    "Anonymous:         12808 kB",
  ].join("\n");
  assert.deepEqual(rollupOf(text), {
    rss: 47820,
    pss: 23035,
    private: 13472,
    shared: 34348,
    anonymous: 12808,
  });
});

/** A --trace-gc-nvp line. */
function nvp(at: number, fields: Record<string, unknown>): string {
  return `[1:0x55:0]   ${at} ms: GC: ${JSON.stringify({ pause: 1, ...fields })}`;
}

Deno.test("bench footprint: --trace-gc-nvp lines sum to GCs, allocation and heap per stretch", () => {
  const base = { start_memory_size: 7 << 20, end_memory_size: 7 << 20, end_object_size: 5 << 20 };
  const text = [
    "2026-01-01T00:00:00.000Z NOTICE listening",
    nvp(10, { ...base, gc: "s", allocated: 1000, promoted: 10, old_gen_allocation_limit: 1 }),
    nvp(20, {
      gc: "mc",
      start_memory_size: 14 << 20,
      end_memory_size: 9 << 20,
      end_object_size: 4 << 20,
      old_gen_allocation_limit: 12 << 20,
    }),
    "[1:0x55:0]   21 ms: Memory pool: Removed pages: 0",
    nvp(30, { ...base, gc: "s", allocated: 3000, promoted: 30, old_gen_allocation_limit: 13 }),
  ].join("\n");
  assert.deepEqual(gcFigures(text, 100), {
    hits: 100,
    scavenges: 2,
    markCompacts: 1,
    allocated: 4000,
    promoted: 40,
    maxHeap: 14 << 20,
    oldGenLimit: 12 << 20,
    liveAfterGc: 4 << 20, // the mark-compact's, not the scavenge's after it
    pauseMs: 3,
  });
});

Deno.test("bench footprint: a CPU profile's last stretch, by category and by patroniglue function", () => {
  const frame = (functionName: string, url = "", lineNumber = 0) => ({
    functionName,
    url,
    lineNumber,
  });
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("op_write") },
      { id: 2, callFrame: frame("(idle)") },
      { id: 3, callFrame: frame("serveConnection", "file:///r/src/http1.ts", 87) },
      { id: 4, callFrame: frame("read", "ext:deno_net/01_net.js") },
      { id: 5, callFrame: frame("setPromise", "ext:core/00_infra.js") },
      { id: 6, callFrame: frame("(garbage collector)") },
    ],
    startTime: 0,
    endTime: 9000,
    // One sample per ms (µs deltas); the last 6 ms hold the last 7 samples.
    samples: [3, 3, 1, 1, 3, 2, 4, 5, 6],
    timeDeltas: [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000],
  };
  const shares = profileShares(profile, 6);
  assert.equal(shares.samples, 7);
  const of = (what: string) => shares.categories.find((c) => c.what === what)?.share;
  assert.equal(of("the write syscall (op_write)"), 2 / 7);
  assert.equal(of("patroniglue's code (src/)"), 1 / 7);
  assert.equal(of("reads (op_read and TcpConn.read)"), 1 / 7);
  assert.equal(of("the runtime's JavaScript (promises, ops)"), 1 / 7);
  assert.equal(of("garbage collection"), 1 / 7);
  assert.equal(of("idle (waiting for the next request)"), 1 / 7);
  assert.deepEqual(shares.functions, [{ what: "serveConnection http1.ts:88", share: 1 / 7 }]);
});

Deno.test("bench footprint: callgrind self costs by object, calls' inclusive costs left out", () => {
  const compressed = [
    "events: Ir",
    "ob=(1) /usr/lib/node_modules/deno/deno",
    "fn=(1) 0x1000",
    "0 700",
    "+2 300",
    "cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6",
    "cfn=(2) memcpy",
    "calls=1 0",
    "+1 5000",
    "ob=(3) ???",
    "fn=(3) 0x28000000",
    "0 2000",
    "ob=(2)",
    "fn=(2)",
    "0 1000",
    "ob=(1)",
    "fn=(1)",
    "+4 1000",
  ].join("\n");
  assert.deepEqual(instructionsByObject(compressed, 10, "glue"), {
    name: "glue",
    hits: 10,
    perHit: 500,
    executable: 200,
    generated: 200,
    other: 100,
  });
  const uncompressed = [
    "events: Ir",
    "ob=/usr/lib/node_modules/deno/deno",
    "fn=0x1000",
    "0 1000",
    "ob=???",
    "fn=0x28000000",
    "0 2000",
    "ob=/usr/lib/x86_64-linux-gnu/libc.so.6",
    "fn=memcpy",
    "0 1000",
  ].join("\n");
  assert.deepEqual(instructionsByObject(uncompressed, 10, "glue"), {
    name: "glue",
    hits: 10,
    perHit: 400,
    executable: 100,
    generated: 200,
    other: 100,
  });
});
