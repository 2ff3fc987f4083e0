// The proof on a real cluster (issues 3, 14 and 18): etcd + 3 Patroni/PostgreSQL 15 + two
// patroniglue per node (without and with the DCS witness) + HAProxy, with every route checked
// directly ("d_*"), through patroniglue ("g_*"), through the witness ("w_*") and by an agent-check
// listener beside a TCP check of PostgreSQL ("a_*", "wa_*"); the witness's scenarios are in
// witness.ts, run here on an etcd (v2) cluster and again on an etcd3 one.
// Run: deno test -A tests/cluster/  (as root, with patroni postgresql-15 etcd-server haproxy).
// Lines starting with "measure:" are the measured times.

import assert from "node:assert/strict";
import { HEALTH_CHECK_PATHS } from "../../src/check/routes.ts";
import {
  AGENT_INTER,
  CHECK_FALL,
  CHECK_INTER,
  CHECK_TIMEOUT,
  Cluster,
  GLUE_KINDS,
  GLUE_TIMEOUT,
  GLUE_TTL,
  type GlueKind,
  type HttpAnswer,
  now,
  PATRONI_TTL,
  type Route,
  ROUTE_NAMES,
  ROUTES,
  secs,
  type SessionWriter,
  ShortWriter,
  skipReason,
  SLACK_MS,
  tag,
  timed,
  waitFor,
  WRITES_TABLE,
} from "./harness.ts";
import { sleep } from "../support/glue.ts";
import { apiFrozen, etcdFrozen } from "./witness.ts";

const TTL_MS = GLUE_TTL * 1000;
const TIMEOUT_MS = GLUE_TIMEOUT * 1000;
const INTER_MS = CHECK_INTER * 1000;
const AGENT_INTER_MS = AGENT_INTER * 1000;

// When the programs are missing the suite is one ignored test whose name says why: a test's name
// is shown even under `deno test -q`, which hides everything a test module prints.
const reason = skipReason();

/** Every route patroniglue forwards. */
const FORWARDED = [...HEALTH_CHECK_PATHS];
/** Query variants (node1 and node3 are tagged dc=east, node2 dc=west). */
const VARIANTS = [
  "/replica?lag=1MB",
  "/replica?lag=100GB",
  "/replica?lag=16kB",
  "/read-only?lag=1MB",
  "/async?lag=10MB",
  "/readiness?lag=1MB",
  "/readiness?lag=1MB&mode=write",
  "/replica?tag_dc=east",
  "/replica?tag_dc=west",
  "/replica?tag_dc=nowhere",
  "/replica?lag=1MB&tag_dc=east",
  "/read-only?tag_dc=west",
  "/primary?tag_dc=west",
  "/asynchronous?tag_dc=east",
];

const RW: Route[] = ROUTE_NAMES.filter((r) => ROUTES[r].kind === "rw");

/**
 * Poll a route until it leads to a writable node other than `notNode`: a new probe every 100 ms,
 * up to 4 at once, so that one held up (HAProxy retrying a server that refuses) delays nothing.
 */
async function writesMoved(
  c: Cluster,
  route: Route,
  notNode: number,
  t0: number,
  timeoutMs: number,
): Promise<{ ms: number; node: number }> {
  const end = t0 + timeoutMs;
  const probes = new Set<Promise<void>>();
  let found: { ms: number; node: number } | null = null;
  while (!found && now() < end) {
    if (probes.size < 4) {
      const probe: Promise<void> = c.whereTo(c.ports.routes[route]).then((r) => {
        if (r && !r.recovery && r.node !== notNode) found ??= { ms: now() - t0, node: r.node };
      }).finally(() => probes.delete(probe));
      probes.add(probe);
    }
    await sleep(100);
  }
  await Promise.all(probes);
  if (!found) {
    throw new Error(`${route}: writes did not reach a new primary within ${secs(timeoutMs)}`);
  }
  return found;
}

/**
 * Poll GET /primary on the given nodes, directly and through patroniglue: the first node to answer
 * 200 both ways, and when. The glue answers after Patroni's first 200 are kept to explain a failure.
 */
async function firstPrimary200(
  c: Cluster,
  nodes: number[],
  t0: number,
  timeoutMs: number,
): Promise<{ node: number; direct: number; glue: number; trail: string[] }> {
  const direct = new Map<number, number>();
  const glue = new Map<number, number>();
  const trail: string[] = [];
  const end = t0 + timeoutMs;
  while (now() < end) {
    await Promise.all(nodes.flatMap((i) => [
      c.rest(i, "/primary", { timeoutMs: 1500 }).then((r) => {
        if (r.status === 200 && !direct.has(i)) direct.set(i, now() - t0);
      }),
      c.glue(i, "/primary", { timeoutMs: 1500 }).then((r) => {
        if (r.status === 200 && !glue.has(i)) glue.set(i, now() - t0);
        if (direct.has(i) && !glue.has(i)) {
          trail.push(
            `node${i} at ${secs(now() - t0)}: ${r.status || r.error} in ${r.ms.toFixed(0)}ms ` +
              `x-cache=${r.headers["x-cache"]} age=${r.headers["age"]}`,
          );
        }
      }),
    ]));
    const done = nodes.find((i) => direct.has(i) && glue.has(i));
    if (done !== undefined) {
      return { node: done, direct: direct.get(done)!, glue: glue.get(done)!, trail };
    }
    await sleep(50);
  }
  throw new Error(
    `no node answered 200 on /primary both directly and through patroniglue within ${
      secs(timeoutMs)
    } (direct: ${[...direct.keys()]}, glue: ${[...glue.keys()]}); ${trail.slice(-20).join("; ")}`,
  );
}

