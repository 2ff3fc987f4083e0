// The DCS witness beside the cache, in process: the handler and the agent responder over a real
// cache whose backend the test answers, with a view and a clock the test sets (no socket, no sleep).
import assert from "node:assert/strict";
import type { BackendOutcome } from "../src/check/backend.ts";
import { HealthCache } from "../src/check/cache.ts";
import type { DcsView, MemberKey } from "../src/dcs/view.ts";
import { createAgentResponder, createHandler } from "../src/check/handler.ts";
import type { HealthRequest, HealthResponse } from "../src/check/health.ts";
import { Logger } from "../src/log.ts";
import { Witness } from "../src/check/witness.ts";
import { fakeClock, settle } from "./support/clock.ts";

const PRIMARY_BODY = JSON.stringify({ state: "running", role: "master", timeline: 2 });
const REPLICA_BODY = JSON.stringify({ state: "running", role: "replica", timeline: 2 });
const PRIMARY: MemberKey = { role: "master", state: "running", timeline: 2, tags: {} };
const TIMEOUT = 1000;
const PATIENCE = 500;

const ok = (status: 200 | 503, body: string): BackendOutcome => ({
  ok: true,
  status,
  body,
  member: JSON.parse(body),
});
const timeout: BackendOutcome = { ok: false, failure: "timeout", error: "no answer within 1s" };

/** A handler and an agent responder with the witness, over a backend and a DCS the test drives. */
function setup(name = "n1") {
  const clock = fakeClock(10_000);
  const fetches: { key: string; reply: PromiseWithResolvers<BackendOutcome> }[] = [];
  const cache = new HealthCache({
    ttl: 1,
    timeoutMs: TIMEOUT,
    ...clock.options,
    fetch: (key) => {
      const reply = Promise.withResolvers<BackendOutcome>();
      fetches.push({ key, reply });
      return reply.promise;
    },
  });
  const dcs: { view?: DcsView } = {};
  /** The DCS says `holder` holds the lock with `leftMs` to go and this member is `member`. */
  const say = (holder: string | undefined, leftMs: number, member?: MemberKey) => {
    dcs.view = {
      confirmedAt: clock.ms,
      leader: holder === undefined ? undefined : { holder, heldUntil: clock.ms + leftMs },
      members: new Map(member ? [[name, member]] : []),
      ttl: 5,
      failsafeMode: false,
    };
  };
  const answered: { path: string; status: number }[] = [];
  /** Patience timers pending (the cache's refresh timers run on the same clock). */
  const patience = new Set<unknown>();
  const witness = {
    cache,
    witness: new Witness({ view: () => dcs.view, name, now: clock.options.now }),
    patienceMs: PATIENCE,
    onAnswer: (path: string, status: number) => answered.push({ path, status }),
    setTimer: (fn: () => void, ms: number) => {
      const id = clock.options.setTimer(() => (patience.delete(id), fn()), ms);
      patience.add(id);
      return id;
    },
    clearTimer: (id: unknown) => (patience.delete(id), clock.options.clearTimer(id)),
  };
  const lines: string[] = [];
  const log = new Logger({ level: "info", write: (l) => lines.push(l) });
  const sources: string[] = [];
  const handle = createHandler({
    cache,
    log,
    accessLogTemplate: "%U %s %C",
    now: clock.options.now,
    witness,
    onResponse: (_route, _req, _res, source) => sources.push(source),
  });
  const agent = createAgentResponder({
    cache,
    log,
    mismatch: "maint",
    defaultCheck: "/primary",
    witness,
  });
  /** Answers the oldest backend request still open. */
  const reply = async (outcome: BackendOutcome) => {
    const open = fetches.find((f) => !("done" in f));
    assert.ok(open, "a backend request is open");
    Object.assign(open, { done: true });
    open.reply.resolve(outcome);
    await settle();
  };
  return { clock, fetches, cache, say, answered, patience, lines, sources, handle, agent, reply };
}

function get(target: string, method = "GET"): HealthRequest {
  return { method, target, remote: "127.0.0.1:5", hasBody: false };
}

/** The result, and whether it is already settled after the ready continuations ran. */
async function probe<T>(result: T | Promise<T>): Promise<{ done: boolean; value?: T }> {
  if (!(result instanceof Promise)) return { done: true, value: result };
  let value: T | undefined, done = false;
  result.then((v) => (value = v, done = true));
  await settle();
  return { done, value };
}

