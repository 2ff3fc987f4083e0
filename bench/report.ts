// BENCHMARKS.md from the bench results: machine, versions, targets with PASS/MISS, one table per
// scenario.
import { dirname, relative } from "node:path";
import {
  type BackendLoad,
  type CheckLatency,
  type FreshnessRaw,
  type LoadStats,
  MIX_PATHS,
  type Results,
  type StuckTlsResult,
} from "./types.ts";
import type { TargetName, TlsTargetName } from "./targets.ts";
import { median } from "./stats.ts";
import {
  type FootprintResult,
  type GcFigures,
  type InstructionCount,
  MEMORY_GROUPS,
  type MemoryView,
  PROFILE_CATEGORIES,
} from "./footprint.ts";
import {
  P95_FACTOR,
  P95_SLACK_MS,
  RSS_GROWTH_RATIO,
  stuckTlsBars,
  stuckTlsCost,
  TLS_CHECK_EVERY_MS,
} from "./stuck_tls.ts";
import {
  CHECK_EVERY_MS,
  freshnessBars,
  freshnessFigures,
  freshnessLimits,
  SLOT_MS,
  TRAILING_SLACK_MS,
  WAITED_MS,
  WARM_MS,
} from "./freshness.ts";

/** Bars of issue 20: hits against the limit (HAProxy answering a constant) and HAProxy's cache. */
export const LIMIT_THROUGHPUT_RATIO = 0.9;
export const LIMIT_P99_FACTOR = 1.5;
/** RSS under load against HAProxy's (its one process), and idle, MiB. */
export const RSS_HAPROXY_FACTOR = 1.25;
export const IDLE_RSS_LIMIT_MIB = 36;
/** The soak's "no growth", read as at most this many MiB. */
export const GROWTH_LIMIT_MIB = 2;
/** "In milliseconds" for the idle-connection check p99, read as under this. */
export const IDLE_P99_LIMIT_MS = 10;

const ms = (x: number, digits = 2) =>
  Number.isFinite(x) ? `${x.toFixed(x >= 100 ? 0 : digits)} ms` : "—";
const int = (x: number) => Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "—";
const mib = (kib: number | undefined) => kib ? `${(kib / 1024).toFixed(1)} MiB` : "—";
const ratio = (x: number) => Number.isFinite(x) ? `${x.toFixed(2)}×` : "—";
/** PASS/MISS; `undefined` when not measured, `null` for a figure reported without a bar. */
const verdict = (ok: boolean | undefined | null) =>
  ok === null ? "no bar" : ok === undefined ? "not measured" : ok ? "PASS" : "**MISS**";
const signedMib = (kib: number) =>
  `${kib >= 0 ? "+" : "−"}${(Math.abs(kib) / 1024).toFixed(1)} MiB`;
/** The display name of a target (the HTTPS scenarios' bare server has a longer one). */
const label = (t: string) =>
  t === "patroniglue" ? "**patroniglue**" : t === "bare" ? "bare node:tls" : t;

function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** RSS growth over the soak (KiB): the peak of its last fifth minus the peak of its second fifth
 * (the first fifth is warm-up). Peaks, not single samples: a GC sawtooth is not growth. */
export function soakGrowth(samples: [number, number, number][]): number {
  const n = samples.length;
  if (n < 5) return NaN;
  const peak = (from: number, to: number) =>
    Math.max(...samples.slice(Math.floor(from), Math.floor(to)).map((s) => s[1]));
  return peak(n * 4 / 5, n) - peak(n / 5, n * 2 / 5);
}

interface Verdict {
  what: string;
  bar: string;
  glue: string;
  peer: string;
  ok: boolean | undefined | null;
}

function verdicts(r: Results): Verdict[] {
  const out: Verdict[] = [];
  const ttlMs = r.settings.ttl * 1000;
  const timeoutMs = r.settings.timeout * 1000;
  out.push(...hitVerdicts(r));
  const g = r.mix.patroniglue;
  const n = r.mix.nginx;
  out.push({
    what: "(2) mix: throughput",
    bar: "≥ nginx",
    glue: g ? `${int(g.rps)} req/s` : "—",
    peer: n ? `nginx ${int(n.rps)} req/s (ratio ${ratio(g!.rps / n.rps)})` : "nginx not run",
    ok: g && n ? g.rps >= n.rps : undefined,
  });
  out.push({
    what: "(2) mix: p99",
    bar: "≤ nginx",
    glue: g ? ms(g.p99) : "—",
    peer: n ? `nginx ${ms(n.p99)} (ratio ${ratio(g!.p99 / n.p99)})` : "nginx not run",
    ok: g && n ? g.p99 <= n.p99 : undefined,
  });
  const b = r.backend.patroniglue;
  if (b) {
    const worst = Math.max(...b.map((x) => x.peakPerTtl));
    const nb = r.backend.nginx;
    out.push({
      what: "(3) backend requests per path per ttl",
      bar: "≤ 1.0 on every path (from one ttl into each run)",
      glue: `peak ${worst}, mean ${Math.max(...b.map((x) => x.meanPerTtl)).toFixed(2)}`,
      peer: nb
        ? `nginx peak ${Math.max(...nb.map((x) => x.peakPerTtl))}, mean ${
          Math.max(...nb.map((x) => x.meanPerTtl)).toFixed(2)
        }`
        : "—",
      ok: worst <= 1 && b.every((x) => !(x.meanPerTtl > 1.0)),
    });
  } else {out.push({
      what: "(3) backend requests per path per ttl",
      bar: "≤ 1.0",
      glue: "—",
      peer: "—",
      ok: undefined,
    });}
  const f = r.frozen.patroniglue;
  const nf = r.frozen.nginx;
  out.push({
    what: "(4) frozen backend",
    bar: `every check 503 within ${timeoutMs + 100} ms`,
    glue: f
      ? `${statusSummary(f.checks)}, slowest ${ms(Math.max(...f.checks.map((c) => c.ms)), 0)}`
      : "—",
    peer: nf
      ? `nginx ${statusSummary(nf.checks)}, slowest ${
        ms(Math.max(...nf.checks.map((c) => c.ms)), 0)
      }`
      : "—",
    ok: f ? f.checks.every((c) => c.status === 503 && c.ms <= timeoutMs + 100) : undefined,
  });
  const s = r.stale.patroniglue;
  const ns = r.stale.nginx;
  out.push({
    what: "(5) staleness",
    bar: `max ≤ ttl + 50 ms = ${ttlMs + 50} ms`,
    glue: s ? `max ${ms(Math.max(...s), 0)}, median ${ms(median(s), 0)}` : "—",
    peer: ns ? `nginx max ${ms(Math.max(...ns), 0)}, median ${ms(median(ns), 0)}` : "—",
    ok: s ? Math.max(...s) <= ttlMs + 50 : undefined,
  });
  const i = r.idle.patroniglue;
  const ni = r.idle.nginx;
  out.push({
    what: `(6) ${r.options.idle} idle connections: check p99`,
    bar: `< ${IDLE_P99_LIMIT_MS} ms, no failed check`,
    glue: i ? `${ms(i.loaded.p99)} (${i.loaded.errors} failed)` : "—",
    peer: ni ? `nginx ${ms(ni.loaded.p99)} (${ni.loaded.errors} failed)` : "—",
    ok: i
      ? i.loaded.p99 < IDLE_P99_LIMIT_MS && i.loaded.errors === 0 && i.opened === r.options.idle
      : undefined,
  });
  out.push(...memoryVerdicts(r));
  const growth = r.soak ? soakGrowth(r.soak.samples) : NaN;
  out.push({
    what: `(7) RSS growth over the ${r.soak?.seconds ?? "—"} s soak`,
    bar: `none (≤ ${GROWTH_LIMIT_MIB} MiB)`,
    glue: !r.soak
      ? "—"
      : Number.isFinite(growth)
      ? `${(growth / 1024).toFixed(1)} MiB`
      : "soak too short",
    peer: "—",
    ok: r.soak && Number.isFinite(growth) ? growth <= GROWTH_LIMIT_MIB * 1024 : undefined,
  });
  out.push(...stuckTlsVerdicts(r), httpsVerdict(r), ...freshnessVerdicts(r));
  return out;
}

