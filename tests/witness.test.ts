// The DCS witness's rules on hand-made views, on a clock the test sets: when the DCS vouches for a
// check Patroni left unanswered, and when a live lock of another member overrules Patroni's 200.
import assert from "node:assert/strict";
import type { DcsView, MemberKey } from "../src/dcs/view.ts";
import { parseLag, Witness } from "../src/check/witness.ts";

const NOW = 100_000;
const PRIMARY: MemberKey = {
  role: "master",
  state: "running",
  timeline: 2,
  xlogLocation: 5000,
  tags: {},
};
const REPLICA: MemberKey = {
  role: "replica",
  state: "running",
  timeline: 2,
  xlogLocation: 4000,
  tags: {},
};

/** A view confirmed now, the lock held by `holder` with `leftMs` to go. */
function view(
  holder: string | undefined,
  leftMs: number,
  members: Record<string, MemberKey>,
  extra: Partial<DcsView> = {},
): DcsView {
  return {
    confirmedAt: NOW,
    leader: holder === undefined ? undefined : { holder, heldUntil: NOW + leftMs },
    members: new Map(Object.entries(members)),
    leaderOptime: 5000,
    ttl: 30,
    failsafeMode: false,
    ...extra,
  };
}

function witness(name: string, v: DcsView | undefined, margin?: number, now = NOW) {
  return new Witness({ view: () => v, name, margin, now: () => now });
}

const LEADER_PATHS = ["/", "/primary", "/master", "/read-write", "/leader"];
const NEVER = [
  "/standby-leader",
  "/sync",
  "/synchronous",
  "/async",
  "/liveness",
  "/readiness",
  "/read-only-sync",
  "/quorum",
];

Deno.test("witness: the lock holder, running as primary with more than the margin left, is vouched for on the leader checks", () => {
  const w = witness("n1", view("n1", 20_000, { n1: PRIMARY, n2: REPLICA }));
  for (const path of [...LEADER_PATHS, "/read-only"]) {
    const t = w.testify(path, "");
    assert.equal(t?.status, 200, path);
    assert.match(t!.evidence, /^holds the leader lock \(20\.0 s left\), master, running$/);
  }
  for (const path of ["/replica", ...NEVER]) assert.equal(w.testify(path, ""), undefined, path);
});

Deno.test("witness: nothing once the lock has no more than the margin left (default: half Patroni's ttl)", () => {
  const members = { n1: PRIMARY };
  assert.equal(witness("n1", view("n1", 15_001, members)).testify("/primary", "")?.status, 200);
  assert.equal(witness("n1", view("n1", 15_000, members)).testify("/primary", ""), undefined);
  // ttl 5 (the lab): margin 2.5 s
  const short = (left: number) => view("n1", left, members, { ttl: 5 });
  assert.equal(witness("n1", short(2_600)).testify("/primary", "")?.status, 200);
  assert.equal(witness("n1", short(2_500)).testify("/primary", ""), undefined);
  // no dynamic config in the DCS: Patroni's default ttl, 30 s
  assert.equal(witness("n1", short(2_600)).marginMs(view("n1", 1, {}, { ttl: undefined })), 15_000);
  // an explicit margin wins
  assert.equal(witness("n1", view("n1", 3_000, members), 2.9).testify("/primary", "")?.status, 200);
  assert.equal(witness("n1", view("n1", 3_000, members), 3).testify("/primary", ""), undefined);
  // the clock moves on: the same view stops vouching
  const v = view("n1", 20_000, members);
  assert.equal(witness("n1", v, undefined, NOW + 4_999).testify("/primary", "")?.status, 200);
  assert.equal(witness("n1", v, undefined, NOW + 5_000).testify("/primary", ""), undefined);
});

Deno.test("witness: no view, no lock, another holder, a member not running or in another role: nothing", () => {
  assert.equal(witness("n1", undefined).testify("/primary", ""), undefined);
  assert.equal(
    witness("n1", view(undefined, 0, { n1: PRIMARY })).testify("/primary", ""),
    undefined,
  );
  assert.equal(
    witness("n1", view("n2", 20_000, { n1: PRIMARY })).testify("/primary", ""),
    undefined,
  );
  assert.equal(witness("n1", view("n1", 20_000, {})).testify("/primary", ""), undefined);
  for (const state of ["starting", "stopped", "crashed", undefined]) {
    const member = { ...PRIMARY, state };
    assert.equal(
      witness("n1", view("n1", 20_000, { n1: member })).testify("/primary", ""),
      undefined,
    );
  }
  const lockedReplica = view("n1", 20_000, { n1: REPLICA });
  assert.equal(witness("n1", lockedReplica).testify("/primary", ""), undefined);
  // a standby leader holds the lock: /leader, not /primary
  const standby = view("n1", 20_000, { n1: { ...PRIMARY, role: "standby_leader" } });
  assert.equal(witness("n1", standby).testify("/leader", "")?.status, 200);
  assert.equal(witness("n1", standby).testify("/primary", ""), undefined);
  assert.equal(witness("n1", standby).testify("/standby-leader", ""), undefined);
  // Patroni 4's role name
  const v4 = view("n1", 20_000, { n1: { ...PRIMARY, role: "primary" } });
  assert.equal(witness("n1", v4).testify("/primary", "")?.status, 200);
});

