/**
 * Config schema machinery: keys declared once (check, default, role), value checks, YAML -> typed
 * values.
 * @module
 */
import { toValue, type YamlNode } from "./yaml/mod.ts";

/** Validates one YAML value: returns it typed, or throws a RangeError whose message is the reason. */
export type Check<T> = (value: unknown) => T;

/** A `setting` lands in the result under its camelCased name; an `input` feeds files, derived fields or rules. */
export type Role = "setting" | "input";

/**
 * What applying a changed key to a running service takes: `none` (validated only), `handler` (the
 * next checks see it), `log` (the log format), `sweeper`, `cache` (a new cache), `client` (a new
 * client to Patroni, and a new cache), `watcher` (a new DCS watcher), `certificate` (the certificate
 * and lowest TLS version of the next handshakes; a rebind when HTTPS is turned on or off), `frontend`, `metrics` or `agent` (that
 * listener bound again).
 */
export type Reload =
  | "none"
  | "handler"
  | "log"
  | "sweeper"
  | "cache"
  | "client"
  | "watcher"
  | "certificate"
  | "frontend"
  | "metrics"
  | "agent";

/** One key of the file: its check, the value used when it is absent, its role, and what a change to it takes. */
export class Key<T, R extends Role = Role> {
  /** What a reload that changes it must do (see {@linkcode Key.reloads}). */
  reload?: Reload;
  /** For an input, the field of the result it becomes (`certfile` -> `tls`); a setting's is its camelCased name. */
  into?: string;
  constructor(readonly check: Check<T>, readonly fallback: T, readonly role: R) {}

  /** Declares what a reload that changes this key must do, and (for an input) the field it becomes. */
  reloads(reload: Reload, into?: string): this {
    this.reload = reload;
    this.into = into;
    return this;
  }
}

/** A setting; without `fallback` it is undefined when absent. */
export function key<T>(check: Check<T>): Key<T | undefined, "setting">;
export function key<T>(check: Check<T>, fallback: NoInfer<T>): Key<T, "setting">;
export function key<T>(check: Check<T>, fallback?: T): Key<T | undefined, "setting"> {
  return new Key<T | undefined, "setting">(check, fallback, "setting");
}

/** An input: checked like any key, undefined when absent, not part of the result as itself. */
export function input<T>(check: Check<T>): Key<T | undefined, "input"> {
  return new Key<T | undefined, "input">(check, undefined, "input");
}

/** The keys of one section (`frontend:`), by their name in the file. */
export type Section = { readonly [name: string]: Key<unknown> };
/** A whole file: sections and top-level keys, by their name in the file. */
export type FileSchema = { readonly [name: string]: Section | Key<unknown> };

type ValueOf<K> = K extends Key<infer T> ? T : never;
/** A dashed name as a field (`log-format` -> `logFormat`), for keys and flags alike. */
export type Camel<S extends string> = S extends `${infer H}-${infer T}`
  ? `${H}${Capitalize<Camel<T>>}`
  : S;

/** The values a file gives, by name in the file, defaults applied. */
export type FileValues<F extends FileSchema> = {
  -readonly [K in keyof F]: F[K] extends Key<infer T> ? T
    : { -readonly [N in keyof F[K]]: ValueOf<F[K][N]> };
};
/** The settings of a section (or the top-level keys of a file), camelCased: `max-entries` -> `maxEntries`. */
export type Settings<S> = {
  -readonly [K in keyof S as S[K] extends Key<unknown, "setting"> ? Camel<K & string> : never]:
    ValueOf<S[K]>;
};
/** Every key of `F` as a path: `log-format`, `cache.ttl`. */
export type KeyPath<F extends FileSchema> = {
  [K in keyof F & string]: F[K] extends Key<unknown> ? K : `${K}.${keyof F[K] & string}`;
}[keyof F & string];

/** What reading a file gave: typed values, where each written key is, and every problem found. */
export interface Reading<F extends FileSchema> {
  values: FileValues<F>;
  /** The node of each key the file writes (its value, else the key itself), by path; valid or not. */
  positions: Map<string, YamlNode>;
  problems: string[];
}

