/**
 * The dcs: section: its keys, Patroni's own file as their source, and the resolved DcsConfig
 * (explicit keys win).
 * @module
 */
import { DCS_KINDS, type DcsKind, type DcsSettings } from "../dcs/view.ts";
import {
  endpointList,
  type EndpointSpec,
  type Fact,
  type PatroniDcsFacts,
  readPatroniConfig,
  secret,
  UNSUPPORTED_DCS,
} from "./patroni_config.ts";
import {
  type Check,
  fail,
  type FileValues,
  input,
  oneOf,
  reason,
  seconds,
  show,
  text,
} from "./schema.ts";
import {
  loadPemSupport,
  parseCertificates,
  parsePrivateKey,
  readSystemBundle,
  SYSTEM_CA_BUNDLES,
} from "../net/tls.ts";
import { hostPort } from "../net/wire.ts";

/** `etcd` or `etcd3`; Patroni's other DCS kinds are refused by name. */
const dcsKind: Check<DcsKind> = (v) => {
  if ((UNSUPPORTED_DCS as readonly unknown[]).includes(v)) {
    return fail(`${v} is not supported by the DCS witness (supported: ${DCS_KINDS.join(", ")})`);
  }
  return oneOf(DCS_KINDS)(v);
};

/** The keys of `dcs:`; each but `patroni-config` and `margin` overrides what Patroni's file says. */
export const DCS_SECTION = {
  /** Patroni's own YAML: scope, namespace, name and its etcd:/etcd3: section. */
  "patroni-config": input(text).reloads("watcher", "patroniConfig"),
  type: input(dcsKind).reloads("watcher", "type"),
  /** `host:port` or `http(s)://host:port`, a list or one string separated by commas. */
  hosts: input(endpointList).reloads("watcher", "endpoints"),
  /** For hosts written without a scheme. */
  protocol: input(oneOf(["http", "https"])).reloads("watcher", "endpoints"),
  scope: input(text).reloads("watcher", "scope"),
  /** Patroni's namespace (default `/service/`). */
  namespace: input(text).reloads("watcher", "namespace"),
  /** This member's name in Patroni (its `name`). */
  name: input(text).reloads("handler", "name"),
  username: input(text).reloads("watcher", "username"),
  password: input(secret).reloads("watcher", "password"),
  /** CA certificates to trust for https endpoints. */
  cacert: input(text).reloads("watcher", "ca"),
  /** A client certificate (with `key`, or holding its key). */
  cert: input(text).reloads("watcher", "client"),
  key: input(text).reloads("watcher", "client"),
  /** Seconds of the leader lock that must be left for a 200 from the DCS (default: half Patroni's ttl). */
  margin: input(seconds(0, false)).reloads("handler", "margin"),
} as const;

/** The values of `dcs:` as the schema reads them. */
export type DcsValues = FileValues<{ dcs: typeof DCS_SECTION }>["dcs"];

/** The DCS witness's configuration: where Patroni's cluster is, and who this member is. */
export interface DcsConfig {
  type: DcsKind;
  /** `http(s)://host:port`, tried in turn. */
  endpoints: string[];
  /** `/service`: one leading slash, none trailing. */
  namespace: string;
  scope: string;
  /** This member's name. */
  name: string;
  username?: string;
  password?: string;
  ca?: { cafile: string; pem: string };
  client?: { certfile: string; keyfile: string; cert: string; key: string };
  /** Seconds of the lock that must be left for a 200 from the DCS; undefined: half Patroni's ttl. */
  margin?: number;
  /** Patroni's file, when the facts came from it. */
  patroniConfig?: string;
}

/** What resolving `dcs:` gave: the config (when the section is used), problems and warnings. */
export interface DcsReading {
  dcs?: DcsConfig;
  problems: string[];
  warnings: string[];
}

/**
 * Resolves `dcs:`: Patroni's file (when named) gives the facts, explicit keys win, files named are
 * read. `where(key)` is `file:line:col` of a key of our file (the file itself when unwritten).
 */
export async function loadDcsConfig(
  values: DcsValues,
  where: (key: DcsKey) => string,
  written: (key: DcsKey) => boolean,
): Promise<DcsReading> {
  const keys = (Object.keys(DCS_SECTION) as DcsKey[]).filter(written);
  if (keys.length === 0) return { problems: [], warnings: [] };
  let file: PatroniDcsFacts | undefined;
  const patroniConfig = values["patroni-config"];
  if (patroniConfig !== undefined) {
    const reading = await readPatroniConfig(patroniConfig);
    if (reading.problems.length) {
      return { problems: reading.problems.map((p) => `${p} (dcs.patroni-config)`), warnings: [] };
    }
    file = reading.facts;
  }
  const section = `${where(patroniConfig !== undefined ? "patroni-config" : keys[0])}: dcs`;
  return await new DcsFacts(values, where, written, section, file).resolve();
}

