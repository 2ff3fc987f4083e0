/**
 * Timers: setTimeout/setInterval on AbortSignal.timeout, which main.ts installs over this
 * runtime's, built on node:timers (~3 MiB resident).
 * @module
 */

/** The four timer functions, as the globals have them. */
export interface TimerFunctions {
  setTimeout<A extends unknown[]>(fn: (...args: A) => void, ms?: number, ...args: A): number;
  setInterval<A extends unknown[]>(fn: (...args: A) => void, ms?: number, ...args: A): number;
  clearTimeout(id?: number): void;
  clearInterval(id?: number): void;
}

/**
 * The first id: far above the ids of node:timers (which a TLS configuration loads), so that
 * `Deno.unrefTimer` given one of these ids never changes one of those timers.
 */
export const FIRST_TIMER_ID = 2 ** 30;
/** The longest delay a timer takes; longer (or not a number) is 1 ms, as the runtime's timers do. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * The whole milliseconds `AbortSignal.timeout` waits for a delay of `ms`: as node:timers does,
 * less than 1 ms (or not a number, or too long) is 1 ms, and a fraction is rounded up, so that a
 * timer never fires before its time (the cache's refresh plans are fractional).
 */
export function timerDelayMs(ms: number | undefined): number {
  const delay = Number(ms);
  return delay >= 1 && delay <= MAX_DELAY_MS ? Math.ceil(delay) : 1;
}

/**
 * Timer functions on `AbortSignal.timeout`, whose timer is the runtime's own and loads no Node
 * compatibility code (unlike `setTimeout` here, which loads node:timers on its first call). A
 * timer keeps the process alive until it fires (a cleared one until it would have fired; it then
 * does nothing), and `Deno.unrefTimer` does not apply to it. An interval's next run is timed from
 * the start of its callback.
 */
export function leanTimers(): TimerFunctions {
  const live = new Map<number, () => void>();
  let next = FIRST_TIMER_ID;
  const start = <A extends unknown[]>(
    fn: (...args: A) => void,
    ms: number | undefined,
    args: A,
    repeat: boolean,
  ) => {
    if (typeof fn !== "function") throw new TypeError("a timer's callback must be a function");
    const wait = timerDelayMs(ms);
    const id = next++;
    const run = () => {
      if (live.get(id) !== run) return;
      if (repeat) arm();
      else live.delete(id);
      fn(...args);
    };
    const arm = () => AbortSignal.timeout(wait).addEventListener("abort", run, { once: true });
    live.set(id, run);
    arm();
    return id;
  };
  const clear = (id?: number) => {
    if (id !== undefined) live.delete(id);
  };
  return {
    setTimeout: (fn, ms, ...args) => start(fn, ms, args, false),
    setInterval: (fn, ms, ...args) => start(fn, ms, args, true),
    clearTimeout: clear,
    clearInterval: clear,
  };
}

/** The global timer functions' names. */
const NAMES = ["setTimeout", "setInterval", "clearTimeout", "clearInterval"] as const;

/**
 * Installs {@linkcode leanTimers} over the global timer functions; returns what puts them back.
 * The globals are lazy getters that load node:timers when read, so they are replaced by their
 * property descriptors, never read.
 */
export function installLeanTimers(): () => void {
  const timers = leanTimers();
  const saved = NAMES.map((name) =>
    [name, Object.getOwnPropertyDescriptor(globalThis, name)] as const
  );
  for (const name of NAMES) {
    Object.defineProperty(globalThis, name, {
      value: timers[name],
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return () => {
    for (const [name, descriptor] of saved) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
    }
  };
}
