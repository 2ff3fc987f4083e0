// The accept loop and deadlines under both servers: back-off after accept errors, the deadline
// hook, the sweeper running only while connections are open, shutdown.
import assert from "node:assert/strict";
import { type Connection, Connections, type Transport } from "../src/net/connections.ts";
import { sleep } from "./support/glue.ts";

/** A loopback transport whose first `failures` accepts fail as EMFILE does. */
function failingTransport(failures: number): Transport & { attempts: number[] } {
  const inner = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const attempts: number[] = [];
  return {
    attempts,
    addr: inner.addr,
    close: () => inner.close(),
    accept() {
      attempts.push(performance.now());
      if (attempts.length <= failures) {
        return Promise.reject(new Error("Too many open files (os error 24)"));
      }
      return inner.accept();
    },
  };
}

/** Serves each connection by waiting until it is closed; `served` lists them. */
function holding(transport: Transport, options: { tickMs?: number; acceptMs?: number } = {}) {
  const served: Connection[] = [];
  const errors: Error[] = [];
  const conns = new Connections({
    transport,
    headTimeoutMs: options.acceptMs ?? 60_000,
    shortestWaitMs: options.tickMs ?? 20,
    onAcceptError: (e) => errors.push(e),
    serve: async (c) => {
      served.push(c);
      while (await c.conn.read(new Uint8Array(64)) !== null) { /* drop */ }
    },
  });
  return { conns, served, errors };
}

Deno.test("connections: accepting backs off after errors (10, 50, 100 ms ...), reports the first, and resumes", async () => {
  const transport = failingTransport(3);
  const { conns, served, errors } = holding(transport);
  try {
    const client = await Deno.connect({ hostname: "127.0.0.1", port: transport.addr.port });
    while (served.length === 0) await sleep(5);
    client.close();
    assert.equal(errors.length, 1, "one report per run of failures");
    assert.match(errors[0].message, /Too many open files/);
    // Three failures, the accept that served, and the one waiting now.
    assert.equal(transport.attempts.length, 5);
    const waits = transport.attempts.slice(1, 4).map((t, i) => t - transport.attempts[i]);
    for (const [i, least] of [10, 50, 100].entries()) {
      assert.ok(waits[i] >= least - 1, `wait ${i}: ${waits[i].toFixed(1)} ms`);
    }
  } finally {
    await conns.shutdown();
  }
});

Deno.test("connections: a passed deadline closes, or calls its hook once, with the deadline cleared", async () => {
  const transport = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { conns, served } = holding(transport, { acceptMs: 50 });
  try {
    const closed = await Deno.connect({ hostname: "127.0.0.1", port: transport.addr.port });
    while (served.length === 0) await sleep(5);
    const started = performance.now();
    assert.equal(await closed.read(new Uint8Array(8)).catch(() => null), null);
    assert.ok(performance.now() - started < 1000);
    closed.close();

    const hooked = await Deno.connect({ hostname: "127.0.0.1", port: transport.addr.port });
    while (served.length === 1) await sleep(5);
    const c = served[1];
    let calls = 0;
    c.onDeadline = () => calls++;
    c.deadline = conns.clock;
    while (calls === 0) await sleep(5);
    await sleep(60); // more sweeps: the hook is not called again, the connection stays open
    assert.deepEqual([calls, c.deadline, c.onDeadline, c.closed], [1, Infinity, undefined, false]);
    hooked.close();
  } finally {
    await conns.shutdown();
  }
});

Deno.test("connections: the one sweeper timer runs only while connections are open", async () => {
  const transport = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { conns, served } = holding(transport);
  try {
    assert.equal(conns.sweeping, false, "none before the first connection");
    const client = await Deno.connect({ hostname: "127.0.0.1", port: transport.addr.port });
    while (served.length === 0) await sleep(5);
    assert.equal(conns.sweeping, true);
    const before = conns.clock;
    await sleep(50);
    assert.ok(conns.clock > before, "the clock ticks");
    client.close();
    while (conns.connections > 0) await sleep(5);
    await sleep(50);
    assert.equal(conns.sweeping, false, "stopped once the last one closed");
    // A new connection after the pause starts from the time it is now, not the last tick.
    const idleSince = conns.clock;
    await sleep(100);
    const again = await Deno.connect({ hostname: "127.0.0.1", port: transport.addr.port });
    while (served.length === 1) await sleep(5);
    assert.ok(conns.clock - idleSince >= 99, "the clock moved on at accept");
    again.close();
  } finally {
    await conns.shutdown();
  }
  assert.equal(conns.sweeping, false);
});
