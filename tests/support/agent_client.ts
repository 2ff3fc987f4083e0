// An agent-check client as HAProxy is one: connect, send the agent-send bytes (if any), read the reply until the close.

/** What an agent check got back. */
export interface AgentExchange {
  /** Everything the server sent. */
  text: string;
  /** Whether the server closed the connection (rather than the client giving up after `limitMs`). */
  closed: boolean;
  /** ms from connecting to the close (or to giving up). */
  ms: number;
}

/** Options of {@linkcode agentCheck}. */
export interface AgentCheckOptions {
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** End our side after sending (as `nc -N` does). @default {false} */
  closeWrite?: boolean;
  /** Give up after this long without the server closing. @default {5000} */
  limitMs?: number;
}

/** Connects to an agent listener on `port`, sends `send`, and reads until the server closes. */
export async function agentCheck(
  port: number,
  send: string | Uint8Array = "",
  options: AgentCheckOptions = {},
): Promise<AgentExchange> {
  const started = performance.now();
  const conn = await Deno.connect({ hostname: options.hostname ?? "127.0.0.1", port });
  const bytes = typeof send === "string" ? new TextEncoder().encode(send) : send;
  try {
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    if (options.closeWrite) await conn.closeWrite();
  } catch { /* closed by the server already: read what it sent */ }
  const { text, closed } = await readToClose(conn, options.limitMs ?? 5000);
  return { text, closed, ms: performance.now() - started };
}

/** Reads `conn` until the server closes it, or `limitMs` pass; then closes it. */
export async function readToClose(
  conn: Deno.Conn,
  limitMs: number,
): Promise<{ text: string; closed: boolean }> {
  let gaveUp = false;
  const limit = setTimeout(() => {
    gaveUp = true;
    conn.close();
  }, limitMs);
  let text = "";
  try {
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } catch { /* reset by the server, or closed by the limit */ }
  clearTimeout(limit);
  try {
    conn.close();
  } catch { /* closed by the limit */ }
  return { text, closed: !gaveUp };
}
