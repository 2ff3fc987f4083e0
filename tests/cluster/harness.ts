// A real cluster on loopback for the cluster suite: one etcd (Patroni's `etcd:` v2 API or its
// `etcd3:` v3 API), three Patroni 3.x nodes running PostgreSQL 15 as `postgres`, a TCP relay in
// front of each Patroni's REST API (SIGSTOP it and the API freezes while Patroni's HA loop runs on),
// two patroniglue per node (one as before; one with a `dcs:` section, the DCS witness) and HAProxy
// with route pairs that check Patroni directly ("d_*"), through patroniglue ("g_*") and through the
// witness ("w_*"), plus routes that check PostgreSQL's port and ask a patroniglue's agent-check
// listener ("a_*", "wa_*"). HAProxy and both patroniglue reach Patroni through the relay; Patroni's
// own connect_address (member-to-member calls, patronictl) and the suite's `rest()` the real port.
//
// Everything runs from a fresh temp dir and is torn down by recorded PIDs (plus each node's
// data/postmaster.pid, since Patroni detaches PostgreSQL). Needs root: PostgreSQL runs as
// `postgres` through setpriv. Debian packages: patroni postgresql-15 etcd-server haproxy.
import { concat } from "../support/tools.ts";
import { sleep } from "../support/glue.ts";

const PGBIN = "/usr/lib/postgresql/15/bin";
const PYTHON = "/usr/bin/python3"; // Debian's python has python3-etcd and psycopg2
const PATRONI = "/usr/bin/patroni";
const PATRONICTL = "/usr/bin/patronictl";
const ETCD = "/usr/bin/etcd";
const HAPROXY = "/usr/sbin/haproxy";
const SETPRIV = "/usr/bin/setpriv";
const SH = "/bin/sh";
const APT_HINT = "apt-get install patroni postgresql-15 etcd-server haproxy";

export const SCOPE = "pgglue";
export const NODES = 3;
/** patroniglue cache ttl, backend timeout (seconds), written to each patroniglue config. */
export const GLUE_TTL = 1;
export const GLUE_TIMEOUT = 1;
/** HAProxy check interval (seconds) for every route. */
export const CHECK_INTER = 0.5;
/** HAProxy's `fall` (failed checks that mark a server down) and `timeout check` (seconds). */
export const CHECK_FALL = 2;
export const CHECK_TIMEOUT = 1;
/** Patroni's `ttl` (seconds): how long the leader lock lives unless renewed. */
export const PATRONI_TTL = 5;
/** Patroni's `loop_wait` (seconds): the leader renews its lock once per HA loop. */
export const PATRONI_LOOP_WAIT = 1;

/** The repository root (patroniglue's main.ts and deno.json). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** How HAProxy checks a route's servers. */
export interface RouteDef {
  /** "rw": the primary's PostgreSQL; "ro": the replicas'. */
  kind: "rw" | "ro";
  /** Who answers the check: Patroni's REST API, patroniglue's HTTP or its agent listener. */
  via: "patroni" | "glue" | "agent";
  /** The `option httpchk` lines; agent routes check PostgreSQL's port over TCP instead. */
  check?: string;
  /** The agent-check line sent to patroniglue (agent routes). */
  agentSend?: string;
  /** Without `on-marked-down shutdown-sessions`: HAProxy keeps sessions to a server gone down. */
  keepSessions?: boolean;
  /** Ask the patroniglue with the DCS witness (`dcs:`) instead of the one without. */
  witness?: boolean;
}

const REPLICA_CHECK =
  "option httpchk\n    http-check send meth GET uri /replica?lag=1MB ver HTTP/1.1 hdr Host localhost";

const ROUTE_DEFS = {
  d_primary: { kind: "rw", via: "patroni", check: "option httpchk OPTIONS /primary" },
  g_primary: { kind: "rw", via: "glue", check: "option httpchk OPTIONS /primary" },
  d_bare: { kind: "rw", via: "patroni", check: "option httpchk" },
  g_bare: { kind: "rw", via: "glue", check: "option httpchk" },
  d_replica: { kind: "ro", via: "patroni", check: REPLICA_CHECK },
  g_replica: { kind: "ro", via: "glue", check: REPLICA_CHECK },
  a_primary: { kind: "rw", via: "agent", agentSend: "/primary" },
  a_replica: { kind: "ro", via: "agent", agentSend: "/replica?lag=1MB" },
  /** a_primary without `on-marked-down shutdown-sessions`: what the suite shows that is unsafe */
  a_keep: { kind: "rw", via: "agent", agentSend: "/primary", keepSessions: true },
  // the same checks answered by the patroniglue with the DCS witness
  w_primary: { kind: "rw", via: "glue", check: "option httpchk OPTIONS /primary", witness: true },
  w_replica: { kind: "ro", via: "glue", check: REPLICA_CHECK, witness: true },
  wa_primary: { kind: "rw", via: "agent", agentSend: "/primary", witness: true },
  wa_replica: { kind: "ro", via: "agent", agentSend: "/replica?lag=1MB", witness: true },
} satisfies Record<string, RouteDef>;
/** HAProxy routes: name -> what it checks. */
export const ROUTES: Record<Route, RouteDef> = ROUTE_DEFS;
export type Route = keyof typeof ROUTE_DEFS;
export const ROUTE_NAMES = Object.keys(ROUTES) as Route[];
/** HAProxy's `agent-inter` (seconds) on the agent routes. */
export const AGENT_INTER = 0.5;

// ---------------------------------------------------------------------------------------------
// small utilities

export const now = (): number => performance.now();
export const secs = (ms: number): string => `${(ms / 1000).toFixed(2)}s`;

/** Run `fn` with a signal that aborts after `ms` (a cleared timer: no op left behind). */
async function withDeadline<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    return await fn(ac.signal);
  } finally {
    clearTimeout(timer);
  }
}

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Why the suite cannot run here, or null when it can. */
export function skipReason(): string | null {
  for (const name of ["read", "write", "run", "net", "env", "sys"] as const) {
    if (Deno.permissions.querySync({ name }).state !== "granted") {
      return `needs all permissions (run it as: deno test -A tests/cluster/)`;
    }
  }
  const programs: [string, string][] = [
    [PATRONI, "patroni"],
    [PATRONICTL, "patroni"],
    [PYTHON, "python3"],
    [`${PGBIN}/postgres`, "postgresql-15"],
    [`${PGBIN}/initdb`, "postgresql-15"],
    [`${PGBIN}/pg_ctl`, "postgresql-15"],
    [`${PGBIN}/pg_basebackup`, "postgresql-15"],
    [`${PGBIN}/pg_rewind`, "postgresql-15"],
    [ETCD, "etcd-server"],
    [HAPROXY, "haproxy"],
    [SETPRIV, "util-linux"],
    [SH, "a POSIX sh"],
  ];
  for (const [path, pkg] of programs) {
    if (!isExecutable(path)) return `${pkg} not installed (${path} missing; ${APT_HINT})`;
  }
  if (Deno.build.os !== "linux") return "needs Linux";
  if (Deno.uid() !== 0) return "needs root (PostgreSQL runs as the postgres user via setpriv)";
  try {
    const passwd = Deno.readTextFileSync("/etc/passwd");
    if (!passwd.split("\n").some((l) => l.startsWith("postgres:"))) {
      return `no postgres user (${APT_HINT})`;
    }
  } catch {
    return "cannot read /etc/passwd";
  }
  if (!isExecutable(Deno.execPath())) return "cannot find the deno executable";
  try {
    Deno.statSync(`${REPO_ROOT}main.ts`);
  } catch {
    return `patroniglue's main.ts not found in ${REPO_ROOT}`;
  }
  return null;
}

/** Is the process alive (and not a zombie)? */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return "";
  }
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function waitGone(pids: number[], ms: number): Promise<boolean> {
  const end = now() + ms;
  while (now() < end) {
    if (!pids.some(alive)) return true;
    await sleep(25);
  }
  return !pids.some(alive);
}

/** Wait until `fn` returns a truthy value; throws with `what` (and the last value) on timeout. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  timeoutMs = 30_000,
  stepMs = 100,
): Promise<T> {
  const end = now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (now() > end) {
      throw new Error(
        `timed out after ${secs(timeoutMs)} waiting for ${what} (last: ${fmt(last)})`,
      );
    }
    await sleep(stepMs);
  }
}

function fmt(v: unknown): string {
  if (v instanceof Error) return v.message;
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/**
 * Watches this process's event loop. A long gap means the whole machine stalled (a paused VM, a
 * starved CPU): every timer on it fired late, patroniglue's backend timeouts included, so a
 * timing measured across the gap says nothing about patroniglue.
 */
