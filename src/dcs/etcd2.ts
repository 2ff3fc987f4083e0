// etcd v2 watcher (Patroni's `etcd:`): a recursive read of the scope, then long-poll watches from the next index, the leader's ttl turned into how long the lock is certainly held.
import type { HttpResponse } from "../http_client.ts";
import { LEADER_KEY, ScopeKeys } from "./keys.ts";
import { DcsError, type EtcdWatcherOptions, type SessionContext, WatchLoop } from "./runner.ts";
import type { DcsSettings, DcsWatcher, LeaderLock } from "./view.ts";

/** etcd v2's error code for a watch index older than the 1000 events it keeps. */
const EVENT_INDEX_CLEARED = 401;
/** etcd v2's error code for a key that does not exist. */
const KEY_NOT_FOUND = 100;
/** A leader event whose watch waited longer (ms) is followed by a read of the leader key. */
const REREAD_AFTER_MS = 100;

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
 * more, and its `ttl` counted from that read when that says more. A leader key past its expiry and not yet removed
 * (`ttl` 0, left out of the JSON) is not known held: `heldUntil` is -Infinity, as for a holder whose time is unknown.
 */
export function createEtcd2Watcher(
  settings: DcsSettings,
  options: EtcdWatcherOptions = {},
): DcsWatcher {
  const dir = `${settings.namespace}/${settings.scope}`;
  const base = `/v2/keys${dir.split("/").map(encodeURIComponent).join("/")}`;
  const headers: Record<string, string> = { Accept: "application/json" };
  if (settings.username !== undefined) {
    const credentials = `${settings.username}:${settings.password ?? ""}`;
    headers.Authorization = `Basic ${
      btoa(String.fromCharCode(...new TextEncoder().encode(credentials)))
    }`;
  }
  const timeoutMs = options.requestTimeoutMs ?? 2000;
  const watchMs = options.watchTimeoutMs ?? 5000;

  /** The key relative to the scope (`members/pg1`), or undefined for a key outside it. */
  const relative = (key: string | undefined): string | undefined => {
    if (key === dir) return "";
    return key?.startsWith(`${dir}/`) ? key.slice(dir.length + 1) : undefined;
  };

  const session = async (context: SessionContext): Promise<void> => {
    const { client, signal, now } = context;
    const keys = new ScopeKeys();
    let leader: LeaderLock | undefined;
    // A key with an `expiration` and no `ttl` has a ttl of 0 (left out of the JSON): past its
    // expiry, not yet removed (etcd sweeps expired keys every 500 ms). A key without either never
    // expires: held when read.
    const lockFrom = (node: Node, sentAt: number): LeaderLock => {
      const ttl = node.ttl ?? (node.expiration === undefined ? undefined : 0);
      return {
        holder: node.value ?? "",
        heldUntil: ttl === undefined ? sentAt : ttl >= 1 ? sentAt + (ttl - 1) * 1000 : -Infinity,
      };
    };
    const call = async (target: string, ms: number) => {
      const response = await client.request({ target, headers, timeoutMs: ms, signal });
      return { response, answer: answerOf(response) };
    };

    /** Reads the whole scope; returns the index to watch after. */
    const read = async (): Promise<number> => {
      const sentAt = now();
      const { response, answer } = await call(`${base}?recursive=true`, timeoutMs);
      const index = etcdIndex(response);
      if (answer.errorCode === KEY_NOT_FOUND) {
        keys.clear();
      } else if (answer.errorCode !== undefined || !answer.node) {
        throw answerError(response, answer);
      } else {
        keys.clear();
        leader = undefined;
        const walk = (node: Node) => {
          const key = relative(node.key);
          if (node.dir) return node.nodes?.forEach(walk);
          if (key === undefined || node.value === undefined) return;
          keys.set(key, node.value);
          if (key === LEADER_KEY) leader = lockFrom(node, sentAt);
        };
        walk(answer.node);
      }
      if (keys.holder === undefined) leader = undefined;
      context.answered();
      context.publish(keys.view(now(), leader));
      return index;
    };

    /** Reads the leader key: its `ttl` counted from now, if that is later and the holder the same. */
    const reread = async (): Promise<void> => {
      const sentAt = now();
      const { response, answer } = await call(`${base}/${LEADER_KEY}`, timeoutMs);
      if (answer.errorCode === KEY_NOT_FOUND) return; // deleted: the watch brings the event
      if (answer.errorCode !== undefined || !answer.node) throw answerError(response, answer);
      context.answered();
      const lock = lockFrom(answer.node, sentAt);
      if (leader && lock.holder === leader.holder && lock.heldUntil > leader.heldUntil) {
        leader = lock;
        context.publish(keys.view(now(), leader));
      }
    };

    let index = await read();
    while (!signal.aborted) {
      const sentAt = now();
      let result;
      try {
        result = await call(
          `${base}?wait=true&recursive=true&waitIndex=${index + 1}`,
          watchMs,
        );
      } catch (e) {
        // No event within the watch window: a quiet scope, or a frozen etcd. A read tells which.
        if (e instanceof Error && "failure" in e && e.failure === "timeout" && !signal.aborted) {
          index = await read();
          continue;
        }
        throw e;
      }
      const { response, answer } = result;
      if (answer.errorCode === EVENT_INDEX_CLEARED) {
        index = await read();
        continue;
      }
      if (answer.errorCode !== undefined || !answer.action || !answer.node) {
        throw answerError(response, answer);
      }
      context.answered();
      const node = answer.node;
      const started = etcdIndex(response);
      index = typeof node.modifiedIndex === "number" ? node.modifiedIndex : index + 1;
      const key = relative(node.key);
      if (key === undefined) continue;
      if (/^(?:delete|compareAndDelete|expire)$/.test(answer.action)) {
        keys.delete(key);
        if (keys.holder === undefined) leader = undefined;
      } else if (node.dir) {
        continue;
      } else if (node.value !== undefined) {
        keys.set(key, node.value);
        if (key === LEADER_KEY) {
          const fresh = typeof node.modifiedIndex === "number" && node.modifiedIndex > started;
          if (fresh) leader = lockFrom(node, sentAt);
          else if (leader?.holder !== node.value) {
            index = await read();
            continue;
          }
          if (fresh && now() - sentAt > REREAD_AFTER_MS) {
            context.publish(keys.view(now(), leader));
            await reread();
            continue;
          }
        }
      }
      context.publish(keys.view(now(), leader));
    }
  };

  return new WatchLoop(settings, options, session);
}

/** The parsed JSON answer of etcd v2 (an event, a read, or an error). */
interface Answer {
  action?: string;
  node?: Node;
  errorCode?: number;
  message?: string;
}

function answerOf(response: HttpResponse): Answer {
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder().decode(response.body));
  } catch {
    throw new DcsError("invalid", `malformed answer: status ${response.status}, not JSON`);
  }
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
    answer.errorCode === 110;
  return new DcsError(auth ? "auth" : "invalid", what);
}
