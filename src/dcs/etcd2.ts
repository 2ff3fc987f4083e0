/**
 * etcd v2 watcher (Patroni's `etcd:`): a recursive read of the scope, then long-poll watches from the next index, the leader's ttl turned into how long the lock is certainly held.
 *
 * @module
 */
import type { HttpResponse } from "../net/http_client.ts";
import { answerJson, toBase64 } from "./codec.ts";
import { LEADER_KEY, ScopeKeys, scopePath } from "./keys.ts";
import {
  DcsError,
  type EtcdWatcherOptions,
  type SessionContext,
  timedOut,
  WatchLoop,
} from "./runner.ts";
import type { DcsSettings, DcsWatcher, LeaderLock } from "./view.ts";

/** etcd v2's error code for a key that does not exist. */
const KEY_NOT_FOUND = 100;
/** etcd v2's error code for a request its user may not make. */
const UNAUTHORIZED = 110;
/** etcd v2's error code for a watch index older than the 1000 events it keeps. */
const EVENT_INDEX_CLEARED = 401;
/** A leader event whose watch waited longer (ms) is followed by a read of the leader key. */
const REREAD_AFTER_MS = 100;
/** The actions of a watch event that remove a key (or a directory). */
const REMOVALS = /^(?:delete|compareAndDelete|expire)$/;

/** A v2 node as etcd answers it (only the fields used). */
interface Node {
  key?: string;
  value?: string;
  dir?: boolean;
  ttl?: number;
  expiration?: string;
  modifiedIndex?: number;
  nodes?: Node[];
}

/** The parsed JSON answer of etcd v2 (an event, a read, or an error). */
interface Answer {
  action?: string;
  node?: Node;
  errorCode?: number;
  message?: string;
}

/** Where and how every session of one watcher asks. */
interface Etcd2Target {
  /** The scope's path (`/service/pg`). */
  path: string;
  /** The scope's keys API path (`/v2/keys/service/pg`). */
  keys: string;
  /** Accept, and basic auth when a user is set. */
  headers: Record<string, string>;
  watchMs: number;
}

/**
 * Watches one scope through etcd's v2 API; starts at once. The view's leader lock is held until
 * (time the request that brought the leader's `ttl` was sent) + (`ttl` - 1) s: etcd rounds the
 * seconds left up, so the lock's true expiry is later than the answer's time + `ttl` - 1 s, and
 * the answer came after the request was sent. A watch event carries the `ttl` computed when the
 * key was written: it counts only when the key was written after the watch request reached etcd
 * (its `modifiedIndex` is above the response's `X-Etcd-Index`, the index when the watch began).
 * An older event (the watcher fell behind) leaves the time as it was for the same holder, and
 * reads the keys again for another holder. The key may have been written long after the watch was
 * sent (Patroni renews once per `loop_wait`; with nothing else written in between, the whole wait),
 * so after an event that took longer than {@linkcode REREAD_AFTER_MS} the leader key is read once
 * more, and its `ttl` counted from that read when that says more. A leader key past its expiry and
 * not yet removed (`ttl` 0, left out of the JSON) is not known held: `heldUntil` is -Infinity, as
 * for a holder whose time is unknown.
 */
export function createEtcd2Watcher(
  settings: DcsSettings,
  options: EtcdWatcherOptions = {},
): DcsWatcher {
  const path = scopePath(settings);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (settings.username !== undefined) {
    headers.Authorization = `Basic ${toBase64(`${settings.username}:${settings.password ?? ""}`)}`;
  }
  const target: Etcd2Target = {
    path,
    keys: `/v2/keys${path.split("/").map(encodeURIComponent).join("/")}`,
    headers,
    watchMs: options.watchTimeoutMs ?? 5000,
  };
  return new WatchLoop(settings, options, (context) => new Etcd2Session(target, context).run());
}

