/**
 * HTTP/1: the HTTP/1.0 and 1.1 server for health checks over any transport (TCP or TLS): strict
 * heads, no bodies, deadlines from accept.
 * @module
 */
import { type Connection, Connections, type Server, type ServerOptions } from "./connections.ts";
import {
  type Handler,
  type HealthRequest,
  type HealthResponse,
  jsonResponse,
} from "../check/health.ts";
import { BARE_LF, CR, findHeadEnd, grow, hostPort, LF, originForm } from "./wire.ts";

/** Options of {@linkcode serveHttp1}. */
export interface Http1Options extends ServerOptions {
  /** Time a kept-alive connection may wait for the first byte of its next request. @default {60_000} */
  idleTimeoutMs?: number;
  /** Largest request head (request line and headers). @default {16_384} */
  maxHeadBytes?: number;
}

const MAX_HEADERS = 100;
/** The reason phrase of each status a response here can have. */
const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Why a request head is refused: the response's status and its error text. */
export interface Refusal {
  readonly status: number;
  readonly message: string;
}

const MALFORMED_REQUEST_LINE: Refusal = { status: 400, message: "malformed request line" };
const MALFORMED_HEADER: Refusal = { status: 400, message: "malformed header field" };
const MALFORMED_LENGTH: Refusal = { status: 400, message: "malformed Content-Length" };
const BAD_VERSION: Refusal = {
  status: 400,
  message: "unsupported HTTP version: HTTP/1.0 and HTTP/1.1 only",
};
const BARE_LF_IN_HEAD: Refusal = { status: 400, message: "bare LF in request head" };
const HEAD_TOO_LARGE: Refusal = { status: 431, message: "request head too large" };
const TOO_MANY_FIELDS: Refusal = { status: 431, message: `more than ${MAX_HEADERS} header fields` };

/** Bytes of the request syntax, besides {@linkcode CR} and {@linkcode LF}. */
const SP = 0x20, HTAB = 0x09, COLON = 0x3a, DEL = 0x7f, DIGIT_0 = 0x30, DIGIT_1 = 0x31;
const DIGIT_9 = 0x39, UPPER_A = 0x41, UPPER_Z = 0x5a;

/** One connection's buffers, kept from one request to the next. */
interface Session {
  readonly c: Connection;
  /** Input: `buf[0, len)` read, looked through for the head's end up to `scanned`. */
  buf: Uint8Array;
  len: number;
  scanned: number;
  /** Reused for every response that is not a shared one (one write at a time). */
  out: Uint8Array;
}

/** A connection's output buffer until its first response that is not a shared one. */
const NO_OUTPUT = new Uint8Array(0);
/** The smallest output buffer, once one is needed. */
const MIN_OUTPUT_BYTES = 512;
/** A connection's first read buffer: a health check's head is a few hundred bytes at most; the
 * buffer grows (up to `maxHeadBytes`) for longer ones. */
const FIRST_READ_BYTES = 512;
/** What {@linkcode Http1Protocol.scanHead} gives while the head is not all in. */
const READ_MORE = -1;
/** What {@linkcode Http1Protocol.scanHead} gives when the server stops between two requests. */
const END = -3;

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Serves `handle` over HTTP/1.0 and 1.1 on the connections of `options.transport`. */
export function serveHttp1(options: Http1Options, handle: Handler): Server {
  const http1 = new Http1Protocol(options, handle);
  return new Connections({
    ...options,
    shortestWaitMs: http1.idleTimeoutMs,
    onTick: () => http1.tick(),
    serve: (c, conns) => http1.serve(c, conns),
  });
}

/** What {@linkcode serveHttp1} does with each connection, and the Date header its responses share. */
class Http1Protocol {
  readonly idleTimeoutMs: number;
  readonly #maxHead: number;
  readonly #handle: Handler;
  readonly #onHandlerError?: (error: Error) => void;
  #date = new Date().toUTCString();