/** How {@linkcode readFile} treats names the schema does not declare. */
export interface ReadOptions {
  /** Pass over unknown sections and keys (another program's file, read for a few keys). @default {false} */
  ignoreUnknown?: boolean;
}

/** Reads a YAML document against `schema`: unknown names, wrong types and ranges become problems. */
export function readFile<F extends FileSchema>(
  schema: F,
  root: YamlNode | null,
  file: string,
  options: ReadOptions = {},
): Reading<F> {
  const reader = new FileReader(schema, file, options);
  reader.document(root);
  return reader.reading() as Reading<F>;
}

/** One reading of a file against a schema: the values, positions and problems found so far. */
class FileReader {
  readonly positions = new Map<string, YamlNode>();
  readonly problems: string[] = [];
  readonly #values: Record<string, unknown> = {};
  readonly #sections: Record<string, Record<string, unknown>> = {};

  constructor(
    readonly schema: FileSchema,
    readonly file: string,
    readonly options: ReadOptions,
  ) {}

  #at(node: YamlNode): string {
    return `${this.file}:${node.line}:${node.col}`;
  }

  /** The top level: sections and top-level keys. */
  document(root: YamlNode | null): void {
    if (root !== null && !isNull(root) && root.kind !== "map") {
      this.problems.push(`${this.#at(root)}: the configuration must be a mapping of sections`);
    }
    for (const pair of root?.kind === "map" ? root.items : []) {
      const name = keyName(pair.key);
      const spec = Object.hasOwn(this.schema, name) ? this.schema[name] : undefined;
      if (spec === undefined) {
        this.#unknown(pair.key, `section '${name}'`, name, Object.keys(this.schema));
      } else if (spec instanceof Key) {
        this.#read(this.#values, name, name, spec, pair);
      } else if (pair.value !== null && !isNull(pair.value)) {
        this.#section(name, spec, pair.value);
      }
    }
  }

  #section(name: string, spec: Section, node: YamlNode): void {
    if (node.kind !== "map") {
      this.problems.push(`${this.#at(node)}: ${name}: must be a mapping of keys`);
      return;
    }
    const section: Record<string, unknown> = this.#sections[name] = {};
    for (const item of node.items) {
      const key = keyName(item.key);
      const path = `${name}.${key}`;
      if (Object.hasOwn(spec, key)) this.#read(section, key, path, spec[key], item);
      else this.#unknown(item.key, `key '${path}'`, key, Object.keys(spec));
    }
  }

  #unknown(node: YamlNode, what: string, name: string, known: string[]): void {
    if (this.options.ignoreUnknown) return;
    this.problems.push(`${this.#at(node)}: unknown ${what}${suggest(name, known)}`);
  }

  /** Checks one key's value; a refusal (a RangeError from its check) is a problem, anything else a bug. */
  #read(
    into: Record<string, unknown>,
    name: string,
    path: string,
    spec: Key<unknown>,
    pair: { key: YamlNode; value: YamlNode | null },
  ): void {
    const node = pair.value ?? pair.key;
    this.positions.set(path, node);
    try {
      into[name] = spec.check(toValue(pair.value));
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      this.problems.push(`${this.#at(node)}: ${path}: ${e.message}`);
    }
  }

  /** The values with every absent key at its default, and what was found. */
  reading(): Reading<FileSchema> {
    for (const [name, spec] of Object.entries(this.schema)) {
      if (spec instanceof Key) {
        this.#values[name] ??= spec.fallback;
        continue;
      }
      const section = this.#values[name] = this.#sections[name] ?? {};
      for (const [key, { fallback }] of Object.entries(spec)) section[key] ??= fallback;
    }
    return {
      values: this.#values as FileValues<FileSchema>,
      positions: this.positions,
      problems: this.problems,
    };
  }
}

/** The settings among `values`, camelCased (`max-entries` -> `maxEntries`); sections and inputs are left out. */
export function settings<S extends Section | FileSchema>(
  schema: S,
  values: { readonly [K in keyof S]: unknown },
): Settings<S> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    if (spec instanceof Key && spec.role === "setting") out[camel(name)] = values[name];
  }
  return out as Settings<S>;
}

/**
 * For each key, the path of the result it becomes (`cache.maxEntries`, `frontend.tls` for
 * `frontend.certfile`) -> the key: what a reload that changes that part of the result must do.
 */
