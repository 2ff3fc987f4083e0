// The HTTP/1.1 server: framing, keep-alive, strict parsing, deadlines for slow clients, shutdown.
import assert from "node:assert/strict";
import type { HealthRequest, HealthResponse } from "../src/frontend.ts";
import { type Http1Options, parseHead, serveHttp1, WireRequest } from "../src/http1.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };

/** A server whose answer echoes what it was asked; `seen` lists the requests. */
function echoServer(options: Partial<Http1Options> = {}, body = (r: HealthRequest) => r.target) {
  const seen: HealthRequest[] = [];
  const server = serveHttp1({ hostname: "127.0.0.1", port: 0, ...options }, (req) => {
    seen.push(req);
    const res: HealthResponse = {
      status: 200,
      headers: { "content-type": "text/plain" },
      body: body(req),
    };
    return req.target.startsWith("/slow") ? new Promise((r) => setTimeout(() => r(res), 50)) : res;
  });
  return { server, seen, port: server.addr.port, [Symbol.asyncDispose]: () => server.shutdown() };
}

/** Sends `request`, then reads until the server closes or `idleMs` pass without a byte. */
async function talk(port: number, request: string | Uint8Array, idleMs = 300) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = typeof request === "string" ? enc.encode(request) : request;
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
  let text = "";
  let closed = false;
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
      break;
    }
  }
  closed = !timedOut;
  try {
    conn.close();
  } catch { /* closed */ }
  return { text, closed, statuses: [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => +m[1]) };
}

Deno.test("http1: keep-alive on HTTP/1.1, pipelined requests answered in order", async () => {
  await using s = echoServer();
  const r = await talk(
    s.port,
    "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  assert.deepEqual(r.statuses, [200, 200]);
  assert.ok(r.text.indexOf("/slow") < r.text.indexOf("/b"), r.text);
  assert.equal(r.closed, false, "an HTTP/1.1 connection stays open");
  assert.match(r.text, /content-length: 5\r\n/);
  assert.match(r.text, /^date: .+ GMT\r$/m);
});

Deno.test("http1: HTTP/1.0 closes unless keep-alive is asked; Connection: close is honoured", async () => {
  await using s = echoServer();
  const plain = await talk(s.port, "GET /a HTTP/1.0\r\n\r\n");
  assert.deepEqual(plain.statuses, [200]);
  assert.equal(plain.closed, true);
  assert.match(plain.text, /connection: close/);
  const kept = await talk(s.port, "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  assert.equal(kept.closed, false);
  assert.match(kept.text, /connection: keep-alive/);
  const close = await talk(
    s.port,
    "GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
  );
  assert.deepEqual(close.statuses, [200], "nothing is answered after Connection: close");
  assert.equal(close.closed, true);
});

Deno.test("http1: HEAD keeps the GET's Content-Length and sends no body", async () => {
  await using s = echoServer();
  const r = await talk(s.port, "HEAD /abcdef HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
  assert.deepEqual(r.statuses, [200, 200]);
  const [head] = r.text.split("HTTP/1.1 200").slice(1);
  assert.match(head, /content-length: 7\r\n\r\n$/);
});

Deno.test("http1: a body is never read: 'hasBody' is set, the answer arrives, the connection closes", async () => {
  await using s = echoServer();
  const r = await talk(
    s.port,
    `GET /a HTTP/1.1\r\nContent-Length: 100000\r\n\r\n${
      "x".repeat(100_000)
    }GET /smuggled HTTP/1.1\r\n\r\n`,
  );
  assert.deepEqual(r.statuses, [200]);
  assert.equal(r.closed, true);
  assert.deepEqual(s.seen.map((q) => [q.target, q.hasBody]), [["/a", true]]);
  const chunked = await talk(
    s.port,
    "GET /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  );
  assert.equal(chunked.closed, true);
  assert.deepEqual(s.seen.map((q) => q.hasBody), [true, true]);
  await talk(s.port, "GET /z HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
  assert.equal(s.seen[2].hasBody, false);
});

Deno.test("http1: malformed heads are refused with 400 (431 when too large), never handled", async () => {
  await using s = echoServer({ maxHeadBytes: 4096 });
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
    [`GET /a HTTP/1.1\r\nX: ${"a".repeat(5000)}\r\n\r\n`, 431],
    [`GET /a HTTP/1.1\r\n${"X: a\r\n".repeat(101)}\r\n`, 431],
  ];
  for (const [request, status] of cases) {
    const r = await talk(s.port, request);
    assert.deepEqual(r.statuses, [status], JSON.stringify(request.slice(0, 50)));
    assert.equal(r.closed, true);
  }
  assert.equal(s.seen.length, 0);
});

Deno.test("http1: TLS or binary junk is refused at once, not left to the head timeout", async () => {
  await using s = echoServer({ headTimeoutMs: 60_000 });
  const t0 = performance.now();
  const r = await talk(s.port, new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]), 5000);
  assert.deepEqual(r.statuses, [400]);
  assert.ok(performance.now() - t0 < 4000);
});

Deno.test("http1: a half-sent head is closed after the head timeout, an idle connection after the idle timeout", async () => {
  await using s = echoServer({ headTimeoutMs: 200, idleTimeoutMs: 400 });
  const half = await talk(s.port, "GET /a HTTP/1.1\r\nHost:", 5000);
  assert.equal(half.closed, true);
  assert.equal(half.text, "");
  const idle = await talk(s.port, "GET /a HTTP/1.1\r\n\r\n", 5000);
  assert.deepEqual(idle.statuses, [200]);
  assert.equal(idle.closed, true, "the idle connection was closed by the server");
});

Deno.test("http1: a client that stops reading is cut off after the write timeout", async () => {
  const big = "x".repeat(32 << 20);
  await using s = echoServer({ writeTimeoutMs: 200 }, () => big);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await conn.write(enc.encode("GET /a HTTP/1.1\r\n\r\n"));
  await new Promise((r) => setTimeout(r, 1500));
  let received = 0;
  const buf = new Uint8Array(1 << 20);
  try {
    for (let n; (n = await conn.read(buf)) !== null;) received += n;
  } catch { /* reset */ }
  conn.close();
  assert.ok(received < big.length, `received ${received} of ${big.length}`);
});

Deno.test("http1: the absolute form is routed on its path; HTTP/1.0 without Host is fine", async () => {
  await using s = echoServer();
  await talk(s.port, "GET http://evil.example/primary?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  await talk(s.port, "OPTIONS http://evil.example HTTP/1.1\r\n\r\n");
  await talk(s.port, "GET /../x HTTP/1.0\r\n\r\n");
  assert.deepEqual(s.seen.map((q) => `${q.method} ${q.target}`), [
    "GET /primary?x=1",
    "OPTIONS /",
    "GET /../x",
  ]);
  assert.match(s.seen[0].remote, /^127\.0\.0\.1:\d+$/);
});

Deno.test("http1: shutdown closes idle and half-sent connections at once and lets answers finish", async () => {
  const s = echoServer();
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  const half = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await half.write(enc.encode("GET /a HTTP/1.1\r\n"));
  const busy = talk(s.port, "GET /slow HTTP/1.1\r\n\r\n", 2000);
  while (s.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
  await s.server.shutdown();
  const answered = await busy;
  assert.deepEqual(answered.statuses, [200]);
  assert.match(answered.text, /connection: close/);
  for (const c of [idle, half]) {
    assert.equal(await c.read(new Uint8Array(16)).catch(() => null), null);
    c.close();
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: s.port }));
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
