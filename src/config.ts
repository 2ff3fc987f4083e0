// Configuration: the YAML file -> a typed, validated Config with defaults; every key is declared here.
import { parseYaml, toValue, YamlError, type YamlNode } from "./yaml.ts";
import { DEFAULT_LOG_FORMAT, LOG_FORMAT_PLACEHOLDERS } from "./log.ts";
import {
  GO_CIPHER_SUITES,
  type KeyKind,
  keyKindOf,
  loadPemSupport,
  offerableSuites,
  parseCertificates,
  parsePrivateKey,
  runtimeSuites,
  TLS_VERSIONS,
  type TlsVersionName,
} from "./tls.ts";

/** A certificate and its key, read from `certfile`/`keyfile`. */
export interface KeyPair {
  certfile: string;
  keyfile: string;
  cert: string;
  key: string;
  keyKind: KeyKind;
}

/** `frontend:` where and how patroniglue listens. */
export interface FrontendConfig {
  /** @default {"localhost"} */
  host: string;
  /** @default {80} */
  port: number;
  /** HTTPS when set (from `certfile` and `keyfile`). @default {undefined} */
  tls?: KeyPair;
  /** @default {"TLSv1.2"} */
  tlsMinVersion: TlsVersionName;
  /** Go cipher-suite names; undefined means the runtime's defaults. @default {undefined} */
  tlsCiphers?: string[];
  /** Access-log format (`%a %m %U %s %D %C`). @default {"%a - %m %U"} */
  logformat: string;
}

/** `backend:` the Patroni REST API. */
export interface BackendConfig {
  /** @default {"127.0.0.1"} */
  host: string;
  /** @default {8008} */
  port: number;
  /** @default {"http"} */
  scheme: "http" | "https";
  /** Skip certificate checks. @default {false} */
  insecure: boolean;
  /** Trusted CAs (or a self-signed certificate) PEM, from `cafile`, else the system bundle for https. @default {undefined} */
  ca?: { cafile: string; pem: string };
  /** Client certificate for Patroni's `verify_client`. @default {undefined} */
  client?: KeyPair;
  /** Seconds per backend request. @default {2} */
  timeout: number;
}

/** `cache:` how long answers live. */
export interface CacheConfig {
  /** Seconds an answer (or a failure) is served; 0 disables caching, not coalescing. @default {1} */
  ttl: number;
  /** Seconds between sweeps that free expired entries. @default {0.25} */
  interval: number;
  /** Entries kept at most. @default {1000} */
  maxEntries: number;
}

/** `metrics:` the Prometheus endpoint. */
export interface MetricsConfig {
  /** @default {true} */
  enabled: boolean;
  /** A separate listener when `port` is set; otherwise `/metrics` is on the frontend. @default {undefined} */
  listener?: { host: string; port: number };
}

/** The whole validated configuration. */
export interface Config {
  file: string;
  frontend: FrontendConfig;
  backend: BackendConfig;
  cache: CacheConfig;
  metrics: MetricsConfig;
  /** `log-format`: text or json. @default {"text"} */
  logFormat: "text" | "json";
  /** Things worth a warning at start (never errors). */
  warnings: string[];
}

/** Why a configuration was refused: every problem found, each naming file, key and reason. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly problems: string[];
  constructor(problems: string[], file = "") {
    const shown = problems.length > MAX_PROBLEMS
      ? [
        ...problems.slice(0, MAX_PROBLEMS),
        `${file}: ... and ${problems.length - MAX_PROBLEMS} more problems`,
      ]
      : problems;
    super(shown.join("\n"));
    this.problems = shown;
  }
}

/** Problems reported at most (a broken file can have thousands). */
const MAX_PROBLEMS = 20;

type Value = unknown;
type Check = (value: Value) => Value;

const fail = (message: string): never => {
  throw new RangeError(message);
};
const show = (v: Value): string => {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null || typeof v !== "object") return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return Array.isArray(v) ? "a list" : "a mapping";
  }
};

const string: Check = (v) =>
  typeof v === "string" && v !== "" ? v : fail(`must be a non-empty string: got ${show(v)}`);
const host: Check = (v) => {
  const s = string(v) as string;
  if (s.includes("://")) fail(`must be a host name or IP address, not a URL: got ${show(s)}`);
  if (!/^(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z._:%-]+)$/.test(s)) {
    fail(`must be a host name or IP address: got ${show(s)}`);
  }
  return s.startsWith("[") ? s.slice(1, -1) : s;
};
const port: Check = (v) =>
  Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535
    ? v
    : fail(`must be an integer from 1 to 65535: got ${show(v)}`);
