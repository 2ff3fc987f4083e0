// Soak: patroniglue under steady load while the backend flaps between primary, replica, frozen and
// dead; checks every answer against the backend's role timeline and watches the process's memory.
// Usage: deno run -A bench/soak.ts [--minutes 10] [--ttl 1] [--timeout 1] [--clients 50]
// Exits 1 on an inconsistent or failed answer, a crash, an unclean stop, or RSS growth over 20%
// from the 1-minute mark (half the run, if shorter) to the end.
import { V8_FLAGS } from "../packaging/build.ts";
import { FakePatroni, type FakeRole } from "../tests/support/fake_patroni.ts";
import { configText, freePort, GlueProcess, writeConfig } from "../tests/support/glue.ts";

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  const eq = Deno.args.find((a) => a.startsWith(`--${name}=`));
  const raw = eq ? eq.slice(name.length + 3) : i === -1 ? undefined : Deno.args[i + 1];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`soak: --${name} must be a non-negative number, got ${raw}`);
    Deno.exit(2);
  }
  return n;
}

const MINUTES = option("minutes", 10);
const TTL = option("ttl", 1);
const TIMEOUT = option("timeout", 1);
const CLIENTS = option("clients", 50);
/** Seconds between RSS samples. */
const SAMPLE_EVERY = option("sample", 10);
const RSS_GROWTH_LIMIT = 0.2;
/** How far back an answer may reflect: cached for ttl, fetched within timeout, plus slack. */
const WINDOW_MS = (TTL + TIMEOUT + 0.1) * 1000;

type State = "primary" | "replica" | "frozen" | "dead";
type Path = "/primary" | "/replica";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
const now = () => performance.now();
const t0 = now();
const clock = (t: number) => ((t - t0) / 1000).toFixed(3);

// ---------------------------------------------------------------------------------------------
// The backend's state over time, recorded just before each change takes effect.

const timeline: { t: number; state: State }[] = [];
function record(state: State) {
  timeline.push({ t: now(), state });
}

/** The states the backend was in at some moment within [from, to]. */
function statesDuring(from: number, to: number): Set<State> {
  const states = new Set<State>();
  let i = timeline.length - 1;
  while (i > 0 && timeline[i].t > from) i--;
  for (; i < timeline.length && timeline[i].t <= to; i++) states.add(timeline[i].state);
  return states;
}

// ---------------------------------------------------------------------------------------------
// Setup.

const port = freePort();
let fake = await FakePatroni.start({ role: "primary" });
record("primary");
const backendPort = fake.port;
const file = await writeConfig(
  configText(port, backendPort, { backend: `  timeout: ${TIMEOUT}`, cache: `  ttl: ${TTL}` }),
);
// As operators run it: with the V8 flags of `deno task start` and the compiled binary.
const glue = await GlueProcess.start(["-config", file], undefined, [V8_FLAGS]);
const url = glue.url;
console.log(
  `soak: ${MINUTES} min, ${CLIENTS} clients, ttl ${TTL}s, timeout ${TIMEOUT}s; patroniglue pid ${glue.pid} on ${url}, backend :${backendPort}`,
);

let running = true;
const deadline = t0 + MINUTES * 60_000;

// ---------------------------------------------------------------------------------------------
// The flapping backend.

const transitions: Record<string, number> = {};
async function flap(): Promise<void> {
  let state: State = "primary";
  while (running) {
    const choices: State[] = state === "dead"
      ? ["primary", "replica"]
      : (["primary", "replica", "frozen", "dead"] as State[]).filter((s) => s !== state);
    const next = choices[Math.floor(Math.random() * choices.length)];
    transitions[`${state}->${next}`] = (transitions[`${state}->${next}`] ?? 0) + 1;
    if (next === "primary" || next === "replica") {
      record(next);
      if (state === "dead") {
        fake = await restart(next);
      } else {
        fake.role = next as FakeRole;
        fake.thaw();
      }
    } else if (next === "frozen") {
      record("frozen");
      fake.freeze();
    } else {
      record("dead");
      // close() first releases held requests, answering them; a frozen Patroni that dies never
      // answers, so make them fail (a standby leader is neither /primary nor /replica).
      if (state === "frozen") fake.role = "standby_leader";
      await fake.close();
    }
    state = next;
    const hold = next === "frozen" ? rand(2000, 4000) : next === "dead" ? rand(1000, 3000) : rand(
      2000,
      5000,
    );
    await sleep(Math.min(hold, Math.max(0, deadline - now())));
    if (now() >= deadline) break;
  }
  // Leave the backend up and primary for the final checks.
  if (state === "dead") fake = await restart("primary");
  record("primary");
  fake.role = "primary";
  fake.thaw();
}

