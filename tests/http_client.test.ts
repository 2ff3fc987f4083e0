import assert from "node:assert/strict";
import https from "node:https";
import { HttpClient, type HttpClientOptions, HttpError } from "../src/net/http_client.ts";
import { fixture, freePort, sleep } from "./support/glue.ts";
import { rawServer, send } from "./support/raw_server.ts";

const pem = (name: string) => Deno.readTextFileSync(fixture(name));
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function client(port: number, options: HttpClientOptions = {}, scheme: "http" | "https" = "http") {
  return new HttpClient({ scheme, host: "127.0.0.1", port }, options);
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof HttpError, String(e));
    return `${e.failure}: ${e.message}`;
  }
  assert.fail("the request succeeded");
}

/** A server that reads requests one after another on each connection and answers each with `answer`. */
function keepAliveServer(answer: (request: string, n: number) => string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stats = { connections: 0, requests: 0 };
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      stats.connections++;
      conns.add(conn);
      tasks.push((async () => {
        const buf = new Uint8Array(8192);
        let pending = "";
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            pending += text(buf.subarray(0, n));
            for (
              let end = pending.indexOf("\r\n\r\n");
              end !== -1;
              end = pending.indexOf("\r\n\r\n")
            ) {
              const head = pending.slice(0, end);
              const length = Number(head.match(/content-length: (\d+)/i)?.[1] ?? 0);
              if (pending.length < end + 4 + length) break;
              const request = pending.slice(0, end + 4 + length);
              pending = pending.slice(end + 4 + length);
              await send(conn, answer(request, ++stats.requests));
            }
          }
        } catch { /* closed */ }
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
      })());
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    stats,
    /** Closes every open connection (a server that drops idle ones). */
    dropAll() {
      for (const c of conns) c.close();
      conns.clear();
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      this.dropAll();
      await accepting;
      await Promise.all(tasks);
    },
  };
}

Deno.test("http_client: Content-Length, chunked (with trailers) and closed-delimited bodies", async (t) => {
  const cases: [string, string, string][] = [
    ["Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"],
    [
      "chunked with extensions and trailers",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n",
      "hello",
    ],
    ["closed-delimited (HTTP/1.0)", "HTTP/1.0 200 OK\r\n\r\nhello", "hello"],
    [
      "a 100 Continue first",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
      "ok",
    ],
    ["204 without a body", "HTTP/1.1 204 No Content\r\n\r\n", ""],
  ];
  for (const [name, answer, body] of cases) {
    await t.step(name, async () => {
      await using server = rawServer((conn) => send(conn, answer));
      const c = client(server.port);
      try {
        const response = await c.request({ target: "/", timeoutMs: 1000 });
        assert.equal(text(response.body), body);
      } finally {
        c.close();
      }
    });
  }
});

