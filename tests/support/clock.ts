// A clock and timers that move only when a test says so, for the cache, the witness and their users.

/** Lets every promise continuation that is ready run (the cache does no I/O of its own). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}

/** A clock and timers that move only when the test says so. */
export function fakeClock(start = 0) {
  const timers = new Map<number, { at: number; fn: () => void }>();
  let ids = 0;
  const clock = {
    ms: start,
    /** Timers pending. */
    get timers(): number {
      return timers.size;
    },
    options: {
      now: () => clock.ms,
      setTimer: (fn: () => void, ms: number) => (timers.set(++ids, { at: clock.ms + ms, fn }), ids),
      clearTimer: (id: unknown) => void timers.delete(id as number),
    },
    /** Calls `fn` `ms` from now. */
    after(ms: number, fn: () => void): void {
      clock.options.setTimer(fn, ms);
    },
    /** Moves time to `to`, running each timer due on the way at its moment. */
    async advance(to: number): Promise<void> {
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | undefined;
        for (const timer of timers) {
          if (timer[1].at <= to && (!next || timer[1].at < next[1].at)) next = timer;
        }
        if (!next) break;
        timers.delete(next[0]);
        clock.ms = Math.max(clock.ms, next[1].at);
        next[1].fn();
        await settle();
      }
      clock.ms = Math.max(clock.ms, to);
      await settle();
    },
    /** Moves time to the next timer due and runs it. */
    async step(): Promise<void> {
      let at = Infinity;
      for (const timer of timers.values()) at = Math.min(at, timer.at);
      if (at === Infinity) throw new Error("nothing will ever happen: no timer pending");
      await clock.advance(at);
    },
  };
  return clock;
}
