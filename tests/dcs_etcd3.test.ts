import assert from "node:assert/strict";
import { createEtcd3Watcher } from "../src/dcs/etcd3.ts";
import {
  b64,
  Etcd,
  HAS_ETCD,
  Relay,
  Reports,
  ROOT_PASSWORD,
  until,
  viewWhere,
} from "./support/etcd.ts";
import { rawServer, send } from "./support/raw_server.ts";
import {
  HaLoop,
  held,
  scopeSettings,
  seed,
  watcherTests,
  type WatcherUnderTest,
} from "./support/watcher_suite.ts";

const ignore = !HAS_ETCD;
const name = (what: string) => `dcs etcd3: ${what}${ignore ? " (ignored: no /usr/bin/etcd)" : ""}`;
const MEMBER = { role: "primary", state: "running", timeline: 4, xlog_location: 50331648 };

/** Patroni's etcd3 writes: a lease kept alive, the leader key written once with it. */
class Etcd3Member extends HaLoop {
  lease = "";

  take(): Promise<void> {
    return this.extending(async () => {
      this.lease = String((await this.etcd.v3("/v3/lease/grant", { TTL: this.ttl })).ID);
      await this.etcd.v3("/v3/kv/put", {
        key: b64("/service/pg/leader"),
        value: b64(this.member),
        lease: this.lease,
      });
    });
  }

  renew(): Promise<unknown> {
    return this.extending(() => this.etcd.v3("/v3/lease/keepalive", { ID: this.lease }));
  }

  async put(key: string, value: string): Promise<void> {
    await this.etcd.v3("/v3/kv/put", { key: b64(`/service/pg/${key}`), value: b64(value) });
  }

  async remove(key: string): Promise<void> {
    await this.etcd.v3("/v3/kv/deleterange", { key: b64(`/service/pg/${key}`) });
  }
}

const etcd3: WatcherUnderTest = {
  label: "dcs etcd3",
  create: createEtcd3Watcher,
  settings: scopeSettings("etcd3"),
  fast: { requestTimeoutMs: 1000, pollIntervalMs: 300, backoffMs: 50, maxBackoffMs: 400 },
  member: (etcd, member, ttl) => new Etcd3Member(etcd, member, ttl),
  memberData: MEMBER,
  auth: "v3",
};

watcherTests(etcd3);

const seeded = (etcd: Etcd) => seed(new Etcd3Member(etcd, "pg1", 30), MEMBER);

Deno.test({
  name: name("auth: a token lost in an etcd restart is taken again, not a failure"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start({ auth: "v3" });
    await seeded(etcd);
    const reports = new Reports();
    const watcher = createEtcd3Watcher(
      etcd3.settings([etcd.url], { username: "root", password: ROOT_PASSWORD }),
      { ...etcd3.fast, requestTimeoutMs: 3000, ...reports.options },
    );
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      await etcd.restart(); // simple tokens live in etcd's memory
      await until(() => reports.recovers > 0 && watcher.reachable, "reachable after the restart");
      await new Etcd3Member(etcd, "pg3").writeMember({ role: "replica" });
      await viewWhere(watcher, (v) => v.members.has("pg3"), "a write after the restart");
      assert.ok(
        reports.errors.every((e) => e.failure !== "auth"),
        `a lost token is taken again, not a failure: ${JSON.stringify(reports.errors)}`,
      );
    } finally {
      await watcher.close();
    }
  },
});

Deno.test({
  name: name("a watch canceled by compaction: everything is read again, then watched"),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seeded(etcd);
    await using relay = new Relay(etcd.port);
    const reports = new Reports();
    const watcher = createEtcd3Watcher(
      etcd3.settings([`http://127.0.0.1:${relay.port}`]),
      { ...etcd3.fast, pollIntervalMs: 2000, requestTimeoutMs: 3000, ...reports.options },
    );
    // The first view is published before the watch is sent: hold it in the relay.
    const unsubscribe = watcher.subscribe(() => relay.hold());
    const member = new Etcd3Member(etcd, "pg9");
    try {
      await viewWhere(watcher, held("pg1"), "pg1 holding the lock");
      unsubscribe();
      await member.put("members/pg9", '{"role":"replica"}');
      await member.put("members/pg8", '{"role":"replica"}');
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
      await member.put("members/pg7", '{"role":"replica"}');
      await viewWhere(watcher, (v) => v.members.has("pg7"), "pg7: the new watch works");
    } finally {
      relay.release();
      await watcher.close();
    }
  },
});

