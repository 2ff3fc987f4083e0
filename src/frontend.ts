// Frontend: the request handler (route -> cache -> answer) and the HTTP/HTTPS listeners.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { CacheEntry, CacheResult, HealthCache } from "./cache.ts";
import type { FrontendConfig } from "./config.ts";
import { effectiveMinVersion } from "./tls.ts";
import { formatAccessLine, type Logger } from "./log.ts";
import { type Http1Server, JSON_TYPE, jsonResponse, serveHttp1 } from "./http1.ts";
import { type Route, routeRequest } from "./routes.ts";

/** A request reduced to what routing needs; the target is raw, never normalized. */
export interface HealthRequest {
  method: string;
  target: string;
  /** `ip:port` of the client. */
  remote: string;
  /** Whether the request carries a body (refused: health checks have none). */
  hasBody: boolean;
}

/** An answer, before it is written by a listener. */
export interface HealthResponse {
  status: number;
  headers: Record<string, string>;
  /** The GET body; listeners drop it on the wire for HEAD (keeping Content-Length); empty for OPTIONS. */
  body: string;
  /** Set when the same object answers other requests too: a listener may keep its encoding. */
  reused?: boolean;
}

/** What the handler needs besides the request. */
export interface HandlerOptions {
  cache: HealthCache;
  log: Logger;
  /** `frontend.logformat`. */
  logformat: string;
  /** Renders `/metrics`, when served on the frontend. */
  metrics?: () => string;
  /** Called once per answered request. */
  onAnswer?: (route: Route, req: HealthRequest, res: HealthResponse, cache: string) => void;
  /** Monotonic clock in ms, the cache's. @default {performance.now} */
  now?: () => number;
}

const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const X_CACHE: Record<string, string> = { hit: "HIT", miss: "MISS", coalesced: "COALESCED" };

/** A handler's result: synchronous for answers from memory, a promise when Patroni is asked. */
export type HandlerResult = HealthResponse | Promise<HealthResponse>;

/** The handler: one route, at most one cache lookup, one answer; it never throws. */
export function createHandler(options: HandlerOptions): (req: HealthRequest) => HandlerResult {
  const { cache, log, logformat } = options;
  const now = options.now ?? (() => performance.now());
  const local = (req: HealthRequest, route: Route): HealthResponse | undefined => {
    if (route.kind === "error") return errorAnswer(route);
    if (req.hasBody) return jsonResponse(413, { error: "request body not allowed" });
    if (route.kind === "health") return jsonResponse(200, { healthy: true });
    if (route.kind === "metrics") return metricsAnswer(options.metrics!());
    return undefined;
  };
  // A hit's answer, per cached answer and age in seconds: hits allocate nothing.
  const hits = new WeakMap<CacheEntry, { age: number; res: HealthResponse }>();
  const cacheAnswer = (req: HealthRequest, answer: CacheEntry, result: CacheResult) => {
    const age = Math.max(0, Math.floor((now() - answer.storedAt) / 1000));
    const options = req.method === "OPTIONS";
    const shared = result === "hit" && !options;
    if (shared) {
      const memo = hits.get(answer);
      if (memo?.age === age) return memo.res;
    }
    const res: HealthResponse = {
      status: answer.status,
      headers: { "content-type": JSON_TYPE, "x-cache": X_CACHE[result], age: String(age) },
      body: options ? "" : answer.body,
    };
    if (shared) {
      res.reused = true;
      hits.set(answer, { age, res });
    }
    return res;
  };
  const failed = (req: HealthRequest, e: unknown) => {
    log.error(`handler failed: ${(e as Error).message}`, { uri: req.target });
    return jsonResponse(500, { error: "internal error" });
  };
  const finish = (
    req: HealthRequest,
    route: Route,
    started: number,
    res: HealthResponse,
    cacheResult: string,
  ): HealthResponse => {
    options.onAnswer?.(route, req, res, cacheResult);
    if (log.enabled("info")) {
      const record = {
        remote: req.remote,
        method: req.method,
        uri: req.target,
        status: res.status,
        durationMs: performance.now() - started,
        cache: cacheResult,
      };
      if (log.format === "json") {
        const { durationMs, ...rest } = record;
        log.info("request", { ...rest, duration_ms: Number(durationMs.toFixed(3)) });
      } else log.info(formatAccessLine(logformat, record));
    }
    return res;
  };
  /** Answers from the cache; an answer that records a backend failure counts as "error". */
  const fromCache = (
    req: HealthRequest,
    route: Extract<Route, { kind: "check" }>,
    started: number,
    answer: CacheEntry,
    result: CacheResult,
  ) => {
    if (log.enabled("debug")) {
      log.debug("cache", {
        key: route.key,
        result,
        status: answer.status,
        failure: answer.failure,
      });
    }
    const res = cacheAnswer(req, answer, result);
    return finish(req, route, started, res, answer.failure ? "error" : result);
  };
  return (req) => {
    const started = log.enabled("info") ? performance.now() : 0;
    const route = routeRequest(req.method, req.target, options.metrics !== undefined);
    try {
      const answer = local(req, route);
      if (answer || route.kind !== "check") return finish(req, route, started, answer!, "local");
      const fresh = cache.peek(route.key);
      if (fresh) return fromCache(req, route, started, fresh, "hit");
      return cache.get(route.key).then(
        ({ entry, result }) => fromCache(req, route, started, entry, result),
        (e) => finish(req, route, started, failed(req, e), "local"),
      );
    } catch (e) {
      return finish(req, route, started, failed(req, e), "local");
    }
  };
}

