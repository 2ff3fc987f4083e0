// Scenario (12), footprint: where patroniglue's resident memory goes (by mapping, private and
// shared, idle and under load, beside the runtime alone and a bare Deno.listen loop; V8's heap and
// GCs per 100k hits; what each start phase and module adds) and where a hit's time goes (CPU per
// hit, a CPU profile of the hot path, user-space instructions per hit under callgrind).
import { V8_FLAGS } from "../packaging/build.ts";
import {
  type BenchSettings,
  denoCommand,
  freePort,
  glueCommand,
  glueConfig,
  hasCommand,
  rawGet,
  sleep,
  startFake,
  waitForPort,
} from "./targets.ts";
import { runWrk } from "./wrk.ts";

/** Resident memory of one process by what backs it, KiB (from /proc/PID/smaps). */
export type MemoryGroups = Record<MemoryGroup, number>;

/** What a mapping holds, by its path, permissions and size. */
export type MemoryGroup =
  | "executable code"
  | "executable read-only data"
  | "executable writable data"
  | "V8 heap pages"
  | "malloc heap"
  | "other anonymous"
  | "libraries and files"
  | "stacks and kernel";

/** Every group, in the order the report shows them. */
export const MEMORY_GROUPS: readonly MemoryGroup[] = [
  "executable code",
  "executable read-only data",
  "executable writable data",
  "V8 heap pages",
  "malloc heap",
  "other anonymous",
  "libraries and files",
  "stacks and kernel",
];

/** V8 allocates its heap in pages of this size, each its own anonymous mapping. */
const V8_PAGE_BYTES = 256 * 1024;

/**
 * Sums the `Rss:` of each mapping of a /proc/PID/smaps text into {@linkcode MemoryGroup}s:
 * `executable` is the mapped file whose name ends in `executable` (the `deno` binary).
 */
export function memoryGroups(smaps: string, executable = "deno"): MemoryGroups {
  const groups = Object.fromEntries(MEMORY_GROUPS.map((g) => [g, 0])) as MemoryGroups;
  let current: MemoryGroup = "other anonymous";
  for (const line of smaps.split("\n")) {
    const m = line.match(/^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/);
    if (m) {
      const size = parseInt(m[2], 16) - parseInt(m[1], 16);
      const [perms, path] = [m[3], m[4].trim()];
      if (path.endsWith(`/${executable}`)) {
        current = perms.includes("x")
          ? "executable code"
          : perms.startsWith("r-")
          ? "executable read-only data"
          : "executable writable data";
      } else if (path === "[heap]") current = "malloc heap";
      else if (path === "") current = size === V8_PAGE_BYTES ? "V8 heap pages" : "other anonymous";
      else if (path.startsWith("[")) current = "stacks and kernel";
      else current = "libraries and files";
      continue;
    }
    const rss = line.match(/^Rss:\s+(\d+) kB/);
    if (rss) groups[current] += Number(rss[1]);
  }
  return groups;
}

/** /proc/PID/smaps_rollup, KiB: resident, proportional, private and shared parts. */
export interface Rollup {
  rss: number;
  pss: number;
  /** Private_Clean + Private_Dirty: pages no other process maps. */
  private: number;
  /** Shared_Clean + Shared_Dirty: pages other processes map too (here, other deno processes). */
  shared: number;
  anonymous: number;
}

