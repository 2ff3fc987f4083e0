// Sends exactly COUNT keep-alive GETs of PATH to 127.0.0.1:PORT over CONNECTIONS connections, one
// request in flight on each (scenario (12)'s load under callgrind, where wrk's duration would not
// fix the number of hits). Responses are framed by Content-Length.
// Usage: deno run -A bench/count_client.ts PORT COUNT [CONNECTIONS] [PATH]
const [port, count] = [Number(Deno.args[0]), Number(Deno.args[1])];
const connections = Number(Deno.args[2] ?? 10);
const path = Deno.args[3] ?? "/primary";
if (!Number.isInteger(port) || !Number.isInteger(count) || !Number.isInteger(connections)) {
  console.error("usage: count_client.ts PORT COUNT [CONNECTIONS] [PATH]");
  Deno.exit(2);
}
const request = new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
const latin1 = new TextDecoder("latin1");
let left = count;

/** Reads one response off `conn` into `buf`. */
async function readResponse(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let len = 0;
  for (;;) {
    const n = await conn.read(buf.subarray(len));
    if (n === null) throw new Error("closed by the server");
    len += n;
    const text = latin1.decode(buf.subarray(0, len));
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const length = Number(text.match(/content-length: *(\d+)/i)?.[1] ?? 0);
    if (len >= end + 4 + length) return;
  }
}

await Promise.all(Array.from({ length: connections }, async () => {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(16_384);
  try {
    while (left > 0) {
      left--;
      await conn.write(request);
      await readResponse(conn, buf);
    }
  } finally {
    conn.close();
  }
}));
