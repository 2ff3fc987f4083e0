// `deno task bench`: patroniglue against nginx proxy_cache, HAProxy's cache, the limit (HAProxy
// answering a constant) and Patroni direct, on loopback, alternating targets run by run; where its
// memory and a hit's time go; writes BENCHMARKS.md and a PNG chart.
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import {
  type BenchSettings,
  coldStart,
  fixtureTls,
  freePort,
  glueCommand,
  glueConfig,
  haproxyConfig,
  hasCommand,
  HIT_ONLY_TARGETS,
  nginxConfig,
  rawGet,
  rawGetTls,
  sleep,
  startTarget,
  type Target,
  TARGET_NAMES,
  type TargetName,
  TLS_TARGET_NAMES,
  type TlsTargetName,
} from "./targets.ts";
import { mixScript, runWrk, type WrkResult, wrkVersion } from "./wrk.ts";
import { median, peakInWindow, ratePerWindow } from "./stats.ts";
import { renderMarkdown } from "./report.ts";
import { checkLatency, LineProcess, rssSampler, targetCpuSeconds, targetRss } from "./probes.ts";
import { type FootprintBaseline, footprintScenario } from "./footprint.ts";
import { stuckTlsCost, stuckTlsScenario } from "./stuck_tls.ts";
import { freshnessFigures, freshnessScenario } from "./freshness.ts";
import {
  type BackendLoad,
  type ColdResult,
  type FrozenResult,
  type IdleResult,
  type LoadRun,
  type LoadStats,
  MIX_PATHS,
  noMeasurements,
  type Options,
  type Results,
} from "./types.ts";
import { renderChart } from "./chart.ts";

/** Never requested elsewhere, so no target has it cached when the backend freezes. */
const FROZEN_PATH = "/read-write";
const HIT_PATH = "/primary";
/** The repository root. */
const ROOT = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");

const USAGE = `usage: deno task bench [options]
  --quick            tiny durations (development, smoke test)
  --runs N           wrk runs per target and scenario (default 5; quick 2)
  --duration S       seconds per wrk run (default 4; quick 1)
  --soak S           seconds of load for the RSS soak (default 60; quick 3); --soak 300 for 5 min
  --trials N         staleness trials per target (default 5; quick 2)
  --idle N           idle connections for scenario 6 (default 2000; quick 200)
  --stuck N          stuck TLS clients for scenario 9, a third of each kind (default 1500; quick 150)
  --stuck-hold S     seconds after they opened at which 9 counts those still open (default 25;
                     quick 11)
  --flips N          role flips for scenario 11, one per 3 s (default 9; quick 3)
  --quiet S          seconds without checks at the end of 11 (default 5; quick 3)
  --only LIST        scenarios to run, e.g. 1,2,5 (3 comes with 2, 7 with 1, 2 and the soak); 9 stuck
                     TLS clients, 10 HTTPS cache hits, 11 freshness after role flips, 12 where
                     memory and a hit's time go (footprint)
  --targets LIST     e.g. patroniglue,nginx (default: all that are installed; limit is HAProxy's
                     http-request return answering a constant, in (1) and (7) only)
  --callgrind N      hits counted under callgrind in (12) (default 10000; quick 1000)
  --baseline FILE    the recorded (12) shown as "before" (default bench/footprint-baseline.json)
  --out FILE         the report (default BENCHMARKS.md)
  --chart FILE       the chart (default bench/chart.png)
  --deno-flags=".." extra deno run flags for patroniglue (note the =), e.g.
                     --deno-flags="--cached-only"
  --json FILE        also save the raw results as JSON
  --render FILE      measure nothing: rewrite the report and chart from results saved by --json`;

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      runs: { type: "string" },
      duration: { type: "string" },
      soak: { type: "string" },
      trials: { type: "string" },
      idle: { type: "string" },
      stuck: { type: "string" },
      "stuck-hold": { type: "string" },
      flips: { type: "string" },
      quiet: { type: "string" },
      threads: { type: "string" },
      connections: { type: "string" },
      only: { type: "string" },
      targets: { type: "string" },
      out: { type: "string" },
      chart: { type: "string" },
      "deno-flags": { type: "string" },
      json: { type: "string" },
      render: { type: "string" },
      callgrind: { type: "string" },
      baseline: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const q = values.quick!;
  const num = (v: string | undefined, dflt: number, name: string): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  const targets = values.targets
    ? values.targets.split(",").map((s) => s.trim()) as TargetName[]
    : [...TARGET_NAMES];
  for (const t of targets) {
    if (!TARGET_NAMES.includes(t)) throw new Error(`unknown target ${t}`);
  }
  if (!targets.includes("patroniglue")) targets.unshift("patroniglue");
  return {
    quick: q,
    runs: Math.round(num(values.runs, q ? 2 : 5, "runs")),
    durationS: Math.round(num(values.duration, q ? 1 : 4, "duration")),
    soakS: Math.round(num(values.soak, q ? 3 : 60, "soak")),
    trials: Math.round(num(values.trials, q ? 2 : 5, "trials")),
    idle: Math.round(num(values.idle, q ? 200 : 2000, "idle")),
    idleMeasureS: q ? 1 : 4,
    stuck: Math.round(num(values.stuck, q ? 150 : 1500, "stuck")),
    stuckHoldS: num(values["stuck-hold"], q ? 11 : 25, "stuck-hold"),
    flips: Math.round(num(values.flips, q ? 3 : 9, "flips")),
    quietS: num(values.quiet, q ? 3 : 5, "quiet"),
    threads: Math.round(num(values.threads, 2, "threads")),
    connections: Math.round(num(values.connections, 50, "connections")),
    only: new Set((values.only ?? ALL_SCENARIOS.join(",")).split(",").map(Number)),
    targets: TARGET_NAMES.filter((t) => targets.includes(t)),
    out: values.out ?? `${ROOT}/BENCHMARKS.md`,
    chart: values.chart ?? `${ROOT}/bench/chart.png`,
    denoFlags: values["deno-flags"]?.split(/\s+/).filter(Boolean) ?? [],
    json: values.json,
    render: values.render,
    callgrindHits: Math.round(num(values.callgrind, q ? 1000 : 10_000, "callgrind")),
    baseline: values.baseline ?? `${ROOT}/bench/footprint-baseline.json`,
  };
}