async function restart(role: FakeRole): Promise<FakePatroni> {
  for (let attempt = 0;; attempt++) {
    try {
      return await FakePatroni.start({ port: backendPort, role });
    } catch (e) {
      if (attempt >= 50) throw e;
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Clients: each answer is checked against the timeline.

const counts: Record<string, number> = {};
let requests = 0;
const latencies: number[] = [];
const inconsistent: string[] = [];
const spurious503: string[] = [];
const failed: string[] = [];

function judge(path: Path, status: number, sent: number, received: number) {
  const role: State = path === "/primary" ? "primary" : "replica";
  const states = statesDuring(sent - WINDOW_MS, received);
  const what = `${path} ${status} sent ${clock(sent)} received ${clock(received)}; backend was ${
    [...states].join("/")
  }`;
  if (status === 200 && !states.has(role)) inconsistent.push(what);
  if (status === 503 && [...states].every((s) => s === role)) spurious503.push(what);
  if (status !== 200 && status !== 503) failed.push(what);
}

async function client(): Promise<void> {
  while (running && now() < deadline) {
    const path: Path = Math.random() < 0.5 ? "/primary" : "/replica";
    const sent = now();
    let status = 0;
    try {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      status = res.status;
    } catch (e) {
      failed.push(`${path} sent ${clock(sent)}: ${(e as Error).message}`);
    }
    const received = now();
    requests++;
    latencies.push(received - sent);
    const key = `${path} ${status || "error"}`;
    counts[key] = (counts[key] ?? 0) + 1;
    if (status) judge(path, status, sent, received);
    await sleep(rand(10, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// Memory and descriptors of the patroniglue process.

const samples: { t: number; rssKiB: number; fds: number }[] = [];
let crashed = "";
async function sampleOnce(): Promise<void> {
  try {
    const status = await Deno.readTextFile(`/proc/${glue.pid}/status`);
    const rssKiB = Number(status.match(/^VmRSS:\s+(\d+)\s+kB/m)?.[1] ?? NaN);
    if (/^State:\s+Z/m.test(status)) throw new Error("zombie");
    let fds = 0;
    for await (const _ of Deno.readDir(`/proc/${glue.pid}/fd`)) fds++;
    samples.push({ t: now(), rssKiB, fds });
  } catch (e) {
    crashed ||= `patroniglue (pid ${glue.pid}) is gone at ${clock(now())}s: ${
      (e as Error).message
    }`;
  }
}

async function sampler(): Promise<void> {
  let nextReport = t0 + 60_000;
  while (running && now() < deadline) {
    await sampleOnce();
    if (now() >= nextReport) {
      nextReport += 60_000;
      const last = samples.at(-1);
      console.log(
        `soak: ${
          clock(now())
        }s ${requests} requests, ${inconsistent.length} inconsistent, ${spurious503.length} spurious 503, ${failed.length} failed; RSS ${
          last ? (last.rssKiB / 1024).toFixed(1) : "?"
        } MiB, ${last?.fds ?? "?"} fds`,
      );
    }
    await sleep(Math.min(SAMPLE_EVERY * 1000, Math.max(0, deadline - now())));
  }
  await sampleOnce();
}

// ---------------------------------------------------------------------------------------------
// Run, stop, report.

const tasks = [flap(), sampler(), ...Array.from({ length: CLIENTS }, client)];
await Promise.all(tasks);
running = false;

// After the run: the backend is primary again, so patroniglue must say so (within ttl).
await sleep((TTL + TIMEOUT) * 1000 + 200);
const final: Record<string, number> = {};
for (const path of ["/health", "/primary", "/replica"]) {
  try {
    const res = await fetch(`${url}${path}`);
    await res.arrayBuffer();
    final[path] = res.status;
  } catch {
    final[path] = 0;
  }
}
const stop = await glue.stop("SIGTERM");
await fake.close();
await Deno.remove(file);

const levels: Record<string, number> = {};
for (const line of stop.stderr.split("\n")) {
  const level = line.match(/^\S+Z (DEBUG|INFO|NOTICE|WARN|ERROR) /)?.[1] ?? (line ? "other" : "");
  if (level) levels[level] = (levels[level] ?? 0) + 1;
}
const uncaught = /Uncaught|panicked|RUST_BACKTRACE/.test(stop.stderr);

const mib = (kib: number) => (kib / 1024).toFixed(1);
const markT = t0 + Math.min(60_000, (MINUTES * 60_000) / 2);
const mark = samples.find((s) => s.t >= markT) ?? samples[0];
const last = samples.at(-1)!;
const maxRss = Math.max(...samples.map((s) => s.rssKiB));
const tail = samples.filter((s) => s.t >= mark.t);
const slope = slopePerMinute(tail.map((s) => [(s.t - t0) / 60_000, s.rssKiB]));
const growth = (last.rssKiB - mark.rssKiB) / mark.rssKiB;

latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
const elapsed = (now() - t0) / 1000;

const problems: string[] = [];
if (inconsistent.length) problems.push(`${inconsistent.length} answers inconsistent with the role`);
if (spurious503.length) problems.push(`${spurious503.length} 503s while the backend was fine`);
if (failed.length) problems.push(`${failed.length} failed requests or unexpected statuses`);
if (crashed) problems.push(crashed);
if (stop.code !== 0) problems.push(`exit code ${stop.code} after SIGTERM`);
if (uncaught) problems.push("uncaught exception in stderr");
if (levels.ERROR || levels.other) problems.push("ERROR or unexpected lines in stderr");
if (growth > RSS_GROWTH_LIMIT) {
  problems.push(`RSS grew ${(growth * 100).toFixed(1)}% from ${clock(mark.t)}s to the end`);
}
if (final["/health"] !== 200 || final["/primary"] !== 200 || final["/replica"] !== 503) {
  problems.push(
    `final answers ${JSON.stringify(final)}, want /health 200 /primary 200 /replica 503`,
  );
}

console.log(`
soak summary (${elapsed.toFixed(0)} s, ${CLIENTS} clients, ttl ${TTL}s, timeout ${TIMEOUT}s)
  requests      ${requests} (${(requests / elapsed).toFixed(0)}/s)
  answers       ${Object.entries(counts).sort().map(([k, v]) => `${k}: ${v}`).join(", ")}
  latency ms    p50 ${pct(0.5).toFixed(1)}  p99 ${pct(0.99).toFixed(1)}  max ${
  latencies.at(-1)!.toFixed(1)
}
  backend       ${timeline.length} states; ${
  Object.entries(transitions).sort().map(([k, v]) => `${k} ${v}`).join(", ")
}
  inconsistent  ${inconsistent.length} (200 while the backend never had that role in the window)
  spurious 503  ${spurious503.length} (503 while the backend had that role all the window)
  failed        ${failed.length} (errors, timeouts, other statuses)
  RSS MiB       first ${mib(samples[0].rssKiB)}  at ${clock(mark.t)}s ${mib(mark.rssKiB)}  last ${
  mib(last.rssKiB)
}  max ${mib(maxRss)}  slope ${(slope / 1024).toFixed(3)} MiB/min  growth ${
  (growth * 100).toFixed(1)
}%
  fds           first ${samples[0].fds}  last ${last.fds}  max ${
  Math.max(...samples.map((s) => s.fds))
}
  final         ${JSON.stringify(final)}
  stderr lines  ${JSON.stringify(levels)}
  exit          ${stop.code} after SIGTERM${crashed ? `; ${crashed}` : ""}
  result        ${problems.length ? `FAIL: ${problems.join("; ")}` : "OK"}`);
for (
  const [name, list] of [
    ["inconsistent", inconsistent],
    ["spurious 503", spurious503],
    ["failed", failed],
  ] as const
) {
  for (const line of list.slice(0, 5)) console.log(`  ${name}: ${line}`);
}
if (levels.ERROR || levels.other || uncaught) {
  const odd = stop.stderr.split("\n").filter((l) => !/^\S+Z (DEBUG|INFO|NOTICE|WARN) /.test(l));
  for (const line of odd.filter(Boolean).slice(0, 10)) console.log(`  stderr: ${line}`);
}
Deno.exit(problems.length ? 1 : 0);

/** Least-squares slope of y over x. */
function slopePerMinute(points: [number, number][]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}
