/**
 * Configuration: every key declared once, the YAML file -> a validated Config, and what changed
 * between two.
 * @module
 */
import { DCS_SECTION, type DcsConfig, loadDcsConfig } from "./dcs_config.ts";
import { parseYaml, YamlError, type YamlNode } from "./yaml/mod.ts";
import { DEFAULT_LOG_FORMAT, LOG_FORMAT_PLACEHOLDERS } from "../log.ts";
import { MISMATCH_WORDS } from "../check/handler.ts";
import { routeRequest } from "../check/routes.ts";
import {
  bool,
  type Check,
  fail,
  fileNames,
  type FileSchema,
  type FileValues,
  host,
  input,
  integer,
  Key,
  key,
  type KeyPath,
  oneOf,
  port,
  readFile,
  reason,
  type Reload,
  resultKeys,
  seconds,
  type Settings,
  settings,
  show,
  text,
} from "./schema.ts";
import {
  GO_CIPHER_SUITES,
  type KeyKind,
  keyKindOf,
  loadPemSupport,
  offerableSuites,
  parseCertificates,
  parsePrivateKey,
  readSystemBundle,
  runtimeSuites,
  SYSTEM_CA_BUNDLES,
  TLS_VERSIONS,
} from "../net/tls.ts";

/** Go crypto/tls cipher-suite names, as a list or one string separated by spaces, commas or colons. */
const cipherList: Check<string[]> = (v) => {
  const names: unknown = typeof v === "string" ? v.split(/[\s,:]+/).filter(Boolean) : v;
  if (!Array.isArray(names) || names.length === 0) {
    return fail("must be a list of Go cipher-suite names");
  }
  return names.map((name) =>
    typeof name === "string" && GO_CIPHER_SUITES.has(name) ? name : fail(
      `unknown cipher suite ${show(name)} (Go crypto/tls names, e.g. TLS_AES_128_GCM_SHA256)`,
    )
  );
};

/** An access-log format using only the known placeholders. */
const logformat: Check<string> = (v) => {
  const s = text(v);
  const bad = s.match(/%./g)?.find((p) => !LOG_FORMAT_PLACEHOLDERS.some((known) => known === p));
  return bad ? fail(`unknown placeholder ${bad} (known: ${LOG_FORMAT_PLACEHOLDERS.join(" ")})`) : s;
};

/** A request target that the router forwards to Patroni as a health check; kept as written. */
const healthCheck: Check<string> = (v) => {
  const target = text(v);
  const route = routeRequest("GET", target, false);
  if (route.kind === "check") return target;
  const why = route.kind === "error" ? ` (${route.message})` : "";
  return fail(
    `must be one of Patroni's health checks, such as /primary or /replica?lag=1MB: got ${
      show(target)
    }${why}`,
  );
};

/** Every key of the file, declared once: its check, its default, whether Config holds it as itself, and what a reload that changes it must do. */
const SCHEMA = {
  frontend: {
    host: key(host, "localhost").reloads("frontend"),
    port: key(port, 80).reloads("frontend"),
    /** With keyfile: HTTPS, read into `tls`. */
    certfile: input(text).reloads("certificate", "tls"),
    keyfile: input(text).reloads("certificate", "tls"),
    "tls-min-version": key(oneOf(TLS_VERSIONS), "TLSv1.2").reloads("certificate"),
    /** Validated only: the runtime cannot restrict its suites. */
    "tls-ciphers": input(cipherList).reloads("none"),
    /** Access-log format (`%a %m %U %s %D %C`). */
    logformat: key(logformat, DEFAULT_LOG_FORMAT).reloads("handler"),
  },
  backend: {
    host: key(host, "127.0.0.1").reloads("client"),
    port: key(port, 8008).reloads("client"),
    scheme: key(oneOf(["http", "https"]), "http").reloads("client"),
    /** Skip certificate checks. */
    insecure: key(bool, false).reloads("client"),
    /** Trusted CAs, read into `ca` (else the system bundle, for https). */
    cafile: input(text).reloads("client", "ca"),
    /** With keyfile: a client certificate, read into `client`. */
    certfile: input(text).reloads("client", "client"),
    keyfile: input(text).reloads("client", "client"),
    /** Seconds per backend request. */
    timeout: key(seconds(0, false), 2).reloads("client"),
  },
  cache: {
    /** Seconds an entry (a status or a failure) is served; 0 disables caching, not coalescing. */
    ttl: key(seconds(0, true), 1).reloads("cache"),
    /** Seconds between sweeps that free expired entries. */
    interval: key(seconds(0, false), 0.25).reloads("sweeper"),
    "max-entries": key(integer(1, 1_000_000), 1000).reloads("cache"),
  },
  metrics: {
    enabled: key(bool, true).reloads("metrics"),
    /** With port: a listener of its own, `listener` (host defaults to frontend.host). */
    host: input(host).reloads("metrics", "listener"),
    port: input(port).reloads("metrics", "listener"),
  },
  agent: {
    /** Default: the effective frontend.host. */
    host: key(host).reloads("agent"),
    /** The agent-check listener runs only when it is set. */
    port: key(port).reloads("agent"),
    /** The check answered when the client sends no line. */
    check: key(healthCheck, "/primary").reloads("handler"),
    /** The word for a healthy member in another role. */
    mismatch: key(oneOf(MISMATCH_WORDS), "maint").reloads("handler"),
  },
  /** The DCS witness: Patroni's DCS, read beside its REST API (see dcs_config.ts). */
  dcs: DCS_SECTION,
  "log-format": key(oneOf(["text", "json"]), "text").reloads("log"),
} satisfies FileSchema;

