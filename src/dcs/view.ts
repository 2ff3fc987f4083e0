/**
 * DCS view: the contract between a DCS watcher (one module per kind) and its readers — what
 * Patroni's HA loop last wrote, and how long that evidence holds.
 * @module
 */

/** A member key (`members/<name>`), as Patroni's HA loop last wrote it. */
export interface MemberKey {
  /** Patroni's role: `master` (before 4.0) or `primary`, `replica`, `standby_leader`, ... */
  role?: string;
  /** PostgreSQL's state: `running`, `starting`, `stopped`, ... */
  state?: string;
  timeline?: number;
  /**
   * The WAL position Patroni last wrote for this member, in bytes (`xlog_location`; on a replica
   * the received or the replayed one, whichever is further: Patroni's member key has no other).
   */
  xlogLocation?: number;
  /** The member's tags (`nofailover`, `noloadbalance`, custom ones), as written. */
  tags: Readonly<Record<string, unknown>>;
}

/** The leader lock (`leader`): who holds it and until when that is known. */
export interface LeaderLock {
  /** The holder's member name. */
  holder: string;
  /**
   * Monotonic time (ms, the watcher's clock) until which the lock is certainly held, from the
   * latest evidence: when that evidence was asked for, plus the time it said was left, rounded
   * down. Past it, the view says nothing about the lock. `-Infinity` when the holder is known but
   * not yet how long it holds the lock (a new holder's lease not read yet, a key past its expiry).
   */
  heldUntil: number;
}

/** What the DCS says about one Patroni cluster (one scope) at one moment. */
export interface DcsView {
  /** Monotonic time (ms) at which the DCS last confirmed this view (a read or a watch event). */
  confirmedAt: number;
  /** The leader lock; undefined when no leader key exists (or its lease has expired). */
  leader?: LeaderLock;
  /** Member keys by member name. */
  members: ReadonlyMap<string, MemberKey>;
  /** The leader's last WAL position in bytes (the `status` key's `optime`, or legacy `optime/leader`). */
  leaderOptime?: number;
  /** Patroni's dynamic configuration (the `config` key): `ttl` seconds, when written. */
  ttl?: number;
  /** `loop_wait` seconds, when written. */
  loopWait?: number;
  /** `failsafe_mode` in the dynamic configuration. */
  failsafeMode: boolean;
}

/** Where a watcher finds one Patroni cluster's keys: Patroni's `etcd:`/`etcd3:` facts, resolved. */
export interface DcsSettings {
  /** `etcd` (the v2 API) or `etcd3` (the v3 API through etcd's JSON gateway). */
  type: DcsKind;
  /** Endpoints, tried in turn: `http://host:2379`, `https://...`. */
  endpoints: string[];
  /** Patroni's `namespace`, with one leading and no trailing slash (`/service`; empty for the root). */
  namespace: string;
  /** Patroni's `scope` (the cluster name). */
  scope: string;
  /** Basic auth (v2) or the v3 auth user. */
  username?: string;
  password?: string;
  /** PEM of the CAs to trust for https endpoints (else the system's). */
  ca?: string;
  /** PEM of a client certificate and its key, for etcd's `--client-cert-auth`. */
  cert?: string;
  key?: string;
}

/** The DCS kinds a watcher exists for. */
export const DCS_KINDS = ["etcd", "etcd3"] as const;
/** One of {@linkcode DCS_KINDS}. */
export type DcsKind = typeof DCS_KINDS[number];

/** Why a watcher's request to the DCS failed, for logs and metrics. */
export type DcsFailure = "timeout" | "refused" | "tls" | "auth" | "invalid" | "error";

/** What a watcher needs besides its settings. */
export interface DcsWatcherOptions {
  /** Monotonic clock in ms. @default {performance.now} */
  now?: () => number;
  /** Called for each failed request to the DCS (then the watcher backs off and retries). @default {undefined} */
  onError?: (failure: DcsFailure, message: string) => void;
  /** Called when the DCS answers again after failures. @default {undefined} */
  onRecover?: () => void;
}

/**
 * A watcher keeps a {@linkcode DcsView} current from one DCS: a watch, plus the reads a watch
 * cannot replace. It only reads; it never writes to the DCS.
 */
export interface DcsWatcher {
  /** `etcd3 http://127.0.0.1:2379 /service/pgglue`, for logs. */
  readonly description: string;
  /** The latest complete view; undefined until the first complete read. */
  view(): DcsView | undefined;
  /** Whether the last request to the DCS succeeded. */
  readonly reachable: boolean;
  /**
   * Calls `listener` each time a new view replaces the last one (a read, a watch event, a lease's
   * time to live read again), with the one it replaces; returns the unsubscribe.
   */
  subscribe(listener: (view: DcsView, previous: DcsView | undefined) => void): () => void;
  /** Stops watching; nothing is left open once it resolves. */
  close(): Promise<void>;
}