/** Parses a /proc/PID/smaps_rollup text. */
export function rollupOf(text: string): Rollup {
  const field = (name: string) =>
    Number(text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
  return {
    rss: field("Rss"),
    pss: field("Pss"),
    private: field("Private_Clean") + field("Private_Dirty"),
    shared: field("Shared_Clean") + field("Shared_Dirty"),
    anonymous: field("Anonymous"),
  };
}

/** One process's memory at one moment. */
export interface MemoryView {
  groups: MemoryGroups;
  rollup: Rollup;
}

function memoryView(pid: number): MemoryView {
  return {
    groups: memoryGroups(Deno.readTextFileSync(`/proc/${pid}/smaps`)),
    rollup: rollupOf(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`)),
  };
}

/** A process measured idle and (except the runtime alone) at its peak under wrk. */
export interface ProcessFootprint {
  name: string;
  idle: MemoryView;
  /** The sample with the most RSS while wrk ran. */
  load?: MemoryView;
  threads: number;
  /** wrk's requests per second during the load. */
  rps?: number;
}

/** What `--trace-gc-nvp` reports over a measured stretch of hits. */
export interface GcFigures {
  hits: number;
  scavenges: number;
  markCompacts: number;
  /** Bytes allocated in the young generation (summed over scavenges) and promoted from it. */
  allocated: number;
  promoted: number;
  /** The most the heap held (committed), and the old generation's limit at that moment, bytes. */
  maxHeap: number;
  oldGenLimit: number;
  /** Live objects after the last mark-compact (or after the last scavenge without one), bytes. */
  liveAfterGc: number;
  pauseMs: number;
}

/** Sums the `GC: {...}` lines of a `--trace-gc-nvp` output over `hits` hits. */
export function gcFigures(nvp: string, hits: number): GcFigures {
  const f: GcFigures = {
    hits,
    scavenges: 0,
    markCompacts: 0,
    allocated: 0,
    promoted: 0,
    maxHeap: 0,
    oldGenLimit: 0,
    liveAfterGc: 0,
    pauseMs: 0,
  };
  for (const line of nvp.split("\n")) {
    const m = line.match(/ GC: (\{.*\})\s*$/);
    if (!m) continue;
    const g = JSON.parse(m[1]);
    if (g.gc === "s") f.scavenges++;
    else f.markCompacts++;
    f.allocated += g.allocated ?? 0;
    f.promoted += g.promoted ?? 0;
    f.pauseMs += g.pause ?? 0;
    const heap = Math.max(g.start_memory_size ?? 0, g.end_memory_size ?? 0);
    if (heap >= f.maxHeap) {
      f.maxHeap = heap;
      f.oldGenLimit = g.old_gen_allocation_limit ?? 0;
    }
    if (g.gc !== "s" || f.markCompacts === 0) f.liveAfterGc = g.end_object_size ?? 0;
  }
  return f;
}

/** A `.cpuprofile` (V8's CPU profile format), as much of it as is read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A share of the samples: a category or a function. */
export interface Share {
  what: string;
  share: number;
}

/** The categories a hit's samples fall in, in the order the report shows them. */
export const PROFILE_CATEGORIES = [
  "the write syscall (op_write)",
  "reads (op_read and TcpConn.read)",
  "garbage collection",
  "patroniglue's code (src/)",
  "the runtime's JavaScript (promises, ops)",
  "other native",
  "idle (waiting for the next request)",
] as const;

function categoryOf(functionName: string, url: string): (typeof PROFILE_CATEGORIES)[number] {
  if (functionName === "op_write") return "the write syscall (op_write)";
  if (functionName === "op_read" || (functionName === "read" && url.includes("01_net.js"))) {
    return "reads (op_read and TcpConn.read)";
  }
  if (functionName === "(garbage collector)") return "garbage collection";
  if (functionName === "(idle)") return "idle (waiting for the next request)";
  if (url.includes("/src/") || url.endsWith("/main.ts")) return "patroniglue's code (src/)";
  if (url.startsWith("ext:") || url.startsWith("node:")) {
    return "the runtime's JavaScript (promises, ops)";
  }
  return "other native";
}

/**
 * Self-time shares of the samples in the last `lastMs` of a CPU profile, by category and by
 * patroniglue function (the `topFunctions` largest, as `name file:line`).
 */
export function profileShares(
  p: CpuProfile,
  lastMs: number,
  topFunctions = 8,
): { categories: Share[]; functions: Share[]; samples: number } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const times: number[] = [];
  let t = p.startTime;
  for (const d of p.timeDeltas) times.push(t += d);
  const from = (times.at(-1) ?? 0) - lastMs * 1000;
  const categories = new Map<string, number>();
  const functions = new Map<string, number>();
  let samples = 0;
  p.samples.forEach((id, i) => {
    if (times[i] < from) return;
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const category = categoryOf(functionName, url);
    samples++;
    categories.set(category, (categories.get(category) ?? 0) + 1);
    if (category === "patroniglue's code (src/)") {
      const key = `${functionName || "(anonymous)"} ${url.replace(/^.*\//, "")}:${lineNumber + 1}`;
      functions.set(key, (functions.get(key) ?? 0) + 1);
    }
  });
  const share = ([what, n]: [string, number]) => ({ what, share: n / Math.max(1, samples) });
  return {
    categories: PROFILE_CATEGORIES.map((c) => share([c, categories.get(c) ?? 0])),
    functions: [...functions].sort((a, b) => b[1] - a[1]).slice(0, topFunctions).map(share),
    samples,
  };
}

/** User-space instructions per hit under callgrind, by where they run. */
export interface InstructionCount {
  name: string;
  hits: number;
  perHit: number;
  /** Per hit: the deno executable (runtime, V8's builtins and interpreter, GC), code V8 generated
   * at run time, libc and the rest. */
  executable: number;
  generated: number;
  other: number;
}

/**
 * Self instructions of a callgrind output by object: the file named `executable`, code without a
 * file (generated at run time), and the rest; all divided by `hits`.
 */
export function instructionsByObject(
  text: string,
  hits: number,
  name: string,
  executable = "deno",
): InstructionCount {
  const objects = new Map<string, string>();
  const sums = { executable: 0, generated: 0, other: 0 };
  let object = "";
  let afterCall = false;
  for (const line of text.split("\n")) {
    const cob = line.match(/^cob=\((\d+)\) (.+)$/);
    if (cob) objects.set(cob[1], cob[2]); // a name is given where it is first used
    const ob = line.match(/^ob=(?:\((\d+)\))? ?(.*)$/);
    if (ob) {
      if (ob[1] === undefined) object = ob[2];
      else {
        if (ob[2]) objects.set(ob[1], ob[2]);
        object = objects.get(ob[1]) ?? "";
      }
      continue;
    }
    if (line.startsWith("calls=")) {
      afterCall = true; // the next cost line is the call's inclusive cost, not self cost
      continue;
    }
    const cost = line.match(/^[+\-*]?\d+\s+(\d+)/) ?? line.match(/^[+\-*]\s*(\d+)$/);
    if (!cost || /^[a-z]/.test(line)) continue;
    if (afterCall) {
      afterCall = false;
      continue;
    }
    const n = Number(cost[1]);
    if (object.endsWith(`/${executable}`)) sums.executable += n;
    else if (object === "???" || object === "") sums.generated += n;
    else sums.other += n;
  }
  const per = (n: number) => n / Math.max(1, hits);
  return {
    name,
    hits,
    perHit: per(sums.executable + sums.generated + sums.other),
    executable: per(sums.executable),
    generated: per(sums.generated),
    other: per(sums.other),
  };
}

/** One phase of a start, as bench/footprint_phases.ts prints it: cumulative figures, KiB. */
export interface PhaseFigures {
  phase: string;
  /** V8's live heap after a full GC. */
  heap: number;
  code: number;
  readOnlyData: number;
  anonymous: number;
}

/** Everything (12) measures. */
export interface FootprintResult {
  /** The V8 flags patroniglue ran with. */
  v8Flags: string;
  processes: ProcessFootprint[];
  gc?: GcFigures;
  phases: PhaseFigures[];
  profile?: { categories: Share[]; functions: Share[]; samples: number; seconds: number };
  instructions: InstructionCount[];
  /** Why the instruction counts are missing (no valgrind). */
  instructionsSkipped?: string;
  /** CPU seconds per hit (user + system, all threads) under wrk, µs: patroniglue and the bare loop. */
  cpuPerHit: { name: string; user: number; system: number }[];
}

/** The measurement, recorded before this round of work, that the report shows beside the new one. */
export interface FootprintBaseline {
  /** What was measured: a commit and a date. */
  label: string;
  footprint: FootprintResult;
  /** (1) and (7) figures of that run (req/s, p99 ms, RSS KiB), when it measured them. */
  hits?: Partial<Record<"patroniglue" | "haproxy" | "limit", { rps: number; p99: number }>>;
}

/** User and system CPU seconds of a process (all its threads) from /proc/PID/stat. */
export function cpuTimes(pid: number): { user: number; system: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}

/** USER_HZ: the unit of /proc/PID/stat times on Linux. */
const CLOCK_TICKS = 100;

function threadCount(pid: number): number {
  return Number(Deno.readTextFileSync(`/proc/${pid}/status`).match(/^Threads:\s+(\d+)/m)?.[1] ?? 0);
}

/** A spawned process, its stdout to a file (trace output), stopped with SIGINT then SIGKILL. */
class Measured {
  readonly #child: Deno.ChildProcess;
  constructor(cmd: string, args: string[], cwd: string, stdoutFile?: string) {
    const out = stdoutFile ? Deno.openSync(stdoutFile, { write: true, create: true }) : undefined;
    this.#child = new Deno.Command(cmd, {
      args,
      cwd,
      stdin: "piped",
      stdout: out ? "piped" : "null",
      stderr: "null",
    }).spawn();
    if (out) this.#child.stdout.pipeTo(out.writable).catch(() => {});
  }
  get pid(): number {
    return this.#child.pid;
  }
  async stop(signal: Deno.Signal = "SIGINT"): Promise<void> {
    try {
      this.#child.kill(signal);
    } catch { /* gone */ }
    const kill = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 8000);
    await this.#child.stdin.close().catch(() => {});
    await this.#child.status;
    clearTimeout(kill);
  }
}

