/**
 * The tests every etcd watcher passes against a real etcd, and the fake HA loop they share (a member that holds the lock and says how long it can be held at most).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { EtcdWatcherOptions } from "../../src/dcs/runner.ts";
import type { DcsKind, DcsSettings, DcsView, DcsWatcher } from "../../src/dcs/view.ts";
import {
  Etcd,
  HAS_ETCD,
  Reports,
  ROOT_PASSWORD,
  show,
  tlsClientOptions,
  until,
  viewWhere,
} from "./etcd.ts";
import { freePort, sleep } from "./glue.ts";
import { rawServer } from "./raw_server.ts";

/** The lock's ttl in the tests, in seconds. */
export const TTL = 3;

/**
 * One member's part of Patroni's HA loop: it takes the lock, renews it on a timer, writes its
 * member key; and knows the latest time the lock can be held until from what it wrote.
 */
export abstract class HaLoop {
  /** When the last write that extends the lock was answered. */
  lastRenewed = -Infinity;
  /** When each write that extended the lock was answered. */
  readonly renewals: number[] = [];
  #writing = 0;
  #stop?: PromiseWithResolvers<void>;
  #loop?: Promise<void>;

  constructor(readonly etcd: Etcd, readonly member: string, readonly ttl = TTL) {}

  /** Takes the free lock. */
  abstract take(): Promise<void>;
  /** Extends the lock it holds. */
  abstract renew(): Promise<unknown>;
  /** Writes `members/<key>`. */
  abstract put(key: string, value: string): Promise<void>;
  /** Deletes a key of the scope. */
  abstract remove(key: string): Promise<void>;

