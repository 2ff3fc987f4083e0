// Shared shapes of the bench: options and results (run.ts measures, report.ts and chart.ts render).
import type { BenchSettings, TargetName, TlsTargetName } from "./targets.ts";
import type { WrkResult } from "./wrk.ts";
import type { FootprintBaseline, FootprintResult } from "./footprint.ts";

/** The health checks of scenario (2); /replica answers 503 (the simulated member is primary). */
export const MIX_PATHS = ["/primary", "/leader", "/read-only", "/replica"] as const;
/** Run options, from the command line. */
export interface Options {
  quick: boolean;
  runs: number;
  durationS: number;
  soakS: number;
  trials: number;
  idle: number;
  /** Seconds of checks in (6) and (9), without and with the held connections. */
  idleMeasureS: number;
  /** Stuck TLS clients in (9), a third of each kind. */
  stuck: number;
  /** Seconds after the stuck clients opened at which (9) counts those still open. */
  stuckHoldS: number;
  /** Role flips in (11), one per 3-s slot. */
  flips: number;
  /** Seconds without checks at the end of (11). */
  quietS: number;
  threads: number;
  connections: number;
  only: Set<number>;
  targets: TargetName[];
  out: string;
  chart: string;
  /** Extra `deno run` flags for patroniglue. */
  denoFlags: string[];
  /** Save the results here as JSON. */
  json?: string;
  /** Only re-render the report from these saved results. */
  render?: string;
  /** Hits counted under callgrind in (12) (absent in results saved before it existed). */
  callgrindHits?: number;
  /** The recorded (12) the report shows as "before". */
  baseline?: string;
}

/** One wrk run against a target, with the CPU the target spent on it. */
export interface LoadRun extends WrkResult {
  /** CPU time (user + system, every thread and process of the target) per request, µs; absent
   * where the target has no process of its own (direct) and in results saved before it existed. */
  cpuUs?: number;
}

/** wrk medians over the runs of one target. */
export interface LoadStats {
  runs: LoadRun[];
  rps: number;
  p50: number;
  p99: number;
  /** Median CPU µs per request over the runs (NaN when not measured). */
  cpuUs?: number;
  /** Share of answers that were not 2xx (the mix has one 503 path in four). */
  non2xx: number;
  errors: number;
}

/** Scenario (3): backend GETs per path. */
export interface BackendLoad {
  path: string;
  requests: number;
  /** From one ttl into each run: GETs × ttl / (run end − first GET + ttl), median over runs; 1.0 is one GET per ttl. */
  meanPerTtl: number;
  /** From one ttl into each run: most GETs inside any window of a ttl less 10 ms (max over runs). */
  peakPerTtl: number;
  /** GETs in each run's first ttl, the most over runs (absent in results saved before it was measured). */
  firstTtlRequests?: number;
}

/** Scenario (4): concurrent checks while the backend is frozen. */
export interface FrozenResult {
  checks: { ms: number; status: number }[];
  backendRequests: number;
  capMs: number;
}

/** Latency of HAProxy-like checks (a new connection each). */
export interface CheckLatency {
  n: number;
  p50: number;
  /** Absent in results saved before (9) existed. */
  p95?: number;
  p99: number;
  max: number;
  errors: number;
}

/** Scenario (6). */
export interface IdleResult {
  opened: number;
  failed: number;
  stillOpen: number;
  baseline: CheckLatency;
  loaded: CheckLatency;
  /** Max RSS (KiB) while the connections were held, and 1 s after they closed. */
  rss: number;
  rssAfter: number;
}

/** Scenario (9): one target holding stuck TLS clients. RSS in KiB (all the target's processes). */
export interface StuckTlsResult {
  /** Clients attempted, connected, and the ms it took to open them all. */
  count: number;
  opened: number;
  openMs: number;
  /** The most RSS over 1 s before the clients connected, and over 1 s once all were open. */
  rssBefore: number;
  rssWith: number;
  /** Still open when `rssWith` was taken, and at the end of the checks with them. */
  heldAtRss: number;
  heldAfterChecks: number;
  /** Still open `holdS` after they all opened: all, then by kind (silent, partial ClientHello,
   * half a request). */
  holdS: number;
  stillOpen: number;
  stillOpenByKind: number[];
  /** HTTPS checks of /primary (a fresh connection each) without and with the clients; absent for
   * the bare server, which answers nothing. */
  baseline?: CheckLatency;
  loaded?: CheckLatency;
  /** Milliseconds between two checks. */
  checkEveryMs: number;
}