export function resultKeys(schema: FileSchema): Map<string, { path: string; key: Key<unknown> }> {
  const out = new Map<string, { path: string; key: Key<unknown> }>();
  const add = (prefix: string, name: string, key: Key<unknown>) => {
    const into = key.into ?? camel(name);
    if (key.role === "setting" || key.into !== undefined) {
      out.set(prefix + into, { path: prefix + name, key });
    }
  };
  for (const [name, spec] of Object.entries(schema)) {
    if (spec instanceof Key) add("", name, spec);
    else for (const [k, key] of Object.entries(spec)) add(`${name}.`, k, key);
  }
  return out;
}

/** For each setting, its path in the result (`cache.maxEntries`) -> its path in the file (`cache.max-entries`). */
export function fileNames(schema: FileSchema): Map<string, string> {
  const names = new Map<string, string>();
  for (const [name, spec] of Object.entries(schema)) {
    if (spec instanceof Key) {
      if (spec.role === "setting") names.set(camel(name), name);
      continue;
    }
    for (const [key, { role }] of Object.entries(spec)) {
      if (role === "setting") names.set(`${name}.${camel(key)}`, `${name}.${key}`);
    }
  }
  return names;
}

/** {@linkcode Camel} at run time. */
export function camel(name: string): string {
  return name.replace(/-(.)/g, (_, c: string) => c.toUpperCase());
}

function isNull(node: YamlNode): boolean {
  return node.kind === "scalar" && node.value === null;
}

/** A mapping key as text. */
function keyName(key: YamlNode): string {
  return key.kind === "scalar" ? String(key.value) : "(a mapping or list as a key)";
}

/** The message of an error, or the thrown value as text. */
export function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** ` (did you mean 'port'?)` when a known name is one or two edits away, else the known names. */
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

// Checks. Each message reads after the key: `frontend.port: must be an integer from 1 to 65535: got 0`.

/** Throws the reason a value is refused. */
export function fail(reason: string): never {
  throw new RangeError(reason);
}

/** A value as the file wrote it: strings quoted, collections as JSON. */
export function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null || typeof v !== "object") return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return Array.isArray(v) ? "a list" : "a mapping";
  }
}

/** A non-empty string. */
export const text: Check<string> = (v) =>
  typeof v === "string" && v !== "" ? v : fail(`must be a non-empty string: got ${show(v)}`);

/** A host name or IP address (IPv6 with or without brackets; given without them). */
export const host: Check<string> = (v) => {
  const s = text(v);
  if (s.includes("://")) fail(`must be a host name or IP address, not a URL: got ${show(s)}`);
  if (!/^(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z._:%-]+)$/.test(s)) {
    fail(`must be a host name or IP address: got ${show(s)}`);
  }
  return s.startsWith("[") ? s.slice(1, -1) : s;
};

/** An integer from `min` to `max`. */
export const integer = (min: number, max: number): Check<number> => (v) =>
  typeof v === "number" && Number.isInteger(v) && v >= min && v <= max
    ? v
    : fail(`must be an integer from ${min} to ${max}: got ${show(v)}`);

/** A TCP port. */
export const port: Check<number> = integer(1, 65535);

/** true or false (YAML 1.1 spellings included: `yes`, `on`, ...). */
export const bool: Check<boolean> = (v) =>
  typeof v === "boolean" ? v : fail(`must be true or false: got ${show(v)}`);

/** Seconds, above (or, `inclusive`, at least) `min`, at most a day. */
export const seconds = (min: number, inclusive: boolean): Check<number> => (v) => {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    return fail(`must be a number of seconds: got ${show(v)}`);
  }
  if (inclusive ? v < min : v <= min) {
    return fail(`must be ${inclusive ? "at least" : "more than"} ${min} seconds: got ${v}`);
  }
  return v <= 86400 ? v : fail(`must be at most 86400 seconds: got ${v}`);
};

/** One of `choices`, typed as their union. */
export function oneOf<const C extends readonly string[]>(choices: C): Check<C[number]> {
  return (v) => {
    const found = choices.find((c) => c === v);
    return found ?? fail(`must be one of ${choices.join(", ")}: got ${show(v)}`);
  };
}
