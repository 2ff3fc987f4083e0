/**
 * Patroni's own YAML, read for what the DCS witness needs: scope, namespace, name and its
 * etcd:/etcd3: section.
 * @module
 */
import { type DcsKind } from "../dcs/view.ts";
import { bool, type Check, fail, input, oneOf, readFile, reason, show, text } from "./schema.ts";
import { parseYaml, YamlError, type YamlNode } from "./yaml/mod.ts";

/** One etcd endpoint as a config writes it: `host:port`, `host`, or `http(s)://[user:password@]host:port`. */
export interface EndpointSpec {
  scheme?: "http" | "https";
  host: string;
  port: number;
  /** Credentials written in a URL (`https://user:password@host`), as Patroni takes them. */
  username?: string;
  password?: string;
}

/** etcd's client port, when an endpoint names none. */
const ETCD_PORT = 2379;

const ENDPOINT =
  /^(?:(https?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?)?(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z._%-]+)(?::(\d{1,5}))?\/?$/;

/** An endpoint as it may be shown: credentials in a URL never are. */
function shownEndpoint(entry: string): string {
  return show(entry.replace(/^(https?:\/\/)[^@/]*@/, "$1***@"));
}

/** One endpoint: `host[:port]` or `http(s)://[user:password@]host[:port]`, IPv6 in brackets. */
function parseEndpoint(entry: string): EndpointSpec {
  const m = ENDPOINT.exec(entry);
  if (!m) {
    return fail(`must be host:port or http(s)://host:port: got ${shownEndpoint(entry)}`);
  }
  const [, scheme, username, password, hostText, portText] = m;
  const port = portText === undefined ? ETCD_PORT : Number(portText);
  if (port < 1 || port > 65535) fail(`port must be from 1 to 65535: got ${shownEndpoint(entry)}`);
  const host = hostText.startsWith("[") ? hostText.slice(1, -1) : hostText;
  const spec: EndpointSpec = scheme
    ? { scheme: scheme as "http" | "https", host, port }
    : { host, port };
  if (username) spec.username = decodeURIComponent(username);
  if (password !== undefined) spec.password = decodeURIComponent(password);
  return spec;
}

/** A list of endpoints: a YAML list, or one string separated by commas (Patroni's `hosts`). */
export const endpointList: Check<EndpointSpec[]> = (v) => {
  const entries: unknown = typeof v === "string"
    ? v.split(",").map((s) => s.trim()).filter(Boolean)
    : v;
  if (!Array.isArray(entries) || entries.length === 0) {
    return fail(`must be a list of host:port, or one string separated by commas: got ${show(v)}`);
  }
  return entries.map((e) =>
    typeof e === "string" ? parseEndpoint(e) : fail(`must be host:port: got ${show(e)}`)
  );
};

/** One endpoint (Patroni's `host` or `url`). */
const endpoint: Check<EndpointSpec[]> = (v) => [parseEndpoint(text(v))];

/** A secret: a string, possibly empty, never shown in a message (a password). */
export const secret: Check<string> = (v) =>
  typeof v === "string" ? v : fail("must be a string (a number or boolean must be quoted)");

/** Patroni's DCS sections that patroniglue cannot watch, refused by name. */
export const UNSUPPORTED_DCS = ["consul", "zookeeper", "kubernetes", "exhibitor", "raft"] as const;

/** Keys of Patroni's etcd:/etcd3: section that name a discovery patroniglue does not do. */
const DISCOVERY = (why: string): Check<never> => () =>
  fail(`${why} is not supported; set dcs.hosts`);

/** The keys of an etcd:/etcd3: section that patroniglue reads (others are Patroni's alone). */
const ETCD_SECTION = {
  host: input(endpoint),
  hosts: input(endpointList),
  url: input(endpoint),
  urls: input(endpointList),
  protocol: input(oneOf(["http", "https"])),
  username: input(text),
  password: input(secret),
  cacert: input(text),
  cert: input(text),
  key: input(secret),
  proxy: input(DISCOVERY("an etcd proxy")),
  srv: input(DISCOVERY("DNS SRV discovery")),
  "use_proxies": input(bool),
} as const;

const PATRONI_SCHEMA = {
  scope: input(text),
  namespace: input(text),
  name: input(text),
  etcd: ETCD_SECTION,
  etcd3: ETCD_SECTION,
} as const;