/** First time (ms after t0) HAProxy shows each "route/nodeN" DOWN (also "DOWN (agent)"). */
async function markedDown(c: Cluster, keys: string[], t0: number, timeoutMs: number) {
  const out = new Map<string, number>();
  await waitFor(
    `haproxy to mark ${keys} down`,
    async () => {
      const s = await c.haproxyStates();
      for (const k of keys) {
        if (!out.has(k) && s.get(k)?.status.startsWith("DOWN")) out.set(k, now() - t0);
      }
      return out.size === keys.length;
    },
    timeoutMs,
    50,
  );
  return out;
}

/**
 * Writes reached the new primary through the agent route no later than through the HTTP-check
 * route via patroniglue (each route checks on its own schedule: one interval apart), nor than
 * directly plus the ttl.
 */
function assertAgentNoLater(at: Record<string, number>): void {
  assert.ok(
    at.a_primary <= at.g_primary + AGENT_INTER_MS + SLACK_MS,
    `a_primary ${secs(at.a_primary)} vs g_primary ${secs(at.g_primary)}`,
  );
  assert.ok(
    at.a_primary <= at.d_primary + TTL_MS + AGENT_INTER_MS + SLACK_MS,
    `a_primary ${secs(at.a_primary)} vs d_primary ${secs(at.d_primary)}`,
  );
}

/**
 * Writes reached the new primary through the witness (HAProxy checking the patroniglue with a
 * `dcs:` section) no later than with direct checks plus one check interval (issue 18: 0.5 s; each
 * route checks on its own schedule), plus our probes' granularity.
 */
function assertWitnessInStep(at: Record<string, number>): void {
  assert.ok(
    at.w_primary <= at.d_primary + INTER_MS + SLACK_MS,
    `w_primary ${secs(at.w_primary)} vs d_primary ${secs(at.d_primary)}`,
  );
}

/** Where each new connection through `route` went, polled until `stop()` says so. */
async function landings(c: Cluster, route: Route, stop: () => boolean) {
  const out: { at: number; node: number; recovery: boolean }[] = [];
  while (!stop()) {
    const w = await c.whereTo(c.ports.routes[route], 1000);
    if (w) out.push({ at: now(), ...w });
    await sleep(50);
  }
  return out;
}

/** How a session ended, for measure lines. */
function ending(w: SessionWriter, from: number, what: string): string {
  return w.closedAt === null ? "kept open" : `${w.ending} ${secs(w.closedAt - from)} after ${what}`;
}