type Schema = typeof SCHEMA;
type Path = KeyPath<Schema>;
type Values = FileValues<Schema>;

/** A certificate and its key, read from `certfile`/`keyfile`. */
export interface KeyPair {
  certfile: string;
  keyfile: string;
  cert: string;
  key: string;
  keyKind: KeyKind;
}

/** A listener's address. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** `frontend:` where and how patroniglue listens. */
export interface FrontendConfig extends Settings<Schema["frontend"]> {
  /** HTTPS when set (from `certfile` and `keyfile`). */
  tls?: KeyPair;
}

/** `backend:` the Patroni REST API. */
export interface BackendConfig extends Settings<Schema["backend"]> {
  /** Trusted CAs (or a self-signed certificate) PEM, from `cafile`, else the system bundle for https. */
  ca?: { cafile: string; pem: string };
  /** Client certificate for Patroni's `verify_client`. */
  client?: KeyPair;
}

/** `cache:` how long entries live. */
export type CacheConfig = Settings<Schema["cache"]>;

/** `metrics:` the Prometheus endpoint. */
export interface MetricsConfig extends Settings<Schema["metrics"]> {
  /** A separate listener when `port` is set; otherwise `/metrics` is on the frontend. */
  listener?: ListenAddress;
}

/** `agent:` the HAProxy agent-check listener, host and port resolved. */
export type AgentConfig = { [K in keyof AgentSettings]-?: NonNullable<AgentSettings[K]> };
type AgentSettings = Settings<Schema["agent"]>;

/** The whole validated configuration. */
export interface Config extends Settings<Schema> {
  file: string;
  frontend: FrontendConfig;
  backend: BackendConfig;
  cache: CacheConfig;
  metrics: MetricsConfig;
  /** Set when `agent.port` is. */
  agent?: AgentConfig;
  /** Set when the `dcs:` section is written. */
  dcs?: DcsConfig;
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

/** Reads and validates a configuration file; throws {@linkcode ConfigError} naming every problem. */
export async function loadConfig(file: string): Promise<Config> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    throw new ConfigError([`${file}: cannot read configuration file: ${reason(e)}`]);
  }
  let text: string;
  try {
    // Strict, as yaml.v2 is: a lenient decoder would turn a stray byte into U+FFFD and read on.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ConfigError([`${file}: cannot read configuration file: it is not UTF-8 text`]);
  }
  return await parseConfig(text, file);
}

/** Validates YAML text as a configuration, reading the PEM files it names. */
export async function parseConfig(text: string, file: string): Promise<Config> {
  const reading = readFile(SCHEMA, parseDocument(text, file), file);
  const report = new Report(file, reading.positions, reading.problems);
  const files = await loadFiles(reading.values, report);
  const facts: Facts = {
    values: reading.values,
    files,
    written: (path) => reading.positions.has(path),
  };
  for (const rule of RULES) report.add(rule(facts));
  const dcs = await loadDcsConfig(
    reading.values.dcs,
    (key) => report.at(`dcs.${key}`),
    (key) => reading.positions.has(`dcs.${key}`),
  );
  report.problems.push(...dcs.problems);
  report.warnings.push(...dcs.warnings);
  if (report.problems.length) throw new ConfigError(report.problems, file);
  return { ...assemble(file, reading.values, files, report.warnings), dcs: dcs.dcs };
}

function parseDocument(text: string, file: string): YamlNode | null {
  try {
    return parseYaml(text);
  } catch (e) {
    if (!(e instanceof YamlError)) throw e;
    throw new ConfigError([`${file}:${e.line}:${e.col}: YAML syntax: ${e.message}`], file);
  }
}