  /** Latest time the lock may be held until, from what this member wrote. */
  truth(): number {
    return (this.#writing > 0 ? performance.now() : this.lastRenewed) + this.ttl * 1000;
  }

  /** Runs a write that extends the lock; one without an answer may still take effect at any time, so it stays counted. */
  protected async extending<T>(write: () => Promise<T>): Promise<T> {
    this.#writing++;
    const result = await write();
    this.lastRenewed = performance.now();
    this.renewals.push(this.lastRenewed);
    this.#writing--;
    return result;
  }

  writeMember(data: Record<string, unknown>): Promise<void> {
    return this.put(`members/${this.member}`, JSON.stringify(data));
  }

  /** Renews the lock every `ms` until stop(). */
  start(ms: number): void {
    const stop = this.#stop = Promise.withResolvers();
    this.#loop = (async () => {
      for (;;) {
        await this.renew().catch(() => {});
        let timer: ReturnType<typeof setTimeout> | undefined;
        const tick = new Promise((r) => timer = setTimeout(r, ms));
        const stopped = await Promise.race([tick.then(() => false), stop.promise.then(() => true)]);
        clearTimeout(timer);
        if (stopped) return;
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stop?.resolve();
    await this.#loop;
  }
}

/** One kind of watcher, as the shared tests use it. */
export interface WatcherUnderTest {
  /** `dcs etcd v2`: the prefix of the test names. */
  label: string;
  create(settings: DcsSettings, options: EtcdWatcherOptions): DcsWatcher;
  settings(endpoints: string[], extra?: Partial<DcsSettings>): DcsSettings;
  /** Short timeouts for the tests. */
  fast: EtcdWatcherOptions;
  /** A member of the scope `/service/pg`. */
  member(etcd: Etcd, name: string, ttl?: number): HaLoop;
  /** The member key the leader writes (`master` or `primary`). */
  memberData: Record<string, unknown>;
  /** The API whose auth the watcher uses. */
  auth: "v2" | "v3";
}

/** Settings for the scope `/service/pg` of a `type` DCS at `endpoints`. */
export const scopeSettings =
  (type: DcsKind) => (endpoints: string[], extra: Partial<DcsSettings> = {}): DcsSettings => ({
    type,
    endpoints,
    namespace: "/service",
    scope: "pg",
    ...extra,
  });

/** Whether the view shows `holder` holding the lock now. */
export const held = (holder: string) => (v: DcsView): boolean =>
  v.leader?.holder === holder && v.leader.heldUntil > performance.now();

/** Fills the scope as Patroni does: the lock (held by `leader`), members, status, config. */
export async function seed(leader: HaLoop, data: Record<string, unknown>): Promise<void> {
  await leader.take();
  await leader.writeMember(data);
  await leader.put(
    "members/pg2",
    JSON.stringify({ role: "replica", state: "running", tags: { nofailover: true } }),
  );
  await leader.put("members/broken", "{not json");
  await leader.put("status", '{"optime":50331648,"slots":{}}');
  await leader.put("config", JSON.stringify({ ttl: TTL, loop_wait: 1, failsafe_mode: true }));
}

/** Registers the tests every etcd watcher passes. */
export function watcherTests(w: WatcherUnderTest): void {
  const ignore = !HAS_ETCD;
  const name = (what: string) =>
    `${w.label}: ${what}${ignore ? " (ignored: no /usr/bin/etcd)" : ""}`;
  const seeded = async (etcd: Etcd, ttl = 30) => {
    const loop = w.member(etcd, "pg1", ttl);
    await seed(loop, w.memberData);
    return loop;
  };

  Deno.test({
    name: name(
      "the view has the lock, members, optime and config; a renewed lock moves forward, never past the truth; an unrenewed one ends at expiry",
    ),
    ignore,
    async fn() {
      await using etcd = await Etcd.start();
      const loop = await seeded(etcd, TTL);
      const reports = new Reports();
      const watcher = w.create(w.settings([etcd.url]), {
        ...w.fast,
        requestTimeoutMs: 3000, // no failure expected, even on a loaded machine
        ...reports.options,
      });
      try {
        assert.equal(watcher.view(), undefined);
        const violations: string[] = [];
        watcher.subscribe((view) => {
          if (view.leader?.holder === "pg1" && view.leader.heldUntil > loop.truth()) {
            violations.push(`${view.leader.heldUntil} > ${loop.truth()}: ${show(view)}`);
          }
        });
        const first = await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
        assert.ok(watcher.reachable);
        const { role, state, timeline, xlog_location: xlogLocation } = w.memberData;
        assert.deepEqual(Object.fromEntries(first.members), {
          pg1: { role, state, timeline, xlogLocation, tags: {} },
          pg2: { role: "replica", state: "running", tags: { nofailover: true } },
        });
        assert.equal(first.leaderOptime, 50331648);
        assert.deepEqual([first.ttl, first.loopWait, first.failsafeMode], [TTL, 1, true]);
        const lag = loop.truth() - first.leader!.heldUntil;
        assert.ok(lag >= 0 && lag < 2000, `heldUntil ${lag} ms before the truth`);

        loop.start(400);
        const later = await viewWhere(
          watcher,
          (v) => v.leader !== undefined && v.leader.heldUntil > first.leader!.heldUntil + 1500,
          "heldUntil moved forward",
        );
        assert.equal(later.leader?.holder, "pg1");
        await loop.stop();
        const last = loop.lastRenewed;
        const gone = await viewWhere(watcher, (v) => v.leader === undefined, "no leader", 8000);
        const after = performance.now() - last;
        assert.ok(after >= TTL * 1000 - 100, `the lock ended ${after} ms after the last renewal`);
        assert.equal(gone.members.size, 2, "member keys stay");
        assert.deepEqual(violations, []);
        assert.deepEqual(reports.errors, []);
      } finally {
        await watcher.close();
        await loop.stop();
      }
    },
  });

  Deno.test({
    name: name("a leader change and a member change show at once"),
    ignore,
    async fn() {
      await using etcd = await Etcd.start();
      const pg1 = await seeded(etcd);
      const pg2 = w.member(etcd, "pg2", 30);
      // No periodic read within the test's second: what it sees, the watch saw.
      const watcher = w.create(w.settings([etcd.url]), { ...w.fast, pollIntervalMs: 5000 });
      try {
        await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
        let started = performance.now();
        await pg1.remove("leader");
        await pg2.take();
        const taken = await viewWhere(watcher, held("pg2"), "pg2 holding the lock");
        assert.ok(performance.now() - started < 1000, "seen by the watch, not a later read");
        assert.ok(taken.leader!.heldUntil > performance.now() + 20_000);
        started = performance.now();
        await pg1.writeMember({ ...w.memberData, role: "replica", state: "starting" });
        const changed = await viewWhere(
          watcher,
          (v) => v.members.get("pg1")?.role === "replica",
          "pg1 a replica",
        );
        assert.ok(performance.now() - started < 1000);
        assert.equal(changed.members.get("pg1")?.state, "starting");
        await pg1.remove("members/pg2");
        await viewWhere(watcher, (v) => !v.members.has("pg2"), "pg2's member key gone");
      } finally {
        await watcher.close();
      }
    },
  });

  Deno.test({
    name: name(
      "a lock renewed every second, nothing else written: the time left it shows lags the truth by etcd's whole second (and the poll interval), not by the time from one renewal to the next",
    ),
    ignore,
    async fn() {
      await using etcd = await Etcd.start();
      const ttl = 5;
      const loop = await seeded(etcd, ttl);
      const watcher = w.create(w.settings([etcd.url]), {
        ...w.fast,
        requestTimeoutMs: 3000,
        watchTimeoutMs: 20_000,
      });
      try {
        await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
        loop.start(1000);
        await until(() => loop.renewals.length >= 3, "the lock renewed");
        const from = performance.now();
        let least = Infinity;
        while (performance.now() < from + 5000) {
          const lock = watcher.view()?.leader;
          least = Math.min(least, (lock?.heldUntil ?? -Infinity) - performance.now());
          await sleep(20);
        }
        await loop.stop();
        const times = loop.renewals.filter((t) => t >= from - 2000);
        const longest = Math.max(...times.slice(1).map((t, k) => t - times[k]));
        // the lock is known held until a renewal's time + ttl less etcd's rounding (1 s), at
        // least until the next renewal is seen (the longest gap, a request's time, a poll)
        const bound = ttl * 1000 - 1000 - longest - (w.fast.pollIntervalMs ?? 0) - 250;
        assert.ok(
          least >= bound,
          `${least.toFixed(0)} ms left at the least, renewals up to ${
            longest.toFixed(0)
          } ms apart (bound ${bound.toFixed(0)} ms)`,
        );
      } finally {
        await watcher.close();
        await loop.stop();
      }
    },
  });

  Deno.test({
    name: name("auth: the right password reads, a wrong one is an 'auth' failure"),
    ignore,
    async fn() {
      await using etcd = await Etcd.start({ auth: w.auth });
      await seeded(etcd);
      // etcd checks a bcrypt password on every v2 request and each authenticate: slow under load.
      const options = { ...w.fast, requestTimeoutMs: 3000 };
      const reports = new Reports();
      const wrong = w.create(
        w.settings([etcd.url], { username: "root", password: "nope" }),
        { ...options, ...reports.options },
      );
      const right = w.create(
        w.settings([etcd.url], { username: "root", password: ROOT_PASSWORD }),
        options,
      );
      try {
        await viewWhere(right, held("pg1"), "pg1 holding the lock");
        await until(
          () => reports.errors.some((e) => e.failure === "auth"),
          `the wrong password refused: ${JSON.stringify(reports.errors)}`,
        );
        assert.equal(wrong.view(), undefined);
        assert.equal(wrong.reachable, false);
      } finally {
        await wrong.close();
        await right.close();
      }
    },
  });

  Deno.test({
    name: name("TLS with a client certificate (etcd's --client-cert-auth); none is refused"),
    ignore,
    async fn() {
      await using etcd = await Etcd.start({ tls: true });
      await seeded(etcd);
      const { ca, cert, key } = tlsClientOptions() as { ca: string; cert: string; key: string };
      const reports = new Reports();
      const watcher = w.create(w.settings([etcd.url], { ca, cert, key }), w.fast);
      const without = w.create(w.settings([etcd.url], { ca }), { ...w.fast, ...reports.options });
      try {
        const view = await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
        assert.equal(view.members.size, 2);
        await until(() => reports.errors.length > 0, "no client certificate refused");
        assert.match(reports.errors[0].failure, /^(tls|error)$/, JSON.stringify(reports.errors));
        assert.equal(without.view(), undefined);
      } finally {
        await watcher.close();
        await without.close();
      }
    },
  });

  Deno.test({
    name: name(
      "a frozen etcd: requests time out, unreachable, the lock not extended; after SIGCONT it recovers",
    ),
    ignore,
    async fn() {
      await using etcd = await Etcd.start();
      await seeded(etcd);
      const reports = new Reports();
      const watcher = w.create(w.settings([etcd.url]), { ...w.fast, ...reports.options });
      try {
        await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
        etcd.freeze();
        await until(() => !watcher.reachable, "unreachable while frozen", 5000);
        assert.equal(reports.errors[0].failure, "timeout", JSON.stringify(reports.errors));
        const during = watcher.view()!.leader!.heldUntil;
        await sleep(700);
        assert.equal(watcher.view()!.leader!.heldUntil, during, "not extended while frozen");
        etcd.thaw();
        await until(() => watcher.reachable && reports.recovers > 0, "recovered", 5000);
        await viewWhere(
          watcher,
          (v) => v.leader !== undefined && v.leader.heldUntil > during,
          "a fresh read after the thaw",
        );
      } finally {
        etcd.thaw();
        await watcher.close();
      }
    },
  });

  Deno.test({
    name: name("several endpoints: a refused and a frozen one are passed over for one that works"),
    ignore,
    async fn() {
      await using etcd = await Etcd.start();
      await seeded(etcd);
      await using frozen = rawServer(() => new Promise((r) => setTimeout(r, 3000)));
      const reports = new Reports();
      const watcher = w.create(
        w.settings([
          `http://127.0.0.1:${freePort()}`,
          `http://127.0.0.1:${frozen.port}`,
          etcd.url,
        ]),
        { ...w.fast, ...reports.options },
      );
      try {
        await viewWhere(watcher, held("pg1"), "pg1 holding the lock", 5000);
        const failures = reports.errors.map((e) => e.failure);
        assert.deepEqual(failures.slice(0, 2), ["refused", "timeout"], failures.join());
        assert.ok(reports.recovers >= 1);
      } finally {
        await watcher.close();
      }
    },
  });

  Deno.test({
    name: name("close() ends every request in flight to a frozen etcd at once"),
    ignore,
    async fn() {
      await using etcd = await Etcd.start();
      await seeded(etcd);
      const watcher = w.create(w.settings([etcd.url]), { ...w.fast, requestTimeoutMs: 30_000 });
      try {
        await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
        etcd.freeze();
        await sleep(400); // a request is in flight
      } finally {
        const started = performance.now();
        await watcher.close();
        assert.ok(performance.now() - started < 500, show(watcher.view()));
        etcd.thaw();
      }
    },
  });
}
