// Handler: route -> cache -> response; every response rule in one place, no socket needed.
import type { CacheEntry, CacheResult, HealthCache } from "./cache.ts";
import {
  type Handler,
  type HealthRequest,
  type HealthResponse,
  JSON_TYPE,
  jsonResponse,
} from "./health.ts";
import { formatAccessLine, type Logger } from "./log.ts";
import { type Route, routeRequest } from "./routes.ts";

/** What the handler needs besides the request. */
export interface HandlerOptions {
  cache: HealthCache;
  log: Logger;
  /** `frontend.logformat`. */
  logformat: string;
  /** Renders `/metrics`, when served on the frontend. @default {undefined} (a 404) */
  metrics?: () => string;
  /** Called once per request, with the route, the response and how it was obtained. @default {undefined} */
  onResponse?: (route: Route, req: HealthRequest, res: HealthResponse, cache: string) => void;
  /** Monotonic clock in ms, the cache's (for the `age` header). @default {performance.now} */
  now?: () => number;
}

/** A check's entry from the cache: the entry itself when fresh (a hit), else how it was obtained. */
export type Lookup = CacheEntry | Promise<{ entry: CacheEntry; result: CacheResult }>;

/**
 * The cache entry for a check's key: synchronous for a fresh entry (the hot path, no allocation),
 * else joined to the request in flight or fetched. Listeners other than HTTP use it too.
 */
export function lookup(cache: HealthCache, key: string): Lookup {
  return cache.peek(key) ?? cache.get(key);
}

const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const X_CACHE: Record<string, string> = { hit: "HIT", miss: "MISS", coalesced: "COALESCED" };
type CheckRoute = Extract<Route, { kind: "check" }>;

/** The handler: one route, at most one cache lookup, one response; it never throws. */
export function createHandler(options: HandlerOptions): Handler {
  const { cache, log, logformat } = options;
  const now = options.now ?? (() => performance.now());
  /** The response that needs no cache, if any. */
  const localResponse = (req: HealthRequest, route: Route): HealthResponse | undefined => {
    if (route.kind === "error") return errorResponse(route);
    if (req.hasBody) return jsonResponse(413, { error: "request body not allowed" });
    if (route.kind === "health") return jsonResponse(200, { healthy: true });
    if (route.kind === "metrics") return metricsResponse(options.metrics!());
    return undefined;
  };
  // A hit's response, per cache entry and age in seconds: hits allocate nothing.
  const hits = new WeakMap<CacheEntry, { age: number; res: HealthResponse }>();
  const cachedResponse = (req: HealthRequest, entry: CacheEntry, result: CacheResult) => {
    const age = Math.max(0, Math.floor((now() - entry.storedAt) / 1000));
    const options = req.method === "OPTIONS";
    const shared = result === "hit" && !options;
    if (shared) {
      const memo = hits.get(entry);
      if (memo?.age === age) return memo.res;
    }
    const res: HealthResponse = {
      status: entry.status,
      headers: { "content-type": JSON_TYPE, "x-cache": X_CACHE[result], age: String(age) },
      body: options ? "" : entry.body,
    };
    if (shared) {
      res.reused = true;
      hits.set(entry, { age, res });
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
    options.onResponse?.(route, req, res, cacheResult);
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
  /** Responds from a cache entry; an entry that records a backend failure counts as "error". */
  const fromCache = (
    req: HealthRequest,
    route: CheckRoute,
    started: number,
    entry: CacheEntry,
    result: CacheResult,
  ) => {
    if (log.enabled("debug")) {
      log.debug("cache", { key: route.key, result, status: entry.status, failure: entry.failure });
    }
    const res = cachedResponse(req, entry, result);
    return finish(req, route, started, res, entry.failure ? "error" : result);
  };
  return (req) => {
    const started = log.enabled("info") ? performance.now() : 0;
    const route = routeRequest(req.method, req.target, options.metrics !== undefined);
    try {
      const local = localResponse(req, route);
      if (local || route.kind !== "check") return finish(req, route, started, local!, "local");
      const found = lookup(cache, route.key);
      if (!(found instanceof Promise)) return fromCache(req, route, started, found, "hit");
      return found.then(
        ({ entry, result }) => fromCache(req, route, started, entry, result),
        (e) => finish(req, route, started, failed(req, e), "local"),
      );
    } catch (e) {
      return finish(req, route, started, failed(req, e), "local");
    }
  };
}

/** The handler of a metrics-only listener: `GET /metrics`, nothing else. */
export function metricsHandler(render: () => string): Handler {
  return (req) => {
    const route = routeRequest(req.method, req.target, true);
    return route.kind === "metrics"
      ? metricsResponse(render())
      : route.kind === "error"
      ? errorResponse(route)
      : jsonResponse(404, { error: "not found" });
  };
}

function metricsResponse(body: string): HealthResponse {
  return { status: 200, headers: { "content-type": METRICS_TYPE }, body };
}

function errorResponse(route: Extract<Route, { kind: "error" }>): HealthResponse {
  const res = jsonResponse(route.status, { error: route.message });
  if (route.allow) res.headers.allow = route.allow.join(", ");
  return res;
}
