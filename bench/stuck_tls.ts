// Scenario (9), stuck TLS clients: what holding 1,500 of them (silent, a ClientHello cut short,
// half a request after the handshake) costs an HTTPS target in RSS and in check latency, and how
// many it still holds some seconds later; the figures and bars from what was measured.
import { connectTls, rawGetTls, sleep, type Target, type TlsTargetName } from "./targets.ts";
import { checkLatency, LineProcess, peakRss } from "./probes.ts";
import type { StuckTlsResult } from "./types.ts";

/** Milliseconds between two HTTPS checks (each a fresh connection and a full handshake). */
export const TLS_CHECK_EVERY_MS = 10;
/** Bars of issue 12: RSS growth against the bare node:tls server's, p95 against its own. */
export const RSS_GROWTH_RATIO = 1.2;
export const P95_FACTOR = 2;
export const P95_SLACK_MS = 20;

/** RSS growth (KiB) with the clients held, and per client still held at that moment. */
export function stuckTlsCost(r: StuckTlsResult): { growthKiB: number; perClientKiB: number } {
  const growthKiB = r.rssWith - r.rssBefore;
  return { growthKiB, perClientKiB: r.heldAtRss > 0 ? growthKiB / r.heldAtRss : NaN };
}

/** patroniglue's bars in (9): RSS growth against the bare server's; p95 with the clients against
 * without (and no failed check); all clients connected and none still open. Undefined where a
 * figure is missing (no bare server, no checks). */
export function stuckTlsBars(
  glue: StuckTlsResult,
  bare: StuckTlsResult | undefined,
): { rss: boolean | undefined; p95: boolean | undefined; closed: boolean } {
  const { baseline, loaded } = glue;
  const p95 = baseline?.p95 === undefined || loaded?.p95 === undefined
    ? undefined
    : loaded.errors === 0 && loaded.p95 <= P95_FACTOR * baseline.p95 + P95_SLACK_MS;
  return {
    rss: bare
      ? stuckTlsCost(glue).growthKiB <= RSS_GROWTH_RATIO * stuckTlsCost(bare).growthKiB
      : undefined,
    p95,
    closed: glue.opened === glue.count && glue.stillOpen === 0,
  };
}

/** Parses the clients' `open K A B C`. */
function parseOpen(line: string): { all: number; byKind: number[] } {
  const m = line.match(/^open (\d+) (\d+) (\d+) (\d+)$/);
  if (!m) throw new Error(`stuck_tls_clients: unexpected output ${JSON.stringify(line)}`);
  return { all: Number(m[1]), byKind: [Number(m[2]), Number(m[3]), Number(m[4])] };
}

/**
 * Runs (9) on one HTTPS target: checks without the clients (for the bare server, handshakes only,
 * unrecorded: the same warm-up), RSS over 1 s, `count` clients opened (bench/stuck_tls_clients.ts),
 * RSS over 1 s, checks with them, and how many are still open `holdS` after they all opened.
 */
export async function stuckTlsScenario(
  t: Target<TlsTargetName>,
  o: { count: number; holdS: number; measureS: number; root: string; caFile: string },
): Promise<StuckTlsResult> {
  const ca = await Deno.readTextFile(o.caFile);
  const check = () => rawGetTls(t.port, "/primary", ca, 5000);
  const handshake = async () => {
    const conn = await connectTls(t.port, ca);
    try {
      await conn.handshake();
      return 200;
    } finally {
      conn.close();
    }
  };
  const answers = t.name !== "bare";
  const baseline = await checkLatency(answers ? check : handshake, o.measureS, TLS_CHECK_EVERY_MS);
  await sleep(500);
  const rssBefore = await peakRss(t, 1000);
  await using clients = new LineProcess(
    "bench/stuck_tls_clients.ts",
    [String(t.port), String(o.count), o.caFile],
    o.root,
  );
  const opened = (await clients.nextLine()).match(/^opened (\d+) failed (\d+) ms (\d+)$/);
  if (!opened) throw new Error("stuck_tls_clients: unexpected output");
  const openedAt = performance.now();
  const held = async () => {
    await clients.send("count");
    return parseOpen(await clients.nextLine());
  };
  const rssWith = await peakRss(t, 1000);
  const heldAtRss = (await held()).all;
  const loaded = answers ? await checkLatency(check, o.measureS, TLS_CHECK_EVERY_MS) : undefined;
  const heldAfterChecks = (await held()).all;
  await sleep(openedAt + o.holdS * 1000 - performance.now());
  const still = parseOpen(await clients.finish());
  return {
    count: o.count,
    opened: Number(opened[1]),
    openMs: Number(opened[3]),
    rssBefore,
    rssWith,
    heldAtRss,
    heldAfterChecks,
    holdS: o.holdS,
    stillOpen: still.all,
    stillOpenByKind: still.byKind,
    ...(answers ? { baseline, loaded } : {}),
    checkEveryMs: TLS_CHECK_EVERY_MS,
  };
}
