// The HTTP/1.1 server over TCP and over the TLS transport: framing, keep-alive, strict parsing,
// deadlines from accept for slow clients, backpressure, shutdown. Every server test runs over both.
import assert from "node:assert/strict";
import type { HealthRequest, HealthResponse } from "../src/check/health.ts";
import { type Http1Options, parseHead, serveHttp1, WireRequest } from "../src/net/http1.ts";
import type { Transport } from "../src/net/connections.ts";
import { listenTls } from "../src/net/tls_transport.ts";
import { hostPort } from "../src/net/wire.ts";
import {
  clientHello,
  connectClient,
  fixture,
  type Scheme,
  SCHEMES,
  sleep,
} from "./support/glue.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };

/** A loopback transport for `scheme` on a free port; `errors` collects failed TLS handshakes. */
async function bind(scheme: Scheme, errors: Error[] = []): Promise<Transport> {
  if (scheme === "http") return Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return await listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(fixture("server.pem")),
    key: Deno.readTextFileSync(fixture("server.key")),
    minVersion: "TLSv1.2",
    onHandshakeError: (e) => errors.push(e),
  });
}

/** A server whose response echoes what it was asked; `seen` lists the requests; `/hold` waits for `release`. */
async function echoServer(
  scheme: Scheme,
  options: Partial<Http1Options> = {},
  body = (r: HealthRequest) => r.target,
) {
  const seen: HealthRequest[] = [];
  const held = Promise.withResolvers<void>();
  const handshakeErrors: Error[] = [];
  const transport = await bind(scheme, handshakeErrors);
  const server = serveHttp1({ transport, ...options }, (req) => {
    seen.push(req);
    const res: HealthResponse = {
      status: 200,
      headers: { "content-type": "text/plain" },
      body: body(req),
    };
    if (req.target.startsWith("/hold")) return held.promise.then(() => res);
    return req.target.startsWith("/slow") ? new Promise((r) => setTimeout(r, 50, res)) : res;
  });
  return {
    server,
    seen,
    handshakeErrors,
    release: () => held.resolve(),
    port: server.addr.port,
    [Symbol.asyncDispose]: () => (held.resolve(), server.shutdown()),
  };
}

/** Reads until the server closes (`closed`) or `idleMs` pass without a byte; resolves with what came. */
async function readAll(conn: Deno.Conn, idleMs: number) {
  let text = "";
  const buf = new Uint8Array(65536);
  let timedOut = false;
  for (;;) {
    const timer = setTimeout(() => {
      timedOut = true; // the server kept it open
      conn.close();
    }, idleMs);
    try {
      const n = await conn.read(buf);
      clearTimeout(timer);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    } catch {
      clearTimeout(timer);
      break; // closed, or reset (TLS: closed without close_notify)
    }
  }
  try {
    conn.close();
  } catch { /* closed */ }
  return {
    text,
    closed: !timedOut,
    statuses: [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => +m[1]),
  };
}

