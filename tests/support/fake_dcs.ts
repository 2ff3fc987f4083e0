// A DCS watcher the test drives: it publishes the views the test sets, as a real watcher would.
import type {
  DcsSettings,
  DcsView,
  DcsWatcher,
  DcsWatcherOptions,
  MemberKey,
} from "../../src/dcs/view.ts";

/** A watcher whose view, reachability and errors the test sets. */
export class FakeDcs implements DcsWatcher {
  readonly description: string;
  reachable = true;
  closed = false;
  #view?: DcsView;
  readonly #listeners = new Set<(view: DcsView, previous: DcsView | undefined) => void>();

  constructor(readonly settings: DcsSettings, readonly options: DcsWatcherOptions) {
    this.description = `fake ${settings.type} ${settings.namespace}/${settings.scope}`;
  }

  view(): DcsView | undefined {
    return this.#view;
  }

  subscribe(listener: (view: DcsView, previous: DcsView | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Publishes a view: `holder` holds the lock for `leftMs` more, members as given. */
  set(holder: string | undefined, leftMs: number, members: Record<string, MemberKey>): void {
    const now = performance.now();
    const previous = this.#view;
    this.#view = {
      confirmedAt: now,
      leader: holder === undefined ? undefined : { holder, heldUntil: now + leftMs },
      members: new Map(Object.entries(members)),
      ttl: 30,
      failsafeMode: false,
    };
    for (const listener of this.#listeners) listener(this.#view, previous);
  }

  /** A failed request, as a watcher reports one. */
  fail(message: string): void {
    this.reachable = false;
    this.options.onError?.("timeout", message);
  }

  close(): Promise<void> {
    this.closed = true;
    this.#listeners.clear();
    return Promise.resolve();
  }
}

/** A watch factory that records the watchers it starts. */
export function fakeWatch(): {
  started: FakeDcs[];
  watch: (s: DcsSettings, o: DcsWatcherOptions) => FakeDcs;
} {
  const started: FakeDcs[] = [];
  return { started, watch: (s, o) => (started.push(new FakeDcs(s, o)), started.at(-1)!) };
}