/** Scenario (11), as measured: times in ms from the start of the flip window. */
export interface FreshnessRaw {
  ttlMs: number;
  /** How long the simulated Patroni took per request. */
  patroniMs: number;
  /** Length of the window with flips and checks, and of the quiet time after the last answer. */
  spanMs: number;
  quietMs: number;
  /** The routes checked; `checks` and `gets` name them by index. */
  routes: string[];
  /** When each flip happened; the role alternates, starting from `startRole`. */
  flips: number[];
  startRole: "primary" | "replica";
  /** [sent, answered, route index, status (0: failed)], warm-up checks included (negative times). */
  checks: [number, number, number, number][];
  /** Backend GETs: [arrival, route index]. */
  gets: [number, number][];
  /** When the last check was answered. */
  lastAnsweredAt: number;
}

/** Scenario (7) soak: patroniglue's RSS over a long mix load. */
export interface SoakResult {
  seconds: number;
  /** [seconds since start, VmRSS KiB, RssAnon KiB]. */
  samples: [number, number, number][];
  wrk: WrkResult;
  backend: BackendLoad[];
}

/** Scenario (8). */
export interface ColdResult {
  name: string;
  samples: number[];
  skipped?: string;
}

/** Everything measured, for the report. */
export interface Results {
  options: Options;
  settings: Omit<BenchSettings, "root" | "tmp">;
  date: string;
  machine: { cpus: number; model: string; memGiB: number; kernel: string; loadStart: number[] };
  loadEnd: number[];
  versions: Record<string, string>;
  elapsedS: number;
  targets: TargetName[];
  skipped: { name: string; reason: string }[];
  hit: Partial<Record<TargetName, LoadStats>>;
  mix: Partial<Record<TargetName, LoadStats>>;
  backend: Partial<Record<TargetName, BackendLoad[]>>;
  frozen: Partial<Record<TargetName, FrozenResult>>;
  stale: Partial<Record<TargetName, number[]>>;
  idle: Partial<Record<TargetName, IdleResult>>;
  /** VmRSS KiB idle and under load (max), and their private (RssAnon) parts. */
  rssIdle: Partial<Record<TargetName, number>>;
  rssIdleAnon: Partial<Record<TargetName, number>>;
  rssLoad: Partial<Record<TargetName, number>>;
  rssLoadAnon: Partial<Record<TargetName, number>>;
  soak?: SoakResult;
  cold: ColdResult[];
  /** (9), (10) and (11); absent in results saved before they existed. */
  stuckTls?: Partial<Record<TlsTargetName, StuckTlsResult>>;
  httpsHit?: Partial<Record<TlsTargetName, LoadStats>>;
  freshness?: Partial<Record<TargetName, FreshnessRaw>>;
  /** (12), and the recorded measurement it is shown beside; absent in older results. */
  footprint?: FootprintResult;
  footprintBaseline?: FootprintBaseline;
}

/** The measurements of a run before any scenario has run: every record empty. */
export function noMeasurements(): Pick<
  Results,
  | "hit"
  | "mix"
  | "backend"
  | "frozen"
  | "stale"
  | "idle"
  | "rssIdle"
  | "rssIdleAnon"
  | "rssLoad"
  | "rssLoadAnon"
  | "cold"
  | "stuckTls"
  | "httpsHit"
  | "freshness"
> {
  return {
    hit: {},
    mix: {},
    backend: {},
    frozen: {},
    stale: {},
    idle: {},
    rssIdle: {},
    rssIdleAnon: {},
    rssLoad: {},
    rssLoadAnon: {},
    cold: [],
    stuckTls: {},
    httpsHit: {},
    freshness: {},
  };
}
