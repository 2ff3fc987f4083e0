import assert from "node:assert/strict";
import { createEtcd2Watcher } from "../src/dcs/etcd2.ts";
import type { EtcdWatcherOptions } from "../src/dcs/runner.ts";
import type { DcsSettings, DcsView, DcsWatcher } from "../src/dcs/view.ts";
import {
  Etcd,
  HAS_ETCD,
  Relay,
  Reports,
  ROOT_PASSWORD,
  show,
  tlsClientOptions,
  until,
  viewWhere,
} from "./support/etcd.ts";
import { freePort } from "./support/glue.ts";
import { rawServer } from "./support/raw_server.ts";

const ignore = !HAS_ETCD;
const name = (what: string) =>
  `dcs etcd v2: ${what}${ignore ? " (ignored: no /usr/bin/etcd)" : ""}`;
const TTL = 3;
const FAST: EtcdWatcherOptions = {
  requestTimeoutMs: 500,
  watchTimeoutMs: 1500,
  backoffMs: 50,
  maxBackoffMs: 400,
};
const MEMBER = { role: "master", state: "running", timeline: 4, xlog_location: 50331648 };

function settings(etcd: Etcd | string[], extra: Partial<DcsSettings> = {}): DcsSettings {
  const endpoints = Array.isArray(etcd) ? etcd : [etcd.url];
  return { type: "etcd", endpoints, namespace: "/service", scope: "pg", ...extra };
}

/** Patroni's etcd v2 writes for one member: the leader lock (ttl, renewed with prevValue) and its member key. */
class HaLoop {
  /** When the last write of the lock was answered (its expiry is at most that + ttl). */
  lastWritten = -Infinity;
  #writing = 0;
  #stop?: PromiseWithResolvers<void>;
  #loop?: Promise<void>;

  constructor(readonly etcd: Etcd, readonly member: string, readonly ttl = TTL) {}

  /** Latest time the lock may be held until, from what this loop wrote. */
  truth(): number {
    return (this.#writing > 0 ? performance.now() : this.lastWritten) + this.ttl * 1000;
  }

  async #lock(query: string): Promise<boolean> {
    this.#writing++;
    // A write without an answer may still be applied, at any later time: it stays counted.
    const { status } = await this.etcd.v2(
      "PUT",
      `/service/pg/leader?ttl=${this.ttl}&${query}`,
      { value: this.member },
    );
    if (status < 300) this.lastWritten = performance.now();
    this.#writing--;
    return status < 300;
  }

  /** Takes the lock if free. */
  take(): Promise<boolean> {
    return this.#lock("prevExist=false");
  }

  /** Renews the lock it holds. */
  renew(): Promise<boolean> {
    return this.#lock(`prevValue=${this.member}`);
  }

  async writeMember(data: Record<string, unknown> = MEMBER): Promise<void> {
    await this.etcd.v2("PUT", `/service/pg/members/${this.member}?ttl=${this.ttl * 10}`, {
      value: JSON.stringify(data),
    });
  }