async function write(conn: Deno.Conn, request: string | Uint8Array) {
  const bytes = typeof request === "string" ? enc.encode(request) : request;
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/** Sends `request` on a new connection, then reads until the server closes or `idleMs` pass. */
async function talk(scheme: Scheme, port: number, request: string | Uint8Array, idleMs = 300) {
  const conn = await connectClient(scheme, port);
  await write(conn, request);
  return await readAll(conn, idleMs);
}

/** Resolves with the ms until the server closes `conn` (it reads and drops what comes). */
async function closedAfter(conn: Deno.Conn, since: number, limitMs = 5000): Promise<number> {
  const buf = new Uint8Array(4096);
  const limit = setTimeout(() => conn.close(), limitMs);
  try {
    while (await conn.read(buf) !== null) { /* drop */ }
  } catch { /* closed or reset */ }
  clearTimeout(limit);
  try {
    conn.close();
  } catch { /* closed */ }
  return performance.now() - since;
}

/** Declares `fn` once per scheme: the same HTTP/1 server behind TCP and behind TLS. */
function test(name: string, fn: (scheme: Scheme) => Promise<void>) {
  for (const scheme of SCHEMES) Deno.test(`http1 over ${scheme}: ${name}`, () => fn(scheme));
}

test("keep-alive on HTTP/1.1, pipelined requests answered in order", async (scheme) => {
  await using s = await echoServer(scheme);
  const r = await talk(
    scheme,
    s.port,
    "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  assert.deepEqual(r.statuses, [200, 200]);
  assert.ok(r.text.indexOf("/slow") < r.text.indexOf("/b"), r.text);
  assert.equal(r.closed, false, "an HTTP/1.1 connection stays open");
  assert.match(r.text, /content-length: 5\r\n/);
  assert.match(r.text, /^date: .+ GMT\r$/m);
});

test("HTTP/1.0 closes unless keep-alive is asked; Connection: close is honoured", async (scheme) => {
  await using s = await echoServer(scheme);
  const plain = await talk(scheme, s.port, "GET /a HTTP/1.0\r\n\r\n");
  assert.deepEqual(plain.statuses, [200]);
  assert.equal(plain.closed, true);
  assert.match(plain.text, /connection: close/);
  const kept = await talk(scheme, s.port, "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  assert.equal(kept.closed, false);
  assert.match(kept.text, /connection: keep-alive/);
  const close = await talk(
    scheme,
    s.port,
    "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
  );
  assert.deepEqual(close.statuses, [200], "nothing is answered after Connection: close");
  assert.equal(close.closed, true);
});

test("a client that ends its side after the request still gets the response", async (scheme) => {
  await using s = await echoServer(scheme);
  const conn = await connectClient(scheme, s.port);
  await write(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  await conn.closeWrite();
  const r = await readAll(conn, 2000);
  assert.deepEqual(r.statuses, [200]);
  assert.match(r.text, /\/slow$/);
  assert.equal(r.closed, true, "then the server closes too");
});

test("HEAD keeps the GET's Content-Length and sends no body", async (scheme) => {
  await using s = await echoServer(scheme);
  const r = await talk(scheme, s.port, "HEAD /abcdef HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
  assert.deepEqual(r.statuses, [200, 200]);
  const [head] = r.text.split("HTTP/1.1 200").slice(1);
  assert.match(head, /content-length: 7\r\n\r\n$/);
});

test("a body is never read: 'hasBody' is set, the response arrives, the connection closes", async (scheme) => {
  await using s = await echoServer(scheme);
  const r = await talk(
    scheme,
    s.port,
    `GET /a HTTP/1.1\r\nContent-Length: 100000\r\n\r\n${
      "x".repeat(100_000)
    }GET /smuggled HTTP/1.1\r\n\r\n`,
  );
  assert.deepEqual(r.statuses, [200]);
  assert.equal(r.closed, true);
  assert.deepEqual(s.seen.map((q) => [q.target, q.hasBody]), [["/a", true]]);
  const chunked = await talk(
    scheme,
    s.port,
    "GET /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  );
  assert.equal(chunked.closed, true);
  assert.deepEqual(s.seen.map((q) => q.hasBody), [true, true]);
  await talk(scheme, s.port, "GET /z HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
  assert.equal(s.seen[2].hasBody, false);
});

test("malformed heads are refused with 400 (431 when too large), never handled", async (scheme) => {
  await using s = await echoServer(scheme, { maxHeadBytes: 4096 });
  const cases: [string, number][] = [
    ["GET /a HTTP/1.1\nHost: x\n\n", 400], // bare LF
    ["GET /a HTTP/1.1\r\nHost : x\r\n\r\n", 400], // space before the colon
    ["GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400], // obs-fold
    ["GET /a HTTP/1.1\r\nNo colon\r\n\r\n", 400],
    ["GET /a HTTP/1.1\r\nX: a\rb\r\n\r\n", 400], // lone CR in a value
    ["GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400],
    ["GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
    ["GET  /a HTTP/1.1\r\n\r\n", 400],
    ["GET /a b HTTP/1.1\r\n\r\n", 400],
    ["GET /a HTTP/2.0\r\n\r\n", 400],
    ["GET /\x7fa HTTP/1.1\r\n\r\n", 400],
    ["G(T /a HTTP/1.1\r\n\r\n", 400],
    [`${"A".repeat(33)} /a HTTP/1.1\r\n\r\n`, 400], // a method longer than 32 bytes
    [`${"A".repeat(3000)}`, 400], // refused before the head ends: no scan of a growing token
    [`GET /a HTTP/1.1\r\nX: ${"a".repeat(5000)}\r\n\r\n`, 431],
    [`GET /a HTTP/1.1\r\n${"X: a\r\n".repeat(101)}\r\n`, 431],
  ];
  for (const [request, status] of cases) {
    const r = await talk(scheme, s.port, request);
    assert.deepEqual(r.statuses, [status], JSON.stringify(request.slice(0, 50)));
    assert.equal(r.closed, true);
  }
  assert.equal(s.seen.length, 0);
});

test("TLS or binary junk as a request is refused at once, not left to the head timeout", async (scheme) => {
  await using s = await echoServer(scheme, { headTimeoutMs: 60_000 });
  const t0 = performance.now();
  const r = await talk(scheme, s.port, new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]), 5000);
  assert.deepEqual(r.statuses, [400]);
  const token = await talk(scheme, s.port, "A".repeat(40), 5000); // no space yet: not a method
  assert.deepEqual(token.statuses, [400]);
  assert.ok(performance.now() - t0 < 4000);
});
test("a 32-byte method is read as a method, not refused as a malformed line", async (scheme) => {
  await using s = await echoServer(scheme);
  const r = await talk(scheme, s.port, `${"A".repeat(32)} /a HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.equal(r.statuses.length, 1);
  assert.equal(s.seen[0]?.method, "A".repeat(32));
});

test("a new connection that sends nothing is closed by the head deadline, not the idle one", async (scheme) => {
  await using s = await echoServer(scheme, { headTimeoutMs: 200, idleTimeoutMs: 60_000 });
  const since = performance.now();
  const conn = await connectClient(scheme, s.port);
  const ms = await closedAfter(conn, since);
  assert.ok(ms < 2000, `closed after ${ms.toFixed(0)} ms`);
});

test("the first head is due from accept: a client dripping header lines is closed", async (scheme) => {
  await using s = await echoServer(scheme, { headTimeoutMs: 300, idleTimeoutMs: 60_000 });
  const since = performance.now();
  const conn = await connectClient(scheme, s.port);
  const closed = closedAfter(conn, since);
  const drip = setInterval(() => write(conn, "X: y\r\n").catch(() => {}), 50);
  await write(conn, "GET /a HTTP/1.1\r\n");
  const ms = await closed;
  clearInterval(drip);
  assert.ok(ms < 2000, `closed after ${ms.toFixed(0)} ms`);
  assert.equal(s.seen.length, 0);
});

test("a half-sent head is closed after the head timeout, an idle connection after the idle timeout", async (scheme) => {
  await using s = await echoServer(scheme, { headTimeoutMs: 200, idleTimeoutMs: 400 });
  const half = await talk(scheme, s.port, "GET /a HTTP/1.1\r\nHost:", 5000);
  assert.equal(half.closed, true);
  assert.equal(half.text, "");
  const idle = await talk(scheme, s.port, "GET /a HTTP/1.1\r\n\r\n", 5000);
  assert.deepEqual(idle.statuses, [200]);
  assert.equal(idle.closed, true, "the idle connection was closed by the server");
});

test("between requests a kept-alive connection gets the idle deadline, longer than the head one", async (scheme) => {
  await using s = await echoServer(scheme, { headTimeoutMs: 200, idleTimeoutMs: 1500 });
  const conn = await connectClient(scheme, s.port);
  try {
    await write(conn, "GET /first HTTP/1.1\r\n\r\n");
    const buf = new Uint8Array(4096);
    assert.match(dec.decode(buf.subarray(0, (await conn.read(buf))!)), /^HTTP\/1\.1 200 /);
    await sleep(700); // past the head deadline, within the idle one
    await write(conn, "GET /second HTTP/1.1\r\n\r\n");
    assert.match(dec.decode(buf.subarray(0, (await conn.read(buf))!)), /\/second$/);
  } finally {
    conn.close();
  }
  assert.deepEqual(s.seen.map((r) => r.target), ["/first", "/second"]);
});

test("a client that stops reading is cut off after the write timeout", async (scheme) => {
  const big = "x".repeat(32 << 20);
  await using s = await echoServer(scheme, { writeTimeoutMs: 200 }, () => big);
  const conn = await connectClient(scheme, s.port);
  await write(conn, "GET /a HTTP/1.1\r\n\r\n");
  await sleep(1500);
  let received = 0;
  const buf = new Uint8Array(1 << 20);
  try {
    for (let n; (n = await conn.read(buf)) !== null;) received += n;
  } catch { /* reset */ }
  conn.close();
  assert.ok(received < big.length, `received ${received} of ${big.length}`);
});

test("input is not buffered without bound while a request is handled: the client is pushed back", async (scheme) => {
  await using s = await echoServer(scheme);
  const conn = await connectClient(scheme, s.port);
  await write(conn, "GET /hold HTTP/1.1\r\n\r\n");
  while (s.seen.length === 0) await sleep(5);
  const chunk = new Uint8Array(1 << 20).fill(0x41);
  let sent = 0;
  const pushing = (async () => {
    try {
      for (;;) sent += await conn.write(chunk);
    } catch { /* closed below */ }
  })();
  await sleep(1500);
  const stuckAt = sent;
  conn.close();
  await pushing;
  s.release();
  // Unbounded reading takes in hundreds of MiB a second here; kernel buffers hold a few MiB.
  assert.ok(stuckAt < 32 << 20, `the server took ${stuckAt >> 20} MiB while not reading`);
});

test("the absolute form is routed on its path; HTTP/1.0 without Host is fine", async (scheme) => {
  await using s = await echoServer(scheme);
  await talk(scheme, s.port, "GET http://patroni.example/primary?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  await talk(scheme, s.port, "OPTIONS http://evil.example HTTP/1.1\r\n\r\n");
  await talk(scheme, s.port, "GET /../x HTTP/1.0\r\n\r\n");
  assert.deepEqual(s.seen.map((q) => `${q.method} ${q.target}`), [
    "GET /primary?x=1",
    "OPTIONS /",
    "GET /../x",
  ]);
  assert.match(s.seen[0].remote, /^127\.0\.0\.1:\d+$/);
});

test("shutdown closes idle and half-sent connections at once and lets responses finish", async (scheme) => {
  const s = await echoServer(scheme);
  const idle = await connectClient(scheme, s.port);
  const half = await connectClient(scheme, s.port);
  await write(half, "GET /a HTTP/1.1\r\n");
  const busy = talk(scheme, s.port, "GET /slow HTTP/1.1\r\n\r\n", 2000);
  while (s.seen.length === 0) await sleep(5);
  await s.server.shutdown();
  const done = await busy;
  assert.deepEqual(done.statuses, [200]);
  assert.match(done.text, /connection: close/);
  for (const c of [idle, half]) {
    assert.equal(await c.read(new Uint8Array(16)).catch(() => null), null);
    c.close();
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: s.port }));
});

Deno.test("http1 over https: a connection stuck in its handshake is closed by the head deadline", async (t) => {
  await using s = await echoServer("https", { headTimeoutMs: 200, idleTimeoutMs: 60_000 });
  const partialHello = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
  for (const [name, bytes] of [["nothing", undefined], ["a cut ClientHello", partialHello]]) {
    await t.step(`sending ${name}`, async () => {
      const since = performance.now();
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
      if (bytes) await write(conn, bytes as Uint8Array);
      const ms = await closedAfter(conn, since);
      assert.ok(ms < 2000, `closed after ${ms.toFixed(0)} ms`);
    });
  }
  assert.equal(s.seen.length, 0);
});

Deno.test("http1 over https: shutdown closes a connection still in its handshake", async () => {
  const s = await echoServer("https");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await write(conn, new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00]));
  const since = performance.now();
  const closed = closedAfter(conn, since);
  await s.server.shutdown();
  assert.ok(await closed < 1000);
});

Deno.test("http1 over https: plain HTTP, junk, resets and refused certificates get no response and leave it serving", async () => {
  await using s = await echoServer("https", { headTimeoutMs: 2000 });
  const replies: string[] = [];
  const raw = async (bytes: Uint8Array, reset = false) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
    await write(conn, bytes);
    if (reset) return conn.close(); // unread bytes from the server: the kernel sends a reset
    replies.push((await readAll(conn, 3000)).text);
  };
  await raw(enc.encode("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"));
  await raw(crypto.getRandomValues(new Uint8Array(700)));
  await raw(await clientHello(), true);
  // A client that does not trust the certificate ends the handshake itself.
  await assert.rejects(
    Deno.connectTls({
      hostname: "127.0.0.1",
      port: s.port,
      caCerts: [Deno.readTextFileSync(fixture("ec.pem"))],
    }).then((c) => c.handshake().finally(() => c.close())),
  );
  for (const reply of replies) assert.doesNotMatch(reply, /HTTP\/1\.1/);
  const after = await talk("https", s.port, "GET /still HTTP/1.1\r\nConnection: close\r\n\r\n");
  assert.deepEqual(after.statuses, [200]);
  assert.deepEqual(s.seen.map((r) => r.target), ["/still"]);
  while (s.handshakeErrors.length < 4) await sleep(10);
});

Deno.test("http1: parseHead interns methods and reuses a repeated target's string", () => {
  const bytes = enc.encode("GET /primary?lag=1 HTTP/1.1\r\nHost: x\r\nConnection: close");
  const a = parseHead(bytes, bytes.length, ADDR);
  const other = enc.encode("GET /replica HTTP/1.1");
  const b = parseHead(other, other.length, ADDR);
  const c = parseHead(bytes, bytes.length, ADDR);
  assert.ok(a instanceof WireRequest && b instanceof WireRequest && c instanceof WireRequest);
  assert.equal(a.method, "GET");
  assert.equal(a.target, "/primary?lag=1");
  assert.equal(b.target, "/replica");
  assert.equal(c.target, "/primary?lag=1");
  assert.equal(a.keepAlive, false);
  const odd = enc.encode("PROPFIND / HTTP/1.1");
  const d = parseHead(odd, odd.length, ADDR);
  assert.ok(d instanceof WireRequest);
  assert.equal(d.method, "PROPFIND");
  assert.equal(d.keepAlive, true);
});

Deno.test("wire: host:port puts an IPv6 address in brackets, for a client address too", () => {
  assert.equal(hostPort("127.0.0.1", 8008), "127.0.0.1:8008");
  assert.equal(hostPort("::1", 8008), "[::1]:8008");
  const bytes = enc.encode("GET / HTTP/1.1");
  const req = parseHead(bytes, bytes.length, { transport: "tcp", hostname: "fe80::1", port: 5 });
  assert.ok(req instanceof WireRequest);
  assert.equal(req.remote, "[fe80::1]:5");
});
