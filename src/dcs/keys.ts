/**
 * DCS keys: Patroni's keys under one scope (leader, members/*, status, optime/leader, config) as the parts of a DcsView, whatever store they come from.
 *
 * @module
 */
import type { DcsSettings, DcsView, LeaderLock, MemberKey } from "./view.ts";

/** Most member keys kept (the rest are ignored: memory stays bounded whatever is written). */
const MAX_MEMBERS = 1024;
/** Most bytes of one key's value that is parsed (a member key is well under 4 KiB). */
const MAX_VALUE_BYTES = 64 * 1024;

/** The key of a scope's leader lock, relative to the scope. */
export const LEADER_KEY = "leader";

/** The path of the scope's keys: `/service/pg` (Patroni's namespace, then its scope). */
export function scopePath(settings: DcsSettings): string {
  return `${settings.namespace}/${settings.scope}`;
}

/** The member key of a JSON value, or undefined when it is not a JSON object. */
function parseMember(value: string): MemberKey | undefined {
  const data = jsonObject(value);
  if (!data) return undefined;
  const { role, state, timeline, xlog_location: xlog, tags } = data;
  const member: MemberKey = {
    tags: typeof tags === "object" && tags !== null && !Array.isArray(tags)
      ? tags as Record<string, unknown>
      : {},
  };
  if (typeof role === "string") member.role = role;
  if (typeof state === "string") member.state = state;
  if (typeof timeline === "number") member.timeline = timeline;
  if (typeof xlog === "number") member.xlogLocation = xlog;
  return member;
}

/** A value's JSON object (bounded), or undefined when it is none. */
function jsonObject(value: string): Record<string, unknown> | undefined {
  if (value.length > MAX_VALUE_BYTES) return undefined;
  try {
    const data = JSON.parse(value);
    return typeof data === "object" && data !== null && !Array.isArray(data) ? data : undefined;
  } catch {
    return undefined;
  }
}

const finite = (v: unknown) => typeof v === "number" && Number.isFinite(v) ? v : undefined;

/**
 * The keys of one scope that a view is made of, by their path relative to the scope
 * (`leader`, `members/pg1`, ...); other keys are ignored. Set and delete them as the DCS reports
 * them, then take a {@linkcode ScopeKeys.view}.
 */
export class ScopeKeys {
  /** The leader key's value (the holder's name). */
  holder?: string;
  readonly #members = new Map<string, MemberKey>();
  #optime?: number;
  #legacyOptime?: number;
  #config?: Record<string, unknown>;

  /** Records a key's new value. */
  set(key: string, value: string): void {
    if (key === LEADER_KEY) this.holder = value;
    else if (key.startsWith("members/")) {
      const name = key.slice("members/".length);
      if (name === "" || name.includes("/")) return;
      const member = parseMember(value);
      if (!member) this.#members.delete(name);
      else if (this.#members.has(name) || this.#members.size < MAX_MEMBERS) {
        this.#members.set(name, member);
      }
    } else if (key === "status") this.#optime = finite(jsonObject(value)?.optime);
    else if (key === "optime/leader") {
      this.#legacyOptime = /^\d{1,20}$/.test(value.trim()) ? Number(value.trim()) : undefined;
    } else if (key === "config") this.#config = jsonObject(value);
  }

  /** Forgets a key, or every key below a deleted directory (`members`, or the scope itself: ""). */
  delete(key: string): void {
    if (key === "") return this.clear();
    if (key === LEADER_KEY) this.holder = undefined;
    else if (key === "members") this.#members.clear();
    else if (key.startsWith("members/")) this.#members.delete(key.slice("members/".length));
    else if (key === "status") this.#optime = undefined;
    else if (key === "optime/leader" || key === "optime") this.#legacyOptime = undefined;
    else if (key === "config") this.#config = undefined;
  }

  /** Forgets every key. */
  clear(): void {
    this.holder = undefined;
    this.#members.clear();
    this.#optime = this.#legacyOptime = this.#config = undefined;
  }

  /** A view of these keys, the leader lock as given (when a leader key exists). */
  view(confirmedAt: number, leader: LeaderLock | undefined): DcsView {
    const view: DcsView = {
      confirmedAt,
      members: new Map(this.#members),
      failsafeMode: this.#config?.failsafe_mode === true,
    };
    if (leader && this.holder !== undefined) view.leader = leader;
    const optime = this.#optime ?? this.#legacyOptime;
    if (optime !== undefined) view.leaderOptime = optime;
    const ttl = finite(this.#config?.ttl);
    if (ttl !== undefined) view.ttl = ttl;
    const loopWait = finite(this.#config?.loop_wait);
    if (loopWait !== undefined) view.loopWait = loopWait;
    return view;
  }
}