/** A fact read from Patroni's file, with where it was written (`file:line:col`). */
export interface Fact<T> {
  value: T;
  at: string;
}

/** What Patroni's file says about its DCS; each fact with its position. */
export interface PatroniDcsFacts {
  file: string;
  type?: Fact<DcsKind>;
  endpoints?: Fact<EndpointSpec[]>;
  protocol?: Fact<"http" | "https">;
  scope?: Fact<string>;
  namespace?: Fact<string>;
  name?: Fact<string>;
  username?: Fact<string>;
  password?: Fact<string>;
  cacert?: Fact<string>;
  cert?: Fact<string>;
  key?: Fact<string>;
}

/** The facts, or every problem found (each `file:line:col: key: reason`). */
export type PatroniReading = { facts: PatroniDcsFacts; problems: [] } | {
  facts?: undefined;
  problems: string[];
};

/**
 * Reads Patroni's YAML file for its DCS facts; every other section and key of it is Patroni's own
 * and passed over. An unreadable file is one problem, which says how to do without it.
 */
export async function readPatroniConfig(file: string): Promise<PatroniReading> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      await Deno.readFile(file),
    );
  } catch (e) {
    const why = e instanceof TypeError ? "it is not UTF-8 text" : reason(e);
    return {
      problems: [
        `${file}: cannot read Patroni's configuration file: ${why} (it is often readable by Patroni's user only: let patroniglue's user read it, or set dcs.type, dcs.hosts, dcs.scope and dcs.name instead of dcs.patroni-config)`,
      ],
    };
  }
  return parsePatroniConfig(text, file);
}

/** Parses Patroni's YAML text (see {@linkcode readPatroniConfig}). */
export function parsePatroniConfig(text: string, file: string): PatroniReading {
  let root: YamlNode | null;
  try {
    root = parseYaml(text);
  } catch (e) {
    if (!(e instanceof YamlError)) throw e;
    return { problems: [`${file}:${e.line}:${e.col}: YAML syntax: ${e.message}`] };
  }
  const reading = readFile(PATRONI_SCHEMA, root, file, { ignoreUnknown: true });
  const problems = [...reading.problems];
  const where = (path: string) => {
    const node = reading.positions.get(path);
    return node ? `${file}:${node.line}:${node.col}` : file;
  };
  const fact = <T>(path: string, value: T | undefined): Fact<T> | undefined =>
    value === undefined ? undefined : { value, at: where(path) };
  const topKeys = root?.kind === "map"
    ? root.items.map((i) => ({
      name: i.key.kind === "scalar" ? String(i.key.value) : "",
      node: i.key,
    }))
    : [];
  const kinds = topKeys.filter((k) => k.name === "etcd" || k.name === "etcd3");
  const facts: PatroniDcsFacts = {
    file,
    scope: fact("scope", reading.values.scope),
    namespace: fact("namespace", reading.values.namespace),
    name: fact("name", reading.values.name),
  };
  if (kinds.length > 1) {
    problems.push(
      `${file}:${kinds[1].node.line}:${
        kinds[1].node.col
      }: both etcd and etcd3 sections: Patroni uses one DCS; remove the other`,
    );
  } else if (kinds.length === 0) {
    const other = topKeys.find((k) => (UNSUPPORTED_DCS as readonly string[]).includes(k.name));
    problems.push(
      other
        ? `${file}:${other.node.line}:${other.node.col}: ${other.name}: this DCS is not supported by patroniglue's DCS witness (supported: etcd, etcd3)`
        : `${file}: no etcd or etcd3 section: patroniglue's DCS witness supports etcd and etcd3`,
    );
  } else {
    const kind = kinds[0].name as DcsKind;
    const section = reading.values[kind];
    facts.type = { value: kind, at: `${file}:${kinds[0].node.line}:${kinds[0].node.col}` };
    const written = (["urls", "url", "hosts", "host"] as const).find((k) =>
      section[k] !== undefined
    );
    if (written) facts.endpoints = fact(`${kind}.${written}`, section[written]);
    facts.protocol = fact(`${kind}.protocol`, section.protocol);
    for (const k of ["username", "password", "cacert", "cert", "key"] as const) {
      facts[k] = fact(`${kind}.${k}`, section[k]);
    }
  }
  return problems.length ? { problems } : { facts, problems: [] };
}
