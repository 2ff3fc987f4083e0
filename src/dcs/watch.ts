/**
 * Watch: the watcher for a DCS kind, one complete read for -check-config, and a view in one line.
 *
 * @module
 */
import { createEtcd2Watcher } from "./etcd2.ts";
import { createEtcd3Watcher } from "./etcd3.ts";
import type { DcsKind, DcsSettings, DcsView, DcsWatcher, DcsWatcherOptions } from "./view.ts";

const WATCHERS: Record<DcsKind, (s: DcsSettings, o: DcsWatcherOptions) => DcsWatcher> = {
  etcd: createEtcd2Watcher,
  etcd3: createEtcd3Watcher,
};

/** Starts the watcher of `settings.type`; it starts watching at once. */
export function createWatcher(settings: DcsSettings, options: DcsWatcherOptions): DcsWatcher {
  return WATCHERS[settings.type](settings, options);
}

/**
 * One complete view, read by a watcher started for it and closed after: resolves with the view,
 * or rejects with the last failure once `timeoutMs` has passed without one.
 */
export async function readView(
  settings: DcsSettings,
  timeoutMs: number,
  watch: (settings: DcsSettings, options: DcsWatcherOptions) => DcsWatcher = createWatcher,
): Promise<DcsView> {
  const { promise, resolve, reject } = Promise.withResolvers<DcsView>();
  let failure = "no answer";
  const watcher = watch(settings, { onError: (_, message) => failure = message });
  const unsubscribe = watcher.subscribe((view) => resolve(view));
  const current = watcher.view();
  if (current) resolve(current);
  const timer = setTimeout(
    () => reject(new Error(`no complete read within ${timeoutMs / 1000}s: ${failure}`)),
    timeoutMs,
  );
  try {
    return await promise;
  } finally {
    clearTimeout(timer);
    unsubscribe();
    await watcher.close();
  }
}

/**
 * `leader node1 (4.2 s left on the lock); member node2: replica, running, timeline 3` — what a view
 * says of the lock and of member `name`, at monotonic time `now`.
 */
export function summarize(view: DcsView, name: string, now: number): string {
  const lock = view.leader;
  const left = lock ? (lock.heldUntil - now) / 1000 : 0;
  const leader = !lock
    ? "no leader lock"
    : left > 0
    ? `leader ${lock.holder} (${left.toFixed(1)} s left on the lock)`
    : `leader key names ${lock.holder}, but no time is known left on its lock`;
  const member = view.members.get(name);
  const facts = member
    ? [member.role ?? "no role", member.state ?? "no state"].concat(
      member.timeline === undefined ? [] : [`timeline ${member.timeline}`],
    ).join(", ")
    : `no member key (members: ${[...view.members.keys()].join(", ") || "none"})`;
  const config = view.ttl === undefined ? "" : `; ttl ${view.ttl} s`;
  const failsafe = view.failsafeMode ? "; failsafe_mode on" : "";
  return `${leader}; member ${name}: ${facts}${config}${failsafe}`;
}