/** Every scenario's number. */
const ALL_SCENARIOS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

function say(line: string): void {
  console.log(line);
}

/**
 * How much shorter than a ttl the windows of the peak are: GETs sent exactly a ttl apart reach the
 * simulated Patroni a millisecond or two early or late (connecting, writing), and a window of
 * exactly a ttl would count such a pair as two in one ttl.
 */
const ARRIVAL_JITTER_MS = 10;

/**
 * Backend GETs per path between two instants, as {@linkcode BackendLoad} (one run): mean and peak
 * per ttl in the steady state, from one ttl after `from` (a cold start's first ttl holds the cold
 * GET and, for patroniglue, the one refresh that staggers the routes asked at the same instant).
 */
function backendLoadOf(
  t: Target,
  from: number,
  to: number,
  paths: readonly string[],
  ttlMs: number,
): BackendLoad[] {
  return paths.map((path) => {
    const times = t.arrivals.filter((a) => a.target === path && a.at >= from && a.at <= to)
      .map((a) => a.at);
    const steady = times.filter((at) => at >= from + ttlMs);
    return {
      path,
      requests: times.length,
      meanPerTtl: ratePerWindow(steady, to, ttlMs),
      peakPerTtl: peakInWindow(steady, ttlMs - ARRIVAL_JITTER_MS),
      firstTtlRequests: times.length - steady.length,
    };
  });
}

function mergeBackendLoads(runs: BackendLoad[][]): BackendLoad[] {
  return runs[0].map((first, i) => ({
    path: first.path,
    requests: runs.reduce((s, r) => s + r[i].requests, 0),
    meanPerTtl: median(runs.map((r) => r[i].meanPerTtl).filter((x) => !Number.isNaN(x))),
    peakPerTtl: Math.max(...runs.map((r) => r[i].peakPerTtl)),
    firstTtlRequests: Math.max(...runs.map((r) => r[i].firstTtlRequests ?? 0)),
  }));
}