const bool: Check = (v) =>
  typeof v === "boolean" ? v : fail(`must be true or false: got ${show(v)}`);
const seconds = (min: number, inclusive: boolean): Check => (v) => {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    return fail(`must be a number of seconds: got ${show(v)}`);
  }
  if (inclusive ? v < min : v <= min) {
    return fail(`must be ${inclusive ? "at least" : "more than"} ${min} seconds: got ${v}`);
  }
  return v <= 86400 ? v : fail(`must be at most 86400 seconds: got ${v}`);
};
const oneOf = (choices: readonly string[]): Check => (v) =>
  typeof v === "string" && choices.includes(v)
    ? v
    : fail(`must be one of ${choices.join(", ")}: got ${show(v)}`);
const cipherList: Check = (v) => {
  const names = typeof v === "string" ? v.split(/[\s,:]+/).filter(Boolean) : v;
  if (!Array.isArray(names) || names.length === 0) {
    return fail("must be a list of Go cipher-suite names");
  }
  for (const name of names) {
    if (typeof name !== "string" || !GO_CIPHER_SUITES.has(name)) {
      fail(`unknown cipher suite ${show(name)} (Go crypto/tls names, e.g. TLS_AES_128_GCM_SHA256)`);
    }
  }
  return names;
};
const logformat: Check = (v) => {
  const s = string(v) as string;
  const bad = s.match(/%./g)?.find((p) =>
    !(LOG_FORMAT_PLACEHOLDERS as readonly string[]).includes(p)
  );
  return bad ? fail(`unknown placeholder ${bad} (known: ${LOG_FORMAT_PLACEHOLDERS.join(" ")})`) : s;
};
const entryCount: Check = (v) =>
  Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 1_000_000
    ? v
    : fail(`must be an integer from 1 to 1000000: got ${show(v)}`);

/** Where Go's crypto/x509 looks for the system's CA bundle on Linux, BSD and macOS. */
const SYSTEM_CA_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/pki/tls/cacert.pem",
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
  "/etc/ssl/cert.pem",
];

/** Every key of the file, with its check and default; the one place a key is declared. */
const SCHEMA: Record<string, Record<string, { check: Check; default?: Value }>> = {
  frontend: {
    host: { check: host, default: "localhost" },
    port: { check: port, default: 80 },
    certfile: { check: string },
    keyfile: { check: string },
    "tls-min-version": { check: oneOf(TLS_VERSIONS), default: "TLSv1.2" },
    "tls-ciphers": { check: cipherList },
    logformat: { check: logformat, default: DEFAULT_LOG_FORMAT },
  },
  backend: {
    host: { check: host, default: "127.0.0.1" },
    port: { check: port, default: 8008 },
    scheme: { check: oneOf(["http", "https"]), default: "http" },
    insecure: { check: bool, default: false },
    cafile: { check: string },
    certfile: { check: string },
    keyfile: { check: string },
    timeout: { check: seconds(0, false), default: 2 },
  },
  cache: {
    ttl: { check: seconds(0, true), default: 1 },
    interval: { check: seconds(0, false), default: 0.25 },
    "max-entries": { check: entryCount, default: 1000 },
  },
  metrics: {
    enabled: { check: bool, default: true },
    host: { check: host },
    port: { check: port },
  },
};
const TOP_LEVEL_SCALARS: Record<string, { check: Check; default: Value }> = {
  "log-format": { check: oneOf(["text", "json"]), default: "text" },
};

/** Reads and validates a configuration file; throws {@linkcode ConfigError} naming every problem. */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new ConfigError([`${file}: cannot read configuration file: ${reason(e)}`]);
  }
  return await parseConfig(text, file);
}