  constructor(options: Http1Options, handle: Handler) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.#maxHead = options.maxHeadBytes ?? 16_384;
    this.#handle = handle;
    this.#onHandlerError = options.onHandlerError;
  }

  /** The clock moved: the Date header of the responses to come. */
  tick(): void {
    this.#date = new Date().toUTCString();
  }

  /** Answers the requests of `c` in turn, until one is refused or is its last. */
  async serve(c: Connection, conns: Connections): Promise<void> {
    const s: Session = {
      c,
      buf: new Uint8Array(FIRST_READ_BYTES),
      len: 0,
      scanned: 0,
      out: NO_OUTPUT,
    };
    // The first head is due `headTimeoutMs` after accept (set then); later ones follow the idle wait.
    for (let first = true;; first = false) {
      if (!first) {
        c.deadline = conns.clock + (s.len === 0 ? this.idleTimeoutMs : conns.headTimeoutMs);
      }
      let end: number | Refusal;
      while ((end = this.scanHead(s, conns.stopping)) === READ_MORE) {
        const idle = s.len === 0 && !first;
        const n = await c.conn.read(s.len === 0 ? s.buf : s.buf.subarray(s.len));
        if (n === null) return;
        if (idle) c.deadline = conns.clock + conns.headTimeoutMs;
        s.len += n;
      }
      if (end === END) return;
      if (typeof end !== "number") return await this.#refuse(s, conns, end);
      const req = parseHead(s.buf, end, c.conn.remoteAddr);
      s.buf.copyWithin(0, end + 4, s.len);
      s.len -= end + 4;
      s.scanned = 0;
      if (!(req instanceof WireRequest)) return await this.#refuse(s, conns, req);
      c.busy = true;
      c.deadline = Infinity;
      let res: HealthResponse;
      try {
        const result = this.#handle(req);
        res = result instanceof Promise ? await result : result;
      } catch (e) {
        this.#onHandlerError?.(e as Error);
        res = jsonResponse(500, { error: "internal error" });
      }
      if (conns.stopping) req.keepAlive = false;
      const out = this.#encode(s, res, req);
      const sent = await conns.writeFirst(c, out); // all, but for a slow reader
      if (sent < out.length) await conns.writeRest(c, out, sent);
      c.busy = false;
      if (!req.keepAlive) return await conns.linger(c);
    }
  }

  /**
   * Where the head buffered in `s` ends, {@linkcode READ_MORE}, {@linkcode END}, or why it is
   * refused. Drops the empty lines before a request; grows the buffer once it is full.
   */
  scanHead(s: Session, stopping: boolean): number | Refusal {
    while (s.len >= 2 && s.buf[0] === CR && s.buf[1] === LF) {
      s.buf.copyWithin(0, 2, s.len);
      s.len -= 2;
      s.scanned = 0;
    }
    const end = findHeadEnd(s.buf, s.len, s.scanned);
    if (end >= 0) return end;
    if (end === BARE_LF) return BARE_LF_IN_HEAD;
    if (!methodPrefixOk(s.buf, s.len)) return MALFORMED_REQUEST_LINE;
    if (s.len >= this.#maxHead) return HEAD_TOO_LARGE;
    if (stopping && s.len === 0) return END;
    s.scanned = Math.max(0, s.len - 3);
    if (s.len === s.buf.length) s.buf = grow(s.buf, Math.min(s.buf.length * 2, this.#maxHead));
    return READ_MORE;
  }

  /** Answers `refusal`, then closes. */
  async #refuse(s: Session, conns: Connections, refusal: Refusal): Promise<void> {
    const res = jsonResponse(refusal.status, { error: refusal.message });
    await conns.write(s.c, this.#encode(s, res, REFUSED));
    await conns.linger(s.c);
  }

  /** `res` on the wire, framed for `req`: a shared response from its memo, any other in `s.out`. */
  #encode(s: Session, res: HealthResponse, req: Framing): Uint8Array {
    const date = this.#date;
    if (!res.reused) return encodeResponse(res, req, date, s);
    // A shared response (a cache hit) is encoded once per second and framing, then only written.
    const framing = (req.method === "HEAD" ? 1 : 0) | (req.keepAlive ? 2 : 0) |
      (req.http10 ? 4 : 0);
    let memo = ENCODED.get(res);
    if (memo?.date !== date) ENCODED.set(res, memo = { date, byFraming: [] });
    return memo.byFraming[framing] ??= encodeResponse(res, req, date);
  }
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
    if (b === SP) return i > 0;
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
    if ((foldCase && b >= UPPER_A && b <= UPPER_Z ? b | 0x20 : b) !== word[i]) return false;
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
): WireRequest | Refusal {
  const req = new WireRequest(remoteAddr);
  const lineEnd = parseRequestLine(buf, end, req);
  if (typeof lineEnd !== "number") return lineEnd;
  return parseFields(buf, lineEnd + 2, end, req) ?? req;
}

/** Reads the request line of `buf[0, end)` into `req`: where it ends, or why it is refused. */
function parseRequestLine(buf: Uint8Array, end: number, req: WireRequest): number | Refusal {
  let lineEnd = buf.indexOf(CR);
  if (lineEnd === -1 || lineEnd > end) lineEnd = end;
  const sp1 = buf.indexOf(SP);
  const sp2 = sp1 === -1 ? -1 : buf.indexOf(SP, sp1 + 1);
  const sp3 = sp2 === -1 ? -1 : buf.indexOf(SP, sp2 + 1);
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
  if (minor !== DIGIT_0 && minor !== DIGIT_1) return BAD_VERSION;
  req.http10 = minor === DIGIT_0;
  req.method = methodOf(buf, sp1);
  req.target = originForm(targetOf(buf, sp1 + 1, sp2));
  return lineEnd;
}

/** `Connection` tokens, as bits. */
const CLOSE = 1, KEEP_ALIVE = 2;

/** Reads the header fields in `buf[from, end)` into `req` (a body, keep-alive); why they are refused, if they are. */
function parseFields(
  buf: Uint8Array,
  from: number,
  end: number,
  req: WireRequest,
): Refusal | undefined {
  let contentLength = -1;
  let chunked = false;
  let connection = 0;
  for (let start = from, fields = 1; start < end; fields++) {
    let stop = buf.indexOf(CR, start);
    if (stop === -1 || stop > end) stop = end;
    if (buf[stop + 1] !== LF && stop < end) return MALFORMED_HEADER;
    if (fields > MAX_HEADERS) return TOO_MANY_FIELDS;
    const colon = nameEnd(buf, start, stop);
    if (colon === -1 || !valueOk(buf, colon + 1, stop)) return MALFORMED_HEADER;
    let value = colon + 1, valueEnd = stop;
    while (value < valueEnd && (buf[value] === SP || buf[value] === HTAB)) value++;
    while (valueEnd > value && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--;
    const nameLength = colon - start;
    if (nameLength === CONTENT_LENGTH.length && sameBytes(buf, start, CONTENT_LENGTH, true)) {
      const n = lengthOf(buf, value, valueEnd);
      if (n === -1 || (contentLength !== -1 && contentLength !== n)) return MALFORMED_LENGTH;
      contentLength = n;
    } else if (
      nameLength === TRANSFER_ENCODING.length && sameBytes(buf, start, TRANSFER_ENCODING, true)
    ) {
      chunked = true;
    } else if (nameLength === CONNECTION.length && sameBytes(buf, start, CONNECTION, true)) {
      connection |= connectionTokens(buf, value, valueEnd);
    }
    start = stop + 2;
  }
  req.hasBody = chunked || contentLength > 0;
  // A body is never read, so the connection cannot carry another request after it.
  req.keepAlive = !req.hasBody && (connection & CLOSE) === 0 &&
    (!req.http10 || (connection & KEEP_ALIVE) !== 0);
  return undefined;
}

/** The colon after the field name that starts at `start`, or -1 when there is no name of tokens before one. */
function nameEnd(buf: Uint8Array, start: number, stop: number): number {
  let colon = start;
  while (colon < stop && buf[colon] !== COLON) {
    if (buf[colon] >= 128 || TCHAR[buf[colon]] === 0) return -1;
    colon++;
  }
  return colon === start || colon === stop ? -1 : colon;
}

/** Whether `buf[from, to)` has no control character but tabs. */
function valueOk(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const b = buf[i];
    if ((b < SP && b !== HTAB) || b === DEL) return false;
  }
  return true;
}

/** The decimal number in `buf[from, to)`, or -1 when it is empty, longer than 15 digits, or not digits. */
function lengthOf(buf: Uint8Array, from: number, to: number): number {
  if (from === to || to - from > 15) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    if (buf[i] < DIGIT_0 || buf[i] > DIGIT_9) return -1;
    n = n * 10 + buf[i] - DIGIT_0;
  }
  return n;
}

