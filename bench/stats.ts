// Small statistics helpers for the bench.

/** The median (mean of the middle two for even counts); NaN when empty. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Nearest-rank percentile `p` (0..100); NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Most arrivals inside any half-open window [t, t + width) of the sorted times. */
export function peakInWindow(times: readonly number[], width: number): number {
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    while (times[hi] - times[lo] >= width) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

/**
 * Mean arrivals per `width` from the first arrival to `end`: count × width / (end − first + width).
 * Arrivals spaced at least `width` apart never exceed 1.0, whatever the phase; NaN when none.
 */
export function ratePerWindow(times: readonly number[], end: number, width: number): number {
  if (times.length === 0) return NaN;
  return (times.length * width) / (end - times[0] + width);
}