Deno.test("witness: a running replica under another member's live lock is vouched for on /replica and /read-only", () => {
  const v = view("n1", 20_000, { n1: PRIMARY, n2: REPLICA });
  const w = witness("n2", v);
  assert.equal(w.testify("/replica", "")?.status, 200);
  assert.equal(w.testify("/read-only", "")?.status, 200);
  assert.match(
    w.testify("/replica", "")!.evidence,
    /^n1 holds the leader lock \(20\.0 s left\), replica, running$/,
  );
  for (const path of [...LEADER_PATHS, ...NEVER]) {
    assert.equal(w.testify(path, ""), undefined, path);
  }
  // under a lock near its end, or no lock: nothing
  assert.equal(
    witness("n2", view("n1", 15_000, { n2: REPLICA })).testify("/replica", ""),
    undefined,
  );
  assert.equal(
    witness("n2", view(undefined, 0, { n2: REPLICA })).testify("/replica", ""),
    undefined,
  );
  // a replica that holds the lock (being promoted) is no replica to load-balance to
  assert.equal(
    witness("n2", view("n2", 20_000, { n2: REPLICA })).testify("/replica", ""),
    undefined,
  );
  // not running
  const stopped = view("n1", 20_000, { n2: { ...REPLICA, state: "starting" } });
  assert.equal(witness("n2", stopped).testify("/replica", ""), undefined);
});

Deno.test("witness: /replica's lag, tags and noloadbalance as Patroni applies them", () => {
  const at = (member: MemberKey, query: string, extra: Partial<DcsView> = {}) =>
    witness("n2", view("n1", 20_000, { n2: member }, extra)).testify("/replica", query)?.status;
  // leader optime 5000, replica at 4000: 1000 bytes behind
  assert.equal(at(REPLICA, "lag=1000"), 200);
  assert.equal(at(REPLICA, "lag=999"), undefined);
  assert.equal(at(REPLICA, "lag=1kB"), 200);
  assert.equal(at(REPLICA, "lag=1MB"), 200);
  // unknown positions or a lag that is not a size: no answer (Patroni's own check would decide)
  assert.equal(at(REPLICA, "lag=1MB", { leaderOptime: undefined }), undefined);
  assert.equal(at({ ...REPLICA, xlogLocation: undefined }, "lag=1MB"), undefined);
  assert.equal(at(REPLICA, "lag=lots"), undefined);
  // tags: present and equal, as Patroni compares them (non-strings lowercased)
  const tagged = { ...REPLICA, tags: { dc: "east", ssd: true, weight: 10 } };
  assert.equal(at(tagged, "tag_dc=east"), 200);
  assert.equal(at(tagged, "tag_dc=west"), undefined);
  assert.equal(at(tagged, "tag_rack=1"), undefined);
  assert.equal(at(tagged, "tag_ssd=true&tag_weight=10"), 200);
  assert.equal(at(tagged, "tag_ssd=True"), undefined);
  // noloadbalance, in Patroni's spellings
  for (const v of [true, "on", "yes", "1", "true"]) {
    assert.equal(at({ ...REPLICA, tags: { noloadbalance: v } }, ""), undefined, String(v));
  }
  assert.equal(at({ ...REPLICA, tags: { noloadbalance: false } }, ""), 200);
  // tags do not matter to the leader checks
  const w = witness("n1", view("n1", 20_000, { n1: { ...PRIMARY, tags: { dc: "east" } } }));
  assert.equal(w.testify("/primary", "tag_dc=west")?.status, 200);
});

Deno.test("witness: another member's live lock overrules a 200 on the leader checks, until the lock's evidence runs out", () => {
  const v = view("n2", 5_000, { n1: PRIMARY, n2: PRIMARY });
  const w = witness("n1", v);
  for (const path of [...LEADER_PATHS, "/standby-leader"]) {
    assert.equal(w.overrule(path), "the leader lock is held by n2", path);
  }
  for (const path of ["/replica", "/read-only", "/sync", "/liveness"]) {
    assert.equal(w.overrule(path), undefined, path);
  }
  assert.equal(
    witness("n1", v, undefined, NOW + 4_999).overrule("/primary"),
    "the leader lock is held by n2",
  );
  assert.equal(witness("n1", v, undefined, NOW + 5_000).overrule("/primary"), undefined);
  assert.equal(witness("n2", v).overrule("/primary"), undefined);
  assert.equal(witness("n1", view(undefined, 0, {})).overrule("/primary"), undefined);
  assert.equal(witness("n1", undefined).overrule("/primary"), undefined);
});