/** A gateway's JSON answer. */
const answer = (body: string) =>
  `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
/** etcd 3.4's `/version`. */
const VERSION = answer('{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}');
/** The head and first chunk of a watch stream carrying `messages`. */
const watchStream = (messages: string) =>
  `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${
    messages.length.toString(16)
  }\r\n${messages}\r\n`;

Deno.test("dcs etcd3: a watch canceled for another reason than compaction is a failure, not a silent read again", async () => {
  await using gateway = rawServer(async (conn, request) => {
    const target = request.match(/^\w+ (\S+)/)?.[1];
    if (target === "/version") await send(conn, VERSION);
    else if (target === "/v3/kv/range") await send(conn, answer('{"header":{"revision":"5"}}'));
    else if (target === "/v3/watch") {
      await send(
        conn,
        watchStream(
          '{"result":{"created":true}}\n{"result":{"canceled":true,"cancel_reason":"etcdserver: permission denied"}}\n',
        ),
      );
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  const reports = new Reports();
  const watcher = createEtcd3Watcher(
    etcd3.settings([`http://127.0.0.1:${gateway.port}`]),
    { ...etcd3.fast, ...reports.options },
  );
  try {
    await until(() => reports.errors.length > 0, "the canceled watch reported");
    assert.deepEqual(reports.errors[0], {
      failure: "auth",
      message: "watch canceled: etcdserver: permission denied",
    });
    assert.equal(watcher.view()?.leader, undefined);
  } finally {
    await watcher.close();
  }
});

/**
 * A gateway whose leader key `/service/pg/leader` is held by pg1 with a lease granted `grantedTtl`
 * seconds (4 left at every read); counts the lease reads.
 */
function leaseGateway(grantedTtl: number) {
  const end = Promise.withResolvers<void>();
  const reads: number[] = [];
  const leader = b64("/service/pg/leader");
  const server = rawServer(async (conn, request) => {
    const target = request.match(/^\w+ (\S+)/)?.[1];
    if (target === "/version") await send(conn, VERSION);
    else if (target === "/v3/kv/range") {
      const kv = `{"key":"${leader}","value":"${b64("pg1")}","lease":"42","mod_revision":"3"}`;
      await send(conn, answer(`{"header":{"revision":"5"},"kvs":[${kv}]}`));
    } else if (target === "/v3/lease/timetolive") {
      reads.push(performance.now());
      await send(
        conn,
        answer(`{"ID":"42","TTL":"4","grantedTTL":"${grantedTtl}","keys":["${leader}"]}`),
      );
    } else if (target === "/v3/watch") {
      await send(conn, watchStream('{"result":{"created":true}}\n'));
      await end.promise;
    }
  });
  return {
    port: server.port,
    reads,
    async [Symbol.asyncDispose]() {
      end.resolve();
      await server.close();
    },
  };
}

for (const [ttl, atLeast, atMost] of [[5, 4, 8], [30, 1, 2]]) {
  Deno.test(
    `dcs etcd3: the lease of a ${ttl} s lock is read every ${
      Math.min(1000, ttl * 50)
    } ms (ttl/20, at most once a second): the lock's time left loses no more than that to the reading's pace`,
    async () => {
      await using gateway = leaseGateway(ttl);
      const watcher = createEtcd3Watcher(etcd3.settings([`http://127.0.0.1:${gateway.port}`]), {
        requestTimeoutMs: 1000,
      });
      try {
        await until(() => gateway.reads.length > 0, "the first lease read");
        const from = gateway.reads[0];
        await new Promise((r) => setTimeout(r, 1600));
        const reads = gateway.reads.filter((t) => t > from && t <= from + 1500).length;
        assert.ok(reads >= atLeast && reads <= atMost, `${reads} reads in 1.5 s`);
      } finally {
        await watcher.close();
      }
    },
  );
}
