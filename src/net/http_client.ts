/**
 * HTTP client: HTTP/1.1 requests to one origin over TCP or TLS (node:tls, loaded only for https), each bounded by a deadline and cancellable; the project's only client.
 *
 * @module
 */
import type { ConnectionOptions, TLSSocket } from "node:tls";
import { BARE_LF, CR, findHeadEnd, grow, hostPort, LF } from "./wire.ts";

/** Why a request failed. */
export type HttpFailure = "timeout" | "refused" | "tls" | "invalid" | "error";

/** A failed request: its {@linkcode HttpFailure} and a message for people. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly failure: HttpFailure, message: string) {
    super(message);
  }
}

/** Where requests go. */
export interface HttpOrigin {
  scheme: "http" | "https";
  host: string;
  port: number;
}

/** How a client connects and how much it accepts. */
export interface HttpClientOptions {
  /** PEM of the CAs to trust for https (a self-signed CA:TRUE leaf works too). @default {undefined} (the system's roots; reading them needs --allow-sys) */
  ca?: string | string[];
  /** PEM of a client certificate, for servers that ask for one. @default {undefined} */
  cert?: string;
  /** PEM of the client certificate's key. @default {undefined} */
  key?: string;
  /** Skips verifying the server's certificate. @default {false} */
  insecure?: boolean;
  /** Keeps one connection open between requests (HTTP/1.1 keep-alive). @default {false} */
  keepAlive?: boolean;
  /** Most bytes of a buffered body. @default {262144} */
  maxBodyBytes?: number;
}

/** One request. */
export interface HttpRequest {
  /** @default {"GET"} */
  method?: string;
  /** The request target: path and query. */
  target: string;
  /** Headers besides Host, User-Agent, Connection and Content-Length. @default {{}} */
  headers?: Record<string, string>;
  /** @default {undefined} (no body) */
  body?: string | Uint8Array;
  /** Deadline in ms for connecting and the whole request (for a stream: until its head arrives). */
  timeoutMs: number;
  /** Cancels the request and closes its connection at once. @default {undefined} */
  signal?: AbortSignal;
}

/** A request whose 2xx body is handed over as it arrives (a long-lived stream). */
export interface HttpStreamRequest extends HttpRequest {
  /** Longest silence in ms between two arriving pieces of the body. */
  idleMs: number;
  /** Gets each piece of a 2xx body (a view, valid during the call only); what it throws ends the stream and is what the stream rejects with. */
  onData(piece: Uint8Array): void;
}

/** A complete response. */
export interface HttpResponse {
  status: number;
  /** Header values by lower-case name (repeated headers joined with `, `). */
  headers: Map<string, string>;
  /** The body (empty for a streamed 2xx body). */
  body: Uint8Array;
}

/** A byte stream both transports provide (a `Deno.TcpConn` is one). */
interface Conn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** A connection with the bytes read from it and not yet used. */
interface Link {
  conn: Conn;
  reader: Reader;
}

/** Most bytes of an answer's status line and header fields. */
const MAX_HEAD_BYTES = 16 * 1024;
const DEFAULT_BODY_BYTES = 256 * 1024;
/** Most bytes of a chunk-size line (with extensions). */
const MAX_CHUNK_LINE = 1024;
/** A TLS connection's received bytes waiting to be read above which the socket pauses. */
const TLS_PAUSE_BYTES = 64 * 1024;
/** ... and at or below which it resumes. */
const TLS_RESUME_BYTES = 16 * 1024;
const invalid = (message: string) => new HttpError("invalid", message);
const cutShort = () => invalid("answer cut short");

/**
 * Sends HTTP/1.1 requests to one origin. Redirects are never followed. Each request settles by its
 * deadline whatever the server does; a cancelled or timed-out request closes its connection.
 * With `keepAlive`, one idle connection is kept for the next request; a request sent on a kept
 * connection that the server had closed meanwhile (no byte back) is sent once more on a new one.
 */
export class HttpClient {
  /** `http://host:port`. */
  readonly origin: string;
  readonly #target: HttpOrigin;
  readonly #options: HttpClientOptions;
  /** The request head's fields every request sends first (`Host`, `User-Agent`). */
  readonly #fixedHead: string;
  readonly #maxBody: number;
  #tls?: Promise<typeof import("node:tls")>;
  #idle?: Link;
  /** The requests in flight. */
  readonly #active = new Set<Exchange>();
  #closed = false;

