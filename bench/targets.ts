// Bench targets: patroniglue, nginx proxy_cache, HAProxy cache, the limit (HAProxy answering a
// constant) and Patroni direct, each in front of its own simulated Patroni, started on loopback and
// stopped by the runner.
import { V8_FLAGS } from "../packaging/build.ts";
import { FakePatroni } from "../tests/support/fake_patroni.ts";

/** What the runner measures. */
export type TargetName = "patroniglue" | "nginx" | "haproxy" | "limit" | "direct";

/** Every target, in the order runs alternate. */
export const TARGET_NAMES: readonly TargetName[] = [
  "patroniglue",
  "nginx",
  "haproxy",
  "limit",
  "direct",
];

/**
 * Targets that answer only scenario (1) (and are counted in (7)): the limit answers a constant
 * whatever the path, without a backend.
 */
export const HIT_ONLY_TARGETS: ReadonlySet<TargetName> = new Set(["limit"]);

/** What the HTTPS scenarios measure: patroniglue's and nginx's TLS frontends, and a bare node:tls
 * server that only accepts (bench/bare_tls_server.ts, the transport's own cost). */
export type TlsTargetName = "patroniglue" | "nginx" | "bare";

/** The HTTPS targets, in the order runs alternate. */
export const TLS_TARGET_NAMES: readonly TlsTargetName[] = ["patroniglue", "nginx", "bare"];

/** The certificate and key an HTTPS target serves, and the CA that signed them (PEM files). */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** The test certificate in tests/fixtures (SAN 127.0.0.1, signed by the test CA). */
export function fixtureTls(root: string): TlsFiles {
  const dir = `${root}/tests/fixtures`;
  return { cert: `${dir}/server.pem`, key: `${dir}/server.key`, ca: `${dir}/ca.pem` };
}

/** Settings shared by every target (patroniglue's config, mirrored in the peers'). */
export interface BenchSettings {
  /** Cache ttl, seconds. */
  ttl: number;
  /** Backend timeout, seconds. */
  timeout: number;
  /** Simulated cost of one Patroni check, ms. */
  delayMs: number;
  /** The repository root (cwd of patroniglue). */
  root: string;
  /** A scratch directory for configs, caches and logs. */
  tmp: string;
  /** Extra `deno run` flags for patroniglue (e.g. `--v8-flags=--optimize-for-size,--max-opt=2`). */
  denoFlags?: string[];
}

/** A running target with its own simulated Patroni. */
export interface Target<N extends string = TargetName> {
  readonly name: N;
  /** `http://127.0.0.1:port` (`https://` for an HTTPS target), what clients hit. */
  readonly url: string;
  readonly port: number;
  /** The simulated Patroni behind it (for `direct`, the one clients hit). */
  readonly fake: FakePatroni;
  /** Backend GETs with their arrival time (performance.now ms), in order. */
  readonly arrivals: { target: string; at: number }[];
  /** PIDs whose RSS is the target's (empty for `direct`: the simulation is not Patroni). */
  pids(): number[];
  /** Tail of the target's stderr, for error messages. */
  log(): string;
  stop(): Promise<void>;
}

/** Runs `cmd` after raising the open-files limit (to 65536, else to the hard limit). */
export function withUlimit(cmd: string, args: string[]): { cmd: string; args: string[] } {
  const raise = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';
  return { cmd: "sh", args: ["-c", raise, "sh", cmd, ...args] };
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolves once `port` accepts connections; throws after `ms`. */
export async function waitForPort(port: number, ms = 10_000, alive?: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (alive && !alive()) throw new Error(`process exited before listening on ${port}`);
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await sleep(5);
    }
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${ms} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Starts a simulated Patroni whose backend GETs are timestamped. */
export async function startFake(delayMs: number): Promise<
  { fake: FakePatroni; arrivals: { target: string; at: number }[] }
> {
  const fake = await FakePatroni.start({ delayMs });
  const arrivals: { target: string; at: number }[] = [];
  // Timestamp every arrival without changing the fake: its handler counts each GET via counts.set.
  const set = fake.counts.set.bind(fake.counts);
  fake.counts.set = (target: string, n: number) => {
    arrivals.push({ target, at: performance.now() });
    return set(target, n);
  };
  return { fake, arrivals };
}

/** A child process with its stderr kept (last 8 KiB). */
class Child {
  readonly process: Deno.ChildProcess;
  #stderr = "";
  exited = false;

  constructor(cmd: string, args: string[], cwd: string) {
    const wrapped = withUlimit(cmd, args);
    const proc = new Deno.Command(wrapped.cmd, {
      args: wrapped.args,
      cwd,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.process = proc;
    proc.status.then(() => this.exited = true);
    (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stderr) {
        this.#stderr = (this.#stderr + decoder.decode(chunk)).slice(-8192);
      }
    })().catch(() => {});
  }

  get pid(): number {
    return this.process.pid;
  }

  get stderr(): string {
    return this.#stderr;
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      try {
        this.process.kill("SIGTERM");
      } catch { /* already gone */ }
      const t = setTimeout(() => {
        try {
          this.process.kill("SIGKILL");
        } catch { /* gone */ }
      }, 6000);
      await this.process.status;
      clearTimeout(t);
    }
  }
}