function loadStats(runs: LoadRun[]): LoadStats {
  return {
    runs,
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    cpuUs: median(runs.flatMap((r) => r.cpuUs === undefined ? [] : [r.cpuUs])),
    non2xx: runs.reduce((s, r) => s + r.non2xx, 0) /
      Math.max(1, runs.reduce((s, r) => s + r.requests, 0)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
  };
}

/** Scenarios (1)/(2)/(10): wrk against every target, rotating the order each round (A B C D, B C D A...). */
async function loadScenario<N extends string>(
  label: string,
  targets: Target<N>[],
  o: Options,
  path: string,
  script: string | undefined,
  rssLoad: Partial<Record<N, number>>,
  rssLoadAnon: Partial<Record<N, number>>,
  onRun?: (t: Target<N>, r: WrkResult) => void,
): Promise<Partial<Record<N, LoadStats>>> {
  const runs = new Map<N, LoadRun[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < o.runs; round++) {
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(round + k) % targets.length];
      t.arrivals.length = 0; // only this run's backend GETs are looked at
      const sampler = rssSampler(t, 250);
      const cpuBefore = targetCpuSeconds(t);
      const wrk = await runWrk({
        url: t.url + path,
        threads: o.threads,
        connections: o.connections,
        durationS: o.durationS,
        script,
      });
      const cpu = targetCpuSeconds(t) - cpuBefore;
      const r: LoadRun = t.pids().length ? { ...wrk, cpuUs: cpu / wrk.requests * 1e6 } : wrk;
      const samples = sampler.stop();
      const peak = Math.max(...samples.map(([, kib]) => kib));
      const anon = Math.max(...samples.map(([, , kib]) => kib));
      rssLoad[t.name] = Math.max(rssLoad[t.name] ?? 0, peak);
      rssLoadAnon[t.name] = Math.max(rssLoadAnon[t.name] ?? 0, anon);
      runs.get(t.name)!.push(r);
      onRun?.(t, r);
      say(
        `  ${label} round ${round + 1}/${o.runs} ${t.name.padEnd(11)} ${fmtInt(r.rps)} req/s` +
          `  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms` +
          (r.cpuUs === undefined ? "" : `  ${r.cpuUs.toFixed(1)} µs CPU/req`) +
          (r.errors ? `  (${r.errors} socket errors)` : ""),
      );
      await sleep(200);
    }
  }
  return Object.fromEntries([...runs].map(([name, rs]) => [name, loadStats(rs)])) as Partial<
    Record<N, LoadStats>
  >;
}

