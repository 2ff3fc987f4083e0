// Metrics: counters, gauges and a histogram rendered in Prometheus text exposition format.
import type { BackendOutcome } from "./backend.ts";

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
  readonly #sources: MetricsSources;
  readonly #requestCells: RequestCells = new Map();

  constructor(sources: MetricsSources) {
    this.#sources = sources;
  }

  /** Counts one answered request; `route` is a bounded name (the check path, `health`, ...). */
  countRequest(route: string, method: string, status: number, cache: string): void {
    const byCache = child(child(child(this.#requestCells, route), method), status);
    let cell = byCache.get(cache);
    if (!cell) {
      cell = this.requests.cell({ route, method, status: String(status), cache });
      byCache.set(cache, cell);
    }
    cell.value++;
  }

  /** Counts one backend request and its duration. */
  countBackend(route: string, outcome: BackendOutcome, seconds: number): void {
    this.backendRequests.cell({ route, outcome: outcome.ok ? "ok" : outcome.failure }).value++;
    this.backendUp = outcome.ok ? 1 : 0;
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
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const counter = (name: string, help: string, f: CounterFamily) => {
      family(name, "counter", help);
      for (const { labels, value } of f.values.values()) {
        out.push(`${name}${labelText(labels)} ${value}`);
      }
    };
    counter(
      "patroniglue_requests_total",
      "Requests answered, by route, method, status and cache result (hit, miss, coalesced, error, local).",
      this.requests,
    );
    counter(
      "patroniglue_backend_requests_total",
      "Requests sent to Patroni, by route and outcome (ok, timeout, refused, tls, invalid, error).",
      this.backendRequests,
    );
    counter(
      "patroniglue_cache_refreshes_ahead_total",
      "Background refreshes of a route in use, started before its entry expired, by route.",
      this.refreshesAhead,
    );
    counter(
      "patroniglue_cache_invalidations_total",
      "Entries ended early because a fresher body of another route reported another role, state or timeline, by route and by.",
      this.invalidations,
    );
    counter(
      "patroniglue_agent_checks_total",
      "HAProxy agent checks answered, by check and word (up, maint, drain, down).",
      this.agentChecks,
    );
    const h = "patroniglue_backend_request_duration_seconds";
    family(h, "histogram", "Time Patroni took to answer (or to fail).");
    let cumulative = 0;
    DURATION_BUCKETS.forEach((bound, i) => {
      cumulative += this.#durationBuckets[i];
      out.push(`${h}_bucket{le="${bound}"} ${cumulative}`);
    });
    out.push(`${h}_bucket{le="+Inf"} ${this.#durationCount}`);
    out.push(`${h}_sum ${this.#durationSum}`, `${h}_count ${this.#durationCount}`);
    const gauge = (name: string, help: string, value: number, labels: Labels = {}) => {
      family(name, "gauge", help);
      out.push(`${name}${labelText(labels)} ${value}`);
    };
    gauge("patroniglue_cache_entries", "Entries in the cache.", this.#sources.cacheEntries());
    gauge(
      "patroniglue_backend_requests_in_flight",
      "Requests to Patroni in progress.",
      this.#sources.backendInFlight(),
    );
    gauge(
      "patroniglue_backend_up",
      "1 if the last request to Patroni succeeded, 0 if it failed, -1 before the first.",
      this.backendUp,
    );
    gauge(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
      this.#sources.startTime,
    );
    gauge("patroniglue_build_info", "Build information.", 1, { version: this.#sources.version });
    const dcs = this.#sources.dcs?.();
    if (dcs) {
      counter(
        "patroniglue_dcs_answers_total",
        "Checks (HTTP and agent) answered by the DCS witness instead of Patroni, by route and status.",
        this.dcsAnswers,
      );
      counter(
        "patroniglue_dcs_watch_errors_total",
        "Failed requests to the DCS, by failure (timeout, refused, tls, auth, invalid, error).",
        this.dcsErrors,
      );
      gauge("patroniglue_dcs_up", "1 if the last request to the DCS succeeded, else 0.", dcs.up);
      gauge(
        "patroniglue_dcs_view_age_seconds",
        "Seconds since the DCS last confirmed the view; -1 before the first complete read.",
        dcs.viewAgeSeconds,
      );
      gauge(
        "patroniglue_dcs_leader_lock_remaining_seconds",
        "Seconds left on the leader lock by the view's evidence (0 when no lock is known held).",
        dcs.lockLeftSeconds,
      );
      gauge(
        "patroniglue_dcs_leader_lock_held",
        "1 when the DCS view says this member holds a live leader lock, else 0.",
        dcs.lockHeld,
      );
    }
    return out.join("\n") + "\n";
  }
}
