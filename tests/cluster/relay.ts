// A TCP relay in front of a Patroni REST API for the cluster suite: SIGSTOP it and the API accepts
// connections (the kernel completes the handshakes) and answers nothing, while Patroni's HA loop
// and its member-to-member calls (to the real port) run on. A dead Patroni stays a refused port.
// Run: deno run --allow-net=127.0.0.1 tests/cluster/relay.ts LISTEN_PORT TARGET_PORT
import { sleep } from "../support/glue.ts";

const HOST = "127.0.0.1";
/** How long a connect to the target may take (a frozen Patroni's full backlog drops SYNs). */
const CONNECT_TIMEOUT_MS = 30_000;

/** Write all of `bytes`. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

function closeQuietly(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}

/**
 * One client: its first bytes, then a connection to the target and the bytes both ways until
 * either side ends. The target is not asked for a client that left before it sent anything, and a
 * connect still pending when the client leaves is given up: connections queued while the relay was
 * stopped, or while the target was, do not reach the target as a burst of requests nobody awaits.
 */
async function relay(
  client: Deno.TcpConn,
  target: number,
  refused: () => void,
): Promise<void> {
  const buf = new Uint8Array(65536);
  const first = await client.read(buf).catch(() => null);
  if (first === null) return closeQuietly(client);
  const queued: Uint8Array[] = [buf.slice(0, first)];
  const giveUp = new AbortController();
  let upstream: Deno.TcpConn | undefined;
  let closed = false;
  const closeBoth = () => {
    closed = true;
    closeQuietly(client);
    closeQuietly(upstream);
  };
  // client -> target; what arrives before the target is connected waits in `queued`
  const fromClient = (async () => {
    const chunk = new Uint8Array(65536);
    while (true) {
      const n = await client.read(chunk).catch(() => null);
      if (n === null) break;
      if (upstream) await writeAll(upstream, chunk.subarray(0, n));
      else queued.push(chunk.slice(0, n));
    }
    if (upstream) await upstream.closeWrite();
    else giveUp.abort();
  })().catch(closeBoth);
  const timer = setTimeout(() => giveUp.abort(), CONNECT_TIMEOUT_MS);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: HOST, port: target, signal: giveUp.signal });
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) refused();
    closeBoth();
    await fromClient;
    return;
  } finally {
    clearTimeout(timer);
  }
  try {
    while (queued.length > 0) await writeAll(conn, queued.shift()!);
  } catch {
    upstream = conn;
    closeBoth();
    await fromClient;
    return;
  }
  upstream = conn;
  if (giveUp.signal.aborted) await conn.closeWrite().catch(closeBoth); // the client ended its output
  if (closed) closeQuietly(conn);
  // target -> client, until the target closes (Patroni answers HTTP/1.0 and closes)
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      await writeAll(client, buf.subarray(0, n));
    }
  } catch {
    // either side reset
  }
  closeBoth();
  await fromClient;
}

if (import.meta.main) {
  const [listen, target] = Deno.args.map(Number);
  const valid = (p: number) => Number.isInteger(p) && p > 0 && p < 65536;
  if (Deno.args.length !== 2 || !valid(listen) || !valid(target)) {
    console.error("usage: relay.ts LISTEN_PORT TARGET_PORT (ports 1 to 65535)");
    Deno.exit(2);
  }
  let listener = Deno.listen({ hostname: HOST, port: listen });
  console.log(`relay ${HOST}:${listen} -> ${HOST}:${target}`);
  /** Resolved once listening again after the target refused (undefined while listening). */
  let down: PromiseWithResolvers<void> | undefined;
  // The target refuses (Patroni is dead): so does the relay, until the target accepts again.
  const refused = async () => {
    if (down) return;
    down = Promise.withResolvers<void>();
    listener.close();
    while (true) {
      await sleep(50);
      try {
        (await Deno.connect({ hostname: HOST, port: target })).close();
        break;
      } catch {
        // still down
      }
    }
    listener = Deno.listen({ hostname: HOST, port: listen });
    down.resolve();
    down = undefined;
  };
  while (true) {
    let client: Deno.TcpConn;
    try {
      client = await listener.accept();
    } catch {
      // Closed because the target refused: wait to listen again. A connection reset while it
      // waited in the backlog (a check that timed out while the relay was stopped) fails its
      // accept with ENOTCONN, the next one is fine; out of descriptors: a pause.
      await (down?.promise ?? sleep(10));
      continue;
    }
    relay(client, target, () => {
      refused().catch((e) => {
        console.error(`relay: cannot listen again: ${e}`);
        Deno.exit(1);
      });
    }).catch(() => closeQuietly(client));
  }
}
