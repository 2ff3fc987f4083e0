// BENCHMARKS.md from the bench results: machine, versions, targets with PASS/MISS, one table per
// scenario.
import { dirname, relative } from "node:path";
import {
  type BackendLoad,
  type CheckLatency,
  type LoadStats,
  MIX_PATHS,
  type Results,
} from "./types.ts";
import type { TargetName } from "./targets.ts";
import { median } from "./stats.ts";

/** Bars the issue sets; the soak's "no growth" is read as at most this many MiB. */
export const RSS_LIMIT_MIB = 64;
export const GROWTH_LIMIT_MIB = 2;
/** "In milliseconds" for the idle-connection check p99, read as under this. */
export const IDLE_P99_LIMIT_MS = 10;

const ms = (x: number, digits = 2) =>
  Number.isFinite(x) ? `${x.toFixed(x >= 100 ? 0 : digits)} ms` : "—";
const int = (x: number) => Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "—";
const mib = (kib: number | undefined) => kib ? `${(kib / 1024).toFixed(1)} MiB` : "—";
const ratio = (x: number) => Number.isFinite(x) ? `${x.toFixed(2)}×` : "—";
const verdict = (ok: boolean | undefined) =>
  ok === undefined ? "not measured" : ok ? "PASS" : "**MISS**";

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
  ok: boolean | undefined;
}

function verdicts(r: Results): Verdict[] {
  const out: Verdict[] = [];
  const ttlMs = r.settings.ttl * 1000;
  const timeoutMs = r.settings.timeout * 1000;
  for (const [label, stats] of [["(1) cache hits", r.hit], ["(2) mix", r.mix]] as const) {
    const g = stats.patroniglue;
    const n = stats.nginx;
    out.push({
      what: `${label}: throughput`,
      bar: "≥ nginx",
      glue: g ? `${int(g.rps)} req/s` : "—",
      peer: n ? `${int(n.rps)} req/s (ratio ${ratio(g!.rps / n.rps)})` : "nginx not run",
      ok: g && n ? g.rps >= n.rps : undefined,
    });
    out.push({
      what: `${label}: p99`,
      bar: "≤ nginx",
      glue: g ? ms(g.p99) : "—",
      peer: n ? `${ms(n.p99)} (ratio ${ratio(g!.p99 / n.p99)})` : "nginx not run",
      ok: g && n ? g.p99 <= n.p99 : undefined,
    });
  }
  const b = r.backend.patroniglue;
  if (b) {
    const worst = Math.max(...b.map((x) => x.peakPerTtl));
    const nb = r.backend.nginx;
    out.push({
      what: "(3) backend requests per path per ttl",
      bar: "≤ 1.0 on every path",
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
  const load = r.rssLoad.patroniglue;
  out.push({
    what: "(7) RSS under load",
    bar: `≤ ${RSS_LIMIT_MIB} MiB`,
    glue: mib(load),
    peer: r.rssLoad.nginx ? `nginx ${mib(r.rssLoad.nginx)} (all processes)` : "—",
    ok: load ? load <= RSS_LIMIT_MIB * 1024 : undefined,
  });
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
  return out;
}

function statusSummary(checks: { status: number }[]): string {
  const counts = new Map<string, number>();
  for (const c of checks) {
    const k = c.status ? String(c.status) : "no answer";
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].map(([k, n]) => `${n}× ${k}`).join(", ");
}

function loadTable(
  r: Results,
  stats: Partial<Record<TargetName, LoadStats>>,
  mix: boolean,
): string {
  const g = stats.patroniglue;
  const rows = r.targets.filter((t) => stats[t]).map((t) => {
    const s = stats[t]!;
    const row = [
      t === "patroniglue" ? "**patroniglue**" : t,
      int(s.rps),
      ms(s.p50),
      ms(s.p99),
      t === "patroniglue" || !g ? "" : ratio(g.rps / s.rps),
      t === "patroniglue" || !g ? "" : ratio(g.p99 / s.p99),
      s.runs.map((x) => int(x.rps)).join(", "),
    ];
    if (mix) row.splice(4, 0, `${(s.non2xx * 100).toFixed(1)} %`);
    if (s.errors) row[1] += ` (${s.errors} socket errors)`;
    return row;
  });
  const head = [
    "target",
    "req/s (median)",
    "p50",
    "p99",
    "glue/target req/s",
    "glue/target p99",
    "req/s per run",
  ];
  if (mix) head.splice(4, 0, "non-2xx");
  return table(head, rows);
}

function backendTable(r: Results, loads: Partial<Record<TargetName, BackendLoad[]>>): string {
  const rows = r.targets.filter((t) => loads[t]).map((t) => [
    t === "patroniglue" ? "**patroniglue**" : t,
    ...loads[t]!.map((b) =>
      `${b.meanPerTtl.toFixed(b.meanPerTtl >= 10 ? 0 : 2)} (peak ${b.peakPerTtl}; ${
        int(b.requests)
      } in all)`
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
      : "Regenerate with `deno task bench` (about 6 minutes; `--soak 300` for the 5-minute soak)."
  }

patroniglue, nginx \`proxy_cache\`, HAProxy's \`cache\` and Patroni direct are each started on
loopback in front of their own simulated Patroni (tests/support/fake_patroni.ts, ${r.settings.delayMs} ms per
check, counting every backend GET). Settings shared by all: ttl ${r.settings.ttl} s, backend timeout
${r.settings.timeout} s. Load is \`wrk -t${o.threads} -c${o.connections} -d${o.durationS}s --latency\`, ${o.runs} runs per
target, the targets alternating run by run (A B C D, B C D A, …); figures are medians over the runs and
ratios are patroniglue's over the peer's in the same run set. Each target gets 1 s of unrecorded wrk first (JIT and caches warm).${
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

## Targets (issue 4)

${
    table(
      ["target", "bar", "patroniglue", "nginx (for reference)", "result"],
      verdicts(r).map((v) => [v.what, v.bar, v.glue, v.peer, verdict(v.ok)]),
    )
  }
`);

  if (Object.keys(r.hit).length) {
    parts.push(`## (1) Cache hits on /primary

${loadTable(r, r.hit, false)}
`);
  }
  if (Object.keys(r.mix).length) {
    parts.push(`## (2) A mix of four health checks

\`${MIX_PATHS.join("`, `")}\` in turn (a wrk Lua script); the simulated member is a primary, so
\`/replica\` answers 503 (about 25 % non-2xx is the expected share).

${loadTable(r, r.mix, true)}
`);
  }
  if (Object.keys(r.backend).length) {
    parts.push(`## (3) Backend requests per path per ttl, under the mix

Mean backend GETs per path per ttl (GETs × ttl ÷ (run end − first GET + ttl), median over runs: GETs at least a ttl apart never exceed 1.0) and, in brackets, the most GETs seen inside any ttl-long window over all runs (ideal 1), then all GETs of the runs.

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

VmRSS from /proc/PID/status (nginx: master, workers and cache helpers added up; HAProxy: its one process); in brackets its private part (RssAnon), the rest being pages of the executable and libraries, shared and reclaimable. Idle is after a warm-up request per path; under load is the most seen while wrk ran (1) and (2) (and the soak, for patroniglue).

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
- **direct**: wrk against the simulated Patroni itself (a Deno server; real Patroni answers from a
  small thread pool and is slower).

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