/** (1): throughput against the limit and HAProxy's cache, p99 against the limit's. */
function hitVerdicts(r: Results): Verdict[] {
  const g = r.hit.patroniglue;
  const limit = r.hit.limit;
  const cache = r.hit.haproxy;
  const cpu = (s: LoadStats | undefined) =>
    s?.cpuUs !== undefined && Number.isFinite(s.cpuUs) ? `, ${s.cpuUs.toFixed(1)} µs CPU each` : "";
  return [
    {
      what: "(1) cache hits: throughput against the limit",
      bar: `≥ ${LIMIT_THROUGHPUT_RATIO}× the limit (HAProxy \`http-request return\`)`,
      glue: g ? `${int(g.rps)} req/s${cpu(g)}` : "—",
      peer: limit
        ? `limit ${int(limit.rps)} req/s${cpu(limit)} (ratio ${ratio(g!.rps / limit.rps)})`
        : "limit not run",
      ok: g && limit ? g.rps >= LIMIT_THROUGHPUT_RATIO * limit.rps : undefined,
    },
    {
      what: "(1) cache hits: throughput against HAProxy's cache",
      bar: "≥ HAProxy's cache",
      glue: g ? `${int(g.rps)} req/s` : "—",
      peer: cache
        ? `haproxy ${int(cache.rps)} req/s${cpu(cache)} (ratio ${ratio(g!.rps / cache.rps)})`
        : "haproxy not run",
      ok: g && cache ? g.rps >= cache.rps : undefined,
    },
    {
      what: "(1) cache hits: p99",
      bar: `≤ ${LIMIT_P99_FACTOR}× the limit's`,
      glue: g ? ms(g.p99) : "—",
      peer: limit ? `limit ${ms(limit.p99)} (ratio ${ratio(g!.p99 / limit.p99)})` : "limit not run",
      ok: g && limit ? g.p99 <= LIMIT_P99_FACTOR * limit.p99 : undefined,
    },
  ];
}

/** (7): RSS under load against HAProxy's, idle against a fixed bar. */
function memoryVerdicts(r: Results): Verdict[] {
  const load = r.rssLoad.patroniglue;
  const haproxy = r.rssLoad.haproxy;
  const idle = r.rssIdle.patroniglue;
  return [
    {
      what: "(7) RSS under load",
      bar: `≤ ${RSS_HAPROXY_FACTOR}× HAProxy's${
        haproxy ? ` = ${mib(RSS_HAPROXY_FACTOR * haproxy)}` : ""
      }`,
      glue: load ? `${mib(load)} (private ${mib(r.rssLoadAnon.patroniglue)})` : "—",
      peer: haproxy
        ? `haproxy ${mib(haproxy)} (ratio ${ratio(load! / haproxy)}); nginx ${
          mib(r.rssLoad.nginx)
        } (all processes)`
        : "haproxy not run",
      ok: load && haproxy ? load <= RSS_HAPROXY_FACTOR * haproxy : undefined,
    },
    {
      what: "(7) RSS idle",
      bar: `≤ ${IDLE_RSS_LIMIT_MIB} MiB`,
      glue: idle ? `${mib(idle)} (private ${mib(r.rssIdleAnon.patroniglue)})` : "—",
      peer: r.rssIdle.haproxy ? `haproxy ${mib(r.rssIdle.haproxy)}` : "—",
      ok: idle ? idle <= IDLE_RSS_LIMIT_MIB * 1024 : undefined,
    },
  ];
}

