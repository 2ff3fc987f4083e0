// Scenario (11), freshness after role flips: a slow simulated Patroni whose role flips on a fixed
// schedule while HAProxy-like checks hit /primary and /replica; the figures and bars are computed
// from the log of checks and backend GETs.
import { rawGet, sleep, type Target } from "./targets.ts";
import type { FreshnessRaw } from "./types.ts";

/** The routes checked, as HAProxy's primary and replicas backends would. */
export const FRESHNESS_ROUTES = ["/primary", "/replica"] as const;
/** Each route is checked this often (20 a second), each check on a new connection. */
export const CHECK_EVERY_MS = 50;
/** How long the simulated Patroni takes per request. */
export const PATRONI_MS = 150;
/** A check this slow or slower waited on Patroni (which takes {@linkcode PATRONI_MS}). */
export const WAITED_MS = 100;
/** One flip per slot of this length. */
export const SLOT_MS = 3000;
/** Checks before the first slot, not counted: every target starts from a warm cache. */
export const WARM_MS = 2000;
/** A check not answered within this is failed (status 0). */
const CHECK_TIMEOUT_MS = 5000;
/** After the last answer, a route checked during its last ttl may still be refreshed once: GETs
 * count as "with nobody checking" from this long after a ttl has passed. */
export const TRAILING_SLACK_MS = 100;

type Role = FreshnessRaw["startRole"];

/** The status Patroni gives on `route` (one of {@linkcode FRESHNESS_ROUTES}) for a member in `role`. */
export function routeStatus(route: string, role: Role): 200 | 503 {
  if (route === "/primary") return role === "primary" ? 200 : 503;
  if (route === "/replica") return role === "replica" ? 200 : 503;
  throw new Error(`no status model for ${route}`);
}

/** The role after `n` flips from `start` (flips alternate). */
export function roleAfter(start: Role, n: number): Role {
  return n % 2 === 0 ? start : start === "primary" ? "replica" : "primary";
}

/**
 * When to flip, in ms from the start of the window: one flip per `slotMs` slot, at
 * `(slotMs − ttlMs) / 2 + frac(T(k+1)·φ) · ttlMs` into slot k (φ the golden ratio, T(n) the n-th
 * triangular number). A target re-times its refreshes at each flip it sees, so what must vary is a
 * flip's phase against the one before: the gaps between flips, modulo the ttl, step by frac(k·φ)
 * and spread over [0, ttl). (Phases frac(k·φ) themselves would give every gap the same phase, and
 * every flip would land at the same moment of the target's refresh cycle.)
 */
export function flipSchedule(flips: number, slotMs: number, ttlMs: number): number[] {
  if (slotMs < ttlMs) throw new Error(`a slot (${slotMs} ms) must be at least a ttl (${ttlMs} ms)`);
  const phi = (1 + Math.sqrt(5)) / 2;
  return Array.from({ length: flips }, (_, k) => {
    const phase = ((k + 1) * (k + 2) / 2 * phi) % 1;
    return k * slotMs + (slotMs - ttlMs) / 2 + phase * ttlMs;
  });
}

/** Index of the latest flip at or before `at`; -1 before the first. */
function latestFlip(flips: readonly number[], at: number): number {
  let i = -1;
  while (i + 1 < flips.length && flips[i + 1] <= at) i++;
  return i;
}

/**
 * Old-role responses: a check answered after a flip (the latest flip before its answer) with the
 * status its route had before that flip, and not the status it has after. Per flip, the ms from the
 * flip to the answer of the last such check (0 when none), and how many there were in all.
 */
export function oldRoleResponses(raw: FreshnessRaw): { perFlip: number[]; count: number } {
  const perFlip = raw.flips.map(() => 0);
  let count = 0;
  for (const [, answered, route, status] of raw.checks) {
    const i = latestFlip(raw.flips, answered);
    if (i < 0 || status === 0) continue;
    const before = routeStatus(raw.routes[route], roleAfter(raw.startRole, i));
    const after = routeStatus(raw.routes[route], roleAfter(raw.startRole, i + 1));
    if (status !== before || status === after) continue;
    count++;
    perFlip[i] = Math.max(perFlip[i], answered - raw.flips[i]);
  }
  return { perFlip, count };
}

/** What (11) reports per target. */
export interface FreshnessFigures {
  /** Per flip: ms from the flip to the answer of its last old-role response (0 when none). */
  oldRoleMs: number[];
  longestOldRoleMs: number;
  oldRoleCount: number;
  /** Per route, checks sent in the window: all, those that waited on Patroni, those that failed. */
  checks: number[];
  waited: number[];
  failed: number[];
  /** Per route, backend GETs that arrived in the window. */
  gets: number[];
  /** Backend GETs after the last answer: within a ttl (+ slack), and from then on. */
  trailingGets: number;
  idleGets: number;
  /** How long "from then on" lasted, ms. */
  idleMs: number;
}

