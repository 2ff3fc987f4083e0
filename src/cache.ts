// Cache: TTL entries per canonical key, single flight, failures cached too, bounded size, sweep.
import type { BackendFailure, BackendOutcome } from "./backend.ts";

/** What the cache keeps per key: Patroni's status and body (or a failure as a 503), and when. */
export interface CacheEntry {
  status: number;
  body: string;
  /** When the backend answered (ms on the cache clock). */
  storedAt: number;
  /** Set when the answer stands for a backend failure. */
  failure?: BackendFailure;
}

/** How an answer was obtained: a fresh entry, a new backend request, or one already in flight. */
export type CacheResult = "hit" | "miss" | "coalesced";

/** Options for {@linkcode HealthCache}. */
export interface HealthCacheOptions {
  /** Seconds an answer stays fresh; 0 stores nothing but still coalesces. */
  ttl: number;
  /** Entries kept at most; the oldest go first. @default {1000} */
  maxEntries?: number;
  /** Asks the backend for `key`. */
  fetch: (key: string) => Promise<BackendOutcome>;
  /** Monotonic clock in ms (wall-clock jumps must not stretch freshness). @default {performance.now} */
  now?: () => number;
}

/** Answers per key from memory while fresh, else from exactly one backend request. */
export class HealthCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, Promise<CacheEntry>>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #fetch: (key: string) => Promise<BackendOutcome>;
  readonly #now: () => number;

  constructor(options: HealthCacheOptions) {
    this.#ttlMs = options.ttl * 1000;
    this.#maxEntries = options.maxEntries ?? 1000;
    this.#fetch = options.fetch;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Entries held (fresh or not yet swept). */
  get size(): number {
    return this.#entries.size;
  }

  /** Backend requests in flight. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** The fresh entry for `key`, if there is one (synchronous: the hot path of a cache hit). */
  peek(key: string): CacheEntry | undefined {
    const entry = this.#entries.get(key);
    return entry && this.#now() - entry.storedAt < this.#ttlMs ? entry : undefined;
  }

  /** The answer for `key`: fresh from memory, joined to a request in flight, or fetched now. */
  async get(key: string): Promise<{ entry: CacheEntry; result: CacheResult }> {
    const entry = this.peek(key);
    if (entry) return { entry, result: "hit" };
    const pending = this.#inFlight.get(key);
    if (pending) return { entry: await pending, result: "coalesced" };
    const request = this.#refresh(key);
    this.#inFlight.set(key, request);
    try {
      return { entry: await request, result: "miss" };
    } finally {
      this.#inFlight.delete(key);
    }
  }

  async #refresh(key: string): Promise<CacheEntry> {
    const outcome = await this.#fetch(key);
    const storedAt = this.#now();
    const entry: CacheEntry = outcome.ok
      ? { status: outcome.status, body: outcome.body, storedAt }
      : {
        status: 503,
        body: JSON.stringify({ error: outcome.error }),
        storedAt,
        failure: outcome.failure,
      };
    this.#entries.delete(key);
    if (this.#ttlMs > 0) {
      if (this.#entries.size >= this.#maxEntries) this.sweep();
      if (this.#entries.size >= this.#maxEntries) {
        this.#entries.delete(this.#entries.keys().next().value!);
      }
      this.#entries.set(key, entry);
    }
    return entry;
  }

  /** Frees expired entries; expiry itself is exact on read, this only returns memory. */
  sweep(): number {
    const now = this.#now();
    let freed = 0;
    for (const [key, entry] of this.#entries) {
      if (now - entry.storedAt < this.#ttlMs) break;
      this.#entries.delete(key);
      freed++;
    }
    return freed;
  }
}