function stuckTlsVerdicts(r: Results): Verdict[] {
  const st = r.stuckTls ?? {};
  const g = st.patroniglue;
  const bare = st.bare;
  const n = st.nginx;
  const bars = g ? stuckTlsBars(g, bare) : undefined;
  const cost = (x: StuckTlsResult) => {
    const c = stuckTlsCost(x);
    return `${signedMib(c.growthKiB)} (${c.perClientKiB.toFixed(1)} KiB each)`;
  };
  const count = r.options.stuck ?? g?.count;
  const p95 = (x: StuckTlsResult | undefined) =>
    x?.loaded ? `${ms(x.loaded.p95 ?? NaN)} (without ${ms(x.baseline?.p95 ?? NaN)})` : "—";
  return [
    {
      what: `(9) ${count ?? "—"} stuck TLS clients: RSS growth`,
      bar: `≤ ${RSS_GROWTH_RATIO}× the bare node:tls server's`,
      glue: g ? cost(g) : "—",
      peer: [
        bare
          ? `bare ${cost(bare)}${
            g ? `, ratio ${ratio(stuckTlsCost(g).growthKiB / stuckTlsCost(bare).growthKiB)}` : ""
          }`
          : "bare not run",
        ...(n ? [`nginx ${cost(n)}`] : []),
      ].join("; "),
      ok: bars?.rss,
    },
    {
      what: "(9) HTTPS check p95 with them",
      bar: `≤ ${P95_FACTOR}× without + ${P95_SLACK_MS} ms${
        g?.baseline?.p95 !== undefined ? ` = ${ms(P95_FACTOR * g.baseline.p95 + P95_SLACK_MS)}` : ""
      }, no failed check`,
      glue: g?.loaded ? `${p95(g)}, ${g.loaded.errors} failed` : "—",
      peer: n ? `nginx ${p95(n)}` : "—",
      ok: bars?.p95,
    },
    {
      what: `(9) stuck TLS clients still open ${g?.holdS ?? r.options.stuckHoldS ?? "—"} s later`,
      bar: `all connected, none open (the head deadline)`,
      glue: g ? `${g.stillOpen} of ${g.opened}` : "—",
      peer: [bare && `bare ${bare.stillOpen}`, n && `nginx ${n.stillOpen}`].filter(Boolean).join(
        ", ",
      ) || "—",
      ok: bars?.closed,
    },
  ];
}

function httpsVerdict(r: Results): Verdict {
  const g = r.httpsHit?.patroniglue;
  const n = r.httpsHit?.nginx;
  return {
    what: "(10) HTTPS cache hits: throughput, p99",
    bar: "reported beside nginx's",
    glue: g ? `${int(g.rps)} req/s, p99 ${ms(g.p99)}` : "—",
    peer: g && n
      ? `nginx ${int(n.rps)} req/s, p99 ${ms(n.p99)} (ratios ${ratio(g.rps / n.rps)}, ${
        ratio(g.p99 / n.p99)
      })`
      : "—",
    ok: g ? null : undefined,
  };
}

function freshnessVerdicts(r: Results): Verdict[] {
  const fr = r.freshness ?? {};
  const g = fr.patroniglue;
  const figures = g ? freshnessFigures(g) : undefined;
  const limits = g ? freshnessLimits(g) : undefined;
  const bars = figures && limits ? freshnessBars(figures, limits) : undefined;
  const peers = (show: (f: ReturnType<typeof freshnessFigures>) => string) =>
    r.targets.filter((t) => t !== "patroniglue" && fr[t]).map((t) =>
      `${t} ${show(freshnessFigures(fr[t]!))}`
    ).join("; ") || "—";
  const perRoute = (xs: number[]) => xs.join(" / ");
  const routes = g ? g.routes.join(" / ") : "/primary / /replica";
  return [
    {
      what: "(11) freshness: longest old-role answer after a flip",
      bar: `≤ ttl/2 + Patroni's ${g?.patroniMs ?? "—"} ms${
        limits ? ` = ${ms(limits.oldRoleMs, 0)}` : ""
      }`,
      glue: figures ? ms(figures.longestOldRoleMs, 0) : "—",
      peer: peers((f) => ms(f.longestOldRoleMs, 0)),
      ok: bars?.oldRole,
    },
    {
      what: `(11) checks that waited on Patroni (${routes})`,
      bar: `≤ one per flip per route${limits ? ` = ${limits.waitedPerRoute}` : ""}`,
      glue: figures ? perRoute(figures.waited) : "—",
      peer: peers((f) => perRoute(f.waited)),
      ok: bars?.waited,
    },
    {
      what: `(11) backend GETs per route (${routes})`,
      bar: `≤ window/ttl + flips${limits ? ` = ${limits.getsPerRoute}` : ""}`,
      glue: figures ? perRoute(figures.gets) : "—",
      peer: peers((f) => perRoute(f.gets)),
      ok: bars?.gets,
    },
    {
      what: "(11) backend GETs once nobody checks",
      bar: `0 (from ttl + ${TRAILING_SLACK_MS} ms after the last answer)`,
      glue: figures ? `${figures.idleGets} (${figures.trailingGets} before)` : "—",
      peer: peers((f) => String(f.idleGets)),
      ok: bars?.idle,
    },
  ];
}

