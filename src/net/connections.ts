/**
 * Connections: what every server shares — where connections come from (a transport), the server
 * it makes of them (the accept loop with back-off, one coarse clock and one sweeper for every
 * deadline, lingering close, shutdown), and the options common to the HTTP/1 and agent servers.
 * @module
 */

/** A connection a transport gives: a `Deno.TcpConn` is one, and so is the TLS transport's. */
export interface TransportConn {
  /** Reads into `p`; `null` at the end of the input. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p` (the caller loops); the bytes may be reused once it resolves. */
  write(p: Uint8Array): Promise<number>;
  /** Ends the output (the input stays readable). */
  closeWrite(): Promise<void>;
  /** Closes both ways at once, whatever the connection is doing (a handshake included). */
  close(): void;
  readonly remoteAddr: Deno.NetAddr;
  /** Turns Nagle's algorithm off (TCP). */
  setNoDelay?(noDelay?: boolean): void;
}

/** Where connections come from: a `Deno.TcpListener`, or the TLS transport. */
export interface Transport {
  /** The next connection, as soon as it is accepted; rejects once closed. */
  accept(): Promise<TransportConn>;
  close(): void;
  readonly addr: Deno.NetAddr;
}

/** Waits between attempts to accept (or to listen again) after an error such as EMFILE. */
const ACCEPT_BACKOFF_MS = [10, 50, 100, 250, 500, 1000];

/** How long to wait before attempt `failures + 1` after `failures` failed ones in a row. */
export function acceptBackoffMs(failures: number): number {
  return ACCEPT_BACKOFF_MS[Math.min(failures, ACCEPT_BACKOFF_MS.length - 1)];
}

/** One accepted connection and the deadline the sweeper enforces on it. */
export interface Connection {
  readonly conn: TransportConn;
  /** ms on the coarse clock ({@linkcode Connections.clock}); `Infinity` while a handler works. */
  deadline: number;
  /**
   * Called instead of closing when the deadline passes; the sweeper clears it and sets the
   * deadline to `Infinity` first, so its owner sets the next one.
   */
  onDeadline?: () => void;
  /** A request is being handled: shutdown lets it finish. */
  busy: boolean;
  closed: boolean;
}

/** A running server (HTTP/1 or agent checks) on a transport. */
export interface Server {
  /** Where the transport is bound. */
  readonly addr: Deno.NetAddr;
  /** Client connections open now. */
  readonly connections: number;
  /**
   * Stops accepting, closes the connections still waiting for a request, lets replies in progress
   * finish.
   */
  shutdown(): Promise<void>;
}

/** What every server's options have: the transport, the deadlines from accept, the error hooks. */
export interface ServerOptions {
  /** Bound already (a `Deno.TcpListener`, or the TLS transport); the server closes it on shutdown. */
  transport: Transport;
  /**
   * Time a client has to send its request: a whole HTTP request head, or an agent line once begun
   * (its first byte has `lineWaitMs`). The first one's runs from accept, a TLS handshake included;
   * a later HTTP head on a kept-alive connection has it from its first byte. @default {10_000}
   */
  headTimeoutMs?: number;
  /** Time a client has to take a reply off the wire. @default {10_000} */
  writeTimeoutMs?: number;
  /** Called when accepting fails (e.g. "too many open files"); the server keeps trying. @default {undefined} */
  onAcceptError?: (error: Error) => void;
  /** Called when the handler throws or rejects; the client gets an error reply. @default {undefined} */
  onHandlerError?: (error: Error) => void;
}

/**
 * Options of {@linkcode Connections}: the server's transport, deadlines (a new connection has
 * `headTimeoutMs` from accept, unless its owner moves it; a write has `writeTimeoutMs`) and accept
 * errors, and what the protocol adds.
 */
export interface ConnectionsOptions
  extends Pick<ServerOptions, "transport" | "headTimeoutMs" | "writeTimeoutMs" | "onAcceptError"> {
  /**
   * The protocol's own shortest wait, when it has one (the idle wait, a quarter of the line wait):
   * the sweeper ticks at most this far apart, as for the other deadlines. @default {Infinity}
   */
  shortestWaitMs?: number;
  /** Serves one connection; once it settles, the connection is closed and forgotten. */
  serve: (c: Connection, connections: Connections) => Promise<void>;
  /** Called at each tick, after the clock moved (e.g. to format a Date header). @default {undefined} */
  onTick?: () => void;
}

/** How long a closing connection's unread input is read and dropped, at most. */
const LINGER_MS = 1000;
/** How much unread input a closing connection drops, at most. */
const LINGER_BYTES = 1 << 20;

/**
 * A server's connections: accepted with a back-off after errors (EMFILE), each closed when its
 * deadline passes. One timer serves them all; it runs only while there are connections. What
 * serves each connection makes the protocol; this is the {@linkcode Server} the caller holds.
 */
export class Connections implements Server {
  /** `performance.now()` as of the last tick: the clock of every deadline. */
  clock: number = performance.now();
  /** Set by {@linkcode shutdown}: no connection is accepted, no new request taken. */
  stopping = false;
  readonly addr: Deno.NetAddr;
  /** {@linkcode ServerOptions.headTimeoutMs}, its default applied. */
  readonly headTimeoutMs: number;
  /** {@linkcode ServerOptions.writeTimeoutMs}, its default applied. */
  readonly writeTimeoutMs: number;
  /** Sweeper period, the precision of every deadline: at most the shortest of them. */
  readonly #tickMs: number;
  readonly #options: ConnectionsOptions;
  readonly #open = new Set<Connection>();
  readonly #serving = new Set<Promise<void>>();
  #sweeper?: ReturnType<typeof setInterval>;
  #backoff?: ReturnType<typeof setTimeout>;
  #wakeAccept?: () => void;
  readonly #accepting: Promise<void>;