/** The Config a valid reading gives: settings as they are, inputs turned into what they name. */
function assemble(file: string, values: Values, files: LoadedFiles, warnings: string[]): Config {
  const { frontend, backend, cache, metrics, agent } = values;
  return {
    file,
    ...settings(SCHEMA, values),
    frontend: { ...settings(SCHEMA.frontend, frontend), tls: files.tls },
    backend: { ...settings(SCHEMA.backend, backend), ca: files.ca, client: files.client },
    cache: settings(SCHEMA.cache, cache),
    metrics: {
      ...settings(SCHEMA.metrics, metrics),
      listener: metrics.port === undefined
        ? undefined
        : { host: metrics.host ?? frontend.host, port: metrics.port },
    },
    agent: agent.port === undefined
      ? undefined
      : { ...settings(SCHEMA.agent, agent), host: agent.host ?? frontend.host, port: agent.port },
    warnings,
  };
}

/** Problems (each at a key's position) and warnings, collected over the whole validation. */
class Report {
  readonly warnings: string[] = [];
  constructor(
    readonly file: string,
    readonly positions: ReadonlyMap<string, YamlNode>,
    readonly problems: string[],
  ) {}

  /** `file:line:col` of `path`'s value (else of its key), or `file` for a key the file does not write. */
  at(path: string): string {
    const node = this.positions.get(path);
    return node ? `${this.file}:${node.line}:${node.col}` : this.file;
  }

  /** `file:line:col: path: message`, or `file: path: message` for a key the file does not write. */
  problem(path: Path, message: string): void {
    this.problems.push(`${this.at(path)}: ${path}: ${message}`);
  }

  warning(message: string): void {
    this.warnings.push(message);
  }

  add(finding: Finding): void {
    if (finding === undefined) return;
    if ("problem" in finding) this.problem(finding.at, finding.problem);
    else this.warning(finding.warning);
  }
}

// Loading the files a config names.

/** What the files a config names hold. */
type LoadedFiles = Pick<FrontendConfig, "tls"> & Pick<BackendConfig, "ca" | "client">;

/** Reads the frontend's and the client's key pairs and the trusted CAs; what fails is reported. */
async function loadFiles(values: Values, report: Report): Promise<LoadedFiles> {
  const { backend } = values;
  const tls = await loadKeyPair("frontend", values.frontend, report);
  const client = await loadKeyPair("backend", backend, report);
  let ca: LoadedFiles["ca"];
  if (backend.cafile !== undefined) {
    ca = await loadCaFile(backend.cafile, report);
  } else if (backend.scheme === "https" && !backend.insecure) {
    ca = await loadSystemBundle(report);
  }
  return { tls, client, ca };
}

/** A certificate and its matching key; undefined unless both files are named. */
async function loadKeyPair(
  section: "frontend" | "backend",
  { certfile, keyfile }: { certfile?: string; keyfile?: string },
  report: Report,
): Promise<KeyPair | undefined> {
  if (certfile === undefined || keyfile === undefined) return undefined;
  const certPath: Path = `${section}.certfile`, keyPath: Path = `${section}.keyfile`;
  const cert = await readPem(certPath, certfile, (pem) => parseCertificates(pem).leaf, report);
  const key = await readPem(keyPath, keyfile, parsePrivateKey, report);
  if (cert === undefined || key === undefined) return undefined;
  if (!cert.parsed.checkPrivateKey(key.parsed)) {
    report.problem(keyPath, `${keyfile} does not match the certificate in ${certfile}`);
    return undefined;
  }
  const { validTo } = cert.parsed;
  if (Date.parse(validTo) < Date.now()) {
    report.warning(`${certPath}: ${certfile} expired on ${validTo}`);
  }
  return { certfile, keyfile, cert: cert.pem, key: key.pem, keyKind: keyKindOf(cert.parsed) };
}

async function loadCaFile(cafile: string, report: Report): Promise<LoadedFiles["ca"]> {
  const ca = await readPem("backend.cafile", cafile, parseCertificates, report);
  return ca && { cafile, pem: ca.pem };
}

/** The system's roots, read where Go reads them (the runtime would need --allow-sys for its own). */
async function loadSystemBundle(report: Report): Promise<LoadedFiles["ca"]> {
  const bundle = await readSystemBundle();
  if (bundle) return bundle;
  report.problem(
    "backend.scheme",
    `https without backend.cafile, and no system CA bundle found (${
      SYSTEM_CA_BUNDLES.join(", ")
    }); set backend.cafile`,
  );
  return undefined;
}

