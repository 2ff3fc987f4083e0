// HTTP/1.1 server for health checks over any connection (TCP or TLS): strict heads, no bodies, deadlines from accept.
import { type Connection, Connections, type ListenerOptions } from "./connections.ts";
import {
  type Handler,
  type HealthRequest,
  type HealthResponse,
  jsonResponse,
} from "../check/health.ts";
import { BARE_LF, findHeadEnd, grow, hostPort, originForm } from "./wire.ts";

/** Options of {@linkcode serveHttp1}. */
export interface Http1Options extends ListenerOptions {
  /**
   * Time a client has to send a whole request head: the first one from accept (a TLS handshake
   * included), later ones on a kept-alive connection from their first byte. @default {10_000}
   */
  headTimeoutMs?: number;
  /** Time a kept-alive connection may wait for the first byte of its next request. @default {60_000} */
  idleTimeoutMs?: number;
  /** Largest request head (request line and headers). @default {16_384} */
  maxHeadBytes?: number;
}

/** A listening {@linkcode serveHttp1} server. */
export interface Http1Server {
  readonly addr: Deno.NetAddr;
  /** Client connections open now. */
  readonly connections: number;
  /** Stops accepting, closes idle and half-sent connections, lets responses in progress finish. */
  shutdown(): Promise<void>;
}

const MAX_HEADERS = 100;
const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Why a request head was refused. */
export class HeadError {
  constructor(readonly status: number, readonly message: string) {}
}

const MALFORMED_REQUEST_LINE = new HeadError(400, "malformed request line");
const MALFORMED_HEADER = new HeadError(400, "malformed header field");
const MALFORMED_LENGTH = new HeadError(400, "malformed Content-Length");
const BAD_VERSION = new HeadError(400, "unsupported HTTP version: HTTP/1.0 and HTTP/1.1 only");

/** Reused for every response on a connection (one write at a time). */
interface Output {
  buf: Uint8Array;
}

/** A connection's output buffer until its first response that is not a shared one. */
const NO_OUTPUT = new Uint8Array(0);
/** The smallest output buffer, once one is needed. */
const MIN_OUTPUT_BYTES = 512;
/** A connection's first read buffer: a health check's head is a few hundred bytes at most; the
 * buffer grows (up to `maxHeadBytes`) for longer ones. */
