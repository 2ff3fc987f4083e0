/**
 * etcd3 gateway: etcd's v3 JSON gateway as a watcher calls it (the API prefix from `/version`, the auth token taken and taken again, JSON calls and their errors, the watch stream cut into messages).
 *
 * @module
 */
import type { HttpResponse } from "../net/http_client.ts";
import { answerJson, answerObject } from "./codec.ts";
import { DcsError, MAX_ANSWER_BYTES, type SessionContext } from "./runner.ts";
import type { DcsSettings } from "./view.ts";
import { grow, LF } from "../net/wire.ts";

/** The call that takes a token for a user and password. */
const AUTHENTICATE = "/auth/authenticate";

/** How {@linkcode Gateway.watch} reads the watch stream. */
export interface WatchStream {
  /** Longest silence of the stream in ms. */
  idleMs: number;
  /** Ends the stream. */
  signal: AbortSignal;
  /** Gets each message's JSON text; what it throws ends the stream, and the watch rejects with it. */
  onMessage(text: string): void;
}

/**
 * etcd's v3 JSON gateway for one watcher, through the client of each session in turn: the API
 * prefix and the auth token that a session finds are kept for the next (the token until etcd
 * refuses it).
 */
export class Gateway {
  readonly #settings: DcsSettings;
  /** The gateway's path prefix (`/v3`), from `/version`. */
  #prefix?: string;
  /** The auth token. */
  #token?: string;

  constructor(settings: DcsSettings) {
    this.#settings = settings;
  }

  /** Finds the API prefix and, with a user, takes a token, unless an earlier session did. */
  async open(context: SessionContext): Promise<void> {
    this.#prefix ??= await gatewayPrefix(context);
    if (this.#settings.username !== undefined && this.#token === undefined) {
      await this.#authenticate(context);
    }
  }

  /** POSTs `body` as JSON to `path` (`/kv/range`); a token refused is taken again, once. */
  async post(context: SessionContext, path: string, body: unknown): Promise<unknown> {
    for (let attempt = 0;; attempt++) {
      const response = await context.client.request({
        method: "POST",
        target: `${this.#prefix}${path}`,
        headers: this.#headers(),
        body: JSON.stringify(body),
        timeoutMs: context.timeoutMs,
        signal: context.signal,
      });
      const answer = answerJson(response);
      if (response.status === 200) return answer;
      const error = gatewayError(response, answer);
      if (
        attempt === 0 && this.#settings.username !== undefined && path !== AUTHENTICATE &&
        isTokenError(error.message)
      ) {
        await this.#authenticate(context); // expired or missing token: once more with a new one
        continue;
      }
      throw error;
    }
  }

  /** Opens the watch `request` asks for and hands over its messages; resolves when it ends. */
  async watch(context: SessionContext, request: unknown, stream: WatchStream): Promise<void> {
    const messages = new MessageBuffer();
    const response = await context.client.stream({
      method: "POST",
      target: `${this.#prefix}/watch`,
      headers: this.#headers(),
      body: JSON.stringify(request),
      timeoutMs: context.timeoutMs,
      idleMs: stream.idleMs,
      signal: stream.signal,
      onData: (piece) => messages.add(piece, stream.onMessage),
    });
    if (response.status !== 200) throw gatewayError(response, answerObject(response));
  }

  async #authenticate(context: SessionContext): Promise<void> {
    this.#token = undefined;
    const answer = await this.post(context, AUTHENTICATE, {
      name: this.#settings.username,
      password: this.#settings.password ?? "",
    }) as { token?: unknown };
    if (typeof answer.token !== "string" || /[\r\n]/.test(answer.token)) {
      throw new DcsError("auth", "etcd's authenticate answer has no token");
    }
    this.#token = answer.token;
  }

  #headers(): Record<string, string> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.#token) headers.Authorization = this.#token;
    return headers;
  }
}

/**
 * The watch stream's messages (JSON objects, one a line) from the pieces of its body: a message
 * cut between pieces is kept until its end arrives, up to {@linkcode MAX_ANSWER_BYTES}.
 */
class MessageBuffer {
  readonly #decoder = new TextDecoder();
  #pending = new Uint8Array(0);
  #pendingLength = 0;

  /** Hands each message that `piece` completes to `onMessage` (blank lines are passed over). */
  add(piece: Uint8Array, onMessage: (text: string) => void): void {
    let from = 0;
    for (let i = piece.indexOf(LF); i !== -1; i = piece.indexOf(LF, i + 1)) {
      const part = piece.subarray(from, i);
      const line = this.#pendingLength > 0 ? this.#joined(part) : part;
      this.#pendingLength = 0;
      from = i + 1;
      const text = this.#decoder.decode(line).trim();
      if (text !== "") onMessage(text);
    }
    if (from < piece.length) this.#keep(piece.subarray(from));
  }

  #keep(part: Uint8Array): void {
    const length = this.#pendingLength + part.length;
    if (length > MAX_ANSWER_BYTES) {
      throw new DcsError("invalid", `watch message larger than ${MAX_ANSWER_BYTES} bytes`);
    }
    if (length > this.#pending.length) {
      this.#pending = grow(this.#pending, Math.max(length, this.#pending.length * 2));
    }
    this.#pending.set(part, this.#pendingLength);
    this.#pendingLength = length;
  }

  /** The message kept so far, with `part` (its end) after it. */
  #joined(part: Uint8Array): Uint8Array {
    this.#keep(part);
    return this.#pending.subarray(0, this.#pendingLength);
  }
}

/** `/v3` (etcd 3.4+), `/v3beta` (3.3) or `/v3alpha` (before), from the cluster's version. */
async function gatewayPrefix(context: SessionContext): Promise<string> {
  const { client, timeoutMs, signal } = context;
  const response = await client.request({ target: "/version", timeoutMs, signal });
  const answer = answerObject(response) as { etcdcluster?: unknown };
  const version = typeof answer.etcdcluster === "string"
    ? answer.etcdcluster.match(/^(\d+)\.(\d+)/)
    : null;
  if (response.status !== 200 || !version) return "/v3";
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (major > 3 || minor >= 4) return "/v3";
  return minor === 3 ? "/v3beta" : "/v3alpha";
}

function isTokenError(message: string): boolean {
  return /invalid auth token|user name is empty|token/i.test(message);
}

function gatewayError(response: HttpResponse, answer: unknown): DcsError {
  const data = (typeof answer === "object" && answer !== null ? answer : {}) as Record<
    string,
    unknown
  >;
  const text = String(data.error ?? data.message ?? "").slice(0, 200);
  const auth = response.status === 401 || response.status === 403 ||
    /auth|permission denied|user name|password/i.test(text);
  return new DcsError(auth ? "auth" : "invalid", `etcd answered ${response.status}: ${text}`);
}
