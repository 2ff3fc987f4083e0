// The one bind of every listener (src/net/listen.ts): HTTP, HTTPS with certificate rotation, agent
// checks; what a listener says of itself, a busy port refused, the log's words, shutdown; and the
// service's three slots moved by one reload.
import assert from "node:assert/strict";
import type { HealthResponse } from "../src/check/health.ts";
import { parseConfig } from "../src/config/config.ts";
import { Logger } from "../src/log.ts";
import { listen, type ListenSpec } from "../src/net/listen.ts";
import { Service } from "../src/service.ts";
import { agentCheck } from "./support/agent_client.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import {
  configText,
  connectClient,
  fixture,
  freePort,
  type Scheme,
  sleep,
  TLS_FRONTEND,
  tlsHandshake,
} from "./support/glue.ts";
import { concat } from "./support/tools.ts";

const OK: HealthResponse = { status: 200, headers: { "content-type": "text/plain" }, body: "ok" };
const pem = (name: string) => Deno.readTextFileSync(fixture(name));
const quiet = () => new Logger({ level: "error", write: () => {} });

/** An HTTP (or HTTPS, with the test certificate) spec on a free loopback port, answering `OK`. */
function httpSpec(scheme: Scheme, port = 0): ListenSpec {
  const tls = scheme === "https"
    ? { cert: pem("server.pem"), key: pem("server.key"), minVersion: "TLSv1.2" as const }
    : undefined;
  return { protocol: "http", host: "127.0.0.1", port, handle: () => OK, tls };
}

/** An agent spec on a free loopback port that replies `up #<line>`. */
function agentSpec(port = 0): ListenSpec {
  return { protocol: "agent", host: "127.0.0.1", port, handle: (req) => `up #${req.line}` };
}

/** Sends `GET /x` on `conn` and reads the response (head and Content-Length bytes); the connection stays open. */
async function ask(conn: Deno.Conn): Promise<string> {
  await conn.write(new TextEncoder().encode("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  for (;;) {
    const text = new TextDecoder().decode(concat(chunks));
    const head = text.indexOf("\r\n\r\n");
    const length = Number(text.match(/content-length: (\d+)/)?.[1]);
    if (head !== -1 && text.length >= head + 4 + length) return text;
    const n = await conn.read(buf);
    if (n === null) return text;
    chunks.push(buf.slice(0, n));
  }
}

/** Resolves once `listener.connections` is `n`. */
async function connectionsReach(listener: { connections: number }, n: number): Promise<void> {
  while (listener.connections !== n) await sleep(5);
}

for (const scheme of ["http", "https"] as const) {
  Deno.test(`listen: ${scheme} on a free port says its url, address and open connections; shutdown closes them and the port`, async () => {
    const listener = await listen(httpSpec(scheme), quiet());
    const conn = await connectClient(scheme, listener.port);
    try {
      assert.ok(listener.port > 0);
      assert.equal(listener.address, `127.0.0.1:${listener.port}`);
      assert.equal(listener.url, `${scheme}://127.0.0.1:${listener.port}`);
      assert.equal(listener.setTls !== undefined, scheme === "https");
      assert.match(await ask(conn), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok$/);
      await connectionsReach(listener, 1);
      await listener.shutdown();
      assert.equal(listener.connections, 0);
      assert.equal(await conn.read(new Uint8Array(16)).catch(() => null), null, "closed");
    } finally {
      conn.close();
      await listener.shutdown();
    }
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: listener.port }));
  });
}

Deno.test("listen: https serves a new certificate to the next handshakes, a connection open keeps its own", async () => {
  const listener = await listen(httpSpec("https"), quiet());
  const open = await connectClient("https", listener.port);
  try {
    listener.setTls!({ cert: pem("ec.pem"), key: pem("ec.key"), minVersion: "TLSv1.2" });
    await assert.rejects(connectClient("https", listener.port), "ca.pem no longer trusts it");
    const rotated = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: listener.port,
      caCerts: [pem("ec.pem")],
    });
    try {
      await rotated.handshake();
      assert.match(await ask(rotated), /\r\n\r\nok$/);
    } finally {
      rotated.close();
    }
    assert.match(await ask(open), /\r\n\r\nok$/);
  } finally {
    open.close();
    await listener.shutdown();
  }
});

Deno.test("listen: agent checks over TCP, with a tcp:// url, the address, open connections, shutdown", async () => {
  const listener = await listen(agentSpec(), quiet());
  try {
    assert.equal(listener.address, `127.0.0.1:${listener.port}`);
    assert.equal(listener.url, `tcp://127.0.0.1:${listener.port}`);
    assert.equal(listener.setTls, undefined);
    assert.equal((await agentCheck(listener.port, "/primary\n")).text, "up #/primary\n");
    const waiting = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
    try {
      await connectionsReach(listener, 1);
      await listener.shutdown();
      assert.equal(listener.connections, 0);
    } finally {
      waiting.close();
    }
  } finally {
    await listener.shutdown();
  }
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: listener.port }));
});

Deno.test("listen: a busy port is refused with 'cannot listen on HOST:PORT', for every kind", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = busy.addr.port;
  for (const spec of [httpSpec("http", port), httpSpec("https", port), agentSpec(port)]) {
    await assert.rejects(
      listen(spec, quiet()),
      (e: Error) => e.message.startsWith(`cannot listen on 127.0.0.1:${port}: `),
      spec.protocol,
    );
  }
});

