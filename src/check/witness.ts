/**
 * Witness: what the DCS view says of a health check when Patroni does not answer, and which of
 * Patroni's 200s a live lock held by another member overrules.
 * @module
 */
import type { DcsView, MemberKey } from "../dcs/view.ts";

/** Patroni's primary roles: `master` before 4.0, `primary` since. */
const PRIMARY_ROLES: readonly string[] = ["master", "primary"];
const LEADER_ROLES: readonly string[] = [...PRIMARY_ROLES, "standby_leader"];

/** The checks a lock held by this member answers, and the roles its member key must report. */
const LEADER_CHECKS: Readonly<Record<string, readonly string[]>> = {
  "/": PRIMARY_ROLES,
  "/primary": PRIMARY_ROLES,
  "/master": PRIMARY_ROLES,
  "/read-write": PRIMARY_ROLES,
  "/leader": LEADER_ROLES,
};
/** The checks a lock held by another member overrules: never 200 from a member without it. */
const LOCK_CHECKS: ReadonlySet<string> = new Set([
  ...Object.keys(LEADER_CHECKS),
  "/standby-leader",
]);

/** Patroni's default `ttl` (seconds), when the DCS holds no dynamic configuration. */
const DEFAULT_TTL = 30;

/** What the DCS says of one check: 200 with the evidence, for logs and the body. */
export interface Testimony {
  status: 200;
  /** `holds the leader lock (4.2 s left), master, running`. */
  evidence: string;
  /** The member key the answer rests on. */
  member: MemberKey;
}

/** What {@linkcode Witness} needs. */
export interface WitnessOptions {
  /** The latest DCS view (undefined before the first complete read). */
  view: () => DcsView | undefined;
  /** This member's name in Patroni. */
  name: string;
  /** Seconds of the lock that must be left for a 200 from the DCS. @default {half the view's ttl} */
  margin?: number;
  /** Monotonic clock in ms, the watcher's. @default {performance.now} */
  now?: () => number;
}

/**
 * The rules of the DCS witness. `testify` answers a check Patroni left unanswered: 200 only while
 * the view is live and this member's key and the leader lock vouch for it, with more than the
 * margin left on the lock; otherwise nothing, and the check fails as it would without a DCS.
 * `overrule` names the live lock of another member, which makes a leader check's 200 a 503.
 */
export class Witness {
  readonly name: string;
  readonly #view: () => DcsView | undefined;
  readonly #margin?: number;
  readonly #now: () => number;

  constructor(options: WitnessOptions) {
    this.name = options.name;
    this.#view = options.view;
    this.#margin = options.margin;
    this.#now = options.now ?? (() => performance.now());
  }

  /** The margin in ms that applies to `view`. */
  marginMs(view: DcsView | undefined): number {
    return (this.#margin ?? (view?.ttl ?? DEFAULT_TTL) / 2) * 1000;
  }

  /** ms left on the lock by the view's evidence (0 when none is known to be held). */
  lockLeftMs(view: DcsView | undefined = this.#view()): number {
    return view?.leader ? Math.max(0, view.leader.heldUntil - this.#now()) : 0;
  }

  /** The DCS's 200 for check `path` with `query` (canonical, without `?`), or undefined. */
  testify(path: string, query: string): Testimony | undefined {
    const view = this.#view();
    const lock = view?.leader;
    if (!view || !lock) return undefined;
    const left = lock.heldUntil - this.#now();
    if (left <= this.marginMs(view)) return undefined;
    const member = view.members.get(this.name);
    if (!member || member.state !== "running" || member.role === undefined) return undefined;
    const mine = lock.holder === this.name;
    const evidence = `${mine ? "holds" : `${lock.holder} holds`} the leader lock (${
      (left / 1000).toFixed(1)
    } s left), ${member.role}, running`;
    const leaderRoles = LEADER_CHECKS[path];
    const asLeader = mine && (leaderRoles ?? (path === "/read-only" ? LEADER_ROLES : []))
      .includes(member.role);
    if (asLeader) return { status: 200, evidence, member };
    if (path !== "/replica" && path !== "/read-only") return undefined;
    return !mine && isServingReplica(member, view, query)
      ? { status: 200, evidence, member }
      : undefined;
  }

  /** Why a 200 of check `path` must not stand: another member's live lock; else undefined. */
  overrule(path: string): string | undefined {
    if (!LOCK_CHECKS.has(path)) return undefined;
    const lock = this.#view()?.leader;
    if (!lock || lock.holder === this.name || lock.heldUntil <= this.#now()) return undefined;
    return `the leader lock is held by ${lock.holder}`;
  }
}

/**
 * Patroni's `/replica` rule on the member key: a running replica without `noloadbalance`, within
 * `?lag=` of the leader's optime, with every `?tag_x=` matching (as Patroni compares them).
 */
function isServingReplica(member: MemberKey, view: DcsView, query: string): boolean {
  if (member.role !== "replica" || isTrue(member.tags.noloadbalance)) return false;
  for (const [name, value] of new URLSearchParams(query)) {
    if (name === "lag") {
      const lag = parseLag(value);
      if (lag === undefined || view.leaderOptime === undefined) return false;
      if (member.xlogLocation === undefined) return false;
      if (view.leaderOptime > member.xlogLocation + lag) return false;
    } else if (name.startsWith("tag_")) {
      const tag = member.tags[name.slice(4)];
      if (tag === undefined || tag === null) return false;
      const text = typeof tag === "string" ? tag : String(tag).toLowerCase();
      if (text !== value) return false;
    }
  }
  return true;
}

/** Patroni's boolean spellings of a tag. */
function isTrue(v: unknown): boolean {
  return ["on", "true", "yes", "1"].includes(String(v).toLowerCase());
}

const LAG_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  B: 1,
  kB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};

/** `?lag=` in bytes: digits and an optional unit (`16kB`, `10MB`, `1GB`); undefined when not that. */
export function parseLag(value: string): number | undefined {
  const m = /^\s*(\d{1,15})\s*([A-Za-z]*)\s*$/.exec(value);
  const unit = m ? LAG_UNITS[m[2]] : undefined;
  return m && unit !== undefined ? Number(m[1]) * unit : undefined;
}
