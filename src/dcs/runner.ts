/**
 * DCS watcher runtime: the endpoints tried in turn, back-off, reachability, view publication and close, around one store's read-then-watch session.
 *
 * @module
 */
import { HttpClient, HttpError, type HttpOrigin } from "../net/http_client.ts";
import type { DcsFailure, DcsSettings, DcsView, DcsWatcher, DcsWatcherOptions } from "./view.ts";

/** Timing of an etcd watcher, besides {@linkcode DcsWatcherOptions}. */
export interface EtcdWatcherOptions extends DcsWatcherOptions {
  /** Deadline of each request in ms, connecting included. @default {2000} */
  requestTimeoutMs?: number;
  /**
   * etcd v2: how long a watch waits for an event before the keys are read again (a quiet or a
   * frozen etcd); etcd3: the longest silence of the watch stream before it is opened again.
   * @default {5000} (v2), {60000} (etcd3)
   */
  watchTimeoutMs?: number;
  /** etcd3: how often the leader's lease (or, without a leader, the leader key) is read. @default {1000} */
  pollIntervalMs?: number;
  /** The first pause after a failure in ms; it doubles after each failure in a row. @default {100} */
  backoffMs?: number;
  /** The longest pause after failures in ms. @default {2000} */
  maxBackoffMs?: number;
}

/** Most bytes of one answer of the DCS (and of one message of etcd3's watch stream). */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/** A failed step of a session, with the failure it stands for. */
export class DcsError extends Error {
  override name = "DcsError";
  constructor(readonly failure: DcsFailure, message: string) {
    super(message);
  }
}

/** Thrown by a session to have everything read again at once: not a failure (a compacted watch). */
export class Resync extends Error {
  override name = "Resync";
}

/** What a session gets: its endpoint's client, the end of the session, and how to report. */
export interface SessionContext {
  readonly client: HttpClient;
  readonly signal: AbortSignal;
  readonly now: () => number;
  /** The deadline of each request in ms (`requestTimeoutMs`). */
  readonly timeoutMs: number;
  /** Replaces the view (listeners hear it). */
  publish(view: DcsView): void;
  /** A request was answered: the DCS is reachable. */
  answered(): void;
}

/** One store's read-then-watch loop; returns or throws when it must start over. */
export type Session = (context: SessionContext) => Promise<void>;

/** `http://host:port` as an origin; throws a clear error for anything else. */
function parseEndpoint(endpoint: string): HttpOrigin {
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch { /* below */ }
  if (
    !url || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "" ||
    (url.pathname !== "/" && url.pathname !== "") || url.search !== "" || url.username !== ""
  ) {
    throw new Error(
      `Cannot watch the DCS: an endpoint must be http://host:port or https://host:port: got '${endpoint}'`,
    );
  }
  const scheme = url.protocol === "https:" ? "https" : "http";
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return { scheme, host, port: url.port ? Number(url.port) : 2379 };
}

/** Waits `ms`, or less when `signal` ends (never rejects). */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** The failure and message of anything a session threw. */
function failureOf(e: unknown): { failure: DcsFailure; message: string } {
  if (e instanceof DcsError || e instanceof HttpError) {
    return { failure: e.failure, message: e.message };
  }
  return { failure: "error", message: e instanceof Error ? e.message : String(e) };
}

/** Whether what a session's request threw is a deadline passed (an etcd silent, or a quiet watch). */
export function timedOut(e: unknown): boolean {
  return failureOf(e).failure === "timeout";
}

/** A session that lasted this long before it failed starts the back-off afresh. */
const STABLE_SESSION_MS = 5000;

/**
 * Runs a {@linkcode Session} against the endpoints, one at a time: after a failure, the next
 * endpoint after a pause of `backoffMs` doubling up to `maxBackoffMs`, reset only by a session
 * that lasted {@linkcode STABLE_SESSION_MS} (one that reads and then fails at once, again and
 * again, keeps backing off).
 */
export class WatchLoop implements DcsWatcher {
  readonly description: string;
  readonly #settings: DcsSettings;
  readonly #options: EtcdWatcherOptions;
  readonly #now: () => number;
  readonly #session: Session;
  readonly #origins: HttpOrigin[];
  readonly #closing = new AbortController();
  readonly #listeners = new Set<(view: DcsView, previous: DcsView | undefined) => void>();
  #view?: DcsView;
  #reachable = false;
  #failing = false;
  #backoff = 0;
  readonly #done: Promise<void>;

  constructor(settings: DcsSettings, options: EtcdWatcherOptions, session: Session) {
    if (settings.endpoints.length === 0) {
      throw new Error(
        "Cannot watch the DCS: 'endpoints' must list at least one endpoint: got none",
      );
    }
    this.#origins = settings.endpoints.map(parseEndpoint);
    this.#settings = settings;
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.#session = session;
    this.description = `${settings.type} ${
      settings.endpoints.join(",")
    } ${settings.namespace}/${settings.scope}`;
    this.#done = this.#run();
  }

  view(): DcsView | undefined {
    return this.#view;
  }

  get reachable(): boolean {
    return this.#reachable;
  }

  subscribe(listener: (view: DcsView, previous: DcsView | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#closing.abort();
    await this.#done;
  }

  #publish(view: DcsView): void {
    if (this.#closing.signal.aborted) return;
    const previous = this.#view;
    this.#view = view;
    for (const listener of [...this.#listeners]) {
      try {
        listener(view, previous);
      } catch { /* a listener's failure is its own */ }
    }
  }

  #answered(): void {
    if (this.#closing.signal.aborted) return;
    this.#reachable = true;
    if (!this.#failing) return;
    this.#failing = false;
    this.#options.onRecover?.();
  }

  #failed(e: unknown): void {
    if (this.#closing.signal.aborted) return;
    this.#reachable = false;
    this.#failing = true;
    const { failure, message } = failureOf(e);
    this.#options.onError?.(failure, message);
  }

  async #run(): Promise<void> {
    const { ca, cert, key } = this.#settings;
    const closing = this.#closing.signal;
    let index = 0;
    let lastResync = -Infinity;
    while (!closing.aborted) {
      const client = new HttpClient(this.#origins[index], {
        ca,
        cert,
        key,
        keepAlive: true,
        maxBodyBytes: MAX_ANSWER_BYTES,
      });
      const session = new AbortController();
      const signal = AbortSignal.any([closing, session.signal]);
      let wait = 0;
      const started = this.#now();
      try {
        await this.#session({
          client,
          signal,
          now: this.#now,
          timeoutMs: this.#options.requestTimeoutMs ?? 2000,
          publish: (view) => this.#publish(view),
          answered: () => this.#answered(),
        });
      } catch (e) {
        if (e instanceof Resync) {
          // At once, unless the last one was a moment ago (a store that cancels every watch).
          const now = this.#now();
          if (now - lastResync < 1000) wait = this.#nextBackoff();
          lastResync = now;
        } else if (!closing.aborted) {
          this.#failed(e);
          index = (index + 1) % this.#origins.length;
          if (this.#now() - started >= STABLE_SESSION_MS) this.#backoff = 0;
          wait = this.#nextBackoff();
        }
      } finally {
        session.abort();
        client.close();
      }
      if (wait > 0) await pause(wait, closing);
    }
  }

  #nextBackoff(): number {
    const first = this.#options.backoffMs ?? 100;
    const max = this.#options.maxBackoffMs ?? 2000;
    this.#backoff = this.#backoff === 0 ? first : Math.min(max, this.#backoff * 2);
    return this.#backoff;
  }
}
