// Backend: the client to Patroni's REST API; every failure becomes a typed outcome, never an exception.
import type { ClientRequest } from "node:http";
import type { Agent } from "node:https";
import type { BackendConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import { BARE_LF, findHeadEnd, grow, hostPort } from "./wire.ts";

/** Why a backend request failed. */
export type BackendFailure = "timeout" | "refused" | "tls" | "invalid" | "error";

/** The result of one backend request. */
export type BackendOutcome =
  | { ok: true; status: 200 | 503; body: string; member?: MemberFacts }
  | { ok: false; failure: BackendFailure; error: string };

/** The member's role, state and timeline, as a Patroni body reports them. */
export interface MemberFacts {
  role: string;
  state: string;
  timeline?: number;
}

/** The member facts of a parsed JSON body: an object with a string `role` and `state`, else none. */
export function memberFactsOf(value: unknown): MemberFacts | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { role, state, timeline } = value as Record<string, unknown>;
  if (typeof role !== "string" || typeof state !== "string") return undefined;
  return typeof timeline === "number" ? { role, state, timeline } : { role, state };
}

/** Largest Patroni response accepted (its /patroni status is a few KiB). */
export const MAX_BODY_BYTES = 256 * 1024;
/** Connections to Patroni at most (its REST API has a pool of 5 threads). */
export const MAX_BACKEND_SOCKETS = 8;

class BackendError extends Error {
  constructor(readonly failure: BackendFailure, message: string) {
    super(message);
  }
}

/**
 * Asks Patroni; bounded by `timeout`, never follows redirects. One connection per request:
 * Patroni (HTTP/1.0) closes each one anyway, and Deno's client re-sends a request that timed out
 * on a kept-alive connection (denoland/deno#36786), which would double the load on a frozen Patroni.
 * Plain HTTP goes over `Deno.connect`; HTTPS over `node:https`, loaded only then (it accepts a
 * self-signed CA:TRUE `cafile` and `insecure`, which the runtime's own TLS client does not).
 */
export class PatroniClient {
  readonly origin: string;
  readonly #config: BackendConfig;
  #agent?: Promise<{ https: typeof import("node:https"); agent: Agent }>;
  /** How to cancel each request in flight. */
  readonly #inFlight = new Set<(e: BackendError) => void>();
  /** Requests waiting for one of the {@linkcode MAX_BACKEND_SOCKETS} connections (plain HTTP). */
  readonly #queue: (() => void)[] = [];
  #connections = 0;
  readonly #log?: Logger;
  #closed = false;
  /** "up", "down" or undefined before the first response; changes are logged once. */
  #state?: "up" | "down";
  #role?: string;

  constructor(config: BackendConfig, log?: Logger) {
    this.#config = config;
    this.#log = log;
    this.origin = `${config.scheme}://${hostPort(config.host, config.port)}`;
  }

