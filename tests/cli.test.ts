// Black-box tests: main.ts as users run it, against the simulated Patroni.
import assert from "node:assert/strict";
import { HAS_OPENSSL } from "./support/tools.ts";
import denoJson from "../deno.json" with { type: "json" };
import { FakePatroni } from "./support/fake_patroni.ts";
import {
  configText,
  fixture,
  freePort,
  GlueProcess,
  runGlue,
  sleep,
  writeConfig,
} from "./support/glue.ts";
import { send } from "./support/raw_server.ts";
import { V8_FLAGS } from "../packaging/build.ts";

async function startGlue(
  fake: FakePatroni,
  extra: Parameters<typeof configText>[2] = {},
  flags: string[] = [],
): Promise<GlueProcess> {
  const port = freePort();
  const file = await writeConfig(configText(port, fake.port, extra));
  return await GlueProcess.start(
    ["-config", file, ...flags],
    flags.includes("-quiet") ? port : undefined,
  );
}

async function get(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

Deno.test("cli: -version prints the version from deno.json", async () => {
  const { code, stdout } = await runGlue(["-version"]);
  assert.equal(code, 0);
  assert.equal(stdout, `${denoJson.version}\n`);
});

Deno.test("cli: -help prints usage on stderr and exits 0", async () => {
  const { code, stdout, stderr } = await runGlue(["--help"]);
  assert.equal(code, 0);
  assert.equal(stdout, "");
  assert.match(stderr, /^Usage of patroniglue:\n {2}-check-config\n/);
});

Deno.test("cli: an unknown flag or a missing value exits 2 with usage", async () => {
  const unknown = await runGlue(["-prot", "80"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^flag provided but not defined: -prot\nUsage of patroniglue:/);
  const missing = await runGlue(["-config"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^flag needs an argument: -config\n/);
});

Deno.test("cli: a bad config refuses to start with exit 1, naming file, key and reason", async () => {
  const file = await writeConfig("frontend:\n  port: 70000\n  prot: 1\n");
  const { code, stderr } = await runGlue(["-config", file]);
  assert.equal(code, 1);
  assert.ok(
    stderr.includes(
      `ERROR cannot start: ${file}:2:9: frontend.port: must be an integer from 1 to 65535: got 70000`,
    ),
    stderr,
  );
  assert.ok(
    stderr.includes(`${file}:3:3: unknown key 'frontend.prot' (did you mean 'port'?)`),
    stderr,
  );
  const missing = await runGlue(["-config", "/nonexistent.yml"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot start: \/nonexistent\.yml: cannot read configuration file/);
});

Deno.test("cli: a port in use refuses to start with exit 1", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const file = await writeConfig(configText(busy.addr.port, 1));
  const { code, stderr } = await runGlue(["-config", file]);
  assert.equal(code, 1);
  assert.match(stderr, /ERROR cannot start: .*(in use|AddrInUse)/i);
});

Deno.test("cli: -check-config says OK or lists every problem, without binding", async () => {
  const good = await runGlue(["-check-config", "-config", "config.yml.example"]);
  assert.deepEqual([good.code, good.stdout], [0, "configuration OK\n"]);
  const file = await writeConfig("backend:\n  scheme: ftp\ncache:\n  ttl: -1\n");
  const bad = await runGlue(["-check-config", "-config", file]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /backend\.scheme: must be one of http, https/);
  assert.match(bad.stderr, /cache\.ttl: must be at least 0/);
});

Deno.test("cli: log levels: one startup line by default, access log with -verbose, nothing with -quiet", async () => {
  await using fake = await FakePatroni.start();
  const plain = await startGlue(fake);
  await get(`${plain.url}/primary`);
  const quietRun = await plain.stop();
  assert.equal(quietRun.code, 0);
  const lines = quietRun.stderr.split("\n").filter(Boolean);
  assert.match(
    lines[0],
    /^\d{4}-\d\d-\d\dT[\d:.]+Z NOTICE patroniglue .* listening on http:\/\/127\.0\.0\.1:\d+, checking http:\/\/127\.0\.0\.1:\d+/,
  );
  assert.ok(!quietRun.stderr.includes("GET /primary"));

  const verbose = await startGlue(fake, { frontend: '  logformat: "%a %m %U %s %C"' }, [
    "-verbose",
  ]);
  await get(`${verbose.url}/primary?x=%0d%0aFAKE`);
  const v = await verbose.stop();
  assert.match(v.stderr, /INFO 127\.0\.0\.1:\d+ GET \/primary\?x=%0d%0aFAKE 200 miss/);

  const debug = await startGlue(fake, {}, ["-debug"]);
  await get(`${debug.url}/replica`);
  assert.match((await debug.stop()).stderr, /DEBUG cache key=\/replica result=miss status=503/);

  const quiet = await startGlue(fake, {}, ["-quiet", "-verbose"]);
  await get(`${quiet.url}/primary`);
  assert.equal((await quiet.stop()).stderr.trim(), "");
});

Deno.test("cli: checks are forwarded with status, body and cache headers", async () => {
  await using fake = await FakePatroni.start({ role: "replica" });
  await using glue = await startGlue(fake, { cache: "  ttl: 5" });
  const first = await get(`${glue.url}/replica?tag_zone=a&lag=10MB`);
  fake.tags = { zone: "a" };
  const second = await get(`${glue.url}/replica?lag=10MB&tag_zone=a`);
  assert.equal(first.status, 503);
  assert.deepEqual(
    [second.status, second.headers.get("x-cache"), second.headers.get("content-type")],
    [503, "HIT", "application/json"],
  );
  assert.equal(second.headers.get("age"), "0");
  assert.equal(JSON.parse(first.body).role, "replica");
  assert.equal(fake.count("/replica?lag=10MB&tag_zone=a"), 1);

  const head = await fetch(`${glue.url}/read-only`, { method: "HEAD" });
  assert.deepEqual([head.status, head.headers.get("x-cache"), await head.text()], [
    200,
    "MISS",
    "",
  ]);
  const options = await get(`${glue.url}/read-only`, { method: "OPTIONS" });
  assert.deepEqual([options.status, options.headers.get("x-cache"), options.body], [
    200,
    "HIT",
    "",
  ]);
  assert.equal(fake.count("/read-only"), 1);
});

Deno.test("cli: with the V8 flags of `deno task start` and the binary, it starts and answers", async () => {
  await using fake = await FakePatroni.start();
  const file = await writeConfig(configText(freePort(), fake.port));
  await using glue = await GlueProcess.start(["-config", file], undefined, [V8_FLAGS]);
  const res = await get(`${glue.url}/primary`);
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body).role, "master");
});

Deno.test("cli: /health, 404, 405 with Allow, and nothing else reaches Patroni", async () => {
  await using fake = await FakePatroni.start();
  await using glue = await startGlue(fake);
  assert.deepEqual(await get(`${glue.url}/health`).then((r) => [r.status, JSON.parse(r.body)]), [
    200,
    { healthy: true },
  ]);
  for (
    const [method, path] of [["POST", "/failover"], ["GET", "/config"], ["GET", "/patroni"], [
      "DELETE",
      "/switchover",
    ]]
  ) {
    assert.equal((await get(`${glue.url}${path}`, { method })).status, 404, `${method} ${path}`);
  }
  const post = await get(`${glue.url}/primary`, { method: "POST", body: "" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD, OPTIONS");
  assert.equal(fake.requests, 0);
});

Deno.test("cli: HAProxy's bare httpchk (HTTP/1.0, no Host header) works", async () => {
  await using fake = await FakePatroni.start();
  await using glue = await startGlue(fake);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(glue.url).port) });
  await send(conn, "OPTIONS / HTTP/1.0\r\n\r\n");
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf);
  assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.[01] 200 OK\r\n/);
});