export class StallWatch implements Disposable {
  maxGapMs = 0;
  #last = now();
  readonly #id: ReturnType<typeof setInterval>;
  constructor(readonly periodMs = 50) {
    this.#id = setInterval(() => {
      const t = now();
      this.maxGapMs = Math.max(this.maxGapMs, t - this.#last - periodMs);
      this.#last = t;
    }, periodMs);
  }
  [Symbol.dispose](): void {
    clearInterval(this.#id);
  }
}

/** Granularity of the suite's own polling and of a request's round trip (ms). */
export const SLACK_MS = 250;
/** A gap this long in our own event loop means the machine stalled (see StallWatch). */
const STALL_MS = 500;

/**
 * A scenario failed because the machine was too slow for its premise (Patroni's HA loop ran late),
 * not because of patroniglue: `timed` runs it again.
 */
export class Late extends Error {
  constructor(why: string, readonly failure: unknown) {
    super(why);
  }
}

/**
 * Run a timing-sensitive scenario. When it fails while the machine stalled (or it says it was
 * `Late`), run it again (three attempts): the stall, not patroniglue, made it late. Without a
 * stall a failure is a failure.
 */
export async function timed(c: Cluster, what: string, fn: () => Promise<void>): Promise<void> {
  for (let attempt = 1;; attempt++) {
    using watch = new StallWatch();
    try {
      return await fn();
    } catch (e) {
      const why = e instanceof Late
        ? e.message
        : watch.maxGapMs >= STALL_MS
        ? `the machine stalled for ${secs(watch.maxGapMs)}`
        : null;
      if (why === null) throw e;
      const failure = e instanceof Late ? e.failure : e;
      const msg = `${what}: ${why}`;
      if (attempt >= 3) throw new Error(`${msg} in each of 3 attempts; last: ${failure}`);
      console.log(`measure: ${msg}, once more (${String(failure).split("\n")[0]})`);
      await c.recover();
    }
  }
}

/** A label for rows written by the suite, unique per attempt of a scenario. */
export const tag = (what: string): string => `${what}_${Math.random().toString(36).slice(2, 8)}`;

// ---------------------------------------------------------------------------------------------
// raw HTTP and agent-check clients: exact answers, a hard deadline covering connect, no pooling

export interface HttpAnswer {
  status: number; // 0 = no answer (refused, reset, timeout)
  headers: Record<string, string>;
  body: string;
  ms: number;
  error?: string;
}

export interface HttpOptions {
  method?: string;
  timeoutMs?: number;
  /** "1.0": a bare `METHOD path HTTP/1.0` without headers, as HAProxy's bare httpchk sends */
  version?: "1.0" | "1.1";
  /** A JSON body (HTTP/1.1 only; ASCII) */
  json?: string;
}

/**
 * One TCP exchange with a hard deadline covering connect: send `request`, read until the peer
 * closes or `done` says of a chunk just read that it is enough. Resolves to the bytes or an error.
 */
async function exchange(
  port: number,
  request: string,
  timeoutMs: number,
  done: (received: Uint8Array) => boolean = () => false,
): Promise<{ bytes: Uint8Array } | { error: string }> {
  const ac = new AbortController();
  let conn: Deno.TcpConn | undefined;
  let closed = false;
  const close = () => {
    if (conn && !closed) {
      closed = true;
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  };
  const timer = setTimeout(() => {
    ac.abort();
    close();
  }, timeoutMs);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port, signal: ac.signal });
    if (ac.signal.aborted) throw new Error("timeout");
    const req = new TextEncoder().encode(request);
    for (let off = 0; off < req.length;) off += await conn.write(req.subarray(off));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(16384);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      if (done(buf.subarray(0, n))) break;
    }
    return { bytes: concat(chunks) };
  } catch (e) {
    return { error: ac.signal.aborted ? "timeout" : e instanceof Error ? e.message : String(e) };
  } finally {
    clearTimeout(timer);
    close();
  }
}