Deno.test("attest: Patroni's answer stands when it gives one; the DCS is not asked", async () => {
  const t = setup();
  t.say("n1", 4_000, PRIMARY);
  const first = t.handle(get("/primary"));
  await t.reply(ok(503, REPLICA_BODY)); // Patroni's word, though the DCS would vouch for /primary
  const res = await first as HealthResponse;
  assert.equal(res.status, 503);
  assert.equal(res.headers["x-cache"], "MISS");
  assert.equal((t.handle(get("/primary")) as HealthResponse).headers["x-cache"], "HIT");
  assert.deepEqual(t.answered, []);
  assert.deepEqual(t.sources, ["miss", "hit"]);
});

Deno.test("attest: Patroni silent, the DCS vouches: 200 from the DCS, said in X-Cache, %C, the body and the count", async () => {
  const t = setup();
  t.say("n1", 4_000, PRIMARY);
  const pending = t.handle(get("/primary"));
  await t.reply(timeout);
  const res = await pending as HealthResponse;
  assert.equal(res.status, 200);
  assert.equal(res.headers["x-cache"], "DCS");
  const body = JSON.parse(res.body);
  assert.equal(body.source, "dcs");
  assert.equal(body.role, "master");
  assert.match(body.dcs, /holds the leader lock \(4\.0 s left\)/);
  assert.match(body.patroni, /timeout/);
  assert.deepEqual(t.answered, [{ path: "/primary", status: 200 }]);
  assert.deepEqual(t.sources, ["dcs"]);
  assert.match(t.lines.at(-1)!, /\/primary 200 dcs$/);
  // HEAD keeps the status; OPTIONS has no body
  assert.equal((t.handle(get("/primary", "OPTIONS")) as HealthResponse).body, "");
  // the agent: up ready
  assert.equal(await t.agent({ remote: "x", line: "/primary" }), "up ready");
  assert.equal(t.answered.length, 3);
});

Deno.test("attest: Patroni silent, the DCS does not vouch: the failure's 503, as without a DCS", async () => {
  for (
    const [what, say] of [
      ["no view", () => {}],
      ["lock near its end", (t: ReturnType<typeof setup>) => t.say("n1", 2_500, PRIMARY)],
      ["another holder", (t: ReturnType<typeof setup>) => t.say("n2", 4_000, PRIMARY)],
      [
        "not running",
        (t: ReturnType<typeof setup>) => t.say("n1", 4_000, { ...PRIMARY, state: "stopped" }),
      ],
    ] as const
  ) {
    const t = setup();
    say(t);
    const pending = t.handle(get("/primary"));
    await t.reply(timeout);
    const res = await pending as HealthResponse;
    assert.equal(res.status, 503, what);
    assert.equal(res.headers["x-cache"], "MISS", what);
    assert.deepEqual(t.answered, [], what);
    assert.match(
      await t.agent({ remote: "x", line: "/primary" }),
      /^down #patroni unreachable \(timeout\)$/,
    );
  }
});

Deno.test("attest: a malformed answer is Patroni speaking: the DCS does not speak for it", async () => {
  const t = setup();
  t.say("n1", 4_000, PRIMARY);
  const pending = t.handle(get("/primary"));
  await t.reply({ ok: false, failure: "invalid", error: "answer is not JSON" });
  assert.equal((await pending as HealthResponse).status, 503);
});

Deno.test("attest: the DCS's 200 is judged at each check: it ends when the lock's margin runs out, though the failure is held for the ttl", async () => {
  const t = setup();
  t.say("n1", 3_000, PRIMARY); // margin: ttl 5 / 2 = 2.5 s
  const pending = t.handle(get("/primary"));
  await t.reply(timeout);
  assert.equal((await pending as HealthResponse).status, 200);
  await t.clock.advance(t.clock.ms + 499);
  assert.equal((t.handle(get("/primary")) as HealthResponse).status, 200);
  await t.clock.advance(t.clock.ms + 1);
  const late = t.handle(get("/primary")) as HealthResponse;
  assert.equal(late.status, 503);
  assert.equal(late.headers["x-cache"], "HIT");
});

Deno.test("attest: while Patroni is failing, checks are answered at once from the DCS; Patroni is asked again in the background and its first answer takes over", async () => {
  const t = setup();
  t.say("n1", 4_000, PRIMARY);
  const first = t.handle(get("/primary"));
  await t.reply(timeout);
  assert.equal((await first as HealthResponse).status, 200);
  assert.equal(t.fetches.length, 1);
  await t.clock.advance(t.clock.ms + 1_000); // the failure expired
  t.say("n1", 4_000, PRIMARY); // renewed
  const now = await probe(t.handle(get("/primary")));
  assert.ok(now.done, "answered without waiting on Patroni");
  assert.equal(now.value!.status, 200);
  assert.equal(now.value!.headers["x-cache"], "DCS");
  assert.equal(t.fetches.length, 2, "Patroni asked again in the background");
  const again = await probe(t.handle(get("/primary")));
  assert.ok(again.done, "a second check does not join the request in flight either");
  assert.equal(t.fetches.length, 2, "one request in flight per route");
  await t.reply(ok(200, PRIMARY_BODY));
  const back = t.handle(get("/primary")) as HealthResponse;
  assert.equal(back.headers["x-cache"], "HIT");
  assert.deepEqual(JSON.parse(back.body), JSON.parse(PRIMARY_BODY));
});