  #httpsAgent() {
    const config = this.#config;
    return this.#agent ??= import("node:https").then(({ default: https }) => ({
      https,
      agent: new https.Agent({
        keepAlive: false,
        maxSockets: MAX_BACKEND_SOCKETS,
        rejectUnauthorized: !config.insecure,
        // Never undefined: the runtime's own system-root lookup needs --allow-sys.
        ca: config.ca?.pem ?? [],
        cert: config.client?.cert,
        key: config.client?.key,
      }),
    }));
  }

  /** Requests in flight right now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** `GET target` from Patroni; resolves (never rejects) within `timeout` seconds. */
  async fetchPatroniStatus(target: string, timeoutMs = Infinity): Promise<BackendOutcome> {
    const outcome = await this.#fetch(target, Math.min(timeoutMs, this.#config.timeout * 1000));
    this.#noteState(outcome);
    return outcome;
  }

  /** Logs reachability and role changes once each, not once per request. */
  #noteState(outcome: BackendOutcome): void {
    if (!this.#log || this.#closed) return;
    if (!outcome.ok) {
      if (this.#state !== "down") {
        this.#log.warn(`Patroni at ${this.origin} is unreachable: ${outcome.error}`);
      }
      this.#state = "down";
      return;
    }
    if (this.#state === "down") this.#log.notice(`Patroni at ${this.origin} is reachable again`);
    this.#state = "up";
    const role = outcome.member?.role;
    if (role === undefined || role === this.#role) return;
    if (this.#role === undefined) {
      this.#log.info(`Patroni at ${this.origin} answers, role ${role}`);
    } else {
      this.#log.notice(`Patroni at ${this.origin} changed role: ${this.#role} -> ${role}`);
    }
    this.#role = role;
  }

  async #fetch(target: string, timeoutMs: number): Promise<BackendOutcome> {
    try {
      return await this.#request(target, timeoutMs);
    } catch (e) {
      const { failure, message } = classify(e);
      return { ok: false, failure, error: message };
    }
  }

  /** One request, settled (with a BackendError on failure) within `timeoutMs` at the latest. */
  #request(target: string, timeoutMs: number): Promise<BackendOutcome> {
    if (this.#closed) throw new BackendError("error", "shutting down");
    return new Promise<BackendOutcome>((resolve, reject) => {
      let settled = false;
      const cleanups: (() => void)[] = [];
      const settle = (outcome: BackendOutcome | BackendError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#inFlight.delete(cancel);
        for (const f of cleanups) f();
        if (outcome instanceof BackendError) reject(outcome);
        else resolve(outcome);
      };
      // Settles at once, whatever the transport is doing: a frozen Patroni never holds a check.
      const cancel = (e: BackendError) => settle(e);
      const timer = setTimeout(
        () =>
          cancel(new BackendError("timeout", `no answer within ${Math.round(timeoutMs) / 1000}s`)),
        Math.max(0, timeoutMs),
      );
      this.#inFlight.add(cancel);
      const onCleanup = (f: () => void) => settled ? f() : cleanups.push(f);
      const onResponse = (status: number, bytes: Uint8Array) => settle(outcomeOf(status, bytes));
      const fail = (e: unknown) => settle(classify(e));
      (this.#config.scheme === "https"
        ? this.#requestHttps(target, onCleanup, onResponse)
        : this.#requestPlain(target, onCleanup, onResponse)).catch(fail);
    });
  }

  /** Plain HTTP/1.1 over one `Deno.connect` connection, closed by either side after the response. */
  async #requestPlain(
    target: string,
    onCleanup: (f: () => void) => void,
    onResponse: (status: number, bytes: Uint8Array) => void,
  ): Promise<void> {
    let cancelled = false;
    if (this.#connections >= MAX_BACKEND_SOCKETS) {
      await new Promise<void>((resolve) => {
        this.#queue.push(resolve);
        onCleanup(() => {
          cancelled = true;
          const i = this.#queue.indexOf(resolve);
          if (i !== -1) this.#queue.splice(i, 1);
        });
      });
      if (cancelled) return this.#queue.shift()?.(); // pass on the slot it was handed
    }
    this.#connections++;
    const open: { conn?: Deno.TcpConn } = {};
    onCleanup(() => {
      cancelled = true;
      try {
        open.conn?.close();
      } catch { /* closed */ }
      this.#connections--;
      this.#queue.shift()?.();
    });
    const conn = open.conn = await Deno.connect({
      hostname: this.#config.host,
      port: this.#config.port,
    });
    if (cancelled) return conn.close();
    const request =
      `GET ${target} HTTP/1.1\r\nHost: ${hostPort(this.#config.host, this.#config.port)}\r\n` +
      "Accept: application/json\r\nUser-Agent: patroniglue\r\nConnection: close\r\n\r\n";
    const bytes = new TextEncoder().encode(request);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    const { status, body } = await readResponse(conn);
    onResponse(status, body);
  }

  async #requestHttps(
    target: string,
    onCleanup: (f: () => void) => void,
    onResponse: (status: number, bytes: Uint8Array) => void,
  ): Promise<void> {
    const { https, agent } = await this.#httpsAgent();
    let req: ClientRequest | undefined;
    onCleanup(() => req?.destroy());
    await new Promise<void>((resolve, reject) => {
      req = https.request({
        agent,
        host: this.#config.host,
        port: this.#config.port,
        method: "GET",
        path: target,
        headers: { accept: "application/json", "user-agent": "patroniglue" },
      });
      req.on("error", reject);
      req.on("response", (res) => {
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on("data", (chunk: Uint8Array) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            reject(new BackendError("invalid", `answer larger than ${MAX_BODY_BYTES} bytes`));
          } else {
            chunks.push(chunk);
          }
        });
        res.on("error", reject);
        res.on("aborted", () => reject(new BackendError("invalid", "answer cut short")));
        res.on("end", () => {
          if (!res.complete) return reject(new BackendError("invalid", "answer cut short"));
          onResponse(res.statusCode ?? 0, concat(chunks, size));
          resolve();
        });
      });
      req.end();
    });
  }

  /** Cancels every request in flight. */
  close(): void {
    this.#closed = true;
    for (const cancel of [...this.#inFlight]) cancel(new BackendError("error", "shutting down"));
    this.#agent?.then(({ agent }) => agent.destroy());
  }
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** The outcome for a complete response: 200/503 with a JSON (or empty) body, or why not. */
function outcomeOf(status: number, bytes: Uint8Array): BackendOutcome | BackendError {
  if (status !== 200 && status !== 503) {
    const redirect = status >= 300 && status < 400 ? " (redirects are not followed)" : "";
    return new BackendError("invalid", `unexpected status ${status}${redirect}`);
  }
  const body = new TextDecoder().decode(bytes);
  if (body === "") return { ok: true, status, body };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return new BackendError("invalid", "answer is not JSON");
  }
  const member = memberFactsOf(value);
  return member ? { ok: true, status, body, member } : { ok: true, status, body };
}

/** Most bytes of a status line and headers accepted from Patroni. */
const MAX_HEAD_BYTES = 16 * 1024;

/** Reads one HTTP/1.x response: Content-Length, chunked, or (Patroni's HTTP/1.0) closed at the end. */
async function readResponse(conn: Deno.Conn): Promise<{ status: number; body: Uint8Array }> {
  const invalid = (message: string) => new BackendError("invalid", message);
  let buf = new Uint8Array(4096);
  let len = 0;
  let bodyStart = -1;
  let status = 0;
  let contentLength = -1;
  let chunked = false;
  for (;;) {
    if (len === buf.length) buf = grow(buf, buf.length * 2);
    const n = await conn.read(buf.subarray(len));
    if (n === null) break;
    len += n;
    if (bodyStart === -1) {
      const end = findHeadEnd(buf, len, 0);
      if (end === BARE_LF) throw invalid("malformed answer: bare LF in the head");
      if (end === -1) {
        if (len > MAX_HEAD_BYTES) throw invalid("malformed answer: head too large");
        continue;
      }
      const lines = new TextDecoder("latin1").decode(buf.subarray(0, end)).split("\r\n");
      const statusLine = lines[0].match(/^HTTP\/1\.[01] (\d{3})(?: |$)/);
      if (!statusLine) throw invalid("malformed answer: no HTTP/1.x status line");
      status = Number(statusLine[1]);
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        const name = line.slice(0, colon).toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "content-length") {
          if (!/^\d{1,15}$/.test(value)) throw invalid("malformed answer: bad Content-Length");
          contentLength = Number(value);
        } else if (name === "transfer-encoding") chunked = /chunked/i.test(value);
      }
      bodyStart = end + 4;
    }
    if (len - bodyStart > MAX_BODY_BYTES + (chunked ? 64 * 1024 : 0)) {
      throw invalid(`answer larger than ${MAX_BODY_BYTES} bytes`);
    }
    if (!chunked && contentLength >= 0 && len - bodyStart >= contentLength) break;
  }
  if (bodyStart === -1) {
    throw invalid(len === 0 ? "no answer (connection closed)" : "answer cut short");
  }
  const body = buf.subarray(bodyStart, len);
  if (chunked) return { status, body: dechunk(body) };
  if (contentLength === -1) return { status, body };
  if (body.length < contentLength) throw invalid("answer cut short");
  return { status, body: body.subarray(0, contentLength) };
}

