import assert from "node:assert/strict";
import https from "node:https";
import {
  type BackendOutcome,
  MAX_BACKEND_SOCKETS,
  MAX_BODY_BYTES,
  memberFactsOf,
  PatroniClient,
} from "../src/check/backend.ts";
import type { BackendConfig } from "../src/config/config.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { fixture, freePort, sleep } from "./support/glue.ts";
import { rawServer, send } from "./support/raw_server.ts";

const pem = (name: string) => Deno.readTextFileSync(fixture(name));

function client(port: number, extra: Partial<BackendConfig> = {}): PatroniClient {
  return new PatroniClient({
    host: "127.0.0.1",
    port,
    scheme: "http",
    insecure: false,
    timeout: 1,
    ...extra,
  });
}

function failure(outcome: BackendOutcome): string {
  assert.equal(outcome.ok, false, JSON.stringify(outcome));
  return outcome.ok ? "" : `${outcome.failure}: ${outcome.error}`;
}

Deno.test("backend: Patroni's status and JSON body come back as they are", async () => {
  await using fake = await FakePatroni.start();
  const c = client(fake.port);
  try {
    const primary = await c.fetchPatroniStatus("/primary");
    assert.equal(primary.ok && primary.status, 200);
    assert.equal(primary.ok && JSON.parse(primary.body).role, "master");
    assert.deepEqual(primary.ok && primary.member, {
      role: "master",
      state: "running",
      timeline: 1,
    });
    const replica = await c.fetchPatroniStatus("/replica?lag=10MB");
    assert.equal(replica.ok && replica.status, 503);
    assert.equal(fake.count("/replica?lag=10MB"), 1);
  } finally {
    c.close();
  }
});

Deno.test("backend: member facts come from a JSON object with a string role and state", () => {
  const cases: [unknown, unknown][] = [
    [{ state: "running", role: "replica", timeline: 3, xlog: {} }, {
      role: "replica",
      state: "running",
      timeline: 3,
    }],
    [{ state: "stopped", role: "uninitialized" }, { role: "uninitialized", state: "stopped" }],
    [{ state: "running", role: "master", timeline: "3" }, { role: "master", state: "running" }],
    [{ role: "master" }, undefined],
    [{ role: 1, state: "running" }, undefined],
    [[1], undefined],
    [null, undefined],
    ["running", undefined],
  ];
  for (const [value, facts] of cases) assert.deepEqual(memberFactsOf(value), facts);
});

Deno.test("backend: a check that timed out is sent once, even after earlier answers", async () => {
  await using fake = await FakePatroni.start();
  const c = client(fake.port, { timeout: 0.3 });
  try {
    for (let i = 0; i < 3; i++) await c.fetchPatroniStatus("/primary");
    fake.freeze();
    const before = fake.requests;
    for (let i = 0; i < 3; i++) {
      assert.match(failure(await c.fetchPatroniStatus("/primary")), /^timeout/);
    }
    await sleep(500);
    assert.equal(fake.requests - before, 3, "one backend GET per timed-out check");
  } finally {
    c.close();
  }
});

Deno.test("backend: a refused connection is a 'refused' failure", async () => {
  const c = client(freePort());
  try {
    assert.match(failure(await c.fetchPatroniStatus("/primary")), /^refused: /);
  } finally {
    c.close();
  }
});

Deno.test("backend: a frozen Patroni is a 'timeout' failure after backend.timeout", async () => {
  await using fake = await FakePatroni.start();
  fake.freeze();
  const c = client(fake.port, { timeout: 0.3 });
  try {
    const started = performance.now();
    assert.match(
      failure(await c.fetchPatroniStatus("/primary")),
      /^timeout: no answer within 0.3s/,
    );
    const took = performance.now() - started;
    assert.ok(took >= 290 && took < 1500, `took ${took} ms`);
  } finally {
    c.close();
  }
});

Deno.test("backend: close() cancels requests in flight at once", async () => {
  await using fake = await FakePatroni.start();
  fake.freeze();
  const c = client(fake.port, { timeout: 30 });
  const pending = c.fetchPatroniStatus("/primary");
  while (fake.requests === 0) await sleep(5);
  c.close();
  assert.match(failure(await pending), /shutting down/);
  assert.equal(c.inFlight, 0);
});