/** One HTTP/1 request on a connection of its own; status 0 when no whole answer came. */
export async function http(
  port: number,
  path: string,
  opts: HttpOptions = {},
): Promise<HttpAnswer> {
  const method = opts.method ?? "GET";
  const t0 = now();
  const content = opts.json === undefined
    ? ""
    : `Content-Type: application/json\r\nContent-Length: ${opts.json.length}\r\n`;
  const head = opts.version === "1.0"
    ? `${method} ${path} HTTP/1.0\r\n\r\n`
    : `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${content}Connection: close\r\n\r\n${
      opts.json ?? ""
    }`;
  const r = await exchange(port, head, opts.timeoutMs ?? 3000);
  const fail = (error: string) => ({ status: 0, headers: {}, body: "", ms: now() - t0, error });
  if ("error" in r) return fail(r.error);
  const raw = new TextDecoder().decode(r.bytes);
  const sep = raw.indexOf("\r\n\r\n");
  if (sep < 0) return fail(`incomplete answer: ${JSON.stringify(raw.slice(0, 80))}`);
  const lines = raw.slice(0, sep).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return fail(`bad status line: ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = raw.slice(sep + 4);
  if (headers["transfer-encoding"]?.toLowerCase() === "chunked") body = dechunk(body);
  return { status: Number(m[1]), headers, body, ms: now() - t0 };
}

export interface AgentAnswer {
  /** The line without its `\n`; null when none came (refused, closed, timeout). */
  line: string | null;
  ms: number;
  error?: string;
}

/** What HAProxy's agent-check does: connect, send `send` (may be ""), read one line. */
export async function agentCheck(
  port: number,
  send: string,
  timeoutMs = 3000,
): Promise<AgentAnswer> {
  const t0 = now();
  const r = await exchange(port, send, timeoutMs, (chunk) => chunk.includes(10));
  if ("error" in r) return { line: null, ms: now() - t0, error: r.error };
  const text = new TextDecoder().decode(r.bytes);
  const eol = text.indexOf("\n");
  if (eol < 0) return { line: null, ms: now() - t0, error: `no line: ${JSON.stringify(text)}` };
  return { line: text.slice(0, eol), ms: now() - t0 };
}

function dechunk(s: string): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const eol = s.indexOf("\r\n", i);
    if (eol < 0) break;
    const size = parseInt(s.slice(i, eol), 16);
    if (!size) break;
    out += s.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// a PostgreSQL client: one session held open (trust auth, simple queries), read in the background
// so that the moment it is cut, and by whom (a FATAL from PostgreSQL, or a bare close), is known

/** An ErrorResponse: severity, SQLSTATE and message. */
export interface PgError {
  severity: string;
  code: string;
  message: string;
}

export interface QueryResult {
  rows: (string | null)[][];
  /** The first error of the query; null when it succeeded. */
  error: PgError | null;
  /** The session was closed before or while the query ran. */
  closed: boolean;
  ms: number;
}

/** Protocol 3.0 StartupMessage for user and database `postgres`. */
function startupMessage(): Uint8Array {
  const body = new TextEncoder().encode(
    "user\0postgres\0database\0postgres\0application_name\0cluster-suite\0\0",
  );
  const msg = new Uint8Array(8 + body.length);
  const dv = new DataView(msg.buffer);
  dv.setInt32(0, msg.length);
  dv.setInt32(4, 3 << 16);
  msg.set(body, 8);
  return msg;
}

function pgMessage(type: string, body: Uint8Array): Uint8Array {
  const msg = new Uint8Array(5 + body.length);
  msg[0] = type.charCodeAt(0);
  new DataView(msg.buffer).setInt32(1, 4 + body.length);
  msg.set(body, 5);
  return msg;
}

function pgErrorFields(body: Uint8Array): PgError {
  const f: Record<string, string> = {};
  for (let i = 0; i < body.length && body[i] !== 0;) {
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    f[String.fromCharCode(body[i])] = new TextDecoder().decode(body.subarray(i + 1, end));
    i = end + 1;
  }
  return { severity: f.V ?? f.S ?? "", code: f.C ?? "", message: f.M ?? "" };
}

function pgDataRow(body: Uint8Array): (string | null)[] {
  const dv = new DataView(body.buffer, body.byteOffset, body.length);
  const row: (string | null)[] = [];
  let off = 2;
  for (let k = 0, n = dv.getInt16(0); k < n; k++) {
    const len = dv.getInt32(off);
    off += 4;
    row.push(len < 0 ? null : new TextDecoder().decode(body.subarray(off, off + len)));
    off += Math.max(0, len);
  }
  return row;
}

type PendingQuery = {
  resolve: (r: QueryResult) => void;
  rows: (string | null)[][];
  error: PgError | null;
  t0: number;
};

/** One PostgreSQL session through a port (a node or a HAProxy route). */
export class PgSession implements AsyncDisposable {
  /** When the connection ended (read EOF or reset), by either side. */
  closedAt: number | null = null;
  /** A FATAL the server sent: PostgreSQL ended the session (57P01: shutdown, postmaster exit). */
  fatal: PgError | null = null;
  #conn: Deno.TcpConn;
  #reader: Promise<void>;
  #pending: PendingQuery | null = null;
  #ready = Promise.withResolvers<void>();

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#ready.promise.catch(() => {});
    this.#reader = this.#read();
  }

  /** Connect and authenticate; throws when that fails within `timeoutMs`. */
  static async open(port: number, timeoutMs = 2000): Promise<PgSession> {
    const conn = await withDeadline(
      timeoutMs,
      (signal) => Deno.connect({ hostname: "127.0.0.1", port, signal }),
    );
    const s = new PgSession(conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await s.#write(startupMessage());
      await Promise.race([
        s.#ready.promise,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error("no ReadyForQuery")), timeoutMs);
        }),
      ]);
      return s;
    } catch (e) {
      await s.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  get open(): boolean {
    return this.closedAt === null;
  }

  /** A simple query (several statements allowed; rows of all of them). */
  async query(sql: string, timeoutMs = 2000): Promise<QueryResult> {
    const t0 = now();
    if (!this.open) return { rows: [], error: this.fatal, closed: true, ms: 0 };
    if (this.#pending) throw new Error("a query is already running on this session");
    const { promise, resolve } = Promise.withResolvers<QueryResult>();
    const pending: PendingQuery = { resolve, rows: [], error: null, t0 };
    this.#pending = pending;
    this.#write(pgMessage("Q", new TextEncoder().encode(`${sql}\0`))).catch(() => this.#abort());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<QueryResult>((r) => {
      timer = setTimeout(() => {
        const error = { severity: "", code: "", message: `no answer within ${timeoutMs}ms` };
        r({ rows: [], error, closed: false, ms: now() - t0 });
      }, timeoutMs);
    });
    const r = await Promise.race([promise, timeout]);
    clearTimeout(timer);
    if (this.#pending === pending) await this.close(); // out of step with the server: give up
    return r;
  }

  async #write(b: Uint8Array): Promise<void> {
    for (let off = 0; off < b.length;) off += await this.#conn.write(b.subarray(off));
  }

  #abort(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  async #read(): Promise<void> {
    let buf: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(16384);
    try {
      while (true) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        buf = concat([buf, chunk.subarray(0, n)]);
        while (buf.length >= 5) {
          const len = new DataView(buf.buffer, buf.byteOffset + 1, 4).getInt32(0);
          if (buf.length < 1 + len) break;
          this.#message(String.fromCharCode(buf[0]), buf.subarray(5, 1 + len));
          buf = buf.slice(1 + len);
        }
      }
    } catch {
      // reset by the peer, or closed by us
    }
    this.closedAt ??= now();
    this.#ready.reject(new Error(`closed before ReadyForQuery: ${this.fatal?.message ?? "EOF"}`));
    const p = this.#pending;
    this.#pending = null;
    p?.resolve({ rows: p.rows, error: p.error ?? this.fatal, closed: true, ms: now() - p.t0 });
  }

  #message(type: string, body: Uint8Array): void {
    const p = this.#pending;
    if (type === "R") {
      const method = new DataView(body.buffer, body.byteOffset, 4).getInt32(0);
      if (method !== 0) {
        this.fatal = { severity: "FATAL", code: "", message: `auth method ${method} (want trust)` };
        this.#abort();
      }
    } else if (type === "Z") {
      this.#ready.resolve();
      this.#pending = null;
      p?.resolve({ rows: p.rows, error: p.error, closed: false, ms: now() - p.t0 });
    } else if (type === "E") {
      const e = pgErrorFields(body);
      if (e.severity === "FATAL" || e.severity === "PANIC" || !p) this.fatal = e;
      if (p) p.error ??= e;
    } else if (type === "D" && p) {
      p.rows.push(pgDataRow(body));
    }
  }

  /** Close the connection and wait for the reader. */
  async close(): Promise<void> {
    this.#abort();
    await this.#reader;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The table SessionWriter writes to (made at boot on the first primary). */
export const WRITES_TABLE = "suite_writes";

/** One attempt of a SessionWriter. */
export interface WriteAttempt {
  /** now() when sent */
  at: number;
  /** The node it ran on (`inet_server_port()`); null when no row came back. */
  node: number | null;
  /** The insert committed. */
  wrote: boolean;
  error: string | null;
}

/**
 * A client holding one session: every `everyMs` it asks where it runs and inserts a row labelled
 * `label` into WRITES_TABLE, in one implicit transaction, until the session is cut or stopped.
 */
export class SessionWriter implements AsyncDisposable {
  readonly attempts: WriteAttempt[] = [];
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(
    readonly label: string,
    readonly session: PgSession,
    /** The node the session was opened on. */
    readonly node: number,
    nodeByPgPort: (port: number) => number | null,
    everyMs: number,
  ) {
    const sql = `select inet_server_port(); insert into ${WRITES_TABLE} (who) values ('${label}')`;
    this.#loop = (async () => {
      while (!this.#stopped && session.open) {
        const at = now();
        const r = await session.query(sql);
        const port = r.rows[0]?.[0];
        this.attempts.push({
          at,
          node: port ? nodeByPgPort(Number(port)) : null,
          wrote: r.error === null && !r.closed,
          error: r.error ? `${r.error.code} ${r.error.message}`.trim() : r.closed ? "closed" : null,
        });
        if (session.open && !this.#stopped) await sleep(everyMs);
      }
    })();
  }

  get closedAt(): number | null {
    return this.session.closedAt;
  }

  /** Times of the committed writes on `node`. */
  writesOn(node: number): number[] {
    return this.attempts.filter((a) => a.wrote && a.node === node).map((a) => a.at);
  }

  /** What ended the session: PostgreSQL's FATAL, a close without one, or "open". */
  get ending(): string {
    if (this.session.open) return "open";
    const f = this.session.fatal;
    return f ? `PostgreSQL ${f.severity} ${f.code} "${f.message}"` : "closed without a message";
  }

  /** Stop writing and close the session. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
    await this.session.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** One write of a {@linkcode ShortWriter}. */
export interface ShortWrite {
  /** The row's `who`: the writer's label and the attempt's number. */
  id: string;
  /** now() when its connection was opened, and when it was answered or given up. */
  at: number;
  end: number;
  /** The node it ran on (`inet_server_port()`); null when no row came back. */
  node: number | null;
  /** The statement committed (for a write: the row is acknowledged). */
  ok: boolean;
  error: string | null;
}

/**
 * Writes as a client that connects for each one: every `everyMs` (a fixed rate, attempts never wait
 * for each other) a connection of its own through `port` asks where it runs and inserts a row with
 * a `who` of its own into WRITES_TABLE, in one implicit transaction, within `timeoutMs`; with
 * `readOnly` it only asks where it runs.
 */
export class ShortWriter implements AsyncDisposable {
  readonly writes: ShortWrite[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(
    readonly cluster: Cluster,
    readonly port: number,
    readonly label: string,
    readonly opts: { everyMs?: number; timeoutMs?: number; readOnly?: boolean } = {},
  ) {
    const everyMs = opts.everyMs ?? 250;
    const t0 = now();
    let k = 0;
    const tick = () => {
      if (this.#stopped) return;
      const p = this.#attempt(`${label}_${k}`).finally(() => this.#inFlight.delete(p));
      this.#inFlight.add(p);
      k++;
      this.#timer = setTimeout(tick, Math.max(0, t0 + k * everyMs - now()));
    };
    tick();
  }

  async #attempt(id: string): Promise<void> {
    const at = now();
    const sql = `select inet_server_port()` +
      (this.opts.readOnly ? "" : `; insert into ${WRITES_TABLE} (who) values ('${id}')`);
    const r = await this.cluster.sql(this.port, sql, this.opts.timeoutMs ?? 2000);
    const port = r.rows[0]?.[0];
    this.writes.push({
      id,
      at,
      end: now(),
      node: port ? this.cluster.nodeByPgPort(Number(port)) : null,
      ok: r.error === null && !r.closed,
      error: r.error ? `${r.error.code} ${r.error.message}`.trim() : r.closed ? "closed" : null,
    });
  }

  /** The attempts that failed. */
  get failed(): ShortWrite[] {
    return this.writes.filter((w) => !w.ok);
  }

  /** `3 of 48 failed` (what the issue counted). */
  get summary(): string {
    return `${this.failed.length} of ${this.writes.length} failed`;
  }

  /** Stop starting attempts and wait for those in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
    this.writes.sort((a, b) => a.at - b.at);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// processes

/** A program the harness started, by its exact PID (the spawned sh execs into the program). */
export class Proc {
  exitCode: number | null = null;
  readonly done: Promise<Deno.CommandStatus>;
  constructor(
    readonly name: string,
    readonly child: Deno.ChildProcess,
    readonly logFile: string,
  ) {
    this.done = child.status.then((s) => {
      this.exitCode = s.code;
      return s;
    });
  }
  get pid(): number {
    return this.child.pid;
  }
  get running(): boolean {
    return this.exitCode === null && alive(this.pid);
  }
  signal(sig: Deno.Signal): void {
    if (this.exitCode === null) signal(this.pid, sig);
  }
  /** Wait for the exit; SIGKILL after `ms`. Resolves to the exit status. */
  async stop(sig: Deno.Signal = "SIGTERM", ms = 10_000): Promise<Deno.CommandStatus> {
    this.signal("SIGCONT");
    this.signal(sig);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), ms));
    const s = await Promise.race([this.done, timeout]);
    clearTimeout(timer);
    if (s) return s;
    this.signal("SIGKILL");
    return await this.done;
  }
}

/** One of a node's two patroniglue: without a DCS, or with the DCS witness. */
export type GlueKind = "glue" | "witness";

/** A patroniglue of a node: its config file, HTTP and agent ports, and process. */
export interface GlueInstance {
  config: string;
  port: number;
  agentPort: number;
  proc: Proc | null;
}

export interface Node {
  i: number; // 1-based
  name: string; // node1..
  dir: string;
  dataDir: string;
  config: string; // patroni.yml
  /** Patroni's REST API (restapi.listen and connect_address). */
  restPort: number;
  /** The relay in front of the REST API: what HAProxy's direct checks and patroniglue ask. */
  relayPort: number;
  pgPort: number;
  patroni: Proc | null;
  relay: Proc | null;
  /** patroniglue without a DCS ("glue") and with the DCS witness ("witness"). */
  glues: Record<GlueKind, GlueInstance>;
}

export interface Ports {
  base: number;
  etcd: number;
  etcdPeer: number;
  stats: number;
  routes: Record<Route, number>;
}

/** A node's ports in a range of 100: base + offset + node number. */
const NODE_PORTS = {
  rest: 10,
  pg: 20,
  glue: 30,
  agent: 40,
  relay: 50,
  witness: 60,
  witnessAgent: 70,
} as const;
/** The first HAProxy route port (stats one below), up to base + 99. */
const ROUTE_BASE = 81;

function nodePort(p: Ports, what: keyof typeof NODE_PORTS, i: number): number {
  return p.base + NODE_PORTS[what] + i;
}

function portsFor(base: number): Ports {
  const routes = {} as Record<Route, number>;
  ROUTE_NAMES.forEach((r, k) => routes[r] = base + ROUTE_BASE + k);
  return { base, etcd: base, etcdPeer: base + 1, stats: base + ROUTE_BASE - 1, routes };
}

function allPorts(p: Ports): number[] {
  const out = [p.etcd, p.etcdPeer, p.stats, ...Object.values(p.routes)];
  for (let i = 1; i <= NODES; i++) {
    for (const what of Object.keys(NODE_PORTS) as (keyof typeof NODE_PORTS)[]) {
      out.push(nodePort(p, what, i));
    }
  }
  return out;
}

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Below the Linux ephemeral range and away from ../shared/lab's ports. A range is taken with a
 * lock file (owner PID inside) so that two runs at once (a `deno task test` and a
 * `deno task test:cluster`) never pick the same one.
 */
function pickPorts(tmp: string): { ports: Ports; lock: string } {
  const first = Number(Deno.env.get("PATRONIGLUE_CLUSTER_PORT_BASE") ?? 23500);
  for (let k = 0; k < 10; k++) {
    const p = portsFor(first + 100 * k);
    const lock = `${tmp}/${TMP_PREFIX}ports-${p.base}.lock`;
    try {
      const owner = Number(Deno.readTextFileSync(lock));
      if (owner && alive(owner) && cmdline(owner).includes("deno")) continue;
      Deno.removeSync(lock);
    } catch {
      // no lock
    }
    try {
      Deno.writeTextFileSync(lock, String(Deno.pid), { createNew: true, mode: 0o644 });
    } catch {
      continue; // taken just now
    }
    if (allPorts(p).every(portFree)) return { ports: p, lock };
    Deno.removeSync(lock);
  }
  throw new Error(`no free port range of 100 from ${first} (set PATRONIGLUE_CLUSTER_PORT_BASE)`);
}

const TMP_PREFIX = "patroniglue-cluster-";

/**
 * Stop what a previous run left behind when its test runner died without tearing down (SIGKILL):
 * only dirs whose owner (the deno that made them) is gone, only PIDs recorded there whose command
 * line names that dir.
 */
async function reapAbandoned(tmp: string): Promise<void> {
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(tmp)];
  } catch {
    return;
  }
  for (const e of entries) {
    if (!e.isDirectory || !e.name.startsWith(TMP_PREFIX) || e.name.endsWith(".lock")) continue;
    const dir = `${tmp}/${e.name}`;
    let owner = 0;
    try {
      owner = Number(Deno.readTextFileSync(`${dir}/run/owner`));
    } catch {
      continue;
    }
    if (owner && alive(owner) && cmdline(owner).includes("deno")) continue;
    const pids: number[] = [];
    for (const f of safeReadDir(`${dir}/run`)) {
      if (f.endsWith(".pid")) pids.push(Number(Deno.readTextFileSync(`${dir}/run/${f}`)));
    }
    for (let i = 1; i <= 9; i++) pids.push(postmasterPid(`${dir}/node${i}/data`) ?? 0);
    const mine = pids.filter((p) => p > 1 && alive(p) && cmdline(p).includes(dir));
    for (const p of mine) signal(p, "SIGCONT"), signal(p, "SIGKILL");
    await waitGone(mine, 5000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function safeReadDir(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return [];
  }
}

/** The fields of one CSV line; a quoted field may hold commas and doubled quotes. */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let v = "";
      i++;
      while (i < line.length) {
        if (line[i] === '"' && line[i + 1] === '"') v += '"', i += 2;
        else if (line[i] === '"') break;
        else v += line[i++];
      }
      out.push(v);
      i = line.indexOf(",", i);
    } else {
      const end = line.indexOf(",", i);
      out.push(line.slice(i, end < 0 ? line.length : end));
      i = end;
    }
    if (i < 0) break;
    i++;
  }
  return out;
}

function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(Deno.readTextFileSync(`${dataDir}/postmaster.pid`).split("\n")[0]);
    return pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// the cluster

export interface HaproxyServer {
  status: string; // UP, DOWN, UP 1/2, MAINT, DOWN (agent), ...
  check: string; // L7OK, L7STS, L4OK, L4CON, L4TOUT, ... ("" while MAINT)
  agent: string; // agent check: L7OK ("up"), CHECKED ("maint"), L7STS ("down"), L4CON, ...
  lastAgent: string; // e.g. "via agent : up", "via agent : down (reason)"
}
/** "route/nodeN" -> state */
export type HaproxyStates = Map<string, HaproxyServer>;

/** Both patroniglue of a node. */
export const GLUE_KINDS: readonly GlueKind[] = ["glue", "witness"];

/** HAProxy's `show stat`, read every `everyMs` until stopped: the servers' states over time. */
export class StateSampler implements AsyncDisposable {
  readonly samples: { at: number; states: HaproxyStates }[] = [];
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(cluster: Cluster, everyMs = 100) {
    this.#loop = (async () => {
      while (!this.#stopped) {
        const at = now();
        const states = await cluster.haproxyStates().catch(() => null);
        if (states) this.samples.push({ at, states });
        await sleep(Math.max(0, at + everyMs - now()));
      }
    })();
  }

  /** The statuses of `key` ("route/nodeN") over the samples taken from `from` on. */
  statuses(key: string, from = -Infinity): string[] {
    return this.samples.filter((s) => s.at >= from).map((s) => s.states.get(key)?.status ?? "?");
  }

  /** When `key` was first seen DOWN (or MAINT) from `from` on, as ms after `from`; else null. */
  firstOut(key: string, from: number): number | null {
    const s = this.samples.find((s) => s.at >= from && isOut(s.states.get(key)?.status));
    return s ? s.at - from : null;
  }

  /** `UP 118, UP 1/2 2` for `key`'s samples from `from` on. */
  tally(key: string, from = -Infinity): string {
    const counts = new Map<string, number>();
    for (const st of this.statuses(key, from)) counts.set(st, (counts.get(st) ?? 0) + 1);
    return [...counts].map(([st, n]) => `${st} ${n}`).join(", ");
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A server out of its backend: DOWN, DOWN (agent), MAINT, DRAIN. */
export function isOut(status: string | undefined): boolean {
  return status !== undefined && /^(DOWN|MAINT|DRAIN)/.test(status);
}

/** Patroni's DCS section: `etcd` (the v2 API) or `etcd3` (the v3 API). */
export type DcsKind = "etcd" | "etcd3";

export class Cluster implements AsyncDisposable {
  readonly nodes: Node[] = [];
  etcd: Proc | null = null;
  haproxy: Proc | null = null;
  /** Set by the tests on failure: teardown then prints the log tails. */
  failed = false;
  readonly t0 = now();
  private readonly procs: Proc[] = [];

  private constructor(
    readonly dir: string,
    readonly ports: Ports,
    private readonly portLock: string,
    /** The DCS section Patroni uses, and the witness reads. */
    readonly dcs: DcsKind,
  ) {
    for (let i = 1; i <= NODES; i++) {
      const nodeDir = `${dir}/node${i}`;
      const glue = (kind: GlueKind, port: number, agentPort: number): GlueInstance => ({
        config: `${dir}/${kind}${i}.yml`,
        port,
        agentPort,
        proc: null,
      });
      this.nodes.push({
        i,
        name: `node${i}`,
        dir: nodeDir,
        dataDir: `${nodeDir}/data`,
        config: `${nodeDir}/patroni.yml`,
        restPort: nodePort(ports, "rest", i),
        relayPort: nodePort(ports, "relay", i),
        pgPort: nodePort(ports, "pg", i),
        patroni: null,
        relay: null,
        glues: {
          glue: glue("glue", nodePort(ports, "glue", i), nodePort(ports, "agent", i)),
          witness: glue(
            "witness",
            nodePort(ports, "witness", i),
            nodePort(ports, "witnessAgent", i),
          ),
        },
      });
    }
  }

  node(i: number): Node {
    const n = this.nodes[i - 1];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  log(msg: string): void {
    console.log(`[cluster +${secs(now() - this.t0)}] ${msg}`);
  }

  /**
   * Start everything from nothing, Patroni on `dcs` (default `etcd`, the v2 API); on failure tears
   * down what it started and throws.
   */
  static async start(opts: { glue?: boolean; dcs?: DcsKind } = {}): Promise<Cluster> {
    const tmp = Deno.env.get("TMPDIR") || "/tmp";
    await reapAbandoned(tmp);
    const { ports, lock } = pickPorts(tmp);
    const dir = await Deno.makeTempDir({ dir: tmp, prefix: TMP_PREFIX }).catch((e) => {
      Deno.removeSync(lock);
      throw e;
    });
    await Deno.chmod(dir, 0o755); // postgres must reach its node dir
    await Deno.mkdir(`${dir}/run`);
    await Deno.mkdir(`${dir}/logs`);
    await Deno.writeTextFile(`${dir}/run/owner`, String(Deno.pid));
    const c = new Cluster(dir, ports, lock, opts.dcs ?? "etcd");
    try {
      await c.boot(opts.glue ?? true);
      return c;
    } catch (e) {
      c.failed = true;
      await c.teardown();
      throw e;
    }
  }

  private spawn(
    name: string,
    cmd: string[],
    opts: { cwd?: string; env?: Record<string, string> } = {},
  ): Proc {
    const logFile = `${this.dir}/logs/${name}.log`;
    // sh writes nothing itself: it redirects and execs, so the PID is the program's.
    const child = new Deno.Command(SH, {
      args: ["-c", 'exec "$@" >>"$0" 2>&1', logFile, ...cmd],
      cwd: opts.cwd ?? this.dir,
      env: opts.env,
      clearEnv: opts.env !== undefined,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const p = new Proc(name, child, logFile);
    this.procs.push(p);
    Deno.writeTextFileSync(`${this.dir}/run/${name}.pid`, String(p.pid));
    return p;
  }

  private async boot(withGlue: boolean): Promise<void> {
    const { dir, ports } = this;
    this.log(`dir ${dir}, ports ${ports.base}..${ports.base + 99}, Patroni on ${this.dcs}`);
    // 1. etcd, single member, v2 API enabled (Patroni's `etcd:` section; `etcd3:` uses the v3 API)
    this.etcd = this.spawn("etcd", [
      ETCD,
      "--name=pgglue",
      `--data-dir=${dir}/etcd`,
      `--listen-client-urls=http://127.0.0.1:${ports.etcd}`,
      `--advertise-client-urls=http://127.0.0.1:${ports.etcd}`,
      `--listen-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${ports.etcdPeer}`,
      `--initial-cluster=pgglue=http://127.0.0.1:${ports.etcdPeer}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=pgglue-${Deno.pid}`,
      "--enable-v2=true",
      "--logger=zap",
      "--log-level=warn",
    ], { env: { PATH: "/usr/bin:/bin" } });
    await waitFor(
      "etcd health",
      async () => {
        if (!this.etcd!.running) throw new Error("etcd exited");
        const r = await http(ports.etcd, "/health", { timeoutMs: 1000 });
        return r.status === 200 && r.body.includes('"health":"true"');
      },
      20_000,
      50,
    );
    this.log("etcd healthy");

    // 2. the relays, and patroniglue: independent of Patroni, start them first (the witness
    // reads Patroni's file: write it first)
    for (const n of this.nodes) {
      await this.writePatroniConfig(n);
      n.relay = this.spawnRelay(n);
    }
    if (withGlue) {
      for (const n of this.nodes) {
        for (const kind of GLUE_KINDS) {
          await Deno.writeTextFile(n.glues[kind].config, glueYaml(n, kind));
          n.glues[kind].proc = this.spawnGlue(n, kind);
        }
      }
    }

    // 3. Patroni: node1 first, and wait for its initialize key so that it is the leader
    this.startPatroni(1);
    await waitFor(
      "node1 to claim the initialize key",
      async () => {
        if (!this.node(1).patroni!.running) throw new Error("patroni node1 exited");
        return await this.hasKey(`/service/${SCOPE}/initialize`);
      },
      30_000,
      50,
    );
    for (const n of this.nodes.slice(1)) this.startPatroni(n.i);

    // 4. HAProxy (marks every server UP at start: waitReady waits for the real states)
    const cfg = `${dir}/haproxy.cfg`;
    await Deno.writeTextFile(cfg, this.haproxyConfig());
    const check = await new Deno.Command(HAPROXY, { args: ["-c", "-q", "-f", cfg] }).output();
    if (!check.success) {
      throw new Error(`haproxy config invalid: ${new TextDecoder().decode(check.stderr)}`);
    }
    this.haproxy = this.spawn("haproxy", [HAPROXY, "-db", "-f", cfg], {
      env: { PATH: "/usr/bin:/bin" },
    });
    for (const n of this.nodes) await this.waitRelayListening(n);
    if (withGlue) {
      for (const n of this.nodes) {
        for (const kind of GLUE_KINDS) await this.waitGlueListening(n, kind, 0);
      }
    }
    await this.waitReady(1, 90_000, withGlue);
    const table = await this.sql(
      this.node(1).pgPort,
      `create table ${WRITES_TABLE} (at timestamptz default clock_timestamp(), who text)`,
    );
    if (table.error) throw new Error(`create table: ${table.error.message}`);
    this.log("ready: node1 leader, replicas streaming, haproxy routing");
  }

  // ---- patroni --------------------------------------------------------------------------------

  private async writePatroniConfig(n: Node): Promise<void> {
    await Deno.mkdir(n.dir, { recursive: true });
    await Deno.writeTextFile(n.config, patroniYaml(n, this.ports, this.dcs));
    await Deno.writeTextFile(`${n.dir}/pgpass`, "");
    await chownR(n.dir);
    await Deno.chmod(n.dir, 0o700);
    await Deno.chmod(`${n.dir}/pgpass`, 0o600);
  }

  /** Start node i's Patroni (it starts, rewinds or clones PostgreSQL itself). */
  startPatroni(i: number): Proc {
    const n = this.node(i);
    if (n.patroni?.running) throw new Error(`patroni ${n.name} already running`);
    n.patroni = this.spawn(n.name, [
      SETPRIV,
      "--reuid=postgres",
      "--regid=postgres",
      "--init-groups",
      "env",
      "-i",
      "PATH=/usr/bin:/bin",
      `HOME=${n.dir}`,
      "LANG=C.UTF-8",
      PYTHON,
      PATRONI,
      n.config,
    ], { cwd: n.dir });
    return n.patroni;
  }

  /** Graceful stop of node i's Patroni (it stops PostgreSQL; a leader releases its key). */
  async stopPatroni(i: number): Promise<void> {
    const n = this.node(i);
    await n.patroni?.stop("SIGTERM", 30_000);
    await this.stopPostmaster(n, "SIGQUIT");
  }

  /** Stop node i's Patroni gracefully and start it again. */
  async restartPatroni(i: number): Promise<void> {
    await this.stopPatroni(i);
    this.startPatroni(i);
  }

  /** kill -9 of node i's Patroni and its PostgreSQL (a crashed machine). */
  async kill9(i: number): Promise<void> {
    const n = this.node(i);
    const pm = postmasterPid(n.dataDir);
    n.patroni?.signal("SIGKILL");
    if (pm && cmdline(pm).includes(n.dataDir)) signal(pm, "SIGKILL");
    await n.patroni?.done;
    if (pm) await waitGone([pm], 5000);
  }

  /** SIGSTOP of node i's Patroni: its REST API and its HA loop stop (PostgreSQL runs on). */
  freeze(i: number): void {
    this.node(i).patroni?.signal("SIGSTOP");
  }

  thaw(i: number): void {
    this.node(i).patroni?.signal("SIGCONT");
  }

  /**
   * SIGSTOP of the relay in front of node i's REST API: connections to it are accepted and never
   * answered, as by a Patroni whose API froze while its HA loop runs on.
   */
  freezeApi(i: number): void {
    this.node(i).relay?.signal("SIGSTOP");
  }

  thawApi(i: number): void {
    this.node(i).relay?.signal("SIGCONT");
  }

  /** SIGSTOP of etcd: the DCS accepts connections and answers nothing. */
  freezeEtcd(): void {
    this.etcd?.signal("SIGSTOP");
  }

  thawEtcd(): void {
    this.etcd?.signal("SIGCONT");
  }

  /**
   * The longest time (s) between two HA loops of node i's Patroni (its `I am (nodeN)` log lines)
   * from `from` to `to` (Date.now() times); 0 when fewer than two loops were logged.
   */
  async loopGap(i: number, from: number, to: number): Promise<number> {
    const log = await Deno.readTextFile(this.node(i).patroni!.logFile).catch(() => "");
    const re = new RegExp(
      `^(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d),(\\d{3}) INFO: .*I am \\(node${i}\\)`,
      "gm",
    );
    const times = [...log.matchAll(re)].map((m) => Date.parse(`${m[1].replace(" ", "T")}.${m[2]}Z`))
      .filter((t) => t >= from - 2000 && t <= to);
    let gap = 0;
    for (let k = 1; k < times.length; k++) gap = Math.max(gap, times[k] - times[k - 1]);
    return gap / 1000;
  }

  /** Whether etcd holds `key` (through the API Patroni uses). */
  async hasKey(key: string): Promise<boolean> {
    if (this.dcs === "etcd") {
      return (await http(this.ports.etcd, `/v2/keys${key}`, { timeoutMs: 1000 })).status === 200;
    }
    const r = await http(this.ports.etcd, "/v3/kv/range", {
      method: "POST",
      json: JSON.stringify({ key: btoa(key) }),
      timeoutMs: 1000,
    });
    return r.status === 200 && r.body.includes('"kvs"');
  }

  private async stopPostmaster(n: Node, sig: Deno.Signal): Promise<void> {
    const pm = postmasterPid(n.dataDir);
    if (!pm || !alive(pm) || !cmdline(pm).includes(n.dataDir)) return;
    signal(pm, "SIGCONT");
    signal(pm, sig);
    if (!await waitGone([pm], 5000)) {
      signal(pm, "SIGKILL");
      await waitGone([pm], 3000);
    }
  }

  private async patronictl(args: string[]): Promise<string> {
    const out = await withDeadline(60_000, (signal) =>
      new Deno.Command("env", {
        args: [
          "-i",
          "PATH=/usr/bin:/bin",
          `HOME=${this.dir}`,
          "LANG=C.UTF-8",
          PYTHON,
          PATRONICTL,
          "-c",
          this.node(1).config,
          ...args,
        ],
        stdin: "null",
        signal,
      }).output());
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success) throw new Error(`patronictl ${args.join(" ")} failed:\n${text}`);
    return text;
  }

  /** patronictl switchover from the leader to `to`. */
  async switchover(from: number, to: number): Promise<string> {
    return await this.patronictl([
      "switchover",
      SCOPE,
      "--leader",
      this.node(from).name,
      "--candidate",
      this.node(to).name,
      "--force",
    ]);
  }

  /** patronictl restart: Patroni restarts node i's PostgreSQL. */
  async restartPostgres(i: number): Promise<string> {
    return await this.patronictl(["restart", SCOPE, this.node(i).name, "--force"]);
  }

  /**
   * After a failed step: thaw etcd, every Patroni and relay, start whatever Patroni, relay or
   * patroniglue is down.
   */
  async recover(): Promise<void> {
    this.thawEtcd();
    for (const n of this.nodes) {
      n.patroni?.signal("SIGCONT");
      n.relay?.signal("SIGCONT");
      if (!n.patroni?.running) this.startPatroni(n.i);
      if (n.relay && !n.relay.running) {
        n.relay = this.spawnRelay(n);
        await this.waitRelayListening(n);
      }
      for (const kind of GLUE_KINDS) {
        const g = n.glues[kind].proc;
        if (g && !g.running) await this.startGlue(n.i, kind);
      }
    }
  }

  // ---- relays ---------------------------------------------------------------------------------

  private spawnRelay(n: Node): Proc {
    return this.spawn(`relay${n.i}`, [
      Deno.execPath(),
      "run",
      "-q",
      "--allow-net=127.0.0.1",
      `${REPO_ROOT}tests/cluster/relay.ts`,
      String(n.relayPort),
      String(n.restPort),
    ], { cwd: REPO_ROOT });
  }

  private async waitRelayListening(n: Node): Promise<void> {
    const relay = n.relay!;
    await waitFor(
      `the relay of ${n.name} to listen`,
      async () => {
        if (!relay.running) throw new Error(`relay ${n.name} exited (${relay.exitCode})`);
        return (await Deno.readTextFile(relay.logFile)).includes(`relay 127.0.0.1:${n.relayPort}`);
      },
      60_000,
      50,
    );
  }

  // ---- patroniglue ----------------------------------------------------------------------------

  private spawnGlue(n: Node, kind: GlueKind): Proc {
    // PATRONIGLUE_CLUSTER_GLUE_FLAGS: extra flags for a diagnosis, e.g. "-verbose"
    const extra = (Deno.env.get("PATRONIGLUE_CLUSTER_GLUE_FLAGS") ?? "").split(" ").filter((f) =>
      f
    );
    return this.spawn(`${kind}${n.i}`, [
      Deno.execPath(),
      "run",
      "-q",
      "-P",
      `${REPO_ROOT}main.ts`,
      "-config",
      n.glues[kind].config,
      ...extra,
    ], { cwd: REPO_ROOT });
  }

  private async waitGlueListening(n: Node, kind: GlueKind, logOffset: number): Promise<void> {
    const { proc, port, agentPort } = n.glues[kind];
    const what = `${kind === "glue" ? "patroniglue" : "the witness"} of ${n.name}`;
    await waitFor(
      `${what} to listen`,
      async () => {
        if (!proc!.running) throw new Error(`${what} exited (${proc!.exitCode})`);
        const log = await Deno.readTextFile(proc!.logFile);
        if (!log.slice(logOffset).includes("listening on")) return false;
        if ((await http(port, "/health", { timeoutMs: 1000 })).status !== 200) return false;
        return (await agentCheck(agentPort, "/primary\n", 1000)).line !== null;
      },
      60_000,
      50,
    );
  }

  /** SIGTERM node i's patroniglue (`kind`: the one without a DCS by default); its exit code. */
  async stopGlue(i: number, kind: GlueKind = "glue"): Promise<number> {
    const n = this.node(i);
    const proc = n.glues[kind].proc;
    if (!proc) throw new Error(`no ${kind} patroniglue on ${n.name}`);
    const s = await proc.stop("SIGTERM", 10_000);
    return s.signal ? 128 : s.code;
  }

  /** SIGTERM and start again node i's patroniglue; resolves to the old one's exit code. */
  async restartGlue(i: number, kind: GlueKind = "glue"): Promise<number> {
    const code = await this.stopGlue(i, kind);
    await this.startGlue(i, kind);
    return code;
  }

  async startGlue(i: number, kind: GlueKind = "glue"): Promise<void> {
    const n = this.node(i);
    const g = n.glues[kind];
    if (g.proc?.running) throw new Error(`${kind} patroniglue ${n.name} already running`);
    const offset = await Deno.stat(`${this.dir}/logs/${kind}${i}.log`).then((s) => s.size, () => 0);
    g.proc = this.spawnGlue(n, kind);
    await this.waitGlueListening(n, kind, offset);
  }

  // ---- queries --------------------------------------------------------------------------------

  /** Patroni's own answer (direct to its REST API). */
  rest(i: number, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
    return http(this.node(i).restPort, path, opts);
  }

  /** patroniglue's answer for node i (without a DCS). */
  glue(i: number, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
    return http(this.node(i).glues.glue.port, path, opts);
  }

  /** The answer of node i's patroniglue with the DCS witness. */
  witness(i: number, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
    return http(this.node(i).glues.witness.port, path, opts);
  }

  /** patroniglue's agent-check answer for node i to `send` (as HAProxy's agent-send). */
  agent(i: number, send: string, timeoutMs = 3000, kind: GlueKind = "glue"): Promise<AgentAnswer> {
    return agentCheck(this.node(i).glues[kind].agentPort, send, timeoutMs);
  }

  /** The node whose Patroni answers 200 on /primary (exactly one), or null. */
  async leader(): Promise<number | null> {
    const answers = await Promise.all(
      this.nodes.map((n) => this.rest(n.i, "/primary", { timeoutMs: 1500 })),
    );
    const leaders = this.nodes.filter((_, k) => answers[k].status === 200);
    return leaders.length === 1 ? leaders[0].i : null;
  }

  /** Node number for a PostgreSQL port. */
  nodeByPgPort(port: number): number | null {
    return this.nodes.find((n) => n.pgPort === port)?.i ?? null;
  }

  /** One query in a session of its own through `port` (a node or a route). */
  async sql(port: number, sql: string, timeoutMs = 2000): Promise<QueryResult> {
    const t0 = now();
    try {
      await using s = await PgSession.open(port, timeoutMs);
      return await s.query(sql, Math.max(1, timeoutMs - (now() - t0)));
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      return { rows: [], error: { severity: "", code: "", message }, closed: true, ms: now() - t0 };
    }
  }

  /**
   * Which node a HAProxy route leads to and its role there: `select pg_is_in_recovery()` and
   * `inet_server_port()`; null when the connection or query fails.
   */
  async whereTo(
    port: number,
    timeoutMs = 2000,
  ): Promise<{ node: number; recovery: boolean } | null> {
    const r = await this.sql(port, "select pg_is_in_recovery(), inet_server_port()", timeoutMs);
    const [recovery, pgPort] = r.error ? [] : r.rows[0] ?? [];
    const node = this.nodeByPgPort(Number(pgPort));
    return node === null ? null : { node, recovery: recovery === "t" };
  }

  /**
   * A session through `port` that tries to write every `everyMs` (see SessionWriter), opened on
   * the first node that `want` accepts (HAProxy balances each new connection; up to 6 tries).
   */
  async writer(
    port: number,
    label: string,
    want: (at: { node: number; recovery: boolean }) => boolean = () => true,
    everyMs = 100,
  ): Promise<SessionWriter> {
    const seen: string[] = [];
    for (let k = 0; k < 6; k++) {
      const s = await PgSession.open(port);
      const r = await s.query("select pg_is_in_recovery(), inet_server_port()");
      const node = this.nodeByPgPort(Number(r.rows[0]?.[1]));
      if (!r.error && node !== null && want({ node, recovery: r.rows[0][0] === "t" })) {
        return new SessionWriter(label, s, node, (p) => this.nodeByPgPort(p), everyMs);
      }
      seen.push(`node${node} ${r.error?.message ?? ""}`);
      await s.close();
    }
    throw new Error(`${label}: no session on a wanted node through port ${port} (${seen})`);
  }

  /** Number of replicas the leader's Patroni reports as streaming. */
  async streaming(leader: number): Promise<number> {
    const r = await this.rest(leader, "/patroni", { timeoutMs: 1500 });
    if (r.status !== 200) return -1;
    try {
      const repl = JSON.parse(r.body).replication as { state?: string }[] | undefined;
      return (repl ?? []).filter((x) => x.state === "streaming").length;
    } catch {
      return -1;
    }
  }

  // ---- HAProxy --------------------------------------------------------------------------------

  /** Every route's servers as HAProxy's stats CSV (`show stat`) shows them. */
  async haproxyStates(): Promise<HaproxyStates> {
    const r = await http(this.ports.stats, "/;csv", { timeoutMs: 2000 });
    if (r.status !== 200) throw new Error(`haproxy stats: ${r.status} ${r.error ?? ""}`);
    const lines = r.body.trim().split("\n");
    const head = lines[0].replace(/^# /, "").split(",");
    const col = (name: string) => head.indexOf(name);
    const [px, sv, st, ck, ag, la] = [
      "pxname",
      "svname",
      "status",
      "check_status",
      "agent_status",
      "last_agt",
    ].map(col);
    const out: HaproxyStates = new Map();
    for (const l of lines.slice(1)) {
      const f = csvFields(l);
      if (f[px] in ROUTES && f[sv].startsWith("node")) {
        out.set(`${f[px]}/${f[sv]}`, {
          status: f[st],
          check: f[ck],
          agent: f[ag] ?? "",
          lastAgent: f[la] ?? "",
        });
      }
    }
    return out;
  }

  /**
   * The states HAProxy should show when `leader` is the primary and the others replicas: UP, and
   * DOWN for a node in the other role, MAINT on the agent routes (patroniglue's `maint`).
   */
  expectedStates(leader: number, routes: Route[] = ROUTE_NAMES): Map<string, string> {
    const want = new Map<string, string>();
    for (const r of routes) {
      for (const n of this.nodes) {
        const up = ROUTES[r].kind === "rw" ? n.i === leader : n.i !== leader;
        want.set(`${r}/${n.name}`, up ? "UP" : ROUTES[r].via === "agent" ? "MAINT" : "DOWN");
      }
    }
    return want;
  }

  /**
   * Wait until HAProxy's stats show exactly `want`: an UP server with a passed check (L7 for HTTP
   * checks; on agent routes a TCP check of PostgreSQL and an agent that said `up`).
   */
  async waitHaproxy(want: Map<string, string>, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      "haproxy states",
      async () => {
        const have = await this.haproxyStates();
        const wrong: string[] = [];
        for (const [k, v] of want) {
          const s = have.get(k);
          const agent = ROUTES[k.split("/")[0] as Route]?.via === "agent";
          const checked = agent ? s?.check === "L4OK" && s.agent === "L7OK" : s?.check === "L7OK";
          const ok = s && s.status === v && (v !== "UP" || checked);
          if (!ok) {
            wrong.push(
              `${k}=${s ? `${s.status}/${s.check}${agent ? `/${s.agent}` : ""}` : "?"} (want ${v})`,
            );
          }
        }
        if (wrong.length > 0) throw new Error(wrong.join(", ")); // shown on timeout
        return true;
      },
      timeoutMs,
      100,
    );
  }

  /**
   * Wait until the cluster is healthy: one leader (`leader` if given), every replica streaming and
   * answering /replica (directly and through patroniglue), HAProxy routing as expected.
   * Resolves to the leader.
   */
  async waitReady(leader?: number, timeoutMs = 60_000, withGlue = true): Promise<number> {
    const t0 = now();
    const l = await waitFor(
      `a healthy cluster (leader ${leader ?? "any"})`,
      async () => {
        for (const n of this.nodes) {
          if (!n.patroni?.running) throw new Error(`patroni ${n.name} not running`);
          if (!n.relay?.running) throw new Error(`relay ${n.name} not running`);
          for (const kind of withGlue ? GLUE_KINDS : []) {
            if (!n.glues[kind].proc?.running) throw new Error(`${kind} ${n.name} not running`);
          }
        }
        const l = await this.leader();
        if (l === null || (leader !== undefined && l !== leader)) return false;
        if (await this.streaming(l) !== NODES - 1) {
          throw new Error(`leader node${l}: not all replicas streaming`);
        }
        for (const n of this.nodes) {
          const path = n.i === l ? "/primary" : "/replica?lag=1MB";
          if ((await this.rest(n.i, path)).status !== 200) {
            throw new Error(`patroni ${n.name} ${path} != 200`);
          }
          for (const kind of withGlue ? GLUE_KINDS : []) {
            const r = await http(n.glues[kind].port, path);
            if (r.status !== 200) throw new Error(`${kind} ${n.name} ${path} != 200`);
          }
        }
        return l;
      },
      timeoutMs,
      100,
    );
    const routes = withGlue ? ROUTE_NAMES : ROUTE_NAMES.filter((r) => ROUTES[r].via === "patroni");
    await this.waitHaproxy(
      this.expectedStates(l, routes),
      Math.max(5000, timeoutMs - (now() - t0)),
    );
    return l;
  }

  private haproxyConfig(): string {
    const p = this.ports;
    let s = `global
    maxconn 500
    log stderr format raw local0 notice

defaults
    mode tcp
    log global
    retries 2
    timeout connect 1s
    timeout client 30m
    timeout server 30m
    timeout check ${CHECK_TIMEOUT}s
    default-server inter ${CHECK_INTER * 1000}ms fall ${CHECK_FALL} rise 1

listen stats
    mode http
    bind 127.0.0.1:${p.stats}
    stats enable
    stats uri /
`;
    for (const r of ROUTE_NAMES) {
      const def = ROUTES[r];
      s += `\nlisten ${r}\n    bind 127.0.0.1:${p.routes[r]}\n    balance roundrobin\n`;
      if (def.check) s += `    ${def.check}\n    http-check expect status 200\n`;
      for (const n of this.nodes) {
        // HTTP checks ask Patroni or patroniglue; agent routes check PostgreSQL's port over TCP
        // and ask patroniglue's agent listener
        const glue = n.glues[def.witness ? "witness" : "glue"];
        const checkPort = def.via === "glue"
          ? glue.port
          : def.via === "agent"
          ? n.pgPort
          : n.relayPort;
        const agent = def.agentSend === undefined
          ? ""
          : ` agent-check agent-port ${glue.agentPort}` +
            ` agent-inter ${AGENT_INTER * 1000}ms agent-send "${def.agentSend}\\n"`;
        const down = def.keepSessions ? "" : " on-marked-down shutdown-sessions";
        s += `    server ${n.name} 127.0.0.1:${n.pgPort} check port ${checkPort}${agent}${down}\n`;
      }
    }
    return s;
  }

  // ---- teardown -------------------------------------------------------------------------------

  /** Last lines of every log (for failures). */
  async logTails(lines = 25): Promise<string> {
    let out = "";
    for (const f of safeReadDir(`${this.dir}/logs`).sort()) {
      const text = await Deno.readTextFile(`${this.dir}/logs/${f}`).catch(() => "");
      out += `==== ${f} (last ${lines} lines)\n${
        text.trimEnd().split("\n").slice(-lines).join("\n")
      }\n`;
    }
    return out;
  }

  async teardown(): Promise<void> {
    if (this.failed) console.log(await this.logTails());
    // HAProxy and patroniglue first (nothing else depends on them), then Patroni, then the
    // postmasters Patroni left behind (they are not its children), then etcd. Fast: SIGKILL,
    // and SIGQUIT (immediate shutdown) for PostgreSQL; the whole dir is wiped anyway.
    const live = this.procs.filter((p) => p.exitCode === null);
    for (const p of live) {
      p.signal("SIGCONT");
      p.signal("SIGKILL");
    }
    await Promise.all(live.map((p) => p.done));
    const pms: number[] = [];
    for (const n of this.nodes) {
      const pm = postmasterPid(n.dataDir);
      if (pm && alive(pm) && cmdline(pm).includes(n.dataDir)) {
        signal(pm, "SIGCONT");
        signal(pm, "SIGQUIT");
        pms.push(pm);
      }
    }
    if (!await waitGone(pms, 5000)) {
      for (const pm of pms) signal(pm, "SIGKILL");
      await waitGone(pms, 3000);
    }
    // Anything else that Patroni started for this cluster (pg_basebackup, pg_rewind, a
    // postmaster without its pid file yet) names the cluster's dir on its command line.
    const strays = stragglers(this.dir);
    for (const p of strays) signal(p, "SIGKILL");
    await waitGone(strays, 3000);
    await Deno.remove(this.portLock).catch(() => {});
    if (Deno.env.get("PATRONIGLUE_CLUSTER_KEEP") === "1") {
      console.log(`cluster dir kept: ${this.dir}`);
      return;
    }
    if (this.failed) {
      // keep the logs (not the data) of a failed run
      const logs = `${this.dir.replace(TMP_PREFIX, `${TMP_PREFIX}failed-`)}-logs`;
      await Deno.rename(`${this.dir}/logs`, logs).catch(() => {});
      console.log(`cluster logs kept: ${logs}`);
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.teardown();
  }
}