Deno.test("cli: single flight: 50 concurrent cold requests make one backend request", async () => {
  await using fake = await FakePatroni.start({ delayMs: 200 });
  await using glue = await startGlue(fake);
  const answers = await Promise.all(
    Array.from({ length: 50 }, () => get(`${glue.url}/primary`)),
  );
  assert.ok(answers.every((a) => a.status === 200));
  assert.equal(fake.count("/primary"), 1);
  const kinds = answers.map((a) => a.headers.get("x-cache"));
  assert.equal(kinds.filter((k) => k === "MISS").length, 1);
  assert.equal(kinds.filter((k) => k === "COALESCED").length, 49);
});

Deno.test("cli: after a demotion, /primary turns 503 within ttl", async () => {
  await using fake = await FakePatroni.start();
  await using glue = await startGlue(fake, { cache: "  ttl: 0.5" });
  assert.equal((await get(`${glue.url}/primary`)).status, 200);
  fake.role = "replica";
  const demoted = performance.now();
  await sleep(550);
  const after = await get(`${glue.url}/primary`);
  assert.equal(after.status, 503, `still 200 ${performance.now() - demoted} ms after the demotion`);
});

Deno.test("cli: a frozen Patroni: every check is a 503 within the timeout, one backend request", async () => {
  await using fake = await FakePatroni.start();
  fake.freeze();
  await using glue = await startGlue(fake, { backend: "  timeout: 0.5", cache: "  ttl: 5" });
  const started = performance.now();
  const answers = await Promise.all(Array.from({ length: 20 }, () => get(`${glue.url}/primary`)));
  const took = performance.now() - started;
  assert.ok(
    answers.every((a) =>
      a.status === 503 && /no answer within 0.5s/.test(JSON.parse(a.body).error)
    ),
  );
  assert.ok(took < 3000, `took ${took} ms`);
  const cached = await get(`${glue.url}/primary`);
  assert.deepEqual([cached.status, cached.headers.get("x-cache")], [503, "HIT"]);
  assert.equal(fake.requests, 1);
});