/** Validates YAML text as a configuration, reading the PEM files it names. */
export async function parseConfig(text: string, file: string): Promise<Config> {
  let root: YamlNode | null;
  try {
    root = parseYaml(text);
  } catch (e) {
    if (!(e instanceof YamlError)) throw e;
    throw new ConfigError([`${file}:${e.line}:${e.col}: YAML syntax: ${e.message}`], file);
  }
  const problems: string[] = [];
  const at = (node: YamlNode | null | undefined) =>
    node ? `${file}:${node.line}:${node.col}` : file;

  const values: Record<string, Record<string, Value>> = {};
  const nodes: Record<string, YamlNode | undefined> = {};
  for (const section of Object.keys(SCHEMA)) values[section] = {};
  const topLevel: Record<string, Value> = {};

  if (root !== null && !(root.kind === "scalar" && root.value === null) && root.kind !== "map") {
    throw new ConfigError([`${at(root)}: the configuration must be a mapping of sections`]);
  }
  for (const pair of root?.kind === "map" ? root.items : []) {
    const name = keyName(pair.key);
    const keyNode = pair.key;
    const valueNode = pair.value;
    if (name in TOP_LEVEL_SCALARS) {
      try {
        topLevel[name] = TOP_LEVEL_SCALARS[name].check(toValue(valueNode) as Value);
      } catch (e) {
        problems.push(`${at(valueNode ?? keyNode)}: ${name}: ${reason(e)}`);
      }
      continue;
    }
    const schema = SCHEMA[name];
    if (!schema) {
      problems.push(`${at(keyNode)}: unknown section '${name}'${suggest(name, knownTopLevel())}`);
      continue;
    }
    if (valueNode === null || (valueNode.kind === "scalar" && valueNode.value === null)) continue;
    if (valueNode.kind !== "map") {
      problems.push(`${at(valueNode)}: ${name}: must be a mapping of keys`);
      continue;
    }
    for (const item of valueNode.items) {
      const key = keyName(item.key);
      const path = `${name}.${key}`;
      const node = item.value;
      const spec = schema[key];
      if (!spec) {
        problems.push(
          `${at(item.key)}: unknown key '${path}'${suggest(key, Object.keys(schema))}`,
        );
        continue;
      }
      try {
        values[name][key] = spec.check(toValue(node) as Value);
        nodes[path] = node ?? item.key;
      } catch (e) {
        problems.push(`${at(node ?? item.key)}: ${path}: ${reason(e)}`);
      }
    }
  }
  for (const [section, schema] of Object.entries(SCHEMA)) {
    for (const [key, spec] of Object.entries(schema)) {
      if (values[section][key] === undefined && spec.default !== undefined) {
        values[section][key] = spec.default;
      }
    }
  }
  const where = (path: string) => `${nodes[path] ? at(nodes[path]) : file}: ${path}`;
  const warnings: string[] = [];
  const f = values.frontend, b = values.backend, c = values.cache, m = values.metrics;

  const readPair = async (section: string): Promise<KeyPair | undefined> => {
    const v = values[section];
    if (v.certfile === undefined && v.keyfile === undefined) return undefined;
    if (v.certfile === undefined || v.keyfile === undefined) {
      const [have, missing] = v.certfile === undefined
        ? ["keyfile", "certfile"]
        : ["certfile", "keyfile"];
      problems.push(`${where(`${section}.${have}`)}: is set but ${section}.${missing} is not`);
      return undefined;
    }
    const cert = await readPem(`${section}.certfile`, v.certfile as string);
    const key = await readPem(`${section}.keyfile`, v.keyfile as string);
    if (cert === undefined || key === undefined) return undefined;
    try {
      const { leaf } = parseCertificates(cert);
      const keyObject = parsePrivateKey(key);
      if (!leaf.checkPrivateKey(keyObject)) {
        problems.push(
          `${
            where(`${section}.keyfile`)
          }: ${v.keyfile} does not match the certificate in ${v.certfile}`,
        );
        return undefined;
      }
      if (Date.parse(leaf.validTo) < Date.now()) {
        warnings.push(`${section}.certfile: ${v.certfile} expired on ${leaf.validTo}`);
      }
      return {
        certfile: v.certfile as string,
        keyfile: v.keyfile as string,
        cert,
        key,
        keyKind: keyKindOf(leaf),
      };
    } catch (e) {
      const isKey = /private key/.test(reason(e));
      const path = `${section}.${isKey ? "keyfile" : "certfile"}`;
      problems.push(`${where(path)}: ${isKey ? v.keyfile : v.certfile}: ${reason(e)}`);
      return undefined;
    }
  };
  const readPem = async (path: string, filename: string): Promise<string | undefined> => {
    try {
      await loadPemSupport();
      return await Deno.readTextFile(filename);
    } catch (e) {
      problems.push(`${where(path)}: cannot read ${filename}: ${reason(e)}`);
      return undefined;
    }
  };

  const tls = await readPair("frontend");
  const client = await readPair("backend");
  let ca: BackendConfig["ca"];
  if (b.cafile !== undefined) {
    const pem = await readPem("backend.cafile", b.cafile as string);
    if (pem !== undefined) {
      try {
        parseCertificates(pem);
        ca = { cafile: b.cafile as string, pem };
      } catch (e) {
        problems.push(`${where("backend.cafile")}: ${b.cafile}: ${reason(e)}`);
      }
    }
  }
  if (b.scheme === "https" && b.insecure !== true && b.cafile === undefined) {
    // The system's roots, read where Go reads them (the runtime would need --allow-sys for its own).
    for (const bundle of SYSTEM_CA_BUNDLES) {
      try {
        ca = { cafile: bundle, pem: await Deno.readTextFile(bundle) };
        break;
      } catch { /* not on this system */ }
    }
    if (!ca) {
      problems.push(
        `${where("backend.scheme")}: https without backend.cafile, and no system CA bundle found (${
          SYSTEM_CA_BUNDLES.join(", ")
        }); set backend.cafile`,
      );
    }
  }
  if (b.insecure === true && b.cafile !== undefined) {
    problems.push(
      `${
        where("backend.insecure")
      }: is true, which disables the check that backend.cafile asks for; set one of them`,
    );
  }
  if (b.scheme === "http") {
    for (const key of ["insecure", "cafile", "certfile", "keyfile"]) {
      if (b[key] !== undefined && b[key] !== false) {
        warnings.push(`backend.${key} has no effect with scheme http`);
      }
    }
  }
  const ciphers = f["tls-ciphers"] as string[] | undefined;
  if (tls === undefined) {
    for (const key of ["tls-min-version", "tls-ciphers"]) {
      if (nodes[`frontend.${key}`]) {
        warnings.push(`frontend.${key} has no effect without frontend.certfile and keyfile`);
      }
    }
  } else {
    const min = f["tls-min-version"] as TlsVersionName;
    if (nodes["frontend.tls-min-version"] && min !== "TLSv1.2" && min !== "TLSv1.3") {
      warnings.push(
        `frontend.tls-min-version ${min}: TLS 1.0 and 1.1 are never offered by this runtime; the minimum is TLSv1.2`,
      );
    }
    if (ciphers) {
      const offered = offerableSuites(ciphers, tls.keyKind);
      const runtime = runtimeSuites(tls.keyKind);
      if (offered.length === 0) {
        problems.push(
          `${
            where("frontend.tls-ciphers")
          }: none of these suites can be offered with a ${tls.keyKind} key by this runtime; it offers ${
            runtime.join(", ")
          }`,
        );
      } else if (runtime.length !== ciphers.length || offered.length !== ciphers.length) {
        warnings.push(
          `frontend.tls-ciphers cannot restrict suites under this runtime; offered: ${
            runtime.join(", ")
          }`,
        );
      }
    }
  }
  if (m.port === undefined && m.host !== undefined) {
    problems.push(`${where("metrics.host")}: is set but metrics.port is not`);
  }
  if (problems.length) throw new ConfigError(problems, file);

  return {
    file,
    frontend: {
      host: f.host as string,
      port: f.port as number,
      tls,
      tlsMinVersion: f["tls-min-version"] as TlsVersionName,
      tlsCiphers: ciphers,
      logformat: f.logformat as string,
    },
    backend: {
      host: b.host as string,
      port: b.port as number,
      scheme: b.scheme as "http" | "https",
      insecure: b.insecure as boolean,
      ca,
      client,
      timeout: b.timeout as number,
    },
    cache: {
      ttl: c.ttl as number,
      interval: c.interval as number,
      maxEntries: c["max-entries"] as number,
    },
    metrics: {
      enabled: m.enabled as boolean,
      listener: m.port === undefined
        ? undefined
        : { host: (m.host as string | undefined) ?? f.host as string, port: m.port as number },
    },
    logFormat: (topLevel["log-format"] ?? TOP_LEVEL_SCALARS["log-format"].default) as
      | "text"
      | "json",
    warnings,
  };
}

/** A mapping key as text. */
function keyName(key: YamlNode): string {
  return key.kind === "scalar" ? String(key.value) : "(a mapping or list as a key)";
}

function knownTopLevel(): string[] {
  return [...Object.keys(SCHEMA), ...Object.keys(TOP_LEVEL_SCALARS)];
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** ` (did you mean 'port'?)` when a known name is one or two edits away. */
function suggest(name: string, known: string[]): string {
  const close = known.find((k) => editDistance(name, k) <= 2);
  return close ? ` (did you mean '${close}'?)` : ` (known: ${known.join(", ")})`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = row[j];
      row[j] = next;
    }
  }
  return row[b.length];
}