  constructor(options: ConnectionsOptions) {
    this.#options = options;
    this.addr = options.transport.addr;
    this.headTimeoutMs = options.headTimeoutMs ?? 10_000;
    this.writeTimeoutMs = options.writeTimeoutMs ?? 10_000;
    const waits = [this.headTimeoutMs, this.writeTimeoutMs, options.shortestWaitMs ?? Infinity];
    this.#tickMs = Math.min(1000, ...waits);
    this.#accepting = this.#acceptLoop();
  }

  /** Connections open now. */
  get connections(): number {
    return this.#open.size;
  }

  /** Whether the sweeper's timer runs: only while connections are open. */
  get sweeping(): boolean {
    return this.#sweeper !== undefined;
  }

  /** Closes `c` now (once). */
  close(c: Connection): void {
    if (c.closed) return;
    c.closed = true;
    try {
      c.conn.close();
    } catch { /* already reset */ }
  }

  /** Writes all of `bytes`; the client has {@linkcode writeTimeoutMs} to take them, or the connection is closed. */
  async write(c: Connection, bytes: Uint8Array): Promise<void> {
    await this.writeRest(c, bytes, await this.writeFirst(c, bytes));
  }

  /**
   * The first write of {@linkcode write}, for a caller that saves a promise on its hot path: sets
   * the deadline and resolves to how many bytes went out; {@linkcode writeRest} writes the others.
   */
  writeFirst(c: Connection, bytes: Uint8Array): Promise<number> {
    c.deadline = this.clock + this.writeTimeoutMs;
    return c.conn.write(bytes);
  }

  /** Writes `bytes` from offset `from` on, under the deadline {@linkcode writeFirst} set. */
  async writeRest(c: Connection, bytes: Uint8Array, from: number): Promise<void> {
    for (let off = from; off < bytes.length;) off += await c.conn.write(bytes.subarray(off));
  }

  /**
   * Ends our side, then reads and drops what the client still sends, briefly: closing with unread
   * input makes the kernel send a reset, which can destroy the response before the client reads it.
   * `pending` is a read already in progress on the connection, awaited first.
   */
  async linger(c: Connection, pending?: Promise<number | null>): Promise<void> {
    c.deadline = this.clock + LINGER_MS;
    await c.conn.closeWrite();
    if (pending && await pending === null) return;
    const scratch = new Uint8Array(4096);
    for (let total = 0; total < LINGER_BYTES;) {
      const n = await c.conn.read(scratch);
      if (n === null) return;
      total += n;
    }
  }

  /** Stops accepting, closes connections not busy at once, waits for the others to finish. */
  async shutdown(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.#backoff);
    this.#wakeAccept?.();
    try {
      this.#options.transport.close();
    } catch { /* closed */ }
    await this.#accepting;
    for (const c of this.#open) if (!c.busy) this.close(c);
    await Promise.all(this.#serving);
    this.#stopSweeper();
  }

  #tick(): void {
    this.clock = performance.now();
    this.#options.onTick?.();
  }

  #sweep(): void {
    this.#tick();
    const now = this.clock;
    for (const c of this.#open) {
      if (c.deadline > now) continue;
      const hook = c.onDeadline;
      if (hook) {
        c.onDeadline = undefined;
        c.deadline = Infinity;
        hook();
      } else this.close(c);
    }
    if (this.#open.size === 0) this.#stopSweeper();
  }

  #stopSweeper(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  async #acceptLoop(): Promise<void> {
    const { transport, serve } = this.#options;
    for (let failures = 0; !this.stopping;) {
      let conn: TransportConn;
      try {
        conn = await transport.accept();
        failures = 0;
      } catch (e) {
        if (this.stopping || e instanceof Deno.errors.BadResource) return;
        if (failures === 0) this.#options.onAcceptError?.(e as Error);
        const ms = acceptBackoffMs(failures++);
        await new Promise<void>((resolve) => {
          this.#wakeAccept = resolve;
          this.#backoff = setTimeout(resolve, ms);
        });
        continue;
      }
      if (this.stopping) {
        conn.close();
        return;
      }
      try {
        conn.setNoDelay?.(true);
      } catch { /* reset already */ }
      if (this.#sweeper === undefined) {
        // The clock stood still while nothing was open.
        this.#tick();
        this.#sweeper = setInterval(() => this.#sweep(), this.#tickMs);
      }
      const c: Connection = {
        conn,
        deadline: this.clock + this.headTimeoutMs,
        onDeadline: undefined,
        busy: false,
        closed: false,
      };
      this.#open.add(c);
      const done = this.#serveOne(c, serve);
      this.#serving.add(done);
      done.finally(() => this.#serving.delete(done));
    }
  }

  async #serveOne(c: Connection, serve: ConnectionsOptions["serve"]): Promise<void> {
    try {
      await serve(c, this);
    } catch {
      // Reset by the client, or closed by the sweeper or shutdown: nothing to respond to.
    } finally {
      this.close(c);
      this.#open.delete(c);
    }
  }
}