/** Child processes of `pid` (from /proc/<n>/stat), e.g. nginx's workers. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** VmRSS (or another field of /proc/PID/status, e.g. RssAnon) of `pid` in KiB; 0 when unreadable. */
export function rssKiB(pid: number, field = "VmRSS"): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(
      new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m"),
    );
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The patroniglue YAML for the settings (an HTTPS frontend with `tls`). */
export function glueConfig(
  port: number,
  backendPort: number,
  s: BenchSettings,
  tls?: TlsFiles,
): string {
  return [
    "frontend:",
    "  host: 127.0.0.1",
    `  port: ${port}`,
    ...(tls ? [`  certfile: ${tls.cert}`, `  keyfile: ${tls.key}`] : []),
    "backend:",
    "  host: 127.0.0.1",
    `  port: ${backendPort}`,
    "  scheme: http",
    `  timeout: ${s.timeout}`,
    "cache:",
    `  ttl: ${s.ttl}`,
    "  interval: 0.25",
    "",
  ].join("\n");
}

/** The `deno run` command line for patroniglue with `configFile`. */
export function glueCommand(
  configFile: string,
  denoFlags: string[] = [],
): { cmd: string; args: string[] } {
  return denoCommand("main.ts", ["-config", configFile], denoFlags);
}

/** `deno run` of `script` as `deno task start` runs patroniglue (and as the compiled binary does):
 * deno.json's permissions, its V8 flags. */
export function denoCommand(
  script: string,
  args: string[],
  denoFlags: string[] = [],
): { cmd: string; args: string[] } {
  return {
    cmd: Deno.execPath(),
    args: ["run", "-q", "-P", V8_FLAGS, ...denoFlags, script, ...args],
  };
}

/** nginx as the best proxy_cache setup: cache 200 and 503 for ttl, lock, no stale answers; a TLS
 * frontend (TLS 1.2 and 1.3, as patroniglue's default) with `tls`. */
export function nginxConfig(
  prefix: string,
  port: number,
  backendPort: number,
  s: BenchSettings,
  tls?: TlsFiles,
): string {
  const listen = tls
    ? `listen 127.0.0.1:${port} ssl backlog=4096;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;`
    : `listen 127.0.0.1:${port} backlog=4096;`;
  return `daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 65536;
user root;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  proxy_cache_path ${prefix}/cache levels=1:2 keys_zone=patroni:1m max_size=16m inactive=60s use_temp_path=off;
  upstream patroni { server 127.0.0.1:${backendPort}; keepalive 8; }
  server {
    ${listen}
    location / {
      proxy_pass http://patroni;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache patroni;
      proxy_cache_key $request_uri;
      proxy_cache_valid 200 503 ${s.ttl}s;
      proxy_cache_lock on;
      proxy_cache_use_stale off;
      proxy_connect_timeout ${s.timeout}s;
      proxy_read_timeout ${s.timeout}s;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`;
}

/**
 * HAProxy with its own cache. It stores GET 200s only, never collapses misses, and stores nothing
 * without an explicit age or a validator, which Patroni does not send: hence the Cache-Control.
 */
export function haproxyConfig(port: number, backendPort: number, s: BenchSettings): string {
  return `global
  maxconn 8000
defaults
  mode http
  timeout connect ${s.timeout}s
  timeout server ${s.timeout}s
  timeout client 60s
  timeout http-request 60s
  timeout http-keep-alive 60s
cache patroni
  total-max-size 16
  max-age ${Math.max(1, Math.round(s.ttl))}
frontend fe
  bind 127.0.0.1:${port}
  maxconn 8000
  default_backend be
backend be
  http-request cache-use patroni
  http-response set-header Cache-Control max-age=${Math.max(1, Math.round(s.ttl))}
  http-response cache-store patroni
  server patroni 127.0.0.1:${backendPort} maxconn 1000
`;
}

/**
 * The limit: HAProxy's `http-request return` answering `/primary`'s body with patroniglue's headers
 * (as a hit has them), whatever the request: a C event loop answering a constant, no cache, no
 * backend. Patroni's body has no single quote, so it is a literal HAProxy string.
 */
export function limitConfig(port: number, body: string): string {
  if (body.includes("'")) throw new Error("limit: the body must not contain a single quote");
  return `global
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout server 2s
  timeout client 60s
  timeout http-request 60s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:${port}
  maxconn 8000
  http-request return status 200 content-type application/json string '${body}' hdr x-cache HIT hdr age 0
`;
}

/**
 * Starts one target (and its simulated Patroni). With `tls`, its frontend is HTTPS (patroniglue,
 * nginx; `bare` is HTTPS only and answers nothing: its simulated Patroni is never asked).
 */