/** The handler of a metrics-only listener: `GET /metrics`, nothing else. */
export function metricsHandler(
  render: () => string,
): (req: HealthRequest) => Promise<HealthResponse> {
  return (req) => {
    const route = routeRequest(req.method, req.target, true);
    return Promise.resolve(
      route.kind === "metrics"
        ? metricsAnswer(render())
        : route.kind === "error"
        ? errorAnswer(route)
        : jsonResponse(404, { error: "not found" }),
    );
  };
}

function metricsAnswer(body: string): HealthResponse {
  return { status: 200, headers: { "content-type": METRICS_TYPE }, body };
}

function errorAnswer(route: Extract<Route, { kind: "error" }>): HealthResponse {
  const res = jsonResponse(route.status, { error: route.message });
  if (route.allow) res.headers.allow = route.allow.join(", ");
  return res;
}

function hasBody(contentLength: string | null | undefined, chunked: boolean): boolean {
  return chunked || (contentLength != null && contentLength.trim() !== "0");
}

/** A running listener. */
export interface Listener {
  /** `http://host:port` or `https://host:port`, as bound. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, lets answers in progress finish, closes connections. */
  shutdown(): Promise<void>;
  /** Swaps the certificate for the next TLS handshakes (HTTPS only). */
  setCertificate?(cert: string, key: string): void;
}

/** Binds `frontend.host:port`: our HTTP/1.1 server for HTTP, node:https for HTTPS (it enforces the TLS minimum). */
export function listen(
  frontend: Pick<FrontendConfig, "host" | "port" | "tls" | "tlsMinVersion">,
  handle: (req: HealthRequest) => HandlerResult,
  log: Logger,
): Promise<Listener> {
  return frontend.tls ? listenHttps(frontend, handle, log) : listenHttp(frontend, handle, log);
}

