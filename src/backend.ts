// Backend: the client to Patroni's REST API; every failure becomes a typed outcome, never an exception.
import http from "node:http";
import https from "node:https";
import type { BackendConfig } from "./config.ts";
import type { Logger } from "./log.ts";

/** Why a backend request failed. */
export type BackendFailure = "timeout" | "refused" | "tls" | "invalid" | "error";

/** The result of one backend request. */
export type BackendOutcome =
  | { ok: true; status: 200 | 503; body: string }
  | { ok: false; failure: BackendFailure; error: string };

/** Largest Patroni answer accepted (its /patroni status is a few KiB). */
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
 */
export class PatroniClient {
  readonly origin: string;
  readonly #config: BackendConfig;
  readonly #agent: http.Agent;
  readonly #inFlight = new Set<http.ClientRequest>();
  readonly #log?: Logger;
  #closed = false;
  /** "up", "down" or undefined before the first answer; changes are logged once. */
  #state?: "up" | "down";
  #role?: string;

  constructor(config: BackendConfig, log?: Logger) {
    this.#config = config;
    this.#log = log;
    this.origin = `${config.scheme}://${
      config.host.includes(":") ? `[${config.host}]` : config.host
    }:${config.port}`;
    const agentOptions = { keepAlive: false, maxSockets: MAX_BACKEND_SOCKETS };
    this.#agent = config.scheme === "https"
      ? new https.Agent({
        ...agentOptions,
        rejectUnauthorized: !config.insecure,
        // Never undefined: the runtime's own system-root lookup needs --allow-sys.
        ca: config.ca?.pem ?? [],
        cert: config.client?.cert,
        key: config.client?.key,
      })
      : new http.Agent(agentOptions);
  }

  /** Requests in flight right now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** `GET target` from Patroni; resolves (never rejects) within `timeout` seconds. */
  async fetchPatroniStatus(target: string): Promise<BackendOutcome> {
    const outcome = await this.#fetch(target);
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
    let role: unknown;
    try {
      role = JSON.parse(outcome.body)?.role;
    } catch { /* checked in #request */ }
    if (typeof role !== "string" || role === this.#role) return;
    if (this.#role === undefined) {
      this.#log.info(`Patroni at ${this.origin} answers, role ${role}`);
    } else {
      this.#log.notice(`Patroni at ${this.origin} changed role: ${this.#role} -> ${role}`);
    }
    this.#role = role;
  }

  async #fetch(target: string): Promise<BackendOutcome> {
    try {
      return await this.#request(target, Date.now() + this.#config.timeout * 1000);
    } catch (e) {
      if (e instanceof BackendError) return { ok: false, failure: e.failure, error: e.message };
      return { ok: false, ...classify(e) };
    }
  }

  #request(target: string, deadline: number): Promise<BackendOutcome> {
    if (this.#closed) throw new BackendError("error", "shutting down");
    const module = this.#config.scheme === "https" ? https : http;
    return new Promise<BackendOutcome>((resolve, reject) => {
      const req = module.request({
        agent: this.#agent,
        host: this.#config.host,
        port: this.#config.port,
        method: "GET",
        path: target,
        headers: { accept: "application/json", "user-agent": "patroniglue" },
      });
      this.#inFlight.add(req);
      let abortReason: BackendError | undefined;
      // Settles at once: a request still queued for a socket may never emit "error" on destroy.
      const abort = (e: BackendError) => {
        abortReason ??= e;
        req.destroy(e);
        fail(e);
      };
      const timer = setTimeout(
        () => abort(new BackendError("timeout", `no answer within ${this.#config.timeout}s`)),
        Math.max(0, deadline - Date.now()),
      );
      const done = () => {
        clearTimeout(timer);
        this.#inFlight.delete(req);
      };
      const fail = (e: Error) => {
        done();
        reject(abortReason ?? e);
      };
      req.on("error", fail);
      req.on("response", (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on("data", (chunk: Uint8Array) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            abort(new BackendError("invalid", `answer larger than ${MAX_BODY_BYTES} bytes`));
          } else {
            chunks.push(chunk);
          }
        });
        res.on("error", fail);
        res.on("aborted", () => fail(new BackendError("invalid", "answer cut short")));
        res.on("end", () => {
          done();
          if (!res.complete) return reject(new BackendError("invalid", "answer cut short"));
          if (status !== 200 && status !== 503) {
            return reject(
              new BackendError(
                "invalid",
                `unexpected status ${status}${
                  status >= 300 && status < 400 ? " (redirects are not followed)" : ""
                }`,
              ),
            );
          }
          const body = new TextDecoder().decode(concat(chunks, size));
          try {
            if (body !== "") JSON.parse(body);
          } catch {
            return reject(new BackendError("invalid", "answer is not JSON"));
          }
          resolve({ ok: true, status, body });
        });
      });
      req.end();
    });
  }

  /** Cancels every request in flight. */
  close(): void {
    this.#closed = true;
    for (const req of this.#inFlight) req.destroy(new BackendError("error", "shutting down"));
    this.#inFlight.clear();
    this.#agent.destroy();
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

function classify(e: unknown): { failure: BackendFailure; error: string } {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? "";
  const message = err?.message ?? String(e);
  if (code === "ECONNREFUSED" || /refused/i.test(message)) {
    return { failure: "refused", error: `connection refused: ${message}` };
  }
  if (code === "ETIMEDOUT") return { failure: "timeout", error: message };
  if (
    /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) ||
    /certificate|tls|ssl|handshake/i.test(message)
  ) {
    return { failure: "tls", error: `TLS: ${message}` };
  }
  if (code.startsWith("HPE_") || /parse/i.test(message)) {
    return { failure: "invalid", error: `malformed answer: ${message}` };
  }
  return { failure: "error", error: message };
}
