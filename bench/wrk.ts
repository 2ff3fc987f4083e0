// wrk: run it against a URL (optionally with a Lua script) and parse its --latency report.

/** One wrk run. */
export interface WrkResult {
  /** Requests per second, as wrk reports. */
  rps: number;
  /** Latency percentiles, ms. */
  p50: number;
  p99: number;
  requests: number;
  /** "Non-2xx or 3xx responses". */
  non2xx: number;
  /** Socket errors (connect + read + write + timeout). */
  errors: number;
  /** Wall time of the run, ms (performance.now clock). */
  startedAt: number;
  endedAt: number;
}

/** Options for {@linkcode runWrk}. */
export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  durationS: number;
  /** A Lua script file. */
  script?: string;
}

/** The Lua script that cycles through `paths`, one per request, prebuilt per thread. */
export function mixScript(paths: readonly string[]): string {
  const list = paths.map((p) => JSON.stringify(p)).join(", ");
  return `-- patroniglue bench: a mix of health checks, round robin per connection thread.
local paths = { ${list} }
local reqs = {}
local i = 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
end
request = function()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end
`;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `512.00us`, `8.78ms`, `1.20s` to ms. */
export function parseDuration(text: string): number {
  const m = text.match(/^([\d.]+)(us|ms|s|m|h)$/);
  if (!m) throw new Error(`cannot parse wrk duration ${JSON.stringify(text)}`);
  return Number(m[1]) * UNIT_MS[m[2]];
}

/** Parses wrk's text report (with --latency). */
export function parseWrk(text: string): Omit<WrkResult, "startedAt" | "endedAt"> {
  const rps = text.match(/Requests\/sec:\s+([\d.]+)/);
  const p50 = text.match(/^\s+50(?:\.000)?%\s+(\S+)/m);
  const p99 = text.match(/^\s+99(?:\.000)?%\s+(\S+)/m);
  const requests = text.match(/(\d+) requests in/);
  if (!rps || !p50 || !p99 || !requests) {
    throw new Error(`unexpected wrk output:\n${text}`);
  }
  const non2xx = text.match(/Non-2xx or 3xx responses:\s+(\d+)/);
  const sock = text.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  return {
    rps: Number(rps[1]),
    p50: parseDuration(p50[1]),
    p99: parseDuration(p99[1]),
    requests: Number(requests[1]),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    errors: sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

/** Runs wrk once; rejects when it fails or prints no report. */
export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${o.threads}`,
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    "--timeout",
    "10s",
    "--latency",
  ];
  if (o.script) args.push("-s", o.script);
  args.push(o.url);
  const startedAt = performance.now();
  const out = await new Deno.Command("wrk", { args, stdout: "piped", stderr: "piped" }).output();
  const endedAt = performance.now();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`wrk failed: ${new TextDecoder().decode(out.stderr)}${text}`);
  }
  return { ...parseWrk(text), startedAt, endedAt };
}

/** wrk's version line. */
export async function wrkVersion(): Promise<string> {
  try {
    const out = await new Deno.Command("wrk", { args: ["-v"], stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n")[0].replace(/\s+Copyright.*/, "").trim();
  } catch {
    return "absent";
  }
}