/** The payload of a complete chunked body (trailers ignored). */
function dechunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (let at = 0;;) {
    const eol = bytes.indexOf(13, at);
    if (eol === -1 || bytes[eol + 1] !== 10) throw new BackendError("invalid", "answer cut short");
    const sizeText = new TextDecoder().decode(bytes.subarray(at, eol)).split(";")[0].trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) {
      throw new BackendError("invalid", "malformed answer: bad chunk size");
    }
    const n = parseInt(sizeText, 16);
    if (n === 0) return concat(parts, size);
    const from = eol + 2;
    if (from + n + 2 > bytes.length) throw new BackendError("invalid", "answer cut short");
    parts.push(bytes.subarray(from, from + n));
    size += n;
    if (size > MAX_BODY_BYTES) {
      throw new BackendError("invalid", `answer larger than ${MAX_BODY_BYTES} bytes`);
    }
    at = from + n + 2;
  }
}

/** A runtime or socket error as the failure it stands for (a BackendError stays as it is). */
function classify(e: unknown): BackendError {
  if (e instanceof BackendError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? "";
  const message = err?.message ?? String(e);
  if (code === "ECONNREFUSED" || /refused/i.test(message)) {
    return new BackendError("refused", `connection refused: ${message}`);
  }
  if (code === "ETIMEDOUT") return new BackendError("timeout", message);
  if (
    /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) ||
    /certificate|tls|ssl|handshake/i.test(message)
  ) {
    return new BackendError("tls", `TLS: ${message}`);
  }
  if (code.startsWith("HPE_") || /parse/i.test(message)) {
    return new BackendError("invalid", `malformed answer: ${message}`);
  }
  return new BackendError("error", message);
}
