// The DCS witness wired in the service, over real sockets and a simulated Patroni, with a watcher
// the test drives: answers, events that end entries, metrics, logs, reload and stop.
import assert from "node:assert/strict";
import { parseConfig } from "../src/config/config.ts";
import { Logger } from "../src/log.ts";
import { Service } from "../src/service.ts";
import type { MemberKey } from "../src/dcs/view.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { fakeWatch } from "./support/fake_dcs.ts";
import { configText, freePort, sleep } from "./support/glue.ts";

const PRIMARY: MemberKey = { role: "master", state: "running", timeline: 1, tags: {} };
const REPLICA: MemberKey = { role: "replica", state: "running", timeline: 1, tags: {} };
const DCS = "dcs:\n  type: etcd3\n  hosts: 127.0.0.1:2379\n  scope: pgglue\n  name: node1\n";

async function start(fake: FakePatroni, dcs = DCS, cache = "  ttl: 5") {
  const port = freePort();
  const lines: string[] = [];
  const log = new Logger({ level: "debug", write: (l) => lines.push(l) });
  const { started, watch } = fakeWatch();
  const config = (top: string) =>
    parseConfig(configText(port, fake.port, { top, cache }), "test.yml");
  const service = await Service.start(await config(dcs), log, "test", { watch });
  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, cache: res.headers.get("x-cache"), body: await res.text() };
  };
  return { service, started, get, lines, config };
}

Deno.test("dcs service: a frozen Patroni: the DCS's 200 for the lock holder, said in X-Cache and /metrics", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "pgglue";
  const t = await start(fake, DCS, "  ttl: 0.2");
  try {
    const [dcs] = t.started;
    assert.deepEqual(dcs.settings.endpoints, ["http://127.0.0.1:2379"]);
    dcs.set("node1", 20_000, { node1: PRIMARY });
    assert.equal((await t.get("/primary")).cache, "MISS");
    fake.freeze();
    await sleep(250); // the entry expires
    const frozen = await t.get("/primary");
    assert.equal(frozen.status, 200);
    assert.equal(frozen.cache, "DCS");
    assert.equal(JSON.parse(frozen.body).source, "dcs");
    const metrics = (await t.get("/metrics")).body;
    assert.match(metrics, /^patroniglue_dcs_answers_total\{route="\/primary",status="200"\} 1$/m);
    assert.match(
      metrics,
      /^patroniglue_requests_total\{route="\/primary",method="GET",status="200",cache="dcs"\} 1$/m,
    );
    assert.match(metrics, /^patroniglue_dcs_up 1$/m);
    assert.match(metrics, /^patroniglue_dcs_leader_lock_held 1$/m);
    const left = Number(
      metrics.match(/^patroniglue_dcs_leader_lock_remaining_seconds (\S+)$/m)?.[1],
    );
    assert.ok(left > 10 && left <= 20, `${left} s left on a 20 s lock, counting down`);
    assert.match(metrics, /^patroniglue_dcs_view_age_seconds 0\.\d+$/m);
    // the replica's route: 503 as before (the view says this member is the primary)
    assert.equal((await t.get("/replica")).status, 503);
  } finally {
    fake.thaw();
    await t.service.stop();
  }
  assert.ok(t.started[0].closed, "stop closes the watcher");
});

Deno.test("dcs service: a lock change ends every entry and asks again for the routes in use; a role change ends those it contradicts", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "pgglue";
  const t = await start(fake);
  try {
    const [dcs] = t.started;
    dcs.set("node1", 20_000, { node1: PRIMARY });
    await t.get("/primary");
    await t.get("/primary"); // in use
    await t.get("/replica");
    assert.equal(fake.count("/primary"), 1);
    dcs.set("node2", 20_000, { node1: PRIMARY }); // the lock moved: /primary is overruled at once
    const moved = await t.get("/primary");
    assert.equal(moved.status, 503);
    assert.equal(moved.cache, "DCS");
    await sleep(50);
    assert.equal(fake.count("/primary"), 2, "the route in use was asked again");
    assert.equal(fake.count("/replica"), 1, "a route not in use is not");
    assert.ok(
      t.lines.some((l) => l.includes("NOTICE DCS: leader lock node1 -> node2")),
      t.lines.join("\n"),
    );
    // the member's role changes in the DCS: entries of the old role end
    fake.role = "replica";
    dcs.set("node2", 20_000, { node1: REPLICA });
    assert.equal((await t.get("/replica")).status, 200);
    assert.equal(fake.count("/replica"), 2);
    assert.ok(
      t.lines.some((l) => l.includes("DCS: member node1 master/running -> replica/running")),
    );
    const metrics = (await t.get("/metrics")).body;
    assert.match(
      metrics,
      /patroniglue_cache_invalidations_total\{route="\/primary",by="dcs"\} \d+/,
    );
    // a re-confirmation that changes nothing ends nothing
    const before = fake.count("/replica");
    dcs.set("node2", 20_000, { node1: REPLICA });
    assert.equal((await t.get("/replica")).cache, "HIT");
    assert.equal(fake.count("/replica"), before);
  } finally {
    await t.service.stop();
  }
});

