import assert from "node:assert/strict";
import {
  type AgentConfig,
  type BackendConfig,
  type CacheConfig,
  type Config,
  ConfigError,
  describeChanges,
  type FrontendConfig,
  type KeyPair,
  loadConfig,
  type MetricsConfig,
  parseConfig,
} from "../src/config/config.ts";
import {
  bool,
  fail,
  input,
  integer,
  key,
  port,
  readFile,
  settings,
  text,
} from "../src/config/schema.ts";
import { runtimeSuites } from "../src/net/tls.ts";
import { parseYaml } from "../src/config/yaml/mod.ts";
import { configProblems, fixture } from "./support/glue.ts";

const problems = configProblems;

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

Deno.test("config: YAML merge keys apply as yaml.v2 applies them; bad ones are positioned problems", async () => {
  const c = await parseConfig(
    "frontend: &listen\n  host: 127.0.0.2\n  port: 8080\nagent:\n  <<: *listen\n  port: 8081\n",
    "c.yml",
  );
  assert.deepEqual([c.frontend.host, c.frontend.port], ["127.0.0.2", 8080]);
  assert.deepEqual([c.agent?.host, c.agent?.port], ["127.0.0.2", 8081]);
  assert.equal((await parseConfig("frontend:\n  <<: {port: 1}\n", "c.yml")).frontend.port, 1);
  await problem("cache:\n  ttl: {<<: 1}\n", /^c\.yml:2:9: YAML syntax: '<<' merges a mapping/);
  await problem(
    "frontend:\n  port: *nope\n",
    /^c\.yml:2:9: YAML syntax: alias \*nope is not defined/,
  );
  await problem("frontend:\n  port: {a: 1}\n", /frontend\.port: .*got \{"a":1\}/);
  // A merged key is checked like a written one, at the place the anchor wrote it.
  await problem(
    "frontend: &f\n  port: 1\n  logformat: x\nmetrics:\n  <<: *f\n",
    /^c\.yml:3:3: unknown key 'metrics\.logformat' \(known: enabled, host, port\)$/,
  );
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
  assert.equal(c.warnings.length, 1, c.warnings.join("\n"));
  assert.match(
    c.warnings[0],
    /^frontend\.tls-ciphers cannot restrict suites under this runtime; offered: TLS_AES_128_GCM_SHA256, .*TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256$/,
  );
  assert.ok(!("tlsCiphers" in c.frontend), "nothing can consume tls-ciphers: Config has no field");
  const all = await parseConfig(
    `frontend:\n${tls}  tls-ciphers: ${runtimeSuites("rsa").join(":")}\n`,
    "c.yml",
  );
  assert.deepEqual(all.warnings, [], "the runtime's own set, as one string, warns of nothing");
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

Deno.test("config: a file that is not UTF-8 is refused; a BOM and CRLF line endings are read", async () => {
  const file = await Deno.makeTempFile({ suffix: ".yml" });
  try {
    await Deno.writeFile(
      file,
      new Uint8Array([...new TextEncoder().encode("frontend:\n  host: a"), 0xff]),
    );
    await assert.rejects(
      () => loadConfig(file),
      (e: ConfigError) =>
        e.problems[0] === `${file}: cannot read configuration file: it is not UTF-8 text`,
    );
    await Deno.writeTextFile(file, "\uFEFF---\r\nfrontend:\r\n  port: 8080 # comment\r\n");
    assert.equal((await loadConfig(file)).frontend.port, 8080);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("config: metrics on a separate listener", async () => {
  const c = await parseConfig("frontend:\n  host: 127.0.0.2\nmetrics:\n  port: 9187\n", "c.yml");
  assert.deepEqual(c.metrics.listener, { host: "127.0.0.2", port: 9187 });
  await problem("metrics:\n  host: 127.0.0.1\n", /metrics\.host: is set but metrics\.port is not/);
});

Deno.test("config: Object.prototype names are unknown names, never a crash", async () => {
  await problem("toString: 1\n", /^c\.yml:1:1: unknown section 'toString' \(known: /);
  await problem("hasOwnProperty: {}\n", /^c\.yml:1:1: unknown section 'hasOwnProperty'/);
  await problem(
    "frontend:\n  constructor: 1\n",
    /^c\.yml:2:3: unknown key 'frontend\.constructor'/,
  );
  await problem("cache:\n  __proto__: 1\n", /^c\.yml:2:3: unknown key 'cache\.__proto__'/);
});

Deno.test("config: a key written with a bad value is reported once, not also as missing", async () => {
  const found = await problems(`frontend:\n  certfile: 3\n  keyfile: ${fixture("server.key")}\n`);
  assert.deepEqual(found, ["c.yml:2:13: frontend.certfile: must be a non-empty string: got 3"]);
  const junk = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(junk, "junk\n");
    const both = await problems(`frontend:\n  certfile: ${junk}\n  keyfile: ${junk}\n`);
    assert.equal(both.length, 2, both.join("\n"));
    assert.match(both[0], /^c\.yml:2:13: frontend\.certfile: .*no PEM certificate found/);
    assert.match(both[1], /^c\.yml:3:12: frontend\.keyfile: .*no PEM private key found/);
  } finally {
    await Deno.remove(junk);
  }
});

// The types other modules read, as derived from the schema (a mismatch fails type checking).
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
type Plain<T> = { [K in keyof T]: T[K] };
const CONTRACT: true[] = [
  true satisfies Equal<
    Plain<FrontendConfig>,
    {
      host: string;
      port: number;
      tls?: KeyPair;
      tlsMinVersion: "SSLv3.0" | "TLSv1.0" | "TLSv1.1" | "TLSv1.2" | "TLSv1.3";
      logformat: string;
    }
  >,
  true satisfies Equal<
    Plain<BackendConfig>,
    {
      host: string;
      port: number;
      scheme: "http" | "https";
      insecure: boolean;
      ca?: { cafile: string; pem: string };
      client?: KeyPair;
      timeout: number;
    }
  >,
  true satisfies Equal<CacheConfig, { ttl: number; interval: number; maxEntries: number }>,
  true satisfies Equal<
    Plain<MetricsConfig>,
    { enabled: boolean; listener?: { host: string; port: number } }
  >,
  true satisfies Equal<
    AgentConfig,
    { host: string; port: number; check: string; mismatch: "maint" | "drain" }
  >,
  true satisfies Equal<
    keyof Config,
    | "file"
    | "frontend"
    | "backend"
    | "cache"
    | "metrics"
    | "agent"
    | "dcs"
    | "logFormat"
    | "warnings"
  >,
  true satisfies Equal<Config["logFormat"], "text" | "json">,
];

Deno.test("config: the Config derived from the schema has the fields other modules read, no more", async () => {
  assert.equal(CONTRACT.length, 7);
  const c = await parseConfig("agent:\n  port: 5555\n", "c.yml");
  const keys = (o: object) => Object.keys(o).sort();
  assert.deepEqual(keys(c), [
    "agent",
    "backend",
    "cache",
    "dcs",
    "file",
    "frontend",
    "logFormat",
    "metrics",
    "warnings",
  ]);
  assert.deepEqual(keys(c.frontend), ["host", "logformat", "port", "tls", "tlsMinVersion"]);
  assert.deepEqual(keys(c.backend), [
    "ca",
    "client",
    "host",
    "insecure",
    "port",
    "scheme",
    "timeout",
  ]);
  assert.deepEqual(keys(c.cache), ["interval", "maxEntries", "ttl"]);
  assert.deepEqual(keys(c.metrics), ["enabled", "listener"]);
  assert.deepEqual(keys(c.agent!), ["check", "host", "mismatch", "port"]);
});

Deno.test("schema: one declaration gives a key its check, default, type and camelCased setting", () => {
  const schema = {
    server: { "max-conns": key(integer(1, 10), 5), name: key(text), secret: input(text) },
    "dry-run": key(bool, false),
    listen: { port: key(port, 80) },
  };
  const read = readFile(schema, parseYaml("server:\n  name: x\n  secret: s\n"), "t.yml");
  assert.deepEqual(read.problems, []);
  const server = settings(schema.server, read.values.server);
  const top = settings(schema, read.values);
  const typed: [
    Equal<typeof server, { maxConns: number; name: string | undefined }>,
    Equal<typeof top, { dryRun: boolean }>,
    Equal<typeof read.values.server.secret, string | undefined>,
  ] = [true, true, true];
  assert.deepEqual(typed, [true, true, true]);
  assert.deepEqual(server, { maxConns: 5, name: "x" }, "default applied, input left out");
  assert.deepEqual(top, { dryRun: false }, "sections are not settings of the file");
  assert.deepEqual(read.values.listen, { port: 80 }, "an absent section gets its defaults");
  assert.equal(read.values.server.secret, "s");
  const at = read.positions.get("server.name");
  assert.deepEqual([at?.line, at?.col], [2, 9]);

  const bad = readFile(
    schema,
    parseYaml("server:\n  max-conns: 11\n  nme: y\ndry-run: maybe\nlisten: [1]\n"),
    "t.yml",
  );
  assert.deepEqual(bad.problems, [
    "t.yml:2:14: server.max-conns: must be an integer from 1 to 10: got 11",
    "t.yml:3:3: unknown key 'server.nme' (did you mean 'name'?)",
    't.yml:4:10: dry-run: must be true or false: got "maybe"',
    "t.yml:5:9: listen: must be a mapping of keys",
  ]);
  assert.ok(bad.positions.has("server.max-conns"), "a key written with a bad value has a position");
});

/** An AgentConfig, defaults for check and mismatch. */
const agentAt = (host: string, port: number, check = "/primary", mismatch = "maint") => ({
  host,
  port,
  check,
  mismatch,
});

Deno.test("config: agent: the listener runs only with a port; host defaults to the effective frontend.host", async () => {
  assert.equal((await parseConfig("frontend:\n  host: 127.0.0.2\n", "c.yml")).agent, undefined);
  const c = await parseConfig("frontend:\n  host: 127.0.0.2\nagent:\n  port: 5555\n", "c.yml");
  assert.deepEqual(c.agent, agentAt("127.0.0.2", 5555));
  assert.equal((await parseConfig("agent:\n  port: 5555\n", "c.yml")).agent?.host, "localhost");
  const full = await parseConfig(
    "agent:\n  host: '[::1]'\n  port: 5555\n  check: /replica?tag_b=2&lag=1MB\n  mismatch: drain\n",
    "c.yml",
  );
  assert.deepEqual(
    full.agent,
    agentAt("::1", 5555, "/replica?tag_b=2&lag=1MB", "drain"),
    "the check is kept as written, not canonicalized",
  );
  assert.deepEqual(full.warnings, []);
  for (const check of ["/", "/master", "/read-only?lag=10MB", "/liveness", "/sync?mode=apply"]) {
    const ok = await parseConfig(`agent:\n  port: 5555\n  check: ${JSON.stringify(check)}\n`, "c");
    assert.equal(ok.agent?.check, check);
  }
});

Deno.test("config: agent: check must be a forwarded Patroni health check; keys checked like any other", async () => {
  const refused: [string, string][] = [
    ["/failover", " (not found)"],
    ["/restart", " (not found)"],
    ["/switchover", " (not found)"],
    ["/patroni", " (not found)"],
    ["/../primary", " (not found)"],
    ["%70rimary", " (not found)"],
    ["//primary", " (not found)"],
    ["primary", " (not found)"],
    ["http://x/primary", " (not found)"],
    ["/primary ", " (not found)"],
    ["/health", ""],
    ["/metrics", " (not found)"],
    [`/replica?${"a=1&".repeat(17)}`, " (more than 16 query parameters)"],
  ];
  for (const [target, why] of refused) {
    const quoted = JSON.stringify(target);
    assert.deepEqual(await problems(`agent:\n  port: 5555\n  check: ${quoted}\n`), [
      `c.yml:3:10: agent.check: must be one of Patroni's health checks, such as /primary or /replica?lag=1MB: got ${quoted}${why}`,
    ]);
  }
  await problem("agent:\n  port: 5555\n  check: 3\n", /agent\.check: must be a non-empty string/);
  await problem(
    "agent:\n  port: 5555\n  mismatch: down\n",
    /^c\.yml:3:13: agent\.mismatch: must be one of maint, drain: got "down"$/,
  );
  await problem("agent:\n  port: 0\n", /^c\.yml:2:9: agent\.port: must be an integer from 1/);
  await problem("agent:\n  host: http://x\n  port: 1\n", /agent\.host: .*not a URL/);
  await problem(
    "agent:\n  prot: 5555\n",
    /^c\.yml:2:3: unknown key 'agent\.prot' \(did you mean 'port'\?\)/,
  );
  await problem("agnet:\n  port: 5555\n", /unknown section 'agnet' \(did you mean 'agent'\?\)/);
  await problem("agent: 5555\n", /^c\.yml:1:8: agent: must be a mapping of keys/);
});

Deno.test("config: agent: host, check or mismatch without agent.port are refused (HAProxy ignores an absent agent)", async () => {
  for (
    const [line, key] of [["host: 127.0.0.1", "host"], ["check: /replica", "check"], [
      "mismatch: drain",
      "mismatch",
    ]]
  ) {
    const found = await problems(`agent:\n  ${line}\n`);
    assert.deepEqual(found, [
      `c.yml:2:${key.length + 5}: agent.${key}: is set but agent.port is not`,
    ]);
  }
  assert.equal(
    (await parseConfig("agent:\n", "c.yml")).agent,
    undefined,
    "an empty section is fine",
  );
});

Deno.test("config: config.yml.example's commented metrics and agent keys, uncommented, load as documented", async () => {
  const example = await Deno.readTextFile(new URL("../config.yml.example", import.meta.url));
  const uncommented = example.replace(
    /^(metrics|agent):\n[\s\S]*?\n\n/gm,
    (block) => block.replace(/^ {2}# ([\w-]+: .*)$/gm, "  $1"),
  );
  assert.match(uncommented, /^ {2}mismatch: maint$/m);
  const c = await parseConfig(uncommented, "example.yml");
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(c.metrics.listener, { host: "127.0.0.1", port: 9187 });
  assert.deepEqual(c.agent, agentAt("127.0.0.1", 8081));
  const defaults = await parseConfig("frontend:\n  host: 127.0.0.1\nagent:\n  port: 8081\n", "c");
  assert.deepEqual(c.agent, defaults.agent, "the documented defaults are the defaults");
});

Deno.test("config: two listeners on one host and port are refused before binding", async () => {
  await problem(
    "frontend:\n  host: 127.0.0.1\n  port: 8080\nagent:\n  port: 8080\n",
    /^c\.yml:5:9: agent\.port: 8080 on 127\.0\.0\.1 is also frontend\.port; each listener needs its own port$/,
  );
  await problem(
    "frontend:\n  port: 8080\nmetrics:\n  port: 8080\n",
    /^c\.yml:4:9: metrics\.port: 8080 on localhost is also frontend\.port/,
  );
  await problem(
    "metrics:\n  port: 9000\nagent:\n  port: 9000\n",
    /^c\.yml:4:9: agent\.port: 9000 on localhost is also metrics\.port/,
  );
  const apart = await parseConfig(
    "frontend:\n  host: 127.0.0.1\n  port: 8080\nagent:\n  host: 127.0.0.2\n  port: 8080\nmetrics:\n  enabled: false\n  port: 8080\n",
    "c.yml",
  );
  assert.deepEqual(apart.agent, agentAt("127.0.0.2", 8080));
});

Deno.test("config: describeChanges names each changed key as the file does, old -> new", async () => {
  const before = await parseConfig("cache:\n  ttl: 1\n", "c.yml");
  assert.deepEqual(describeChanges(before, await parseConfig("", "other.yml")), []);
  assert.deepEqual(
    describeChanges(before, await parseConfig("frontend:\n  tls-min-version: TLSv1.2\n", "c.yml")),
    [],
    "warnings and a default written out are no change",
  );
  const after = await parseConfig(
    `frontend:
  port: 8081
cache:
  ttl: 0.5
  max-entries: 10
metrics:
  port: 9187
agent:
  port: 5555
  mismatch: drain
log-format: json
`,
    "c.yml",
  );
  assert.deepEqual(describeChanges(before, after), [
    'agent.check: unset -> "/primary"',
    'agent.host: unset -> "localhost"',
    'agent.mismatch: unset -> "drain"',
    "agent.port: unset -> 5555",
    "cache.max-entries: 1000 -> 10",
    "cache.ttl: 1 -> 0.5",
    "frontend.port: 80 -> 8081",
    'log-format: "text" -> "json"',
    'metrics.listener.host: unset -> "localhost"',
    "metrics.listener.port: unset -> 9187",
  ]);
  const moved = await parseConfig(
    "frontend:\n  port: 8081\nagent:\n  port: 5556\n  check: /replica\n",
    "c.yml",
  );
  assert.deepEqual(describeChanges(after, moved), [
    'agent.check: "/primary" -> "/replica"',
    'agent.mismatch: "drain" -> "maint"',
    "agent.port: 5555 -> 5556",
    "cache.max-entries: 10 -> 1000",
    "cache.ttl: 0.5 -> 1",
    'log-format: "json" -> "text"',
    'metrics.listener.host: "localhost" -> unset',
    "metrics.listener.port: 9187 -> unset",
  ]);
});

Deno.test("config: describeChanges says a rotated certificate or CA changed, never its PEM", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [cert, key, ca] = [`${dir}/c.pem`, `${dir}/k.pem`, `${dir}/ca.pem`];
    const use = async (pair: string, bundle: string) => {
      await Deno.copyFile(fixture(`${pair}.pem`), cert);
      await Deno.copyFile(fixture(`${pair}.key`), key);
      await Deno.copyFile(fixture(`${bundle}.pem`), ca);
      return await parseConfig(
        `frontend:\n  certfile: ${cert}\n  keyfile: ${key}\nbackend:\n  scheme: https\n  cafile: ${ca}\n`,
        "c.yml",
      );
    };
    const first = await use("server", "ca");
    assert.deepEqual(describeChanges(first, await use("server", "ca")), []);
    assert.deepEqual(describeChanges(first, await use("self", "ca")), [
      "frontend.tls: file content changed",
    ]);
    assert.deepEqual(describeChanges(first, await use("ec", "self")), [
      "backend.ca: file content changed",
      "frontend.tls: file content changed",
      'frontend.tls.keyKind: "rsa" -> "ec"',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("schema: a check that refuses a value is a problem; a check that breaks is a bug, never a config problem", () => {
  const schema = {
    s: {
      refused: key((v) => typeof v === "number" ? v : fail(`must be a number: got ${v}`)),
      broken: key((): number => {
        throw new TypeError("a bug in the check");
      }),
    },
  };
  const refused = readFile(schema, parseYaml("s:\n  refused: x\n"), "f.yml");
  assert.deepEqual(refused.problems, ["f.yml:2:12: s.refused: must be a number: got x"]);
  assert.throws(() => readFile(schema, parseYaml("s:\n  broken: 1\n"), "f.yml"), TypeError);
});