/** Options of {@linkcode footprintScenario}. */
export interface FootprintOptions {
  settings: BenchSettings;
  /** Seconds of measured wrk per process (after 1 s of warm-up). */
  seconds: number;
  threads: number;
  connections: number;
  /** Hits under callgrind (after as many unrecorded). */
  callgrindHits: number;
  /** Called with a progress line. */
  say: (line: string) => void;
}

const HIT_PATH = "/primary";

/** Runs (12): every figure of {@linkcode FootprintResult}. */
export async function footprintScenario(o: FootprintOptions): Promise<FootprintResult> {
  const { settings: s } = o;
  const dir = `${s.tmp}/footprint`;
  await Deno.mkdir(dir, { recursive: true });
  const { fake } = await startFake(s.delayMs);
  const configFile = (port: number) => {
    const file = `${dir}/glue-${port}.yml`;
    Deno.writeTextFileSync(file, glueConfig(port, fake.port, s));
    return file;
  };
  const glue = (port: number, extra: string[] = []) => {
    const c = glueCommand(configFile(port), [...(s.denoFlags ?? []), ...extra]);
    return { cmd: c.cmd, args: c.args };
  };
  const wrk = (port: number, durationS: number) =>
    runWrk({
      url: `http://127.0.0.1:${port}${HIT_PATH}`,
      threads: o.threads,
      connections: o.connections,
      durationS,
    });
  const warm = async (port: number) => {
    for (const p of ["/primary", "/leader", "/read-only", "/replica"]) {
      await rawGet(port, p).catch(() => 0);
    }
  };
  const result: FootprintResult = {
    v8Flags: V8_FLAGS.replace(/^--v8-flags=/, ""),
    processes: [],
    phases: [],
    instructions: [],
    cpuPerHit: [],
  };
  try {
    // Memory by mapping: the runtime alone, a bare loop answering a hit's bytes, patroniglue.
    const hitBytes = await hitResponse(s, fake.port, dir);
    const bareFile = `${dir}/hit.bin`;
    await Deno.writeFile(bareFile, hitBytes);
    const references = [
      {
        name: "deno, the runtime alone (waits on stdin)",
        ...denoCommand("bench/idle_deno.ts", []),
      },
    ];
    for (const r of references) {
      const p = new Measured(r.cmd, r.args, s.root);
      await sleep(1500);
      result.processes.push({ name: r.name, idle: memoryView(p.pid), threads: threadCount(p.pid) });
      await p.stop("SIGTERM");
    }
    const servers = [
      {
        name: "a bare Deno.listen loop answering a hit's bytes",
        start: (port: number) => denoCommand("bench/bare_listen.ts", [String(port), bareFile]),
      },
      { name: "patroniglue", start: (port: number) => glue(port) },
    ];
    for (const server of servers) {
      const port = freePort();
      const c = server.start(port);
      const p = new Measured(c.cmd, c.args, s.root);
      try {
        await waitForPort(port);
        await warm(port);
        await sleep(1000);
        const idle = memoryView(p.pid);
        await wrk(port, 1);
        let load = memoryView(p.pid);
        const cpu0 = cpuTimes(p.pid);
        const sampler = setInterval(() => {
          const now = memoryView(p.pid);
          if (now.rollup.rss > load.rollup.rss) load = now;
        }, 100);
        const w = await wrk(port, o.seconds);
        clearInterval(sampler);
        const cpu1 = cpuTimes(p.pid);
        result.processes.push({
          name: server.name,
          idle,
          load,
          threads: threadCount(p.pid),
          rps: w.rps,
        });
        result.cpuPerHit.push({
          name: server.name,
          user: (cpu1.user - cpu0.user) / w.requests * 1e6,
          system: (cpu1.system - cpu0.system) / w.requests * 1e6,
        });
        o.say(
          `  ${server.name}: RSS ${(idle.rollup.rss / 1024).toFixed(1)} MiB idle, ${
            (load.rollup.rss / 1024).toFixed(1)
          } MiB under load, ${Math.round(w.rps)} req/s`,
        );
      } finally {
        await p.stop();
      }
    }

    // V8's heap and GCs per 100k hits: a measured stretch of --trace-gc-nvp.
    {
      const port = freePort();
      const trace = `${dir}/gc-nvp.txt`;
      const c = glue(port, ["--v8-flags=--trace-gc-nvp"]);
      const p = new Measured(c.cmd, c.args, s.root, trace);
      try {
        await waitForPort(port);
        await warm(port);
        await wrk(port, 1);
        const from = (await Deno.stat(trace)).size;
        const w = await wrk(port, o.seconds);
        const text = new TextDecoder().decode((await Deno.readFile(trace)).subarray(from));
        result.gc = gcFigures(text, w.requests);
      } finally {
        await p.stop();
      }
    }

    // A CPU profile of the hot path: the last seconds of the profile are the measured wrk.
    {
      const port = freePort();
      const profDir = `${dir}/cpu-prof`;
      const c = glue(port, ["--cpu-prof", `--cpu-prof-dir=${profDir}`]);
      const p = new Measured(c.cmd, c.args, s.root);
      await waitForPort(port);
      await warm(port);
      await wrk(port, 1);
      await wrk(port, o.seconds);
      await p.stop();
      for (const e of Deno.readDirSync(profDir)) {
        const profile = JSON.parse(Deno.readTextFileSync(`${profDir}/${e.name}`)) as CpuProfile;
        result.profile = { ...profileShares(profile, o.seconds * 1000), seconds: o.seconds };
      }
    }

    // What each start phase and module adds (bench/footprint_phases.ts, its own process).
    result.phases = await startPhases(
      configFile(freePort()),
      s.root,
      (port) => wrk(port, o.seconds),
    );

    // User-space instructions per hit under callgrind (repeatable, unlike time).
    if (!await hasCommand("valgrind")) {
      result.instructionsSkipped = "valgrind is not installed";
    } else {
      for (const server of servers) {
        const port = freePort();
        const c = server.start(port);
        o.say(`  callgrind: ${server.name}`);
        result.instructions.push(
          await callgrind(server.name, c, port, o.callgrindHits, s.root, dir),
        );
      }
    }
  } finally {
    await fake.close();
  }
  return result;
}

