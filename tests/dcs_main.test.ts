// main.ts with a dcs: section, as users run it, against a real etcd and a simulated Patroni: what
// -check-config says of the DCS, and the DCS answering for a frozen Patroni.
import assert from "node:assert/strict";
import { Etcd, HAS_ETCD } from "./support/etcd.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { configText, freePort, GlueProcess, runGlue, sleep, writeConfig } from "./support/glue.ts";

const ignore = !HAS_ETCD;
const name = (what: string) =>
  `dcs (main.ts): ${what}${ignore ? " (ignored: no /usr/bin/etcd)" : ""}`;

/** The keys Patroni's HA loop writes under /service/pg (etcd v2), `holder` holding the lock. */
async function seed(etcd: Etcd, holder: string): Promise<void> {
  await etcd.v2("PUT", "/service/pg/leader?ttl=30", { value: holder });
  for (const [member, role] of [["pg1", "master"], ["pg2", "replica"]]) {
    const value = JSON.stringify({ role, state: "running", timeline: 3, xlog_location: 50331648 });
    await etcd.v2("PUT", `/service/pg/members/${member}`, { value });
  }
  await etcd.v2("PUT", "/service/pg/config", { value: '{"ttl":30,"loop_wait":10}' });
}

/** Patroni's own file for member `member` of scope pg on `etcd`. */
function patroniFile(etcd: Etcd, member: string): Promise<string> {
  return writeConfig(
    `scope: pg\nname: ${member}\nrestapi:\n  listen: 127.0.0.1:8008\netcd:\n  host: 127.0.0.1:${etcd.port}\npostgresql:\n  authentication:\n    superuser:\n      password: not-for-us\n`,
  );
}

Deno.test({
  name: name(
    "-check-config reads the DCS once and says who leads, this member's role and the time left",
  ),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(etcd, "pg1");
    const patroni = await patroniFile(etcd, "pg2");
    const file = await writeConfig(
      configText(freePort(), freePort(), { top: `dcs:\n  patroni-config: ${patroni}` }),
    );
    const { code, stdout, stderr } = await runGlue(["-check-config", "-config", file]);
    assert.equal(code, 0, stderr);
    assert.match(
      stdout,
      /^configuration OK\ndcs: etcd http:\/\/127\.0\.0\.1:\d+ \/service\/pg \(member pg2\): leader pg1 \(2\d\.\d s left on the lock\); member pg2: replica, running, timeline 3; ttl 30 s \(margin 15 s\)\n$/,
    );
    assert.doesNotMatch(stdout + stderr, /not-for-us/);
  },
});

Deno.test({
  name: name("-check-config with the DCS out of reach: the config is still OK, and it says so"),
  ignore,
  async fn() {
    const file = await writeConfig(
      configText(freePort(), freePort(), {
        top: `dcs:\n  type: etcd3\n  hosts: 127.0.0.1:${freePort()}\n  scope: pg\n  name: pg1`,
      }),
    );
    const { code, stdout } = await runGlue(["-check-config", "-config", file]);
    assert.equal(code, 0);
    assert.match(
      stdout,
      /^configuration OK\ndcs: etcd3 .*: cannot read it: no complete read within 5s: .*refused.* \(checks are answered from Patroni alone while it cannot be read\)\n$/,
    );
  },
});

Deno.test({
  name: name(
    "a frozen Patroni: the lock holder stays 200 from the DCS; when the lock moves, 503; the start line names the DCS",
  ),
  ignore,
  async fn() {
    await using etcd = await Etcd.start();
    await seed(etcd, "pg1");
    await using fake = await FakePatroni.start();
    fake.scope = "pg";
    const port = freePort();
    const patroni = await patroniFile(etcd, "pg1");
    const file = await writeConfig(
      configText(port, fake.port, { top: `dcs:\n  patroni-config: ${patroni}` }),
    );
    await using glue = await GlueProcess.start(["-config", file]);
    assert.match(
      glue.stderr,
      /DCS witness: etcd http:\/\/127\.0\.0\.1:\d+ \/service\/pg \(member pg1\)$/m,
    );
    const get = async (path: string) => {
      const started = performance.now();
      const res = await fetch(`${glue.url}${path}`);
      await res.body?.cancel();
      return {
        status: res.status,
        cache: res.headers.get("x-cache"),
        ms: performance.now() - started,
      };
    };
    assert.equal((await get("/primary")).cache, "MISS");
    fake.freeze();
    try {
      await sleep(1100); // the entry expires (ttl 1)
      const first = await get("/primary"); // waits at most half the backend timeout (1 s)
      assert.deepEqual([first.status, first.cache], [200, "DCS"]);
      assert.ok(first.ms < 900, `answered in ${first.ms} ms`);
      await sleep(1100);
      const next = await get("/primary"); // Patroni is failing now: at once
      assert.deepEqual([next.status, next.cache], [200, "DCS"]);
      assert.ok(next.ms < 300, `answered in ${next.ms} ms`);
      // a switchover in the DCS: the lock moves to pg2
      await etcd.v2("PUT", "/service/pg/leader?ttl=30", { value: "pg2" });
      await glue.waitFor(/DCS: leader lock pg1 -> pg2/);
      assert.equal((await get("/primary")).status, 503);
      const metrics = await (await fetch(`${glue.url}/metrics`)).text();
      assert.match(
        metrics,
        /^patroniglue_dcs_answers_total\{route="\/primary",status="200"\} [2-9]$/m,
      );
      assert.match(metrics, /^patroniglue_dcs_up 1$/m);
    } finally {
      fake.thaw();
    }
    const { code } = await glue.stop();
    assert.equal(code, 0);
  },
});