/** A key of `dcs:`. */
type DcsKey = keyof typeof DCS_SECTION;

/** The facts of `dcs:` and of Patroni's file, explicit keys first, and what they resolve to. */
class DcsFacts {
  readonly problems: string[] = [];

  constructor(
    readonly values: DcsValues,
    readonly where: (key: DcsKey) => string,
    readonly written: (key: DcsKey) => boolean,
    /** `file:line:col: dcs`, where problems about the section as a whole are reported. */
    readonly section: string,
    readonly file?: PatroniDcsFacts,
  ) {}

  /** A fact: the explicit key's value if written, else Patroni's. */
  pick<K extends DcsKey & keyof PatroniDcsFacts>(
    key: K,
  ): Fact<NonNullable<DcsValues[K]>> | undefined {
    const own = this.values[key];
    if (own !== undefined) {
      return { value: own as NonNullable<DcsValues[K]>, at: `${this.where(key)}: dcs.${key}` };
    }
    const theirs = this.file?.[key] as Fact<NonNullable<DcsValues[K]>> | undefined;
    return theirs && { value: theirs.value, at: `${theirs.at}: ${key}` };
  }

  /** The endpoints: `dcs.hosts`, else Patroni's host, hosts, url or urls. */
  hosts(): Fact<EndpointSpec[]> | undefined {
    const own = this.values.hosts;
    return own !== undefined
      ? { value: own, at: `${this.where("hosts")}: dcs.hosts` }
      : this.file?.endpoints;
  }

  /** Reports a fact that neither gives (a key written with a bad value has its problem already). */
  #missing(what: string, key: DcsKey, patroni: string): void {
    if (this.written(key)) return;
    const hint = this.file ? ` (${this.file.file} has no ${patroni})` : " or dcs.patroni-config";
    this.problems.push(`${this.section}: needs ${what}: set dcs.${key}${hint}`);
  }

  /** The DcsConfig, or every problem found. */
  async resolve(): Promise<DcsReading> {
    const [type, hosts, scope, name] = [
      this.pick("type"),
      this.hosts(),
      this.pick("scope"),
      this.pick("name"),
    ];
    if (!type) this.#missing("the DCS type", "type", "etcd or etcd3 section");
    if (!hosts) this.#missing("the etcd endpoints", "hosts", "host, hosts, url or urls");
    if (!scope) this.#missing("the cluster's name (Patroni's scope)", "scope", "scope");
    if (!name) this.#missing("this member's name", "name", "name");
    const ca = await readPemFile(this.pick("cacert"), "certificate", this.problems);
    const client = await readClient(this.pick("cert"), this.pick("key"), this.problems);
    const { problems } = this;
    if (!type || !hosts || !scope || !name || problems.length) return { problems, warnings: [] };
    const endpoints = hosts.value.map((e) => endpointUrl(e, this.pick("protocol")?.value));
    const warnings = endpoints.some((e) => e.startsWith("http:")) && (ca || client)
      ? [`${this.section}: cacert, cert and key have no effect on http:// endpoints`]
      : [];
    const trusted = await this.#trusted(endpoints, ca);
    const inUrl = hosts.value.find((e) => e.username !== undefined); // `https://user:pw@host`
    const username = this.pick("username")?.value ?? inUrl?.username;
    const password = this.pick("password")?.value ?? inUrl?.password;
    if (password !== undefined && username === undefined) {
      problems.push(`${this.section}: a password without a username: set dcs.username`);
    }
    if (problems.length) return { problems, warnings };
    const dcs: DcsConfig = {
      type: type.value,
      endpoints,
      namespace: normalizeNamespace(this.pick("namespace")?.value ?? "/service/"),
      scope: scope.value,
      name: name.value,
      username,
      password,
      ca: trusted,
      client,
      margin: this.values.margin,
      patroniConfig: this.values["patroni-config"],
    };
    return { problems, warnings, dcs };
  }

  /** The CAs to trust: `cacert`, or for https endpoints the system bundle (a problem when there is none). */
  async #trusted(
    endpoints: string[],
    ca: { file: string; pem: string } | undefined,
  ): Promise<DcsConfig["ca"]> {
    if (ca) return { cafile: ca.file, pem: ca.pem };
    if (!endpoints.some((e) => e.startsWith("https:"))) return undefined;
    const bundle = await readSystemBundle();
    if (!bundle) {
      this.problems.push(
        `${this.section}: https endpoints without dcs.cacert, and no system CA bundle found (${
          SYSTEM_CA_BUNDLES.join(", ")
        }); set dcs.cacert`,
      );
    }
    return bundle;
  }
}