Deno.test("witness: failsafe_mode changes nothing while a lock is live, and a lapsed lock gives no answer either way", () => {
  const members = { n1: PRIMARY };
  const live = view("n1", 20_000, members, { failsafeMode: true });
  assert.equal(witness("n1", live).testify("/primary", "")?.status, 200);
  // the lock lapsed while the primary may rightly stay primary under failsafe: no 200, no veto
  const lapsed = view(undefined, 0, members, { failsafeMode: true });
  assert.equal(witness("n1", lapsed).testify("/primary", ""), undefined);
  assert.equal(witness("n1", lapsed).overrule("/primary"), undefined);
});

Deno.test("witness: lockLeftMs is what the view's evidence leaves, never negative", () => {
  const v = view("n1", 3_000, {});
  assert.equal(witness("n1", v).lockLeftMs(), 3_000);
  assert.equal(witness("n1", v, undefined, NOW + 4_000).lockLeftMs(), 0);
  assert.equal(witness("n1", undefined).lockLeftMs(), 0);
});

Deno.test("witness: parseLag reads bytes and Patroni's units, and nothing else", () => {
  assert.equal(parseLag("0"), 0);
  assert.equal(parseLag("1024"), 1024);
  assert.equal(parseLag("16kB"), 16 * 1024);
  assert.equal(parseLag(" 10 MB "), 10 * 1024 * 1024);
  assert.equal(parseLag("1GB"), 1024 ** 3);
  assert.equal(parseLag("2TB"), 2 * 1024 ** 4);
  assert.equal(parseLag("7B"), 7);
  for (const bad of ["", "MB", "1.5MB", "-1", "1mb", "1KB", "0x400", "1e6", "1 2"]) {
    assert.equal(parseLag(bad), undefined, bad);
  }
});

Deno.test("witness: once Patroni names another member or cluster, it neither vouches nor vetoes, and says why once", () => {
  const v = view("n1", 20_000, { n1: PRIMARY, n2: REPLICA });
  const w = new Witness({ view: () => v, name: "n1", scope: "main", now: () => NOW });
  assert.equal(w.hear({ scope: "main" }), undefined);
  assert.equal(w.hear({ scope: "main", name: "n1" }), undefined);
  assert.equal(w.testify("/primary", "")?.status, 200);
  assert.equal(
    w.hear({ scope: "main", name: "pg-1" }),
    "Patroni says it is member pg-1, not n1 (check dcs.name and dcs.scope)",
  );
  assert.equal(w.hear({ name: "pg-1" }), undefined, "said once");
  assert.equal(w.testify("/primary", ""), undefined);
  const other = new Witness({
    view: () => view("n2", 20_000, { n1: PRIMARY }),
    name: "n1",
    scope: "main",
    now: () => NOW,
  });
  assert.equal(other.overrule("/primary"), "the leader lock is held by n2");
  assert.match(other.hear({ scope: "staging" })!, /cluster staging, not main/);
  assert.equal(other.overrule("/primary"), undefined);
  assert.equal(
    other.mismatch,
    "Patroni says it is cluster staging, not main (check dcs.name and dcs.scope)",
  );
});

Deno.test("witness: a name the DCS has no member key for vetoes nothing (a wrong dcs.name must not take the primary out)", () => {
  const v = view("pg-1", 20_000, { "pg-1": PRIMARY, "pg-2": REPLICA });
  assert.equal(witness("node1", v).overrule("/primary"), undefined);
  assert.equal(witness("pg-2", v).overrule("/primary"), "the leader lock is held by pg-1");
});

Deno.test("witness: noloadbalance is true as Python's bool() takes it, as Patroni does", () => {
  const at = (noloadbalance: unknown) =>
    witness("n2", view("n1", 20_000, { n2: { ...REPLICA, tags: { noloadbalance } } }))
      .testify("/replica", "")?.status;
  for (const v of [true, "on", "false", "no", 2, ["x"]]) {
    assert.equal(at(v), undefined, JSON.stringify(v));
  }
  for (const v of [false, 0, "", null, [], {}]) assert.equal(at(v), 200, JSON.stringify(v));
});

Deno.test("witness: /read-only checks tags on the leader too (only the leader checks ignore them)", () => {
  const leader = witness("n1", view("n1", 20_000, { n1: { ...PRIMARY, tags: { dc: "east" } } }));
  assert.equal(leader.testify("/read-only", "tag_dc=east")?.status, 200);
  assert.equal(leader.testify("/read-only", "tag_dc=west"), undefined);
  assert.equal(leader.testify("/primary", "tag_dc=west")?.status, 200);
});
