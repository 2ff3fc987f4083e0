/**
 * Backend: the client to Patroni's REST API; every failure becomes a typed outcome, never an
 * exception.
 * @module
 */
import { HttpClient, HttpError, type HttpFailure } from "../net/http_client.ts";
import type { Logger } from "../log.ts";

/** Where and how to reach Patroni's REST API (the config's `backend:`, files read). */
export interface PatroniTarget {
  scheme: "http" | "https";
  host: string;
  port: number;
  /** Skip certificate checks. */
  insecure: boolean;
  /** Seconds a request may take. */
  timeout: number;
  /** Trusted CAs (PEM), for https. */
  ca?: { pem: string };
  /** A client certificate and its key (PEM). */
  client?: { cert: string; key: string };
}

/** Why a backend request failed: as the HTTP client says. */
export type BackendFailure = HttpFailure;

/** The result of one backend request. */
export type BackendOutcome =
  | { ok: true; status: 200 | 503; body: string; member?: MemberFacts; identity?: Identity }
  | { ok: false; failure: BackendFailure; error: string };

/** Who Patroni says it is: its `patroni.scope`, and `patroni.name` (Patroni 3.1 and later). */
export interface Identity {
  scope?: string;
  name?: string;
}

/** The identity of a parsed JSON body (its `patroni` object), when it names a scope or a name. */
function identityOf(value: unknown): Identity | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const patroni = (value as Record<string, unknown>).patroni;
  if (typeof patroni !== "object" || patroni === null) return undefined;
  const { scope, name } = patroni as Record<string, unknown>;
  const identity: Identity = {};
  if (typeof scope === "string") identity.scope = scope;
  if (typeof name === "string") identity.name = name;
  return identity.scope === undefined && identity.name === undefined ? undefined : identity;
}

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

/**
 * Asks Patroni; bounded by `timeout`, never follows redirects. One connection per request:
 * Patroni (HTTP/1.0) closes each one anyway, and a client that re-sends a request that timed out
 * on a kept-alive connection (denoland/deno#36786) would double the load on a frozen Patroni.
 * At most {@linkcode MAX_BACKEND_SOCKETS} connections at a time; the others wait their turn
 * within their own timeout.
 */
export class PatroniClient {
  readonly origin: string;
  readonly #config: PatroniTarget;
  readonly #http: HttpClient;
  /** Ends every request, queued or in flight, at close(). */
  readonly #closing = new AbortController();
  /** Requests waiting for one of the {@linkcode MAX_BACKEND_SOCKETS} connections. */
  readonly #queue: (() => void)[] = [];
  #connections = 0;
  #inFlight = 0;
  readonly #log?: Logger;
  #closed = false;
  /** "up", "down" or undefined before the first response; changes are logged once. */
  #state?: "up" | "down";
  #role?: string;

  constructor(config: PatroniTarget, log?: Logger) {
    this.#config = config;
    this.#log = log;
    this.#http = new HttpClient(config, {
      ca: config.ca?.pem ?? [],
      cert: config.client?.cert,
      key: config.client?.key,
      insecure: config.insecure,
      maxBodyBytes: MAX_BODY_BYTES,
    });
    this.origin = this.#http.origin;
  }

  /** Requests in flight right now. */
  get inFlight(): number {
    return this.#inFlight;
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

  /** One request, settled within `timeoutMs` (its wait for a connection included). */
  async #fetch(target: string, timeoutMs: number): Promise<BackendOutcome> {
    if (this.#closed) return { ok: false, failure: "error", error: "shutting down" };
    const deadline = new AbortController();
    const timer = setTimeout(
      () =>
        deadline.abort(
          new HttpError("timeout", `no answer within ${Math.round(timeoutMs) / 1000}s`),
        ),
      Math.max(0, timeoutMs),
    );
    const signal = AbortSignal.any([this.#closing.signal, deadline.signal]);
    this.#inFlight++;
    let holding = false;
    try {
      await this.#slot(signal);
      holding = true;
      const response = await this.#http.request({
        target,
        headers: { Accept: "application/json" },
        timeoutMs,
        signal,
      });
      return outcomeOf(response.status, response.body);
    } catch (e) {
      const error = e instanceof HttpError ? e : new HttpError("error", String(e));
      return { ok: false, failure: error.failure, error: error.message };
    } finally {
      clearTimeout(timer);
      this.#inFlight--;
      if (holding) {
        this.#connections--;
        this.#queue.shift()?.();
      }
    }
  }

  /** Waits for one of the connections (rejects when `signal` ends the wait). */
  #slot(signal: AbortSignal): Promise<void> {
    if (this.#connections < MAX_BACKEND_SOCKETS) {
      this.#connections++;
      return Promise.resolve();
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const take = () => {
      signal.removeEventListener("abort", onAbort);
      this.#connections++;
      resolve();
    };
    const onAbort = () => {
      const i = this.#queue.indexOf(take);
      if (i !== -1) this.#queue.splice(i, 1);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.#queue.push(take);
    return promise;
  }

  /** Cancels every request in flight. */
  close(): void {
    this.#closed = true;
    this.#closing.abort(new HttpError("error", "shutting down"));
    this.#http.close();
  }
}

/** The outcome for a complete response: 200/503 with a JSON (or empty) body, or why not. */
function outcomeOf(status: number, bytes: Uint8Array): BackendOutcome {
  const invalid = (error: string): BackendOutcome => ({ ok: false, failure: "invalid", error });
  if (status !== 200 && status !== 503) {
    const redirect = status >= 300 && status < 400 ? " (redirects are not followed)" : "";
    return invalid(`unexpected status ${status}${redirect}`);
  }
  const body = new TextDecoder().decode(bytes);
  if (body === "") return { ok: true, status, body };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return invalid("answer is not JSON");
  }
  const outcome: BackendOutcome = { ok: true, status, body };
  const member = memberFactsOf(value);
  const identity = identityOf(value);
  if (member) outcome.member = member;
  if (identity) outcome.identity = identity;
  return outcome;
}
