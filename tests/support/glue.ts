// Test helpers: loopback ports, sleeps, and main.ts run as users run it (`deno run -P`, the permission set of deno.json), its output read.

import tls from "node:tls";

const ROOT = new URL("../../", import.meta.url);
/** Absolute path of a test fixture. */
export const fixture = (name: string): string => new URL(`tests/fixtures/${name}`, ROOT).pathname;

/** Resolves after `ms` milliseconds (for pacing; never to wait for something that can be awaited). */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The TLS version a handshake with a frontend on loopback `port` settles on, offering at most `max` and trusting `ca.pem`; `refused` when it fails. */
export function tlsHandshake(port: number, max: "TLSv1.2" | "TLSv1.3"): Promise<string> {
  return new Promise<string>((resolve) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      ca: Deno.readTextFileSync(fixture("ca.pem")),
      maxVersion: max,
    });
    socket.on("secureConnect", () => (resolve(socket.getProtocol() ?? "?"), socket.destroy()));
    socket.on("error", () => resolve("refused"));
  });
}

/** A loopback port that was free a moment ago. */
export function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** `n` distinct loopback ports that were free a moment ago (held together while chosen). */
export function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  for (const l of listeners) l.close();
  return listeners.map((l) => l.addr.port);
}

/** The schemes a frontend serves, over the same HTTP/1 server. */
export const SCHEMES = ["http", "https"] as const;
/** One of {@linkcode SCHEMES}. */
export type Scheme = typeof SCHEMES[number];

/** The `frontend:` lines of an HTTPS frontend with the test certificate (signed by `ca.pem`). */
export const TLS_FRONTEND = `  certfile: ${fixture("server.pem")}\n  keyfile: ${
  fixture("server.key")
}`;

/** Opens a client connection to a frontend on loopback: TCP, or TLS (handshake done) trusting `ca.pem`. */
export async function connectClient(scheme: Scheme, port: number): Promise<Deno.Conn> {
  if (scheme === "http") return await Deno.connect({ hostname: "127.0.0.1", port });
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [Deno.readTextFileSync(fixture("ca.pem"))],
  });
  try {
    await conn.handshake();
  } catch (e) {
    conn.close();
    throw e;
  }
  return conn;
}

/** A real ClientHello, as Deno's TLS client sends it (captured on a plain TCP listener). */
export async function clientHello(): Promise<Uint8Array> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = Deno.connectTls({ hostname: "127.0.0.1", port: listener.addr.port });
  const conn = await listener.accept();
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  conn.close();
  await client.then((c) => c.handshake().finally(() => c.close())).catch(() => {});
  return buf.slice(0, n!);
}

/** Writes `text` to a temporary YAML file and returns its path. */
export async function writeConfig(text: string): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "patroniglue-", suffix: ".yml" });
  await Deno.writeTextFile(file, text);
  return file;
}

/** A minimal config: frontend on `port`, backend on `backendPort`. */
export function configText(
  port: number,
  backendPort: number,
  extra: { frontend?: string; backend?: string; cache?: string; top?: string } = {},
): string {
  return `frontend:
  host: 127.0.0.1
  port: ${port}
${extra.frontend ?? ""}
backend:
  host: 127.0.0.1
  port: ${backendPort}
${extra.backend ?? "  timeout: 1"}
cache:
${extra.cache ?? "  ttl: 1"}
${extra.top ?? ""}
`;
}

/** Runs main.ts to completion with `args`. */
export async function runGlue(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-P", "main.ts", ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Spawns `main.ts -config file` under `ulimit -n limit`; stderr is collected until it exits. */
export function spawnWithFileLimit(
  file: string,
  limit: number,
): { child: Deno.ChildProcess; stderr: Promise<string> } {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n ${limit} && exec "$0" run -q -P main.ts -config "$1"`,
      Deno.execPath(),
      file,
    ],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return { child, stderr: new Response(child.stderr).text() };
}

/** A patroniglue process that was started and has said where it listens. */
export class GlueProcess {
  readonly #child: Deno.ChildProcess;
  readonly #lines: string[] = [];
  readonly #reading: Promise<void>;
  #waiters: { match: RegExp; resolve: (line: string) => void }[] = [];
  url = "";

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#reading = this.#read();
  }

  /** Spawns `main.ts args` and waits for its "listening on" line (or, when quiet, for `port` to accept). */
  static async start(
    args: string[],
    port?: number,
    denoFlags: string[] = [],
  ): Promise<GlueProcess> {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", "-P", ...denoFlags, "main.ts", ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const glue = new GlueProcess(child);
    const exited = child.status.then((s) => {
      throw new Error(`patroniglue exited ${s.code}:\n${glue.stderr}`);
    });
    if (port === undefined) {
      const line = await Promise.race([glue.waitFor(/listening on (\S+),/), exited]);
      glue.url = line.match(/listening on (\S+),/)![1];
    } else {
      await Promise.race([waitForPort(port), exited]);
      glue.url = `http://127.0.0.1:${port}`;
    }
    return glue;
  }

  /** Everything written to stderr so far. */
  get stderr(): string {
    return this.#lines.join("\n");
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Resolves with the first stderr line (past or future) matching `match`. */
  waitFor(match: RegExp): Promise<string> {
    const seen = this.#lines.find((l) => match.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  async #read(): Promise<void> {
    let rest = "";
    for await (const chunk of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        this.#lines.push(line);
        this.#waiters = this.#waiters.filter((w) =>
          !(w.match.test(line) && (w.resolve(line), true))
        );
      }
    }
    if (rest) this.#lines.push(rest);
  }

  /** Sends `signal` and waits for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<{ code: number; stderr: string }> {
    try {
      this.#child.kill(signal);
    } catch { /* already exited */ }
    const status = await this.#child.status;
    await this.#reading;
    return { code: status.code, stderr: this.stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

async function waitForPort(port: number): Promise<void> {
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await sleep(20);
    }
  }
}

/** Every problem `parseConfig` finds in `text` (read as `c.yml`); fails the test if it accepts it. */
export async function configProblems(text: string): Promise<string[]> {
  const { ConfigError, parseConfig } = await import("../../src/config/config.ts");
  try {
    await parseConfig(text, "c.yml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error(`accepted:\n${text}`);
}
