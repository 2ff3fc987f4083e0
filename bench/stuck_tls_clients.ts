// Holds COUNT stuck clients on a TLS port of 127.0.0.1, a third of each kind: connected and silent;
// a ClientHello cut short; a finished handshake and half a request head. None ever sends more.
// Usage: deno run -A bench/stuck_tls_clients.ts PORT COUNT CA_FILE
// Prints `opened N failed M ms T` once all are attempted; each line read on stdin prints
// `open K A B C` (still open: all, then by kind); stdin EOF closes them all and exits.

const port = Number(Deno.args[0]);
const count = Number(Deno.args[1] ?? 1500);
const caFile = Deno.args[2];
if (!Number.isInteger(port) || !Number.isInteger(count) || !caFile) {
  console.error("usage: stuck_tls_clients.ts PORT COUNT CA_FILE");
  Deno.exit(2);
}
const ca = Deno.readTextFileSync(caFile);
const encoder = new TextEncoder();
/** Open connections by kind: silent, partial ClientHello, half a request over TLS. */
const open: Set<Deno.Conn>[] = [new Set(), new Set(), new Set()];
const OPEN_TIMEOUT_MS = 10_000;

/** A TLS record header announcing a 512-byte ClientHello, and only its first 43 bytes. */
function partialClientHello(): Uint8Array {
  const bytes = new Uint8Array(43);
  bytes.set([0x16, 0x03, 0x01, 0x02, 0x00]); // handshake record, 512 bytes
  bytes.set([0x01, 0x00, 0x01, 0xfc, 0x03, 0x03], 5); // ClientHello of 508 bytes, TLS 1.2
  crypto.getRandomValues(bytes.subarray(11)); // the client random; the rest never comes
  return bytes;
}

/** Keeps `conn` in its kind's set until the server closes it (EOF or an error on read). */
function hold(kind: number, conn: Deno.Conn): void {
  open[kind].add(conn);
  (async () => {
    const buf = new Uint8Array(1024);
    try {
      while ((await conn.read(buf)) !== null) { /* an error page, then EOF */ }
    } catch { /* reset */ }
    open[kind].delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  })();
}

async function openOne(kind: number): Promise<void> {
  const conn = kind === 2
    ? await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [ca] })
    : await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, OPEN_TIMEOUT_MS);
  try {
    if (kind === 1) await conn.write(partialClientHello());
    if (kind === 2) {
      await (conn as Deno.TlsConn).handshake();
      await conn.write(encoder.encode("GET /primary HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    }
  } catch (e) {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
    throw e;
  } finally {
    clearTimeout(timer);
  }
  hold(kind, conn);
}

const t0 = performance.now();
let failed = 0;
const BATCH = 100;
for (let i = 0; i < count; i += BATCH) {
  const batch = Array.from(
    { length: Math.min(BATCH, count - i) },
    (_, j) => openOne((i + j) % 3).catch(() => void failed++),
  );
  await Promise.all(batch);
}
console.log(`opened ${count - failed} failed ${failed} ms ${Math.round(performance.now() - t0)}`);

const report = () =>
  console.log(`open ${open.reduce((n, s) => n + s.size, 0)} ${open.map((s) => s.size).join(" ")}`);
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  for (let k = chunk.split("\n").length - 1; k > 0; k--) report();
}
report();
for (const conn of open.flatMap((s) => [...s])) {
  try {
    conn.close();
  } catch { /* closed */ }
}
Deno.exit(0);