Deno.test({
  name: reason === null
    ? "cluster: HAProxy routes through patroniglue on a real Patroni cluster"
    : `cluster suite skipped: ${reason}`,
  ignore: reason !== null,
  async fn(t) {
    const t0 = now();
    await using c = await Cluster.start();
    console.log(`measure: cluster up from nothing in ${secs(now() - t0)}`);

    const step = stepper(t, c);

    await step("1 routing: write ports reach the primary, read-only ports a replica", async () => {
      const leader = await c.waitReady();
      for (const route of ROUTE_NAMES) {
        const port = c.ports.routes[route];
        if (ROUTES[route].kind === "rw") {
          for (let k = 0; k < 3; k++) {
            assert.deepEqual(await c.whereTo(port), { node: leader, recovery: false }, route);
          }
        } else {
          const seen = new Set<number>();
          for (let k = 0; k < 4; k++) {
            const r = await c.whereTo(port);
            assert.ok(r, `${route}: no answer`);
            assert.equal(r.recovery, true, `${route}: reached a primary`);
            assert.notEqual(r.node, leader, route);
            seen.add(r.node);
          }
          assert.equal(seen.size, 2, `${route}: round robin over both replicas, saw ${[...seen]}`);
        }
      }
      // what the three HAProxy check styles send, straight to patroniglue
      for (const n of c.nodes) {
        const want = n.i === leader ? 200 : 503;
        const opts = await c.glue(n.i, "/primary", { method: "OPTIONS" });
        assert.equal(opts.status, want, `${n.name} OPTIONS /primary`);
        assert.match(opts.headers["x-cache"] ?? "", /^(HIT|MISS|COALESCED)$/);
        assert.match(opts.headers["age"] ?? "", /^\d+$/);
        const bare = await c.glue(n.i, "/", { method: "OPTIONS", version: "1.0" });
        assert.equal(bare.status, want, `${n.name} OPTIONS / HTTP/1.0 (no Host)`);
        const get = await c.glue(n.i, "/replica?lag=1MB");
        assert.equal(get.status, n.i === leader ? 503 : 200, `${n.name} GET /replica?lag=1MB`);
        assert.equal((await c.glue(n.i, "/health")).status, 200, `${n.name} /health`);
        // what HAProxy's agent-check sends (and nothing: agent.check, /primary), Patroni real
        const [primary, replica, nothing] = await Promise.all([
          c.agent(n.i, "/primary\n"),
          c.agent(n.i, "/replica?lag=1MB\n"),
          c.agent(n.i, ""),
        ]);
        const [mine, other] = n.i === leader ? ["up ready", "maint"] : ["maint", "up ready"];
        assert.equal(primary.line, mine, `${n.name} agent /primary: ${primary.error ?? ""}`);
        assert.equal(
          replica.line,
          other,
          `${n.name} agent /replica?lag=1MB: ${replica.error ?? ""}`,
        );
        assert.equal(nothing.line, mine, `${n.name} agent, no line: ${nothing.error ?? ""}`);
      }
      // HAProxy's show stat in normal operation: on the agent routes a node in the other role is
      // MAINT (no alert), on the HTTP-check routes it is DOWN
      const states = await c.haproxyStates();
      const count = (via: string, status: string) =>
        [...states].filter(([k, s]) =>
          ROUTES[k.split("/")[0] as Route].via === via && s.status === status
        )
          .length;
      for (const route of ROUTE_NAMES) {
        const def = ROUTES[route];
        for (const n of c.nodes) {
          const s = states.get(`${route}/${n.name}`);
          const serves = def.kind === "rw" ? n.i === leader : n.i !== leader;
          const want = serves ? "UP" : def.via === "agent" ? "MAINT" : "DOWN";
          assert.equal(s?.status, want, `${route}/${n.name} in show stat: ${JSON.stringify(s)}`);
          if (def.via === "agent" && serves) {
            assert.equal(s?.check, "L4OK", `${route}/${n.name}: TCP check of PostgreSQL`);
            assert.equal(s?.lastAgent, "via agent : up", `${route}/${n.name}`);
          }
        }
      }
      assert.equal(count("agent", "DOWN"), 0, "no agent-route server DOWN in normal operation");
      const others = ROUTE_NAMES.filter((r) => ROUTES[r].via === "agent")
        .reduce((k, r) => k + (ROUTES[r].kind === "rw" ? c.nodes.length - 1 : 1), 0);
      assert.equal(count("agent", "MAINT"), others, "every node in the other role MAINT");
      console.log(
        `measure: show stat in normal operation: agent routes ${count("agent", "UP")} UP, ` +
          `${count("agent", "MAINT")} MAINT, ${count("agent", "DOWN")} DOWN; HTTP-check routes ` +
          `through patroniglue ${count("glue", "UP")} UP, ${count("glue", "DOWN")} DOWN`,
      );
    });

    await step("2 parity: patroniglue's GET status equals Patroni's on every route", async () => {
      await c.waitReady();
      await sleep(TTL_MS + 100); // let every cached answer expire
      const paths = [...FORWARDED, ...VARIANTS];
      const diffs: string[] = [];
      const rechecked: string[] = [];
      const seen = new Map<number, number>(); // Patroni's status -> count
      for (const n of c.nodes) {
        for (const path of paths) {
          // both patroniglue: with Patroni answering, the witness answers as Patroni too
          for (const kind of GLUE_KINDS) {
            const glue = kind === "glue" ? c.glue.bind(c) : c.witness.bind(c);
            const ask = () => Promise.all([glue(n.i, path), c.rest(n.i, path)]);
            let [g, d] = await ask();
            // A difference can be transient: an answer cached up to ttl ago, or a Patroni too
            // slow for backend.timeout on a loaded machine (a 503 by design). A wrong mapping
            // persists.
            for (let k = 0; k < 3 && g.status !== d.status; k++) {
              rechecked.push(`${n.name} ${path} ${kind} ${g.status} ${g.body.slice(0, 60)}`);
              await sleep(TTL_MS + 100);
              [g, d] = await ask();
            }
            if (g.status !== d.status) {
              diffs.push(
                `${n.name} ${path}: ${kind} ${g.status} ${g.error ?? ""}, patroni ${d.status}`,
              );
            }
            const where = `${kind} ${n.name} ${path}`;
            if (g.status !== 0) {
              assert.match(g.headers["x-cache"] ?? "", /^(HIT|MISS|COALESCED)$/, where);
            }
            if (kind === "glue") seen.set(d.status, (seen.get(d.status) ?? 0) + 1);
            if (g.status === 200 && d.status === 200) {
              assert.equal(role(g), role(d), `${where}: role in the body`);
            }
          }
        }
      }
      assert.deepEqual(diffs, [], "patroniglue and Patroni disagree");
      // the comparison means something only if both answers occur
      assert.ok((seen.get(200) ?? 0) > 10 && (seen.get(503) ?? 0) > 10, "both statuses occur");
      console.log(
        `measure: parity ${c.nodes.length} nodes x ${paths.length} paths equal, both patroniglue ` +
          `(${seen.get(200)} x 200, ${seen.get(503)} x 503)` +
          (rechecked.length ? `; re-checked after a transient difference: ${rechecked}` : ""),
      );
    });

    await step(
      "7 REST API of the primary and of a replica frozen (relay SIGSTOPped, HA loop running): " +
        "no write fails through the witness, its servers stay in their backends",
      () => timed(c, "API freeze", () => apiFrozen(c)),
    );

    await step(
      "5 switchover: never two primaries through patroniglue for longer than ttl; writes move, " +
        "sessions on the old primary end",
      () =>
        timed(c, "switchover", async () => {
          const old = await c.waitReady();
          const cand = c.nodes.find((n) => n.i !== old)!.i;
          // sessions opened before: through the agent routes to the old primary, with and without
          // on-marked-down shutdown-sessions, and through the agent replica route to the candidate
          await using onOld = await c.writer(c.ports.routes.a_primary, tag("so_old"));
          await using onOldKeep = await c.writer(c.ports.routes.a_keep, tag("so_keep"));
          await using onCand = await c.writer(
            c.ports.routes.a_replica,
            tag("so_cand"),
            (at) => at.node === cand,
          );
          assert.deepEqual([onOld.node, onOldKeep.node], [old, old], "sessions on the old primary");
          type Sample = { t: number; glue: number[]; witness: number[]; direct: number[] };
          const samples: Sample[] = [];
          let stop = false;
          const sampler = (async () => {
            while (!stop) {
              const t = now();
              const opts = { timeoutMs: 2000 };
              const [glue, witness, direct] = await Promise.all([
                Promise.all(c.nodes.map((n) => c.glue(n.i, "/primary", opts))),
                Promise.all(c.nodes.map((n) => c.witness(n.i, "/primary", opts))),
                Promise.all(c.nodes.map((n) => c.rest(n.i, "/primary", opts))),
              ]);
              samples.push({
                t,
                glue: glue.map((r) => r.status),
                witness: witness.map((r) => r.status),
                direct: direct.map((r) => r.status),
              });
              await sleep(20);
            }
          })();
          const agentLandings = landings(c, "a_primary", () => stop);
          const t0 = now();
          let routes: { ms: number; node: number }[];
          try {
            await sleep(200);
            [routes] = await Promise.all([
              Promise.all(RW.map((r) => writesMoved(c, r, old, t0, 60_000))),
              c.switchover(old, cand),
            ]);
            // until the new primary is settled through patroniglue, and then some
            await waitFor(
              "patroniglue to report the switchover",
              async () => {
                const [a, b] = await Promise.all([
                  c.glue(cand, "/primary"),
                  c.glue(old, "/primary"),
                ]);
                return a.status === 200 && b.status === 503;
              },
              60_000,
              50,
            );
            await sleep(2 * TTL_MS);
          } finally {
            stop = true;
            await sampler;
          }
          const landed = await agentLandings;
          const g = windows(samples, (s) => s.glue);
          const w = windows(samples, (s) => s.witness);
          const d = windows(samples, (s) => s.direct);
          const at = Object.fromEntries(RW.map((r, k) => [r, routes[k].ms]));
          // the new primary took writes: the first probe that found it writable, or a write on
          // the session opened on it as a replica
          const promoted = Math.min(
            t0 + Math.min(...routes.map((r) => r.ms)),
            ...onCand.writesOn(cand),
          );
          const candWrites = onCand.writesOn(cand);
          console.log(
            `measure: switchover node${old}->node${cand} in ${secs(now() - t0)}: ` +
              `both-primary window glue=${secs(g.both)} witness=${secs(w.both)} ` +
              `direct=${secs(d.both)}, no-primary gap glue=${secs(g.none)} ` +
              `witness=${secs(w.none)} direct=${secs(d.none)} (${samples.length} samples)`,
          );
          console.log(
            `measure: switchover writes moved direct=${secs(at.d_primary)} ` +
              `glue=${secs(at.g_primary)} agent=${secs(at.a_primary)} ` +
              `witness=${secs(at.w_primary)} witness agent=${secs(at.wa_primary)} ` +
              `(bare httpchk: direct=${secs(at.d_bare)} glue=${secs(at.g_bare)}); ` +
              `sessions on the old primary: agent route ${ending(onOld, t0, "the switchover")}, ` +
              `without shutdown-sessions ${
                ending(onOldKeep, t0, "the switchover")
              }; read-only session on the ` +
              `promoted node: ${candWrites.length} writes on the new primary, ` +
              `${ending(onCand, promoted, "its promotion")}`,
          );
          for (const [kind, win] of [["patroniglue", g], ["the witness", w]] as const) {
            assert.ok(
              win.both <= TTL_MS + SLACK_MS,
              `two nodes answered 200 on /primary through ${kind} for ${
                secs(win.both)
              } (ttl ${GLUE_TTL}s)`,
            );
          }
          for (const r of routes) assert.equal(r.node, cand, "all write routes, the candidate");
          assertAgentNoLater(at);
          assertWitnessInStep(at);
          // the demoted node takes no new connection through the agent route once the new
          // primary has one
          const first = landed.findIndex((l) => l.node === cand && !l.recovery);
          assert.ok(first >= 0, `a_primary never led to node${cand}`);
          const stray = landed.slice(first).filter((l) => l.node !== cand || l.recovery);
          assert.deepEqual(stray, [], `a_primary led elsewhere after node${cand}`);
          // PostgreSQL itself ends the sessions on the old primary (Patroni restarts it as a
          // replica), with or without shutdown-sessions: no write on them after the promotion
          for (const w of [onOld, onOldKeep]) {
            await waitFor(`${w.label} to end`, () => w.closedAt !== null, 10_000, 50);
            assert.equal(w.session.fatal?.code, "57P01", `${w.label}: ${w.ending}`);
            const late = w.writesOn(old).filter((t) => t >= promoted);
            assert.deepEqual(late, [], `${w.label}: writes on the old primary after the promotion`);
          }
          // a session opened on a replica stays open through its promotion (PostgreSQL promotes
          // without a restart): HAProxy ends it when the agent turns the node MAINT
          await waitFor(`${onCand.label} to end`, () => onCand.closedAt !== null, 10_000, 50);
          assert.equal(onCand.session.fatal, null, `${onCand.label}: ${onCand.ending}`);
          assert.ok(
            onCand.closedAt! - promoted <= TTL_MS + AGENT_INTER_MS + SLACK_MS,
            `the read-only session on node${cand} was cut ${
              secs(onCand.closedAt! - promoted)
            } after its promotion`,
          );
          await c.waitReady(cand);
        }),
    );

    await step("6 restarts of patroniglue and Patroni: never a false primary", async () => {
      const leader = await c.waitReady();
      const [r1, r2] = c.nodes.filter((n) => n.i !== leader).map((n) => n.i);
      const violations: string[] = [];
      let checks = 0;
      let stop = false;
      const tm = now();
      const monitor = (async () => {
        while (!stop) {
          const at = secs(now() - tm);
          const [states, ...answers] = await Promise.all([
            c.haproxyStates().catch(() => null),
            ...[r1, r2].map((i) => c.glue(i, "/primary", { method: "OPTIONS", timeoutMs: 2000 })),
            ...[r1, r2].map((i) => c.glue(i, "/", { method: "OPTIONS", version: "1.0" })),
          ]);
          for (const a of answers) {
            if (a.status === 200) violations.push(`${at}: a replica's patroniglue answered 200`);
          }
          for (const [k, s] of states ?? []) {
            const [route, node] = k.split("/");
            const isLeader = node === `node${leader}`;
            const rw = ROUTES[route as Route].kind === "rw";
            if (s.status.startsWith("UP") && rw !== isLeader) {
              violations.push(`${at}: haproxy ${k} ${s.status}`);
            }
          }
          for (const route of ["g_primary", "g_bare", "a_primary"] as Route[]) {
            const w = await c.whereTo(c.ports.routes[route]);
            if (w && (w.recovery || w.node !== leader)) {
              violations.push(`${at}: ${route} led to ${JSON.stringify(w)}`);
            }
          }
          checks++;
          await sleep(50);
        }
      })();
      try {
        // a. patroniglue restart on a replica, down until HAProxy has noticed; an agent that
        // cannot be reached changes nothing (HAProxy keeps its last word)
        assert.equal(await c.stopGlue(r1), 0, "patroniglue exits 0 on SIGTERM");
        await c.waitHaproxy(new Map([[`g_replica/node${r1}`, "DOWN"]]));
        const unreachable = await c.haproxyStates();
        assert.equal(
          unreachable.get(`a_primary/node${r1}`)?.status,
          "MAINT",
          "a_primary, no agent",
        );
        assert.equal(unreachable.get(`a_replica/node${r1}`)?.status, "UP", "a_replica, no agent");
        await c.startGlue(r1);
        await c.waitReady(leader);
        // b. the same on the leader: how long the write routes through it take to come back
        const tb = now();
        assert.equal(await c.stopGlue(leader), 0, "patroniglue exits 0 on SIGTERM");
        const downKeys = ["g_primary", "g_bare"].map((r) => `${r}/node${leader}`);
        await c.waitHaproxy(new Map(downKeys.map((k) => [k, "DOWN"])));
        const down = now() - tb;
        // meanwhile the agent route keeps the leader UP (watched by its TCP check) and writes flow
        const kept = await c.haproxyStates();
        assert.equal(kept.get(`a_primary/node${leader}`)?.status, "UP", "a_primary, no agent");
        assert.match(kept.get(`a_primary/node${leader}`)?.agent ?? "", /^L4/, "agent unreachable");
        assert.deepEqual(
          await c.whereTo(c.ports.routes.a_primary),
          { node: leader, recovery: false },
          "writes through a_primary while the leader's patroniglue is stopped",
        );
        const ts = now();
        await c.startGlue(leader);
        const started = now() - ts;
        await c.waitHaproxy(c.expectedStates(leader, ["g_primary", "g_bare"]));
        const back = now() - ts;
        // c. Patroni restart on a replica (it stops and starts its PostgreSQL)
        const tc = now();
        await c.stopPatroni(r2);
        c.startPatroni(r2);
        await c.waitReady(leader, 90_000);
        const replicaBack = now() - tc;
        // d. patronictl restart of the leader's PostgreSQL
        const td = now();
        await c.restartPostgres(leader);
        await c.waitReady(leader, 90_000);
        const pgBack = now() - td;
        console.log(
          `measure: restarts: patroniglue on leader stopped -> haproxy down ${secs(down)} ` +
            `(agent route: still UP, writes flow), ` +
            `started in ${secs(started)} -> write routes up ${secs(back)}; ` +
            `patroni on replica back ${secs(replicaBack)}; ` +
            `leader postgres restart back ${secs(pgBack)}`,
        );
      } finally {
        stop = true;
        await monitor;
      }
      assert.ok(checks > 20, `monitor ran ${checks} times`);
      assert.deepEqual(violations, [], "false primary seen");
      assert.equal(await c.leader(), leader, "the leader did not change");
    });

    await step(
      "3 leader crash (kill -9 Patroni + PostgreSQL): writes move, its sessions end",
      () =>
        timed(c, "crash failover", async () => {
          const old = await c.waitReady();
          const others = c.nodes.filter((n) => n.i !== old).map((n) => n.i);
          await using onOld = await c.writer(c.ports.routes.a_primary, tag("crash_old"));
          const t0 = now();
          await c.kill9(old);
          const killed = now(); // Patroni and the postmaster are gone
          let newPrimary: number;
          try {
            const [routes, rest, deadGlue, down] = await Promise.all([
              Promise.all(RW.map((r) => writesMoved(c, r, old, t0, 60_000))),
              firstPrimary200(c, others, t0, 60_000),
              // a dead backend is a 503 at once, not a stale 200 (after the cache has expired)
              sleep(TTL_MS + 100).then(() => c.glue(old, "/primary")),
              markedDown(
                c,
                ["d_primary", "g_primary", "a_primary", "w_primary"].map((r) => `${r}/node${old}`),
                t0,
                30_000,
              ),
            ]);
            newPrimary = rest.node;
            await waitFor(`${onOld.label} to end`, () => onOld.closedAt !== null, 5000, 50);
            const at = Object.fromEntries(RW.map((r, k) => [r, routes[k].ms]));
            const downAt = (r: Route) => secs(down.get(`${r}/node${old}`)!);
            console.log(
              `measure: crash failover direct=${secs(at.d_primary)} glue=${secs(at.g_primary)} ` +
                `agent=${secs(at.a_primary)} witness=${secs(at.w_primary)} ` +
                `witness agent=${secs(at.wa_primary)} ` +
                `(bare httpchk: direct=${secs(at.d_bare)} glue=${secs(at.g_bare)}); ` +
                `new primary node${rest.node} /primary 200 direct=${secs(rest.direct)} ` +
                `glue=${secs(rest.glue)}; old primary marked down direct=${downAt("d_primary")} ` +
                `glue=${downAt("g_primary")} agent=${downAt("a_primary")} ` +
                `witness=${downAt("w_primary")}; session on it: ` +
                ending(onOld, t0, "the kill"),
            );
            assert.equal(deadGlue.status, 503, "patroniglue of the killed node");
            // refused at once: well before the timeout a silent backend would take
            assert.ok(deadGlue.ms < TIMEOUT_MS, `503 for a dead backend took ${deadGlue.ms}ms`);
            for (const r of routes) {
              assert.equal(r.node, rest.node, "all write routes, one new primary");
            }
            assert.ok(
              rest.glue <= rest.direct + TTL_MS + SLACK_MS,
              `patroniglue reported the new primary ${
                secs(rest.glue - rest.direct)
              } after Patroni: ` +
                rest.trail.slice(-20).join("; "),
            );
            // HAProxy checks each route on its own schedule: allow one check interval on top of ttl
            for (const [g, d] of [["g_primary", "d_primary"], ["g_bare", "d_bare"]]) {
              assert.ok(
                at[g] <= at[d] + TTL_MS + INTER_MS + SLACK_MS,
                `${g} ${secs(at[g])} vs ${d} ${secs(at[d])}`,
              );
            }
            assertAgentNoLater(at);
            assertWitnessInStep(at);
            // the session on the crashed primary ended with it; nothing written after the crash
            const late = onOld.writesOn(old).filter((t) => t >= killed);
            assert.deepEqual(late, [], `${onOld.label}: writes after the crash`);
          } finally {
            c.startPatroni(old); // rejoins as a replica (pg_rewind), also when an assertion failed
          }
          await c.waitReady(undefined, 120_000);
          // back as a replica: MAINT on the agent route (waitReady), no new connection goes there
          for (let k = 0; k < 4; k++) {
            assert.deepEqual(
              await c.whereTo(c.ports.routes.a_primary),
              { node: newPrimary, recovery: false },
              `a_primary after node${old} rejoined`,
            );
          }
        }),
    );

    await step(
      "4 frozen leader Patroni (SIGSTOP): 503 within timeout, writes move, HAProxy ends its sessions",
      () =>
        timed(c, "freeze failover", async () => {
          const old = await c.waitReady();
          const others = c.nodes.filter((n) => n.i !== old).map((n) => n.i);
          // sessions on the old primary through the agent route, the HTTP-check route through
          // patroniglue, and the agent route without on-marked-down shutdown-sessions
          await using onAgent = await c.writer(c.ports.routes.a_primary, tag("freeze_agent"));
          await using onGlue = await c.writer(c.ports.routes.g_primary, tag("freeze_glue"));
          await using onKeep = await c.writer(c.ports.routes.a_keep, tag("freeze_keep"));
          // through the witness: a write every 250 ms, each on a connection of its own
          await using viaWitness = new ShortWriter(c, c.ports.routes.w_primary, tag("freeze_w"));
          const t0 = now();
          c.freeze(old);
          type A = HttpAnswer & { path: string; start: number; end: number };
          const answers: A[] = [];
          const witnessed: A[] = [];
          const sampleUntil = t0 + TTL_MS + TIMEOUT_MS + 4000;
          const sample = async (path: string, method: string, kind: GlueKind = "glue") => {
            const [glue, into] = kind === "glue"
              ? [c.glue.bind(c), answers]
              : [c.witness.bind(c), witnessed];
            while (now() < sampleUntil) {
              const start = now() - t0;
              const r = await glue(old, path, { method, timeoutMs: 10_000 });
              into.push({ ...r, path: `${method} ${path}`, start, end: now() - t0 });
              await sleep(50);
            }
          };
          let routes: { ms: number; node: number }[];
          let down: Map<string, number>;
          let rest: { node: number; direct: number; glue: number };
          let promoted: number;
          try {
            [routes, down, rest] = await Promise.all([
              Promise.all(RW.map((r) => writesMoved(c, r, old, t0, 60_000))),
              markedDown(c, RW.map((r) => `${r}/node${old}`), t0, 30_000),
              firstPrimary200(c, others, t0, 60_000),
              sample("/primary", "OPTIONS"),
              sample("/", "OPTIONS"),
              sample("/primary", "GET"),
              sample("/replica?lag=1MB", "GET"),
              sample("/primary", "OPTIONS", "witness"),
            ]);
            promoted = t0 + Math.min(...routes.map((r) => r.ms));
            // PostgreSQL still runs as primary under the frozen Patroni: a session HAProxy does
            // not end keeps writing there after another node was promoted (split brain)
            await waitFor(
              `${onKeep.label} to write on the frozen old primary after the promotion`,
              () => onKeep.writesOn(old).some((t) => t > promoted),
              5000,
              50,
            );
            await waitFor(
              "a write through the witness on the new primary",
              () => viaWitness.writes.some((w) => w.ok && w.node === rest.node),
              5000,
              50,
            );
          } finally {
            await viaWitness.stop();
            c.thaw(old);
          }
          const tThaw = now();
          const at = Object.fromEntries(RW.map((r, k) => [r, routes[k].ms]));
          const ms = answers.map((a) => a.ms).sort((a, b) => a - b);
          const [p50, p90, slowest] = [pct(ms, 0.5), pct(ms, 0.9), ms.at(-1) ?? 0];
          const first503 = Math.min(
            ...answers.filter((a) => a.path === "OPTIONS /primary" && a.status === 503).map((a) =>
              a.end
            ),
          );
          console.log(
            `measure: freeze failover direct=${secs(at.d_primary)} glue=${secs(at.g_primary)} ` +
              `agent=${secs(at.a_primary)} ` +
              `(bare httpchk: direct=${secs(at.d_bare)} glue=${secs(at.g_bare)}); ` +
              `marked down direct=${secs(down.get(`d_primary/node${old}`)!)} ` +
              `glue=${secs(down.get(`g_primary/node${old}`)!)} ` +
              `agent=${secs(down.get(`a_primary/node${old}`)!)}; ` +
              `frozen node: first 503 after ${secs(first503)}, answered in ` +
              `p50=${p50.toFixed(0)}ms p90=${p90.toFixed(0)}ms max=${slowest.toFixed(0)}ms ` +
              `(${answers.length} checks); new primary node${rest.node}`,
          );
          // the witness: its last 200 for the frozen node, and the lock's earliest expiry less
          // HAProxy's reaction time (`fall` checks `inter` apart, the last one timing out)
          const lastWitness200 = Math.max(
            0,
            ...witnessed.filter((a) => a.status === 200).map((a) => a.start),
          );
          const witnessBound = PATRONI_TTL * 1000 - (CHECK_FALL * INTER_MS + CHECK_TIMEOUT * 1000);
          const downWitness = down.get(`w_primary/node${old}`)!;
          console.log(
            `measure: freeze failover through the witness: last 200 for the frozen node to a check ` +
              `sent ${secs(lastWitness200)} after the freeze (bound ${secs(witnessBound)}), ` +
              `marked down witness=${secs(downWitness)} ` +
              `witness agent=${secs(down.get(`wa_primary/node${old}`)!)}, writes reached ` +
              `node${rest.node} witness=${secs(at.w_primary)} witness agent=${
                secs(at.wa_primary)
              }; writes through w_primary ${viaWitness.summary}`,
          );
          assert.ok(
            lastWitness200 <= witnessBound,
            `the witness said 200 for the frozen node ${secs(lastWitness200)} after the freeze`,
          );
          assert.ok(
            t0 + downWitness < promoted,
            "w_primary kept the old primary past the promotion",
          );
          for (const a of answers) {
            assert.ok(
              a.status === 200 || a.status === 503,
              `${a.path}: ${a.status} ${a.error ?? ""}`,
            );
            // never waits for Patroni: bounded by the timeout (plus a loaded machine's scheduling)
            assert.ok(a.ms <= TIMEOUT_MS + 1500, `${a.path} took ${a.ms.toFixed(0)}ms`);
            // a 200 can only be an answer Patroni gave before the freeze, served within ttl
            if (a.status === 200) {
              assert.ok(
                a.start <= TTL_MS + SLACK_MS,
                `${a.path}: 200 for a check sent ${secs(a.start)} after the freeze`,
              );
            }
            if (a.start > TTL_MS + SLACK_MS) {
              assert.equal(a.status, 503, `${a.path} at ${secs(a.start)}`);
            }
          }
          // the timeout, not a queue: most checks are answered within it (a check never waits
          // for one backend request after another); outliers are the machine's scheduling
          assert.ok(p90 <= TIMEOUT_MS + SLACK_MS, `p90 ${p90.toFixed(0)}ms`);
          for (const r of routes) {
            assert.equal(r.node, rest.node, "all write routes, one new primary");
          }
          for (const [g, d] of [["g_primary", "d_primary"], ["g_bare", "d_bare"]]) {
            assert.ok(
              at[g] <= at[d] + TTL_MS + INTER_MS + SLACK_MS,
              `${g} ${secs(at[g])} vs ${d} ${secs(at[d])}`,
            );
          }
          assertAgentNoLater(at);
          // the agent's `down` acts at once; an HTTP check needs `fall` failed checks
          const [downAgent, downGlue] = ["a_primary", "g_primary"].map((r) =>
            down.get(`${r}/node${old}`)!
          );
          assert.ok(
            downAgent <= downGlue + SLACK_MS,
            `marked down: agent ${secs(downAgent)} vs HTTP check ${secs(downGlue)}`,
          );
          // with on-marked-down shutdown-sessions HAProxy ends the sessions on the frozen node
          // (PostgreSQL sent nothing: it still runs) before another node is promoted
          for (const w of [onAgent, onGlue]) {
            assert.ok(w.closedAt !== null, `${w.label} still open`);
            assert.equal(w.session.fatal, null, `${w.label}: ${w.ending}`);
            assert.ok(w.closedAt < promoted, `${w.label} ended after the promotion`);
            const late = w.writesOn(old).filter((t) => t >= w.closedAt!);
            assert.deepEqual(late, [], `${w.label}: writes after the cut`);
          }
          assert.ok(
            onAgent.closedAt! <= onGlue.closedAt! + SLACK_MS,
            `session cut: agent route ${ending(onAgent, t0, "the freeze")}, HTTP check ${
              ending(onGlue, t0, "the freeze")
            }`,
          );
          const keepLate = onKeep.writesOn(old).filter((t) => t > promoted).length;
          const keepTotal = onKeep.writesOn(old).length;
          const sessions =
            `sessions on the frozen primary: agent route ${ending(onAgent, t0, "the freeze")}, ` +
            `HTTP check ${
              ending(onGlue, t0, "the freeze")
            }; without shutdown-sessions ${keepLate} writes ` +
            `acknowledged by the old primary after the promotion`;
          // after SIGCONT the old leader rejoins as a replica, and patroniglue says so
          await waitFor(
            `node${old} back as a replica through patroniglue`,
            async () => {
              const [rep, pri] = await Promise.all([
                c.glue(old, "/replica?lag=1MB"),
                c.glue(old, "/primary"),
              ]);
              return rep.status === 200 && pri.status === 503;
            },
            90_000,
            100,
          );
          const rejoined = now() - tThaw;
          await c.waitReady(rest.node, 90_000);
          // every write the old primary acknowledged through the witness is on the new primary
          const table = await c.sql(
            c.node(rest.node).pgPort,
            `select who from ${WRITES_TABLE} where who like '${viaWitness.label}_%'`,
          );
          assert.equal(table.error, null, `select: ${table.error?.message}`);
          const present = new Set(table.rows.map((r) => r[0]));
          const acked = viaWitness.writes.filter((w) => w.ok);
          const onOld = acked.filter((w) => w.node === old);
          const lost = acked.filter((w) => !present.has(w.id));
          console.log(
            `measure: freeze failover through the witness: ${acked.length} writes acknowledged, ` +
              `${onOld.length} by the frozen old primary (the last ${
                secs(Math.max(...onOld.map((w) => w.end)) - t0)
              } after the freeze), ${acked.length - onOld.length} by node${rest.node}; ` +
              `${lost.length} missing from node${rest.node}'s table`,
          );
          assert.ok(onOld.length > 0, "no write reached the old primary after its freeze");
          assert.deepEqual(lost.map((w) => `${w.id} on node${w.node}`), [], "acknowledged, lost");
          // what the old primary acknowledged after the promotion is gone (rewound)
          const kept = await c.sql(
            c.node(rest.node).pgPort,
            `select count(*) from ${WRITES_TABLE} where who = '${onKeep.label}'`,
          );
          assert.equal(kept.error, null, `count: ${kept.error?.message}`);
          const found = Number(kept.rows[0][0]);
          assert.ok(
            found <= keepTotal - keepLate,
            `${found} of ${keepTotal} rows on the new primary, ${keepLate} written after the promotion`,
          );
          console.log(
            `measure: ${sessions}, ${keepTotal - found} of ${keepTotal} lost; ` +
              `that session ${ending(onKeep, tThaw, "the thaw")}`,
          );
          console.log(`measure: thawed node${old} back as a replica after ${secs(rejoined)}`);
        }),
    );

    await step(
      "8 etcd frozen: the witness says 200 only where Patroni did in the seconds before",
      () => timed(c, "etcd freeze", () => etcdFrozen(c)),
    );
  },
});

