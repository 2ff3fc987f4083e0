// Operating it: metrics, SIGHUP reload, certificate rotation, JSON logs, bounded logging.
import assert from "node:assert/strict";
import { HAS_OPENSSL, hasProgram } from "./support/tools.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { configText, fixture, freePort, GlueProcess, sleep, writeConfig } from "./support/glue.ts";
import { parseExposition, sampleValue } from "./support/prometheus.ts";

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

Deno.test("metrics: counters after known traffic, in valid exposition format", async () => {
  await using fake = await FakePatroni.start();
  const file = await writeConfig(configText(freePort(), fake.port));
  await using glue = await GlueProcess.start(["-config", file]);
  for (let i = 0; i < 3; i++) await get(`${glue.url}/primary`);
  await get(`${glue.url}/replica?lag=1MB`, { method: "HEAD" });
  await get(`${glue.url}/nope`);
  await get(`${glue.url}/health`);
  const res = await get(`${glue.url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const { samples, types } = parseExposition(res.body);
  const req = "patroniglue_requests_total";
  assert.equal(types.get(req), "counter");
  assert.equal(
    sampleValue(samples, req, { route: "/primary", method: "GET", status: "200", cache: "miss" }),
    1,
  );
  assert.equal(
    sampleValue(samples, req, { route: "/primary", method: "GET", status: "200", cache: "hit" }),
    2,
  );
  assert.equal(
    sampleValue(samples, req, { route: "/replica", method: "HEAD", status: "503", cache: "miss" }),
    1,
  );
  assert.equal(sampleValue(samples, req, { route: "other", status: "404", cache: "local" }), 1);
  assert.equal(sampleValue(samples, req, { route: "/health", status: "200" }), 1);
  const backend = "patroniglue_backend_requests_total";
  assert.equal(sampleValue(samples, backend, { route: "/primary", outcome: "ok" }), 1);
  assert.equal(sampleValue(samples, backend, { route: "/replica", outcome: "ok" }), 1);
  assert.equal(types.get("patroniglue_backend_request_duration_seconds"), "histogram");
  assert.equal(sampleValue(samples, "patroniglue_backend_request_duration_seconds_count"), 2);
  assert.equal(
    sampleValue(samples, "patroniglue_backend_request_duration_seconds_bucket", { le: "+Inf" }),
    2,
  );
  assert.equal(sampleValue(samples, "patroniglue_cache_entries"), 2);
  assert.equal(sampleValue(samples, "patroniglue_backend_requests_in_flight"), 0);
  assert.equal(sampleValue(samples, "patroniglue_backend_up"), 1);
  assert.ok(sampleValue(samples, "process_start_time_seconds")! > 1.7e9);
  assert.equal(sampleValue(samples, "patroniglue_build_info", { version: "0.1.0" }), 1);
  assert.equal(fake.count("/metrics"), 0, "/metrics never reaches Patroni");
});

Deno.test("metrics: refreshes ahead and invalidations, after a role change under steady checks", async () => {
  await using fake = await FakePatroni.start({ delayMs: 20 });
  const file = await writeConfig(configText(freePort(), fake.port));
  await using glue = await GlueProcess.start(["-config", file]);
  const scrape = async () => parseExposition((await get(`${glue.url}/metrics`)).body).samples;
  const ahead = (samples: ReturnType<typeof parseExposition>["samples"]) =>
    sampleValue(samples, "patroniglue_cache_refreshes_ahead_total", { route: "/primary" }) ?? 0;
  const ended = (samples: ReturnType<typeof parseExposition>["samples"]) =>
    (sampleValue(samples, "patroniglue_cache_invalidations_total", { route: "/replica" }) ?? 0) +
    (sampleValue(samples, "patroniglue_cache_invalidations_total", { route: "/primary" }) ?? 0);
  const statuses = async () => [
    (await get(`${glue.url}/primary`)).status,
    (await get(`${glue.url}/replica`)).status,
  ];
  const deadline = Date.now() + 10_000;
  // Steady checks of both routes (as HAProxy's two backends) until a refresh ahead has happened.
  while (ahead(await scrape()) === 0) {
    assert.ok(Date.now() < deadline, "no refresh ahead within 10 s");
    assert.deepEqual(await statuses(), [200, 503]);
    await sleep(50);
  }
  fake.role = "replica";
  // The first refresh that sees the new role ends the other route's entry.
  while (ended(await scrape()) === 0) {
    assert.ok(Date.now() < deadline, "no invalidation within 10 s");
    await sleep(50);
  }
  assert.deepEqual(await statuses(), [503, 200]);
  assert.equal(fake.count("/patroni"), 0);
});

Deno.test("metrics: backend failures by outcome, and the error cache result", async () => {
  const file = await writeConfig(configText(freePort(), freePort()));
  await using glue = await GlueProcess.start(["-config", file]);
  await get(`${glue.url}/primary`);
  await get(`${glue.url}/primary`);
  const { samples } = parseExposition((await get(`${glue.url}/metrics`)).body);
  assert.equal(
    sampleValue(samples, "patroniglue_backend_requests_total", { outcome: "refused" }),
    1,
  );
  assert.equal(
    sampleValue(samples, "patroniglue_requests_total", {
      route: "/primary",
      status: "503",
      cache: "error",
    }),
    2,
  );
  assert.equal(sampleValue(samples, "patroniglue_backend_up"), 0);
});

const promtool = hasProgram("promtool");

Deno.test({
  name: "metrics: promtool check metrics accepts the output",
  ignore: !promtool,
  async fn() {
    await using fake = await FakePatroni.start();
    const file = await writeConfig(configText(freePort(), fake.port));
    await using glue = await GlueProcess.start(["-config", file]);
    await get(`${glue.url}/primary`);
    await get(`${glue.url}/replica`);
    const body = (await get(`${glue.url}/metrics`)).body;
    const child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(body));
    await writer.close();
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.equal(text.trim(), "");
  },
});

Deno.test("metrics: switchable off, or on a separate listener", async () => {
  await using fake = await FakePatroni.start();
  const off = await writeConfig(
    configText(freePort(), fake.port, { top: "metrics:\n  enabled: false" }),
  );
  await using a = await GlueProcess.start(["-config", off]);
  assert.equal((await get(`${a.url}/metrics`)).status, 404);
  const metricsPort = freePort();
  const separate = await writeConfig(
    configText(freePort(), fake.port, {
      top: `metrics:\n  host: 127.0.0.1\n  port: ${metricsPort}`,
    }),
  );
  await using b = await GlueProcess.start(["-config", separate]);
  assert.equal((await get(`${b.url}/metrics`)).status, 404);
  const scraped = await get(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(scraped.status, 200);
  assert.ok(parseExposition(scraped.body).samples.length > 5);
  assert.equal((await get(`http://127.0.0.1:${metricsPort}/primary`)).status, 404);
  assert.equal(fake.requests, 0);
});

Deno.test("reload: SIGHUP applies a valid config, refuses an invalid one, rebinds a new port", async () => {
  await using fake = await FakePatroni.start();
  const port = freePort();
  const file = await writeConfig(configText(port, fake.port, { cache: "  ttl: 30" }));
  await using glue = await GlueProcess.start(["-config", file]);
  await get(`${glue.url}/primary`);
  fake.role = "replica";
  assert.equal((await get(`${glue.url}/primary`)).status, 200, "cached for 30 s");

  await Deno.writeTextFile(file, configText(port, fake.port, { cache: "  ttl: 0.1" }));
  Deno.kill(glue.pid, "SIGHUP");
  await glue.waitFor(/reloaded; cache\.ttl: 30 -> 0\.1/);
  await sleep(150);
  assert.equal((await get(`${glue.url}/primary`)).status, 503, "the new ttl applies");

  await Deno.writeTextFile(file, "frontend:\n  prot: 1\n");
  Deno.kill(glue.pid, "SIGHUP");
  await glue.waitFor(
    /ERROR reload refused, keeping the running configuration: .*unknown key 'frontend\.prot'/,
  );
  assert.equal((await get(`${glue.url}/health`)).status, 200);

  const newPort = freePort();
  await Deno.writeTextFile(file, configText(newPort, fake.port, { cache: "  ttl: 0.1" }));
  Deno.kill(glue.pid, "SIGHUP");
  await glue.waitFor(
    new RegExp(
      `frontend\\.port: ${port} -> ${newPort}; listening on http://127\\.0\\.0\\.1:${newPort}`,
    ),
  );
  assert.equal((await get(`http://127.0.0.1:${newPort}/health`)).status, 200);
  await assert.rejects(() => get(`http://127.0.0.1:${port}/health`));
});

Deno.test("reload: a new cache.interval alone restarts the sweep (the cache is kept)", async () => {
  await using fake = await FakePatroni.start();
  const port = freePort();
  const cache = (interval: number) => `  ttl: 0.1\n  interval: ${interval}`;
  const file = await writeConfig(configText(port, fake.port, { cache: cache(3600) }));
  await using glue = await GlueProcess.start(["-config", file]);
  const entries = async () =>
    sampleValue(
      parseExposition((await get(`${glue.url}/metrics`)).body).samples,
      "patroniglue_cache_entries",
    );
  await get(`${glue.url}/primary`);
  await sleep(300);
  assert.equal(await entries(), 1, "expired, not swept yet: the sweep runs hourly");
  await Deno.writeTextFile(file, configText(port, fake.port, { cache: cache(0.05) }));
  Deno.kill(glue.pid, "SIGHUP");
  await glue.waitFor(/reloaded; cache\.interval: 3600 -> 0\.05/);
  await sleep(300);
  assert.equal(await entries(), 0, "swept on the new interval");
});

Deno.test("reload: a request in progress survives a SIGHUP", async () => {
  await using fake = await FakePatroni.start({ delayMs: 700 });
  const port = freePort();
  const file = await writeConfig(configText(port, fake.port));
  await using glue = await GlueProcess.start(["-config", file]);
  const pending = get(`${glue.url}/primary`);
  while (fake.requests === 0) await sleep(10);
  await Deno.writeTextFile(file, configText(port, fake.port, { cache: "  ttl: 2" }));
  Deno.kill(glue.pid, "SIGHUP");
  await glue.waitFor(/reloaded/);
  assert.equal((await pending).status, 200);
});

Deno.test({
  name:
    "reload: a rotated certificate is served to the next TLS handshake, with the same minimum version",
  ignore: !HAS_OPENSSL,
}, async () => {
  await using fake = await FakePatroni.start();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(fixture("server.pem"), `${dir}/cert.pem`);
    await Deno.copyFile(fixture("server.key"), `${dir}/key.pem`);
    const file = await writeConfig(
      configText(freePort(), fake.port, {
        frontend:
          `  certfile: ${dir}/cert.pem\n  keyfile: ${dir}/key.pem\n  tls-min-version: TLSv1.3`,
      }),
    );
    await using glue = await GlueProcess.start(["-config", file]);
    const port = new URL(glue.url).port;
    const handshake = async (...args: string[]) => {
      const out = await new Deno.Command("openssl", {
        args: ["s_client", "-connect", `127.0.0.1:${port}`, ...args],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      return new TextDecoder().decode(out.stdout);
    };
    const issuer = async () => (await handshake()).match(/issuer=(.*)/)?.[1];
    assert.match((await issuer())!, /patroniglue test CA/);
    assert.doesNotMatch(await handshake("-tls1_2"), /Cipher is ECDHE/);
    await Deno.copyFile(fixture("ec.pem"), `${dir}/cert.pem`);
    await Deno.copyFile(fixture("ec.key"), `${dir}/key.pem`);
    Deno.kill(glue.pid, "SIGHUP");
    await glue.waitFor(/reloaded; .*frontend\.tls: file content changed/);
    assert.match((await issuer())!, /CN ?= ?localhost/);
    assert.doesNotMatch(await handshake("-tls1_2"), /Cipher is ECDHE/, "still TLS 1.3 only");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("logs: the -log-format flag wins over log-format in the file, after a SIGHUP that changes it too", async () => {
  await using fake = await FakePatroni.start();
  const port = freePort();
  const file = await writeConfig(configText(port, fake.port, { top: "log-format: text" }));
  await using glue = await GlueProcess.start(["-config", file, "-log-format", "json"]);
  await Deno.writeTextFile(file, configText(port, fake.port, { top: "log-format: json" }));
  Deno.kill(glue.pid, "SIGHUP");
  await glue.waitFor(/reloaded/);
  await Deno.writeTextFile(file, configText(port, fake.port, { top: "log-format: text" }));
  Deno.kill(glue.pid, "SIGHUP");
  // In JSON the quotes around the values are escaped; in text they are not.
  const reloaded = await glue.waitFor(/reloaded; log-format: \\?"json\\?" -> \\?"text\\?"/);
  assert.equal(JSON.parse(reloaded).level, "notice", "still JSON after the file said text");
});

Deno.test("logs: -log-format json writes one JSON object per line with stable fields", async () => {
  await using fake = await FakePatroni.start();
  const file = await writeConfig(configText(freePort(), fake.port));
  const glue = await GlueProcess.start(["-config", file, "-log-format", "json", "-verbose"]);
  await get(`${glue.url}/primary?a=%0a`);
  const { stderr } = await glue.stop();
  const lines = stderr.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(Object.keys(lines[0]), ["time", "level", "msg"]);
  assert.match(lines[0].msg, /^patroniglue .* listening on /);
  const access = lines.find((l) => l.msg === "request");
  assert.deepEqual(
    [
      access.method,
      access.uri,
      access.status,
      access.cache,
      typeof access.duration_ms,
      access.level,
    ],
    ["GET", "/primary?a=%0a", 200, "miss", "number", "info"],
  );
  assert.match(access.remote, /^127\.0\.0\.1:\d+$/);
});

Deno.test("logs: a frozen Patroni for 10 s logs its state change once, not once per request", async () => {
  await using fake = await FakePatroni.start();
  const file = await writeConfig(
    configText(freePort(), fake.port, { backend: "  timeout: 0.2", cache: "  ttl: 0.1" }),
  );
  const glue = await GlueProcess.start(["-config", file]);
  await get(`${glue.url}/primary`);
  fake.freeze();
  const until = performance.now() + 10_000;
  let requests = 0;
  while (performance.now() < until) {
    await Promise.all([get(`${glue.url}/primary`), get(`${glue.url}/replica`)]);
    requests += 2;
    await sleep(20);
  }
  fake.thaw();
  await sleep(150);
  fake.role = "replica";
  await sleep(150);
  await get(`${glue.url}/primary`);
  const { stderr } = await glue.stop();
  const lines = stderr.trim().split("\n");
  assert.ok(requests > 50, `${requests} requests`);
  assert.equal(
    lines.filter((l) => /WARN Patroni at .* is unreachable: no answer within 0\.2s/.test(l)).length,
    1,
    stderr,
  );
  assert.equal(
    lines.filter((l) => /NOTICE Patroni at .* is reachable again/.test(l)).length,
    1,
    stderr,
  );
  assert.equal(lines.filter((l) => /changed role: master -> replica/.test(l)).length, 1, stderr);
  assert.ok(lines.length <= 7, stderr);
});