const FIRST_READ_BYTES = 512;

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Serves `handle` over HTTP/1.0 and 1.1 on the connections of `options.listener`. */
export function serveHttp1(options: Http1Options, handle: Handler): Http1Server {
  const headTimeout = options.headTimeoutMs ?? 10_000;
  const idleTimeout = options.idleTimeoutMs ?? 60_000;
  const writeTimeout = options.writeTimeoutMs ?? 10_000;
  const maxHead = options.maxHeadBytes ?? 16_384;
  let date = new Date().toUTCString();

  const encode = (
    output: Output,
    res: HealthResponse,
    method: string,
    keepAlive: boolean,
    http10: boolean,
  ) => {
    const head = method === "HEAD";
    if (!res.reused) return encodeResponse(res, head, keepAlive, http10, date, output);
    // A shared response (a cache hit) is encoded once per second and framing, then only written.
    const flags = (head ? 1 : 0) | (keepAlive ? 2 : 0) | (http10 ? 4 : 0);
    let memo = ENCODED.get(res);
    if (memo?.date !== date) ENCODED.set(res, memo = { date, byFlags: [] });
    return memo.byFlags[flags] ??= encodeResponse(res, head, keepAlive, http10, date);
  };

  const serveConnection = async (c: Connection, conns: Connections) => {
    const output: Output = { buf: NO_OUTPUT }; // a hit is written from its memo: none allocated
    const refuse = async (status: number, message: string) => {
      const res = jsonResponse(status, { error: message });
      await conns.write(c, encode(output, res, "GET", false, false), writeTimeout);
      await conns.linger(c);
    };
    let buf = new Uint8Array(FIRST_READ_BYTES);
    let len = 0;
    let scanned = 0;
    // The first head is due `headTimeout` after accept (set then); later ones follow the idle wait.
    for (let first = true;; first = false) {
      // Read until a whole head is buffered (or refuse the request).
      let end = -1;
      if (!first) c.deadline = conns.clock + (len === 0 ? idleTimeout : headTimeout);
      for (;;) {
        while (len >= 2 && buf[0] === 13 && buf[1] === 10) { // empty lines before a request
          buf.copyWithin(0, 2, len);
          len -= 2;
          scanned = 0;
        }
        end = findHeadEnd(buf, len, scanned);
        if (end >= 0) break;
        if (end === BARE_LF) return await refuse(400, "bare LF in request head");
        if (!methodPrefixOk(buf, len)) return await refuse(400, "malformed request line");
        if (len >= maxHead) return await refuse(431, "request head too large");
        if (conns.stopping && len === 0) return;
        scanned = Math.max(0, len - 3);
        if (len === buf.length) buf = grow(buf, Math.min(buf.length * 2, maxHead));
        const idle = len === 0 && !first;
        const n = await c.conn.read(len === 0 ? buf : buf.subarray(len));
        if (n === null) return;
        if (idle) c.deadline = conns.clock + headTimeout;
        len += n;
      }
      const req = parseHead(buf, end, c.conn.remoteAddr);
      buf.copyWithin(0, end + 4, len);
      len -= end + 4;
      scanned = 0;
      if (req instanceof HeadError) return await refuse(req.status, req.message);
      c.busy = true;
      c.deadline = Infinity;
      let res: HealthResponse;
      try {
        const result = handle(req);
        res = result instanceof Promise ? await result : result;
      } catch (e) {
        options.onHandlerError?.(e as Error);
        res = jsonResponse(500, { error: "internal error" });
      }
      // A body is never read, so the connection cannot carry another request after it.
      const keepAlive = req.keepAlive && !req.hasBody && !conns.stopping;
      const out = encode(output, res, req.method, keepAlive, req.http10);
      const sent = await conns.writeFirst(c, out, writeTimeout); // all of it, but for a slow reader
      if (sent < out.length) await conns.writeRest(c, out, sent);
      c.busy = false;
      if (!keepAlive) return await conns.linger(c);
    }
  };

  const conns = new Connections({
    listener: options.listener,
    acceptDeadlineMs: headTimeout,
    tickMs: Math.min(1000, headTimeout, idleTimeout, writeTimeout),
    onTick: () => date = new Date().toUTCString(),
    onAcceptError: options.onAcceptError,
    serve: serveConnection,
  });
  return {
    addr: conns.addr,
    get connections() {
      return conns.size;
    },
    shutdown: () => conns.shutdown(),
  };
}

/** Token characters (RFC 9110), by byte. */
const TCHAR = new Uint8Array(128);
for (const ch of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[ch.charCodeAt(0)] = 1;
}

/** Longest method accepted (the standard ones have at most 7 letters). */
const MAX_METHOD_BYTES = 32;

/**
 * Whether the bytes so far could start a request line: TLS or binary junk is refused at once, and
 * so is a method longer than {@linkcode MAX_METHOD_BYTES} (each call looks at that many bytes at most).
 */
function methodPrefixOk(buf: Uint8Array, len: number): boolean {
  const end = Math.min(len, MAX_METHOD_BYTES + 1);
  for (let i = 0; i < end; i++) {
    const b = buf[i];
    if (b === 32) return i > 0;
    if (b >= 128 || TCHAR[b] === 0) return false;
  }
  return len <= MAX_METHOD_BYTES;
}

/** Lower-cased names of the header fields that matter here, as bytes. */
const CONTENT_LENGTH = bytesOf("content-length");
const TRANSFER_ENCODING = bytesOf("transfer-encoding");
const CONNECTION = bytesOf("connection");
const HTTP_1 = bytesOf("HTTP/1.");
/** Methods whose strings are interned rather than decoded per request. */
const KNOWN_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE"]
  .map((m) => ({ text: m, bytes: encoder.encode(m) }));