Deno.test({
  name: reason === null
    ? "cluster (etcd3): the DCS witness keeps a primary and a replica whose REST API froze"
    : `cluster suite (etcd3) skipped: ${reason}`,
  ignore: reason !== null,
  async fn(t) {
    const t0 = now();
    await using c = await Cluster.start({ dcs: "etcd3" });
    console.log(`measure: etcd3 cluster up from nothing in ${secs(now() - t0)}`);
    await stepper(t, c)(
      "7 REST API of the primary and of a replica frozen, on etcd3: no write fails through the " +
        "witness",
      () => timed(c, "API freeze (etcd3)", () => apiFrozen(c)),
    );
  },
});

/** A test step on cluster `c`; a failed one marks the run failed and gives the next a whole cluster. */
function stepper(t: Deno.TestContext, c: Cluster) {
  return (name: string, fn: () => Promise<void>) =>
    t.step(name, async () => {
      try {
        await fn();
      } catch (e) {
        c.failed = true;
        await c.recover().catch(() => {});
        throw e;
      }
    });
}

/** The q-quantile of sorted numbers. */
function pct(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
}

function role(a: HttpAnswer): string | undefined {
  try {
    return JSON.parse(a.body).role;
  } catch {
    return undefined;
  }
}

/** Longest run of samples with >= 2 (both) and with 0 (none) nodes answering 200. */
function windows<S extends { t: number }>(samples: S[], get: (s: S) => number[]) {
  let both = 0, none = 0;
  let bothStart: number | null = null, noneStart: number | null = null;
  for (const s of samples) {
    const n = get(s).filter((x) => x === 200).length;
    if (n >= 2) bothStart ??= s.t;
    else if (bothStart !== null) both = Math.max(both, s.t - bothStart), bothStart = null;
    if (n === 0) noneStart ??= s.t;
    else if (noneStart !== null) none = Math.max(none, s.t - noneStart), noneStart = null;
  }
  const last = samples.at(-1)?.t ?? 0;
  if (bothStart !== null) both = Math.max(both, last - bothStart);
  if (noneStart !== null) none = Math.max(none, last - noneStart);
  return { both, none };
}