function statusSummary(checks: { status: number }[]): string {
  const counts = new Map<string, number>();
  for (const c of checks) {
    const k = c.status ? String(c.status) : "no answer";
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}× ${k}`).join(", ");
}

function loadTable<N extends TargetName | TlsTargetName>(
  order: readonly N[],
  stats: Partial<Record<N, LoadStats>>,
  mix: boolean,
): string {
  const g = (stats as Partial<Record<string, LoadStats>>).patroniglue;
  const rows = order.filter((t) => stats[t]).map((t) => {
    const s = stats[t]!;
    const row = [
      label(t),
      int(s.rps),
      ms(s.p50),
      ms(s.p99),
      s.cpuUs !== undefined && Number.isFinite(s.cpuUs) ? s.cpuUs.toFixed(1) : "—",
      t === "patroniglue" || !g ? "" : ratio(g.rps / s.rps),
      t === "patroniglue" || !g ? "" : ratio(g.p99 / s.p99),
      s.runs.map((x) => int(x.rps)).join(", "),
    ];
    if (mix) row.splice(5, 0, `${(s.non2xx * 100).toFixed(1)} %`);
    if (s.errors) row[1] += ` (${s.errors} socket errors)`;
    return row;
  });
  const head = [
    "target",
    "req/s (median)",
    "p50",
    "p99",
    "CPU µs per request",
    "glue/target req/s",
    "glue/target p99",
    "req/s per run",
  ];
  if (mix) head.splice(5, 0, "non-2xx");
  return table(head, rows);
}

function backendTable(r: Results, loads: Partial<Record<TargetName, BackendLoad[]>>): string {
  const rows = r.targets.filter((t) => loads[t]).map((t) => [
    t === "patroniglue" ? "**patroniglue**" : t,
    ...loads[t]!.map((b) =>
      `${b.meanPerTtl.toFixed(b.meanPerTtl >= 10 ? 0 : 2)} (peak ${b.peakPerTtl}; ${
        int(b.requests)
      } in all${b.firstTtlRequests === undefined ? "" : `; first ttl ≤ ${b.firstTtlRequests}`})`
    ),
  ]);
  return table(
    ["target", ...MIX_PATHS.map((p) => `${p}${p === "/replica" ? " (503)" : ""}`)],
    rows,
  );
}

function latencyCells(l: CheckLatency): string[] {
  return [`${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.max)}`, `${l.errors} of ${l.n + l.errors}`];
}

/** The whole report. */
export function renderMarkdown(r: Results, chartPath: string | undefined, outPath: string): string {
  const o = r.options;
  const m = r.machine;
  const ttlMs = r.settings.ttl * 1000;
  const chart = chartPath
    ? `![Throughput and p99 per target](${relative(dirname(outPath), chartPath)})`
    : "(No chart: scenarios (1) and (2) were not run.)";
  const parts: string[] = [];
  parts.push(`# Benchmarks

Generated by \`deno task bench${o.quick ? " --quick" : ""}\` (bench/run.ts) on ${
    r.date.slice(0, 16).replace("T", " ")
  } UTC, in ${Math.round(r.elapsedS)} s. ${
    o.quick
      ? "**This is a quick run (tiny durations): the figures are not representative.**"
      : "Regenerate with `deno task bench` (about 15 minutes; `--soak 300` for the 5-minute soak)."
  }

patroniglue, nginx \`proxy_cache\`, HAProxy's \`cache\`, the limit (HAProxy's \`http-request return\`
answering a constant: what a C event loop does with no cache to look up; in (1) and (7) only) and
Patroni direct are each started on loopback in front of their own simulated Patroni (tests/support/fake_patroni.ts, ${r.settings.delayMs} ms per
check, counting every backend GET). Settings shared by all: ttl ${r.settings.ttl} s, backend timeout
${r.settings.timeout} s. Load is \`wrk -t${o.threads} -c${o.connections} -d${o.durationS}s --latency\`, ${o.runs} runs per
target, the targets alternating run by run (A B C D, B C D A, …); figures are medians over the runs and
ratios are patroniglue's over the peer's in the same run set. Each target gets 1 s of unrecorded wrk first (JIT and caches warm). (9) and (10) start HTTPS frontends instead (and a bare TLS server), once the others are stopped; (11) slows each simulated Patroni to 150 ms a check; (12) measures where patroniglue's memory and a hit's time go, on processes of its own. CPU µs per request is the target's user + system time (every thread and process) over the run's requests: it does not depend on how the two cores were shared.${
    o.denoFlags.length ? ` patroniglue ran with extra flags \`${o.denoFlags.join(" ")}\`.` : ""
  }

${chart}

## Machine and versions

${
    table(["", ""], [
      ["CPU", `${m.cpus} × ${m.model}`],
      ["memory", `${m.memGiB.toFixed(1)} GiB`],
      ["kernel", m.kernel],
      [
        "load average (1/5/15 min) at start → end",
        `${m.loadStart.map((x) => x.toFixed(2)).join(" ")} → ${
          r.loadEnd.map((x) => x.toFixed(2)).join(" ")
        }`,
      ],
      ["deno", `${r.versions.deno} (V8 ${r.versions.v8})`],
      ["nginx", r.versions.nginx],
      ["haproxy", r.versions.haproxy],
      ["wrk", r.versions.wrk],
    ])
  }

${r.skipped.map((s) => `\nSkipped: ${s.name} (${s.reason}).\n`).join("")}
The machine may be shared with other work while the bench runs; the load averages above say how busy
it was. Ratios from the same run are the figures to compare, not absolute numbers across runs.

## Targets (issues 4, 12, 13 and 20)

${
    table(
      ["target", "bar", "patroniglue", "peers (for reference)", "result"],
      verdicts(r).map((v) => [v.what, v.bar, v.glue, v.peer, verdict(v.ok)]),
    )
  }
`);

  if (Object.keys(r.hit).length) {
    parts.push(`## (1) Cache hits on /primary

The limit answers the same body with patroniglue's headers (no Date) from HAProxy's event loops
(its default: one thread per core), without looking anything up.

${loadTable(r.targets, r.hit, false)}
`);
  }
  if (Object.keys(r.mix).length) {
    parts.push(`## (2) A mix of four health checks

