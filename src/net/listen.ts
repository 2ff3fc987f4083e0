/**
 * Listen: the one bind of every listener (the frontend, the metrics listener, the agent listener):
 * a transport (TCP, or TLS loaded on demand) under the HTTP/1 or the agent server; certificate
 * rotation; listening again when the TLS transport stops accepting (EMFILE).
 * @module
 */
import type { AgentHandler, Handler } from "../check/health.ts";
import { serveAgent } from "./agent.ts";
import { acceptBackoffMs, type Transport } from "./connections.ts";
import { serveHttp1 } from "./http1.ts";
import type { Logger } from "../log.ts";
import { effectiveMinVersion, type TlsVersionName } from "./tls.ts";
import type { TlsTransport } from "./tls_transport.ts";
import { hostPort } from "./wire.ts";

/** A bound, running listener: a server on its transport, as the service holds it. */
export interface Listener {
  /** `http://host:port`, `https://host:port`, or `tcp://host:port` (agent checks), as bound. */
  readonly url: string;
  /** `host:port`, as bound (`[host]:port` for IPv6). */
  readonly address: string;
  readonly port: number;
  /** Client connections open now. */
  readonly connections: number;
  /** Stops accepting, lets replies in progress finish, closes connections. */
  shutdown(): Promise<void>;
  /** Swaps the certificate and the lowest TLS version for the next handshakes (HTTPS only). */
  setTls?(tls: TlsSpec): void;
}

/** Where a listener binds. */
interface Where {
  /** A host name or address. */
  host: string;
  /** 0 for any free port. */
  port: number;
}

/** A certificate to serve, and the lowest TLS version accepted (below TLSv1.2 runs as TLSv1.2). */
export interface TlsSpec {
  /** PEM certificate chain and private key. */
  cert: string;
  key: string;
  minVersion: TlsVersionName;
}

/** HTTP/1 answered by `handle`. */
export interface HttpSpec extends Where {
  protocol: "http";
  handle: Handler;
  /** HTTPS with this certificate; plain HTTP without. @default {undefined} */
  tls?: TlsSpec;
}

/** HAProxy's agent checks answered by `handle`, over TCP. */
export interface AgentSpec extends Where {
  protocol: "agent";
  handle: AgentHandler;
}

/** What {@linkcode listen} binds: where, what it serves there, and TLS. */
export type ListenSpec = HttpSpec | AgentSpec;

/** What the log says when accepting fails and when a handler fails, by protocol. */
const FAILURES = {
  http: { accept: "cannot accept connections", handler: "request failed" },
  agent: { accept: "cannot accept agent connections", handler: "agent check failed" },
};

/** Binds `spec.host:port` and serves there what `spec` says; throws `cannot listen on HOST:PORT: why`. */
export async function listen(spec: ListenSpec, log: Logger): Promise<Listener> {
  const { transport, tls } = await bind(spec, log);
  const failures = FAILURES[spec.protocol];
  const options = {
    transport,
    onAcceptError: (e: Error) => log.error(`${failures.accept}: ${e.message}; retrying`),
    onHandlerError: (e: Error) => log.error(`${failures.handler}: ${e.message}`),
  };
  const server = spec.protocol === "agent"
    ? serveAgent(options, spec.handle)
    : serveHttp1(options, spec.handle);
  const { hostname, port } = server.addr;
  const address = hostPort(hostname, port);
  const url = `${spec.protocol === "agent" ? "tcp" : tls ? "https" : "http"}://${address}`;
  const probe = tls && new AcceptProbe(tls, spec.host, url, log);
  return {
    url,
    address,
    port,
    get connections() {
      return server.connections;
    },
    shutdown: async () => {
      await probe?.stop();
      await server.shutdown();
    },
    setTls: tls &&
      ((spec) => tls.setSecure({ ...spec, minVersion: effectiveMinVersion(spec.minVersion) })),
  };
}

