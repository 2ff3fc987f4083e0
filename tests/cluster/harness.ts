// A real cluster on loopback for the cluster suite: one etcd (v2 API), three Patroni 3.x nodes
// running PostgreSQL 15 as `postgres`, one patroniglue per node and HAProxy with route pairs that
// check Patroni directly ("d_*") and through patroniglue ("g_*").
//
// Everything runs from a fresh temp dir and is torn down by recorded PIDs (plus each node's
// data/postmaster.pid, since Patroni detaches PostgreSQL). Needs root: PostgreSQL runs as
// `postgres` through setpriv. Debian packages: patroni postgresql-15 etcd-server haproxy.
import { concat } from "../support/tools.ts";

const PGBIN = "/usr/lib/postgresql/15/bin";
const PYTHON = "/usr/bin/python3"; // Debian's python has python3-etcd and psycopg2
const PATRONI = "/usr/bin/patroni";
const PATRONICTL = "/usr/bin/patronictl";
const ETCD = "/usr/bin/etcd";
const HAPROXY = "/usr/sbin/haproxy";
const PSQL = `${PGBIN}/psql`; // not /usr/bin/psql: that Perl wrapper costs 7x the CPU per call
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

/** The repository root (patroniglue's main.ts and deno.json). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** HAProxy routes: name -> what it checks. `d_` checks Patroni, `g_` patroniglue. */
export const ROUTES = {
  d_primary: { kind: "rw", via: "patroni", check: "option httpchk OPTIONS /primary" },
  g_primary: { kind: "rw", via: "glue", check: "option httpchk OPTIONS /primary" },
  d_bare: { kind: "rw", via: "patroni", check: "option httpchk" },
  g_bare: { kind: "rw", via: "glue", check: "option httpchk" },
  d_replica: {
    kind: "ro",
    via: "patroni",
    check:
      "option httpchk\n    http-check send meth GET uri /replica?lag=1MB ver HTTP/1.1 hdr Host localhost",
  },
  g_replica: {
    kind: "ro",
    via: "glue",
    check:
      "option httpchk\n    http-check send meth GET uri /replica?lag=1MB ver HTTP/1.1 hdr Host localhost",
  },
} as const;
export type Route = keyof typeof ROUTES;
export const ROUTE_NAMES = Object.keys(ROUTES) as Route[];

// ---------------------------------------------------------------------------------------------
// small utilities

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
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
    [PSQL, "postgresql-client-15"],
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

// ---------------------------------------------------------------------------------------------
// a raw HTTP client: exact status and headers, a hard deadline covering connect, no pooling

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
}

export async function http(
  port: number,
  path: string,
  opts: HttpOptions = {},
): Promise<HttpAnswer> {
  const method = opts.method ?? "GET";
  const t0 = now();
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
  }, opts.timeoutMs ?? 3000);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port, signal: ac.signal });
    if (ac.signal.aborted) throw new Error("timeout");
    const head = opts.version === "1.0"
      ? `${method} ${path} HTTP/1.0\r\n\r\n`
      : `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`;
    const req = new TextEncoder().encode(head);
    for (let off = 0; off < req.length;) off += await conn.write(req.subarray(off));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(16384);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const raw = new TextDecoder().decode(concat(chunks));
    const sep = raw.indexOf("\r\n\r\n");
    if (sep < 0) throw new Error(`incomplete answer: ${JSON.stringify(raw.slice(0, 80))}`);
    const lines = raw.slice(0, sep).split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let body = raw.slice(sep + 4);
    if (headers["transfer-encoding"]?.toLowerCase() === "chunked") body = dechunk(body);
    return { status: Number(m[1]), headers, body, ms: now() - t0 };
  } catch (e) {
    const error = ac.signal.aborted ? "timeout" : e instanceof Error ? e.message : String(e);
    return { status: 0, headers: {}, body: "", ms: now() - t0, error };
  } finally {
    clearTimeout(timer);
    close();
  }
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