/** 1 s of wrk on each target's hit path, not recorded (JIT, caches). */
async function warmUp(targets: Pick<Target<string>, "url">[], o: Options): Promise<void> {
  for (const t of targets) {
    await runWrk({
      url: t.url + HIT_PATH,
      threads: o.threads,
      connections: o.connections,
      durationS: 1,
    });
    await sleep(200);
  }
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Scenario (4): 20 concurrent checks on a path nobody cached, with the backend frozen. */
async function frozenScenario(
  t: Target,
  settings: BenchSettings,
  quick: boolean,
): Promise<FrozenResult> {
  const capMs = settings.timeout * 1000 + (quick ? 2000 : 8000);
  const before = t.fake.count(FROZEN_PATH);
  t.fake.freeze();
  try {
    const checks = await Promise.all(Array.from({ length: 20 }, async () => {
      const t0 = performance.now();
      const status = await rawGet(t.port, FROZEN_PATH, capMs).catch(() => 0);
      return { ms: performance.now() - t0, status };
    }));
    await sleep(250); // a retry sent just after the answers still counts
    return { checks, backendRequests: t.fake.count(FROZEN_PATH) - before, capMs };
  } finally {
    t.fake.thaw();
  }
}

/** Scenario (5): time from the member turning replica until /primary answers 503, per trial. */
async function stalenessScenario(t: Target, trials: number, ttlMs: number): Promise<number[]> {
  let stop = false;
  let lastStatus = 0;
  let flipAt = -1;
  let first503 = -1;
  const poller = (async () => {
    while (!stop) {
      try {
        const r = await fetch(t.url + HIT_PATH);
        await r.arrayBuffer();
        lastStatus = r.status;
        if (flipAt >= 0 && first503 < 0 && r.status === 503) first503 = performance.now();
      } catch {
        lastStatus = 0;
      }
      await sleep(1);
    }
  })();
  const waitFor = async (cond: () => boolean, ms: number) => {
    const deadline = performance.now() + ms;
    while (!cond() && performance.now() < deadline) await sleep(2);
    return cond();
  };
  const samples: number[] = [];
  try {
    for (let i = 0; i < trials; i++) {
      t.fake.role = "primary";
      flipAt = -1;
      first503 = -1;
      lastStatus = 0;
      if (!await waitFor(() => lastStatus === 200, ttlMs * 4 + 2000)) {
        throw new Error(`${t.name}: /primary never answered 200`);
      }
      // A random phase against the cache's refreshes.
      await sleep(50 + Math.random() * ttlMs);
      flipAt = performance.now();
      t.fake.role = "replica";
      if (!await waitFor(() => first503 >= 0, ttlMs * 4 + 2000)) {
        samples.push(Infinity);
        continue;
      }
      samples.push(first503 - flipAt);
    }
  } finally {
    stop = true;
    await poller;
    t.fake.role = "primary";
  }
  return samples;
}

/** Scenario (6): check latency without, then with N slowloris connections held open. */
async function idleScenario(t: Target, o: Options, root: string): Promise<IdleResult> {
  const check = () => rawGet(t.port, HIT_PATH, 5000);
  const baseline = await checkLatency(check, o.idleMeasureS);
  await using clients = new LineProcess(
    "bench/idle_clients.ts",
    [String(t.port), String(o.idle)],
    root,
  );
  const opened = (await clients.nextLine()).match(/opened (\d+) failed (\d+)/);
  if (!opened) throw new Error("idle_clients: unexpected output");
  await sleep(500);
  const sampler = rssSampler(t, 250);
  const loaded = await checkLatency(check, o.idleMeasureS);
  const rss = Math.max(...sampler.stop().map(([, k]) => k));
  const still = (await clients.finish()).match(/open (\d+)/);
  await sleep(1000);
  const rssAfter = targetRss(t);
  return {
    opened: Number(opened[1]),
    failed: Number(opened[2]),
    stillOpen: still ? Number(still[1]) : NaN,
    baseline,
    loaded,
    rss,
    rssAfter,
  };
}

/** Scenario (8): exec -> first 200, for `deno run`, a compiled binary in dist/ and the peers. */
async function coldScenario(
  o: Options,
  settings: BenchSettings,
  backendPort: number,
  available: Set<TargetName>,
): Promise<ColdResult[]> {
  const n = o.quick ? 2 : 5;
  const out: ColdResult[] = [];
  const dir = `${settings.tmp}/cold`;
  await Deno.mkdir(dir, { recursive: true });
  const glueTrials = async (cmd: string, argsOf: (file: string) => string[]) => {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const port = freePort();
      const file = `${dir}/glue-${i}.yml`;
      await Deno.writeTextFile(file, glueConfig(port, backendPort, settings));
      samples.push(await coldStart(cmd, argsOf(file), settings.root, port, HIT_PATH));
    }
    return samples;
  };
  const run = glueCommand("FILE", settings.denoFlags);
  out.push({
    name: "patroniglue (deno run)",
    samples: await glueTrials(run.cmd, (f) => run.args.map((a) => a === "FILE" ? f : a)),
  });
  const binary = await compiledBinary(settings.root);
  if (binary) {
    out.push({
      name: `patroniglue (compiled: ${binary.slice(settings.root.length + 1)})`,
      samples: await glueTrials(binary, (f) => ["-config", f]),
    });
  } else {
    out.push({
      name: "patroniglue (compiled binary)",
      samples: [],
      skipped:
        "no compiled binary in dist/ (deno compile needs denort, which cannot be downloaded here)",
    });
  }
  for (const peer of ["nginx", "haproxy"] as const) {
    if (!available.has(peer)) continue;
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const port = freePort();
      const pdir = `${dir}/${peer}-${i}`;
      await Deno.mkdir(pdir, { recursive: true });
      if (peer === "nginx") {
        await Deno.writeTextFile(
          `${pdir}/nginx.conf`,
          nginxConfig(pdir, port, backendPort, settings),
        );
        samples.push(
          await coldStart(
            "nginx",
            ["-p", pdir, "-c", `${pdir}/nginx.conf`, "-e", `${pdir}/error.log`],
            pdir,
            port,
            HIT_PATH,
          ),
        );
      } else {
        await Deno.writeTextFile(`${pdir}/haproxy.cfg`, haproxyConfig(port, backendPort, settings));
        samples.push(
          await coldStart("haproxy", ["-db", "-f", `${pdir}/haproxy.cfg`], pdir, port, HIT_PATH),
        );
      }
    }
    out.push({ name: peer, samples });
  }
  return out;
}

