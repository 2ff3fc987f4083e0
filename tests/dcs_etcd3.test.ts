import assert from "node:assert/strict";
import { createEtcd3Watcher } from "../src/dcs/etcd3.ts";
import type { EtcdWatcherOptions } from "../src/dcs/runner.ts";
import type { DcsSettings, DcsView, DcsWatcher } from "../src/dcs/view.ts";
import {
  b64,
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
const name = (what: string) => `dcs etcd3: ${what}${ignore ? " (ignored: no /usr/bin/etcd)" : ""}`;
const TTL = 3;
const FAST: EtcdWatcherOptions = {
  requestTimeoutMs: 500,
  pollIntervalMs: 300,
  backoffMs: 50,
  maxBackoffMs: 400,
};
const MEMBER = { role: "primary", state: "running", timeline: 4, xlog_location: 50331648 };

function settings(etcd: Etcd | string[], extra: Partial<DcsSettings> = {}): DcsSettings {
  const endpoints = Array.isArray(etcd) ? etcd : [etcd.url];
  return { type: "etcd3", endpoints, namespace: "/service", scope: "pg", ...extra };
}

/** Patroni's etcd3 writes for one member: a lease kept alive, the leader key written once with it. */
class HaLoop {
  lease = "";
  /** When the last keepalive was answered (the lease ends at most `ttl` s after). */
  lastRenewed = -Infinity;
  #writing = 0;
  #stop?: PromiseWithResolvers<void>;
  #loop?: Promise<void>;

  constructor(readonly etcd: Etcd, readonly member: string, readonly ttl = TTL) {}

  /** Latest time the lock may be held until, from what this member did. */
  truth(): number {
    return (this.#writing > 0 ? performance.now() : this.lastRenewed) + this.ttl * 1000;
  }

  async #renewing<T>(f: () => Promise<T>): Promise<T> {
    this.#writing++;
    // A request without an answer may still take effect: it stays counted.
    const result = await f();
    this.lastRenewed = performance.now();
    this.#writing--;
    return result;
  }

  /** Grants the lease and writes the leader key with it. */
  async take(): Promise<void> {
    await this.#renewing(async () => {
      this.lease = String((await this.etcd.v3("/v3/lease/grant", { TTL: this.ttl })).ID);
      await this.etcd.v3("/v3/kv/put", {
        key: b64("/service/pg/leader"),
        value: b64(this.member),
        lease: this.lease,
      });
    });
  }

  renew(): Promise<unknown> {
    return this.#renewing(() => this.etcd.v3("/v3/lease/keepalive", { ID: this.lease }));
  }

  async writeMember(data: Record<string, unknown> = MEMBER): Promise<void> {
    await this.etcd.v3("/v3/kv/put", {
      key: b64(`/service/pg/members/${this.member}`),
      value: b64(JSON.stringify(data)),
    });
  }

  /** Keeps the lease alive every `ms` until stop(). */
  start(ms = 500): void {
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

async function put(etcd: Etcd, key: string, value: string): Promise<void> {
  await etcd.v3("/v3/kv/put", { key: b64(`/service/pg/${key}`), value: b64(value) });
}

/** Fills the scope as Patroni does: leader (held by `leader.member`), members, status, config. */
async function seed(leader: HaLoop): Promise<void> {
  await leader.take();
  await leader.writeMember();
  await put(
    leader.etcd,
    "members/pg2",
    JSON.stringify({ role: "replica", state: "running", tags: { nofailover: true } }),
  );
  await put(leader.etcd, "members/broken", "{not json");
  await put(leader.etcd, "status", '{"optime":50331648,"slots":{}}');
  await put(leader.etcd, "config", JSON.stringify({ ttl: TTL, loop_wait: 1, failsafe_mode: true }));
}

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
    "the view has the lock, members, optime and config; a kept-alive lease moves the lock forward (the key never changes), never past the truth; an expired lease ends it",
  ),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    const loop = new HaLoop(etcd, "pg1");
    await seed(loop);
    const reports = new Reports();
    const watcher = createEtcd3Watcher(settings(etcd), { ...FAST, ...reports.options });
    try {
      assert.equal(watcher.view(), undefined);
      const truth = neverAboveTruth(watcher, loop);
      const first = await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      assert.ok(watcher.reachable);
      assert.deepEqual(Object.fromEntries(first.members), {
        pg1: { role: "primary", state: "running", timeline: 4, xlogLocation: 50331648, tags: {} },
        pg2: { role: "replica", state: "running", tags: { nofailover: true } },
      });
      assert.equal(first.leaderOptime, 50331648);
      assert.deepEqual([first.ttl, first.loopWait, first.failsafeMode], [TTL, 1, true]);
      const lag = loop.truth() - first.leader!.heldUntil;
      assert.ok(lag >= 0 && lag < 1500, `heldUntil ${lag} ms before the truth`);

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
      assert.ok(after >= TTL * 1000 - 1050, `the lock ended ${after} ms after the last keepalive`);
      assert.equal(gone.members.size, 2, "member keys without a lease stay");
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
    const watcher = createEtcd3Watcher(settings(etcd), { ...FAST, pollIntervalMs: 5000 });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      let started = performance.now();
      await etcd.v3("/v3/kv/deleterange", { key: b64("/service/pg/leader") });
      await pg2.take();
      const taken = await viewWhere(watcher, held("pg2"), "pg2 holding the lock");
      assert.ok(performance.now() - started < 1000, "seen by the watch, not the next poll");
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
      await etcd.v3("/v3/kv/deleterange", { key: b64("/service/pg/members/pg2") });
      await viewWhere(watcher, (v) => !v.members.has("pg2"), "pg2's member key gone");
    } finally {
      await watcher.close();
    }
  },
});