  /** Renews the lock every `ms` until stop(). */
  start(ms = 500): void {
    const stop = this.#stop = Promise.withResolvers();
    this.#loop = (async () => {
      for (;;) {
        await this.renew().catch(() => false);
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

/** Fills the scope as Patroni does: leader (held by `leader.member`), members, status, config. */
async function seed(leader: HaLoop): Promise<void> {
  assert.ok(await leader.take());
  await leader.writeMember();
  await leader.etcd.v2("PUT", "/service/pg/members/pg2", {
    value: JSON.stringify({ role: "replica", state: "running", tags: { nofailover: true } }),
  });
  await leader.etcd.v2("PUT", "/service/pg/members/broken", { value: "{not json" });
  await leader.etcd.v2("PUT", "/service/pg/status", { value: '{"optime":50331648,"slots":{}}' });
  await leader.etcd.v2("PUT", "/service/pg/config", {
    value: JSON.stringify({ ttl: TTL, loop_wait: 1, failsafe_mode: true }),
  });
}

/** Checks on every view that the lock is never said held past what the writer allows. */
function neverAboveTruth(watcher: DcsWatcher, loop: HaLoop): { violations: string[] } {
  const record = { violations: [] as string[] };
  watcher.subscribe((view) => {
    if (view.leader?.holder === loop.member && view.leader.heldUntil > loop.truth()) {
      record.violations.push(`${view.leader.heldUntil} > ${loop.truth()}`);
    }
  });
  return record;
}

const held = (holder: string) => (v: DcsView) =>
  v.leader?.holder === holder && v.leader.heldUntil > performance.now();

Deno.test({
  name: name(
    "the view has the lock, members, optime and config; a renewed lock moves forward, never past the truth; an unrenewed one ends at expiry",
  ),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    const loop = new HaLoop(etcd, "pg1");
    await seed(loop);
    const reports = new Reports();
    const watcher = createEtcd2Watcher(settings(etcd), { ...FAST, ...reports.options });
    try {
      assert.equal(watcher.view(), undefined);
      const truth = neverAboveTruth(watcher, loop);
      const first = await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      assert.ok(watcher.reachable);
      assert.deepEqual(Object.fromEntries(first.members), {
        pg1: { role: "master", state: "running", timeline: 4, xlogLocation: 50331648, tags: {} },
        pg2: { role: "replica", state: "running", tags: { nofailover: true } },
      });
      assert.equal(first.leaderOptime, 50331648);
      assert.deepEqual([first.ttl, first.loopWait, first.failsafeMode], [TTL, 1, true]);
      // Read: (ttl - 1) s from when the read was sent, the write was before it.
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
      const last = loop.lastWritten;
      const gone = await viewWhere(watcher, (v) => v.leader === undefined, "no leader", 8000);
      const after = performance.now() - last;
      assert.ok(after >= TTL * 1000 - 50, `the lock ended ${after} ms after the last renewal`);
      assert.equal(gone.members.size, 2, "member keys stay");
      assert.deepEqual(truth.violations, []);
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
    const pg1 = new HaLoop(etcd, "pg1", 30);
    const pg2 = new HaLoop(etcd, "pg2", 30);
    await seed(pg1);
    const watcher = createEtcd2Watcher(settings(etcd), FAST);
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      let started = performance.now();
      await etcd.v2("DELETE", "/service/pg/leader?prevValue=pg1");
      assert.ok(await pg2.take());
      const taken = await viewWhere(watcher, held("pg2"), "pg2 holding the lock");
      assert.ok(performance.now() - started < 1000, "seen by the watch, not a later read");
      assert.ok(taken.leader!.heldUntil > performance.now() + 20_000);
      started = performance.now();
      await pg1.writeMember({ ...MEMBER, role: "replica", state: "starting" });
      const changed = await viewWhere(
        watcher,
        (v) => v.members.get("pg1")?.role === "replica",
        "pg1 a replica",
      );
      assert.ok(performance.now() - started < 1000);
      assert.equal(changed.members.get("pg1")?.state, "starting");
      await etcd.v2("DELETE", "/service/pg/members/pg2");
      await viewWhere(watcher, (v) => !v.members.has("pg2"), "pg2's member key gone");
    } finally {
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("basic auth: the right password reads, a wrong one is an 'auth' failure"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start({ auth: "v2" });
    await seed(new HaLoop(etcd, "pg1", 30));
    const reports = new Reports();
    const wrong = createEtcd2Watcher(
      settings(etcd, { username: "root", password: "nope" }),
      { ...FAST, ...reports.options },
    );
    const right = createEtcd2Watcher(
      settings(etcd, { username: "root", password: ROOT_PASSWORD }),
      FAST,
    );
    try {
      await viewWhere(right, held("pg1"), "pg1 holding the lock");
      await until(() => reports.errors.length > 0, "the wrong password refused");
      assert.equal(reports.errors[0].failure, "auth", JSON.stringify(reports.errors));
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
    await seed(new HaLoop(etcd, "pg1", 30));
    const { ca, cert, key } = tlsClientOptions() as { ca: string; cert: string; key: string };
    const reports = new Reports();
    const watcher = createEtcd2Watcher(settings(etcd, { ca, cert, key }), FAST);
    const without = createEtcd2Watcher(settings(etcd, { ca }), { ...FAST, ...reports.options });
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
  name: name("etcd restarted: the watcher reconnects, reads again and watches on"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    const loop = new HaLoop(etcd, "pg1", 30);
    await seed(loop);
    const reports = new Reports();
    const watcher = createEtcd2Watcher(settings(etcd), { ...FAST, ...reports.options });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      await etcd.stop();
      await until(() => !watcher.reachable, "unreachable while etcd is down");
      await etcd.restart();
      await until(() => watcher.reachable, "reachable again", 10_000);
      assert.ok(reports.recovers >= 1);
      assert.ok(reports.errors.length >= 1);
      await new HaLoop(etcd, "pg1", 30).writeMember({ ...MEMBER, state: "restarted" });
      await viewWhere(watcher, (v) => v.members.get("pg1")?.state === "restarted", "a new write");
    } finally {
      await watcher.close();
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
    const loop = new HaLoop(etcd, "pg1", 30);
    await seed(loop);
    const reports = new Reports();
    const watcher = createEtcd2Watcher(settings(etcd), { ...FAST, ...reports.options });
    try {
      const before = await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      etcd.freeze();
      await until(() => !watcher.reachable, "unreachable while frozen", 5000);
      assert.equal(reports.errors[0].failure, "timeout", JSON.stringify(reports.errors));
      assert.ok(watcher.view()!.leader!.heldUntil <= before.leader!.heldUntil + 1);
      etcd.thaw();
      await until(() => watcher.reachable && reports.recovers > 0, "recovered", 5000);
      await viewWhere(
        watcher,
        (v) => v.leader !== undefined && v.leader.heldUntil > before.leader!.heldUntil,
        "a fresh read after the thaw",
      );
    } finally {
      etcd.thaw();
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("a watch index cleared from etcd's 1000 events: everything is read again"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(new HaLoop(etcd, "pg1", 30));
    await using relay = new Relay(etcd.port);
    const reports = new Reports();
    const watcher = createEtcd2Watcher(
      settings([`http://127.0.0.1:${relay.port}`]),
      { ...FAST, watchTimeoutMs: 20_000, ...reports.options },
    );
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      relay.hold(); // the watcher's next watch waits in the relay
      for (let i = 0; i < 1100; i++) {
        await etcd.v2("PUT", "/service/pg/other", { value: String(i) });
      }
      await etcd.v2("PUT", "/service/pg/members/pg9", { value: '{"role":"replica"}' });
      const before = relay.targets.length;
      relay.release();
      await viewWhere(watcher, (v) => v.members.has("pg9"), "pg9 after the cleared index", 5000);
      assert.deepEqual(reports.errors, []);
      const requests = relay.targets.length - before;
      assert.ok(requests < 10, `${requests} requests: one read, not an event at a time`);
    } finally {
      relay.release();
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("several endpoints: a refused and a frozen one are passed over for one that works"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(new HaLoop(etcd, "pg1", 30));
    await using frozen = rawServer(() => new Promise((r) => setTimeout(r, 3000)));
    const reports = new Reports();
    const watcher = createEtcd2Watcher(
      settings([
        `http://127.0.0.1:${freePort()}`,
        `http://127.0.0.1:${frozen.port}`,
        etcd.url,
      ]),
      { ...FAST, ...reports.options },
    );
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock", 5000);
      assert.deepEqual(reports.errors.map((e) => e.failure), ["refused", "timeout"]);
      assert.equal(reports.recovers, 1);
    } finally {
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("close() ends a request in flight to a frozen etcd at once"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(new HaLoop(etcd, "pg1", 30));
    const watcher = createEtcd2Watcher(settings(etcd), { ...FAST, requestTimeoutMs: 30_000 });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      etcd.freeze();
    } finally {
      const started = performance.now();
      await watcher.close();
      assert.ok(performance.now() - started < 500, show(watcher.view()));
      etcd.thaw();
    }
  },
});
