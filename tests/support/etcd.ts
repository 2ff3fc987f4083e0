/**
 * A real single-member etcd on loopback for the DCS watcher tests: plain or TLS with client certificates, auth, restart, freeze, compaction, and a TCP relay that can hold a watcher's requests.
 *
 * @module
 */
import { toBase64 } from "../../src/dcs/codec.ts";
import type { DcsFailure, DcsView, DcsWatcher, DcsWatcherOptions } from "../../src/dcs/view.ts";
import { HttpClient, type HttpClientOptions } from "../../src/net/http_client.ts";
import { fixture, freePort, sleep } from "./glue.ts";
import { hasProgram } from "./tools.ts";

/** Debian's etcd-server. */
export const ETCD = "/usr/bin/etcd";
/** Whether etcd can run here (tests that need it are ignored otherwise, with the reason). */
export const HAS_ETCD: boolean = hasProgram(ETCD);

/** The root password of an etcd started with `auth`. */
export const ROOT_PASSWORD = "s3cret";

/** How {@linkcode Etcd.start} runs etcd. */
export interface EtcdOptions {
  /** HTTPS with `server.pem`, client certificates signed by `ca.pem` required. @default {false} */
  tls?: boolean;
  /** Enables auth with user `root` ({@linkcode ROOT_PASSWORD}) on the v2 or the v3 API. @default {undefined} */
  auth?: "v2" | "v3";
}

const pem = (name: string) => Deno.readTextFileSync(fixture(name));

/** The client settings that reach an etcd started with `tls` (CA, client certificate). */
export function tlsClientOptions(): HttpClientOptions {
  return { ca: pem("ca.pem"), cert: pem("client.pem"), key: pem("client.key") };
}

