// etcd3 watcher (Patroni's `etcd3:`): a range read of the scope through etcd's JSON gateway, a watch stream from the next revision, and the leader lease's time to live read every ttl/20, at most once a second.
import type { HttpResponse } from "../http_client.ts";
import { LEADER_KEY, ScopeKeys } from "./keys.ts";
import {
  DcsError,
  type EtcdWatcherOptions,
  fromBase64,
  pause,
  Resync,
  type SessionContext,
  toBase64,
  WatchLoop,
} from "./runner.ts";
import type { DcsSettings, DcsWatcher, LeaderLock } from "./view.ts";

/** Most bytes of one message of the watch stream. */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

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
  /** The lease id ("0": none). */
  lease: string;
  lock: LeaderLock;
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
  const dir = `${settings.namespace}/${settings.scope}/`;
  const leaderKey = `${dir}${LEADER_KEY}`;
  const range = { key: toBase64(dir), range_end: toBase64(prefixEnd(dir)) };
  const timeoutMs = options.requestTimeoutMs ?? 2000;
  const watchMs = options.watchTimeoutMs ?? 60_000;
  /** The leader lease's granted TTL (seconds) as last read. */
  let grantedTtl: number | undefined;
  const intervalMs = () => options.pollIntervalMs ?? pollInterval(grantedTtl);
  /** The gateway's path prefix, from `/version` (kept across sessions). */
  let api: string | undefined;
  /** The auth token (kept across sessions until etcd refuses it). */
  let token: string | undefined;

  const session = async (context: SessionContext): Promise<void> => {
    const { client, signal, now } = context;

    const post = async (path: string, body: unknown, ms = timeoutMs): Promise<unknown> => {
      for (let attempt = 0;; attempt++) {
        const headers: Record<string, string> = { "Content-Type": "application/json" };
        if (token) headers.Authorization = token;
        const response = await client.request({
          method: "POST",
          target: `${api}${path}`,
          headers,
          body: JSON.stringify(body),
          timeoutMs: ms,
          signal,
        });
        const answer = jsonOf(response);
        if (response.status === 200) return answer;
        const error = gatewayError(response, answer);
        if (
          attempt === 0 && settings.username !== undefined && path !== "/auth/authenticate" &&
          isTokenError(error.message)
        ) {
          await authenticate(); // expired or missing token: once more with a new one
          continue;
        }
        throw error;
      }
    };

    const authenticate = async () => {
      token = undefined;
      const answer = await post("/auth/authenticate", {
        name: settings.username,
        password: settings.password ?? "",
      }) as { token?: unknown };
      if (typeof answer.token !== "string" || /[\r\n]/.test(answer.token)) {
        throw new DcsError("auth", "etcd's authenticate answer has no token");
      }
      token = answer.token;
    };

    if (api === undefined) api = await gatewayPrefix(context, timeoutMs);
    if (settings.username !== undefined && token === undefined) await authenticate();

    const keys = new ScopeKeys();
    let leader: Leader | undefined;
    /** Wakes the interval loop early (a new leader's lease to read). */
    let wake: (() => void) | undefined;

    const relative = (key: string) => key.startsWith(dir) ? key.slice(dir.length) : undefined;
    const publish = () => context.publish(keys.view(now(), leader?.lock));

    /** Reads the leader's lease (or, without a lease, the leader key) and publishes. */
    const poll = async () => {
      const asked = leader;
      const sentAt = now();
      if (!asked || asked.lease === "0") {
        const answer = await post("/kv/range", { key: toBase64(leaderKey) }) as {
          kvs?: Kv[];
        };
        context.answered();
        const kv = answer.kvs?.[0];
        const holder = kv?.value !== undefined ? fromBase64(kv.value) : undefined;
        if (leader !== asked) return; // the watch changed it meanwhile
        if (holder !== asked?.holder || (kv?.lease ?? "0") !== (asked?.lease ?? "0")) {
          throw new Resync("the leader key changed unseen by the watch");
        }
        if (asked) asked.lock = { holder: asked.holder, heldUntil: sentAt };
        return publish();
      }
      const answer = await post("/lease/timetolive", { ID: asked.lease, keys: true }) as {
        TTL?: string;
        grantedTTL?: string;
        keys?: string[];
      };
      context.answered();
      const granted = Number(answer.grantedTTL);
      if (Number.isInteger(granted) && granted > 0) grantedTtl = granted;
      if (leader !== asked) return;
      const ttl = Number(answer.TTL ?? 0); // the gateway leaves out fields that are zero
      if (!Number.isInteger(ttl)) throw new DcsError("invalid", "malformed answer: bad lease TTL");
      if (ttl < 1) {
        // 0: less than a second left, or past its expiry and not yet revoked (etcd revokes
        // expired leases every 500 ms): not known held.
        if (ttl === 0) {
          asked.lock = { holder: asked.holder, heldUntil: -Infinity };
          return publish();
        }
        // The lease is gone: so is the key (etcd deletes it; the watch will say so too).
        keys.delete(LEADER_KEY);
        leader = undefined;
        return publish();
      }
      const attached = (answer.keys ?? []).some((k) => fromBase64(k) === leaderKey);
      if (!attached) throw new Resync("the leader's lease no longer holds the leader key");
      asked.lock = { holder: asked.holder, heldUntil: sentAt + ttl * 1000 };
      publish();
    };

    const apply = (kv: Kv, deleted: boolean) => {
      const key = relative(fromBase64(kv.key ?? ""));
      if (key === undefined) return;
      if (deleted) {
        keys.delete(key);
        if (key === LEADER_KEY) leader = undefined;
        return;
      }
      const value = fromBase64(kv.value ?? "");
      keys.set(key, value);
      if (key !== LEADER_KEY) return;
      const lease = kv.lease ?? "0";
      if (leader?.holder === value && leader.lease === lease) return;
      // A new holder or lease: its time left is not known until its lease is read (at once).
      leader = { holder: value, lease, lock: { holder: value, heldUntil: -Infinity } };
    };

    // 1. Everything, then the leader's lease, then the view.
    const answer = await post("/kv/range", range) as {
      header?: { revision?: string };
      kvs?: Kv[];
    };
    const revision = Number(answer.header?.revision);
    if (!Number.isSafeInteger(revision)) {
      throw new DcsError("invalid", "malformed answer: no revision in the range answer");
    }
    for (const kv of answer.kvs ?? []) apply(kv, false);
    context.answered();
    if (leader) await poll();
    else publish();

    // 2. The watch, in the background; the lease or leader key read each interval.
    const stop = new AbortController();
    const watchEnd = Promise.withResolvers<never>();
    const watching = watch(revision + 1).then(
      () => watchEnd.reject(new DcsError("error", "the watch stream ended")),
      (e) => watchEnd.reject(e),
    );
    watchEnd.promise.catch(() => {});
    try {
      while (!signal.aborted) {
        const woken = new Promise<void>((resolve) => wake = resolve);
        const tick = pause(intervalMs(), signal);
        await Promise.race([tick, woken, watchEnd.promise]);
        wake = undefined;
        if (signal.aborted) break;
        const polled = poll();
        polled.catch(() => {}); // when the watch ends first, the session's end settles it
        await Promise.race([polled, watchEnd.promise]);
      }
    } finally {
      wake = undefined;
      stop.abort();
      await watching;
    }

    async function watch(start: number): Promise<void> {
      let pending = new Uint8Array(0);
      let pendingLength = 0;
      const decoder = new TextDecoder();
      const onMessage = (text: string) => {
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
        if (!result.events?.length) return;
        const before = leader;
        for (const event of result.events) apply(event.kv ?? {}, event.type === "DELETE");
        publish();
        if (leader && leader !== before) wake?.();
      };
      await client.stream({
        method: "POST",
        target: `${api}/watch`,
        headers: token ? { "Content-Type": "application/json", Authorization: token } : {
          "Content-Type": "application/json",
        },
        body: JSON.stringify({ create_request: { ...range, start_revision: String(start) } }),
        timeoutMs,
        idleMs: watchMs,
        signal: AbortSignal.any([signal, stop.signal]),
        onData: (piece) => {
          // Messages are JSON objects one per line; keep a partial one (bounded).
          let from = 0;
          for (let i = piece.indexOf(10); i !== -1; i = piece.indexOf(10, i + 1)) {
            const part = piece.subarray(from, i);
            const line = pendingLength > 0 ? joined(part) : part;
            pendingLength = 0;
            from = i + 1;
            const text = decoder.decode(line).trim();
            if (text !== "") onMessage(text);
          }
          if (from < piece.length) keep(piece.subarray(from));
        },
      }).then((response) => {
        if (response.status !== 200) throw gatewayError(response, safeJson(response));
      }, (e) => {
        if (e instanceof Error && "failure" in e && e.failure === "timeout" && !signal.aborted) {
          throw new Resync("the watch stream was silent");
        }
        throw e;
      });

      function keep(part: Uint8Array) {
        if (pendingLength + part.length > MAX_MESSAGE_BYTES) {
          throw new DcsError("invalid", `watch message larger than ${MAX_MESSAGE_BYTES} bytes`);
        }
        if (pendingLength + part.length > pending.length) {
          const next = new Uint8Array(Math.max(pendingLength + part.length, pending.length * 2));
          next.set(pending.subarray(0, pendingLength));
          pending = next;
        }
        pending.set(part, pendingLength);
        pendingLength += part.length;
      }

      function joined(part: Uint8Array): Uint8Array {
        keep(part);
        return pending.subarray(0, pendingLength);
      }
    }
  };

  return new WatchLoop(settings, options, session);
}