function bytesOf(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Whether `buf[from, from + word.length)` equals `word`, ASCII letters compared case-insensitively. */
function sameBytes(buf: Uint8Array, from: number, word: Uint8Array, foldCase: boolean): boolean {
  for (let i = 0; i < word.length; i++) {
    const b = buf[from + i];
    if ((foldCase && b >= 65 && b <= 90 ? b | 32 : b) !== word[i]) return false;
  }
  return true;
}

/** Request targets seen lately, by a hash of their bytes: a repeated check reuses its string. */
const TARGETS = new Map<number, { bytes: Uint8Array; text: string }>();
const MAX_TARGETS = 1024;

/**
 * Parses `buf[0, end)`, a request head without its final CRLFCRLF, byte by byte. Strict, since a
 * lenient parser is how request smuggling starts; only the fields that matter become strings.
 */
export function parseHead(
  buf: Uint8Array,
  end: number,
  remoteAddr: Deno.NetAddr,
): WireRequest | HeadError {
  let lineEnd = buf.indexOf(13);
  if (lineEnd === -1 || lineEnd > end) lineEnd = end;
  const sp1 = buf.indexOf(32);
  const sp2 = sp1 === -1 ? -1 : buf.indexOf(32, sp1 + 1);
  const sp3 = sp2 === -1 ? -1 : buf.indexOf(32, sp2 + 1);
  if (
    sp1 <= 0 || sp1 > MAX_METHOD_BYTES || sp2 === -1 || sp2 >= lineEnd || sp2 === sp1 + 1 ||
    (sp3 !== -1 && sp3 < lineEnd)
  ) {
    return MALFORMED_REQUEST_LINE;
  }
  for (let i = 0; i < sp1; i++) {
    if (buf[i] >= 128 || TCHAR[buf[i]] === 0) return MALFORMED_REQUEST_LINE;
  }
  for (let i = sp1 + 1; i < sp2; i++) {
    if (buf[i] < 0x21 || buf[i] > 0x7e) return MALFORMED_REQUEST_LINE;
  }
  if (lineEnd - sp2 - 1 !== 8 || !sameBytes(buf, sp2 + 1, HTTP_1, false)) {
    const version = latin1.decode(buf.subarray(sp2 + 1, lineEnd));
    return /^HTTP\/\d\.\d$/.test(version) ? BAD_VERSION : MALFORMED_REQUEST_LINE;
  }
  const minor = buf[lineEnd - 1];
  if (minor !== 48 && minor !== 49) return BAD_VERSION;
  const http10 = minor === 48;
  let contentLength = -1;
  let chunked = false;
  let close = false;
  let keepAliveAsked = false;
  let fields = 0;
  for (let start = lineEnd + 2; start < end;) {
    let stop = buf.indexOf(13, start);
    if (stop === -1 || stop > end) stop = end;
    if (buf[stop + 1] !== 10 && stop < end) return MALFORMED_HEADER;
    if (++fields > MAX_HEADERS) {
      return new HeadError(431, `more than ${MAX_HEADERS} header fields`);
    }
    let colon = start;
    while (colon < stop && buf[colon] !== 58) {
      if (buf[colon] >= 128 || TCHAR[buf[colon]] === 0) return MALFORMED_HEADER;
      colon++;
    }
    if (colon === start || colon === stop) return MALFORMED_HEADER;
    let from = colon + 1, to = stop;
    for (let i = from; i < to; i++) {
      const b = buf[i];
      if ((b < 32 && b !== 9) || b === 127) return MALFORMED_HEADER;
    }
    while (from < to && (buf[from] === 32 || buf[from] === 9)) from++;
    while (to > from && (buf[to - 1] === 32 || buf[to - 1] === 9)) to--;
    const nameLength = colon - start;
    if (nameLength === CONTENT_LENGTH.length && sameBytes(buf, start, CONTENT_LENGTH, true)) {
      let n = 0;
      for (let i = from; i < to; i++) {
        if (buf[i] < 48 || buf[i] > 57 || i - from >= 15) return MALFORMED_LENGTH;
        n = n * 10 + buf[i] - 48;
      }
      if (from === to || (contentLength !== -1 && contentLength !== n)) {
        return MALFORMED_LENGTH;
      }
      contentLength = n;
    } else if (
      nameLength === TRANSFER_ENCODING.length && sameBytes(buf, start, TRANSFER_ENCODING, true)
    ) {
      chunked = true;
    } else if (nameLength === CONNECTION.length && sameBytes(buf, start, CONNECTION, true)) {
      for (const token of latin1.decode(buf.subarray(from, to)).toLowerCase().split(",")) {
        const t = token.trim();
        if (t === "close") close = true;
        else if (t === "keep-alive") keepAliveAsked = true;
      }
    }
    start = stop + 2;
  }
  return new WireRequest(
    methodOf(buf, sp1),
    originForm(targetOf(buf, sp1 + 1, sp2)),
    chunked || contentLength > 0,
    remoteAddr,
    !close && (!http10 || keepAliveAsked),
    http10,
  );
}

function methodOf(buf: Uint8Array, length: number): string {
  for (const m of KNOWN_METHODS) {
    if (m.bytes.length === length && sameBytes(buf, 0, m.bytes, false)) return m.text;
  }
  return latin1.decode(buf.subarray(0, length));
}

function targetOf(buf: Uint8Array, from: number, to: number): string {
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = from; i < to; i++) hash = Math.imul(hash ^ buf[i], 0x01000193);
  const known = TARGETS.get(hash);
  if (known && known.bytes.length === to - from && sameBytes(buf, from, known.bytes, false)) {
    return known.text;
  }
  const bytes = buf.slice(from, to);
  const text = latin1.decode(bytes);
  if (TARGETS.size >= MAX_TARGETS) TARGETS.clear();
  TARGETS.set(hash, { bytes, text });
  return text;
}

