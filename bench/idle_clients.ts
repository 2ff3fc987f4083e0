// Holds N connections open to 127.0.0.1:PORT, slowloris-style: each sends part of a request's
// headers and then one more header line every few seconds, never finishing the request.
// Usage: deno run -A bench/idle_clients.ts PORT COUNT [TRICKLE_SECONDS]
// Prints `opened N failed M` once all are attempted; on stdin EOF prints `open K` (still open) and
// exits, closing them.

const port = Number(Deno.args[0]);
const count = Number(Deno.args[1] ?? 2000);
const trickleMs = Number(Deno.args[2] ?? 10) * 1000;
if (!Number.isInteger(port) || !Number.isInteger(count)) {
  console.error("usage: idle_clients.ts PORT COUNT [TRICKLE_SECONDS]");
  Deno.exit(2);
}

const encoder = new TextEncoder();
const conns = new Set<Deno.TcpConn>();
let failed = 0;

function hold(conn: Deno.TcpConn): void {
  conns.add(conn);
  // A read that ends (EOF or error) means the server closed the connection.
  (async () => {
    const buf = new Uint8Array(1024);
    try {
      while ((await conn.read(buf)) !== null) { /* an error page, then EOF */ }
    } catch { /* reset */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  })();
}

const BATCH = 100;
for (let i = 0; i < count; i += BATCH) {
  const batch = Array.from({ length: Math.min(BATCH, count - i) }, async () => {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encoder.encode("GET /primary HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
      hold(conn);
    } catch {
      failed++;
    }
  });
  await Promise.all(batch);
}
console.log(`opened ${count - failed} failed ${failed}`);

// One more header line per connection every trickleMs, spread over the interval.
let n = 0;
const trickle = setInterval(() => {
  const each = [...conns];
  const slice = Math.ceil(each.length / 10);
  const part = each.slice((n % 10) * slice, (n % 10 + 1) * slice);
  n++;
  for (const c of part) c.write(encoder.encode(`X-Slow-${n}: 1\r\n`)).catch(() => {});
}, trickleMs / 10);

// Wait for stdin to close (the runner's signal to stop).
const buf = new Uint8Array(64);
while ((await Deno.stdin.read(buf)) !== null) { /* ignore */ }
clearInterval(trickle);
console.log(`open ${conns.size}`);
for (const c of conns) {
  try {
    c.close();
  } catch { /* closed */ }
}
Deno.exit(0);