/** One read-then-watch session on one endpoint: the scope's keys, the lock, the index watched. */
class Etcd2Session {
  readonly #target: Etcd2Target;
  readonly #context: SessionContext;
  readonly #keys = new ScopeKeys();
  #leader?: LeaderLock;
  /** The etcd index the keys are known up to: the next watch waits for a later one. */
  #index = 0;

  constructor(target: Etcd2Target, context: SessionContext) {
    this.#target = target;
    this.#context = context;
  }

  /** Reads the scope, then watches it until the session ends (or throws). */
  async run(): Promise<void> {
    await this.#read();
    while (!this.#context.signal.aborted) await this.#watch();
  }

  /** Reads the whole scope and publishes it. */
  async #read(): Promise<void> {
    const sentAt = this.#context.now();
    // quorum: a read through the etcd leader, never a partitioned member's stale copy.
    const { response, answer } = await this.#call(
      "?recursive=true&quorum=true",
      this.#context.timeoutMs,
    );
    const index = etcdIndex(response);
    if (answer.errorCode !== KEY_NOT_FOUND && (answer.errorCode !== undefined || !answer.node)) {
      throw answerError(response, answer);
    }
    this.#keys.clear();
    this.#leader = undefined;
    if (answer.errorCode === undefined) this.#walk(answer.node!, sentAt);
    this.#context.answered();
    this.#publish();
    this.#index = index;
  }

  /** Records the keys at and below `node`, read with a request sent at `sentAt`. */
  #walk(node: Node, sentAt: number): void {
    if (node.dir) return node.nodes?.forEach((child) => this.#walk(child, sentAt));
    const key = relative(this.#target.path, node.key);
    if (key === undefined || node.value === undefined) return;
    this.#keys.set(key, node.value);
    if (key === LEADER_KEY) this.#leader = lockFrom(node, sentAt);
  }

  /** Waits for the next event and applies it; reads the scope again where the watch cannot tell. */
  async #watch(): Promise<void> {
    const sentAt = this.#context.now();
    let result;
    try {
      const query = `?wait=true&recursive=true&waitIndex=${this.#index + 1}`;
      result = await this.#call(query, this.#target.watchMs);
    } catch (e) {
      // No event within the watch window: a quiet scope, or a frozen etcd. A read tells which.
      if (timedOut(e) && !this.#context.signal.aborted) return await this.#read();
      throw e;
    }
    const { response, answer } = result;
    if (answer.errorCode === EVENT_INDEX_CLEARED) return await this.#read();
    if (answer.errorCode !== undefined || !answer.action || !answer.node) {
      throw answerError(response, answer);
    }
    this.#context.answered();
    const node = answer.node;
    const started = etcdIndex(response);
    this.#index = typeof node.modifiedIndex === "number" ? node.modifiedIndex : this.#index + 1;
    const outcome = this.#apply(answer.action, node, started, sentAt);
    if (outcome === "read") return await this.#read();
    if (outcome === "publish") this.#publish();
    if (outcome === "publish" && this.#renewedLate(node, started, sentAt)) await this.#reread();
  }

  /** Whether `node` is a fresh leader renewal that the watch waited for long enough to read again. */
  #renewedLate(node: Node, started: number, sentAt: number): boolean {
    return relative(this.#target.path, node.key) === LEADER_KEY &&
      typeof node.modifiedIndex === "number" && node.modifiedIndex > started &&
      this.#context.now() - sentAt > REREAD_AFTER_MS;
  }

  /** Reads the leader key: its `ttl` counted from now, if that says more and the holder is the same. */
  async #reread(): Promise<void> {
    const sentAt = this.#context.now();
    const { response, answer } = await this.#call(
      `/${LEADER_KEY}?quorum=true`,
      this.#context.timeoutMs,
    );
    if (answer.errorCode === KEY_NOT_FOUND) return; // deleted: the watch brings the event
    if (answer.errorCode !== undefined || !answer.node) throw answerError(response, answer);
    this.#context.answered();
    const lock = lockFrom(answer.node, sentAt);
    const leader = this.#leader;
    if (leader && lock.holder === leader.holder && lock.heldUntil > leader.heldUntil) {
      this.#leader = lock;
      this.#publish();
    }
  }

  /**
   * Applies one watch event, from a watch sent at `sentAt` that began at index `started`: whether
   * the view changed (`publish`), did not (`skip`), or the keys must be read again (`read`).
   */
  #apply(action: string, node: Node, started: number, sentAt: number): "publish" | "skip" | "read" {
    const key = relative(this.#target.path, node.key);
    // A directory above the scope removed (`/service`): the scope went with it.
    if (
      key === undefined && REMOVALS.test(action) && this.#target.path.startsWith(`${node.key}/`)
    ) {
      return "read";
    }
    if (key === undefined) return "skip";
    if (REMOVALS.test(action)) {
      this.#keys.delete(key);
      if (this.#keys.holder === undefined) this.#leader = undefined;
      return "publish";
    }
    if (node.dir) return "skip";
    if (node.value === undefined) return "publish";
    this.#keys.set(key, node.value);
    if (key !== LEADER_KEY) return "publish";
    if (typeof node.modifiedIndex === "number" && node.modifiedIndex > started) {
      this.#leader = lockFrom(node, sentAt);
      return "publish";
    }
    // Written before the watch began: its ttl is older than the request; the same holder keeps
    // the time it had, another one is read again.
    return this.#leader?.holder === node.value ? "publish" : "read";
  }

  /** GETs the scope's keys with `query`; the answer, parsed. */
  async #call(
    query: string,
    timeoutMs: number,
  ): Promise<{ response: HttpResponse; answer: Answer }> {
    const { keys, headers } = this.#target;
    const target = `${keys}${query}`;
    const response = await this.#context.client.request({
      target,
      headers,
      timeoutMs,
      signal: this.#context.signal,
    });
    return { response, answer: answerOf(response) };
  }

  #publish(): void {
    this.#context.publish(this.#keys.view(this.#context.now(), this.#leader));
  }
}