export interface Node {
  i: number; // 1-based
  name: string; // node1..
  dir: string;
  dataDir: string;
  config: string; // patroni.yml
  glueConfig: string;
  restPort: number;
  pgPort: number;
  gluePort: number;
  patroni: Proc | null;
  glue: Proc | null;
}

export interface Ports {
  base: number;
  etcd: number;
  etcdPeer: number;
  stats: number;
  routes: Record<Route, number>;
}

function portsFor(base: number): Ports {
  const routes = {} as Record<Route, number>;
  ROUTE_NAMES.forEach((r, k) => routes[r] = base + 41 + k);
  return { base, etcd: base, etcdPeer: base + 1, stats: base + 40, routes };
}

function allPorts(p: Ports): number[] {
  const out = [p.etcd, p.etcdPeer, p.stats, ...Object.values(p.routes)];
  for (let i = 1; i <= NODES; i++) out.push(p.base + 10 + i, p.base + 20 + i, p.base + 30 + i);
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
  status: string; // UP, DOWN, UP 1/2, ...
  check: string; // L7OK, L7STS, L4CON, L4TOUT, ...
}
/** "route/nodeN" -> state */
export type HaproxyStates = Map<string, HaproxyServer>;

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
  ) {
    for (let i = 1; i <= NODES; i++) {
      const nodeDir = `${dir}/node${i}`;
      this.nodes.push({
        i,
        name: `node${i}`,
        dir: nodeDir,
        dataDir: `${nodeDir}/data`,
        config: `${nodeDir}/patroni.yml`,
        glueConfig: `${dir}/glue${i}.yml`,
        restPort: ports.base + 10 + i,
        pgPort: ports.base + 20 + i,
        gluePort: ports.base + 30 + i,
        patroni: null,
        glue: null,
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

  /** Start everything from nothing; on failure tears down what it started and throws. */
  static async start(opts: { glue?: boolean } = {}): Promise<Cluster> {
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
    const c = new Cluster(dir, ports, lock);
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
    this.log(`dir ${dir}, ports ${ports.base}..${ports.base + 49}`);
    // 1. etcd, single member, v2 API (Patroni's `etcd:` section)
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

    // 2. patroniglue: independent of Patroni, start it first
    if (withGlue) {
      for (const n of this.nodes) {
        await Deno.writeTextFile(n.glueConfig, glueYaml(n));
        n.glue = this.spawnGlue(n);
      }
    }

    // 3. Patroni: node1 first, and wait for its initialize key so that it is the leader
    for (const n of this.nodes) await this.writePatroniConfig(n);
    this.startPatroni(1);
    await waitFor(
      "node1 to claim the initialize key",
      async () => {
        if (!this.node(1).patroni!.running) throw new Error("patroni node1 exited");
        const r = await http(ports.etcd, `/v2/keys/service/${SCOPE}/initialize`, {
          timeoutMs: 1000,
        });
        return r.status === 200;
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
    if (withGlue) {
      for (const n of this.nodes) await this.waitGlueListening(n, 0);
    }
    await this.waitReady(1, 90_000, withGlue);
    this.log("ready: node1 leader, replicas streaming, haproxy routing");
  }

  // ---- patroni --------------------------------------------------------------------------------

  private async writePatroniConfig(n: Node): Promise<void> {
    await Deno.mkdir(n.dir, { recursive: true });
    await Deno.writeTextFile(n.config, patroniYaml(n, this.ports));
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

  freeze(i: number): void {
    this.node(i).patroni?.signal("SIGSTOP");
  }

  thaw(i: number): void {
    this.node(i).patroni?.signal("SIGCONT");
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

  /** After a failed step: thaw every Patroni, start whatever Patroni or patroniglue is down. */
  async recover(): Promise<void> {
    for (const n of this.nodes) {
      n.patroni?.signal("SIGCONT");
      if (!n.patroni?.running) this.startPatroni(n.i);
      if (n.glue && !n.glue.running) await this.startGlue(n.i);
    }
  }

  // ---- patroniglue ----------------------------------------------------------------------------

  private spawnGlue(n: Node): Proc {
    // PATRONIGLUE_CLUSTER_GLUE_FLAGS: extra flags for a diagnosis, e.g. "-verbose"
    const extra = (Deno.env.get("PATRONIGLUE_CLUSTER_GLUE_FLAGS") ?? "").split(" ").filter((f) =>
      f
    );
    return this.spawn(`glue${n.i}`, [
      Deno.execPath(),
      "run",
      "-q",
      "-P",
      `${REPO_ROOT}main.ts`,
      "-config",
      n.glueConfig,
      ...extra,
    ], { cwd: REPO_ROOT });
  }

  private async waitGlueListening(n: Node, logOffset: number): Promise<void> {
    const glue = n.glue!;
    await waitFor(
      `patroniglue ${n.name} to listen`,
      async () => {
        if (!glue.running) throw new Error(`patroniglue ${n.name} exited (${glue.exitCode})`);
        const log = await Deno.readTextFile(glue.logFile);
        if (!log.slice(logOffset).includes("listening on")) return false;
        return (await http(n.gluePort, "/health", { timeoutMs: 1000 })).status === 200;
      },
      60_000,
      50,
    );
  }

  /** SIGTERM node i's patroniglue; resolves to its exit code. */
  async stopGlue(i: number): Promise<number> {
    const n = this.node(i);
    if (!n.glue) throw new Error(`no patroniglue on ${n.name}`);
    const s = await n.glue.stop("SIGTERM", 10_000);
    return s.signal ? 128 : s.code;
  }

  /** SIGTERM and start again node i's patroniglue; resolves to the old one's exit code. */
  async restartGlue(i: number): Promise<number> {
    const code = await this.stopGlue(i);
    await this.startGlue(i);
    return code;
  }

  async startGlue(i: number): Promise<void> {
    const n = this.node(i);
    if (n.glue?.running) throw new Error(`patroniglue ${n.name} already running`);
    const offset = await Deno.stat(`${this.dir}/logs/glue${i}.log`).then((s) => s.size, () => 0);
    n.glue = this.spawnGlue(n);
    await this.waitGlueListening(n, offset);
  }

  // ---- queries --------------------------------------------------------------------------------

  /** Patroni's own answer (direct to its REST API). */
  rest(i: number, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
    return http(this.node(i).restPort, path, opts);
  }

  /** patroniglue's answer for node i. */
  glue(i: number, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
    return http(this.node(i).gluePort, path, opts);
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

  /** Run SQL through a port with psql; null when it fails. */
  async psql(port: number, sql: string, timeoutMs = 4000): Promise<string | null> {
    try {
      const r = await withDeadline(timeoutMs, (signal) =>
        new Deno.Command(PSQL, {
          args: ["-h", "127.0.0.1", "-p", `${port}`, "-U", "postgres", "-d", "postgres", "-XAtq"]
            .concat(["-c", sql]),
          env: { PATH: "/usr/bin:/bin", PGCONNECT_TIMEOUT: "2", PGPASSWORD: "postgres" },
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "null",
          signal,
        }).output());
      return r.success ? new TextDecoder().decode(r.stdout).trim() : null;
    } catch {
      return null;
    }
  }

  /**
   * Which node a HAProxy route leads to and its role there: `select pg_is_in_recovery()` and
   * `inet_server_port()`; null when the connection or query fails.
   */
  async whereTo(port: number): Promise<{ node: number; recovery: boolean } | null> {
    const out = await this.psql(port, "select pg_is_in_recovery(), inet_server_port()");
    const m = out ? /^([tf])\|(\d+)$/.exec(out) : null;
    if (!m) return null;
    const node = this.nodeByPgPort(Number(m[2]));
    return node === null ? null : { node, recovery: m[1] === "t" };
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

  async haproxyStates(): Promise<HaproxyStates> {
    const r = await http(this.ports.stats, "/;csv", { timeoutMs: 2000 });
    if (r.status !== 200) throw new Error(`haproxy stats: ${r.status} ${r.error ?? ""}`);
    const lines = r.body.trim().split("\n");
    const head = lines[0].replace(/^# /, "").split(",");
    const col = (name: string) => head.indexOf(name);
    const [px, sv, st, ck] = [col("pxname"), col("svname"), col("status"), col("check_status")];
    const out: HaproxyStates = new Map();
    for (const l of lines.slice(1)) {
      const f = l.split(",");
      if (f[px] in ROUTES && f[sv].startsWith("node")) {
        out.set(`${f[px]}/${f[sv]}`, { status: f[st], check: f[ck] });
      }
    }
    return out;
  }

  /** The states HAProxy should show when `leader` is the primary and the others replicas. */
  expectedStates(leader: number, routes: Route[] = ROUTE_NAMES): Map<string, string> {
    const want = new Map<string, string>();
    for (const r of routes) {
      for (const n of this.nodes) {
        const up = ROUTES[r].kind === "rw" ? n.i === leader : n.i !== leader;
        want.set(`${r}/${n.name}`, up ? "UP" : "DOWN");
      }
    }
    return want;
  }

  /** Wait until HAProxy's stats show exactly `want` (UP servers with a passed L7 check). */
  async waitHaproxy(want: Map<string, string>, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      "haproxy states",
      async () => {
        const have = await this.haproxyStates();
        const wrong: string[] = [];
        for (const [k, v] of want) {
          const s = have.get(k);
          const ok = s && s.status === v && (v !== "UP" || s.check === "L7OK");
          if (!ok) wrong.push(`${k}=${s ? `${s.status}/${s.check}` : "?"} (want ${v})`);
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
          if (withGlue && !n.glue?.running) throw new Error(`patroniglue ${n.name} not running`);
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
          if (withGlue && (await this.glue(n.i, path)).status !== 200) {
            throw new Error(`glue ${n.name} ${path} != 200`);
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
    timeout check 1s
    default-server inter ${CHECK_INTER * 1000}ms fall 2 rise 1 on-marked-down shutdown-sessions

listen stats
    mode http
    bind 127.0.0.1:${p.stats}
    stats enable
    stats uri /
`;
    for (const r of ROUTE_NAMES) {
      const def = ROUTES[r];
      s += `
listen ${r}
    bind 127.0.0.1:${p.routes[r]}
    balance roundrobin
    ${def.check}
    http-check expect status 200
`;
      for (const n of this.nodes) {
        const checkPort = def.via === "glue" ? n.gluePort : n.restPort;
        s += `    server ${n.name} 127.0.0.1:${n.pgPort} check port ${checkPort}\n`;
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

function glueYaml(n: Node): string {
  return `frontend:
  host: 127.0.0.1
  port: ${n.gluePort}
backend:
  host: 127.0.0.1
  port: ${n.restPort}
  scheme: http
  timeout: ${GLUE_TIMEOUT}
cache:
  ttl: ${GLUE_TTL}
  interval: 0.25
`;
}

function patroniYaml(n: Node, p: Ports): string {
  // ttl 5 / loop_wait 1 / retry_timeout 2: fast and known-good (retry_timeout 1 breaks elections).
  // `etcd:` (v2) and not `etcd3:`: with Patroni 3.0.2 and etcd3 a thawed frozen leader can steal
  // the lock back (fixed in 3.0.3).
  return `scope: ${SCOPE}
namespace: /service/
name: ${n.name}

log:
  level: INFO

restapi:
  listen: 127.0.0.1:${n.restPort}
  connect_address: 127.0.0.1:${n.restPort}

etcd:
  hosts: 127.0.0.1:${p.etcd}

bootstrap:
  dcs:
    ttl: 5
    loop_wait: 1
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