Deno.test("attest: a check waits on a slow Patroni at most the patience before the DCS answers it; Patroni's answer still lands", async () => {
  const t = setup();
  t.say("n1", 4_000, PRIMARY);
  const pending = t.handle(get("/primary"));
  await t.clock.advance(t.clock.ms + PATIENCE - 1);
  assert.equal((await probe(pending)).done, false, "still waiting on Patroni");
  await t.clock.advance(t.clock.ms + 1);
  const res = await probe(pending);
  assert.ok(res.done, "the DCS answered at the patience");
  assert.equal(res.value!.headers["x-cache"], "DCS");
  await t.reply(ok(200, PRIMARY_BODY));
  assert.equal((t.handle(get("/primary")) as HealthResponse).headers["x-cache"], "HIT");
  assert.equal(t.patience.size, 0, "the patience timer is gone");
});

Deno.test("attest: without the DCS's word, a check waits on Patroni as it does without a DCS", async () => {
  const t = setup();
  t.say("n2", 4_000, PRIMARY); // another holder: no 200 from the DCS for /primary
  const pending = t.handle(get("/primary"));
  await t.clock.advance(t.clock.ms + PATIENCE + 100);
  assert.equal((await probe(pending)).done, false);
  await t.reply(ok(503, REPLICA_BODY));
  assert.equal((await pending as HealthResponse).status, 503);
  assert.equal(t.patience.size, 0, "the patience timer is gone");
});

Deno.test("attest: another member's live lock makes Patroni's 200 on a leader check a 503 (a primary being demoted)", async () => {
  const t = setup();
  t.say("n1", 4_000, PRIMARY);
  const first = t.handle(get("/primary"));
  await t.reply(ok(200, PRIMARY_BODY));
  assert.equal((await first as HealthResponse).status, 200);
  t.say("n2", 4_000, PRIMARY);
  const res = t.handle(get("/primary")) as HealthResponse;
  assert.equal(res.status, 503);
  assert.equal(res.headers["x-cache"], "DCS");
  assert.equal(JSON.parse(res.body).error, "the leader lock is held by n2");
  assert.equal(
    await t.agent({ remote: "x", line: "/primary" }),
    "down #the leader lock is held by n2",
  );
  assert.deepEqual(t.answered.map((a) => a.status), [503, 503]);
  // /replica's 200 is not a leader check
  const replica = t.handle(get("/replica"));
  await t.reply(ok(200, REPLICA_BODY));
  assert.equal((await replica as HealthResponse).status, 200);
});

Deno.test("attest: cache.invalidate ends contradicted entries, asks again for routes in use, and never serves a body asked for before it", async () => {
  const t = setup();
  const first = t.handle(get("/primary"));
  await t.reply(ok(200, PRIMARY_BODY));
  await first;
  t.handle(get("/primary")); // in use
  const replica = t.handle(get("/replica"));
  await t.reply(ok(503, PRIMARY_BODY));
  await replica;
  // a request in flight, started before the evidence
  const leader = t.handle(get("/leader"));
  assert.equal(t.fetches.length, 3);
  t.cache.invalidate((m) => m?.role === "replica", "dcs");
  assert.equal(t.cache.peek("/primary"), undefined);
  assert.equal(t.cache.peek("/replica"), undefined);
  assert.equal(
    t.fetches.length,
    4,
    "the route in use is asked again at once; /replica was not in use",
  );
  assert.equal(t.fetches[3].key, "/primary");
  await t.reply(ok(200, PRIMARY_BODY)); // /leader's old request: contradicted, asked again
  assert.equal(t.fetches.length, 5);
  assert.equal(t.fetches[4].key, "/leader");
  await t.reply(ok(503, REPLICA_BODY)); // /primary's
  await t.reply(ok(503, REPLICA_BODY)); // /leader's second
  assert.equal((await leader as HealthResponse).status, 503);
});

Deno.test("attest: every way of not answering (refused, reset or closed unanswered, TLS failure) lets the DCS speak", async () => {
  for (const failure of ["refused", "error", "tls"] as const) {
    const t = setup();
    t.say("n1", 4_000, PRIMARY);
    const pending = t.handle(get("/primary"));
    await t.reply({ ok: false, failure, error: `no answer (${failure})` });
    const res = await pending as HealthResponse;
    assert.deepEqual([res.status, res.headers["x-cache"]], [200, "DCS"], failure);
  }
});