Deno.test("listen: a handler that throws is logged in the words of its protocol", async () => {
  const lines: string[] = [];
  const log = new Logger({ level: "error", write: (line) => lines.push(line) });
  const boom = () => {
    throw new Error("boom");
  };
  const http = await listen({ protocol: "http", host: "127.0.0.1", port: 0, handle: boom }, log);
  const agent = await listen({ protocol: "agent", host: "127.0.0.1", port: 0, handle: boom }, log);
  try {
    const conn = await connectClient("http", http.port);
    try {
      await conn.write(new TextEncoder().encode("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"));
      assert.match(new TextDecoder().decode((await conn.readable.getReader().read()).value), /500/);
    } finally {
      conn.close();
    }
    assert.equal((await agentCheck(agent.port, "/primary\n")).text, "down #internal error\n");
    assert.deepEqual(lines.map((l) => l.replace(/^.*ERROR /, "")), [
      "request failed: boom",
      "agent check failed: boom",
    ]);
  } finally {
    await Promise.all([http.shutdown(), agent.shutdown()]);
  }
});

Deno.test("listen (service): a reload that moves the metrics listener to a busy port is refused, and the frontend it had rebound in place for HTTPS serves HTTP again", async () => {
  await using fake = await FakePatroni.start();
  const [http, metrics] = [freePort(), freePort()];
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const config = (frontend: string, metricsPort: number) =>
    parseConfig(
      configText(http, fake.port, {
        frontend,
        top: `metrics:\n  enabled: true\n  port: ${metricsPort}`,
      }),
      "test.yml",
    );
  const service = await Service.start(await config("", metrics), quiet(), "test");
  try {
    await assert.rejects(
      service.reload(await config(TLS_FRONTEND, busy.addr.port)),
      new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy.addr.port}`),
    );
    assert.equal(service.frontend.url, `http://127.0.0.1:${http}`);
    const conn = await connectClient("http", http);
    try {
      assert.match(await ask(conn), /^HTTP\/1\.1 404/, "the old frontend, over HTTP, answers");
    } finally {
      conn.close();
    }
    await service.reload(await config(TLS_FRONTEND, metrics));
    assert.equal(service.frontend.url, `https://127.0.0.1:${http}`);
  } finally {
    await service.stop();
  }
});

Deno.test("listen (service): an agent listener added by a reload that also rebinds the frontend in place answers its first check from the new config", async () => {
  await using fake = await FakePatroni.start();
  const [http, agentPort] = [freePort(), freePort()];
  const service = await Service.start(
    await parseConfig(configText(http, fake.port), "test.yml"),
    quiet(),
    "test",
  );
  // A check sent the moment the agent's port is bound, before the reload has returned.
  const bind = Deno.listen;
  let first: ReturnType<typeof agentCheck> | undefined;
  Deno.listen = ((options: Deno.TcpListenOptions) => {
    const listener = bind(options);
    if (options.port === agentPort) first = agentCheck(agentPort, "/primary\n");
    return listener;
  }) as typeof Deno.listen;
  try {
    await service.reload(
      await parseConfig(
        configText(http, fake.port, {
          frontend: TLS_FRONTEND,
          top: `agent:\n  port: ${agentPort}`,
        }),
        "test.yml",
      ),
    );
    assert.ok(first, "the agent's port was bound");
    assert.equal((await first).text, "up ready\n");
    assert.equal(service.frontend.url, `https://127.0.0.1:${http}`);
  } finally {
    Deno.listen = bind;
    await service.stop();
  }
});

Deno.test("listen (service): stop() during a reload waits for it and leaves nothing open", async () => {
  await using fake = await FakePatroni.start();
  const [http, metrics] = [freePort(), freePort()];
  const config = (frontend: string) =>
    parseConfig(
      configText(http, fake.port, {
        frontend,
        top: `metrics:\n  enabled: true\n  port: ${metrics}`,
      }),
      "test.yml",
    );
  const service = await Service.start(await config(""), quiet(), "test");
  const reloading = service.reload(await config(TLS_FRONTEND));
  await service.stop();
  await reloading;
  for (const port of [http, metrics]) {
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), `${port} closed`);
  }
});

for (const scheme of ["http", "https"] as const) {
  Deno.test(`listen (service): a reload that changes only tls-min-version keeps the ${scheme} frontend's port and its connections`, async () => {
    await using fake = await FakePatroni.start();
    const http = freePort();
    const frontend = scheme === "https" ? TLS_FRONTEND : "";
    const config = (version: string) =>
      parseConfig(
        configText(http, fake.port, { frontend: `${frontend}\n  tls-min-version: ${version}` }),
        "test.yml",
      );
    const service = await Service.start(await config("TLSv1.2"), quiet(), "test");
    const conn = await connectClient(scheme, http);
    try {
      assert.match(await ask(conn), /^HTTP\/1\.1 404/);
      await service.reload(await config("TLSv1.3"));
      assert.match(await ask(conn), /^HTTP\/1\.1 404/, "the connection open before is served on");
      if (scheme === "https") {
        assert.equal(await tlsHandshake(http, "TLSv1.2"), "refused");
        assert.equal(await tlsHandshake(http, "TLSv1.3"), "TLSv1.3");
      }
    } finally {
      conn.close();
      await service.stop();
    }
  });
}