/**
 * Runs bench/footprint_phases.ts (production V8 flags and --expose-gc) with `config`; `load` runs
 * when it is ready; resolves to its phases.
 */
async function startPhases(
  config: string,
  root: string,
  load: (port: number) => Promise<unknown>,
): Promise<PhaseFigures[]> {
  const c = denoCommand("bench/footprint_phases.ts", [config], ["--v8-flags=--expose-gc"]);
  const child = new Deno.Command(c.cmd, {
    args: c.args.map((a) => a === "-P" ? "-A" : a),
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errors = new Response(child.stderr).text();
  const phases: PhaseFigures[] = [];
  const writer = child.stdin.getWriter();
  let pending = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
      const line = pending.slice(0, i);
      pending = pending.slice(i + 1);
      if (line.startsWith("{")) phases.push(JSON.parse(line));
      const ready = line.match(/^ready (\d+)$/);
      if (ready) {
        await load(Number(ready[1]));
        await writer.write(new TextEncoder().encode("go\n"));
      }
    }
  }
  await writer.close().catch(() => {});
  if (!(await child.status).success) {
    throw new Error(`bench/footprint_phases.ts failed: ${(await errors).trim()}`);
  }
  return phases;
}

/** The bytes patroniglue answers a hit of /primary with (a keep-alive GET), for the bare loop. */
async function hitResponse(
  s: BenchSettings,
  backendPort: number,
  dir: string,
): Promise<Uint8Array> {
  const port = freePort();
  const file = `${dir}/glue-hit-${port}.yml`;
  await Deno.writeTextFile(file, glueConfig(port, backendPort, s));
  const c = glueCommand(file, s.denoFlags);
  const p = new Measured(c.cmd, c.args, s.root);
  try {
    await waitForPort(port);
    await rawGet(port, HIT_PATH);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode(`GET ${HIT_PATH} HTTP/1.1\r\nHost: x\r\n\r\n`));
      const buf = new Uint8Array(4096);
      let len = 0;
      for (;;) {
        const n = await conn.read(buf.subarray(len));
        if (n === null) break;
        len += n;
        const text = new TextDecoder().decode(buf.subarray(0, len));
        const end = text.indexOf("\r\n\r\n");
        const length = Number(text.match(/content-length: (\d+)/i)?.[1] ?? NaN);
        if (end >= 0 && len >= end + 4 + length) break;
      }
      return buf.slice(0, len);
    } finally {
      conn.close();
    }
  } finally {
    await p.stop();
  }
}