/** Every etcd started by this process, killed at exit if a test left one running. */
const running = new Set<number>();
globalThis.addEventListener("unload", () => {
  for (const pid of running) {
    try {
      Deno.kill(pid, "SIGCONT");
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
});

/** A single-member etcd in a temporary directory; `await using` stops it and removes its files. */
export class Etcd {
  readonly dir: string;
  readonly port: number;
  readonly peerPort: number;
  readonly options: EtcdOptions;
  #child?: Deno.ChildProcess;
  #token?: string;
  #http: HttpClient;

  private constructor(dir: string, options: EtcdOptions) {
    this.dir = dir;
    this.options = options;
    this.port = freePort();
    this.peerPort = freePort();
    this.#http = this.client();
  }

  /** Starts etcd (v2 API enabled) and waits until it answers; sets up auth when asked. */
  static async start(options: EtcdOptions = {}): Promise<Etcd> {
    const dir = await Deno.makeTempDir({ prefix: "patroniglue-etcd-" });
    const etcd = new Etcd(dir, options);
    try {
      await etcd.#spawn();
      if (options.auth === "v3") await etcd.#enableV3Auth();
      if (options.auth === "v2") await etcd.#enableV2Auth();
    } catch (e) {
      await etcd.close();
      throw e;
    }
    return etcd;
  }

  /** `http://127.0.0.1:port` or `https://...`. */
  get url(): string {
    return `${this.options.tls ? "https" : "http"}://127.0.0.1:${this.port}`;
  }

  /** The process id of the running etcd. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** A new client to this etcd (TLS settings included); the caller closes it. */
  client(extra: HttpClientOptions = {}): HttpClient {
    return new HttpClient(
      { scheme: this.options.tls ? "https" : "http", host: "127.0.0.1", port: this.port },
      { ...(this.options.tls ? tlsClientOptions() : {}), ...extra },
    );
  }

  async #spawn(): Promise<void> {
    const scheme = this.options.tls ? "https" : "http";
    const client = `${scheme}://127.0.0.1:${this.port}`;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const args = [
      "--name=test",
      `--data-dir=${this.dir}/data`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      "--enable-v2=true",
      "--logger=zap",
      `--log-outputs=${this.dir}/etcd.log`,
    ];
    if (this.options.tls) {
      args.push(
        `--cert-file=${fixture("server.pem")}`,
        `--key-file=${fixture("server.key")}`,
        "--client-cert-auth",
        `--trusted-ca-file=${fixture("ca.pem")}`,
      );
    }
    this.#child = new Deno.Command(ETCD, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { PATH: "/usr/bin:/bin" },
      clearEnv: true,
    }).spawn();
    running.add(this.#child.pid);
    const until = performance.now() + 15_000;
    for (;;) {
      try {
        const r = await this.#http.request({ target: "/health", timeoutMs: 1000 });
        if (r.status === 200) return;
      } catch { /* not yet */ }
      if (performance.now() > until) {
        throw new Error(`etcd did not start: ${await this.log().catch(() => "")}`);
      }
      await sleep(50);
    }
  }

  /** etcd's log. */
  log(): Promise<string> {
    return Deno.readTextFile(`${this.dir}/etcd.log`);
  }

  async #enableV3Auth(): Promise<void> {
    await this.v3("/v3/auth/role/add", { name: "root" });
    await this.v3("/v3/auth/user/add", { name: "root", password: ROOT_PASSWORD });
    await this.v3("/v3/auth/user/grant", { user: "root", role: "root" });
    await this.v3("/v3/auth/enable", {});
    await this.#authenticate();
  }

  async #authenticate(): Promise<void> {
    this.#token = undefined;
    const { token } = await this.v3("/v3/auth/authenticate", {
      name: "root",
      password: ROOT_PASSWORD,
    }) as { token: string };
    this.#token = token;
  }

  async #enableV2Auth(): Promise<void> {
    const put = async (target: string, body: unknown, basic = false) => {
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (basic) headers.Authorization = `Basic ${btoa(`root:${ROOT_PASSWORD}`)}`;
      const r = await this.#http.request({
        method: "PUT",
        target,
        headers,
        body: JSON.stringify(body),
        timeoutMs: 5000,
      });
      if (r.status >= 300) {
        throw new Error(`PUT ${target}: ${r.status} ${new TextDecoder().decode(r.body)}`);
      }
    };
    await put("/v2/auth/users/root", { user: "root", password: ROOT_PASSWORD });
    await put("/v2/auth/enable", {});
    // The guest role may read and write everything until that is revoked.
    await put("/v2/auth/roles/guest", {
      role: "guest",
      revoke: { kv: { read: ["/*"], write: ["/*"] } },
    }, true);
  }

  /** A v2 keys request (`/service/x/leader?ttl=3`) with a form body; the parsed answer and status. */
  async v2(
    method: string,
    path: string,
    form?: Record<string, string>,
    timeoutMs = 5000,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const headers: Record<string, string> = {};
    if (form) headers["Content-Type"] = "application/x-www-form-urlencoded";
    if (this.options.auth === "v2") {
      headers.Authorization = `Basic ${btoa(`root:${ROOT_PASSWORD}`)}`;
    }
    const r = await this.#http.request({
      method,
      target: `/v2/keys${path}`,
      headers,
      body: form ? new URLSearchParams(form).toString() : undefined,
      timeoutMs,
    });
    return { status: r.status, json: JSON.parse(new TextDecoder().decode(r.body)) };
  }

  /** A v3 gateway call (`/v3/kv/put`) with a JSON body; the parsed answer (throws on an error status). */
  async v3(path: string, body: unknown, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.#token) headers.Authorization = this.#token;
    const r = await this.#http.request({
      method: "POST",
      target: path,
      headers,
      body: JSON.stringify(body),
      timeoutMs,
    });
    const text = new TextDecoder().decode(r.body);
    if (r.status !== 200) throw new Error(`POST ${path}: ${r.status} ${text}`);
    return JSON.parse(text);
  }

  /** Compacts the v3 history up to the current revision; returns it. */
  async compact(): Promise<number> {
    const { header } = await this.v3("/v3/kv/range", { key: toBase64("\0") }) as {
      header: { revision: string };
    };
    const revision = Number(header.revision);
    await this.v3("/v3/kv/compaction", { revision: String(revision), physical: true });
    return revision;
  }

  /** Stops etcd (SIGCONT first: a frozen process ignores SIGTERM), SIGKILL after 5 s. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    for (const signal of ["SIGCONT", "SIGTERM"] as const) {
      try {
        child.kill(signal);
      } catch { /* exited */ }
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    running.delete(child.pid);
  }

  /** Stops and starts etcd again on the same ports and data. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
    if (this.options.auth === "v3") await this.#authenticate();
  }

  /** SIGSTOP: etcd accepts connections (the kernel does) and answers nothing. */
  freeze(): void {
    this.#child?.kill("SIGSTOP");
  }

  /** SIGCONT. */
  thaw(): void {
    this.#child?.kill("SIGCONT");
  }

  /** Stops etcd and removes its directory. */
  async close(): Promise<void> {
    await this.stop();
    this.#http.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function requestTargets(bytes: Uint8Array): string[] {
  const text = new TextDecoder("latin1").decode(bytes);
  return [...text.matchAll(/(?:^|\n)[A-Z]+ (\S+) HTTP\/1\.1\r\n/g)].map((m) => m[1]);
}