/** The `close` and `keep-alive` tokens of a `Connection` value, as {@linkcode CLOSE} and {@linkcode KEEP_ALIVE}. */
function connectionTokens(buf: Uint8Array, from: number, to: number): number {
  let tokens = 0;
  for (const token of latin1.decode(buf.subarray(from, to)).toLowerCase().split(",")) {
    const t = token.trim();
    if (t === "close") tokens |= CLOSE;
    else if (t === "keep-alive") tokens |= KEEP_ALIVE;
  }
  return tokens;
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
  method = "GET";
  target = "/";
  hasBody = false;
  /** Whether the connection may carry another request after this one. */
  keepAlive = false;
  http10 = false;

  constructor(readonly remoteAddr: Deno.NetAddr) {}

  get remote(): string {
    return hostPort(this.remoteAddr.hostname, this.remoteAddr.port);
  }
}

/** What of a request frames its response: HEAD or not, the connection kept or closed, HTTP/1.0. */
type Framing = Pick<WireRequest, "method" | "keepAlive" | "http10">;

/** The framing of a refusal: a GET's response, then the connection closes. */
const REFUSED: Framing = new WireRequest({ transport: "tcp", hostname: "", port: 0 });

/** Encoded shared responses, by framing bits, for the current Date header. */
const ENCODED = new WeakMap<HealthResponse, { date: string; byFraming: Uint8Array[] }>();

