/**
 * etcd3 watcher (Patroni's `etcd3:`): a range read of the scope through etcd's JSON gateway, a watch stream from the next revision, and the leader lease's time to live read every ttl/20, at most once a second.
 *
 * @module
 */
import { fromBase64, toBase64 } from "./codec.ts";
import { Gateway } from "./etcd3_gateway.ts";
import { LEADER_KEY, ScopeKeys, scopePath } from "./keys.ts";
import {
  DcsError,
  type EtcdWatcherOptions,
  pause,
  Resync,
  type SessionContext,
  timedOut,
  WatchLoop,
} from "./runner.ts";
import type { DcsSettings, DcsWatcher, LeaderLock } from "./view.ts";

/** The lease of a key that has none, as the gateway writes it. */
const NO_LEASE = "0";

/** A key-value as the gateway answers it (base64 key and value, int64 as strings). */
interface Kv {
  key?: string;
  value?: string;
  lease?: string;
  mod_revision?: string;
}

/** The leader as last read: holder, lease and lock. */
interface Leader {
  holder: string;
  /** The lease id ({@linkcode NO_LEASE}: none). */
  lease: string;
  lock: LeaderLock;
}

/** One message's `result` on the watch stream. */
interface WatchResult {
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  compact_revision?: string;
  events?: { type?: string; kv?: Kv }[];
}

/** What every session of one watcher asks, where, and how often. */
interface Etcd3Target {
  gateway: Gateway;
  /** The prefix of the scope's keys (`/service/pg/`). */
  prefix: string;
  /** The leader key (`/service/pg/leader`). */
  leaderKey: string;
  /** The scope's keys as a range request (base64). */
  range: { key: string; range_end: string };
  watchMs: number;
  /** How often the lease is read (ms), when set; else {@linkcode pollInterval} of its granted TTL. */
  intervalMs?: number;
  /** The leader lease's granted TTL (seconds), as last read. */
  grantedTtl?: number;
}

/**
 * Watches one scope through etcd's v3 JSON gateway; starts at once. A held leader key never
 * changes (Patroni keeps its lease alive), so a watch alone cannot show the holder alive: the
 * leader's lease is read every `pollIntervalMs` (`/lease/timetolive` with its keys), and the lock
 * is held until (time that request was sent) + `TTL` s (etcd truncates `TTL` to whole seconds, so
 * the lease lives at least that long after the answer). By default the lease is read every
 * twentieth of its granted TTL, at most once a second: the time left that the view shows lags the
 * truth by the truncation (under a second) plus one interval, which must stay well within the
 * witness's margin (half the ttl) for a lock renewed every `loop_wait` (a 5 s ttl read once a
 * second showed 2.0 s left while 3.9 s were). `TTL` 0 (under a second left, or expired
 * and not yet revoked) and a new holder whose lease is not read yet: `heldUntil` is -Infinity, the
 * holder known, its time not. A lease gone (`TTL` -1) means no lock; a
 * lease that no longer holds the leader key means the keys are read again. Without a leader, the
 * leader key is read each interval instead, so a frozen etcd is noticed either way. A watch
 * canceled by compaction, a stream that ends, or one silent for `watchTimeoutMs`: everything is
 * read again before the watch starts over (never a view left without a read after a lost watch).
 */
export function createEtcd3Watcher(
  settings: DcsSettings,
  options: EtcdWatcherOptions = {},
): DcsWatcher {
  const prefix = `${scopePath(settings)}/`;
  const target: Etcd3Target = {
    gateway: new Gateway(settings),
    prefix,
    leaderKey: `${prefix}${LEADER_KEY}`,
    range: { key: toBase64(prefix), range_end: toBase64(prefixEnd(prefix)) },
    watchMs: options.watchTimeoutMs ?? 60_000,
    intervalMs: options.pollIntervalMs,
  };
  return new WatchLoop(settings, options, (context) => new Etcd3Session(target, context).run());
}

/** One session on one endpoint: a read, then the watch and the lease read each interval. */
class Etcd3Session {
  readonly #target: Etcd3Target;
  readonly #context: SessionContext;
  readonly #keys = new ScopeKeys();
  #leader?: Leader;
  /** Wakes the interval loop early (a new leader's lease to read). */
  #wake?: () => void;
  /** A new holder came while no wait was under way: poll again without waiting. */
  #newLeader = false;

  constructor(target: Etcd3Target, context: SessionContext) {
    this.#target = target;
    this.#context = context;
  }