/** The figures of (11) from what was logged. */
export function freshnessFigures(raw: FreshnessRaw): FreshnessFigures {
  const perRoute = () => raw.routes.map(() => 0);
  const checks = perRoute();
  const waited = perRoute();
  const failed = perRoute();
  for (const [sent, answered, route, status] of raw.checks) {
    if (sent < 0 || sent >= raw.spanMs) continue;
    checks[route]++;
    if (status === 0) failed[route]++;
    else if (answered - sent >= WAITED_MS) waited[route]++;
  }
  const gets = perRoute();
  const idleFrom = raw.lastAnsweredAt + raw.ttlMs + TRAILING_SLACK_MS;
  let trailingGets = 0;
  let idleGets = 0;
  for (const [at, route] of raw.gets) {
    if (at >= 0 && at < raw.spanMs) gets[route]++;
    if (at > raw.lastAnsweredAt && at <= idleFrom) trailingGets++;
    if (at > idleFrom) idleGets++;
  }
  const old = oldRoleResponses(raw);
  return {
    oldRoleMs: old.perFlip,
    longestOldRoleMs: Math.max(0, ...old.perFlip),
    oldRoleCount: old.count,
    checks,
    waited,
    failed,
    gets,
    trailingGets,
    idleGets,
    idleMs: Math.max(0, raw.quietMs - raw.ttlMs - TRAILING_SLACK_MS),
  };
}

/** The bars of issue 13 for a run of (11). */
export interface FreshnessLimits {
  /** ttl/2 + Patroni's latency. */
  oldRoleMs: number;
  /** One per flip, per route. */
  waitedPerRoute: number;
  /** One per route per ttl over the window, plus one per flip. */
  getsPerRoute: number;
}

/** The limits for the run's ttl, window and flips. */
export function freshnessLimits(raw: FreshnessRaw): FreshnessLimits {
  return {
    oldRoleMs: raw.ttlMs / 2 + raw.patroniMs,
    waitedPerRoute: raw.flips.length,
    getsPerRoute: raw.spanMs / raw.ttlMs + raw.flips.length,
  };
}

/** Whether the figures meet each bar; `idle` is undefined when the quiet time was too short. */
export function freshnessBars(
  f: FreshnessFigures,
  limits: FreshnessLimits,
): { oldRole: boolean; waited: boolean; gets: boolean; idle: boolean | undefined } {
  return {
    oldRole: f.longestOldRoleMs <= limits.oldRoleMs,
    waited: f.waited.every((n) => n <= limits.waitedPerRoute),
    gets: f.gets.every((n) => n <= limits.getsPerRoute),
    idle: f.idleMs > 0 ? f.idleGets === 0 : undefined,
  };
}

const sleepUntil = (at: number) => sleep(Math.max(0, at - performance.now()));

/**
 * Runs (11) on `t`: its simulated Patroni slowed to {@linkcode PATRONI_MS} and primary; checks of
 * each route every {@linkcode CHECK_EVERY_MS} (the second route half a period later) from
 * {@linkcode WARM_MS} before the window to its end, `flips` role flips at {@linkcode flipSchedule},
 * then `quietMs` with no checks after the last answer. The backend's speed and role are restored.
 */
export async function freshnessScenario(
  t: Target,
  o: { flips: number; ttlMs: number; quietMs: number },
): Promise<FreshnessRaw> {
  const schedule = flipSchedule(o.flips, SLOT_MS, o.ttlMs);
  const spanMs = o.flips * SLOT_MS;
  const routes = [...FRESHNESS_ROUTES];
  const startRole: Role = "primary";
  const fake = t.fake;
  const savedDelay = fake.delayMs;
  fake.role = startRole;
  fake.delayMs = PATRONI_MS;
  try {
    await sleep(o.ttlMs + 300); // what was cached from the fast backend expires
    t.arrivals.length = 0;
    const t0 = performance.now() + WARM_MS;
    const checks: FreshnessRaw["checks"] = [];
    const pending: Promise<void>[] = [];
    const since = (at: number) => Math.round((at - t0) * 10) / 10; // 0.1 ms is plenty
    const check = async (route: number) => {
      const sent = performance.now();
      const status = await rawGet(t.port, routes[route], CHECK_TIMEOUT_MS).catch(() => 0);
      checks.push([since(sent), since(performance.now()), route, status]);
    };
    const checker = async (route: number, offsetMs: number) => {
      for (let k = 0;; k++) {
        const at = t0 - WARM_MS + offsetMs + k * CHECK_EVERY_MS;
        if (at >= t0 + spanMs) return;
        await sleepUntil(at);
        pending.push(check(route));
      }
    };
    const flips: number[] = [];
    const flipper = async () => {
      for (const [n, offset] of schedule.entries()) {
        await sleepUntil(t0 + offset);
        fake.role = roleAfter(startRole, n + 1);
        flips.push(since(performance.now()));
      }
    };
    await Promise.all([flipper(), ...routes.map((_, i) => checker(i, i * CHECK_EVERY_MS / 2))]);
    await Promise.all(pending);
    const lastAnsweredAt = Math.max(...checks.map((c) => c[1]));
    await sleepUntil(t0 + lastAnsweredAt + o.quietMs);
    const gets: FreshnessRaw["gets"] = t.arrivals
      .filter((a) => routes.includes(a.target as typeof routes[number]))
      .map((a) => [since(a.at), routes.indexOf(a.target as typeof routes[number])]);
    return {
      ttlMs: o.ttlMs,
      patroniMs: PATRONI_MS,
      spanMs,
      quietMs: o.quietMs,
      routes,
      flips,
      startRole,
      checks: checks.sort((a, b) => a[0] - b[0]),
      gets,
      lastAnsweredAt,
    };
  } finally {
    fake.delayMs = savedDelay;
    fake.role = "primary";
  }
}