/** How often a lease granted `ttl` seconds is read (ms): a twentieth of it, at most once a second. */
function pollInterval(ttl: number | undefined): number {
  return ttl === undefined ? 1000 : Math.min(1000, Math.max(100, ttl * 50));
}

/** One message's `result` on the watch stream. */
interface WatchResult {
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  compact_revision?: string;
  events?: { type?: string; kv?: Kv }[];
}

/** The end of a prefix range: the prefix with its last byte plus one. */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** `/v3` (etcd 3.4+), `/v3beta` (3.3) or `/v3alpha` (before), from the cluster's version. */
async function gatewayPrefix(context: SessionContext, timeoutMs: number): Promise<string> {
  const response = await context.client.request({
    target: "/version",
    timeoutMs,
    signal: context.signal,
  });
  const answer = safeJson(response) as { etcdcluster?: unknown };
  const version = typeof answer.etcdcluster === "string"
    ? answer.etcdcluster.match(/^(\d+)\.(\d+)/)
    : null;
  if (response.status !== 200 || !version) return "/v3";
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (major > 3 || minor >= 4) return "/v3";
  return minor === 3 ? "/v3beta" : "/v3alpha";
}

function jsonOf(response: HttpResponse): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(response.body));
  } catch {
    throw new DcsError("invalid", `malformed answer: status ${response.status}, not JSON`);
  }
}

function safeJson(response: HttpResponse): Record<string, unknown> {
  try {
    const data = JSON.parse(new TextDecoder().decode(response.body));
    return typeof data === "object" && data !== null ? data : {};
  } catch {
    return {};
  }
}

function isTokenError(message: string): boolean {
  return /invalid auth token|user name is empty|token/i.test(message);
}

function gatewayError(response: HttpResponse, answer: unknown): DcsError {
  const data = (typeof answer === "object" && answer !== null ? answer : {}) as Record<
    string,
    unknown
  >;
  const text = String(data.error ?? data.message ?? "").slice(0, 200);
  const auth = response.status === 401 || response.status === 403 ||
    /auth|permission denied|user name|password/i.test(text);
  return new DcsError(auth ? "auth" : "invalid", `etcd answered ${response.status}: ${text}`);
}