/** `http(s)://host:port` of an endpoint; its own scheme first, then `protocol`, then http. */
function endpointUrl(e: EndpointSpec, protocol: "http" | "https" | undefined): string {
  return `${e.scheme ?? protocol ?? "http"}://${hostPort(e.host, e.port)}`;
}

/** Patroni's namespace as it builds its paths: one leading slash, none trailing or doubled ("" for the root). */
export function normalizeNamespace(namespace: string): string {
  return `/${namespace}`.replace(/\/+/g, "/").replace(/\/$/, "");
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;
const KEY_BLOCK = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?-----END \1PRIVATE KEY-----/;

/** A PEM file's text, checked to hold `what`; a problem at the fact's position when it fails. */
async function readPemFile(
  fact: Fact<string> | undefined,
  what: "certificate" | "private key",
  problems: string[],
): Promise<{ file: string; pem: string } | undefined> {
  if (!fact || fact.value === "") return undefined;
  try {
    await loadPemSupport();
    const text = await Deno.readTextFile(fact.value);
    // Patroni takes a certificate and its key from one file: keep only the blocks asked for.
    const blocks = what === "certificate"
      ? text.match(CERTIFICATE_BLOCK)
      : text.match(KEY_BLOCK)?.slice(0, 1);
    const pem = blocks ? blocks.join("\n") + "\n" : text;
    if (what === "certificate") parseCertificates(pem);
    else parsePrivateKey(pem);
    return { file: fact.value, pem };
  } catch (e) {
    problems.push(`${fact.at}: cannot use ${show(fact.value)} as a ${what}: ${reason(e)}`);
    return undefined;
  }
}

/** The client certificate and its key; Patroni allows the key inside the certificate's file. */
async function readClient(
  cert: Fact<string> | undefined,
  key: Fact<string> | undefined,
  problems: string[],
): Promise<DcsConfig["client"]> {
  if (!cert) {
    if (key && key.value !== "") problems.push(`${key.at}: is set but no client certificate is`);
    return undefined;
  }
  const certPem = await readPemFile(cert, "certificate", problems);
  const keyPem = await readPemFile(key?.value ? key : cert, "private key", problems);
  if (!certPem || !keyPem) return undefined;
  return { certfile: certPem.file, keyfile: keyPem.file, cert: certPem.pem, key: keyPem.pem };
}

/** What a watcher needs from a {@linkcode DcsConfig}. */
export function dcsSettings(dcs: DcsConfig): DcsSettings {
  return {
    type: dcs.type,
    endpoints: dcs.endpoints,
    namespace: dcs.namespace,
    scope: dcs.scope,
    username: dcs.username,
    password: dcs.password,
    ca: dcs.ca?.pem,
    cert: dcs.client?.cert,
    key: dcs.client?.key,
  };
}

/** `etcd3 http://10.0.0.1:2379,... /service/main (member node1)`, for logs. */
export function describeDcs(dcs: DcsConfig): string {
  return `${dcs.type} ${
    dcs.endpoints.join(",")
  } ${dcs.namespace}/${dcs.scope} (member ${dcs.name})`;
}

/** How long -check-config waits for one complete read of the DCS. */
const INSPECT_TIMEOUT_MS = 5000;

/**
 * What the DCS says now, for -check-config: `dcs: etcd3 ... : leader node1 (4.2 s left on the
 * lock); member node2: replica, running, ...`, or why it could not be read (the config stays valid:
 * without the DCS, patroniglue answers from Patroni alone).
 */
export async function inspectDcs(dcs: DcsConfig): Promise<string> {
  const { readView, summarize } = await import("../dcs/watch.ts");
  const where = `dcs: ${describeDcs(dcs)}`;
  try {
    const view = await readView(dcsSettings(dcs), INSPECT_TIMEOUT_MS);
    const margin = dcs.margin ?? (view.ttl ?? 30) / 2;
    const never = view.ttl !== undefined && margin >= view.ttl
      ? ` (margin ${margin} s is not below the ttl: the DCS will never answer 200)`
      : ` (margin ${margin} s)`;
    return `${where}: ${summarize(view, dcs.name, performance.now())}${never}`;
  } catch (e) {
    return `${where}: cannot read it: ${
      reason(e)
    } (checks are answered from Patroni alone while it cannot be read)`;
  }
}