  constructor(origin: HttpOrigin, options: HttpClientOptions = {}) {
    this.#target = origin;
    this.#options = options;
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_BODY_BYTES;
    const host = hostPort(origin.host, origin.port);
    this.origin = `${origin.scheme}://${host}`;
    this.#fixedHead = `HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: patroniglue\r\n`;
  }

  /** Requests in flight right now. */
  get inFlight(): number {
    return this.#active.size;
  }

  /** Sends `request`; resolves with the whole response, rejects with an {@linkcode HttpError}. */
  request(request: HttpRequest): Promise<HttpResponse> {
    return this.#exchange(request, undefined);
  }

  /**
   * Sends `request` on a connection of its own and hands a 2xx body to `onData` as it arrives;
   * resolves when the body ends (another status: with that body, buffered), rejects on silence
   * longer than `idleMs`, on cancellation and on any failure.
   */
  stream(request: HttpStreamRequest): Promise<HttpResponse> {
    return this.#exchange(request, request);
  }

  /** Cancels every request in flight and closes the kept connection. */
  close(): void {
    this.#closed = true;
    for (const exchange of [...this.#active]) {
      exchange.settle(new HttpError("error", "shutting down"));
    }
    this.#idle?.conn.close();
    this.#idle = undefined;
  }

  #exchange(request: HttpRequest, streaming: HttpStreamRequest | undefined): Promise<HttpResponse> {
    if (this.#closed) return Promise.reject(new HttpError("error", "shutting down"));
    const exchange = new Exchange(request, (ended, ok) => this.#release(ended, ok));
    if (!exchange.begin()) return exchange.promise;
    this.#active.add(exchange);
    this.#run(exchange, streaming).catch((e) => exchange.fail(e));
    return exchange.promise;
  }

  /** Where an exchange ends: its connection kept for the next request, or closed. */
  #release(exchange: Exchange, ok: boolean): void {
    this.#active.delete(exchange);
    const link = exchange.link;
    if (link && exchange.reusable && ok && !this.#idle && !this.#closed) this.#idle = link;
    else link?.conn.close();
  }

  /** Sends the request and reads its answer; a kept connection the server had closed is replaced once. */
  async #run(exchange: Exchange, streaming: HttpStreamRequest | undefined): Promise<void> {
    const bytes = this.#encode(exchange.request, streaming !== undefined);
    for (let attempt = 0;; attempt++) {
      const reused = !streaming && attempt === 0 && this.#idle !== undefined;
      if (reused) {
        exchange.link = this.#idle;
        this.#idle = undefined;
      } else {
        exchange.link = undefined;
        const conn = await this.#connect(exchange.abort.signal);
        if (exchange.settled) return conn.close();
        exchange.link = { conn, reader: new Reader(conn, MAX_HEAD_BYTES) };
      }
      const head = await this.#send(exchange.link!, bytes, reused);
      if (!head) continue;
      if (exchange.settled) return;
      return await this.#receive(exchange, head, streaming);
    }
  }

  /** Writes `bytes` and reads the answer's head; undefined when a kept connection closed unanswered. */
  async #send(link: Link, bytes: Uint8Array, reused: boolean): Promise<Head | undefined> {
    const { conn, reader } = link;
    reader.total = 0;
    try {
      for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
      return await readHead(reader, MAX_HEAD_BYTES);
    } catch (e) {
      if (!reused || reader.total !== 0 || !isClosedEarly(e)) throw e;
      conn.close(); // the server closed the kept connection: send once more on a new one
      return undefined;
    }
  }