Deno.test("backend: malformed answers are 'invalid' failures", async (t) => {
  const cases: [string, (conn: Deno.Conn) => Promise<void>, RegExp][] = [
    ["garbage", (c) => send(c, "SSH-2.0-OpenSSH\r\n\r\n"), /^(invalid|error): /],
    [
      "not JSON",
      (c) => send(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
      /^invalid: answer is not JSON/,
    ],
    [
      "a redirect, never followed",
      (c) =>
        send(c, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"),
      /^invalid: unexpected status 302 \(redirects are not followed\)/,
    ],
    [
      "another status",
      (c) => send(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}"),
      /^invalid: unexpected status 401/,
    ],
    [
      "a partial body",
      (c) => send(c, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"role":'),
      /^(invalid|error): /,
    ],
    [
      "an endless body",
      async (c) => {
        await send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        const chunk = `4000\r\n${"x".repeat(0x4000)}\r\n`;
        for (let sent = 0; sent < 4 * MAX_BODY_BYTES; sent += 0x4000) await send(c, chunk);
      },
      /^invalid: answer larger than/,
    ],
  ];
  for (const [name, script, expected] of cases) {
    await t.step(name, async () => {
      await using server = rawServer((conn) => script(conn));
      const c = client(server.port);
      try {
        assert.match(failure(await c.fetchPatroniStatus("/primary")), expected);
      } finally {
        c.close();
      }
    });
  }
});

Deno.test("backend: HTTP/1.0 without Content-Length, closed to end the body (what Patroni sends)", async () => {
  await using server = rawServer(async (conn, request) => {
    assert.match(request, /^GET \/replica\?lag=1MB HTTP\/1\.1\r\n/);
    await send(
      conn,
      'HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{"role":"master"}',
    );
  });
  const c = client(server.port);
  try {
    const outcome = await c.fetchPatroniStatus("/replica?lag=1MB");
    assert.deepEqual(outcome, { ok: true, status: 503, body: '{"role":"master"}' });
  } finally {
    c.close();
  }
});

Deno.test("backend: answers framed by Content-Length or chunked, in pieces, with a Host header", async (t) => {
  const cases: [string, string[], string][] = [
    [
      "Content-Length, in pieces",
      ["HTTP/1.1 200 OK\r\nContent-Le", 'ngth: 8\r\n\r\n{"a":', "12}"],
      '{"a":12}',
    ],
    [
      "chunked",
      [
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n',
        "3;x=1\r\n:1}\r\n0\r\n\r\n",
      ],
      '{"a":1}',
    ],
    ["empty body", ["HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"], ""],
  ];
  for (const [name, pieces, body] of cases) {
    await t.step(name, async () => {
      let host = "";
      await using server = rawServer(async (conn, request) => {
        host = request.match(/^Host: (.*)\r$/m)?.[1] ?? "";
        for (const piece of pieces) {
          await send(conn, piece);
          await sleep(10);
        }
      });
      const c = client(server.port);
      try {
        const outcome = await c.fetchPatroniStatus("/primary");
        assert.equal(outcome.ok && outcome.body, body, JSON.stringify(outcome));
        assert.equal(host, `127.0.0.1:${server.port}`);
      } finally {
        c.close();
      }
    });
  }
  await t.step("a connection closed without an answer", async () => {
    await using server = rawServer(async () => {});
    const c = client(server.port);
    try {
      assert.match(
        failure(await c.fetchPatroniStatus("/primary")),
        /^error: no answer \(connection closed\)/,
      );
    } finally {
      c.close();
    }
  });
});

Deno.test("backend: HTTPS with a self-signed cafile (CA:TRUE leaf), a CA, insecure, and a wrong CA", async (t) => {
  const cases: [string, string, Partial<BackendConfig>, boolean][] = [
    ["self-signed certificate as cafile", "self", {
      ca: { cafile: "self.pem", pem: pem("self.pem") },
    }, true],
    ["CA-signed certificate with the CA", "server", {
      ca: { cafile: "ca.pem", pem: pem("ca.pem") },
    }, true],
    ["insecure", "self", { insecure: true }, true],
    ["wrong CA", "server", { ca: { cafile: "self.pem", pem: pem("self.pem") } }, false],
    ["no CA (system roots)", "self", {}, false],
  ];
  for (const [name, cert, extra, succeeds] of cases) {
    await t.step(name, async () => {
      await using fake = await FakePatroni.start({
        tls: { cert: pem(`${cert}.pem`), key: pem(`${cert}.key`) },
      });
      const c = client(fake.port, { scheme: "https", ...extra });
      try {
        const outcome = await c.fetchPatroniStatus("/primary");
        if (succeeds) assert.equal(outcome.ok && outcome.status, 200, JSON.stringify(outcome));
        else assert.match(failure(outcome), /^tls: /);
      } finally {
        c.close();
      }
    });
  }
});

Deno.test("backend: a client certificate for Patroni's verify_client: required", async () => {
  const server = https.createServer({
    cert: pem("server.pem"),
    key: pem("server.key"),
    ca: pem("ca.pem"),
    requestCert: true,
    rejectUnauthorized: true,
  }, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"role":"master"}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const ca = { cafile: "ca.pem", pem: pem("ca.pem") };
  const withCert = client(port, {
    scheme: "https",
    ca,
    client: {
      certfile: "client.pem",
      keyfile: "client.key",
      cert: pem("client.pem"),
      key: pem("client.key"),
      keyKind: "rsa",
    },
  });
  const without = client(port, { scheme: "https", ca });
  try {
    const ok = await withCert.fetchPatroniStatus("/primary");
    assert.equal(ok.ok && ok.status, 200, JSON.stringify(ok));
    assert.equal((await without.fetchPatroniStatus("/primary")).ok, false);
  } finally {
    withCert.close();
    without.close();
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  }
});

Deno.test("backend: more concurrent requests than sockets still settle within the timeout", async () => {
  await using fake = await FakePatroni.start();
  fake.freeze();
  const c = client(fake.port, { timeout: 0.3 });
  try {
    const guard = Promise.withResolvers<"stuck">();
    const timer = setTimeout(() => guard.resolve("stuck"), 5000);
    const all = Promise.all(
      Array.from(
        { length: 3 * MAX_BACKEND_SOCKETS },
        (_, i) => c.fetchPatroniStatus(`/replica?lag=${i}`),
      ),
    );
    const outcomes = await Promise.race([all, guard.promise]);
    clearTimeout(timer);
    assert.notEqual(outcomes, "stuck", "requests queued for a socket never settled");
    assert.ok((outcomes as BackendOutcome[]).every((o) => !o.ok && o.failure === "timeout"));
    fake.thaw();
    const after = await c.fetchPatroniStatus("/primary");
    assert.equal(after.ok && after.status, 200);
  } finally {
    c.close();
  }
});
