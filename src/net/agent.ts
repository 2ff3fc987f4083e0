/**
 * Agent: the HAProxy agent-check server — one line in, one reply line out, then close; HTTP's
 * deadlines.
 * @module
 */
import { type Connection, Connections, type Server, type ServerOptions } from "./connections.ts";
import type { AgentHandler, AgentRequest } from "../check/health.ts";
import { CR, hostPort, LF } from "./wire.ts";

/** Options of {@linkcode serveAgent}. */
export interface AgentOptions extends ServerOptions {
  /** Time from accept for a first byte (without one: the default check), and the silence that ends a line sent without its newline. @default {100} */
  lineWaitMs?: number;
  /** Longest line, its line ending included. @default {1024} */
  maxLineBytes?: number;
}

/** What a read raced against the deadline gives when the deadline came first. */
const DEADLINE = -1;
/** What {@linkcode scanLine} gives for a byte that no request target has. */
const MALFORMED = -2;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/**
 * Where the line in `buf[0, len)` ends, scanning from `from`: the offset of its LF, -1 when it has
 * not ended yet, or {@linkcode MALFORMED} for a byte that no request target has (a lone CR included).
 */
function scanLine(buf: Uint8Array, from: number, len: number): number {
  for (let i = from; i < len; i++) {
    const b = buf[i];
    if (b === LF) return i;
    if (b === CR ? i + 1 < len && buf[i + 1] !== LF : b < 0x21 || b > 0x7e) return MALFORMED;
  }
  return -1;
}

/** The line in `buf[0, end)`, without a CR before its end. */
function lineOf(buf: Uint8Array, end: number): string {
  return latin1.decode(buf.subarray(0, end > 0 && buf[end - 1] === CR ? end - 1 : end));
}

/**
 * Serves `handle` to HAProxy's agent checks on the connections of `options.transport`: reads at
 * most one line (LF or CRLF), asks `handle` and writes its reply and a newline, then closes. No
 * byte within `lineWaitMs`, an empty line, or the end of the input before any byte: the default
 * check (`line` undefined or empty). A line without its newline is taken as sent once the client
 * has been silent for `lineWaitMs` or has ended its output. Refused without asking the handler's
 * cache (the handler still replies, `down #...`): a line longer than `maxLineBytes`, a byte that no
 * request target has, a line still arriving at the head deadline. Bytes after the line are ignored.
 */
export function serveAgent(options: AgentOptions, handle: AgentHandler): Server {
  const agent = new AgentProtocol(options, handle);
  return new Connections({
    ...options,
    shortestWaitMs: Math.max(10, agent.lineWaitMs / 4),
    serve: (c, conns) => agent.serve(c, conns),
  });
}

/** The request {@linkcode AgentProtocol.readLine} makes of a connection's input, and a read it left pending. */
interface LineRead {
  req: AgentRequest;
  pending?: Promise<number | null>;
}

/** What {@linkcode serveAgent} does with each connection. */
class AgentProtocol {
  readonly lineWaitMs: number;
  readonly #maxLine: number;
  readonly #handle: AgentHandler;
  readonly #onHandlerError?: (error: Error) => void;

  constructor(options: AgentOptions, handle: AgentHandler) {
    this.lineWaitMs = options.lineWaitMs ?? 100;
    this.#maxLine = options.maxLineBytes ?? 1024;
    this.#handle = handle;
    this.#onHandlerError = options.onHandlerError;
  }

  /** Reads the line of `c`, writes the handler's reply, and lets the connection go. */
  async serve(c: Connection, conns: Connections): Promise<void> {
    const remote = hostPort(c.conn.remoteAddr.hostname, c.conn.remoteAddr.port);
    const { req, pending } = await this.readLine(c, remote);
    c.onDeadline = undefined;
    c.busy = true;
    c.deadline = Infinity;
    let reply: string;
    try {
      const result = this.#handle(req);
      reply = result instanceof Promise ? await result : result;
    } catch (e) {
      this.#onHandlerError?.(e as Error);
      reply = "down #internal error";
    }
    await conns.write(c, encoder.encode(`${reply}\n`));
    c.busy = false;
    await conns.linger(c, pending);
  }

  /** Reads the line, or decides that there is none, or why it is refused. */
  async readLine(c: Connection, remote: string): Promise<LineRead> {
    const headDue = c.deadline; // set at accept
    const deadline = Promise.withResolvers<typeof DEADLINE>();
    c.onDeadline = () => deadline.resolve(DEADLINE);
    c.deadline = Math.min(headDue, performance.now() + this.lineWaitMs);
    const buf = new Uint8Array(this.#maxLine);
    let len = 0;
    for (;;) {
      const pending = c.conn.read(buf.subarray(len));
      const n = await Promise.race([pending, deadline.promise]);
      if (n === DEADLINE || n === null) {
        // Nothing sent within the line wait, or EOF first: the default check. A line begun and then
        // silent for the line wait, or ended by EOF, is taken as sent (HAProxy's `agent-send` without
        // its `\n`: waiting for more would let HAProxy time out and keep the server as it was). One
        // still dripping at the head deadline is refused.
        const pendingRead = n === DEADLINE ? pending : undefined;
        if (len === 0) return { req: { remote }, pending: pendingRead };
        const req: AgentRequest = n === null || performance.now() < headDue
          ? { line: lineOf(buf, len), remote }
          : { refused: "incomplete line", remote };
        return { req, pending: pendingRead };
      }
      const from = len;
      len += n;
      const end = scanLine(buf, from, len);
      if (end === MALFORMED) return { req: { refused: "malformed line", remote } };
      if (end >= 0) return { req: { line: lineOf(buf, end), remote } };
      if (len === this.#maxLine) return { req: { refused: "line too long", remote } };
      c.deadline = Math.min(headDue, performance.now() + this.lineWaitMs); // silence ends the line
    }
  }
}