/** Largest response written through a connection's reusable output buffer; bigger ones get their own. */
const MAX_REUSED_OUTPUT = 16_384;

/** Status line, headers, Content-Length and the body (none for HEAD, which keeps the GET's length). */
function encodeResponse(
  res: HealthResponse,
  req: Framing,
  date: string,
  output?: { out: Uint8Array },
): Uint8Array {
  const head = req.method === "HEAD";
  const body = encoder.encode(res.body);
  let text = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Unknown"}\r\ndate: ${date}\r\n`;
  for (const name in res.headers) text += `${name}: ${res.headers[name]}\r\n`;
  text += `content-length: ${body.length}\r\n`;
  if (!req.keepAlive) text += "connection: close\r\n";
  else if (req.http10) text += "connection: keep-alive\r\n";
  text += "\r\n";
  const size = text.length + (head ? 0 : body.length);
  // A fresh buffer per response costs more than the copy into a reused one (measured: ~12 %).
  if (output && size > output.out.length && size <= MAX_REUSED_OUTPUT) {
    output.out = new Uint8Array(Math.max(size, output.out.length * 2, MIN_OUTPUT_BYTES));
  }
  const out = output && size <= output.out.length
    ? output.out.subarray(0, size)
    : new Uint8Array(size);
  encoder.encodeInto(text, out);
  if (!head) out.set(body, text.length);
  return out;
}
