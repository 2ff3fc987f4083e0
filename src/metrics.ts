/**
 * Metrics: counters, gauges and a histogram rendered in Prometheus text exposition format.
 * @module
 */
import type { BackendOutcome, MemberFacts } from "./check/backend.ts";
import type { AnswerSource } from "./check/health.ts";

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

/** One labelled series of a counter family. */
interface CounterCell {
  labels: Labels;
  value: number;
}

/** A counter family keyed by its label values. */
class CounterFamily {
  readonly values = new Map<string, CounterCell>();
  /** The cell for `labels`, created at 0; the label text is rendered at scrape time. */
  cell(labels: Labels): CounterCell {
    let key = "";
    for (const k in labels) key += labels[k] + "\u0000";
    let cell = this.values.get(key);
    if (!cell) this.values.set(key, cell = { labels, value: 0 });
    return cell;
  }
}

/** Cells of `patroniglue_requests_total` by route, method, status, cache: a hit allocates nothing. */
type RequestCells = Map<string, Map<string, Map<number, Map<string, CounterCell>>>>;

function child<K, V extends Map<unknown, unknown>>(map: Map<K, V>, key: K): V {
  let value = map.get(key);
  if (value === undefined) map.set(key, value = new Map() as V);
  return value;
}

/** What a scrape reads from the running process. */
export interface MetricsSources {
  version: string;
  cacheEntries: () => number;
  backendInFlight: () => number;
  /** Seconds since the epoch when the process started. */
  startTime: number;
  /** The DCS witness's gauges, while `dcs:` is configured. @default {undefined} */
  dcs?: () => DcsGauges | undefined;
  /** `backend.timeout`, in seconds, as configured now. @default {undefined} (not exported) */
  backendTimeout?: () => number;
  /** Connections open now, by listener (`frontend`, `agent`, `metrics`). @default {() => ({})} */
  openConnections?: () => Record<string, number>;
  /** The process's resource use, read at each scrape. @default {readProcessStats} */
  processStats?: () => ProcessStats;
}

/** What the DCS witness shows at scrape time. */
export interface DcsGauges {
  /** 1 if the last request to the DCS succeeded, else 0. */
  up: number;
  /** Seconds since the DCS last confirmed the view; -1 before the first complete read. */
  viewAgeSeconds: number;
  /** Seconds left on the leader lock by the view's evidence (0 when none is known held). */
  lockLeftSeconds: number;
  /** 1 when the view says this member holds a live leader lock. */
  lockHeld: number;
}

/** The process's resource use; a field is undefined where this runtime does not tell it. */
export interface ProcessStats {
  residentBytes?: number;
  /** User and system CPU time. */
  cpuSeconds?: number;
}

/** What the runtime's Node compatibility layer offers for CPU time (materialized on first use). */
type CpuUsage = () => { user: number; system: number };

/**
 * The process's resource use, as far as deno.json's permission set lets a process know it: Deno
 * refuses /proc (hence virtual size and file descriptors) to any process without --allow-all.
 * Resident size comes from the runtime; CPU time from `process.cpuUsage()`, whose Node layer is
 * loaded on the first scrape only (about 3 MiB of resident memory).
 */
export function readProcessStats(): ProcessStats {
  const stats: ProcessStats = { residentBytes: Deno.memoryUsage().rss };
  const cpuUsage = (globalThis as { process?: { cpuUsage?: CpuUsage } }).process?.cpuUsage;
  if (cpuUsage) {
    const { user, system } = cpuUsage();
    stats.cpuSeconds = (user + system) / 1e6;
  }
  return stats;
}

/** Every metric patroniglue exports; the names are stable. */
export class Metrics {
  readonly requests = new CounterFamily();
  readonly backendRequests = new CounterFamily();
  readonly refreshesAhead = new CounterFamily();
  readonly invalidations = new CounterFamily();
  readonly agentChecks = new CounterFamily();
  readonly dcsAnswers = new CounterFamily();
  readonly dcsErrors = new CounterFamily();
  readonly #durationBuckets = new Array<number>(DURATION_BUCKETS.length).fill(0);
  #durationSum = 0;
  #durationCount = 0;
  /** 1 when the last backend request succeeded, 0 when it failed, -1 before the first. */
  backendUp = -1;
  /** The member as the newest backend request to describe it did, if any has. */
  member?: MemberFacts;
  /** When that request was sent (`performance.now()`). */
  #memberSent = -Infinity;
  /** Times the member's role differed from the one described before. */
  roleChanges = 0;
  readonly #sources: MetricsSources;
  readonly #requestCells: RequestCells = new Map();