  /** Reads the body `head` announces (a 2xx stream's to `onData`), then settles the exchange. */
  async #receive(
    exchange: Exchange,
    head: Head,
    streaming: HttpStreamRequest | undefined,
  ): Promise<void> {
    const reader = exchange.link!.reader;
    let body: Uint8Array = new Uint8Array(0);
    if (streaming && head.status >= 200 && head.status < 300) {
      await exchange.stream(reader, head, streaming);
    } else {
      const sink = new Sink(this.#maxBody);
      await readBody(reader, head, (piece) => sink.add(piece));
      body = sink.bytes();
    }
    exchange.reusable = !streaming && this.#options.keepAlive === true && head.keepAlive &&
      reader.pending === 0;
    exchange.settle({ status: head.status, headers: head.headers, body });
  }

  #encode(request: HttpRequest, streaming: boolean): Uint8Array {
    const body = typeof request.body === "string"
      ? new TextEncoder().encode(request.body)
      : request.body;
    let head = `${request.method ?? "GET"} ${request.target} ${this.#fixedHead}`;
    for (const [name, value] of Object.entries(request.headers ?? {})) {
      if (/[\r\n]/.test(name + value)) {
        throw new HttpError("error", `Cannot send header '${name}': it must not contain CR or LF`);
      }
      head += `${name}: ${value}\r\n`;
    }
    if (streaming || !this.#options.keepAlive) head += "Connection: close\r\n";
    if (body) head += `Content-Length: ${body.length}\r\n`;
    const headBytes = new TextEncoder().encode(head + "\r\n");
    if (!body?.length) return headBytes;
    const out = new Uint8Array(headBytes.length + body.length);
    out.set(headBytes);
    out.set(body, headBytes.length);
    return out;
  }

  async #connect(signal: AbortSignal): Promise<Conn> {
    const { scheme, host, port } = this.#target;
    // No signal: a connect aborted as it completes can leave its connection open (seen under load);
    // a connection that arrives after the request ended is closed by the caller.
    if (scheme === "http") return await Deno.connect({ hostname: host, port });
    const tls = await (this.#tls ??= import("node:tls"));
    const options = this.#options;
    const settings: ConnectionOptions = {
      host,
      port,
      rejectUnauthorized: !options.insecure,
      // Never undefined: the runtime's own lookup of the system's roots fails without --allow-sys.
      ca: options.ca ?? systemRoots(tls),
      cert: options.cert,
      key: options.key,
    };
    // As node's https does: SNI for a name, none for an address.
    if (!/^[\d.]+$|:/.test(host)) settings.servername = host;
    const socket = tls.connect(settings);
    const conn = new TlsConn(socket);
    const onAbort = () => socket.destroy();
    signal.addEventListener("abort", onAbort);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", resolve);
        socket.once("error", reject);
        socket.once("close", () => reject(new HttpError("error", "connection closed")));
      });
    } catch (e) {
      socket.destroy();
      throw e;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    return conn;
  }
}

/** The roots node:tls trusts by default; a clear refusal where reading them is not allowed. */
function systemRoots(tls: typeof import("node:tls")): string[] {
  try {
    return [...tls.rootCertificates];
  } catch (e) {
    throw new HttpError(
      "tls",
      `TLS: no CA to trust: give the CA file, or allow reading the system's roots (--allow-sys): ${
        e instanceof Error ? e.message : e
      }`,
    );
  }
}

/**
 * One request's life: its deadline, its cancellation, the connection it holds, and its end
 * (settled once; what comes after is ignored).
 */
class Exchange {
  readonly request: HttpRequest;
  readonly promise: Promise<HttpResponse>;
  /** Aborted when the exchange settles (a TLS handshake under way ends with it). */
  readonly abort = new AbortController();
  settled = false;
  link?: Link;
  /** Whether `link` may carry the next request once this one has succeeded. */
  reusable = false;
  readonly #resolve: (response: HttpResponse) => void;
  readonly #reject: (error: Error) => void;
  readonly #release: (exchange: Exchange, ok: boolean) => void;
  #timer?: ReturnType<typeof setTimeout>;
  /** What the caller's `onData` threw: the stream's end, passed on as it is. */
  #thrown?: { error: unknown };

  constructor(request: HttpRequest, release: (exchange: Exchange, ok: boolean) => void) {
    const { promise, resolve, reject } = Promise.withResolvers<HttpResponse>();
    this.request = request;
    this.promise = promise;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#release = release;
  }

