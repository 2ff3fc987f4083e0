/**
 * Cache: entries per key for ttl, single flight, bounded; routes in use refreshed ahead,
 * staggered; contradicted entries ended.
 * @module
 */
import type { BackendFailure, BackendOutcome, MemberFacts } from "./backend.ts";

/** What the cache keeps per key: Patroni's status and body (or a failure as a 503), and when. */
export interface CacheEntry {
  status: number;
  body: string;
  /** When the backend answered (ms on the cache clock). */
  storedAt: number;
  /** Set when the entry stands for a backend failure. */
  failure?: BackendFailure;
  /** The member facts the body reported (see {@linkcode BackendOutcome}). */
  member?: MemberFacts;
}

/** How a check was served: a fresh entry, a new backend request, or one already in flight. */
export type CacheResult = "hit" | "miss" | "coalesced";

/** Options for {@linkcode HealthCache}. */
export interface HealthCacheOptions {
  /** Seconds an entry stays fresh; 0 stores nothing (and refreshes nothing) but still coalesces. */
  ttl: number;
  /** Entries kept at most; the oldest go first. @default {1000} */
  maxEntries?: number;
  /** Asks the backend for `key`; it must settle within `timeoutMs` (or the backend timeout, if sooner). */
  fetch: (key: string, timeoutMs: number) => Promise<BackendOutcome>;
  /** The backend timeout: a check never waits longer, a contradicted fetch is asked again only within it. @default {Infinity} */
  timeoutMs?: number;
  /** Monotonic clock in ms (wall-clock jumps must not stretch freshness). @default {performance.now} */
  now?: () => number;
  /** Starts the scheduling timer. @default {setTimeout, unref'd} */
  setTimer?: (fn: () => void, ms: number) => unknown;
  /** Cancels the scheduling timer, given what `setTimer` returned. @default {clearTimeout} */
  clearTimer?: (id: unknown) => void;
  /** Called when a refresh ahead of expiry starts for `key`. @default {undefined} */
  onRefreshAhead?: (key: string) => void;
  /** Called when `key`'s entry ends because `byKey`'s body contradicted it. @default {undefined} */
  onInvalidate?: (key: string, byKey: string) => void;
}

/**
 * Plans closer than this share of the even spacing are pulled apart. Refreshes an exact ttl apart
 * keep their places, so this acts when routes join, or once timer lateness has drifted them far.
 */
const CROWDED = 0.5;

interface Slot {
  key: string;
  entry: CacheEntry;
  expiresAt: number;
  /** Order in which the fetch that produced the entry started. */
  seq: number;
  /** Checked since stored: refreshed ahead only if so. */
  used: boolean;
  /** When its refresh ahead is planned (while it is in #plans). */
  refreshAt: number;
}

/** Entries per key from memory while fresh, else from exactly one backend request. */
export class HealthCache {
  readonly #slots = new Map<string, Slot>();
  readonly #inFlight = new Map<string, Promise<CacheEntry>>();
  #plans: Slot[] = [];
  #seq = 0;
  /** The newest member facts and the start order of the fetch that last reported them. */
  #facts?: { member: MemberFacts; seq: number };
  /** The last outside evidence ({@linkcode invalidate}): fetches started before it must agree with it. */
  #evidence?: { holds: (member?: MemberFacts) => boolean; seq: number };
  /** Whether the last fetch to settle failed. */
  #failing = false;
  #timer?: unknown;
  #timerAt = Infinity;
  #closed = false;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #fetch: (key: string, timeoutMs: number) => Promise<BackendOutcome>;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #setTimer: (fn: () => void, ms: number) => unknown;
  readonly #clearTimer: (id: unknown) => void;
  readonly #onRefreshAhead?: (key: string) => void;
  readonly #onInvalidate?: (key: string, byKey: string) => void;