/** A key relative to the scope at `path` (`members/pg1`; "" for the scope itself), or undefined outside it. */
function relative(path: string, key: string | undefined): string | undefined {
  if (key === path) return "";
  return key?.startsWith(`${path}/`) ? key.slice(path.length + 1) : undefined;
}

/**
 * The lock a leader key's node stands for, read with a request sent at `sentAt`. A key with an
 * `expiration` and no `ttl` has a ttl of 0 (left out of the JSON): past its expiry, not yet
 * removed (etcd sweeps expired keys every 500 ms). A key without either never expires: held when
 * read.
 */
function lockFrom(node: Node, sentAt: number): LeaderLock {
  const ttl = node.ttl ?? (node.expiration === undefined ? undefined : 0);
  return {
    holder: node.value ?? "",
    heldUntil: ttl === undefined ? sentAt : ttl >= 1 ? sentAt + (ttl - 1) * 1000 : -Infinity,
  };
}

function answerOf(response: HttpResponse): Answer {
  const data = answerJson(response);
  if (typeof data !== "object" || data === null) {
    throw new DcsError("invalid", `malformed answer: status ${response.status}, not an object`);
  }
  return data as Answer;
}

function etcdIndex(response: HttpResponse): number {
  const value = response.headers.get("x-etcd-index") ?? "";
  if (!/^\d{1,15}$/.test(value)) {
    throw new DcsError("invalid", `malformed answer: bad X-Etcd-Index '${value.slice(0, 40)}'`);
  }
  return Number(value);
}

function answerError(response: HttpResponse, answer: Answer): DcsError {
  const what = `etcd answered ${response.status}${
    answer.errorCode !== undefined ? ` (error ${answer.errorCode})` : ""
  }: ${String(answer.message ?? "no event").slice(0, 200)}`;
  const auth = response.status === 401 || response.status === 403 ||
    answer.errorCode === UNAUTHORIZED;
  return new DcsError(auth ? "auth" : "invalid", what);
}