  /** Starts the deadline and hears cancellation; false when the request was cancelled already. */
  begin(): boolean {
    const { signal, timeoutMs } = this.request;
    if (signal?.aborted) {
      this.#cancelled();
      return false;
    }
    signal?.addEventListener("abort", this.#cancelled);
    this.arm(timeoutMs, () => new HttpError("timeout", `no answer within ${seconds(timeoutMs)}s`));
    return true;
  }

  /** Sets the deadline: settles with `error()` in `ms`, unless settled before. */
  arm(ms: number, error: () => HttpError): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.settle(error()), Math.max(0, ms));
  }

  /** Ends the exchange with `result`, the first time only. */
  settle(result: HttpResponse | Error): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.#timer);
    this.request.signal?.removeEventListener("abort", this.#cancelled);
    this.abort.abort();
    this.#release(this, !(result instanceof Error));
    if (result instanceof Error) this.#reject(result);
    else this.#resolve(result);
  }

  /** Ends the exchange with what failed: what `onData` threw as it is, else an {@linkcode HttpError}. */
  fail(e: unknown): void {
    const thrown = this.#thrown;
    this.settle(
      thrown && thrown.error instanceof Error ? thrown.error : classify(thrown?.error ?? e),
    );
  }

  /** Hands a 2xx body to `onData` as it arrives; each read moves the deadline `idleMs` on. */
  async stream(reader: Reader, head: Head, streaming: HttpStreamRequest): Promise<void> {
    const idle = () => new HttpError("timeout", `no data within ${seconds(streaming.idleMs)}s`);
    this.arm(streaming.idleMs, idle);
    reader.onRead = () => this.arm(streaming.idleMs, idle);
    await readBody(reader, head, (piece) => {
      if (this.settled) return;
      try {
        streaming.onData(piece);
      } catch (e) {
        this.#thrown = { error: e };
        throw e;
      }
    });
  }

  readonly #cancelled = (): void => {
    const reason = this.request.signal?.reason;
    this.settle(reason instanceof HttpError ? reason : new HttpError("error", "cancelled"));
  };
}

function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}

/** A node:tls socket as a pull-based {@linkcode Conn}; pauses the socket while 64 KiB wait ({@linkcode TLS_PAUSE_BYTES}). */
class TlsConn implements Conn {
  readonly #socket: TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error?: unknown;
  #wake?: () => void;

  constructor(socket: TLSSocket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > TLS_PAUSE_BYTES) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (e: unknown) => {
      this.#error ??= e;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0];
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.#queued -= n;
    if (this.#queued <= TLS_RESUME_BYTES && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (e?: Error | null) => e ? reject(e) : resolve(p.length));
    });
  }

  close(): void {
    this.#socket.destroy();
    this.#ended = true;
    this.#notify();
  }
}

/** The bytes read from a connection and not yet consumed: `buf[start, end)`. */
class Reader {
  buf = new Uint8Array(4096);
  start = 0;
  end = 0;
  /** Bytes read for the current request. */
  total = 0;
  /** Called after each read (a stream's idle timer). */
  onRead?: () => void;
  readonly #conn: Conn;
  readonly #limit: number;

  constructor(conn: Conn, limit: number) {
    this.#conn = conn;
    this.#limit = limit;
  }

  get pending(): number {
    return this.end - this.start;
  }