  constructor(sources: MetricsSources) {
    this.#sources = sources;
  }

  /** Counts one answered request; `route` is a bounded name (the check path, `health`, ...). */
  countRequest(route: string, method: string, status: number, cache: AnswerSource): void {
    const byCache = child(child(child(this.#requestCells, route), method), status);
    let cell = byCache.get(cache);
    if (!cell) {
      cell = this.requests.cell({ route, method, status: String(status), cache });
      byCache.set(cache, cell);
    }
    cell.value++;
  }

  /**
   * Counts one backend request and its duration, and records the member facts its body reported.
   * Facts from a request sent (`sent`, on `performance.now()`) before the one whose facts are
   * shown are older, and ignored.
   */
  countBackend(
    route: string,
    outcome: BackendOutcome,
    seconds: number,
    sent: number = performance.now() - seconds * 1000,
  ): void {
    this.backendRequests.cell({ route, outcome: outcome.ok ? "ok" : outcome.failure }).value++;
    this.backendUp = outcome.ok ? 1 : 0;
    if (outcome.ok && outcome.member && sent >= this.#memberSent) {
      this.#memberSent = sent;
      const last = this.member;
      if (last && last.role !== outcome.member.role) this.roleChanges++;
      this.member = outcome.member;
    }
    this.#durationSum += seconds;
    this.#durationCount++;
    const i = DURATION_BUCKETS.findIndex((b) => seconds <= b);
    if (i !== -1) this.#durationBuckets[i]++;
  }

  /** Counts one background refresh of `route` ahead of its entry's expiry. */
  countRefreshAhead(route: string): void {
    this.refreshesAhead.cell({ route }).value++;
  }

  /** Counts one entry of `route` ended because a fresh body of `by` contradicted it. */
  countInvalidation(route: string, by: string): void {
    this.invalidations.cell({ route, by }).value++;
  }

  /** Counts one agent check of `check` answered with `word` (`up`, `maint`, `drain`, `down`). */
  countAgentCheck(check: string, word: string): void {
    this.agentChecks.cell({ check, word }).value++;
  }

  /** Counts one check (HTTP or agent) of `route` that the DCS answered with `status`. */
  countDcsAnswer(route: string, status: number): void {
    this.dcsAnswers.cell({ route, status: String(status) }).value++;
  }

  /** Counts one failed request to the DCS. */
  countDcsError(failure: string): void {
    this.dcsErrors.cell({ failure }).value++;
  }

  /** The text exposition format, version 0.0.4. */
  render(): string {
    const out = new Exposition();
    this.#renderChecks(out);
    this.#renderBackend(out);
    this.#renderMember(out);
    this.#renderProcess(out);
    const dcs = this.#sources.dcs?.();
    if (dcs) this.#renderDcs(out, dcs);
    return out.text();
  }

  #renderChecks(out: Exposition): void {
    out.counter(
      "patroniglue_requests_total",
      "Requests answered, by route, method, status and cache result (hit, miss, coalesced, dcs, error, local).",
      this.requests,
    );
    out.counter(
      "patroniglue_cache_refreshes_ahead_total",
      "Background refreshes of a route in use, started before its entry expired, by route.",
      this.refreshesAhead,
    );
    out.counter(
      "patroniglue_cache_invalidations_total",
      "Entries ended early because a fresher body of another route (or the DCS) reported another role, state or timeline, by route and by.",
      this.invalidations,
    );
    out.counter(
      "patroniglue_agent_checks_total",
      "HAProxy agent checks answered, by check and word (up, maint, drain, down).",
      this.agentChecks,
    );
    out.gauge("patroniglue_cache_entries", "Entries in the cache.", this.#sources.cacheEntries());
    out.family(
      "patroniglue_open_connections",
      "gauge",
      "Client connections open now, by listener (frontend, agent, metrics).",
    );
    for (const [listener, n] of Object.entries(this.#sources.openConnections?.() ?? {})) {
      out.sample("patroniglue_open_connections", n, { listener });
    }
  }

  #renderBackend(out: Exposition): void {
    out.counter(
      "patroniglue_backend_requests_total",
      "Requests sent to Patroni, by route and outcome (ok, timeout, refused, tls, invalid, error).",
      this.backendRequests,
    );
    const h = "patroniglue_backend_request_duration_seconds";
    out.family(h, "histogram", "Time Patroni took to answer (or to fail).");
    let cumulative = 0;
    DURATION_BUCKETS.forEach((bound, i) => {
      cumulative += this.#durationBuckets[i];
      out.sample(`${h}_bucket`, cumulative, { le: String(bound) });
    });
    out.sample(`${h}_bucket`, this.#durationCount, { le: "+Inf" });
    out.sample(`${h}_sum`, this.#durationSum);
    out.sample(`${h}_count`, this.#durationCount);
    out.gauge(
      "patroniglue_backend_requests_in_flight",
      "Requests to Patroni in progress.",
      this.#sources.backendInFlight(),
    );
    out.gauge(
      "patroniglue_backend_up",
      "1 if the last request to Patroni succeeded, 0 if it failed, -1 before the first.",
      this.backendUp,
    );
    const timeout = this.#sources.backendTimeout?.();
    if (timeout === undefined) return;
    out.gauge(
      "patroniglue_backend_timeout_seconds",
      "backend.timeout: how long a request to Patroni may take before the check answers 503.",
      timeout,
    );
  }

  #renderMember(out: Exposition): void {
    const member = this.member;
    out.family(
      "patroniglue_member_info",
      "gauge",
      "The member as Patroni last described it: role, state and timeline (1 for that description).",
    );
    if (member) {
      const facts: Labels = { role: member.role, state: member.state };
      if (member.timeline !== undefined) facts.timeline = String(member.timeline);
      out.sample("patroniglue_member_info", 1, facts);
    }
    out.family(
      "patroniglue_member_role_changes_total",
      "counter",
      "Times Patroni described the member in another role than the time before.",
    );
    out.sample("patroniglue_member_role_changes_total", this.roleChanges);
  }

  #renderProcess(out: Exposition): void {
    const proc = (this.#sources.processStats ?? readProcessStats)();
    if (proc.cpuSeconds !== undefined) {
      out.family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
      );
      out.sample("process_cpu_seconds_total", proc.cpuSeconds);
    }
    if (proc.residentBytes !== undefined) {
      out.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        proc.residentBytes,
      );
    }
    out.gauge(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
      this.#sources.startTime,
    );
    out.gauge("patroniglue_build_info", "Build information.", 1, {
      version: this.#sources.version,
    });
  }

  #renderDcs(out: Exposition, dcs: DcsGauges): void {
    out.counter(
      "patroniglue_dcs_answers_total",
      "Checks (HTTP and agent) answered by the DCS witness instead of Patroni, by route and status.",
      this.dcsAnswers,
    );
    out.counter(
      "patroniglue_dcs_watch_errors_total",
      "Failed requests to the DCS, by failure (timeout, refused, tls, auth, invalid, error).",
      this.dcsErrors,
    );
    out.gauge("patroniglue_dcs_up", "1 if the last request to the DCS succeeded, else 0.", dcs.up);
    out.gauge(
      "patroniglue_dcs_view_age_seconds",
      "Seconds since the DCS last confirmed the view; -1 before the first complete read.",
      dcs.viewAgeSeconds,
    );
    out.gauge(
      "patroniglue_dcs_leader_lock_remaining_seconds",
      "Seconds left on the leader lock by the view's evidence (0 when no lock is known held).",
      dcs.lockLeftSeconds,
    );
    out.gauge(
      "patroniglue_dcs_leader_lock_held",
      "1 when the DCS view says this member holds a live leader lock, else 0.",
      dcs.lockHeld,
    );
  }
}

/** Lines of the text exposition format, written family by family. */
class Exposition {
  readonly #lines: string[] = [];

  family(name: string, type: string, help: string): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, value: number, labels: Labels = {}): void {
    this.#lines.push(`${name}${labelText(labels)} ${value}`);
  }

  counter(name: string, help: string, f: CounterFamily): void {
    this.family(name, "counter", help);
    for (const { labels, value } of f.values.values()) this.sample(name, value, labels);
  }

  gauge(name: string, help: string, value: number, labels: Labels = {}): void {
    this.family(name, "gauge", help);
    this.sample(name, value, labels);
  }

  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}
