/**
 * Witness: what the DCS view says of a health check when Patroni does not answer, and which of
 * Patroni's 200s a live lock held by another member overrules.
 * @module
 */
import type { Identity } from "./backend.ts";
import type { DcsView, MemberKey } from "../dcs/view.ts";
import { LEADER_CHECK_ROLES } from "./routes.ts";

/** The roles of the lock holder in its own cluster (a standby cluster's leader included). */
const LEADER_ROLES = LEADER_CHECK_ROLES["/leader"];
/**
 * The checks a lock held by this member answers, and the roles its member key must report: the
 * leader checks but `/standby-leader` (the DCS's 200 is for the primary side of a cluster).
 */
const LEADER_CHECKS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(LEADER_CHECK_ROLES).filter(([path]) => path !== "/standby-leader"),
);
/** The checks a lock held by another member overrules: never 200 from a member without it. */
const LOCK_CHECKS: ReadonlySet<string> = new Set(Object.keys(LEADER_CHECK_ROLES));

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
  /** The cluster (Patroni's scope) the view is of. @default {undefined} (not checked) */
  scope?: string;
  /** Seconds of the lock that must be left for a 200 from the DCS. @default {half the view's ttl} */
  margin?: number;
  /** Monotonic clock in ms, the watcher's. @default {performance.now} */
  now?: () => number;
}

/**
 * The rules of the DCS witness. `testify` answers a check Patroni left unanswered: 200 only while
 * the view is live and this member's key and the leader lock vouch for it, with more than the
 * margin left on the lock; otherwise nothing, and the check fails as it would without a DCS.
 * `overrule` names the live lock of another member, which makes a leader check's 200 a 503. Both
 * stay silent once Patroni has said it is another member or cluster than the DCS keys watched
 * (`dcs.name`, `dcs.scope` wrong, or set for Patroni by its environment only).
 */
export class Witness {
  readonly name: string;
  readonly #scope?: string;
  readonly #view: () => DcsView | undefined;
  readonly #margin?: number;
  readonly #now: () => number;
  /** Why the witness is silent: Patroni named another member or cluster. */
  #mismatch?: string;

  constructor(options: WitnessOptions) {
    this.name = options.name;
    this.#scope = options.scope;
    this.#view = options.view;
    this.#margin = options.margin;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * What Patroni said of itself: the first time it names another member or cluster than the
   * witness watches, the witness falls silent and the reason is returned (to be logged once).
   */
  hear(identity: Identity): string | undefined {
    if (this.#mismatch !== undefined) return undefined;
    const other = identity.name !== undefined && identity.name !== this.name
      ? `member ${identity.name}, not ${this.name}`
      : identity.scope !== undefined && this.#scope !== undefined && identity.scope !== this.#scope
      ? `cluster ${identity.scope}, not ${this.#scope}`
      : undefined;
    if (other === undefined) return undefined;
    return this.#mismatch = `Patroni says it is ${other} (check dcs.name and dcs.scope)`;
  }

  /** Why the witness is silent, once Patroni has named another member or cluster. */
  get mismatch(): string | undefined {
    return this.#mismatch;
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
    const view = this.#mismatch === undefined ? this.#view() : undefined;
    const lock = view?.leader;
    if (!view || !lock) return undefined;
    const left = lock.heldUntil - this.#now();
    if (left <= this.marginMs(view)) return undefined;
    const member = view.members.get(this.name);
    if (!member || member.state !== "running" || member.role === undefined) return undefined;
    const mine = lock.holder === this.name;
    const testimony = (): Testimony => {
      const holds = mine ? "holds" : `${lock.holder} holds`;
      const evidence = `${holds} the leader lock (${
        (left / 1000).toFixed(1)
      } s left), ${member.role}, running`;
      return { status: 200, evidence, member };
    };
    if (mine && LEADER_CHECKS[path]?.includes(member.role!)) return testimony();
    if (path !== "/replica" && path !== "/read-only") return undefined;
    // /read-only is the leader's or a replica's check, with tags either way (Patroni's do_GET).
    const params = new URLSearchParams(query);
    const serves = mine
      ? path === "/read-only" && LEADER_ROLES.includes(member.role!)
      : isServingReplica(member, view, params);
    return serves && tagsMatch(member, params) ? testimony() : undefined;
  }

  /**
   * Why a 200 of check `path` must not stand: another member's live lock, while this member's own
   * key is in the view (a name the DCS does not know vetoes nothing); else undefined.
   */
  overrule(path: string): string | undefined {
    if (!LOCK_CHECKS.has(path) || this.#mismatch !== undefined) return undefined;
    const view = this.#view();
    const lock = view?.leader;
    if (!lock || lock.holder === this.name || lock.heldUntil <= this.#now()) return undefined;
    if (!view!.members.has(this.name)) return undefined;
    return `the leader lock is held by ${lock.holder}`;
  }
}

/**
 * Patroni's `/replica` rule on the member key: a running replica without `noloadbalance`, within
 * `?lag=` of the leader's optime. Patroni's own check compares the replayed position; the member
 * key has only the further of received and replayed, so a replica whose replay is stalled while it
 * receives passes here (said in the README).
 */
function isServingReplica(member: MemberKey, view: DcsView, params: URLSearchParams): boolean {
  if (member.role !== "replica" || isTruthy(member.tags.noloadbalance)) return false;
  const lagParam = params.get("lag");
  if (lagParam === null) return true;
  const lag = parseLag(lagParam);
  const position = member.xlogLocation;
  if (lag === undefined || view.leaderOptime === undefined || position === undefined) return false;
  return view.leaderOptime <= position + lag;
}

/** Every `?tag_x=v` names a tag the member has, equal as Patroni compares (non-strings lowercased). */
function tagsMatch(member: MemberKey, params: URLSearchParams): boolean {
  for (const [name, value] of params) {
    if (!name.startsWith("tag_")) continue;
    const tag = member.tags[name.slice(4)];
    if (tag === undefined || tag === null) return false;
    if ((typeof tag === "string" ? tag : String(tag).toLowerCase()) !== value) return false;
  }
  return true;
}

/** A tag's value as Python's `bool()` takes it (Patroni's `noloadbalance`): false, 0, "", [] and {} are false. */
function isTruthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  return typeof v !== "object" || Object.keys(v).length > 0;
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