\`${MIX_PATHS.join("`, `")}\` in turn (a wrk Lua script); the simulated member is a primary, so
\`/replica\` answers 503 (about 25 % non-2xx is the expected share).

${loadTable(r.targets, r.mix, true)}
`);
  }
  if (Object.keys(r.backend).length) {
    parts.push(`## (3) Backend requests per path per ttl, under the mix

Mean backend GETs per path per ttl (GETs × ttl ÷ (run end − first GET + ttl), median over runs: GETs at least a ttl apart never exceed 1.0) and, in brackets, the most GETs seen inside any window of a ttl less 10 ms over all runs (ideal 1; the 10 ms absorb the millisecond or two by which GETs sent exactly a ttl apart arrive early or late), then all GETs of the runs. Each run starts cold (the targets take turns), so the mean and peak count from one ttl into each run; the first ttl, with its cold GET (and for patroniglue the one refresh that staggers routes first asked at the same instant), is shown as "first ttl".

${backendTable(r, r.backend)}
`);
  }
  if (Object.keys(r.frozen).length) {
    const timeoutMs = r.settings.timeout * 1000;
    parts.push(`## (4) Frozen backend

The simulated Patroni holds every request (as a SIGSTOPped Patroni would); 20 checks of a path
nobody had cached are sent at once, each on its own connection; a check unanswered after
${ms(Object.values(r.frozen)[0]!.capMs, 0)} is given up. Bar: 503 within ${timeoutMs + 100} ms.

${
      table(
        ["target", "answers", "fastest", "median", "slowest", "backend requests"],
        r.targets.filter((t) => r.frozen[t]).map((t) => {
          const f = r.frozen[t]!;
          const times = f.checks.map((c) => c.ms);
          return [
            t === "patroniglue" ? "**patroniglue**" : t,
            statusSummary(f.checks),
            ms(Math.min(...times), 0),
            ms(median(times), 0),
            ms(Math.max(...times), 0),
            String(f.backendRequests),
          ];
        }),
      )
    }
`);
  }
  if (Object.keys(r.stale).length) {
    parts.push(`## (5) Staleness

One client polls \`/primary\` back to back (keep-alive, ~1 ms apart); at a random moment the
simulated member turns replica; the time until the first 503 is the staleness. ${o.trials} trials per
target. Bar: ttl + 50 ms = ${ttlMs + 50} ms.

${
      table(
        ["target", "median", "max", "trials"],
        r.targets.filter((t) => r.stale[t]).map((t) => {
          const s = r.stale[t]!;
          return [
            t === "patroniglue" ? "**patroniglue**" : t,
            ms(median(s), 0),
            ms(Math.max(...s), 0),
            s.map((x) => Number.isFinite(x) ? x.toFixed(0) : "never").join(", "),
          ];
        }),
      )
    }
`);
  }
  if (Object.keys(r.idle).length) {
    parts.push(`## (6) ${o.idle} idle connections

A separate client (bench/idle_clients.ts) opens ${o.idle} connections, sends half a request on
each and one more header line every few seconds (slowloris). Meanwhile HAProxy-like checks of
\`/primary\` start every 5 ms, each on a new connection, for ${o.idleMeasureS} s; the same is measured
just before, without the idle connections. (Direct is left out: the simulation's server is not
Patroni's.)

${
      table(
        [
          "target",
          "connections opened",
          "still open at end",
          "checks p50 / p99 / max, without",
          "failed",
          "with the idle connections",
          "failed",
          "RSS with them → 1 s after they closed",
        ],
        r.targets.filter((t) => r.idle[t]).map((t) => {
          const i = r.idle[t]!;
          return [
            t === "patroniglue" ? "**patroniglue**" : t,
            `${i.opened}${i.failed ? ` (${i.failed} refused)` : ""}`,
            String(i.stillOpen),
            ...latencyCells(i.baseline),
            ...latencyCells(i.loaded),
            `${mib(i.rss)} → ${mib(i.rssAfter)}`,
          ];
        }),
      )
    }
`);
  }
  if (Object.keys(r.rssIdle).length) {
    const soak = r.soak;
    const soakLines = soak
      ? (() => {
        const kib = soak.samples.map((s) => s[1]);
        const growth = soakGrowth(soak.samples);
        const path = soak.backend.map((b) =>
          `${b.path} ${b.meanPerTtl.toFixed(2)} (peak ${b.peakPerTtl})`
        )
          .join(", ");
        const trace = soak.samples.filter((_, i) =>
          i % Math.max(1, Math.floor(soak.samples.length / 12)) === 0
        )
          .map(([t, k]) => `${t.toFixed(0)} s ${(k / 1024).toFixed(1)}`).join(" · ");
        return `
Soak: ${soak.seconds} s of the mix on patroniglue (${int(soak.wrk.rps)} req/s, p99 ${
          ms(soak.wrk.p99)
        }).
RSS at start ${mib(kib[0])}, max ${mib(Math.max(...kib))}, end ${mib(kib[kib.length - 1])};
growth (peak of the last fifth − peak of the second fifth) ${(growth / 1024).toFixed(1)} MiB.
Backend GETs per ttl during the soak: ${path}.

RSS over the soak (MiB): ${trace}
`;
      })()
      : "\nSoak: not run.\n";
    parts.push(`## (7) Memory

VmRSS from /proc/PID/status (nginx: master, workers and cache helpers added up; HAProxy and the limit: their one process); in brackets its private part (RssAnon), the rest being pages of the executable and libraries, shared and reclaimable (HAProxy's cache is shared memory it fills: 16 MiB here). Idle is after a warm-up request per path; under load is the most seen while wrk ran (1) and (2) (and the soak, for patroniglue). (12) breaks patroniglue's down.

${
      table(
        ["target", "RSS idle (private)", "RSS under load, max (private)"],
        r.targets.filter((t) => t !== "direct").map((t) => [
          t === "patroniglue" ? "**patroniglue**" : t,
          `${mib(r.rssIdle[t])} (${mib(r.rssIdleAnon[t])})`,
          `${mib(r.rssLoad[t])} (${mib(r.rssLoadAnon[t])})`,
        ]),
      )
    }
${soakLines}`);
  }
  if (r.cold.length) {
    parts.push(`## (8) Cold start

From exec to the first 200 on \`/primary\` (which includes one backend GET), polling every 2 ms. For
\`deno run\` the module cache is warm (dependencies already downloaded), as on a deployed host.

${
      table(
        ["what", "median", "runs"],
        r.cold.map((c) =>
          c.skipped ? [c.name, "skipped", c.skipped] : [
            c.name,
            ms(median(c.samples), 0),
            c.samples.map((x) => x.toFixed(0)).join(", ") + " ms",
          ]
        ),
      )
    }
`);
  }
  parts.push(...tlsSections(r), ...freshnessSection(r), ...footprintSection(r));
  parts.push(`## How the peers are set up

- **nginx** (${r.versions.nginx.replace(/^nginx version: /, "")}): \`worker_processes auto\`,
  \`proxy_cache_valid 200 503 ${r.settings.ttl}s\`, \`proxy_cache_lock on\`, \`proxy_cache_use_stale off\`,
  \`proxy_cache_key $request_uri\`, keep-alive upstream, \`proxy_read_timeout ${r.settings.timeout}s\`; a
  temporary prefix, so nothing under /etc is used. nginx's lock covers only a missing entry: when an
  entry expires, every request that arrives before the new answer goes to the backend (collapsing
  those needs \`proxy_cache_use_stale updating\`, which serves stale answers), and its expiry is counted
  in whole seconds.
- **HAProxy** (${
    r.versions.haproxy.replace(/ - https.*/, "")
  }): \`cache\` with \`max-age ${r.settings.ttl}\`,
  \`http-request cache-use\` / \`http-response cache-store\`. It stores only 200s, never collapses misses,
  and stores nothing without an explicit age or validator, which Patroni does not send, so the
  backend section adds \`Cache-Control: max-age=${r.settings.ttl}\` to answers.
- **limit** (the same HAProxy): one frontend whose \`http-request return\` answers every request with
  \`/primary\`'s body, \`content-type: application/json\`, \`x-cache: HIT\` and \`age: 0\`; no cache, no
  backend.
- **direct**: wrk against the simulated Patroni itself (a Deno server; real Patroni answers from a
  small thread pool and is slower).
- **HTTPS** ((9), (10)): patroniglue with \`frontend.certfile\`/\`keyfile\` (tests/fixtures/server.pem, signed
  by the test CA, RSA 2048); nginx with the same configuration as above but \`listen ... ssl\`,
  \`ssl_protocols TLSv1.2 TLSv1.3\` and that certificate (its \`client_header_timeout\`, the default
  60 s, also bounds a handshake; \`keepalive_requests\` is the default 1000); **bare node:tls** is
  bench/bare_tls_server.ts: a \`node:tls\` server under Deno that accepts connections and does nothing
  with them, run with the same \`deno run\` and V8 flags as patroniglue — what holding a connection
  costs the transport itself.

The configurations are in bench/targets.ts.
`);
  return reflow(parts.join("\n"));
}

