// Raw bench results for the report tests: one freshness run (scenario 11) to vary.
import type { FreshnessRaw } from "../../bench/types.ts";

/** A run of (11) with two flips (at 1000 and 4000 ms), ttl 1 s, a 6 s window, 5 s of quiet. */
export function freshnessRun(over: Partial<FreshnessRaw> = {}): FreshnessRaw {
  return {
    ttlMs: 1000,
    patroniMs: 150,
    spanMs: 6000,
    quietMs: 5000,
    routes: ["/primary", "/replica"],
    flips: [1000, 4000],
    startRole: "primary",
    checks: [],
    gets: [],
    lastAnsweredAt: 6000,
    ...over,
  };
}
