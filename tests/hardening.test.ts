// Hostile and broken input: stuck clients, malformed requests, backends that change certificates, log injection.
import assert from "node:assert/strict";
import { PatroniClient } from "../src/check/backend.ts";
import { escapeText, formatAccessLine } from "../src/log.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import {
  clientHello,
  configText,
  connectClient,
  fixture,
  freePort,
  GlueProcess,
  type Scheme,
  SCHEMES,
  sleep,
  spawnWithFileLimit,
  TLS_FRONTEND,
  writeConfig,
} from "./support/glue.ts";
import { send } from "./support/raw_server.ts";

async function exchange(
  scheme: Scheme,
  port: number,
  request: string,
  waitMs = 1000,
): Promise<string> {
  const conn = await connectClient(scheme, port);
  try {
    await send(conn, request);
    const buf = new Uint8Array(4096);
    const timer = setTimeout(() => conn.close(), waitMs);
    try {
      const n = await conn.read(buf);
      return new TextDecoder().decode(buf.subarray(0, n ?? 0));
    } catch {
      return "";
    } finally {
      clearTimeout(timer);
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

Deno.test("hardening: checks are answered while 2,000 connections sit idle, half-sent or dripping", async () => {
  await using fake = await FakePatroni.start();
  const port = freePort();
  const file = await writeConfig(configText(port, fake.port));
  await using glue = await GlueProcess.start(["-config", file]);
  const conns: Deno.Conn[] = [];
  const enc = new TextEncoder();
  try {
    for (let i = 0; i < 2000; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(conn);
      if (i % 3 === 1) await conn.write(enc.encode("GET /primary HTTP/1.1\r\nHost: x\r\n"));
    }
    const drip = setInterval(() => {
      for (let i = 2; i < conns.length; i += 3) {
        conns[i].write(enc.encode("X: y\r\n")).catch(() => {});
      }
    }, 200);
    const latencies: number[] = [];
    try {
      for (let i = 0; i < 100; i++) {
        const started = performance.now();
        const res = await fetch(`${glue.url}/primary`);
        await res.body?.cancel();
        assert.equal(res.status, 200);
        latencies.push(performance.now() - started);
      }
    } finally {
      clearInterval(drip);
    }
    latencies.sort((a, b) => a - b);
    console.log(
      `measure: checks with 2000 stuck connections: p50 ${latencies[50].toFixed(1)} ms, p99 ${
        latencies[98].toFixed(1)
      } ms`,
    );
    const rss = Deno.readTextFileSync(`/proc/${glue.pid}/status`).match(/VmRSS:\s+(\d+)/)![1];
    console.log(`measure: RSS with 2000 stuck connections: ${(Number(rss) / 1024).toFixed(0)} MiB`);
  } finally {
    for (const c of conns) c.close();
  }
  assert.doesNotMatch(glue.stderr, /ERROR/);
});

Deno.test("hardening: the runtime raises the open-file limit to the hard limit", async () => {
  const port = freePort();
  const file = await writeConfig(configText(port, freePort()));
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -Sn 256 && exec "$0" run -q -P main.ts -quiet -config "$1"`,
      Deno.execPath(),
      file,
    ],
    cwd: new URL("../", import.meta.url),
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch {
        await sleep(20);
      }
    }
    const limits = await Deno.readTextFile(`/proc/${child.pid}/limits`);
    const [soft, hard] = limits.match(/Max open files\s+(\S+)\s+(\S+)/)!.slice(1);
    assert.equal(soft, hard);
    assert.notEqual(soft, "256");
  } finally {
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
  }
});

Deno.test("hardening: malformed requests get a 4xx or a closed connection, never a 5xx or an error log", async (t) => {
  await using fake = await FakePatroni.start();
  for (const scheme of SCHEMES) {
    await t.step(scheme, async () => {
      fake.requests = 0;
      const port = freePort();
      const tls = scheme === "https" ? { frontend: TLS_FRONTEND } : {};
      const file = await writeConfig(configText(port, fake.port, tls));
      await using glue = await GlueProcess.start(["-config", file]);
      const cases: [string, RegExp][] = [
        ["GARBAGE\r\n\r\n", /^(HTTP\/1\.[01] 4\d\d|$)/],
        ["GET /primary HTTP/9.9\r\n\r\n", /^(HTTP\/1\.[01] 4\d\d|HTTP\/1\.[01] 505|$)/],
        ["GET /primary\r\n\r\n", /^(HTTP\/1\.[01] 4\d\d|$)/],
        ["GET /primary HTTP/1.1\r\nBad Header\r\n\r\n", /^(HTTP\/1\.[01] 4\d\d|$)/],
        [
          "GET /primary HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
          /^(HTTP\/1\.[01] 4\d\d|$)/,
        ],
        ["GET /primary HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", /^HTTP\/1\.1 413 /],
        [
          "GET /primary HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
          /^HTTP\/1\.1 413 /,
        ],
        [`GET /replica?lag=${"9".repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`, /^HTTP\/1\.1 414 /],
        [
          `GET /primary HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(200_000)}\r\n\r\n`,
          /^(HTTP\/1\.[01] 4\d\d|$)/,
        ],
        // HTTP/2 with prior knowledge (h2c) is not spoken: HTTP/1.0 and 1.1 only.
        ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", /^HTTP\/1\.1 400 /],
        ["CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", /^(HTTP\/1\.[01] 4\d\d|$)/],
        ["TRACE /primary HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1\.1 405 /],
        ["GET http://evil.example/../config HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1\.1 404 /],
        ["GET /primary?%zz=%%& HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1\.1 (200|400) /],
        ["\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", /^(HTTP\/1\.[01] 4\d\d|$)/],
      ];
      for (const [request, expected] of cases) {
        const reply = await exchange(scheme, port, request);
        assert.match(
          reply,
          expected,
          `${JSON.stringify(request.slice(0, 60))} -> ${reply.slice(0, 60)}`,
        );
      }
      using client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(fixture("ca.pem"))] });
      const res = await fetch(`${glue.url}/health`, { client });
      assert.equal(res.status, 200);
      await res.body?.cancel();
      assert.doesNotMatch(glue.stderr, /ERROR|Uncaught|panicked/);
      assert.equal(fake.requests, 1, "only the one well-formed check reached Patroni");
      // The absolute form (what a proxy sends) is a check like its origin form, over both schemes.
      const absolute = "GET http://patroni.example/primary HTTP/1.1\r\nHost: x\r\n\r\n";
      assert.match(await exchange(scheme, port, absolute), /^HTTP\/1\.1 200 /);
    });
  }
});

Deno.test("hardening: bad input on the TLS port: never a 200, never a crash, nothing logged at the default level", async () => {
  await using fake = await FakePatroni.start();
  const port = freePort();
  const file = await writeConfig(configText(port, fake.port, { frontend: TLS_FRONTEND }));
  await using glue = await GlueProcess.start(["-config", file]);
  const hello = await clientHello();
  const replies: string[] = [];
  const raw = async (bytes: Uint8Array, then: "read" | "close") => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(bytes).catch(() => 0);
    if (then === "close") return conn.close(); // unread bytes from the server: the kernel resets
    const buf = new Uint8Array(4096);
    const timer = setTimeout(() => conn.close(), 2000);
    try {
      const n = await conn.read(buf);
      replies.push(new TextDecoder("latin1").decode(buf.subarray(0, n ?? 0)));
    } catch { /* reset */ }
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  };
  for (let i = 0; i < 20; i++) {
    await raw(new TextEncoder().encode("GET /primary HTTP/1.1\r\nHost: x\r\n\r\n"), "read");
    await raw(crypto.getRandomValues(new Uint8Array(1 + i * 50)), "read");
    await raw(hello.subarray(0, 1 + i * 7), "close"); // a ClientHello cut short
    await raw(hello, "close"); // reset mid-handshake, the server's flight unread
    await assert.rejects(
      Deno.connectTls({
        hostname: "127.0.0.1",
        port,
        caCerts: [Deno.readTextFileSync(fixture("ec.pem"))], // not the issuer: refused
      }).then((c) => c.handshake().finally(() => c.close())),
    );
  }
  for (const reply of replies) assert.doesNotMatch(reply, /HTTP\/1\.[01] 200/);
  using client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(fixture("ca.pem"))] });
  const res = await fetch(`${glue.url}/primary`, { client });
  assert.equal(res.status, 200, "it still serves");
  await res.body?.cancel();
  const { code, stderr } = await glue.stop();
  assert.equal(code, 0);
  const lines = stderr.split("\n").filter(Boolean);
  assert.deepEqual(
    lines.map((l) => l.replace(/^\S+ /, "").replace(/ .*/, "")),
    ["NOTICE", "NOTICE", "NOTICE"],
    `only the start and stop lines:\n${stderr}`,
  );
});

Deno.test("hardening: a backend whose certificate changes between requests is checked again", async () => {
  const pem = (name: string) => Deno.readTextFileSync(fixture(name));
  const port = freePort();
  const client = new PatroniClient({
    host: "127.0.0.1",
    port,
    scheme: "https",
    insecure: false,
    timeout: 1,
    ca: { pem: pem("ca.pem") },
  });
  try {
    const trusted = await FakePatroni.start({
      port,
      tls: { cert: pem("server.pem"), key: pem("server.key") },
    });
    const first = await client.fetchPatroniStatus("/primary");
    assert.equal(first.ok && first.status, 200, JSON.stringify(first));
    await trusted.close();
    const impostor = await FakePatroni.start({
      port,
      tls: { cert: pem("self.pem"), key: pem("self.key") },
    });
    const second = await client.fetchPatroniStatus("/primary");
    assert.equal(second.ok, false);
    assert.equal(!second.ok && second.failure, "tls");
    assert.equal(impostor.requests, 0);
    await impostor.close();
  } finally {
    client.close();
  }
});

Deno.test("hardening: client text is escaped in log lines", () => {
  assert.equal(escapeText("a\r\nb\x1b[31m\\ é"), "a\\x0d\\x0ab\\x1b[31m\\\\ \\xe9");
  const line = formatAccessLine("%a %m %U %s %D %C %%", {
    remote: "127.0.0.1:5",
    method: "GET",
    uri: "/primary?x=\n2026-01-01T00:00:00Z ERROR forged",
    status: 200,
    durationMs: 1.25,
    cache: "hit",
  });
  assert.equal(
    line,
    "127.0.0.1:5 GET /primary?x=\\x0a2026-01-01T00:00:00Z ERROR forged 200 1.3 hit %",
  );
  assert.ok(!line.includes("\n"));
});

Deno.test("hardening: after a flood past the open-file limit, the frontend accepts again", async (t) => {
  await using fake = await FakePatroni.start();
  const ca = Deno.readTextFileSync(fixture("ca.pem"));
  for (const scheme of ["http", "https"] as const) {
    await t.step(scheme, async () => {
      const port = freePort();
      const tls = scheme === "https"
        ? { frontend: `  certfile: ${fixture("server.pem")}\n  keyfile: ${fixture("server.key")}` }
        : {};
      const file = await writeConfig(configText(port, fake.port, tls));
      const { child, stderr } = spawnWithFileLimit(file, 200);
      // A new connection each time: a kept-alive one would hide a listener that stopped accepting.
      const check = async () => {
        using client = Deno.createHttpClient({ caCerts: [ca], poolMaxIdlePerHost: 0 });
        try {
          const res = await fetch(`${scheme}://localhost:${port}/health`, {
            client,
            signal: AbortSignal.timeout(2000),
          });
          await res.body?.cancel();
          return res.status;
        } catch {
          return 0;
        }
      };
      const flood: Deno.Conn[] = [];
      try {
        while (await check() !== 200) await sleep(50);
        try {
          for (let i = 0; i < 400; i++) {
            flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
          }
        } catch { /* refused once the listener gave up: that is the failure being recovered */ }
        const during = await check();
        for (const c of flood.splice(0, flood.length - 50)) c.close();
        const started = performance.now();
        let status = 0;
        while (status !== 200 && performance.now() - started < 20_000) {
          status = await check();
          if (status !== 200) await sleep(200);
        }
        console.log(
          `measure: ${scheme}: a check during the flood: ${
            during || "no answer"
          }; accepting again ${(performance.now() - started).toFixed(0)} ms after it`,
        );
        assert.equal(status, 200, "the frontend never accepted again");
      } finally {
        for (const c of flood) c.close();
        child.kill("SIGTERM");
        assert.equal((await child.status).code, 0);
        assert.doesNotMatch(await stderr, /panicked|Uncaught/);
      }
    });
  }
});
