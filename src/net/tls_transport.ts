/**
 * TLS transport: a `node:tls` server whose connections a server (HTTP/1) serves from their TCP
 * accept on, so that its head deadline covers the handshake.
 * @module
 */
import type { Socket } from "node:net";
import type { Server, TLSSocket } from "node:tls";
import type { Transport, TransportConn } from "./connections.ts";

/** Options of {@linkcode listenTls}. */
export interface TlsTransportOptions {
  hostname: string;
  port: number;
  /** PEM certificate chain and private key. */
  cert: string;
  key: string;
  /** Oldest protocol version a client may use. */
  minVersion: "TLSv1.2" | "TLSv1.3";
  /** Called for each handshake that fails (plain HTTP, junk, a client gone or refusing the certificate). @default {undefined} */
  onHandshakeError?: (error: Error) => void;
  /** Called when the listening socket fails after binding. @default {undefined} */
  onError?: (error: Error) => void;
}

/** The TLS transport: a {@linkcode Transport} over `node:tls`. */
export interface TlsTransport extends Transport {
  /** Connections accepted so far (the EMFILE probe watches it move). */
  readonly accepted: number;
  /** Serves `cert` and `key`, and accepts `minVersion` and above, in the next handshakes. */
  setSecure(secure: Pick<TlsTransportOptions, "cert" | "key" | "minVersion">): void;
  /** Stops listening and listens again on the same port; connections already accepted stay. */
  relisten(): Promise<void>;
}

/** Unread input at which a connection's socket stops reading (TCP pushes back on the client). */
const HIGH_WATER_BYTES = 64 * 1024;
/** Unread input at which a connection is closed: the runtime did not stop reading. */
const MAX_UNREAD_BYTES = 1024 * 1024;

/**
 * Listens with `node:tls`, which enforces `minVersion` and whose raw socket, handed over at
 * accept, can be destroyed mid-handshake (`Deno.listenTls` can do neither). Each connection exists
 * for the server from its TCP accept, so the server's head deadline covers the handshake.
 * Loads `node:tls` (~10 MiB RSS) only when called.
 */
export async function listenTls(options: TlsTransportOptions): Promise<TlsTransport> {
  const { default: tls } = await import("node:tls");
  const transport = new NodeTlsTransport(tls, options);
  await transport.listen(options.port);
  return transport;
}

/** The listening `node:tls` server behind {@linkcode listenTls}, and the connections it hands over. */
class NodeTlsTransport implements TlsTransport {
  addr: Deno.NetAddr = { transport: "tcp", hostname: "", port: 0 };
  accepted = 0;
  readonly #tls: typeof import("node:tls");
  readonly #options: TlsTransportOptions;
  #secure: { cert: string; key: string; minVersion: TlsTransportOptions["minVersion"] };
  #server?: Server;
  readonly #ready: TlsConn[] = [];
  readonly #waiting: PromiseWithResolvers<TransportConn>[] = [];
  /** Connections in their handshake, by client address: `secureConnection` hands over a new socket. */
  readonly #handshaking = new Map<string, TlsConn>();
  #closed = false;

  constructor(tls: typeof import("node:tls"), options: TlsTransportOptions) {
    this.#tls = tls;
    this.#options = options;
    this.#secure = { cert: options.cert, key: options.key, minVersion: options.minVersion };
  }

