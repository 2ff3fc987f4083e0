import assert from "node:assert/strict";
import { toBase64 } from "../src/dcs/codec.ts";
import { createEtcd3Watcher } from "../src/dcs/etcd3.ts";
import { DcsError, Resync } from "../src/dcs/runner.ts";
import type { DcsFailure } from "../src/dcs/view.ts";
import { Etcd, HAS_ETCD, Relay, Reports, ROOT_PASSWORD, until, viewWhere } from "./support/etcd.ts";
import { chunk, fakeGateway } from "./support/fake_gateway.ts";
import { send } from "./support/raw_server.ts";
import {
  HaLoop,
  held,
  scopeSettings,
  seed,
  watcherTests,
  type WatcherUnderTest,
} from "./support/watcher_suite.ts";
import { sleep } from "./support/glue.ts";

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
        key: toBase64("/service/pg/leader"),
        value: toBase64(this.member),
        lease: this.lease,
      });
    });
  }

  renew(): Promise<unknown> {
    return this.extending(() => this.etcd.v3("/v3/lease/keepalive", { ID: this.lease }));
  }

  async put(key: string, value: string): Promise<void> {
    await this.etcd.v3("/v3/kv/put", {
      key: toBase64(`/service/pg/${key}`),
      value: toBase64(value),
    });
  }

  async remove(key: string): Promise<void> {
    await this.etcd.v3("/v3/kv/deleterange", { key: toBase64(`/service/pg/${key}`) });
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

/** Chunked framing of `text`: its size in hex, the text, CRLF. */
/** Options for a watcher of a fake gateway: requests that do not time out on a loaded machine. */
const GATEWAY_OPTIONS = { ...etcd3.fast, requestTimeoutMs: 3000 };

/**
 * The first failure (of kind `failure`, when given) that a watcher of the fake gateway at `port`
 * reports, and its view then.
 */
async function firstFailure(port: number, failure?: DcsFailure) {
  const reports = new Reports();
  const watcher = createEtcd3Watcher(
    etcd3.settings([`http://127.0.0.1:${port}`]),
    { ...GATEWAY_OPTIONS, ...reports.options },
  );
  const found = () => reports.errors.find((e) => failure === undefined || e.failure === failure);
  try {
    await until(() => found() !== undefined, `a failure ${failure ?? ""} reported`);
    return { error: found()!, view: watcher.view() };
  } finally {
    await watcher.close();
  }
}

/** A watch message with one PUT event of `key` (relative to `/service/pg/`) to `value`. */
const putEvent = (key: string, value: string) =>
  JSON.stringify({
    result: { events: [{ kv: { key: toBase64(`/service/pg/${key}`), value: toBase64(value) } }] },
  });

Deno.test("dcs etcd3: a watch canceled for another reason than compaction is a failure, not a silent read again", async () => {
  await using gateway = fakeGateway(async (conn) => {
    await send(
      conn,
      chunk(
        '{"result":{"created":true}}\n{"result":{"canceled":true,"cancel_reason":"etcdserver: permission denied"}}\n',
      ),
    );
    await sleep(200);
  });
  const { error, view } = await firstFailure(gateway.port);
  assert.deepEqual(error, {
    failure: "auth",
    message: "watch canceled: etcdserver: permission denied",
  });
  assert.equal(view?.leader, undefined);
});

Deno.test("dcs etcd3: a watch message cut between two pieces of the stream is applied whole", async () => {
  const rest = Promise.withResolvers<void>();
  const second = putEvent("members/pg5", '{"role":"replica","state":"running"}');
  const cut = Math.floor(second.length / 2);
  await using gateway = fakeGateway(async (conn) => {
    await send(
      conn,
      chunk(`${putEvent("members/pg4", '{"role":"replica"}')}\n${second.slice(0, cut)}`),
    );
    await rest.promise; // the first piece was handled: its whole message is in the view
    await send(conn, chunk(`${second.slice(cut)}\n`));
    await conn.read(new Uint8Array(1)); // the stream stays open until the watcher closes it
  });
  const reports = new Reports();
  const watcher = createEtcd3Watcher(
    etcd3.settings([`http://127.0.0.1:${gateway.port}`]),
    { ...GATEWAY_OPTIONS, ...reports.options },
  );
  try {
    const first = await viewWhere(watcher, (v) => v.members.has("pg4"), "pg4 from the first piece");
    assert.equal(first.members.has("pg5"), false, "half a message is not applied");
    rest.resolve();
    const whole = await viewWhere(watcher, (v) => v.members.has("pg5"), "pg5 from both pieces");
    assert.deepEqual(whole.members.get("pg5"), { role: "replica", state: "running", tags: {} });
    assert.deepEqual(reports.errors.filter((e) => e.failure === "invalid"), []);
  } finally {
    rest.resolve();
    await watcher.close();
  }
});

Deno.test("dcs etcd3: a watch message over 4 MiB without its end is refused as 'invalid'", async () => {
  const mib = " ".repeat(1024 * 1024);
  await using gateway = fakeGateway(async (conn) => {
    await send(conn, chunk('{"result":{"events":['));
    for (let i = 0; i < 5; i++) await send(conn, chunk(mib));
    await conn.read(new Uint8Array(1));
  });
  assert.deepEqual((await firstFailure(gateway.port, "invalid")).error, {
    failure: "invalid",
    message: `watch message larger than ${4 * 1024 * 1024} bytes`,
  });
});

Deno.test("dcs: a session's failures are Errors with their names (DcsError, Resync)", () => {
  const failure = new DcsError("auth", "etcd answered 401: bad password");
  assert.ok(failure instanceof Error);
  assert.equal(failure.name, "DcsError");
  assert.equal(String(failure), "DcsError: etcd answered 401: bad password");
  const resync = new Resync("the watch was canceled (compacted at 7)");
  assert.ok(resync instanceof Error);
  assert.equal(resync.name, "Resync");
});

for (const [ttl, atLeast, atMost] of [[5, 4, 8], [30, 1, 2]]) {
  Deno.test(
    `dcs etcd3: the lease of a ${ttl} s lock is read every ${
      Math.min(1000, ttl * 50)
    } ms (ttl/20, at most once a second): the lock's time left loses no more than that to the reading's pace`,
    async () => {
      const leader = toBase64("/service/pg/leader");
      const reads: number[] = [];
      const end = Promise.withResolvers<void>();
      const kv = `{"key":"${leader}","value":"${toBase64("pg1")}","lease":"42","mod_revision":"3"}`;
      await using gateway = fakeGateway(async (conn) => {
        await send(conn, chunk('{"result":{"created":true}}\n'));
        await end.promise;
      }, {
        range: `{"header":{"revision":"5"},"kvs":[${kv}]}`,
        lease:
          () => (reads.push(performance.now()),
            `{"ID":"42","TTL":"4","grantedTTL":"${ttl}","keys":["${leader}"]}`),
      });
      const watcher = createEtcd3Watcher(etcd3.settings([`http://127.0.0.1:${gateway.port}`]), {
        requestTimeoutMs: 1000,
      });
      try {
        await until(() => reads.length > 0, "the first lease read");
        const from = reads[0];
        await sleep(1600);
        const count = reads.filter((t) => t > from && t <= from + 1500).length;
        assert.ok(count >= atLeast && count <= atMost, `${count} reads in 1.5 s`);
      } finally {
        end.resolve();
        await watcher.close();
      }
    },
  );
}

/** The leader key held by pg1 with lease 42, as a range answer. */
const HELD_RANGE = `{"header":{"revision":"5"},"kvs":[{"key":"${
  toBase64("/service/pg/leader")
}","value":"${toBase64("pg1")}","lease":"42","mod_revision":"3"}]}`;
/** A lease read's answer: `ttl` left of `granted`, holding `keys`. */
const leaseAnswer = (ttl: number, granted: number, keys = [toBase64("/service/pg/leader")]) =>
  JSON.stringify({ ID: "42", TTL: String(ttl), grantedTTL: String(granted), keys });

Deno.test("dcs etcd3: a lease time to live above what was granted (etcd's unpromoted lease, ~292 years) is no held lock", async () => {
  const end = Promise.withResolvers<void>();
  await using gateway = fakeGateway(async (conn) => {
    await send(conn, chunk('{"result":{"created":true}}\n'));
    await end.promise;
  }, { range: HELD_RANGE, lease: () => leaseAnswer(9223372036, 5) });
  const watcher = createEtcd3Watcher(
    etcd3.settings([`http://127.0.0.1:${gateway.port}`]),
    GATEWAY_OPTIONS,
  );
  try {
    const view = await viewWhere(watcher, (v) => v.leader?.holder === "pg1", "pg1's key read");
    await sleep(400); // a few lease reads
    assert.equal(watcher.view()!.leader!.heldUntil, -Infinity, JSON.stringify(view.leader));
  } finally {
    end.resolve();
    await watcher.close();
  }
});

Deno.test("dcs etcd3: a lease that no longer holds the leader key: the lock's time is unknown at once, before the keys are read again", async () => {
  const end = Promise.withResolvers<void>();
  let reads = 0;
  await using gateway = fakeGateway(async (conn) => {
    await send(conn, chunk('{"result":{"created":true}}\n'));
    await end.promise;
  }, {
    range: HELD_RANGE,
    // the first read shows the lock held; the next ones, the lease holding nothing
    lease: () => leaseAnswer(4, 5, reads++ === 0 ? undefined : []),
  });
  const watcher = createEtcd3Watcher(
    etcd3.settings([`http://127.0.0.1:${gateway.port}`]),
    GATEWAY_OPTIONS,
  );
  const seen: number[] = [];
  watcher.subscribe((v) => seen.push(v.leader?.heldUntil ?? NaN));
  try {
    await until(() => seen.some((t) => t > 0), "the lock held first");
    await until(() => seen.at(-1) === -Infinity, "then not known held");
  } finally {
    end.resolve();
    await watcher.close();
  }
});

Deno.test("dcs etcd3: a watch refused at once, again and again, backs off (an answer does not reset it)", async () => {
  let ranges = 0;
  await using gateway = fakeGateway(() => Promise.resolve(), {
    watchRefusal: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    onRequest: (target) => target === "/v3/kv/range" && ranges++,
  });
  const watcher = createEtcd3Watcher(etcd3.settings([`http://127.0.0.1:${gateway.port}`]), {
    ...GATEWAY_OPTIONS,
    backoffMs: 100,
    maxBackoffMs: 2000,
  });
  try {
    await sleep(2500);
    // 100 + 200 + 400 + 800 + 1600 ms of back-off: at most six sessions in 2.5 s (not 25)
    assert.ok(ranges >= 2 && ranges <= 6, `${ranges} sessions in 2.5 s`);
  } finally {
    await watcher.close();
  }
});

Deno.test("dcs etcd3: a new holder seen while a lease read is under way has its lease read right after it, not an interval later", async () => {
  const end = Promise.withResolvers<void>();
  const watchConn = Promise.withResolvers<Deno.Conn>();
  const reads: { at: number; lease: string }[] = [];
  const slow = Promise.withResolvers<void>();
  await using gateway = fakeGateway(async (conn) => {
    await send(conn, chunk('{"result":{"created":true}}\n'));
    watchConn.resolve(conn);
    await end.promise;
  }, {
    range: HELD_RANGE,
    lease: async () => {
      reads.push({ at: performance.now(), lease: reads.length < 2 ? "42" : "43" });
      if (reads.length === 2) await slow.promise; // the second read takes its time
      return leaseAnswer(4, 5, [toBase64("/service/pg/leader")]);
    },
  });
  const watcher = createEtcd3Watcher(etcd3.settings([`http://127.0.0.1:${gateway.port}`]), {
    ...GATEWAY_OPTIONS,
    pollIntervalMs: 3000,
  });
  try {
    await until(() => reads.length === 2, "a lease read under way");
    const conn = await watchConn.promise;
    const event = {
      result: {
        events: [{
          kv: { key: toBase64("/service/pg/leader"), value: toBase64("pg2"), lease: "43" },
        }],
      },
    };
    await send(conn, chunk(JSON.stringify(event) + "\n"));
    await viewWhere(watcher, (v) => v.leader?.holder === "pg2", "pg2 holding the key");
    const released = performance.now();
    slow.resolve();
    await until(() => reads.length === 3, "the new holder's lease read", 2000);
    assert.ok(reads[2].at - released < 1000, `${(reads[2].at - released).toFixed(0)} ms later`);
  } finally {
    slow.resolve();
    end.resolve();
    await watcher.close();
  }
});

Deno.test("dcs etcd3: a session that polls for hours keeps no memory per lease read", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", "tests/support/etcd3_heap.ts"],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const { bytesPerRead } = JSON.parse(new TextDecoder().decode(out.stdout));
  // Racing every poll against the session's one watch-end promise kept ~670 B per read alive.
  assert.ok(bytesPerRead < 200, `${bytesPerRead.toFixed(0)} B kept per lease read`);
});