  /** Reads more bytes after those held; false at the end of the stream. */
  async more(): Promise<boolean> {
    this.compact();
    if (this.end === this.buf.length) {
      if (this.buf.length >= this.#limit) throw invalid("malformed answer: head too large");
      this.buf = grow(this.buf, Math.min(this.#limit, this.buf.length * 2));
    }
    const n = await this.#conn.read(this.buf.subarray(this.end));
    if (n === null) return false;
    this.end += n;
    this.total += n;
    this.onRead?.();
    return true;
  }

  /** Moves the bytes held to the start of the buffer. */
  compact(): void {
    if (this.start === 0) return;
    this.buf.copyWithin(0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
  }

  /** The offset of the CR of the next CRLF at or after `start`, reading more as needed (bounded). */
  async line(max: number): Promise<number> {
    for (let scanned = 0;;) {
      const lf = this.buf.subarray(this.start + scanned, this.end).indexOf(LF);
      if (lf !== -1) {
        const at = this.start + scanned + lf;
        if (at === this.start || this.buf[at - 1] !== CR) {
          throw invalid("malformed answer: bare LF");
        }
        return at - 1;
      }
      scanned = this.pending;
      if (scanned > max) throw invalid("malformed answer: line too long");
      if (!await this.more()) throw cutShort();
    }
  }
}

/** A parsed response head. */
interface Head {
  status: number;
  headers: Map<string, string>;
  /** Content-Length, or -1 for chunked or closed-delimited. */
  length: number;
  chunked: boolean;
  /** Whether the connection may carry another request after this response. */
  keepAlive: boolean;
}

function isClosedEarly(e: unknown): boolean {
  return e instanceof HttpError && /no answer \(connection closed\)/.test(e.message) ||
    e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe;
}

/** Reads a response head (skipping 1xx heads), consuming it from `reader`. */
async function readHead(reader: Reader, maxHead: number): Promise<Head> {
  for (;;) {
    reader.compact();
    let end = -1;
    for (let scanned = 0;;) {
      end = findHeadEnd(reader.buf, reader.end, scanned);
      if (end === BARE_LF) throw invalid("malformed answer: bare LF in the head");
      if (end !== -1) break;
      if (reader.pending > maxHead) throw invalid("malformed answer: head too large");
      scanned = reader.end;
      if (!await reader.more()) {
        // Closed before a byte: the server did not answer (as a reset), it did not answer wrongly.
        if (reader.total === 0) throw new HttpError("error", "no answer (connection closed)");
        throw cutShort();
      }
    }
    const lines = new TextDecoder("latin1").decode(reader.buf.subarray(reader.start, end))
      .split("\r\n");
    reader.start = end + 4;
    const statusLine = lines[0].match(/^HTTP\/1\.([01]) (\d{3})(?: |$)/);
    if (!statusLine) throw invalid("malformed answer: no HTTP/1.x status line");
    const status = Number(statusLine[2]);
    if (status >= 100 && status < 200) continue;
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const before = headers.get(name);
      headers.set(name, before === undefined ? value : `${before}, ${value}`);
    }
    const chunked = /chunked/i.test(headers.get("transfer-encoding") ?? "");
    let length = -1;
    const declared = headers.get("content-length");
    if (!chunked && declared !== undefined) {
      if (!/^\d{1,15}$/.test(declared)) throw invalid("malformed answer: bad Content-Length");
      length = Number(declared);
    }
    if (status === 204 || status === 304) length = 0;
    const connection = headers.get("connection")?.toLowerCase() ?? "";
    const keepAlive = statusLine[1] === "1" && !/\bclose\b/.test(connection) &&
      (chunked || length >= 0);
    return { status, headers, length: chunked ? -1 : length, chunked, keepAlive };
  }
}

/** Reads the body `head` announces, handing it piece by piece to `sink`. */
async function readBody(reader: Reader, head: Head, sink: (piece: Uint8Array) => void) {
  const take = async (n: number) => {
    while (n > 0) {
      if (reader.pending === 0 && !await reader.more()) throw cutShort();
      const size = Math.min(n, reader.pending);
      sink(reader.buf.subarray(reader.start, reader.start + size));
      reader.start += size;
      n -= size;
    }
  };
  if (head.chunked) {
    for (;;) {
      const eol = await reader.line(MAX_CHUNK_LINE);
      const sizeText = new TextDecoder().decode(reader.buf.subarray(reader.start, eol))
        .split(";")[0].trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw invalid("malformed answer: bad chunk size");
      reader.start = eol + 2;
      const n = parseInt(sizeText, 16);
      if (n === 0) break;
      await take(n);
      const crlf = await reader.line(2);
      if (crlf !== reader.start) throw invalid("malformed answer: chunk longer than its size");
      reader.start = crlf + 2;
    }
    for (;;) { // trailers, up to the empty line
      const eol = await reader.line(MAX_CHUNK_LINE);
      const empty = eol === reader.start;
      reader.start = eol + 2;
      if (empty) return;
    }
  }
  if (head.length >= 0) return await take(head.length);
  for (;;) { // closed-delimited (HTTP/1.0)
    if (reader.pending > 0) {
      sink(reader.buf.subarray(reader.start, reader.end));
      reader.start = reader.end;
    }
    if (!await reader.more()) return;
  }
}

/** A buffered body, bounded. */
class Sink {
  #buf = new Uint8Array(0);
  #len = 0;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  add(piece: Uint8Array): void {
    if (this.#len + piece.length > this.#max) {
      throw invalid(`answer larger than ${this.#max} bytes`);
    }
    if (this.#len + piece.length > this.#buf.length) {
      this.#buf = grow(
        this.#buf.subarray(0, this.#len),
        Math.min(this.#max, Math.max(this.#len + piece.length, this.#buf.length * 2, 1024)),
      );
    }
    this.#buf.set(piece, this.#len);
    this.#len += piece.length;
  }

  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** A runtime or socket error as the failure it stands for (an HttpError stays as it is). */
function classify(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === "string" ? err.code : "";
  const message = typeof err?.message === "string" ? err.message : String(e);
  if (code === "ECONNREFUSED" || /refused/i.test(message)) {
    return new HttpError("refused", `connection refused: ${message}`);
  }
  if (code === "ETIMEDOUT") return new HttpError("timeout", message);
  if (
    /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) ||
    /certificate|tls|ssl|handshake/i.test(message)
  ) {
    return new HttpError("tls", `TLS: ${message}`);
  }
  if (code.startsWith("HPE_") || /parse/i.test(message)) {
    return new HttpError("invalid", `malformed answer: ${message}`);
  }
  return new HttpError("error", message);
}