function urlOf(scheme: string, hostname: string, port: number): string {
  return `${scheme}://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

type Timer = ReturnType<typeof setTimeout>;

/** Waits between attempts to listen again after the runtime's accept loop died. */
const RELISTEN_BACKOFF_MS = [100, 250, 500, 1000, 2000];
/** How often the HTTPS listener checks that it still accepts connections. */
const ACCEPT_PROBE_MS = 5000;

const sleep = (ms: number, timers: Set<Timer>) =>
  new Promise<void>((resolve) => {
    const id = setTimeout(() => {
      timers.delete(id);
      resolve();
    }, ms);
    timers.add(id);
  });

/** Tries `start` with backoff until it succeeds or `stopped()`; the runtime's accept loop dies on EMFILE. */
async function relisten<T>(
  start: () => Promise<T>,
  stopped: () => boolean,
  timers: Set<Timer>,
): Promise<T | undefined> {
  for (let attempt = 0; !stopped(); attempt++) {
    await sleep(RELISTEN_BACKOFF_MS[Math.min(attempt, RELISTEN_BACKOFF_MS.length - 1)], timers);
    if (stopped()) return undefined;
    try {
      return await start();
    } catch { /* still no descriptor to spare, or the port is busy: try again */ }
  }
  return undefined;
}

function listenHttp(
  frontend: Pick<FrontendConfig, "host" | "port">,
  handle: (req: HealthRequest) => HandlerResult,
  log: Logger,
): Promise<Listener> {
  let server: Http1Server;
  try {
    server = serveHttp1({
      hostname: frontend.host,
      port: frontend.port,
      onAcceptError: (e) => log.error(`cannot accept connections: ${e.message}; retrying`),
      onHandlerError: (e) => log.error(`request failed: ${e.message}`),
    }, handle);
  } catch (e) {
    return Promise.reject(
      new Error(`cannot listen on ${frontend.host}:${frontend.port}: ${(e as Error).message}`),
    );
  }
  return Promise.resolve({
    url: urlOf("http", server.addr.hostname, server.addr.port),
    port: server.addr.port,
    shutdown: () => server.shutdown(),
  });
}

async function listenHttps(
  frontend: Pick<FrontendConfig, "host" | "port" | "tls" | "tlsMinVersion">,
  handle: (req: HealthRequest) => HandlerResult,
  log: Logger,
): Promise<Listener> {
  // Loaded only for an HTTPS frontend: Node compatibility costs ~10 MiB RSS.
  const { default: https } = await import("node:https");
  let secure = { cert: frontend.tls!.cert, key: frontend.tls!.key };
  let stopping = false;
  const timers = new Set<Timer>();
  let accepted = 0;
  const start = async (port: number) => {
    const server = https.createServer({
      ...secure,
      minVersion: effectiveMinVersion(frontend.tlsMinVersion),
    }, (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      Promise.resolve(handle({
        method: req.method ?? "GET",
        target: req.url ?? "/",
        remote: `${socket.remoteAddress}:${socket.remotePort}`,
        hasBody: hasBody(
          req.headers["content-length"],
          req.headers["transfer-encoding"] !== undefined,
        ),
      })).then((answer) => {
        res.writeHead(answer.status, answer.headers);
        res.end(req.method === "HEAD" ? undefined : answer.body);
      }, (e) => {
        log.error(`request failed: ${(e as Error).message}`);
        res.destroy();
      });
    });
    server.on("connection", () => accepted++);
    server.on("tlsClientError", (e: Error) => log.debug(`TLS handshake failed: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, frontend.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e: Error) => log.error(`HTTPS listener: ${e.message}`));
    return server;
  };
  let server = await start(frontend.port);
  const addr = server.address() as { address: string; port: number };
  const url = urlOf("https", addr.address, addr.port);
  const close = (s: HttpsServer) =>
    new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeIdleConnections?.();
    });
  // Deno's node:https accept loop dies silently on "too many open files": probe it, and listen again.
  const probeHost = ["0.0.0.0", "::", ""].includes(frontend.host) ? "127.0.0.1" : frontend.host;
  const probe = async () => {
    const before = accepted;
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ hostname: probeHost, port: addr.port });
    } catch {
      return; // no descriptor to spare right now: nothing to learn
    }
    await sleep(1000, timers);
    conn.close();
    if (accepted > before || stopping) return;
    log.error(`listener ${url} stopped accepting connections; listening again`);
    const old = server;
    old.close();
    const next = await relisten(() => start(addr.port), () => stopping, timers);
    if (!next) return;
    server = next;
    log.notice(`listening again on ${url}`);
  };
  let probing = false;
  const prober = setInterval(() => {
    if (probing || stopping) return;
    probing = true;
    probe().finally(() => probing = false);
  }, ACCEPT_PROBE_MS);
  return {
    url,
    port: addr.port,
    shutdown: async () => {
      stopping = true;
      clearInterval(prober);
      for (const id of timers) clearTimeout(id);
      await close(server);
    },
    setCertificate: (cert, key) => {
      secure = { cert, key };
      server.setSecureContext(secure);
    },
  };
}