/** A PEM file's text and what `parse` makes of it; undefined, the reason reported at `path`, if either fails. */
async function readPem<T>(
  path: Path,
  filename: string,
  parse: (pem: string) => T,
  report: Report,
): Promise<{ pem: string; parsed: T } | undefined> {
  let pem: string;
  try {
    await loadPemSupport();
    pem = await Deno.readTextFile(filename);
  } catch (e) {
    report.problem(path, `cannot read ${filename}: ${reason(e)}`);
    return undefined;
  }
  try {
    return { pem, parsed: parse(pem) };
  } catch (e) {
    report.problem(path, `${filename}: ${reason(e)}`);
    return undefined;
  }
}

// Cross-field rules: each looks at the values (and the files read) and gives a problem or a warning.

/** What a rule sees. */
interface Facts {
  /** Every key's value, defaults applied. */
  values: Values;
  files: LoadedFiles;
  /** Whether the file writes `path` (valid or not). */
  written(path: Path): boolean;
}
type Finding = { at: Path; problem: string } | { warning: string } | undefined;
type Rule = (facts: Facts) => Finding;

/** `certfile` and `keyfile`: both or neither (the original silently fell back to HTTP). */
const bothOrNeither = (section: "frontend" | "backend"): Rule => ({ written }) => {
  const cert = written(`${section}.certfile`);
  if (cert === written(`${section}.keyfile`)) return undefined;
  const have = cert ? "certfile" : "keyfile", missing = cert ? "keyfile" : "certfile";
  return { at: `${section}.${have}`, problem: `is set but ${section}.${missing} is not` };
};

const insecureWithCafile: Rule = ({ values: { backend } }) =>
  backend.insecure && backend.cafile !== undefined
    ? {
      at: "backend.insecure",
      problem: "is true, which disables the check that backend.cafile asks for; set one of them",
    }
    : undefined;

const noEffectWithHttp =
  (name: "insecure" | "cafile" | "certfile" | "keyfile"): Rule => ({ values: { backend } }) =>
    backend.scheme === "http" && backend[name] !== undefined && backend[name] !== false
      ? { warning: `backend.${name} has no effect with scheme http` }
      : undefined;

const needsCertificate = (name: "tls-min-version" | "tls-ciphers"): Rule => ({ files, written }) =>
  files.tls === undefined && written(`frontend.${name}`)
    ? { warning: `frontend.${name} has no effect without frontend.certfile and keyfile` }
    : undefined;

const versionBelowRuntime: Rule = ({ values: { frontend }, files, written }) => {
  const min = frontend["tls-min-version"];
  if (!files.tls || !written("frontend.tls-min-version")) return undefined;
  return min === "TLSv1.2" || min === "TLSv1.3" ? undefined : {
    warning:
      `frontend.tls-min-version ${min}: TLS 1.0 and 1.1 are never offered by this runtime; the minimum is TLSv1.2`,
  };
};

/** tls-ciphers none of which the runtime offers refuse the start; a list that differs from its set warns. */
const ciphersOffered: Rule = ({ values: { frontend }, files }) => {
  const ciphers = frontend["tls-ciphers"];
  if (!files.tls || !ciphers) return undefined;
  const offered = offerableSuites(ciphers, files.tls.keyKind);
  const runtime = runtimeSuites(files.tls.keyKind);
  if (offered.length === 0) {
    return {
      at: "frontend.tls-ciphers",
      problem:
        `none of these suites can be offered with a ${files.tls.keyKind} key by this runtime; it offers ${
          runtime.join(", ")
        }`,
    };
  }
  return runtime.length !== ciphers.length || offered.length !== ciphers.length
    ? {
      warning: `frontend.tls-ciphers cannot restrict suites under this runtime; offered: ${
        runtime.join(", ")
      }`,
    }
    : undefined;
};

/** A key of a listener section written without the port that starts the listener. */
const needsPort =
  (path: "metrics.host" | "agent.host" | "agent.check" | "agent.mismatch"): Rule =>
  (
    { written },
  ) => {
    const section = path.startsWith("metrics") ? "metrics" : "agent";
    return written(path) && !written(`${section}.port`)
      ? { at: path, problem: `is set but ${section}.port is not` }
      : undefined;
  };

/** The address of each listener the values start, by the key that names its port. */
function listeners(
  { frontend, metrics, agent }: Values,
): [Path, ListenAddress][] {
  const out: [Path, ListenAddress][] = [["frontend.port", frontend]];
  if (metrics.enabled && metrics.port !== undefined) {
    out.push(["metrics.port", { host: metrics.host ?? frontend.host, port: metrics.port }]);
  }
  if (agent.port !== undefined) {
    out.push(["agent.port", { host: agent.host ?? frontend.host, port: agent.port }]);
  }
  return out;
}