Deno.test("dcs service: a DCS that fails is logged once and counted; reachable again is logged once", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "pgglue";
  const t = await start(fake);
  try {
    const [dcs] = t.started;
    dcs.fail("no answer within 2s");
    dcs.fail("no answer within 2s");
    dcs.options.onRecover?.();
    const warns = t.lines.filter((l) =>
      l.includes(
        "WARN DCS etcd3 http://127.0.0.1:2379 /service/pgglue (member node1) is unreachable: no answer within 2s",
      )
    );
    assert.equal(warns.length, 1, t.lines.join("\n"));
    assert.ok(
      t.lines.some((l) =>
        l.includes(
          "NOTICE DCS etcd3 http://127.0.0.1:2379 /service/pgglue (member node1) is reachable again",
        )
      ),
    );
    assert.match(
      (await t.get("/metrics")).body,
      /^patroniglue_dcs_watch_errors_total\{failure="timeout"\} 2$/m,
    );
    assert.match((await t.get("/metrics")).body, /^patroniglue_dcs_view_age_seconds -1$/m);
  } finally {
    await t.service.stop();
  }
});

Deno.test("dcs service: a reload restarts the watcher only when where it watches changes, and stops it when dcs: goes", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "pgglue";
  const t = await start(fake);
  try {
    assert.match(
      t.service.dcs!,
      /^etcd3 http:\/\/127\.0\.0\.1:2379 \/service\/pgglue \(member node1\)$/,
    );
    // margin and name: the same watcher, new rules
    let changes = await t.service.reload(
      await t.config(DCS.replace("node1", "node2") + "  margin: 3\n"),
    );
    assert.deepEqual(changes, ["dcs.margin: unset -> 3", 'dcs.name: "node1" -> "node2"']);
    assert.equal(t.started.length, 1);
    t.started[0].set("node2", 20_000, { node2: PRIMARY });
    fake.freeze();
    // node2 is now this member: the DCS vouches for it (margin 3 s of 20 s)
    assert.equal((await t.get("/leader")).cache, "DCS");
    fake.thaw();
    // another scope: a new watcher, the old one closed
    changes = await t.service.reload(await t.config(DCS.replace("pgglue", "other")));
    assert.equal(t.started.length, 2);
    assert.ok(t.started[0].closed);
    assert.equal(t.started[1].settings.scope, "other");
    // no dcs: section: no watcher, no DCS metrics
    await t.service.reload(await t.config(""));
    assert.ok(t.started[1].closed);
    assert.equal(t.service.dcs, undefined);
    assert.doesNotMatch((await t.get("/metrics")).body, /patroniglue_dcs_/);
  } finally {
    fake.thaw();
    await t.service.stop();
  }
});

Deno.test("dcs service: without a dcs: section nothing of the witness runs or shows", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "pgglue";
  const t = await start(fake, "");
  try {
    assert.equal(t.started.length, 0);
    assert.equal(t.service.dcs, undefined);
    const res = await t.get("/primary");
    assert.equal(res.cache, "MISS");
    assert.doesNotMatch((await t.get("/metrics")).body, /patroniglue_dcs_/);
  } finally {
    await t.service.stop();
  }
});

Deno.test("dcs service: Patroni naming another cluster silences the witness, with one error line", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "staging"; // what Patroni says; dcs: watches pgglue
  const t = await start(fake, DCS, "  ttl: 0.2");
  try {
    t.started[0].set("node1", 20_000, { node1: PRIMARY });
    assert.equal((await t.get("/primary")).status, 200);
    fake.freeze();
    await sleep(250);
    const frozen = await t.get("/primary");
    assert.equal(frozen.status, 503, "no DCS answer for a member of another cluster");
    const errors = t.lines.filter((l) => l.includes("ERROR DCS witness silent"));
    assert.equal(errors.length, 1, t.lines.join("\n"));
    assert.match(errors[0], /Patroni says it is cluster staging, not pgglue/);
  } finally {
    fake.thaw();
    await t.service.stop();
  }
});

Deno.test("dcs service: a first view without this member's key is said at once (a wrong dcs.name)", async () => {
  await using fake = await FakePatroni.start();
  fake.scope = "pgglue";
  const t = await start(fake);
  try {
    t.started[0].set("pg-1", 20_000, { "pg-1": PRIMARY });
    assert.ok(
      t.lines.some((l) =>
        l.includes(
          "WARN DCS: no member key for node1 (members: pg-1): the witness neither vouches nor vetoes",
        )
      ),
      t.lines.join("\n"),
    );
    assert.equal(
      (await t.get("/primary")).status,
      200,
      "not vetoed by a lock the name does not know",
    );
  } finally {
    await t.service.stop();
  }
});