  /** Reads the scope, then follows it until the session ends (or throws). */
  async run(): Promise<void> {
    await this.#target.gateway.open(this.#context);
    const revision = await this.#read();
    await this.#follow(revision + 1);
  }

  /** Reads every key of the scope, then the leader's lease, and publishes; the revision read. */
  async #read(): Promise<number> {
    const answer = await this.#post("/kv/range", this.#target.range) as {
      header?: { revision?: string };
      kvs?: Kv[];
    };
    const revision = Number(answer.header?.revision);
    if (!Number.isSafeInteger(revision)) {
      throw new DcsError("invalid", "malformed answer: no revision in the range answer");
    }
    for (const kv of answer.kvs ?? []) this.#apply(kv, false);
    this.#context.answered();
    if (this.#leader) await this.#poll();
    else this.#publish();
    return revision;
  }

  /**
   * Watches from revision `start` in the background, and polls each interval until either ends.
   * Each round races its waits against a promise of its own that the watch's end rejects (a race
   * against one promise for the whole session would keep every round's handlers alive).
   */
  async #follow(start: number): Promise<void> {
    const { signal } = this.#context;
    const stop = new AbortController();
    let ended: unknown, endRound: ((e: unknown) => void) | undefined;
    const watching = this.#watch(start, AbortSignal.any([signal, stop.signal])).then(
      () => new DcsError("error", "the watch stream ended"),
      (e) => e,
    ).then((e) => {
      ended = e;
      endRound?.(e);
    });
    try {
      while (!signal.aborted && ended === undefined) {
        const round = new Promise<never>((_, reject) => endRound = reject);
        round.catch(() => {});
        if (!this.#newLeader) {
          const woken = new Promise<void>((resolve) => this.#wake = resolve);
          const { intervalMs, grantedTtl } = this.#target;
          await Promise.race([pause(intervalMs ?? pollInterval(grantedTtl), signal), woken, round]);
          this.#wake = undefined;
        }
        this.#newLeader = false;
        if (signal.aborted) break;
        const polled = this.#poll();
        polled.catch(() => {}); // when the watch ends first, the session's end settles it
        await Promise.race([polled, round]);
        endRound = undefined;
      }
      if (ended !== undefined && !signal.aborted) throw ended;
    } finally {
      this.#wake = undefined;
      stop.abort();
      await watching;
    }
  }

  /** The watch stream from revision `start`, each message applied; a silent one is read again. */
  async #watch(start: number, signal: AbortSignal): Promise<void> {
    const request = { create_request: { ...this.#target.range, start_revision: String(start) } };
    try {
      await this.#target.gateway.watch(this.#context, request, {
        idleMs: this.#target.watchMs,
        signal,
        onMessage: (text) => this.#message(text),
      });
    } catch (e) {
      if (timedOut(e) && !this.#context.signal.aborted) {
        throw new Resync("the watch stream was silent");
      }
      throw e;
    }
  }

  /** Applies one message of the watch stream; publishes what its events changed. */
  #message(text: string): void {
    const events = watchResult(text).events;
    if (!events?.length) return;
    const before = this.#leader;
    for (const event of events) this.#apply(event.kv ?? {}, event.type === "DELETE");
    this.#publish();
    if (this.#leader && this.#leader !== before) {
      // A new holder's lease is read at once, also when a poll is under way now.
      this.#newLeader = true;
      this.#wake?.();
    }
  }

  /** Records a key-value as read or as a watch event gives it (`deleted`: a DELETE event). */
  #apply(kv: Kv, deleted: boolean): void {
    const key = this.#relative(fromBase64(kv.key ?? ""));
    if (key === undefined) return;
    if (deleted) {
      this.#keys.delete(key);
      if (key === LEADER_KEY) this.#leader = undefined;
      return;
    }
    const value = fromBase64(kv.value ?? "");
    this.#keys.set(key, value);
    if (key !== LEADER_KEY) return;
    const lease = kv.lease ?? NO_LEASE;
    if (this.#leader?.holder === value && this.#leader.lease === lease) return;
    // A new holder or lease: its time left is not known until its lease is read (at once).
    this.#leader = { holder: value, lease, lock: { holder: value, heldUntil: -Infinity } };
  }

  /** Reads the leader's lease (or, without a lease, the leader key) and publishes. */
  async #poll(): Promise<void> {
    const asked = this.#leader;
    const sentAt = this.#context.now();
    if (!asked || asked.lease === NO_LEASE) await this.#pollKey(asked, sentAt);
    else await this.#pollLease(asked, sentAt);
  }

  /** Reads the leader key, which the watch should have shown as it is (else: read again). */
  async #pollKey(asked: Leader | undefined, sentAt: number): Promise<void> {
    const answer = await this.#post("/kv/range", { key: toBase64(this.#target.leaderKey) }) as {
      kvs?: Kv[];
    };
    this.#context.answered();
    const kv = answer.kvs?.[0];
    const holder = kv?.value !== undefined ? fromBase64(kv.value) : undefined;
    if (this.#leader !== asked) return; // the watch changed it meanwhile
    if (holder !== asked?.holder || (kv?.lease ?? NO_LEASE) !== (asked?.lease ?? NO_LEASE)) {
      this.#unknownUntilRead(asked);
      throw new Resync("the leader key changed unseen by the watch");
    }
    if (asked) asked.lock = { holder: asked.holder, heldUntil: sentAt };
    this.#publish();
  }

  /** Reads the leader's lease: its time to live is how long the lock is held. */
  async #pollLease(asked: Leader, sentAt: number): Promise<void> {
    const answer = await this.#post("/lease/timetolive", { ID: asked.lease, keys: true }) as {
      TTL?: string;
      grantedTTL?: string;
      keys?: string[];
    };
    this.#context.answered();
    const granted = Number(answer.grantedTTL);
    if (Number.isInteger(granted) && granted > 0) this.#target.grantedTtl = granted;
    if (this.#leader !== asked) return;
    const ttl = Number(answer.TTL ?? 0); // the gateway leaves out fields that are zero
    if (!Number.isInteger(ttl)) throw new DcsError("invalid", "malformed answer: bad lease TTL");
    if (ttl === 0 || ttl > (this.#target.grantedTtl ?? Infinity)) {
      // Less than a second left, or past its expiry and not yet revoked (etcd revokes expired
      // leases every 500 ms); or more than was ever granted (a lease not yet promoted by a new
      // etcd leader reports ~292 years, etcd-io/etcd#17642): not known held.
      asked.lock = { holder: asked.holder, heldUntil: -Infinity };
    } else if (ttl < 0) {
      // The lease is gone: so is the key (etcd deletes it; the watch will say so too).
      this.#keys.delete(LEADER_KEY);
      this.#leader = undefined;
    } else {
      const attached = (answer.keys ?? []).some((k) => fromBase64(k) === this.#target.leaderKey);
      if (!attached) {
        this.#unknownUntilRead(asked);
        throw new Resync("the leader's lease no longer holds the leader key");
      }
      asked.lock = { holder: asked.holder, heldUntil: sentAt + ttl * 1000 };
    }
    this.#publish();
  }

  /** The lock's time is not known until the keys are read again: publish that before reading. */
  #unknownUntilRead(asked: Leader | undefined): void {
    if (!asked) return;
    asked.lock = { holder: asked.holder, heldUntil: -Infinity };
    this.#publish();
  }

  #post(path: string, body: unknown): Promise<unknown> {
    return this.#target.gateway.post(this.#context, path, body);
  }

  #publish(): void {
    this.#context.publish(this.#keys.view(this.#context.now(), this.#leader?.lock));
  }

  /** A key relative to the scope (`members/pg1`), or undefined outside it. */
  #relative(key: string): string | undefined {
    return key.startsWith(this.#target.prefix) ? key.slice(this.#target.prefix.length) : undefined;
  }
}

/** One message of the watch stream as its result; what ends the watch is thrown. */
function watchResult(text: string): WatchResult {
  let message: { result?: WatchResult; error?: { message?: string } };
  try {
    message = JSON.parse(text);
  } catch {
    throw new DcsError("invalid", "malformed watch message: not JSON");
  }
  if (message.error) {
    throw new DcsError("error", `watch: ${String(message.error.message).slice(0, 200)}`);
  }
  const result = message.result ?? {};
  if (result.compact_revision) {
    throw new Resync(`the watch was canceled (compacted at ${result.compact_revision})`);
  }
  if (result.canceled) {
    const reason = String(result.cancel_reason ?? "no reason given").slice(0, 200);
    throw new DcsError(
      /permission|auth/i.test(reason) ? "auth" : "error",
      `watch canceled: ${reason}`,
    );
  }
  return result;
}

/** The end of a prefix range: the prefix with its last byte plus one. */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** How often a lease granted `ttl` seconds is read (ms): a twentieth of it, at most once a second. */
function pollInterval(ttl: number | undefined): number {
  return ttl === undefined ? 1000 : Math.min(1000, Math.max(100, ttl * 50));
}
