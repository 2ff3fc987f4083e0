// A loopback TCP server that answers each connection with whatever bytes a test scripts (broken backends).

/** Listens on loopback; `script` gets each connection after the request head was read. */
export function rawServer(
  script: (conn: Deno.Conn, request: string) => Promise<void>,
): { port: number; close(): Promise<void>; [Symbol.asyncDispose](): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const task = (async () => {
        try {
          const buf = new Uint8Array(8192);
          const n = await conn.read(buf);
          await script(conn, new TextDecoder().decode(buf.subarray(0, n ?? 0)));
        } catch { /* the client went away */ }
        try {
          conn.close();
        } catch { /* already closed */ }
        conns.delete(conn);
      })();
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});
  const close = async () => {
    listener.close();
    for (const c of conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
    await accepting;
    await Promise.all(tasks);
  };
  return { port: listener.addr.port, close, [Symbol.asyncDispose]: close };
}

/** Writes a string to a connection. */
export async function send(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}