Deno.test("http_client: a POST sends its body with Content-Length, and the headers asked for", async () => {
  let seen = "";
  await using server = rawServer(async (conn, request) => {
    seen = request;
    await send(
      conn,
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Etcd-Index: 7\r\nX-A: 1\r\nx-a: 2\r\n\r\n{}",
    );
  });
  const c = client(server.port);
  try {
    const response = await c.request({
      method: "POST",
      target: "/v3/kv/range",
      headers: { "Content-Type": "application/json", Authorization: "token" },
      body: '{"key":"AA=="}',
      timeoutMs: 1000,
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-etcd-index"), "7");
    assert.equal(response.headers.get("x-a"), "1, 2");
    assert.match(seen, /^POST \/v3\/kv\/range HTTP\/1\.1\r\n/);
    assert.match(seen, /\r\nContent-Length: 14\r\n/);
    assert.match(seen, /\r\nAuthorization: token\r\n/);
    assert.match(seen, /\r\nConnection: close\r\n/);
    assert.ok(seen.endsWith('\r\n\r\n{"key":"AA=="}'));
    await assert.rejects(
      c.request({ target: "/", headers: { "X-Bad": "a\r\nInjected: 1" }, timeoutMs: 1000 }),
      /must not contain CR or LF/,
    );
  } finally {
    c.close();
  }
});

Deno.test("http_client: malformed and oversized answers are 'invalid'", async (t) => {
  const cases: [string, (conn: Deno.Conn) => Promise<void>, RegExp, HttpClientOptions?][] = [
    [
      "no status line",
      (c) => send(c, "SSH-2.0-OpenSSH\r\n\r\n"),
      /^invalid: malformed answer: no HTTP/,
    ],
    [
      "a bare LF in the head",
      (c) => send(c, "HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
      /^invalid: malformed answer: bare LF/,
    ],
    [
      "a bad Content-Length",
      (c) => send(c, "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
      /^invalid: malformed answer: bad Content-Length/,
    ],
    [
      "a bad chunk size",
      (c) => send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
      /^invalid: malformed answer: bad chunk size/,
    ],
    [
      "a chunk longer than its size",
      (c) => send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n"),
      /^invalid: malformed answer: chunk longer/,
    ],
    [
      "a body cut short",
      (c) => send(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
      /^invalid: answer cut short/,
    ],
    [
      "a head cut short",
      (c) => send(c, "HTTP/1.1 200 OK\r\nContent-"),
      /^invalid: answer cut short/,
    ],
    ["nothing", async () => {}, /^error: no answer \(connection closed\)/],
    [
      "a head too large",
      (c) => send(c, `HTTP/1.1 200 OK\r\nX: ${"a".repeat(20_000)}\r\n\r\n`),
      /^invalid: malformed answer: head too large/,
    ],
    [
      "a Content-Length body too large",
      (c) => send(c, `HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n${"a".repeat(2000)}`),
      /^invalid: answer larger than 1000 bytes/,
      { maxBodyBytes: 1000 },
    ],
    [
      "an endless chunked body",
      async (c) => {
        await send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (let i = 0; i < 100; i++) await send(c, `400\r\n${"x".repeat(0x400)}\r\n`);
      },
      /^invalid: answer larger than 4096 bytes/,
      { maxBodyBytes: 4096 },
    ],
  ];
  for (const [name, script, expected, options] of cases) {
    await t.step(name, async () => {
      await using server = rawServer(script);
      const c = client(server.port, options);
      try {
        assert.match(await failure(c.request({ target: "/", timeoutMs: 2000 })), expected);
      } finally {
        c.close();
      }
    });
  }
});

Deno.test("http_client: refused, deadline, and cancellation that closes the socket at once", async () => {
  const refused = client(freePort());
  assert.match(await failure(refused.request({ target: "/", timeoutMs: 1000 })), /^refused: /);
  refused.close();

  const closed = Promise.withResolvers<number>();
  await using frozen = rawServer(async (conn) => {
    const n = await conn.read(new Uint8Array(10)).catch(() => null); // waits for the client to go
    closed.resolve(n ?? -1);
  });
  const c = client(frozen.port);
  try {
    const started = performance.now();
    assert.match(
      await failure(c.request({ target: "/", timeoutMs: 200 })),
      /^timeout: no answer within 0\.2s/,
    );
    assert.ok(performance.now() - started < 1000);
    assert.equal(await closed.promise, -1, "the timed-out request's socket was closed");

    const abort = new AbortController();
    const pending = c.request({ target: "/", timeoutMs: 30_000, signal: abort.signal });
    while (c.inFlight === 0) await sleep(5);
    await sleep(50);
    abort.abort(new HttpError("error", "shutting down"));
    assert.match(await failure(pending), /^error: shutting down/);
    assert.equal(c.inFlight, 0);

    const later = c.request({ target: "/", timeoutMs: 30_000 });
    await sleep(50);
    c.close();
    assert.match(await failure(later), /^error: shutting down/);
    assert.match(await failure(c.request({ target: "/", timeoutMs: 1000 })), /shutting down/);
  } finally {
    c.close();
  }
});

Deno.test("http_client: a failure is an Error named HttpError, its name in what it prints", async () => {
  const refused = client(freePort());
  try {
    const e = await refused.request({ target: "/", timeoutMs: 1000 }).catch((e) => e);
    assert.ok(e instanceof HttpError && e instanceof Error, String(e));
    assert.equal(e.name, "HttpError");
    assert.match(String(e), /^HttpError: connection refused/);
  } finally {
    refused.close();
  }
});

Deno.test("http_client: keep-alive reuses one connection; one the server dropped is replaced, the request sent once more", async () => {
  await using server = keepAliveServer((_, n) =>
    `HTTP/1.1 200 OK\r\nContent-Length: ${String(n).length}\r\n\r\n${n}`
  );
  const c = client(server.port, { keepAlive: true });
  try {
    for (let i = 1; i <= 5; i++) {
      const response = await c.request({ target: "/", timeoutMs: 1000 });
      assert.equal(text(response.body), String(i));
    }
    assert.equal(server.stats.connections, 1);
    server.dropAll();
    await sleep(50);
    const again = await c.request({ target: "/", timeoutMs: 1000 });
    assert.equal(text(again.body), "6");
    assert.equal(server.stats.connections, 2);
  } finally {
    c.close();
  }
  const once = client(server.port);
  try {
    await once.request({ target: "/", timeoutMs: 1000 });
    await once.request({ target: "/", timeoutMs: 1000 });
    assert.equal(server.stats.connections, 4, "without keepAlive: a connection per request");
  } finally {
    once.close();
  }
});

Deno.test("http_client: a response that says Connection: close is not reused", async () => {
  await using server = keepAliveServer(() =>
    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
  );
  const c = client(server.port, { keepAlive: true });
  try {
    await c.request({ target: "/", timeoutMs: 1000 });
    await c.request({ target: "/", timeoutMs: 1000 });
    assert.equal(server.stats.connections, 2);
  } finally {
    c.close();
  }
});

Deno.test("http_client: a stream hands over pieces as they arrive and ends at the idle timeout", async () => {
  const go = Promise.withResolvers<void>();
  await using server = rawServer(async (conn) => {
    await send(conn, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{"a":1\r\n');
    await go.promise;
    await send(conn, "2\r\n}\n\r\n");
    await sleep(1000); // then silence
  });
  const c = client(server.port);
  const pieces: string[] = [];
  try {
    const done = c.stream({
      target: "/v3/watch",
      timeoutMs: 1000,
      idleMs: 300,
      onData: (piece) => {
        pieces.push(text(piece));
        go.resolve();
      },
    });
    const started = performance.now();
    assert.match(await failure(done), /^timeout: no data within 0\.3s/);
    assert.equal(pieces.join(""), '{"a":1}\n');
    assert.ok(performance.now() - started < 1000);
  } finally {
    c.close();
  }
});

Deno.test("http_client: a stream ends with its body, passes on what onData throws, and buffers another status", async () => {
  await using server = rawServer(async (conn, request) => {
    if (request.includes("/error")) {
      await send(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nmissing");
    } else {
      await send(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd");
    }
  });
  const c = client(server.port);
  try {
    const seen: string[] = [];
    const ok = await c.stream({
      target: "/",
      timeoutMs: 1000,
      idleMs: 1000,
      onData: (p) => void seen.push(text(p)),
    });
    assert.deepEqual([ok.status, seen.join(""), ok.body.length], [200, "abcd", 0]);
    const missing = await c.stream({
      target: "/error",
      timeoutMs: 1000,
      idleMs: 1000,
      onData: () => assert.fail(),
    });
    assert.deepEqual([missing.status, text(missing.body)], [404, "missing"]);
    class Mine extends Error {}
    await assert.rejects(
      c.stream({
        target: "/",
        timeoutMs: 1000,
        idleMs: 1000,
        onData: () => {
          throw new Mine("stop");
        },
      }),
      Mine,
    );
  } finally {
    c.close();
  }
});

Deno.test("http_client: TLS with a self-signed CA:TRUE certificate as CA, a wrong CA, insecure, and a client certificate", async () => {
  const server = https.createServer({
    cert: pem("server.pem"),
    key: pem("server.key"),
    ca: pem("ca.pem"),
    requestCert: true,
    rejectUnauthorized: false,
  }, (req, res) => {
    const socket = req.socket as unknown as { getPeerCertificate(): { subject?: { CN?: string } } };
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(socket.getPeerCertificate().subject?.CN ?? "anonymous");
  });
  const self = https.createServer({ cert: pem("self.pem"), key: pem("self.key") }, (_req, res) => {
    res.end("self");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => self.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const selfPort = (self.address() as { port: number }).port;
  const clients: HttpClient[] = [];
  const make = (p: number, options: HttpClientOptions) => {
    const c = client(p, options, "https");
    clients.push(c);
    return c;
  };
  try {
    const get = (c: HttpClient) =>
      c.request({ target: "/", timeoutMs: 2000 }).then((r) => text(r.body));
    assert.equal(await get(make(selfPort, { ca: pem("self.pem") })), "self");
    assert.equal(await get(make(selfPort, { insecure: true })), "self");
    assert.match(await failure(get(make(selfPort, { ca: pem("ca.pem") }))), /^tls: /);
    assert.match(await failure(get(make(selfPort, {}))), /^tls: /);
    assert.equal(await get(make(port, { ca: pem("ca.pem") })), "anonymous");
    const withCert = make(port, {
      ca: pem("ca.pem"),
      cert: pem("client.pem"),
      key: pem("client.key"),
      keepAlive: true,
    });
    assert.equal(await get(withCert), "localhost");
    assert.equal(await get(withCert), "localhost");
  } finally {
    for (const c of clients) c.close();
    server.closeAllConnections?.();
    self.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
    await new Promise((resolve) => self.close(resolve));
  }
});

/** The node: network modules a script loaded (from deno's debug log). */
async function nodeModulesLoaded(script: string): Promise<string[]> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, script);
    const { stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--log-level=debug", file],
      stdout: "null",
      stderr: "piped",
    }).output();
    return [...new Set(text(stderr).match(/node:(?:tls|net|https?)\b/g) ?? [])];
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("http_client: a plain-HTTP request loads no node: module; an https one loads node:tls", async () => {
  const script = (scheme: string) => `
    import { HttpClient } from "${new URL("../src/net/http_client.ts", import.meta.url).href}";
    const c = new HttpClient({ scheme: "${scheme}", host: "127.0.0.1", port: ${freePort()} });
    await c.request({ target: "/", timeoutMs: 2000 }).catch(() => {});
  `;
  assert.deepEqual(await nodeModulesLoaded(script("http")), []);
  assert.ok((await nodeModulesLoaded(script("https"))).includes("node:tls"));
});

Deno.test("http_client: https without a CA where the system's roots cannot be read is a clear 'tls' refusal", async () => {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      file,
      `import { HttpClient } from "${new URL("../src/net/http_client.ts", import.meta.url).href}";
      const c = new HttpClient({ scheme: "https", host: "127.0.0.1", port: ${freePort()} });
      await c.request({ target: "/", timeoutMs: 2000 }).catch((e) => console.log(e.failure, e.message));`,
    );
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-read", file],
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.match(
      text(stdout),
      /^tls TLS: no CA to trust: give the CA file, or allow reading the system's roots/,
    );
  } finally {
    await Deno.remove(file);
  }
});