/** A request off the wire; the client address is formatted only when read (logging). */
export class WireRequest implements HealthRequest {
  constructor(
    readonly method: string,
    readonly target: string,
    readonly hasBody: boolean,
    readonly remoteAddr: Deno.NetAddr,
    /** Whether the connection may carry another request after this one. */
    readonly keepAlive: boolean,
    readonly http10: boolean,
  ) {}

  get remote(): string {
    return hostPort(this.remoteAddr.hostname, this.remoteAddr.port);
  }
}

/** Encoded shared responses, by framing flags, for the current Date header. */
const ENCODED = new WeakMap<HealthResponse, { date: string; byFlags: Uint8Array[] }>();

/** Largest response written through a connection's reusable output buffer; bigger ones get their own. */
const MAX_REUSED_OUTPUT = 16_384;

/** Status line, headers, Content-Length and the body (none for HEAD, which keeps the GET's length). */
function encodeResponse(
  res: HealthResponse,
  head: boolean,
  keepAlive: boolean,
  http10: boolean,
  date: string,
  output?: { buf: Uint8Array },
): Uint8Array {
  const body = encoder.encode(res.body);
  let text = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Unknown"}\r\ndate: ${date}\r\n`;
  for (const name in res.headers) text += `${name}: ${res.headers[name]}\r\n`;
  text += `content-length: ${body.length}\r\n`;
  if (!keepAlive) text += "connection: close\r\n";
  else if (http10) text += "connection: keep-alive\r\n";
  text += "\r\n";
  const size = text.length + (head ? 0 : body.length);
  // A fresh buffer per response costs more than the copy into a reused one (measured: ~12 %).
  if (output && size > output.buf.length && size <= MAX_REUSED_OUTPUT) {
    output.buf = new Uint8Array(Math.max(size, output.buf.length * 2, MIN_OUTPUT_BYTES));
  }
  const out = output && size <= output.buf.length
    ? output.buf.subarray(0, size)
    : new Uint8Array(size);
  encoder.encodeInto(text, out);
  if (!head) out.set(body, text.length);
  return out;
}
