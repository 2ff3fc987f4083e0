import assert from "node:assert/strict";
import { createEtcd2Watcher } from "../src/dcs/etcd2.ts";
import { Etcd, HAS_ETCD, Relay, Reports, until, viewWhere } from "./support/etcd.ts";
import {
  HaLoop,
  held,
  scopeSettings,
  seed,
  watcherTests,
  type WatcherUnderTest,
} from "./support/watcher_suite.ts";

const ignore = !HAS_ETCD;
const name = (what: string) =>
  `dcs etcd v2: ${what}${ignore ? " (ignored: no /usr/bin/etcd)" : ""}`;
const MEMBER = { role: "master", state: "running", timeline: 4, xlog_location: 50331648 };

/** Patroni's etcd v2 writes: the leader key with a ttl, renewed with prevValue; keys by form PUT. */
class Etcd2Member extends HaLoop {
  async #lock(query: string): Promise<void> {
    const { status, json } = await this.etcd.v2(
      "PUT",
      `/service/pg/leader?ttl=${this.ttl}&${query}`,
      { value: this.member },
    );
    if (status >= 300) throw new Error(`${this.member} cannot lock: ${JSON.stringify(json)}`);
  }

  take(): Promise<void> {
    return this.extending(() => this.#lock("prevExist=false"));
  }

  renew(): Promise<void> {
    return this.extending(() => this.#lock(`prevValue=${this.member}`));
  }

  async put(key: string, value: string): Promise<void> {
    await this.etcd.v2("PUT", `/service/pg/${key}`, { value });
  }

  async remove(key: string): Promise<void> {
    await this.etcd.v2("DELETE", `/service/pg/${key}`);
  }
}

const etcd2: WatcherUnderTest = {
  label: "dcs etcd v2",
  create: createEtcd2Watcher,
  settings: scopeSettings("etcd"),
  fast: { requestTimeoutMs: 1000, watchTimeoutMs: 1500, backoffMs: 50, maxBackoffMs: 400 },
  member: (etcd, member, ttl) => new Etcd2Member(etcd, member, ttl),
  memberData: MEMBER,
  auth: "v2",
};

watcherTests(etcd2);

const seeded = (etcd: Etcd) => seed(new Etcd2Member(etcd, "pg1", 30), MEMBER);

Deno.test({
  name: name("etcd restarted: the watcher reconnects, reads again and watches on"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seeded(etcd);
    const reports = new Reports();
    const watcher = createEtcd2Watcher(etcd2.settings([etcd.url]), {
      ...etcd2.fast,
      ...reports.options,
    });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      await etcd.stop();
      await until(() => !watcher.reachable, "unreachable while etcd is down");
      await etcd.restart();
      await until(() => watcher.reachable, "reachable again", 10_000);
      assert.ok(reports.recovers >= 1);
      assert.ok(reports.errors.length >= 1);
      await new Etcd2Member(etcd, "pg1").writeMember({ ...MEMBER, state: "restarted" });
      await viewWhere(watcher, (v) => v.members.get("pg1")?.state === "restarted", "a new write");
    } finally {
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("a watch index cleared from etcd's 1000 events: everything is read again"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seeded(etcd);
    await using relay = new Relay(etcd.port);
    const reports = new Reports();
    const watcher = createEtcd2Watcher(
      etcd2.settings([`http://127.0.0.1:${relay.port}`]),
      { ...etcd2.fast, watchTimeoutMs: 20_000, requestTimeoutMs: 3000, ...reports.options },
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
  name: name("reads go through etcd's leader (quorum), never a member's own copy"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seeded(etcd);
    await using relay = new Relay(etcd.port);
    const watcher = createEtcd2Watcher(
      etcd2.settings([`http://127.0.0.1:${relay.port}`]),
      { ...etcd2.fast, requestTimeoutMs: 3000 },
    );
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      const reads = relay.targets.filter((t) =>
        t.startsWith("/v2/keys") && !t.includes("wait=true")
      );
      assert.ok(reads.length > 0);
      for (const target of reads) assert.match(target, /[?&]quorum=true/, target);
    } finally {
      await watcher.close();
    }
  },
});

Deno.test({
  name: name(
    "a directory above the scope removed (the scope with it): the keys are read again, and there is no leader",
  ),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seeded(etcd);
    const watcher = createEtcd2Watcher(etcd2.settings([etcd.url]), {
      ...etcd2.fast,
      requestTimeoutMs: 3000,
      watchTimeoutMs: 20_000,
    });
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      const { status } = await etcd.v2("DELETE", "/service?recursive=true&dir=true");
      assert.equal(status, 200);
      await viewWhere(
        watcher,
        (v) => v.leader === undefined && v.members.size === 0,
        "no leader",
        3000,
      );
    } finally {
      await watcher.close();
    }
  },
});