/** Joins the lines of each prose paragraph and list item (the templates wrap them for the code). */
function reflow(md: string): string {
  return md.split("\n\n").map((block) => {
    const lines = block.split("\n");
    if (lines.some((l) => l.startsWith("|")) || /^[#!]/.test(lines[0])) return block;
    const out: string[] = [];
    for (const line of lines) {
      if (out.length > 0 && !line.startsWith("- ")) {
        const prev = out[out.length - 1];
        out[out.length - 1] = prev === "" ? line.trim() : `${prev} ${line.trim()}`;
      } else out.push(line);
    }
    return out.join("\n");
  }).join("\n\n");
}

/** Sections (9) and (10): stuck TLS clients, HTTPS cache hits. */
function tlsSections(r: Results): string[] {
  const out: string[] = [];
  const st = r.stuckTls ?? {};
  const stuckOrder = (["patroniglue", "nginx", "bare"] as const).filter((t) => st[t]);
  if (stuckOrder.length) {
    const any = st[stuckOrder[0]]!;
    const latency = (l: CheckLatency | undefined) =>
      l
        ? [`${ms(l.p50)} / ${ms(l.p95 ?? NaN)} / ${ms(l.p99)}`, `${l.errors} of ${l.n + l.errors}`]
        : [
          "—",
          "—",
        ];
    out.push(`## (9) ${any.count} stuck TLS clients

A separate client (bench/stuck_tls_clients.ts) opens ${any.count} connections to each HTTPS target,
a third of each kind: connected and silent; a ClientHello cut short (a record header announcing 512
bytes, then 43 of them); a finished handshake and half a request head. None sends more. HTTPS checks
of \`/primary\` start every ${TLS_CHECK_EVERY_MS} ms for ${r.options.idleMeasureS} s, each on a new
connection with a full handshake and TCP_NODELAY (as HAProxy's \`check-ssl\`), before the clients
and again while they are held (the bare server, which answers nothing, gets the same rate of bare
handshakes first, unrecorded: the same warm-up). RSS is the most VmRSS of the target's processes over
1 s (sampled every 100 ms) just before the clients connect and over 1 s once they all have; growth
is the difference, and per client it is divided by the clients still open at that moment. The
clients still open ${any.holdS} s after they all opened are counted by kind. Bars (patroniglue): RSS
growth ≤ ${RSS_GROWTH_RATIO}× the bare server's; check p95 with the clients ≤ ${P95_FACTOR}× without
+ ${P95_SLACK_MS} ms; none still open.

${
      table(
        [
          "target",
          "connected (time to open all)",
          "RSS before → with them",
          "growth (per client)",
          "held then / after the checks",
          "checks p50 / p95 / p99, without",
          "failed",
          "with the clients",
          "failed",
          `still open ${any.holdS} s later (silent / partial hello / half request)`,
        ],
        stuckOrder.map((t) => {
          const x = st[t]!;
          const c = stuckTlsCost(x);
          return [
            label(t),
            `${x.opened} of ${x.count} (${int(x.openMs)} ms)`,
            `${mib(x.rssBefore)} → ${mib(x.rssWith)}`,
            `${signedMib(c.growthKiB)} (${c.perClientKiB.toFixed(1)} KiB)`,
            `${x.heldAtRss} / ${x.heldAfterChecks}`,
            ...latency(x.baseline),
            ...latency(x.loaded),
            `${x.stillOpen} (${x.stillOpenByKind.join(" / ")})`,
          ];
        }),
      )
    }
`);
  }
  const hits = r.httpsHit ?? {};
  if (Object.keys(hits).length) {
    out.push(`## (10) HTTPS cache hits on /primary

As (1), over HTTPS: \`wrk -t${r.options.threads} -c${r.options.connections} -d${r.options.durationS}s\`
against the HTTPS frontends, ${r.options.runs} runs each, alternating, after 1 s of unrecorded warm-up
(wrk verifies no certificate; its connections are kept alive, so handshakes are few). No bar: the
figures are reported beside nginx's.

${loadTable(["patroniglue", "nginx"] as const, hits, false)}
`);
  }
  return out;
}

/** Section (11): freshness after role flips. */
function freshnessSection(r: Results): string[] {
  const fr = r.freshness ?? {};
  const order = r.targets.filter((t) => fr[t]);
  if (!order.length) return [];
  const any: FreshnessRaw = fr[order[0]]!;
  const limits = freshnessLimits(any);
  const ttlMs = any.ttlMs;
  const flips = any.flips.length;
  return [`## (11) Freshness after role flips

Each target's simulated Patroni answers in ${any.patroniMs} ms. \`${
    any.routes.join("` and `")
  }\` are
each checked every ${CHECK_EVERY_MS} ms, each check on a new connection (as HAProxy checks), the
second route ${CHECK_EVERY_MS / 2} ms after the first; the checks start ${WARM_MS / 1000} s before
the window (not counted) and stop at its end. In the ${any.spanMs / 1000} s window the member's role
flips ${flips} times (primary, replica, primary, …), once per ${SLOT_MS / 1000} s slot, at
(slot − ttl)/2 + frac(k·φ)·ttl into slot k (golden-ratio phases: the flips never line up with the
ttl), the same moments for every target. Then nobody checks for ${any.quietMs / 1000} s.

- **old-role answer**: a check answered after a flip (the latest before its answer) with the status
  its route had before that flip; its age is from the flip to the **answer** (not to the request's
  start). The longest, and per flip.
- **waited**: a check sent in the window that took ≥ ${WAITED_MS} ms (Patroni takes
  ${any.patroniMs}).
- **backend GETs**: arrivals at the simulated Patroni in the window, per route.
- **once nobody checks**: GETs from ttl + ${TRAILING_SLACK_MS} ms after the last answer to the end
  of the quiet time (a route checked during its last ttl may be refreshed once more before that;
  those are shown in brackets).

Bars (patroniglue): longest old-role answer ≤ ttl/2 + ${any.patroniMs} ms = ${
    ms(limits.oldRoleMs, 0)
  }; waited ≤ one per flip per route = ${limits.waitedPerRoute}; backend GETs per route ≤
window/ttl + flips = ${limits.getsPerRoute}; none once nobody checks. ttl ${ttlMs / 1000} s.

${
    table(
      [
        "target",
        "longest old-role answer",
        "old-role answers",
        "per flip (ms)",
        `waited (${any.routes.join(" / ")})`,
        `backend GETs (${any.routes.join(" / ")})`,
        "GETs once nobody checks (before)",
        "failed checks",
      ],
      order.map((t) => {
        const f = freshnessFigures(fr[t]!);
        return [
          label(t),
          ms(f.longestOldRoleMs, 0),
          String(f.oldRoleCount),
          f.oldRoleMs.map((x) => x.toFixed(0)).join(", "),
          `${f.waited.join(" / ")} of ${f.checks.join(" / ")}`,
          f.gets.join(" / "),
          `${f.idleGets} (${f.trailingGets})`,
          f.failed.join(" / "),
        ];
      }),
    )
  }
`];
}

/** Section (12): where the memory and a hit's time go, beside the recorded baseline. */
function footprintSection(r: Results): string[] {
  const now = r.footprint;
  if (!now) return [];
  const base = r.footprintBaseline;
  const before = base?.footprint;
  const percent = (x: number | undefined) => x === undefined ? "—" : `${(x * 100).toFixed(1)} %`;
  const memTable = (f: FootprintResult, title: string) => {
    const cols = f.processes.flatMap((p) =>
      p.load ? [[p, "idle"], [p, "load"]] as const : [[p, "idle"]] as const
    );
    const view = (p: FootprintResult["processes"][number], which: "idle" | "load"): MemoryView =>
      which === "idle" ? p.idle : p.load!;
    const rows: string[][] = MEMORY_GROUPS.map((g) => [
      g,
      ...cols.map(([p, w]) => mib(view(p, w).groups[g])),
    ]);
    rows.push(
      ["**VmRSS (all)**", ...cols.map(([p, w]) => `**${mib(view(p, w).rollup.rss)}**`)],
      [
        "private (no other process maps it)",
        ...cols.map(([p, w]) => mib(view(p, w).rollup.private)),
      ],
      [
        "shared (with other deno processes here)",
        ...cols.map(([p, w]) => mib(view(p, w).rollup.shared)),
      ],
      ["anonymous", ...cols.map(([p, w]) => mib(view(p, w).rollup.anonymous))],
      ["Pss", ...cols.map(([p, w]) => mib(view(p, w).rollup.pss))],
      ["threads", ...cols.map(([p, w]) => w === "idle" ? String(p.threads) : "")],
      ["req/s under wrk", ...cols.map(([p, w]) => w === "load" && p.rps ? int(p.rps) : "")],
    );
    return `${title}\n\n${
      table([
        "resident memory (MiB)",
        ...cols.map(([p, w]) => `${p.name}, ${w === "idle" ? "idle" : "most under load"}`),
      ], rows)
    }`;
  };
  const gcRows = (g: GcFigures | undefined) => {
    if (!g) return ["—", "—", "—", "—", "—", "—", "—", "—"];
    const per100k = (n: number) => (n * 100_000 / g.hits).toFixed(1);
    return [
      int(g.hits),
      per100k(g.scavenges),
      per100k(g.markCompacts),
      `${int(g.allocated / g.hits)} B`,
      `${(g.promoted / g.hits).toFixed(1)} B`,
      `${(g.pauseMs * 100_000 / g.hits).toFixed(0)} ms`,
      `${mib(g.maxHeap / 1024)} (old generation limit ${mib(g.oldGenLimit / 1024)})`,
      mib(g.liveAfterGc / 1024),
    ];
  };
  const gcNames = [
    "hits measured",
    "scavenges per 100k hits",
    "mark-compacts per 100k hits",
    "allocated per hit (young generation)",
    "promoted per hit",
    "GC pauses per 100k hits",
    "most heap committed",
    "live objects after the last GC",
  ];
  const gcNow = gcRows(now.gc);
  const gcBefore = gcRows(before?.gc);
  const phaseRows = now.phases.map((p, i) => {
    const prev = i === 0 ? undefined : now.phases[i - 1];
    const delta = (k: "heap" | "code" | "readOnlyData" | "anonymous") =>
      prev
        ? ` (${p[k] - prev[k] >= 0 ? "+" : "−"}${Math.abs(p[k] - prev[k]).toLocaleString("en-US")})`
        : "";
    const old = before?.phases.find((b) => b.phase === p.phase);
    return [
      p.phase,
      `${p.heap.toLocaleString("en-US")}${delta("heap")}`,
      `${p.code.toLocaleString("en-US")}${delta("code")}`,
      `${p.readOnlyData.toLocaleString("en-US")}${delta("readOnlyData")}`,
      `${p.anonymous.toLocaleString("en-US")}${delta("anonymous")}`,
      old
        ? `${old.heap.toLocaleString("en-US")} / ${old.code.toLocaleString("en-US")} / ${
          old.anonymous.toLocaleString("en-US")
        }`
        : "—",
    ];
  });
  const cpuRows = now.cpuPerHit.map((c) => {
    const old = before?.cpuPerHit.find((b) => b.name === c.name);
    return [
      c.name,
      `${c.user.toFixed(2)} + ${c.system.toFixed(2)} = ${(c.user + c.system).toFixed(2)}`,
      old
        ? `${old.user.toFixed(2)} + ${old.system.toFixed(2)} = ${
          (old.user + old.system).toFixed(2)
        }`
        : "—",
    ];
  });
  const instrRow = (i: InstructionCount | undefined) =>
    i ? `${int(i.perHit)} (${int(i.executable)} / ${int(i.generated)} / ${int(i.other)})` : "—";
  const instrRows = now.instructions.map((i) => [
    i.name,
    instrRow(i),
    instrRow(before?.instructions.find((b) => b.name === i.name)),
  ]);
  const profileRows = PROFILE_CATEGORIES.map((c) => [
    c,
    percent(now.profile?.categories.find((x) => x.what === c)?.share),
    percent(before?.profile?.categories.find((x) => x.what === c)?.share),
  ]);
  const beforeLabel = base ? `before (${base.label})` : "before (no baseline recorded)";
  return [`## (12) Where the memory and a hit's time go

Measured by \`--only 12\` (bench/footprint.ts) on processes of its own, each after a warm-up request per route and 1 s of unrecorded wrk; under load is \`wrk -t${r.options.threads} -c${r.options.connections} -d${r.options.durationS}s\` on \`/primary\`. patroniglue runs as \`deno task start\` runs it (V8 flags \`${now.v8Flags}\`). "Before" is the same measurement recorded by this bench on ${
    base ? base.label : "an earlier commit"
  } (bench/footprint-baseline.json), when its V8 flags were \`${
    before?.v8Flags ?? "—"
  }\`. The machine is shared: the memory figures and instruction counts are robust, CPU times and req/s less so.

Resident memory by what backs it (/proc/PID/smaps): the deno executable's pages (code, read-only data, its writable data), V8's heap (its 256 KiB pages), malloc's heap and other anonymous mappings (thread stacks, buffers), libraries. The executable's pages are file-backed: they count in VmRSS once touched, and are shared with any other deno process (hence "shared"). The runtime alone is a deno process that loads nothing and waits on stdin (bench/idle_deno.ts); the bare loop is a \`Deno.listen\` loop that answers every read with the bytes of a patroniglue hit (bench/bare_listen.ts).

${memTable(now, "**Now:**")}

${before ? memTable(before, `**${beforeLabel}:**`) : ""}

V8's heap under the same load (\`--trace-gc-nvp\` added to the flags, a measured stretch after the warm-up):

${table(["", "now", beforeLabel], gcNames.map((n, i) => [n, gcNow[i], gcBefore[i]]))}

What each phase of a start adds, in one process (bench/footprint_phases.ts, with \`--expose-gc\`): V8's live heap after a full GC, the executable's resident code and read-only data, and all anonymous memory, KiB, cumulative (the change in brackets). Modules are imported one by one, each after those it imports; "after the load" follows ${r.options.durationS} s of wrk.

${
    table([
      "phase",
      "live heap",
      "executable code",
      "executable read-only data",
      "anonymous",
      `${beforeLabel}: heap / code / anonymous`,
    ], phaseRows)
  }

Where a hit's time goes. CPU per hit is the process's user + system time over wrk's requests (µs; all threads). The profile is \`--cpu-prof\` over the last ${
    now.profile?.seconds ?? "—"
  } s (${
    int(now.profile?.samples ?? 0)
  } samples), self time by category; "the write syscall" is mostly the kernel's loopback TCP send. Instructions are user-space instructions per hit under callgrind (${
    int(now.instructions[0]?.hits ?? 0)
  } keep-alive hits on one connection, one at a time as health checks come, after as many unrecorded, bench/count_client.ts; the bare loop's count repeats to the instruction, patroniglue's to a few per cent in most runs, and an occasional run counts up to a fifth more, when a full GC or a compilation falls in the stretch): in the deno executable (runtime, V8's builtins, interpreter and GC) / in code V8 generated at run time / elsewhere (libc)${
    now.instructionsSkipped ? ` — skipped: ${now.instructionsSkipped}` : ""
  }.

${table(["CPU per hit, user + system (µs)", "now", beforeLabel], cpuRows)}

${table(["share of the samples under load", "now", beforeLabel], profileRows)}

${
    now.profile?.functions.length
      ? `patroniglue's own functions with the most self time: ${
        now.profile.functions.map((f) => `\`${f.what}\` ${percent(f.share)}`).join(", ")
      }.`
      : ""
  }

${
    table(
      ["user-space instructions per hit (executable / generated / other)", "now", beforeLabel],
      instrRows,
    )
  }
`];
}