/** PIDs of live processes whose command line names `dir` (never our own). */
function stragglers(dir: string): number[] {
  const out: number[] = [];
  for (const e of safeReadDir("/proc")) {
    const pid = Number(e);
    if (!pid || pid === Deno.pid) continue;
    if (cmdline(pid).includes(dir) && alive(pid)) out.push(pid);
  }
  return out;
}

async function chownR(path: string): Promise<void> {
  const r = await new Deno.Command("chown", { args: ["-R", "postgres:postgres", path] }).output();
  if (!r.success) throw new Error(`chown ${path}: ${new TextDecoder().decode(r.stderr)}`);
}

/** A patroniglue's config: Patroni through the relay; the witness reads Patroni's own file. */
function glueYaml(n: Node, kind: GlueKind): string {
  const g = n.glues[kind];
  return `frontend:
  host: 127.0.0.1
  port: ${g.port}
backend:
  host: 127.0.0.1
  port: ${n.relayPort}
  scheme: http
  timeout: ${GLUE_TIMEOUT}
cache:
  ttl: ${GLUE_TTL}
  interval: 0.25
agent:
  port: ${g.agentPort}
${kind === "witness" ? `dcs:\n  patroni-config: ${n.config}\n` : ""}`;
}

function patroniYaml(n: Node, p: Ports, dcs: DcsKind): string {
  // ttl 5 / loop_wait 1 / retry_timeout 2: fast and known-good (retry_timeout 1 breaks elections).
  // `etcd:` (v2) by default: with Patroni 3.0.2 and `etcd3:` a thawed frozen leader can steal the
  // lock back (fixed in 3.0.3); the etcd3 cluster never thaws a frozen Patroni.
  return `scope: ${SCOPE}
namespace: /service/
name: ${n.name}

log:
  level: INFO

restapi:
  listen: 127.0.0.1:${n.restPort}
  connect_address: 127.0.0.1:${n.restPort}

${dcs}:
  hosts: 127.0.0.1:${p.etcd}

bootstrap:
  dcs:
    ttl: ${PATRONI_TTL}
    loop_wait: ${PATRONI_LOOP_WAIT}
    retry_timeout: 2
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
        wal_keep_size: 64MB
  initdb:
    - encoding: UTF8
    - locale: C
    - no-sync

postgresql:
  listen: 127.0.0.1:${n.pgPort}
  connect_address: 127.0.0.1:${n.pgPort}
  data_dir: ${n.dataDir}
  bin_dir: ${PGBIN}
  pgpass: ${n.dir}/pgpass
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: rewinder, password: rewinder}
  basebackup:
    - checkpoint: fast
    - no-sync
  parameters:
    unix_socket_directories: ${n.dir}
    shared_buffers: 16MB
    fsync: "off"
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust

watchdog:
  mode: "off"
  safety_margin: 0

tags:
  dc: ${n.i % 2 === 0 ? "west" : "east"}
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
`;
}