/**
 * A compiled patroniglue from `deno task build` that runs on this machine, if any:
 * `dist/patroniglue-VERSION-OS-ARCH/patroniglue` (or `dist/patroniglue`), checked with `-version`.
 */
async function compiledBinary(root: string): Promise<string | undefined> {
  const candidates: string[] = [`${root}/dist/patroniglue`];
  try {
    for await (const e of Deno.readDir(`${root}/dist`)) {
      if (e.isDirectory && e.name.startsWith("patroniglue-")) {
        candidates.push(`${root}/dist/${e.name}/patroniglue`);
      }
    }
  } catch { /* no dist/ */ }
  for (const path of candidates) {
    try {
      const st = await Deno.stat(path);
      if (!st.isFile || !((st.mode ?? 0) & 0o111)) continue;
      const out = await new Deno.Command(path, {
        args: ["-version"],
        stdout: "null",
        stderr: "null",
      })
        .output();
      if (out.success) return path;
    } catch { /* absent, or built for another platform */ }
  }
  return undefined;
}

async function commandLine(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n")[0].trim();
  } catch {
    return "absent";
  }
}

function cpuModel(): string {
  try {
    const m = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m);
    return m ? m[1].trim() : "unknown";
  } catch {
    return "unknown";
  }
}

/** Runs the whole bench; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  let o: Options;
  try {
    o = parseOptions(args);
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (o.render) {
    const saved = JSON.parse(await Deno.readTextFile(o.render)) as Results;
    saved.options = {
      ...saved.options,
      only: new Set(saved.options.only),
      out: o.out,
      chart: o.chart,
    };
    saved.footprintBaseline ??= await readBaseline(o.baseline);
    await writeReport(saved, o.out, o.chart);
    return 0;
  }
  const started = performance.now();
  const root = ROOT;
  const tmp = await Deno.makeTempDir({ prefix: "patroniglue-bench-" });
  const settings: BenchSettings = {
    ttl: 1,
    timeout: 2,
    delayMs: 2,
    root,
    tmp,
    denoFlags: o.denoFlags,
  };
  const ttlMs = settings.ttl * 1000;

  if (!await hasCommand("wrk")) {
    console.error("wrk is not installed (apt-get install wrk): cannot run the bench");
    return 1;
  }
  const skipped: { name: string; reason: string }[] = [];
  const wanted: TargetName[] = [];
  for (const name of o.targets) {
    if ((name === "nginx" || name === "haproxy") && !await hasCommand(name)) {
      say(`skipping ${name}: not installed (apt-get install ${name})`);
      skipped.push({ name, reason: "not installed" });
      continue;
    }
    wanted.push(name);
  }

  const results: Results = {
    options: o,
    settings: { ttl: settings.ttl, timeout: settings.timeout, delayMs: settings.delayMs },
    date: new Date().toISOString(),
    machine: {
      cpus: navigator.hardwareConcurrency,
      model: cpuModel(),
      memGiB: Deno.systemMemoryInfo().total / 1024 ** 3,
      kernel: Deno.osRelease(),
      loadStart: Deno.loadavg(),
    },
    loadEnd: [],
    versions: {
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      nginx: wanted.includes("nginx") ? await commandLine("nginx", ["-v"]) : "absent",
      haproxy: wanted.includes("haproxy") ? await commandLine("haproxy", ["-v"]) : "absent",
      wrk: await wrkVersion(),
    },
    elapsedS: 0,
    targets: wanted,
    skipped,
    ...noMeasurements(),
  };

  const targets: Target[] = [];
  const tlsTargets: Target<TlsTargetName>[] = [];
  const logs: [string, string][] = [];
  const stopAll = async () => {
    for (const t of targets.splice(0)) {
      logs.push([t.name, t.log()]);
      await t.stop().catch(() => {});
    }
    for (const t of tlsTargets.splice(0)) {
      logs.push([`${t.name} (https)`, t.log()]);
      await t.stop().catch(() => {});
    }
  };
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    say(
      `bench: ${
        o.quick ? "quick run" : o.only.size < ALL_SCENARIOS.length ? "partial run" : "full run"
      }, targets ${wanted.join(", ")}; scratch ${tmp}`,
    );
    const plainScenarios = ALL_SCENARIOS.filter((n) => n !== 9 && n !== 10 && n !== 12);
    if (plainScenarios.some((n) => o.only.has(n))) {
      for (const name of wanted) targets.push(await startTarget(name, settings));
    }
    const byName = (n: TargetName) => targets.find((t) => t.name === n);
    /** The targets with a backend: every scenario but (1) and (7)'s RSS. */
    const backed = () => targets.filter((t) => !HIT_ONLY_TARGETS.has(t.name));
    // Warm each target once, then let it settle: the idle RSS.
    for (const t of targets) {
      for (const p of MIX_PATHS) await rawGet(t.port, p).catch(() => 0);
    }
    await sleep(1000);
    for (const t of targets) {
      if (t.name === "direct") continue;
      results.rssIdle[t.name] = targetRss(t);
      results.rssIdleAnon[t.name] = targetRss(t, "RssAnon");
    }

    if (o.only.has(8)) {
      say("(8) cold start: exec -> first 200");
      results.cold = await coldScenario(
        o,
        settings,
        byName("patroniglue")!.fake.port,
        new Set(wanted),
      );
      for (const c of results.cold) {
        say(`  ${c.name}: ${c.skipped ?? c.samples.map((s) => `${s.toFixed(0)} ms`).join(", ")}`);
      }
    }

    if (o.only.has(4)) {
      say(`(4) frozen backend: 20 concurrent checks of ${FROZEN_PATH}`);
      for (const t of backed()) {
        const r = await frozenScenario(t, settings, o.quick);
        results.frozen[t.name] = r;
        const statuses = [...new Set(r.checks.map((c) => c.status || "none"))].join("/");
        say(
          `  ${t.name.padEnd(11)} statuses ${statuses}, slowest ${
            Math.max(...r.checks.map((c) => c.ms)).toFixed(0)
          } ms, backend requests ${r.backendRequests}`,
        );
        await sleep(ttlMs + 200);
      }
    }

    if ([1, 2, 3, 7].some((n) => o.only.has(n))) {
      say("warm-up: 1 s of wrk per target (JIT, caches), not recorded");
      await warmUp(targets, o);
    }

    if (o.only.has(1) || o.only.has(7)) {
      say(`(1) cache hits on ${HIT_PATH}: wrk -t${o.threads} -c${o.connections} -d${o.durationS}s`);
      results.hit = await loadScenario(
        "(1)",
        targets,
        o,
        HIT_PATH,
        undefined,
        results.rssLoad,
        results.rssLoadAnon,
      );
    }

    if (o.only.has(2) || o.only.has(3) || o.only.has(7)) {
      const script = `${tmp}/mix.lua`;
      await Deno.writeTextFile(script, mixScript(MIX_PATHS));
      say(`(2) mix of ${MIX_PATHS.join(" ")}; (3) backend requests per path per ttl`);
      const perRun = new Map<TargetName, BackendLoad[][]>();
      results.mix = await loadScenario(
        "(2)",
        backed(),
        o,
        "",
        script,
        results.rssLoad,
        results.rssLoadAnon,
        (t, r) => {
          const runs = perRun.get(t.name) ?? [];
          runs.push(backendLoadOf(t, r.startedAt, r.endedAt, MIX_PATHS, ttlMs));
          perRun.set(t.name, runs);
        },
      );
      for (const [name, runs] of perRun) {
        const merged = mergeBackendLoads(runs);
        results.backend[name] = merged;
        say(
          `  (3) ${name.padEnd(11)} ` +
            merged.map((b) => `${b.path} ${b.meanPerTtl.toFixed(2)}/ttl (peak ${b.peakPerTtl})`)
              .join(", "),
        );
      }
    }

    if (o.only.has(5)) {
      say(`(5) staleness: /primary after the member turns replica (${o.trials} trials)`);
      for (const t of backed()) {
        const s = await stalenessScenario(t, o.trials, ttlMs);
        results.stale[t.name] = s;
        say(`  ${t.name.padEnd(11)} ${s.map((x) => `${x.toFixed(0)} ms`).join(", ")}`);
      }
    }

    if (o.only.has(7)) {
      const glue = byName("patroniglue")!;
      const script = `${tmp}/mix.lua`;
      await Deno.writeTextFile(script, mixScript(MIX_PATHS));
      say(`(7) soak: ${o.soakS} s of the mix on patroniglue, RSS every second`);
      glue.arrivals.length = 0;
      const sampler = rssSampler(glue, 1000);
      const wrk = await runWrk({
        url: glue.url,
        threads: o.threads,
        connections: o.connections,
        durationS: o.soakS,
        script,
      });
      const samples = sampler.stop();
      results.soak = {
        seconds: o.soakS,
        samples,
        wrk,
        backend: backendLoadOf(glue, wrk.startedAt, wrk.endedAt, MIX_PATHS, ttlMs),
      };
      say(
        `  ${fmtInt(wrk.rps)} req/s; RSS ${(samples[0][1] / 1024).toFixed(1)} -> ` +
          `${(samples[samples.length - 1][1] / 1024).toFixed(1)} MiB (max ${
            (Math.max(...samples.map((s) => s[1])) / 1024).toFixed(1)
          })`,
      );
      results.rssLoad.patroniglue = Math.max(
        results.rssLoad.patroniglue ?? 0,
        ...samples.map((s) => s[1]),
      );
      results.rssLoadAnon.patroniglue = Math.max(
        results.rssLoadAnon.patroniglue ?? 0,
        ...samples.map((s) => s[2]),
      );
    }
    if (o.only.has(6)) {
      say(`(6) ${o.idle} idle slowloris connections, HAProxy-like checks every 5 ms`);
      for (const t of backed()) {
        if (t.name === "direct") continue;
        const r = await idleScenario(t, o, root);
        results.idle[t.name] = r;
        say(
          `  ${t.name.padEnd(11)} opened ${r.opened} (still open at end ${r.stillOpen}); p99 ` +
            `${r.baseline.p99.toFixed(2)} ms -> ${
              r.loaded.p99.toFixed(2)
            } ms, errors ${r.loaded.errors}`,
        );
        await sleep(500);
      }
    }
    if (o.only.has(11)) {
      say(
        `(11) freshness: ${o.flips} role flips in ${o.flips * 3} s, Patroni 150 ms; /primary and ` +
          "/replica each every 50 ms on fresh connections; then no checks",
      );
      for (const t of backed()) {
        const raw = await freshnessScenario(t, { flips: o.flips, ttlMs, quietMs: o.quietS * 1000 });
        results.freshness![t.name] = raw;
        const f = freshnessFigures(raw);
        say(
          `  ${t.name.padEnd(11)} old role up to ${
            f.longestOldRoleMs.toFixed(0)
          } ms after a flip ` +
            `(${f.oldRoleCount} answers); waited ${f.waited.join("/")}; backend GETs ` +
            `${f.gets.join("/")}; after the last check ${f.trailingGets} then ${f.idleGets}` +
            (f.failed.some((n) => n > 0) ? `; failed ${f.failed.join("/")}` : ""),
        );
      }
    }
    if (o.only.has(12)) {
      await stopAll(); // the HTTP targets are done: (12) measures processes of its own
      say(
        `(12) footprint: memory by mapping, GCs, start phases, CPU profile, instructions per hit`,
      );
      results.footprint = await footprintScenario({
        settings,
        seconds: o.durationS,
        threads: o.threads,
        connections: o.connections,
        callgrindHits: o.callgrindHits ?? 10_000,
        say,
      });
    }
    if (o.only.has(9) || o.only.has(10)) {
      await stopAll(); // the HTTP targets are done: the HTTPS ones get the machine
      const tls = fixtureTls(root);
      const ca = await Deno.readTextFile(tls.ca);
      for (const name of TLS_TARGET_NAMES) {
        if (name === "nginx" && !wanted.includes("nginx")) continue;
        if (name === "bare" && !o.only.has(9)) continue;
        const t = await startTarget(name, settings, tls);
        tlsTargets.push(t);
        if (name !== "bare") await rawGetTls(t.port, HIT_PATH, ca);
      }
      if (o.only.has(9)) {
        say(
          `(9) ${o.stuck} stuck TLS clients (silent, partial ClientHello, half a request); ` +
            `HTTPS checks every 10 ms; still open after ${o.stuckHoldS} s`,
        );
        for (const t of tlsTargets) {
          const r = await stuckTlsScenario(t, {
            count: o.stuck,
            holdS: o.stuckHoldS,
            measureS: o.idleMeasureS,
            root,
            caFile: tls.ca,
          });
          results.stuckTls![t.name] = r;
          const cost = stuckTlsCost(r);
          say(
            `  ${t.name.padEnd(11)} opened ${r.opened} in ${r.openMs} ms; RSS +${
              (cost.growthKiB / 1024).toFixed(1)
            } MiB (${cost.perClientKiB.toFixed(1)} KiB each); p95 ${
              r.baseline?.p95?.toFixed(2) ?? "—"
            } -> ${
              r.loaded?.p95?.toFixed(2) ?? "—"
            } ms; still open after ${r.holdS} s: ${r.stillOpen}`,
          );
          await sleep(1000);
        }
      }
      if (o.only.has(10)) {
        const https = tlsTargets.filter((t) => t.name !== "bare");
        say(`(10) HTTPS cache hits on ${HIT_PATH}: warm-up 1 s each, then as (1)`);
        await warmUp(https, o);
        results.httpsHit = await loadScenario("(10)", https, o, HIT_PATH, undefined, {}, {});
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await stopAll();
    for (const [name, log] of logs) {
      if (/error|panic|uncaught/i.test(log)) {
        say(`note: ${name} logged:\n${log.trim().slice(-2000)}`);
      }
    }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
  results.loadEnd = Deno.loadavg();
  results.elapsedS = (performance.now() - started) / 1000;
  results.footprintBaseline = await readBaseline(o.baseline);

  if (o.json) {
    const plain = { ...results, options: { ...o, only: [...o.only] } };
    await Deno.writeTextFile(o.json, JSON.stringify(plain, null, 1));
    say(`saved the results in ${o.json}`);
  }
  const md = await writeReport(results, o.out, o.chart);
  const misses = md.match(/\*\*MISS\*\*/g)?.length ?? 0;
  say(misses ? `${misses} target(s) missed: see ${o.out}` : "all targets met");
  return 0;
}

/** The recorded (12) in `file`, if there is one. */
async function readBaseline(file: string | undefined): Promise<FootprintBaseline | undefined> {
  if (!file) return undefined;
  try {
    return JSON.parse(await Deno.readTextFile(file)) as FootprintBaseline;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`cannot read the baseline ${file}: ${(e as Error).message}`);
  }
}

/** Writes the report (and the chart when (1) or (2) ran); resolves to the report. */
async function writeReport(results: Results, out: string, chart: string): Promise<string> {
  const hasLoad = Object.keys(results.hit).length + Object.keys(results.mix).length > 0;
  const md = renderMarkdown(results, hasLoad ? chart : undefined, out);
  await Deno.writeTextFile(out, md);
  if (hasLoad) await Deno.writeFile(chart, renderChart(results));
  say(
    `wrote ${out}${hasLoad ? ` and ${chart}` : " (no chart: scenarios 1 and 2 not run)"} after ${
      results.elapsedS.toFixed(0)
    } s of measuring`,
  );
  return md;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