Deno.test({
  name: name(
    "auth: a token from the user and password, taken again after a restart lost it; a wrong password is an 'auth' failure",
  ),
  ignore,
  async fn() {
    await using etcd = await Etcd.start({ auth: "v3" });
    await seed(new HaLoop(etcd, "pg1", 30));
    const wrongReports = new Reports();
    const reports = new Reports();
    const wrong = createEtcd3Watcher(
      settings(etcd, { username: "root", password: "nope" }),
      { ...FAST, ...wrongReports.options },
    );
    const right = createEtcd3Watcher(
      settings(etcd, { username: "root", password: ROOT_PASSWORD }),
      { ...FAST, ...reports.options },
    );
    try {
      await viewWhere(right, held("pg1"), "pg1 holding the lock");
      await until(() => wrongReports.errors.length > 0, "the wrong password refused");
      assert.equal(wrongReports.errors[0].failure, "auth", JSON.stringify(wrongReports.errors));
      assert.equal(wrong.view(), undefined);

      await etcd.restart(); // simple tokens live in etcd's memory
      await until(() => reports.recovers > 0 && right.reachable, "reachable after the restart");
      await etcd.v3("/v3/kv/put", {
        key: b64("/service/pg/members/pg3"),
        value: b64('{"role":"replica"}'),
      });
      await viewWhere(right, (v) => v.members.has("pg3"), "a write after the restart");
      assert.ok(
        reports.errors.every((e) => e.failure !== "auth"),
        `a lost token is taken again, not a failure: ${JSON.stringify(reports.errors)}`,
      );
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
    const watcher = createEtcd3Watcher(settings(etcd, { ca, cert, key }), FAST);
    const without = createEtcd3Watcher(settings(etcd, { ca }), { ...FAST, ...reports.options });
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
    const loop = new HaLoop(etcd, "pg1", 30);
    await seed(loop);
    const reports = new Reports();
    const watcher = createEtcd3Watcher(settings(etcd), { ...FAST, ...reports.options });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      etcd.freeze();
      const frozenAt = performance.now();
      await until(() => !watcher.reachable, "unreachable while frozen", 3000);
      assert.equal(reports.errors[0].failure, "timeout", JSON.stringify(reports.errors));
      const during = watcher.view()!.leader!.heldUntil;
      assert.ok(during <= frozenAt + 30_000);
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(watcher.view()!.leader!.heldUntil, during, "not extended while frozen");
      etcd.thaw();
      await until(() => watcher.reachable && reports.recovers > 0, "recovered", 5000);
      await viewWhere(
        watcher,
        (v) => v.leader !== undefined && v.leader.heldUntil > during,
        "a fresh lease read after the thaw",
      );
    } finally {
      etcd.thaw();
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("a watch canceled by compaction: everything is read again, then watched"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(new HaLoop(etcd, "pg1", 30));
    await using relay = new Relay(etcd.port);
    const reports = new Reports();
    const watcher = createEtcd3Watcher(
      settings([`http://127.0.0.1:${relay.port}`]),
      { ...FAST, pollIntervalMs: 2000, requestTimeoutMs: 3000, ...reports.options },
    );
    // The first view is published before the watch is sent: hold it in the relay.
    const unsubscribe = watcher.subscribe(() => relay.hold());
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      unsubscribe();
      await put(etcd, "members/pg9", '{"role":"replica"}');
      await put(etcd, "members/pg8", '{"role":"replica"}');
      await etcd.compact();
      relay.release();
      const view = await viewWhere(
        watcher,
        (v) => v.members.has("pg9") && v.members.has("pg8"),
        "pg8 and pg9 after the compaction",
      );
      assert.equal(view.leader?.holder, "pg1");
      assert.deepEqual(reports.errors, []);
      const count = (target: string) => relay.targets.filter((t) => t === target).length;
      await until(() => count("/v3/watch") === 2, `a second watch: ${relay.targets.join(" ")}`);
      assert.equal(count("/v3/kv/range"), 2, relay.targets.join(" "));
      await put(etcd, "members/pg7", '{"role":"replica"}');
      await viewWhere(watcher, (v) => v.members.has("pg7"), "pg7: the new watch works");
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
    const watcher = createEtcd3Watcher(
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
  name: name("close() ends the watch stream and a request in flight to a frozen etcd at once"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(new HaLoop(etcd, "pg1", 30));
    const watcher = createEtcd3Watcher(settings(etcd), { ...FAST, requestTimeoutMs: 30_000 });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      etcd.freeze();
      await new Promise((r) => setTimeout(r, 400)); // a lease read is in flight
    } finally {
      const started = performance.now();
      await watcher.close();
      assert.ok(performance.now() - started < 500, show(watcher.view()));
      etcd.thaw();
    }
  },
});