export async function startTarget<N extends TargetName | TlsTargetName>(
  name: N,
  s: BenchSettings,
  tls?: TlsFiles,
): Promise<Target<N>> {
  if (tls && (name === "haproxy" || name === "limit" || name === "direct")) {
    throw new Error(`${name}: no TLS setup`);
  }
  if (name === "bare" && !tls) throw new Error("bare: a TLS server, needs certificates");
  const { fake, arrivals } = await startFake(s.delayMs);
  const port = name === "direct" ? fake.port : freePort();
  const dir = `${s.tmp}/${name}${tls ? "-tls" : ""}`;
  await Deno.mkdir(dir, { recursive: true });
  let child: Child | undefined;
  let pids = () => [] as number[];
  try {
    if (name === "patroniglue") {
      const file = `${dir}/patroniglue.yml`;
      await Deno.writeTextFile(file, glueConfig(port, fake.port, s, tls));
      const c = glueCommand(file, s.denoFlags);
      child = new Child(c.cmd, c.args, s.root);
      pids = () => [child!.pid];
    } else if (name === "bare") {
      const c = denoCommand(
        "bench/bare_tls_server.ts",
        [String(port), tls!.cert, tls!.key],
        s.denoFlags,
      );
      child = new Child(c.cmd, c.args, s.root);
      pids = () => [child!.pid];
    } else if (name === "nginx") {
      await Deno.writeTextFile(`${dir}/nginx.conf`, nginxConfig(dir, port, fake.port, s, tls));
      child = new Child(
        "nginx",
        ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
        dir,
      );
      pids = () => [child!.pid, ...childPids(child!.pid)];
    } else if (name === "haproxy" || name === "limit") {
      const config = name === "haproxy"
        ? haproxyConfig(port, fake.port, s)
        : limitConfig(port, JSON.stringify(fake.body()));
      await Deno.writeTextFile(`${dir}/haproxy.cfg`, config);
      child = new Child("haproxy", ["-db", "-f", `${dir}/haproxy.cfg`], dir);
      pids = () => [child!.pid];
    }
    if (child) await waitForPort(port, 15_000, () => !child!.exited);
  } catch (e) {
    await child?.stop();
    await fake.close();
    const tail = child ? `\n${child.stderr.trim()}` : "";
    throw new Error(`${name}: ${(e as Error).message}${tail}`);
  }
  return {
    name,
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    fake,
    arrivals,
    pids,
    log: () => child?.stderr ?? "",
    async stop() {
      await child?.stop();
      await fake.close();
    },
  };
}

/** Whether `cmd` can be run (found on PATH). */
export async function hasCommand(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Spawns a server command and measures exec -> first 200 on `url`. */
export async function coldStart(
  cmd: string,
  args: string[],
  cwd: string,
  port: number,
  path: string,
  limitMs = 20_000,
): Promise<number> {
  const t0 = performance.now();
  const child = new Child(cmd, args, cwd);
  try {
    while (performance.now() - t0 < limitMs) {
      if (child.exited) throw new Error(`exited before answering: ${child.stderr.trim()}`);
      const status = await rawGet(port, path).catch(() => 0);
      if (status === 200) return performance.now() - t0;
      await sleep(2);
    }
    throw new Error(`no 200 within ${limitMs} ms`);
  } finally {
    await child.stop();
  }
}

const encoder = new TextEncoder();

/** One `GET path` on a fresh connection (Connection: close); resolves to the status. */
export async function rawGet(port: number, path: string, timeoutMs = 10_000): Promise<number> {
  return exchange(await Deno.connect({ hostname: "127.0.0.1", port }), path, timeoutMs);
}

/**
 * One `GET path` on a fresh TLS connection (a full handshake, as HAProxy's `check-ssl` makes for
 * every check), the server's certificate verified against the CA `caPem`; resolves to the status.
 */
export async function rawGetTls(
  port: number,
  path: string,
  caPem: string,
  timeoutMs = 10_000,
): Promise<number> {
  return exchange(await connectTls(port, caPem), path, timeoutMs);
}

/**
 * A TLS connection to 127.0.0.1:`port` (certificate verified against `caPem`) with TCP_NODELAY, as
 * HAProxy's checks set it: without, the request written after the handshake waits for the
 * server's delayed ACK (about 40 ms on Linux).
 */
export async function connectTls(port: number, caPem: string): Promise<Deno.TlsConn> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  tcp.setNoDelay(true);
  return await Deno.startTls(tcp, { hostname: "127.0.0.1", caCerts: [caPem] });
}

/** Sends `GET path` on `conn`, reads to EOF (or to a reset after the status line), closes it. */
async function exchange(conn: Deno.Conn, path: string, timeoutMs: number): Promise<number> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    await conn.write(
      encoder.encode(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
    );
    // Read to EOF so the measured time covers the whole answer.
    const buf = new Uint8Array(4096);
    let head = "";
    try {
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        if (head === "") head = new TextDecoder().decode(buf.subarray(0, Math.min(n, 32)));
      }
    } catch (e) {
      // A TLS peer may close without close_notify once it has answered.
      if (head === "" || timedOut) throw e;
    }
    const m = head.match(/^HTTP\/1\.[01] (\d{3})/);
    return m ? Number(m[1]) : 0;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