/** The transport of `spec`: TCP, or TLS with a certificate (and then the TLS transport itself too). */
async function bind(
  spec: ListenSpec,
  log: Logger,
): Promise<{ transport: Transport; tls?: TlsTransport }> {
  try {
    if (spec.protocol === "agent" || !spec.tls) {
      return { transport: Deno.listen({ hostname: spec.host, port: spec.port }) };
    }
    // The TLS transport (and node:tls under it) is loaded only for a listener with a certificate.
    const { listenTls } = await import("./tls_transport.ts");
    const tls = await listenTls({
      hostname: spec.host,
      port: spec.port,
      cert: spec.tls.cert,
      key: spec.tls.key,
      minVersion: effectiveMinVersion(spec.tls.minVersion),
      onHandshakeError: (e) => log.debug(`TLS handshake failed: ${e.message}`),
      onError: (e) => log.error(`HTTPS listener: ${e.message}`),
    });
    return { transport: tls, tls };
  } catch (e) {
    throw new Error(`cannot listen on ${hostPort(spec.host, spec.port)}: ${(e as Error).message}`);
  }
}

/** How often a TLS listener checks that it still accepts connections. */
const ACCEPT_PROBE_MS = 5000;
/** How long the probe's TCP handshake may take. */
const PROBE_CONNECT_MS = 1000;
/** How long the transport has to accept the probe's connection once it is made. */
const PROBE_ACCEPT_MS = 1000;
/** How soon a probe that could not open a connection of its own is tried again. */
const PROBE_RETRY_MS = 1000;

/**
 * Deno's node:tls accept loop dies silently on "too many open files": every
 * {@linkcode ACCEPT_PROBE_MS} (every {@linkcode PROBE_RETRY_MS} while this process has no descriptor
 * for the probe), a probe connection must be accepted within {@linkcode PROBE_ACCEPT_MS}, or the
 * transport listens again (with the accept back-off).
 */
class AcceptProbe {
  readonly #tls: TlsTransport;
  readonly #probeHost: string;
  readonly #url: string;
  readonly #log: Logger;
  #stopped = false;
  /** Wakes each sleep in progress. */
  readonly #wakers = new Set<() => void>();
  readonly #probing: Promise<void>;

  constructor(tls: TlsTransport, host: string, url: string, log: Logger) {
    this.#tls = tls;
    this.#probeHost = ["0.0.0.0", "::", ""].includes(host) ? "127.0.0.1" : host;
    this.#url = url;
    this.#log = log;
    this.#probing = this.#run();
  }

  /** Ends the probing (a sleep in progress included). */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const wake of [...this.#wakers]) wake();
    await this.#probing;
  }

  async #run(): Promise<void> {
    for (let wait = ACCEPT_PROBE_MS; !this.#stopped;) {
      await this.#sleep(wait);
      if (this.#stopped) return;
      // Out of descriptors here too (the flood that killed the listener): look again soon.
      wait = await this.#probe() === "unknown" ? PROBE_RETRY_MS : ACCEPT_PROBE_MS;
    }
  }

  /** One probe: whether the transport accepts (else it listens again), or unknown (no descriptor to spare here now). */
  async #probe(): Promise<"accepting" | "unknown" | "relistened"> {
    const before = this.#tls.accepted;
    try {
      // Bounded: once a dead listener's backlog is full, the kernel drops the handshake's SYNs.
      const conn = await Deno.connect({
        hostname: this.#probeHost,
        port: this.#tls.addr.port,
        signal: AbortSignal.timeout(PROBE_CONNECT_MS),
      });
      await this.#sleep(PROBE_ACCEPT_MS);
      conn.close();
    } catch (e) {
      // Not even a handshake within the bound, or refused: the listener is gone.
      if (!(e instanceof DOMException || e instanceof Deno.errors.ConnectionRefused)) {
        return "unknown";
      }
    }
    if (this.#tls.accepted > before || this.#stopped) return "accepting";
    await this.#relisten();
    return "relistened";
  }

  /** Listens again, with the accept back-off, until that works or the probe stops. */
  async #relisten(): Promise<void> {
    this.#log.error(`listener ${this.#url} stopped accepting connections; listening again`);
    for (let failures = 0; !this.#stopped; failures++) {
      await this.#sleep(acceptBackoffMs(failures));
      if (this.#stopped) return;
      try {
        await this.#tls.relisten();
        this.#log.notice(`listening again on ${this.#url}`);
        return;
      } catch { /* still no descriptor to spare, or the port is busy: try again */ }
    }
  }

  /** Resolves after `ms`, or at once when stopped. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#stopped) return resolve();
      const wake = () => {
        clearTimeout(id);
        this.#wakers.delete(wake);
        resolve();
      };
      const id = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }
}