/** Two listeners on one host and port would fail to bind. */
const distinctListener = (path: "metrics.port" | "agent.port"): Rule => ({ values }) => {
  const all = listeners(values);
  const index = all.findIndex(([p]) => p === path);
  if (index === -1) return undefined;
  const [, mine] = all[index];
  const other = all.slice(0, index).find(([, a]) => a.host === mine.host && a.port === mine.port);
  return other
    ? {
      at: path,
      problem: `${mine.port} on ${mine.host} is also ${other[0]}; each listener needs its own port`,
    }
    : undefined;
};

/** Every cross-field rule, in the order their findings are reported. */
const RULES: readonly Rule[] = [
  bothOrNeither("frontend"),
  bothOrNeither("backend"),
  insecureWithCafile,
  noEffectWithHttp("insecure"),
  noEffectWithHttp("cafile"),
  noEffectWithHttp("certfile"),
  noEffectWithHttp("keyfile"),
  needsCertificate("tls-min-version"),
  needsCertificate("tls-ciphers"),
  versionBelowRuntime,
  ciphersOffered,
  needsPort("metrics.host"),
  needsPort("agent.host"),
  needsPort("agent.check"),
  needsPort("agent.mismatch"),
  distinctListener("metrics.port"),
  distinctListener("agent.port"),
];

// What changed between two configs, as the reload log says it.

/** Config path of each setting -> its name in the file (`cache.maxEntries` -> `cache.max-entries`). */
const FILE_NAMES = fileNames(SCHEMA);

/**
 * One line per value that differs, by its name in the file (`cache.ttl: 1 -> 0.5`,
 * `agent.port: unset -> 5000`); a changed certificate, key or CA bundle is
 * `frontend.tls: file content changed`.
 */
export function describeChanges(prev: Config, next: Config): string[] {
  const [a, b] = [flatten(prev), flatten(next)];
  const changed = [...new Set([...a.keys(), ...b.keys()])].filter((p) => a.get(p) !== b.get(p));
  const named = changed.map((p): [string, string] => [FILE_NAMES.get(p) ?? p, p])
    .sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0);
  return [
    ...new Set(named.map(([name, p]) => {
      const content = /^(.*)\.(cert|key|pem)$/.exec(name);
      if (content) return `${content[1]}: file content changed`;
      if (SECRETS.test(name)) return `${name}: changed`;
      return `${name}: ${a.get(p) ?? "unset"} -> ${b.get(p) ?? "unset"}`;
    })),
  ];
}

/** Every key of the file by its path (`frontend.port`, `log-format`), with what a reload that changes it must do. */
export function schemaKeys(): Map<string, Reload | undefined> {
  const out = new Map<string, Reload | undefined>();
  for (const [name, spec] of Object.entries(SCHEMA)) {
    if (spec instanceof Key) out.set(name, spec.reload);
    else for (const [k, key] of Object.entries(spec)) out.set(`${name}.${k}`, key.reload);
  }
  return out;
}

/** Each part of a Config (`frontend.tls`, `cache.ttl`) -> the key it comes from. */
const RESULT_KEYS = resultKeys(SCHEMA);

/**
 * What a reload from `prev` to `next` must do, as the schema declares it: the reload of each key
 * whose part of the config changed (a key's file content included: a rotated certificate).
 */
export function reloadsFor(prev: Config, next: Config): Set<Reload> {
  const [a, b] = [flatten(prev), flatten(next)];
  const out = new Set<Reload>();
  for (const path of new Set([...a.keys(), ...b.keys()])) {
    if (a.get(path) !== b.get(path)) out.add(keyOf(path).reload!);
  }
  return out;
}

/** The key a part of a Config comes from: the longest declared path that `path` starts with. */
export function keyOf(path: string): { path: string; reload?: Reload } {
  for (let at = path; at !== ""; at = at.slice(0, Math.max(0, at.lastIndexOf(".")))) {
    const found = RESULT_KEYS.get(at);
    if (found) return { path: found.path, reload: found.key.reload };
  }
  throw new Error(`no key of the schema gives ${path}`);
}

/** Values never written to a log, even changed. */
const SECRETS = /(^|\.)password$/;

/** Every leaf value of a config (but its file name and warnings) as JSON, by dotted path. */
function flatten(config: Config): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (path: string, v: unknown): void => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(path ? `${path}.${k}` : k, x);
    } else if (v !== undefined) {
      out.set(path, JSON.stringify(v));
    }
  };
  for (const [k, v] of Object.entries(config)) {
    if (k !== "file" && k !== "warnings") walk(k, v);
  }
  return out;
}
