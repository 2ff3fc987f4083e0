// Property tests with a fixed seed: random bytes and random structures through the config loader,
// the request router and a running patroniglue never crash it and always have a defined outcome.
// FUZZ_SEED (default 1) picks the cases, FUZZ_RUNS (default 300) how many; FUZZ_VERBOSE=1 prints counts.
// A failure names the seed and the case index: rerun with the same FUZZ_SEED to reproduce it.
import assert from "node:assert/strict";
import { type Config, ConfigError, parseConfig } from "../src/config/config.ts";
import {
  CHECK_METHODS,
  HEALTH_CHECK_PATHS,
  MAX_QUERY_PARAMS,
  MAX_TARGET_LENGTH,
  type Route,
  routeRequest,
} from "../src/check/routes.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import {
  configText,
  connectClient,
  fixture,
  freePort,
  GlueProcess,
  type Scheme,
  SCHEMES,
  sleep,
  TLS_FRONTEND,
  writeConfig,
} from "./support/glue.ts";
import { concat } from "./support/tools.ts";

function envInt(name: string, fallback: number): number {
  let raw: string | undefined;
  try {
    raw = Deno.env.get(name);
  } catch { /* no env permission: defaults */ }
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be an integer: ${raw}`);
  return n;
}

const SEED = envInt("FUZZ_SEED", 1);
const RUNS = envInt("FUZZ_RUNS", 300);
const VERBOSE = envInt("FUZZ_VERBOSE", 0) > 0;
/** Raw requests sent to the running process: ~200 in CI, more with a larger FUZZ_RUNS. */
const RAW_RUNS = Math.max(200, Math.floor(RUNS / 10));

// ---------------------------------------------------------------------------------------------
// A small seeded PRNG (mulberry32) and generators on top of it.

/** Deterministic random numbers from a 32-bit seed. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** A length skewed towards small values, sometimes up to `max`. */
  size(max: number): number {
    const r = this.next();
    return r < 0.6
      ? this.int(Math.min(max, 16) + 1)
      : r < 0.9
      ? this.int(Math.min(max, 256) + 1)
      : this.int(max + 1);
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  /** Characters from `alphabet`. */
  chars(n: number, alphabet: string): string {
    let s = "";
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** The seed of case `index` of property `property`: each case replays on its own. */
function caseSeed(property: number, index: number): number {
  let h = Math.imul(SEED ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(property + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) ^ index;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const latin1 = (bytes: Uint8Array) => {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
};
const utf8 = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const show = (s: string, max = 400) => {
  const j = JSON.stringify(s);
  return j.length > max ? `${j.slice(0, max)}... (${s.length} chars)` : j;
};
/** Waits for `promise`, at most `ms`; leaves no timer behind. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([promise, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** Random text: random bytes decoded as UTF-8 or Latin-1, or random code units (lone surrogates too). */
function randomText(rng: Rng, max: number): string {
  const n = rng.size(max);
  switch (rng.int(4)) {
    case 0:
      return utf8(rng.bytes(n));
    case 1:
      return latin1(rng.bytes(n));
    case 2:
      return String.fromCharCode(...Array.from({ length: n }, () => rng.int(0x10000)));
    default:
      return rng.chars(n, YAML_SPECIAL + "abcdefghijklmnopqrstuvwxyz0123456789");
  }
}

// ---------------------------------------------------------------------------------------------
// a. parseConfig: random bytes and random YAML structures.

const SECTIONS = ["frontend", "backend", "cache", "metrics", "agent"] as const;
const KEYS: Record<string, readonly string[]> = {
  frontend: ["host", "port", "certfile", "keyfile", "tls-min-version", "tls-ciphers", "logformat"],
  backend: ["host", "port", "scheme", "insecure", "cafile", "certfile", "keyfile", "timeout"],
  cache: ["ttl", "interval", "max-entries"],
  metrics: ["enabled", "host", "port"],
  agent: ["host", "port", "check", "mismatch"],
};
const ALL_KEYS = [
  ...SECTIONS,
  "log-format",
  ...new Set(Object.values(KEYS).flat()),
  "logformat",
] as const;
const YAML_SPECIAL = "{}[]:,-?&*!|>'\"#%@` \n\t\r\\~=<.";

const SCALARS = [
  "0",
  "1",
  "-1",
  "-0",
  "80",
  "8008",
  "65535",
  "65536",
  "1.5",
  "0x50",
  "0o17",
  "017",
  "0b101",
  "1_000",
  "1e3",
  "1e308",
  "1e400",
  "-1e400",
  "1e-400",
  "9".repeat(40),
  "-" + "9".repeat(400),
  ".inf",
  "-.inf",
  ".nan",
  "NaN",
  "~",
  "null",
  "Null",
  "",
  "true",
  "false",
  "yes",
  "no",
  "on",
  "off",
  "y",
  "n",
  "''",
  '""',
  '"with \\"escapes\\" \\u0000 \\x7f \\ud800"',
  "'single ''quoted'''",
  "a: b",
  "'a: b'",
  "# comment",
  "text",
  "json",
  "http",
  "https",
  "ftp",
  "localhost",
  "127.0.0.1",
  "::1",
  "[::1]",
  "'[::1]'",
  "0.0.0.0",
  "http://example.com",
  "exa mple",
  "TLSv1.0",
  "TLSv1.2",
  "TLSv1.3",
  "TLS_AES_128_GCM_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_RSA_WITH_RC4_128_SHA",
  "TLS_NOPE",
  "'%a %m %U %s %D %C %%'",
  "'%x'",
  "'%'",
  "/nonexistent/cert.pem",
  "/nonexistent",
  "2001-12-14",
  "2001-12-14t21:59:43.10-05:00",
  "12:30:45",
  "!!str 80",
  "!!int 80",
  "!!int x",
  "!!float 1",
  "!!bool yes",
  "!!null ''",
  "!!binary aGVsbG8=",
  "!!binary '!!'",
  "!!timestamp 2001-12-14",
  "!custom x",
  "!!js/undefined ~",
  "!<tag:yaml.org,2002:str> x",
  "<<",
  "=",
  "@x",
  "`x`",
  "%x",
];

/** Values that are plausible for one key, so that some files get past the syntax and reach checks. */
const PLAUSIBLE: Record<string, readonly string[]> = {
  host: ["127.0.0.1", "localhost", "::1", "'[::1]'", "''", "http://x", "a b", "example.com"],
  port: ["0", "1", "80", "8008", "65535", "65536", "-1", "1.5", "'80'", "0x50", "1e400"],
  certfile: ["/nonexistent/cert.pem", "/nonexistent", "''", "1"],
  keyfile: ["/nonexistent/key.pem", "/nonexistent", "''"],
  cafile: ["/nonexistent/ca.pem", "''"],
  "tls-min-version": ["TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "tls1.2", "1.2"],
  "tls-ciphers": [
    "[TLS_AES_128_GCM_SHA256]",
    "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384",
    "[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_NOPE]",
    "[]",
    "''",
    "[1, null]",
  ],
  logformat: ["'%a %m %U %s %D %C %%'", "'%a - %m %U'", "'%x'", "'%'", "''", "plain"],
  scheme: ["http", "https", "HTTP", "ftp", "''"],
  insecure: ["true", "false", "yes", "1", "'true'"],
  enabled: ["true", "false", "no", "0", "'false'"],
  timeout: ["0", "0.001", "1", "2", "86400", "86401", "-1", ".nan", ".inf", "1e-300", "'1s'"],
  ttl: ["0", "0.5", "1", "86400", "86401", "-0.1", ".nan", "'1'"],
  interval: ["0", "0.25", "1", "-1", ".inf"],
  "max-entries": ["1", "1000", "1000000", "1000001", "0", "1.5", "-5"],
  "log-format": ["text", "json", "xml", "''", "[text]"],
};

/** Builds random YAML text: nested maps, lists, scalars, tags, anchors and aliases, block or flow. */
class YamlGen {
  readonly anchors: string[] = [];
  constructor(readonly rng: Rng) {}

  key(known: readonly string[]): string {
    const { rng } = this;
    const r = rng.next();
    if (r < 0.7) return rng.pick(known);
    if (r < 0.8) return rng.pick(ALL_KEYS);
    if (r < 0.85) return rng.pick(["<<", "~", "null", "true", "1", "'port'", '"port"', "? x"]);
    if (r < 0.9) return rng.chance(0.5) ? `[${this.scalar()}]` : `{${this.flow(1)}: 1}`;
    if (r < 0.95) return JSON.stringify(randomText(rng, 12));
    return rng.chars(rng.range(1, 12), "abcdefghijklmnopqrstuvwxyz-_.0123456789");
  }

  scalar(key?: string): string {
    const { rng } = this;
    const r = rng.next();
    if (key && PLAUSIBLE[key] && r < 0.6) return rng.pick(PLAUSIBLE[key]);
    if (r < 0.85) return rng.pick(SCALARS);
    if (r < 0.9) return String(rng.next() * 10 ** rng.range(-5, 400) * (rng.chance(0.3) ? -1 : 1));
    if (r < 0.97) return JSON.stringify(randomText(rng, 64));
    return rng.chars(rng.range(1, 20), YAML_SPECIAL + "abc123");
  }

  /** `&name ` or an empty string. */
  anchor(): string {
    if (!this.rng.chance(0.1)) return "";
    const name = `a${this.anchors.length}`;
    this.anchors.push(name);
    return `&${name} `;
  }

  alias(): string {
    const { rng } = this;
    return this.anchors.length && rng.chance(0.9)
      ? `*${rng.pick(this.anchors)}`
      : `*${rng.pick(["nope", "a99", "x"])}`;
  }

  /** A value in flow style. */
  flow(depth: number, key?: string): string {
    const { rng } = this;
    const r = rng.next();
    if (depth <= 0 || r < 0.55) return this.scalar(key);
    if (r < 0.62) return this.alias();
    const n = rng.size(6);
    const items = Array.from({ length: n }, () => {
      if (r < 0.8) return this.anchor() + this.flow(depth - 1);
      const k = this.key(rng.pick(Object.values(KEYS)));
      return `${k}: ${this.anchor()}${this.flow(depth - 1, k)}`;
    });
    return r < 0.8 ? `[${items.join(", ")}]` : `{${items.join(", ")}}`;
  }

  /** What follows `key:` or `-`: ` scalar\n`, or `\n` and an indented block. */
  value(indent: number, depth: number, key?: string, section?: string): string {
    const { rng } = this;
    const r = rng.next();
    const sub = section ? KEYS[section] : undefined;
    if (sub && r < 0.8) return ` ${this.anchor()}\n${this.map(indent + 2, depth - 1, sub)}`;
    if (depth <= 0 || r < 0.5) return ` ${this.flow(rng.int(3), key)}\n`;
    if (r < 0.55) return ` ${this.alias()}\n`;
    if (r < 0.6) {
      const style = rng.pick(["|", ">", "|-", ">+", "|2"]);
      const pad = " ".repeat(indent + 2);
      return ` ${style}\n${pad}${this.scalar()}\n${pad}${this.scalar()}\n`;
    }
    if (r < 0.62) return ` ${this.deep()}\n`;
    const prefix = this.anchor();
    if (r < 0.8) return ` ${prefix}\n${this.seq(indent + 2, depth - 1)}`;
    return ` ${prefix}\n${this.map(indent + 2, depth - 1, rng.pick(Object.values(KEYS)))}`;
  }

  map(indent: number, depth: number, known: readonly string[]): string {
    const pad = " ".repeat(indent);
    let out = "";
    for (let i = this.rng.size(5); i >= 0; i--) {
      const key = this.key(known);
      out += `${pad}${key}:${this.value(indent, depth, key)}`;
    }
    return out;
  }

  seq(indent: number, depth: number): string {
    const pad = " ".repeat(indent);
    let out = "";
    for (let i = this.rng.size(4); i >= 0; i--) out += `${pad}-${this.value(indent, depth)}`;
    return out;
  }

  /** Very deep nesting, in flow or block style. */
  deep(): string {
    const { rng } = this;
    const n = rng.pick([20, 100, 500, 2000]);
    switch (rng.int(3)) {
      case 0:
        return "[".repeat(n) + "1" + "]".repeat(rng.chance(0.8) ? n : rng.int(n));
      case 1:
        return "{a: ".repeat(n) + "1" + "}".repeat(n);
      default:
        return "\n" +
          Array.from({ length: Math.min(n, 500) }, (_, i) => `${" ".repeat(i + 2)}- `).join("\n") +
          "x";
    }
  }

  /** A whole file: half near-valid (known keys, plausible values), half wild structures. */
  document(): string {
    const { rng } = this;
    let out = rng.chance(0.1) ? rng.pick(["---\n", "%YAML 1.2\n---\n", "%YAML 1.1\n---\n"]) : "";
    const r = rng.next();
    if (r < 0.5) return out + this.nearValid();
    if (r < 0.55) return out + this.flow(4) + "\n";
    if (r < 0.6) return out + this.seq(0, 3);
    for (let i = rng.range(1, 5); i > 0; i--) {
      const section = rng.chance(0.85) ? rng.pick([...SECTIONS, "log-format"]) : this.key(ALL_KEYS);
      if (section === "log-format") out += `log-format: ${this.scalar("log-format")}\n`;
      else out += `${section}:${this.value(0, 3, section, KEYS[section] ? section : undefined)}`;
    }
    if (rng.chance(0.05)) out += rng.pick(["...\n", "---\nfrontend: {}\n", "--- 2\n"]);
    return out;
  }

  /** Known sections and keys with mostly good values, and now and then one wrong thing. */
  nearValid(): string {
    const { rng } = this;
    const wild = rng.chance(0.5) ? 0.08 : 0;
    let out = "";
    for (const section of [...SECTIONS, "log-format"]) {
      if (rng.chance(0.3)) continue;
      if (section === "log-format") {
        out += `log-format: ${rng.chance(wild) ? this.scalar("log-format") : "json"}\n`;
        continue;
      }
      const flow = rng.chance(0.2);
      const items: string[] = [];
      for (const key of KEYS[section]) {
        if (rng.chance(0.4) || (/file$/.test(key) && !rng.chance(wild))) continue;
        if (/^(metrics|agent)$/.test(section) && key === "host" && !rng.chance(wild)) continue;
        const value = rng.chance(wild) ? this.flow(2, key) : rng.pick(GOOD[key]);
        items.push(`${rng.chance(wild / 2) ? this.key(KEYS[section]) : key}: ${value}`);
      }
      if (rng.chance(wild)) items.push(`${this.key(ALL_KEYS)}: ${this.flow(2)}`);
      out += flow || items.length === 0
        ? `${section}: {${items.join(", ")}}\n`
        : `${section}:\n${items.map((i) => `  ${i}\n`).join("")}`;
    }
    return out;
  }
}

/** Good values, so that near-valid files are accepted. */
const GOOD: Record<string, readonly string[]> = {
  host: ["127.0.0.1", "localhost", "::1", "'[::1]'", "example.com", "db-1.internal"],
  port: ["1", "80", "8008", "65535", "0x50"],
  certfile: ["/nonexistent/cert.pem"],
  keyfile: ["/nonexistent/key.pem"],
  cafile: ["/nonexistent/ca.pem"],
  "tls-min-version": ["TLSv1.2", "TLSv1.3"],
  "tls-ciphers": ["[TLS_AES_128_GCM_SHA256]", "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384"],
  logformat: ["'%a %m %U %s %D %C %%'", "'%a - %m %U'", "plain"],
  scheme: ["http", "https"],
  insecure: ["true", "false"],
  enabled: ["true", "false"],
  timeout: ["0.001", "1", "2", "86400"],
  ttl: ["0", "0.5", "1", "86400"],
  interval: ["0.25", "1"],
  "max-entries": ["1", "1000", "1000000"],
  check: ["/primary", "/replica?lag=1MB", "'/read-only'"],
  mismatch: ["maint", "drain"],
};

/** Small random edits of a text: the files people actually break. */
function mutate(rng: Rng, text: string): string {
  let s = text;
  for (let i = rng.range(1, 4); i > 0; i--) {
    const at = rng.int(s.length + 1);
    switch (rng.int(7)) {
      case 0:
        s = s.slice(0, at) + s.slice(at + rng.range(1, 20));
        break;
      case 1:
        s = s.slice(0, at) + rng.chars(rng.range(1, 4), YAML_SPECIAL) + s.slice(at);
        break;
      case 2:
        s = s.slice(0, at) + rng.pick(["\t", "\0", "\ufeff", "\r", "\u2028", "\ud800"]) +
          s.slice(at);
        break;
      case 3: {
        const lines = s.split("\n");
        const j = rng.int(lines.length);
        lines.splice(j, 0, lines[rng.int(lines.length)]);
        s = lines.join("\n");
        break;
      }
      case 4: {
        const lines = s.split("\n");
        const j = rng.int(lines.length);
        lines[j] = " ".repeat(rng.int(5)) + lines[j].trimStart();
        s = lines.join("\n");
        break;
      }
      case 5:
        s = s.slice(0, at);
        break;
      default:
        s = s.slice(0, at) + randomText(rng, 8) + s.slice(at);
    }
  }
  return s;
}

const SECTION_OR_KEY = [
  "log-format",
  ...SECTIONS.flatMap((s) => [s, ...KEYS[s].map((k) => `${s}.${k}`)]),
].map((k) => k.replace(/[.-]/g, "\\$&")).join("|");
/** What every problem looks like: the file (and position), then the key, the section, or the syntax. */
const PROBLEM = new RegExp(
  `^f\\.yml(?::\\d+:\\d+)?: (?:YAML syntax: |the configuration must be a mapping|\\.\\.\\. and \\d+ more problems$|` +
    `unknown section '|unknown key '(?:${SECTIONS.join("|")})\\.|(?:${SECTION_OR_KEY}): )`,
);

/** The invariants of a Config that parseConfig accepted. */
function assertValidConfig(c: Config) {
  const port = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;
  assert.equal(c.file, "f.yml");
  assert.ok(port(c.frontend.port) && port(c.backend.port), "ports");
  assert.ok(typeof c.frontend.host === "string" && c.frontend.host !== "", "frontend.host");
  assert.ok(typeof c.backend.host === "string" && c.backend.host !== "", "backend.host");
  assert.ok(c.frontend.tls === undefined, "no readable certificate was ever named");
  assert.ok(["http", "https"].includes(c.backend.scheme), "scheme");
  assert.ok(c.backend.timeout > 0 && c.backend.timeout <= 86400, "timeout");
  assert.ok(c.cache.ttl >= 0 && c.cache.ttl <= 86400, "ttl");
  assert.ok(c.cache.interval > 0 && c.cache.interval <= 86400, "interval");
  assert.ok(Number.isInteger(c.cache.maxEntries) && c.cache.maxEntries >= 1, "max-entries");
  assert.ok(typeof c.metrics.enabled === "boolean", "metrics.enabled");
  assert.ok(c.metrics.listener === undefined || port(c.metrics.listener.port), "metrics.port");
  assert.ok(["text", "json"].includes(c.logFormat), "log-format");
  assert.ok(typeof c.frontend.logformat === "string", "logformat");
}

/** Runs parseConfig on `text` and checks that the outcome is defined; returns it. */
async function checkConfig(text: string, where: string): Promise<"ok" | "refused"> {
  const timeout = Promise.withResolvers<never>();
  const timer = setTimeout(() => timeout.reject(new Error("parseConfig hung for 10s")), 10_000);
  try {
    const config = await Promise.race([parseConfig(text, "f.yml"), timeout.promise]);
    assertValidConfig(config);
    return "ok";
  } catch (e) {
    if (!(e instanceof ConfigError)) {
      assert.fail(`${where}: parseConfig threw ${(e as Error)?.stack ?? e}\ninput: ${show(text)}`);
    }
    assert.ok(Array.isArray(e.problems) && e.problems.length > 0, `${where}: no problems`);
    for (const p of e.problems) {
      if (typeof p !== "string" || !PROBLEM.test(p)) {
        assert.fail(`${where}: problem names no key: ${show(String(p))}\ninput: ${show(text)}`);
      }
    }
    return "refused";
  } finally {
    clearTimeout(timer);
  }
}

Deno.test(`fuzz: parseConfig on random bytes (seed ${SEED}, ${RUNS} runs)`, async () => {
  const outcomes = { ok: 0, refused: 0 };
  for (let i = 0; i < RUNS; i++) {
    const rng = new Rng(caseSeed(0, i));
    let text = randomText(rng, 4000);
    if (rng.chance(0.3)) text = `frontend:\n  port: 80\n${text}`;
    outcomes[await checkConfig(text, `FUZZ_SEED=${SEED} bytes case ${i}`)]++;
  }
  if (VERBOSE) console.log("parseConfig/bytes", outcomes);
});

Deno.test(`fuzz: parseConfig on random YAML structures (seed ${SEED}, ${RUNS} runs)`, async () => {
  const outcomes = { ok: 0, refused: 0 };
  for (let i = 0; i < RUNS; i++) {
    const rng = new Rng(caseSeed(1, i));
    let text = new YamlGen(rng).document();
    if (rng.chance(0.25)) text = mutate(rng, text);
    outcomes[await checkConfig(text, `FUZZ_SEED=${SEED} yaml case ${i}`)]++;
  }
  if (VERBOSE) console.log("parseConfig/yaml", outcomes);
  if (RUNS >= 100) {
    assert.ok(outcomes.ok > 0 && outcomes.refused > 0, `the generator reaches both outcomes`);
  }
});

Deno.test("fuzz: parseConfig regressions found by the fuzzer", async () => {
  for (
    const text of [
      "frontend:\n  tls-ciphers: [{toString: 1}]\n",
      "? {a: 1}\n: 2\n",
      "frontend:\n  ? [a]\n  : 1\n",
      "frontend:\n  <<: {port: 5}\n",
      "a: &x [1]\nfrontend:\n  port: *x\n",
      "frontend: &a\n  host: *a\n",
      "frontend:\n  host: " + "[".repeat(5000) + "]".repeat(5000) + "\n",
      "[".repeat(3000),
      // A YAML 1.1 merge key whose source is not a map: yaml's toJSON() throws a plain Error.
      "cache:\n  ttl: {<<: 1}\n",
      "log-format: {<<: 1}\n",
      "frontend:\n  tls-ciphers: [{<<: 1}]\n",
      // A mapping used as a key, whose own merge key is broken (String() of it throws).
      "metrics:\n  {<<: 1}: n\n",
      "{<<: 1}: n\n",
    ]
  ) {
    await checkConfig(text, "regression");
  }
});

// ---------------------------------------------------------------------------------------------
// b. routeRequest: random methods and targets.

const METHODS = [
  "GET",
  "HEAD",
  "OPTIONS",
  "POST",
  "PUT",
  "DELETE",
  "PATCH",
  "CONNECT",
  "TRACE",
  "PRI",
  "get",
  "Get",
  "",
  "GET ",
  "G\u0000T",
] as const;
const TARGET_PIECES = [
  ...HEALTH_CHECK_PATHS,
  "/health",
  "/metrics",
  "/patroni",
  "/restart",
  "/failover",
  "..",
  "/..",
  "/../",
  "//",
  "/",
  ".",
  "%2e%2e",
  "%2F",
  "%2f",
  "%00",
  "%0d%0a",
  "%",
  "%z",
  "%zz",
  "%C0%AF",
  "%ff",
  "?",
  "??",
  "&",
  "&&&",
  "=",
  "==",
  "+",
  "#",
  ";",
  " ",
  "\r\n",
  "\u0000",
  "\ud800",
  "\u00e9",
  "\ud83d\ude00",
  "lag=1MB",
  "tag_x=y",
  "lag=",
  "http://evil",
  "https://user:pw@evil:1/",
  "*",
  "\\",
];

function randomMethod(rng: Rng): string {
  const r = rng.next();
  if (r < 0.7) return rng.pick(CHECK_METHODS);
  if (r < 0.9) return rng.pick(METHODS);
  return randomText(rng, 12);
}

function randomQuery(rng: Rng): string {
  const parts: string[] = [];
  const n = rng.chance(0.15) ? rng.range(10, 40) : rng.size(8);
  for (let i = 0; i < n; i++) {
    const piece = () =>
      rng.chance(0.5)
        ? rng.chars(rng.size(6), "abcxyz_lagtg0123456789")
        : Array.from({ length: rng.size(4) }, () => rng.pick(TARGET_PIECES)).join("") +
          (rng.chance(0.3) ? randomText(rng, 6) : "");
    parts.push(rng.chance(0.8) ? `${piece()}=${piece()}` : piece());
  }
  return parts.join(rng.chance(0.9) ? "&" : rng.pick([";", "&&", "&amp;"]));
}

function randomTarget(rng: Rng): string {
  const r = rng.next();
  let target: string;
  if (r < 0.45) {
    target = rng.pick([...HEALTH_CHECK_PATHS, "/health", "/metrics"]);
    if (rng.chance(0.8)) target += "?" + randomQuery(rng);
  } else if (r < 0.8) {
    target = Array.from({ length: rng.range(1, 6) }, () => rng.pick(TARGET_PIECES)).join("");
    if (rng.chance(0.4)) target += "?" + randomQuery(rng);
  } else if (r < 0.9) {
    target = randomText(rng, 300);
  } else {
    const base = rng.pick([...HEALTH_CHECK_PATHS, "/x", "/health"]);
    const fill = rng.pick(["a", "a=1&", "&", "%41", "\u00e9", ".."]);
    target = `${base}?` +
      fill.repeat(Math.ceil(rng.pick([MAX_TARGET_LENGTH - base.length - 1, 2048, 5000]) / 4));
    target = target.slice(0, rng.pick([MAX_TARGET_LENGTH, MAX_TARGET_LENGTH + 1, target.length]));
  }
  return target;
}

/** The canonical query of `query`, computed independently of src/check/routes.ts. */
function expectedQuery(query: string): { count: number; encoded: string } {
  const params = [...new URLSearchParams(query)];
  const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  params.sort((a, b) => byCodeUnits(a[0], b[0]) || byCodeUnits(a[1], b[1]));
  return { count: params.length, encoded: new URLSearchParams(params).toString() };
}

function checkRoute(method: string, target: string, metricsOnFrontend: boolean, where: string) {
  const ctx = `${where}: routeRequest(${show(method)}, ${show(target)}, ${metricsOnFrontend})`;
  let route: Route;
  try {
    route = routeRequest(method, target, metricsOnFrontend);
  } catch (e) {
    return assert.fail(`${ctx} threw ${(e as Error)?.stack ?? e}`);
  }
  assert.deepEqual(routeRequest(method, target, metricsOnFrontend), route, `${ctx}: deterministic`);
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? "" : target.slice(q + 1);
  const tooLong = target.length > MAX_TARGET_LENGTH;
  const checkMethod = (CHECK_METHODS as readonly string[]).includes(method);
  const expected = expectedQuery(query);
  const isCheck = !tooLong && checkMethod && HEALTH_CHECK_PATHS.has(path) &&
    expected.count <= MAX_QUERY_PARAMS;
  const detail = `${ctx} -> ${JSON.stringify(route)}`;
  switch (route.kind) {
    case "check": {
      assert.ok(isCheck, `only allowed checks are forwarded: ${detail}`);
      assert.equal(route.path, path, detail);
      assert.ok(route.key.startsWith(path), detail);
      const rest = route.key.slice(path.length);
      if (expected.count === 0) {
        assert.equal(rest, "", `no parameters, no query: ${detail}`);
      } else {
        assert.equal(
          rest,
          `?${expected.encoded}`,
          `query re-encoded from its parameters: ${detail}`,
        );
        // Nothing that could split a request line or a header reaches the backend.
        assert.match(
          rest,
          /^\?[A-Za-z0-9*\-._%+=&]*$/,
          `forwarded query is plain ASCII: ${detail}`,
        );
      }
      break;
    }
    case "health":
      assert.ok(!tooLong && path === "/health" && checkMethod, detail);
      break;
    case "metrics":
      assert.ok(!tooLong && metricsOnFrontend && path === "/metrics", detail);
      assert.ok(method === "GET" || method === "HEAD", detail);
      break;
    case "error":
      assert.ok([400, 404, 405, 414].includes(route.status), detail);
      assert.ok(!isCheck, `an allowed check was refused: ${detail}`);
      assert.equal(route.status === 414, tooLong, `414 exactly when too long: ${detail}`);
      if (route.status === 404) {
        assert.ok(
          !HEALTH_CHECK_PATHS.has(path) && path !== "/health" &&
            !(path === "/metrics" && metricsOnFrontend),
          `404 on a known path: ${detail}`,
        );
      }
      if (route.status === 405) {
        assert.ok(route.allow && !route.allow.includes(method), `405 with Allow: ${detail}`);
      }
      if (route.status === 400) {
        assert.ok(expected.count > MAX_QUERY_PARAMS, `400 for a parsable query: ${detail}`);
      }
      assert.ok(typeof route.message === "string" && route.message !== "", detail);
      break;
    default:
      assert.fail(`unknown route kind: ${detail}`);
  }
}

Deno.test(`fuzz: routeRequest on random methods and targets (seed ${SEED})`, () => {
  const kinds: Record<string, number> = {};
  for (let i = 0; i < RUNS * 20; i++) {
    const rng = new Rng(caseSeed(2, i));
    const method = randomMethod(rng);
    const target = randomTarget(rng);
    const metrics = rng.chance(0.5);
    checkRoute(method, target, metrics, `FUZZ_SEED=${SEED} route case ${i}`);
    const route = routeRequest(method, target, metrics);
    const k = route.kind === "error" ? String(route.status) : route.kind;
    kinds[k] = (kinds[k] ?? 0) + 1;
  }
  if (VERBOSE) console.log("routeRequest", kinds);
  if (RUNS >= 100) {
    for (const k of ["check", "health", "metrics", "400", "404", "405", "414"]) {
      assert.ok(kinds[k] > 0, `the generator reaches ${k}: ${JSON.stringify(kinds)}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// c. Black box: random raw requests over TCP and over TLS to a running patroniglue.

/** Bytes of a string, one byte per code unit (so that 0x80-0xff go on the wire as such). */
const raw = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);

function randomHeaders(rng: Rng, eol: string, clean: boolean): string {
  let out = "";
  if (clean || rng.chance(0.85)) out += `Host: 127.0.0.1${eol}`;
  const n = rng.chance(0.05) ? rng.range(100, 400) : rng.size(6);
  for (let i = 0; i < n; i++) {
    const r = clean ? 0.7 + rng.next() * 0.3 : rng.next();
    if (r < 0.15) out += `Content-Length: ${rng.pick(["0", "5", "-1", "1e3", "99999999999", ""])}`;
    else if (r < 0.25) out += `Transfer-Encoding: ${rng.pick(["chunked", "gzip, chunked", "x"])}`;
    else if (r < 0.3) {
      out += rng.pick(["Expect: 100-continue", "Upgrade: h2c", "Upgrade: websocket"]);
    } else if (r < 0.4) out += `Connection: ${rng.pick(["close", "keep-alive", "upgrade", "x"])}`;
    else if (r < 0.45) out += `X-Big: ${"x".repeat(rng.pick([1000, 10_000, 100_000, 1_000_000]))}`;
    else if (r < 0.55) out += latin1(rng.bytes(rng.size(100)));
    else if (r < 0.6) out += ` folded ${randomText(rng, 10)}`;
    else if (r < 0.65) out += `${rng.chars(rng.range(1, 10), "ab: \t")}`;
    else if (r < 0.7) out += `${rng.chars(rng.range(1, 12), "abcXYZ-_")}: ${randomText(rng, 40)}`;
    else out += `${rng.chars(rng.range(1, 12), "abcXYZ-_")}: ${rng.chars(rng.size(40), PRINTABLE)}`;
    out += eol;
  }
  return out;
}

const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("");

/** `target` with every character that a request line cannot carry percent-encoded (as UTF-8). */
function uriSafe(target: string): string {
  return target.replace(
    /[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/gu,
    (c) => [...new TextEncoder().encode(c)].map((b) => `%${b.toString(16).toUpperCase()}`).join(""),
  );
}

/** One random exchange: the bytes to send, split into writes. */
function randomRequest(rng: Rng): { chunks: Uint8Array[]; closeWrite: boolean } {
  const r = rng.next();
  let bytes: Uint8Array;
  if (r < 0.1) {
    bytes = rng.bytes(rng.size(4000));
  } else if (r < 0.15) {
    bytes = rng.pick([
      raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
      raw("\r\n\r\n\r\n"),
      raw("GET /primary\r\n"),
      raw(`GET /primary HTTP/1.1\r\n${"X: y\r\n".repeat(5000)}\r\n`),
      new Uint8Array(0),
    ]);
  } else {
    // Half the exchanges are well-formed requests (random methods, targets and headers that
    // the runtime lets through), so that they reach the handler; the rest is broken anyhow.
    const clean = rng.chance(0.5);
    const eol = clean || rng.chance(0.9) ? "\r\n" : rng.pick(["\n", "\r", "\n\r"]);
    const requests: Uint8Array[] = [];
    for (let n = rng.chance(0.1) ? rng.range(2, 5) : 1; n > 0; n--) {
      const method = clean
        ? rng.pick([...CHECK_METHODS, ...CHECK_METHODS, "POST", "PUT", "DELETE", "TRACE", "get"])
        : rng.chance(0.1)
        ? rng.pick(METHODS)
        : randomMethod(rng);
      const target = clean
        ? uriSafe(randomTarget(rng)).replace(/^(?!\/)/, rng.chance(0.8) ? "/" : "")
        : rng.chance(0.1)
        ? rng.pick(["*", "http://127.0.0.1/primary", "127.0.0.1:80", "primary", ""])
        : rng.chance(0.7)
        ? uriSafe(randomTarget(rng))
        : randomTarget(rng);
      const version = clean || rng.chance(0.85)
        ? rng.pick(["HTTP/1.1", "HTTP/1.0"])
        : rng.pick(["HTTP/2.0", "HTTP/0.9", "HTTP/1.1x", "", "http/1.1", "HTTP/9.9"]);
      const sep = clean || rng.chance(0.95) ? " " : rng.pick(["  ", "\t", ""]);
      const head = `${method}${sep}${target}${sep}${version}${eol}`;
      let text = `${head}${randomHeaders(rng, eol, clean)}${eol}`;
      if (rng.chance(0.15)) {
        text += rng.pick(["hello", "5\r\nhello\r\n0\r\n\r\n", "zz\r\n", "0\r\n\r\n"]);
      }
      requests.push(raw(text));
    }
    bytes = concat(requests);
    if (!clean && rng.chance(0.3)) bytes = bytes.slice(0, rng.int(bytes.length + 1));
  }
  const chunks: Uint8Array[] = [];
  if (rng.chance(0.2) && bytes.length > 1) {
    let at = 0;
    while (at < bytes.length) {
      const n = rng.range(1, Math.max(1, Math.floor(bytes.length / 3)));
      chunks.push(bytes.slice(at, at + n));
      at += n;
    }
  } else chunks.push(bytes);
  return { chunks, closeWrite: rng.chance(0.2) };
}

/** Sends `chunks`, reads until the server closes or is quiet for `idleMs`, then closes. */
async function exchange(
  scheme: Scheme,
  port: number,
  chunks: Uint8Array[],
  closeWrite: boolean,
  idleMs = 150,
): Promise<Uint8Array> {
  const conn = await connectClient(scheme, port);
  const received: Uint8Array[] = [];
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  let lastActivity = performance.now();
  let readerDone = false;
  const reading = (async () => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        received.push(buf.slice(0, n));
        lastActivity = performance.now();
      }
    } catch { /* reset, or closed by us */ }
    readerDone = true;
  })();
  const writing = (async () => {
    try {
      for (const chunk of chunks) {
        for (let at = 0; at < chunk.length;) at += await conn.write(chunk.subarray(at));
        if (chunks.length > 1) await sleep(10);
      }
      if (closeWrite) await conn.closeWrite();
    } catch { /* the server closed or reset the connection */ }
    lastActivity = performance.now();
  })();
  // Writes may block (a server that stops reading): they get 5 s; then the reply gets `idleMs`
  // of quiet, or less if the server closes first.
  const deadline = performance.now() + 5000;
  await within(writing, 5000);
  for (;;) {
    const wait = Math.min(lastActivity + idleMs, deadline) - performance.now();
    if (readerDone || wait <= 0) break;
    await within(reading, wait);
  }
  close();
  await Promise.all([reading, writing]);
  return concat(received);
}

/** The status codes of every HTTP status line in a reply. */
function statusLines(reply: Uint8Array): number[] {
  const text = latin1(reply);
  return [...text.matchAll(/(?:^|\r\n)HTTP\/\d\.\d (\d{3})/g)].map((m) => Number(m[1]));
}

for (const scheme of SCHEMES) {
  Deno.test(`fuzz: random raw requests over ${scheme} never crash patroniglue (seed ${SEED}, ${RAW_RUNS} requests)`, () =>
    fuzzRawRequests(scheme));
}

/** The same requests over either scheme: TLS carries them to the same HTTP/1 parser. */
async function fuzzRawRequests(scheme: Scheme) {
  await using fake = await FakePatroni.start();
  const tls = scheme === "https" ? { frontend: TLS_FRONTEND } : {};
  const file = await writeConfig(configText(freePort(), fake.port, tls));
  using client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(fixture("ca.pem"))] });
  try {
    await using glue = await GlueProcess.start(["-config", file, "-verbose"]);
    const port = Number(new URL(glue.url).port);
    const statuses: Record<string, number> = {};
    const bad: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < RAW_RUNS) {
        const i = next++;
        const rng = new Rng(caseSeed(3, i));
        const { chunks, closeWrite } = randomRequest(rng);
        const reply = await exchange(scheme, port, chunks, closeWrite);
        const codes = statusLines(reply);
        for (const code of codes) {
          statuses[code] = (statuses[code] ?? 0) + 1;
          if (code >= 500 && code !== 503) {
            bad.push(`case ${i}: ${code} for ${show(latin1(concat(chunks)), 300)}`);
          }
        }
        if (codes.length === 0) {
          const what = reply.length ? "no status line" : "closed";
          statuses[what] = (statuses[what] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: 12 }, worker));
    if (VERBOSE) console.log("raw replies", statuses);

    for (
      const [path, status] of [["/health", 200], ["/primary", 200], ["/replica", 503]] as const
    ) {
      const res = await fetch(`${glue.url}${path}`, { client });
      await res.body?.cancel();
      assert.equal(res.status, status, `${path} after the fuzzing`);
    }
    const { code, stderr } = await glue.stop("SIGTERM");
    assert.deepEqual(bad, [], `FUZZ_SEED=${SEED}: 5xx answers other than 503`);
    assert.equal(code, 0, `clean exit after SIGTERM:\n${stderr.slice(-2000)}`);
    const lines = stderr.split("\n").filter((l) => l !== "");
    for (const line of lines) {
      // One log line per record: a forged or multi-line record, or runtime output, fails here.
      assert.match(
        line,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|NOTICE|WARN) [\x20-\x7e]*$/,
        `FUZZ_SEED=${SEED}: unexpected stderr line`,
      );
    }
    assert.ok(!/Uncaught|panicked|RUST_BACKTRACE|\bat .*\.ts:\d+/.test(stderr), stderr);
    assert.ok(lines.some((l) => / NOTICE stopped$/.test(l)), "it stopped cleanly");
  } finally {
    await Deno.remove(file);
  }
}
