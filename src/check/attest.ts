/**
 * Attest: a check's answer with the DCS witness beside the cache — Patroni's word when it gives
 * one in time, the DCS's when it does not, a live lock of another member over both.
 * @module
 */
import type { BackendFailure } from "./backend.ts";
import type { CacheEntry, CacheResult, HealthCache } from "./cache.ts";
import type { Testimony, Witness } from "./witness.ts";

/** How a witnessed check was answered: from a cache entry (Patroni's word), or by the DCS. */
export type Attested =
  | { source: "patroni"; entry: CacheEntry; result: CacheResult }
  | { source: "dcs"; status: 200; testimony: Testimony; entry?: CacheEntry }
  | { source: "dcs"; status: 503; overruled: string; entry: CacheEntry };

/** Failures in which Patroni gave no answer: the DCS may speak for it (not a malformed answer). */
const SILENT: ReadonlySet<BackendFailure> = new Set(["timeout", "refused", "tls", "error"]);

/** What {@linkcode attest} needs. */
export interface AttestOptions {
  cache: HealthCache;
  witness: Witness;
  /** How long a check waits on Patroni before the DCS may answer it (ms). */
  patienceMs: number;
  /** Called once per check the DCS answers, with the check's path and the status. @default {undefined} */
  onAnswer?: (path: string, status: number) => void;
  /** Starts the patience timer. @default {setTimeout} */
  setTimer?: (fn: () => void, ms: number) => unknown;
  /** Cancels it, given what `setTimer` returned. @default {clearTimeout} */
  clearTimer?: (id: unknown) => void;
}

const stopTimer = (id: unknown) => clearTimeout(id as number);

/** The query of a canonical cache key (`/replica?lag=1MB` -> `lag=1MB`). */
function queryOf(key: string): string {
  const q = key.indexOf("?");
  return q === -1 ? "" : key.slice(q + 1);
}

/** Patroni's entry as the witness judges it: a silent failure it vouches for, a 200 it overrules. */
function judge(
  witness: Witness,
  path: string,
  key: string,
  entry: CacheEntry,
  result: CacheResult,
): Attested {
  if (entry.failure) {
    const testimony = SILENT.has(entry.failure) ? witness.testify(path, queryOf(key)) : undefined;
    if (testimony) return { source: "dcs", status: 200, testimony, entry };
  } else if (entry.status === 200) {
    const overruled = witness.overrule(path);
    if (overruled) return { source: "dcs", status: 503, overruled, entry };
  }
  return { source: "patroni", entry, result };
}

/**
 * The answer to check `path` (cache key `key`): a fresh entry as the witness judges it; while
 * Patroni is failing, the DCS's 200 at once (Patroni asked again in the background, its first
 * answer taking over); otherwise Patroni's answer, or the DCS's 200 once a check has waited
 * `patienceMs` for it, so that a frozen Patroni never makes every check wait out the timeout.
 */
export function attest(
  options: AttestOptions,
  path: string,
  key: string,
  now?: number,
): Attested | Promise<Attested> {
  const answer = attestFromCache(options, path, key, now);
  if (answer instanceof Promise) return answer.then((a) => counted(options, path, a));
  return counted(options, path, answer);
}

function counted(options: AttestOptions, path: string, a: Attested): Attested {
  if (a.source === "dcs") options.onAnswer?.(path, a.status);
  return a;
}

function attestFromCache(
  { cache, witness, patienceMs, setTimer = setTimeout, clearTimer = stopTimer }: AttestOptions,
  path: string,
  key: string,
  now: number | undefined,
): Attested | Promise<Attested> {
  const entry = cache.peek(key, now);
  if (entry) return judge(witness, path, key, entry, "hit");
  const testify = () => witness.testify(path, queryOf(key));
  if (cache.failing) {
    const testimony = testify();
    if (testimony) {
      cache.refresh(key);
      return { source: "dcs", status: 200, testimony };
    }
  }
  const pending = cache.get(key);
  // Whichever settles the promise first stands: a later resolve or reject does nothing.
  return new Promise<Attested>((resolve, reject) => {
    const timer = setTimer(() => {
      const testimony = testify();
      if (testimony) resolve({ source: "dcs", status: 200, testimony });
    }, patienceMs);
    pending.then(({ entry, result }) => {
      clearTimer(timer);
      resolve(judge(witness, path, key, entry, result));
    }, (e) => {
      clearTimer(timer);
      reject(e);
    });
  });
}