Deno.test("cli: a dead Patroni is a 503 with the reason", async () => {
  const port = freePort();
  const file = await writeConfig(configText(freePort(), port));
  await using glue = await GlueProcess.start(["-config", file]);
  const answer = await get(`${glue.url}/primary`);
  assert.equal(answer.status, 503);
  assert.match(JSON.parse(answer.body).error, /connection refused/);
});

Deno.test({
  name: "cli: HTTPS frontend; tls-min-version TLSv1.3 refuses a TLS 1.2 client",
  ignore: !HAS_OPENSSL,
}, async (t) => {
  await using fake = await FakePatroni.start();
  const tls = `  certfile: ${fixture("server.pem")}\n  keyfile: ${fixture("server.key")}\n`;
  const handshake = async (port: number, version: string) => {
    const out = await new Deno.Command("openssl", {
      args: ["s_client", "-connect", `127.0.0.1:${port}`, version, "-CAfile", fixture("ca.pem")],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout);
  };
  await t.step("TLSv1.2 minimum (the default) accepts TLS 1.2 and 1.3", async () => {
    await using glue = await startGlue(fake, { frontend: tls });
    assert.match(glue.url, /^https:/);
    const port = Number(new URL(glue.url).port);
    assert.match(await handshake(port, "-tls1_2"), /Protocol\s*:\s*TLSv1\.2/);
    assert.match(await handshake(port, "-tls1_3"), /New, TLSv1\.3/);
    const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(fixture("ca.pem"))] });
    try {
      const res = await fetch(`https://localhost:${port}/primary`, { client });
      assert.deepEqual([res.status, JSON.parse(await res.text()).role], [200, "master"]);
    } finally {
      client.close();
    }
  });
  await t.step("TLSv1.3 minimum refuses TLS 1.2", async () => {
    await using glue = await startGlue(fake, { frontend: tls + "  tls-min-version: TLSv1.3\n" });
    const port = Number(new URL(glue.url).port);
    assert.doesNotMatch(await handshake(port, "-tls1_2"), /Cipher is ECDHE/);
    assert.match(await handshake(port, "-tls1_3"), /New, TLSv1\.3/);
  });
});

Deno.test("cli: SIGTERM and SIGINT stop it promptly, cancelling backend requests, exit 0", async () => {
  await using fake = await FakePatroni.start();
  fake.freeze();
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const glue = await startGlue(fake, { backend: "  timeout: 60" });
    const pending = fetch(`${glue.url}/primary`).then(
      async (r) => (await r.body?.cancel(), r.status),
      () => "closed",
    );
    while (fake.requests === 0) await sleep(10);
    const started = performance.now();
    const { code, stderr } = await glue.stop(signal);
    assert.equal(code, 0, stderr);
    assert.ok(performance.now() - started < 5000);
    assert.match(stderr, new RegExp(`${signal}: shutting down`));
    assert.ok(["closed", 503].includes(await pending));
    fake.requests = 0;
  }
});

Deno.test("cli: HTTPS to Patroni with a self-signed cafile, or insecure", async (t) => {
  const pem = (name: string) => Deno.readTextFileSync(fixture(name));
  await using fake = await FakePatroni.start({
    tls: { cert: pem("self.pem"), key: pem("self.key") },
  });
  for (
    const [name, backend, status] of [
      ["cafile: the self-signed certificate", `  cafile: ${fixture("self.pem")}`, 200],
      ["insecure", "  insecure: true", 200],
      ["cafile: another CA", `  cafile: ${fixture("ca.pem")}`, 503],
      ["the system's roots (no cafile)", "", 503],
    ] as const
  ) {
    await t.step(name, async () => {
      await using glue = await startGlue(fake, {
        backend: `  scheme: https\n  timeout: 1\n${backend}`,
      });
      const answer = await get(`${glue.url}/primary`);
      assert.equal(answer.status, status, answer.body);
      if (status === 503) assert.match(JSON.parse(answer.body).error, /^TLS: /);
    });
  }
});