/**
 * Instructions per hit of a server under callgrind: `hits` keep-alive GETs of /primary on one
 * connection, one at a time, as health checks come (bench/count_client.ts), counted after as many
 * unrecorded ones (the JIT tiers up). One request per event-loop turn makes the count repeatable
 * (but for a full GC or a compilation in the stretch); with several connections, how many requests
 * a turn finds ready (and so the count) depends on how busy the machine is.
 */
async function callgrind(
  name: string,
  server: { cmd: string; args: string[] },
  port: number,
  hits: number,
  root: string,
  dir: string,
): Promise<InstructionCount> {
  const out = `${dir}/callgrind-${port}.out`;
  const vg = new Deno.Command("valgrind", {
    args: [
      "--tool=callgrind",
      "--smc-check=all-non-file",
      "--compress-strings=no",
      `--callgrind-out-file=${out}`,
      server.cmd,
      ...server.args,
    ],
    cwd: root,
    stdout: "null",
    stderr: "null",
  }).spawn();
  const control = (what: string) =>
    new Deno.Command("callgrind_control", { args: [what, String(vg.pid)], stdout: "null" })
      .output();
  const client = (n: number, path = HIT_PATH) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", "-A", "bench/count_client.ts", String(port), String(n), "1", path],
      cwd: root,
      stdout: "null",
    }).output();
  try {
    await waitForPort(port, 180_000);
    for (const p of ["/leader", "/read-only", "/replica"]) await client(20, p);
    await client(hits);
    await control("-z");
    await client(hits);
    await control("-d");
    return instructionsByObject(await Deno.readTextFile(`${out}.1`), hits, name);
  } finally {
    try {
      vg.kill("SIGKILL");
    } catch { /* gone */ }
    await vg.status;
  }
}