  /** Binds `port` (0: any free one) and serves from there; `addr` is where it is bound. */
  async listen(port: number): Promise<void> {
    // Half-open, as HTTP wants: a client that ends its side after a request still gets the response.
    const server = this.#tls.createServer({ ...this.#secure, allowHalfOpen: true });
    server.on("connection", (raw: Socket) => this.#connected(raw));
    server.on("secureConnection", (socket: TLSSocket) => this.#secured(socket));
    server.on("tlsClientError", (e: Error) => this.#options.onHandshakeError?.(e));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, this.#options.hostname, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e: Error) => this.#options.onError?.(e));
    if (this.#closed) {
      server.close();
      return;
    }
    this.#server = server;
    const bound = server.address() as { address: string; port: number };
    this.addr = { transport: "tcp", hostname: bound.address, port: bound.port };
  }

  /** A TCP connection accepted: a connection for the server from now on, its handshake to come. */
  #connected(raw: Socket): void {
    this.accepted++;
    const key = `${raw.remoteAddress}:${raw.remotePort}`;
    if (this.#closed || raw.remoteAddress === undefined) {
      raw.destroy();
      return;
    }
    this.#handshaking.get(key)?.close(); // the same client address again: the old one is gone
    const conn: TlsConn = new TlsConn(raw, () => {
      if (this.#handshaking.get(key) === conn) this.#handshaking.delete(key);
    });
    this.#handshaking.set(key, conn);
    const next = this.#waiting.shift();
    if (next) next.resolve(conn);
    else this.#ready.push(conn);
  }

  /** A handshake done: its connection takes over the TLS socket. */
  #secured(socket: TLSSocket): void {
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    const conn = this.#handshaking.get(key);
    this.#handshaking.delete(key);
    if (conn) conn.attach(socket);
    else socket.destroy();
  }

  accept(): Promise<TransportConn> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
    const conn = this.#ready.shift();
    if (conn) return Promise.resolve(conn);
    const next = Promise.withResolvers<TransportConn>();
    this.#waiting.push(next);
    return next.promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server?.close();
    for (const w of this.#waiting.splice(0)) {
      w.reject(new Deno.errors.BadResource("listener closed"));
    }
    for (const conn of this.#ready.splice(0)) conn.close();
  }

  setSecure(
    { cert, key, minVersion }: Pick<TlsTransportOptions, "cert" | "key" | "minVersion">,
  ): void {
    this.#secure = { cert, key, minVersion };
    this.#server?.setSecureContext(this.#secure);
  }

  async relisten(): Promise<void> {
    this.#server?.close();
    await this.listen(this.addr.port);
  }
}

/** The runtime's TCP handle under a TLS socket: its reads go on while the socket is paused. */
interface NativeReads {
  readStart(): void;
  readStop(): void;
}

/** One TLS connection as a {@linkcode TransportConn}: the raw socket until the handshake, then its TLS socket. */
class TlsConn implements TransportConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly #raw: Socket;
  #socket?: TLSSocket;
  /** Decrypted input not read yet, and the offset into its first chunk. */
  readonly #input: Uint8Array[] = [];
  #offset = 0;
  #unread = 0;
  #stopped = false;
  /** The client ended its side: reads give `null`, writes still go out. */
  #inputEnded = false;
  /** The connection is gone (reset, closed by either side, or failed). */
  #gone = false;
  #closed = false;
  /** Wakes a read waiting for input or the end. */
  #wake?: () => void;
  /** Fails the write in progress (the runtime may never call back on a closed socket). */
  #failWrite?: (e: Error) => void;

  constructor(raw: Socket, forget: () => void) {
    this.#raw = raw;
    this.remoteAddr = { transport: "tcp", hostname: raw.remoteAddress!, port: raw.remotePort! };
    raw.setNoDelay(true);
    raw.once("close", () => {
      forget();
      this.#lost();
    });
    raw.on("error", () => {}); // the close that follows ends the connection
  }

  /** Takes over the TLS socket once the handshake is done. */
  attach(socket: TLSSocket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.#push(chunk));
    socket.on("end", () => {
      this.#inputEnded = true;
      this.#wake?.();
    });
    socket.on("close", () => this.#lost());
    socket.on("error", () => this.#lost());
    this.#wake?.();
  }

  #push(chunk: Uint8Array): void {
    if (this.#closed) return;
    this.#input.push(chunk);
    this.#unread += chunk.length;
    this.#wake?.();
    if (this.#unread > MAX_UNREAD_BYTES) this.close();
    else if (this.#unread >= HIGH_WATER_BYTES && !this.#stopped) this.#reads(false);
  }

  /** Stops or restarts reading from the client (the runtime's pause() does not stop its reads). */
  #reads(on: boolean): void {
    this.#stopped = !on;
    const socket = this.#socket!;
    const native = (socket as unknown as { _handle?: { _nativeTcpHandle?: NativeReads } })
      ._handle?._nativeTcpHandle;
    if (native) {
      if (on) native.readStart();
      else native.readStop();
    } else if (on) socket.resume();
    else socket.pause();
  }

  #lost(): void {
    this.#gone = true;
    this.#wake?.();
    this.#failWrite?.(new Deno.errors.BrokenPipe("connection closed"));
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#input.length === 0) {
      if (this.#inputEnded || this.#gone) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const chunk = this.#input[0];
    const n = Math.min(p.length, chunk.length - this.#offset);
    p.set(chunk.subarray(this.#offset, this.#offset + n));
    this.#offset += n;
    this.#unread -= n;
    if (this.#offset === chunk.length) {
      this.#input.shift();
      this.#offset = 0;
    }
    if (this.#stopped && this.#unread === 0 && !this.#closed) this.#reads(true);
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    const socket = this.#socket;
    if (!socket || this.#gone) {
      return Promise.reject(new Deno.errors.BrokenPipe("connection closed"));
    }
    return new Promise((resolve, reject) => {
      this.#failWrite = reject;
      socket.write(p, (e?: Error | null) => {
        this.#failWrite = undefined;
        if (e) reject(e);
        else resolve(p.length);
      });
    });
  }

  closeWrite(): Promise<void> {
    this.#socket?.end();
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#raw.destroy();
    this.#socket?.destroy();
    this.#input.length = 0;
    this.#unread = 0;
    this.#lost();
  }
}