  constructor(options: HealthCacheOptions) {
    this.#ttlMs = options.ttl * 1000;
    this.#maxEntries = options.maxEntries ?? 1000;
    this.#fetch = options.fetch;
    this.#timeoutMs = options.timeoutMs ?? Infinity;
    this.#now = options.now ?? (() => performance.now());
    this.#setTimer = options.setTimer ?? ((fn, ms) => {
      const id = setTimeout(fn, ms);
      Deno.unrefTimer(id);
      return id;
    });
    this.#clearTimer = options.clearTimer ?? ((id) => clearTimeout(id as number));
    this.#onRefreshAhead = options.onRefreshAhead;
    this.#onInvalidate = options.onInvalidate;
  }

  /** Entries held (fresh or not yet swept). */
  get size(): number {
    return this.#slots.size;
  }

  /** Backend requests in flight. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Whether the last backend request to settle failed (Patroni is failing). */
  get failing(): boolean {
    return this.#failing;
  }

  /**
   * The fresh entry for `key`, if there is one (synchronous: the hot path of a cache hit), at
   * `now` on the cache's clock (a caller that reads the clock anyway passes its reading).
   */
  peek(key: string, now: number = this.#now()): CacheEntry | undefined {
    const slot = this.#slots.get(key);
    if (!slot || now >= slot.expiresAt) return undefined;
    slot.used = true;
    return slot.entry;
  }

  /** The entry for `key`: fresh from memory, joined to a request in flight, or fetched now. */
  async get(key: string): Promise<{ entry: CacheEntry; result: CacheResult }> {
    const entry = this.peek(key);
    if (entry) return { entry, result: "hit" };
    const pending = this.#inFlight.get(key);
    if (pending) return { entry: await pending, result: "coalesced" };
    return { entry: await this.#start(key), result: "miss" };
  }

  /** Asks the backend for `key` in the background, unless a request for it is in flight already. */
  refresh(key: string): void {
    if (!this.#closed && !this.#inFlight.has(key)) this.#startInBackground(key);
  }

  /**
   * Outside evidence (the DCS) about the member: ends every entry whose member facts `holds`
   * rejects, as a fresher body would, and asks again at once for those of routes in use. A fetch
   * started before this call whose body `holds` rejects is never served; it is asked again within
   * what is left of the backend timeout. `by` names the evidence for `onInvalidate`.
   */
  invalidate(holds: (member?: MemberFacts) => boolean, by: string): void {
    this.#evidence = { holds, seq: ++this.#seq };
    this.#endEntries((slot) => !holds(slot.entry.member), by);
  }

  /** Frees expired entries; expiry itself is exact on read, this only returns memory. */
  sweep(): number {
    const now = this.#now();
    let freed = 0;
    for (const slot of this.#slots.values()) {
      if (now < slot.expiresAt) break;
      this.#drop(slot.key);
      freed++;
    }
    if (freed) this.#arm();
    return freed;
  }

  /** Stops refreshing ahead: cancels the timer and every planned refresh (fetches in flight end). */
  close(): void {
    this.#closed = true;
    this.#plans = [];
    this.#arm();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Starts the one fetch for `key` that checks join until it settles. */
  #start(key: string): Promise<CacheEntry> {
    const flight = this.#run(key).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, flight);
    return flight;
  }

  /** Starts a fetch nobody waits for yet (a route in use); a rejection is a check's to see. */
  #startInBackground(key: string): void {
    this.#start(key).catch(() => {});
  }

  /**
   * One fetch; when its body is contradicted by a fetch started later, it is never served and is
   * asked once more, within what is left of the backend timeout (else a 503, never the old body).
   */
  async #run(key: string): Promise<CacheEntry> {
    const began = this.#now();
    for (let attempt = 1;; attempt++) {
      const seq = ++this.#seq;
      const startedAt = this.#now();
      const outcome = await this.#fetch(key, this.#timeoutMs - (startedAt - began));
      const storedAt = this.#now();
      const entry: CacheEntry = outcome.ok
        ? { status: outcome.status, body: outcome.body, storedAt, member: outcome.member }
        : {
          status: 503,
          body: JSON.stringify({ error: outcome.error }),
          storedAt,
          failure: outcome.failure,
        };
      this.#failing = !outcome.ok;
      if (this.#agrees(entry.member, seq) && this.#learn(key, entry.member, seq)) {
        this.#store(key, entry, seq, storedAt - startedAt);
        return entry;
      }
      if (attempt === 2 || storedAt - began >= this.#timeoutMs) {
        const error = "no answer consistent with a later one within the backend timeout";
        return { status: 503, body: JSON.stringify({ error }), storedAt, failure: "timeout" };
      }
    }
  }

  /** Whether a fetch started as `seq` agrees with outside evidence given after it started. */
  #agrees(member: MemberFacts | undefined, seq: number): boolean {
    const evidence = this.#evidence;
    return !evidence || seq > evidence.seq || evidence.holds(member);
  }

  /** Records a body's member facts; false when a fetch started later reported other facts. */
  #learn(key: string, member: MemberFacts | undefined, seq: number): boolean {
    if (!member) return true;
    const known = this.#facts;
    if (known && seq < known.seq) return sameFacts(member, known.member);
    this.#facts = { member, seq };
    if (known && sameFacts(member, known.member)) return true;
    // Facts changed: end every entry stored before that does not carry them, unknown facts too.
    this.#endEntries(
      (slot) =>
        slot.key !== key && slot.seq < seq &&
        !(slot.entry.member && sameFacts(slot.entry.member, member)),
      key,
    );
    return true;
  }

  /** Ends the entries `ended` picks; a route in use is asked again at once, so that its next check waits the least. */
  #endEntries(ended: (slot: Slot) => boolean, by: string): void {
    for (const slot of this.#slots.values()) {
      if (!ended(slot)) continue;
      this.#drop(slot.key);
      this.#onInvalidate?.(slot.key, by);
      if (slot.used && !this.#closed && !this.#inFlight.has(slot.key)) {
        this.#startInBackground(slot.key);
      }
    }
  }

  /**
   * Called from #run, inside the key's flight. The refresh is planned as long before expiry as
   * Patroni took for this entry (at most ttl/2): one ttl after the request that gave it, so a route
   * in use costs Patroni one request per ttl, and its successor arrives by expiry when Patroni is
   * as fast as last time.
   */
  #store(key: string, entry: CacheEntry, seq: number, latency: number): void {
    this.#drop(key);
    if (this.#ttlMs <= 0) return this.#arm();
    if (this.#slots.size >= this.#maxEntries) this.sweep();
    if (this.#slots.size >= this.#maxEntries) this.#drop(this.#slots.keys().next().value!);
    const expiresAt = entry.storedAt + this.#ttlMs;
    const slot: Slot = {
      key,
      entry,
      expiresAt,
      seq,
      used: false,
      refreshAt: expiresAt - Math.min(latency, this.#ttlMs / 2),
    };
    this.#slots.set(key, slot);
    if (!this.#closed) {
      this.#plans.push(slot);
      this.#stagger();
    }
    this.#arm();
  }

  /** Pulls crowded plans earlier so that k routes in use are refreshed ttl/k apart. */
  #stagger(): void {
    const plans = this.#plans.sort((a, b) => a.refreshAt - b.refreshAt);
    // Routes in use: planned ones, and those being fetched (the storing flight is one of them).
    const gap = this.#ttlMs / (plans.length + this.#inFlight.size - 1);
    const now = this.#now();
    for (let i = plans.length - 2; i >= 0; i--) {
      const later = plans[i + 1].refreshAt;
      if (later - plans[i].refreshAt < gap * CROWDED && later - gap > now) {
        plans[i].refreshAt = later - gap;
      }
    }
  }

  /** Starts the refreshes due, for entries checked since stored; others leave the plan. */
  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();
    const due = this.#plans.filter((slot) => slot.refreshAt <= now);
    this.#plans = this.#plans.filter((slot) => slot.refreshAt > now);
    for (const slot of due) {
      if (!slot.used || this.#slots.get(slot.key) !== slot || this.#inFlight.has(slot.key)) {
        continue;
      }
      this.#onRefreshAhead?.(slot.key);
      this.#startInBackground(slot.key);
    }
    this.#arm();
  }

  /** Keeps one timer, set for the earliest plan; none when nothing is planned. */
  #arm(): void {
    const next = this.#plans.reduce((t, slot) => Math.min(t, slot.refreshAt), Infinity);
    if (next === this.#timerAt) return;
    if (this.#timer !== undefined) this.#clearTimer(this.#timer);
    this.#timer = undefined;
    this.#timerAt = next;
    if (next === Infinity) return;
    this.#timer = this.#setTimer(() => this.#fire(), Math.max(0, next - this.#now()));
  }

  #drop(key: string): void {
    const slot = this.#slots.get(key);
    if (!slot) return;
    this.#slots.delete(key);
    const i = this.#plans.indexOf(slot);
    if (i >= 0) this.#plans.splice(i, 1);
  }
}

function sameFacts(a: MemberFacts, b: MemberFacts): boolean {
  return a.role === b.role && a.state === b.state && a.timeline === b.timeline;
}