/**
 * A loopback TCP relay to a target port that can hold what clients send (`hold()`), so that a
 * test can change etcd before a watcher's next request reaches it.
 */
export class Relay {
  readonly port: number;
  /** The targets of the requests passed on so far (from their `HTTP/1.1` request lines). */
  readonly targets: string[] = [];
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  #held?: PromiseWithResolvers<void>;
  readonly #accepting: Promise<void>;

  constructor(target: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = this.#listener.addr.port;
    const listener = this.#listener;
    this.#accepting = (async () => {
      for await (const client of listener) {
        const track = (task: Promise<void>) => {
          this.#tasks.add(task);
          task.finally(() => this.#tasks.delete(task));
        };
        track((async () => {
          this.#conns.add(client);
          let server: Deno.Conn;
          try {
            server = await Deno.connect({ hostname: "127.0.0.1", port: target });
          } catch {
            this.#drop(client);
            return;
          }
          this.#conns.add(server);
          await Promise.all([this.#pipe(client, server, true), this.#pipe(server, client, false)]);
        })());
      }
    })().catch(() => {});
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, upstream: boolean): Promise<void> {
    const buf = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        if (upstream) {
          while (this.#held) await this.#held.promise;
          this.targets.push(...requestTargets(buf.subarray(0, n)));
        }
        for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* closed */ }
    this.#drop(from);
    this.#drop(to);
  }

  #drop(conn: Deno.Conn): void {
    if (!this.#conns.delete(conn)) return;
    try {
      conn.close();
    } catch { /* closed */ }
  }

  /** Stops passing on what clients send (answers still flow back). */
  hold(): void {
    this.#held ??= Promise.withResolvers();
  }

  /** Passes on what was held, and what comes next. */
  release(): void {
    this.#held?.resolve();
    this.#held = undefined;
  }

  /** Cuts every relayed connection (both sides). */
  cut(): void {
    for (const conn of [...this.#conns]) this.#drop(conn);
  }

  async close(): Promise<void> {
    this.release();
    this.#listener.close();
    this.cut();
    await this.#accepting;
    await Promise.all([...this.#tasks]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** What a watcher reported through its options: failures and recoveries, in order. */
export class Reports {
  readonly errors: { failure: DcsFailure; message: string }[] = [];
  recovers = 0;
  readonly options: DcsWatcherOptions = {
    onError: (failure, message) => this.errors.push({ failure, message }),
    onRecover: () => this.recovers++,
  };
}

/** Resolves with the first view (the current one, or one published within `ms`) that `ok` accepts. */
export function viewWhere(
  watcher: DcsWatcher,
  ok: (view: DcsView) => boolean,
  what: string,
  ms = 10_000,
): Promise<DcsView> {
  const current = watcher.view();
  if (current && ok(current)) return Promise.resolve(current);
  const { promise, resolve, reject } = Promise.withResolvers<DcsView>();
  let last = current;
  const unsubscribe = watcher.subscribe((view) => {
    last = view;
    if (ok(view)) resolve(view);
  });
  const timer = setTimeout(
    () => reject(new Error(`no view with ${what} within ${ms} ms; last: ${show(last)}`)),
    ms,
  );
  return promise.finally(() => {
    clearTimeout(timer);
    unsubscribe();
  });
}

/** Resolves when `check` holds (polled every 20 ms), rejects after `ms`. */
export async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(20);
  }
}

/** A view as one line of JSON, for messages. */
export function show(view: DcsView | undefined): string {
  return view ? JSON.stringify({ ...view, members: Object.fromEntries(view.members) }) : "none";
}
