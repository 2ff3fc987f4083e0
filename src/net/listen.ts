// Listen: binds the frontend (TCP or the TLS transport) under the HTTP/1 server; certificate rotation; TLS re-listen.
import type { Handler } from "../check/health.ts";
import { acceptBackoffMs, type StreamListener } from "./connections.ts";
import { serveHttp1 } from "./http1.ts";
import type { Logger } from "../log.ts";
import { effectiveMinVersion, type TlsVersionName } from "./tls.ts";
import type { TlsListener } from "./tls_conn.ts";
import { hostPort } from "./wire.ts";

/** A running listener. */
export interface Listener {
  /** `http://host:port` or `https://host:port`, as bound. */
  readonly url: string;
  readonly port: number;
  /** Client connections open now. */
  readonly connections: number;
  /** Stops accepting, lets responses in progress finish, closes connections. */
  shutdown(): Promise<void>;
  /** Swaps the certificate for the next TLS handshakes (HTTPS only). */
  setCertificate?(cert: string, key: string): void;
}

/** The part of the frontend config a listener needs. */
export interface ListenConfig {
  host: string;
  port: number;
  /** HTTPS with this certificate and key (PEM); plain HTTP without. */
  tls?: { cert: string; key: string };
  /** The lowest TLS version accepted (below TLSv1.2 runs as TLSv1.2). */
  tlsMinVersion: TlsVersionName;
}

/** Binds `frontend.host:port` and serves `handle` there: HTTP/1 over TCP, or over TLS with a certificate. */
export async function listen(
  frontend: ListenConfig,
  handle: Handler,
  log: Logger,
): Promise<Listener> {
  let transport: StreamListener;
  let tls: TlsListener | undefined;
  try {
    if (frontend.tls) {
      // The TLS transport (and node:tls under it) is loaded only for a frontend with a certificate.
      const { listenTls } = await import("./tls_conn.ts");
      transport = tls = await listenTls({
        hostname: frontend.host,
        port: frontend.port,
        cert: frontend.tls.cert,
        key: frontend.tls.key,
        minVersion: effectiveMinVersion(frontend.tlsMinVersion),
        onHandshakeError: (e) => log.debug(`TLS handshake failed: ${e.message}`),
        onError: (e) => log.error(`HTTPS listener: ${e.message}`),
      });
    } else transport = Deno.listen({ hostname: frontend.host, port: frontend.port });
  } catch (e) {
    throw new Error(
      `cannot listen on ${hostPort(frontend.host, frontend.port)}: ${(e as Error).message}`,
    );
  }
  const server = serveHttp1({
    listener: transport,
    onAcceptError: (e) => log.error(`cannot accept connections: ${e.message}; retrying`),
    onHandlerError: (e) => log.error(`request failed: ${e.message}`),
  }, handle);
  const { hostname, port } = server.addr;
  const url = `${tls ? "https" : "http"}://${hostPort(hostname, port)}`;
  if (!tls) {
    return {
      url,
      port,
      get connections() {
        return server.connections;
      },
      shutdown: () => server.shutdown(),
    };
  }
  const recovery = recoverAccepting(tls, frontend.host, url, log);
  return {
    url,
    port,
    get connections() {
      return server.connections;
    },
    shutdown: async () => {
      await recovery.stop();
      await server.shutdown();
    },
    setCertificate: (cert, key) => tls.setCertificate(cert, key),
  };
}

/** How often an HTTPS listener checks that it still accepts connections. */
const ACCEPT_PROBE_MS = 5000;
/** How long the probe's TCP handshake may take. */
const PROBE_CONNECT_MS = 1000;
/** How soon a probe that could not open a connection of its own is tried again. */
const PROBE_RETRY_MS = 1000;

/**
 * Deno's node:tls accept loop dies silently on "too many open files": every
 * {@linkcode ACCEPT_PROBE_MS} (every {@linkcode PROBE_RETRY_MS} while this process has no descriptor
 * for the probe), a probe connection must be accepted within 1 s, or the listener listens again
 * (with the accept back-off).
 */
function recoverAccepting(
  tls: TlsListener,
  host: string,
  url: string,
  log: Logger,
): { stop(): Promise<void> } {
  const probeHost = ["0.0.0.0", "::", ""].includes(host) ? "127.0.0.1" : host;
  const wakers = new Set<() => void>();
  let stopped = false;
  /** Resolves after `ms`, or at once when stopped. */
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped) return resolve();
      const wake = () => {
        clearTimeout(id);
        wakers.delete(wake);
        resolve();
      };
      const id = setTimeout(wake, ms);
      wakers.add(wake);
    });
  /** One probe: whether the listener accepts, or unknown (no descriptor to spare here now). */
  const probe = async (): Promise<"accepting" | "unknown" | "relistened"> => {
    const before = tls.accepted;
    try {
      // Bounded: once a dead listener's backlog is full, the kernel drops the handshake's SYNs.
      const conn = await Deno.connect({
        hostname: probeHost,
        port: tls.addr.port,
        signal: AbortSignal.timeout(PROBE_CONNECT_MS),
      });
      await sleep(1000);
      conn.close();
    } catch (e) {
      // Not even a handshake within the bound, or refused: the listener is gone.
      if (!(e instanceof DOMException || e instanceof Deno.errors.ConnectionRefused)) {
        return "unknown";
      }
    }
    if (tls.accepted > before || stopped) return "accepting";
    log.error(`listener ${url} stopped accepting connections; listening again`);
    for (let failures = 0; !stopped; failures++) {
      await sleep(acceptBackoffMs(failures));
      if (stopped) break;
      try {
        await tls.relisten();
        log.notice(`listening again on ${url}`);
        break;
      } catch { /* still no descriptor to spare, or the port is busy: try again */ }
    }
    return "relistened";
  };
  const probing = (async () => {
    for (let wait = ACCEPT_PROBE_MS; !stopped;) {
      await sleep(wait);
      if (stopped) return;
      // Out of descriptors here too (the flood that killed the listener): look again soon.
      wait = await probe() === "unknown" ? PROBE_RETRY_MS : ACCEPT_PROBE_MS;
    }
  })();
  return {
    async stop() {
      stopped = true;
      for (const wake of [...wakers]) wake();
      await probing;
    },
  };
}
