// What the scenarios measure with: a target's RSS, HAProxy-like checks, and a helper process that
// holds connections and talks in lines.
import { rssKiB, sleep, type Target, withUlimit } from "./targets.ts";
import { percentile } from "./stats.ts";
import type { CheckLatency } from "./types.ts";
import { cpuTimes } from "./footprint.ts";

/** Sum of VmRSS (KiB) over the target's processes (or of another /proc status field). */
export function targetRss(t: Pick<Target, "pids">, field = "VmRSS"): number {
  return t.pids().reduce((sum, pid) => sum + rssKiB(pid, field), 0);
}

/** CPU seconds (user + system, every thread) the target's processes have used so far. */
export function targetCpuSeconds(t: Pick<Target, "pids">): number {
  return t.pids().reduce((sum, pid) => {
    try {
      const { user, system } = cpuTimes(pid);
      return sum + user + system;
    } catch {
      return sum; // exited meanwhile (an nginx helper)
    }
  }, 0);
}

/** Samples a target's RSS every `ms` until stopped: [seconds, VmRSS KiB, RssAnon KiB]. */
export function rssSampler(
  t: Pick<Target, "pids">,
  ms: number,
): { stop: () => [number, number, number][] } {
  const t0 = performance.now();
  const samples: [number, number, number][] = [];
  const take = () =>
    samples.push([(performance.now() - t0) / 1000, targetRss(t), targetRss(t, "RssAnon")]);
  take();
  const timer = setInterval(take, ms);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}

/** The most VmRSS (KiB) seen over `ms`, sampled every 100 ms. */
export async function peakRss(t: Pick<Target, "pids">, ms: number): Promise<number> {
  const sampler = rssSampler(t, 100);
  await sleep(ms);
  return Math.max(...sampler.stop().map(([, kib]) => kib));
}

/**
 * HAProxy-like checks: `check` (one request on a new connection, resolving to the status) started
 * every `everyMs` for `seconds`; latencies of the 200s, the rest counted as errors.
 */
export async function checkLatency(
  check: () => Promise<number>,
  seconds: number,
  everyMs = 5,
): Promise<CheckLatency> {
  const latencies: number[] = [];
  let errors = 0;
  const pending: Promise<void>[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    pending.push((async () => {
      const t0 = performance.now();
      try {
        if (await check() === 200) latencies.push(performance.now() - t0);
        else errors++;
      } catch {
        errors++;
      }
    })());
    await sleep(everyMs);
  }
  await Promise.all(pending);
  return {
    n: latencies.length,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    max: Math.max(...latencies),
    errors,
  };
}

/** A Deno script run as a child (open-files limit raised), read line by line; stdin EOF stops it. */
export class LineProcess {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #buffered = "";

  constructor(script: string, args: string[], cwd: string) {
    const c = withUlimit(Deno.execPath(), ["run", "-q", "-A", script, ...args]);
    this.#child = new Deno.Command(c.cmd, {
      args: c.args,
      cwd,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stdin = this.#child.stdin.getWriter();
  }

  /** The next line it prints; throws when it exits first. */
  async nextLine(): Promise<string> {
    while (!this.#buffered.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) throw new Error("the helper process exited early");
      this.#buffered += value;
    }
    const i = this.#buffered.indexOf("\n");
    const line = this.#buffered.slice(0, i);
    this.#buffered = this.#buffered.slice(i + 1);
    return line;
  }

  /** Writes `line` and a newline to its stdin. */
  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Closes its stdin (its signal to report and stop); resolves to its next line. */
  async finish(): Promise<string> {
    await this.#stdin.close();
    return await this.nextLine();
  }

  /** Ends it (SIGTERM if still running) and releases the pipes. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch { /* exited */ }
    await this.#child.status;
    await this.#stdin.close().catch(() => {});
    this.#lines.releaseLock();
  }
}
