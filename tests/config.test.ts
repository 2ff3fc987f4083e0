import assert from "node:assert/strict";
import { ConfigError, loadConfig, parseConfig } from "../src/config.ts";
import { fixture } from "./support/glue.ts";

async function problems(text: string): Promise<string[]> {
  try {
    await parseConfig(text, "c.yml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  assert.fail(`accepted:\n${text}`);
}

async function problem(text: string, expected: RegExp): Promise<void> {
  const found = await problems(text);
  assert.ok(found.some((p) => expected.test(p)), `${expected} not in:\n${found.join("\n")}`);
}

Deno.test("config: an empty file gives every default", async () => {
  const c = await parseConfig("", "c.yml");
  assert.deepEqual(
    [c.frontend.host, c.frontend.port, c.frontend.tls, c.frontend.logformat],
    ["localhost", 80, undefined, "%a - %m %U"],
  );
  assert.deepEqual(
    [c.backend.host, c.backend.port, c.backend.scheme, c.backend.insecure, c.backend.timeout],
    ["127.0.0.1", 8008, "http", false, 2],
  );
  assert.deepEqual([c.cache.ttl, c.cache.interval, c.cache.maxEntries], [1, 0.25, 1000]);
  assert.deepEqual([c.metrics.enabled, c.metrics.listener, c.logFormat], [true, undefined, "text"]);
});

Deno.test("config: config.yml.example loads cleanly, without warnings", async () => {
  const c = await loadConfig(new URL("../config.yml.example", import.meta.url).pathname);
  assert.deepEqual(c.warnings, []);
  assert.equal(c.frontend.port, 8080);
  assert.equal(c.cache.ttl, 1);
});

Deno.test("config: the original's example (with a YAML 1.1 boolean) still loads", async () => {
  const c = await parseConfig(
    `---
frontend:
  host: 127.0.0.1
  port: 8443
backend:
  host: 127.0.0.1
  port: 8008
  scheme: https
  insecure: yes
cache:
  ttl: 1
  interval: 0.25`,
    "c.yml",
  );
  assert.equal(c.backend.insecure, true);
  assert.equal(c.backend.scheme, "https");
});

Deno.test("config: unknown keys and sections are refused, with a suggestion and position", async () => {
  await problem(
    "frontend:\n  prot: 80\n",
    /^c\.yml:2:3: unknown key 'frontend\.prot' \(did you mean 'port'\?\)/,
  );
  await problem(
    "frontnd:\n  port: 80\n",
    /^c\.yml:1:1: unknown section 'frontnd' \(did you mean 'frontend'\?\)/,
  );
  await problem(
    "cache:\n  xyzzy: 1\n",
    /unknown key 'cache\.xyzzy' \(known: ttl, interval, max-entries\)/,
  );
});

Deno.test("config: YAML syntax errors give line and column", async () => {
  await problem("frontend:\n  port: [80\n", /^c\.yml:\d+:\d+: YAML syntax: /);
  await problem("frontend:\n  port: 1\n  port: 2\n", /^c\.yml:3:3: YAML syntax: .*[Uu]nique/);
  await problem("- a\n- b\n", /must be a mapping of sections/);
  await problem("frontend: 3\n", /frontend: must be a mapping of keys/);
});

Deno.test("config: wrong types and ranges name the key and the value", async () => {
  await problem(
    "frontend:\n  port: 70000\n",
    /^c\.yml:2:9: frontend\.port: must be an integer from 1 to 65535: got 70000$/,
  );
  await problem(
    "frontend:\n  port: 0\n",
    /frontend\.port: must be an integer from 1 to 65535: got 0/,
  );
  await problem('backend:\n  port: "8008"\n', /backend\.port: must be an integer .*got "8008"/);
  await problem("backend:\n  port: 80.5\n", /backend\.port: must be an integer/);
  await problem('frontend:\n  host: ""\n', /frontend\.host: must be a non-empty string/);
  await problem("frontend:\n  host: [a]\n", /frontend\.host: must be a non-empty string/);
  await problem(
    "backend:\n  host: http://x\n",
    /backend\.host: must be a host name or IP address, not a URL/,
  );
  await problem(
    "backend:\n  insecure: maybe\n",
    /backend\.insecure: must be true or false: got "maybe"/,
  );
});

Deno.test("config: negative or non-numeric durations are refused", async () => {
  await problem("cache:\n  ttl: -1\n", /cache\.ttl: must be at least 0 seconds: got -1/);
  await problem("cache:\n  ttl: 1s\n", /cache\.ttl: must be a number of seconds: got "1s"/);
  await problem("cache:\n  interval: 0\n", /cache\.interval: must be more than 0 seconds: got 0/);
  await problem("backend:\n  timeout: -0.5\n", /backend\.timeout: must be more than 0 seconds/);
  await problem("backend:\n  timeout: .nan\n", /backend\.timeout: must be a number of seconds/);
  await problem("cache:\n  ttl: 1e9\n", /cache\.ttl: must be at most 86400 seconds/);
  const c = await parseConfig("cache:\n  ttl: 0\n", "c.yml");
  assert.equal(c.cache.ttl, 0);
});

Deno.test("config: unknown scheme, TLS version, cipher and log format", async () => {
  await problem(
    "backend:\n  scheme: ftp\n",
    /backend\.scheme: must be one of http, https: got "ftp"/,
  );
  await problem(
    "frontend:\n  tls-min-version: TLSv1.4\n",
    /frontend\.tls-min-version: must be one of SSLv3\.0, TLSv1\.0, TLSv1\.1, TLSv1\.2, TLSv1\.3/,
  );
  await problem(
    "frontend:\n  tls-ciphers: [TLS_FOO]\n",
    /frontend\.tls-ciphers: unknown cipher suite "TLS_FOO"/,
  );
  await problem("frontend:\n  tls-ciphers: []\n", /frontend\.tls-ciphers: must be a list/);
  await problem('frontend:\n  logformat: "%a %q"\n', /frontend\.logformat: unknown placeholder %q/);
  await problem("log-format: xml\n", /log-format: must be one of text, json/);
});

Deno.test("config: YAML merge keys and aliases never escape as exceptions", async () => {
  await problem("cache:\n  ttl: {<<: 1}\n", /^c\.yml:2:8: cache\.ttl: must be a number/);
  await problem(
    "frontend:\n  port: *nope\n",
    /^c\.yml:2:9: YAML syntax: alias \*nope is not defined/,
  );
  await problem("frontend:\n  <<: {port: 1}\n", /unknown key 'frontend\.<<'/);
  await problem("frontend:\n  port: {a: 1}\n", /frontend\.port: .*got \{"a":1\}/);
});

Deno.test("config: a file with thousands of problems reports the first 20 and a count", async () => {
  const found = await problems(
    "frontend:\n" + Array.from({ length: 50 }, (_, i) => `  k${i}: 1\n`).join(""),
  );
  assert.equal(found.length, 21);
  assert.equal(found[20], "c.yml: ... and 30 more problems");
});

Deno.test("config: every problem is reported at once", async () => {
  const found = await problems("frontend:\n  port: 0\n  prot: 1\nbackend:\n  scheme: ftp\n");
  assert.equal(found.length, 3, found.join("\n"));
});

Deno.test("config: certfile without keyfile, and the reverse, are errors", async () => {
  await problem(
    `frontend:\n  certfile: ${fixture("server.pem")}\n`,
    /frontend\.certfile: is set but frontend\.keyfile is not/,
  );
  await problem(
    `frontend:\n  keyfile: ${fixture("server.key")}\n`,
    /frontend\.keyfile: is set but frontend\.certfile is not/,
  );
  await problem(
    `backend:\n  scheme: https\n  certfile: ${fixture("client.pem")}\n`,
    /backend\.certfile: is set but backend\.keyfile is not/,
  );
});

Deno.test("config: unreadable, invalid or mismatched PEM files are errors", async () => {
  await problem(
    "frontend:\n  certfile: /nonexistent/c.pem\n  keyfile: /nonexistent/k.pem\n",
    /frontend\.certfile: cannot read \/nonexistent\/c\.pem: /,
  );
  const junk = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(junk, "not a certificate\n");
    await problem(
      `frontend:\n  certfile: ${junk}\n  keyfile: ${fixture("server.key")}\n`,
      /frontend\.certfile: .*no PEM certificate found/,
    );
    await problem(
      `frontend:\n  certfile: ${fixture("server.pem")}\n  keyfile: ${junk}\n`,
      /frontend\.keyfile: .*no PEM private key found/,
    );
    await Deno.writeTextFile(
      junk,
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    await problem(
      `backend:\n  scheme: https\n  cafile: ${junk}\n`,
      /backend\.cafile: .*invalid PEM certificate/,
    );
  } finally {
    await Deno.remove(junk);
  }
  await problem(
    `frontend:\n  certfile: ${fixture("server.pem")}\n  keyfile: ${fixture("self.key")}\n`,
    /frontend\.keyfile: .*self\.key does not match the certificate in .*server\.pem/,
  );
});

Deno.test("config: valid TLS files are read; insecure with cafile is contradictory", async () => {
  const c = await parseConfig(
    `frontend:
  certfile: ${fixture("server.pem")}
  keyfile: ${fixture("server.key")}
  tls-min-version: TLSv1.3
backend:
  scheme: https
  cafile: ${fixture("self.pem")}
  certfile: ${fixture("client.pem")}
  keyfile: ${fixture("client.key")}
`,
    "c.yml",
  );
  assert.match(c.frontend.tls!.cert, /BEGIN CERTIFICATE/);
  assert.equal(c.frontend.tls!.keyKind, "rsa");
  assert.equal(c.frontend.tlsMinVersion, "TLSv1.3");
  assert.match(c.backend.ca!.pem, /BEGIN CERTIFICATE/);
  assert.match(c.backend.client!.key, /PRIVATE KEY/);
  await problem(
    `backend:\n  scheme: https\n  insecure: true\n  cafile: ${fixture("ca.pem")}\n`,
    /backend\.insecure: is true, which disables the check that backend\.cafile asks for/,
  );
});

Deno.test("config: keys that cannot take effect are warned about, never silently ignored", async () => {
  const c = await parseConfig(
    "frontend:\n  tls-min-version: TLSv1.3\nbackend:\n  insecure: true\n",
    "c.yml",
  );
  assert.deepEqual(c.warnings, [
    "backend.insecure has no effect with scheme http",
    "frontend.tls-min-version has no effect without frontend.certfile and keyfile",
  ]);
  const old = await parseConfig(
    `frontend:\n  certfile: ${fixture("server.pem")}\n  keyfile: ${
      fixture("server.key")
    }\n  tls-min-version: TLSv1.0\n`,
    "c.yml",
  );
  assert.match(old.warnings[0], /TLS 1\.0 and 1\.1 are never offered .* the minimum is TLSv1\.2/);
});

Deno.test("config: tls-ciphers that the runtime cannot offer refuse the start; partial lists warn", async () => {
  const tls = `  certfile: ${fixture("server.pem")}\n  keyfile: ${fixture("server.key")}\n`;
  await problem(
    `frontend:\n${tls}  tls-ciphers: [TLS_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n`,
    /frontend\.tls-ciphers: none of these suites can be offered with a rsa key by this runtime; it offers TLS_AES_128_GCM_SHA256/,
  );
  const c = await parseConfig(
    `frontend:\n${tls}  tls-ciphers: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n`,
    "c.yml",
  );
  assert.match(
    c.warnings[0],
    /tls-ciphers cannot restrict suites under this runtime; offered: TLS_AES_128_GCM_SHA256, .*TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256$/,
  );
  assert.deepEqual(c.frontend.tlsCiphers, ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]);
});

Deno.test("config: https without cafile trusts the system bundle, read where Go reads it", async () => {
  const c = await parseConfig("backend:\n  scheme: https\n", "c.yml");
  assert.match(c.backend.ca!.cafile, /^\/etc\//);
  assert.match(c.backend.ca!.pem, /BEGIN CERTIFICATE/);
  const insecure = await parseConfig("backend:\n  scheme: https\n  insecure: true\n", "c.yml");
  assert.equal(insecure.backend.ca, undefined);
});

Deno.test("config: a missing file is one clear error", async () => {
  await assert.rejects(
    () => loadConfig("/nonexistent/patroniglue.yml"),
    (e: ConfigError) =>
      /^\/nonexistent\/patroniglue\.yml: cannot read configuration file: /.test(e.problems[0]),
  );
});

Deno.test("config: metrics on a separate listener", async () => {
  const c = await parseConfig("frontend:\n  host: 127.0.0.2\nmetrics:\n  port: 9187\n", "c.yml");
  assert.deepEqual(c.metrics.listener, { host: "127.0.0.2", port: 9187 });
  await problem("metrics:\n  host: 127.0.0.1\n", /metrics\.host: is set but metrics\.port is not/);
});
