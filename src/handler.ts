// Handler: route -> cache -> response (HTTP) or reply line (agent); every response rule in one place, no socket needed.
import { attest, type Attested, type AttestOptions } from "./attest.ts";
import type { CacheEntry, CacheResult, HealthCache } from "./cache.ts";
import type { AgentConfig } from "./config.ts";
import {
  type AgentHandler,
  type AgentRequest,
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
  onResponse?: (route: Route, req: HealthRequest, res: HealthResponse, cacheResult: string) => void;
  /** Monotonic clock in ms, the cache's (for the `age` header). @default {performance.now} */
  now?: () => number;
  /** The DCS witness beside the cache (with the same cache). @default {undefined} (Patroni alone) */
  witness?: AttestOptions;
}

/** A check's entry from the cache: the entry itself when fresh (a hit), else how it was obtained. */
export type Lookup = CacheEntry | Promise<{ entry: CacheEntry; result: CacheResult }>;

/**
 * The cache entry for a check's key: synchronous for a fresh entry (the hot path, no allocation),
 * else joined to the request in flight or fetched. HTTP and agent checks both go through it.
 */
export function lookup(cache: HealthCache, key: string): Lookup {
  return cache.peek(key) ?? cache.get(key);
}

const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const X_CACHE: Record<string, string> = {
  hit: "HIT",
  miss: "MISS",
  coalesced: "COALESCED",
  dcs: "DCS",
};

/** How a check was answered, as `X-Cache`, the access log's `%C` and the metrics say it. */
export type AnswerSource = CacheResult | "dcs" | "error" | "local";

/** The response of a check the DCS answered: its 200 with the evidence, or its veto of a 200. */
export function dcsResponse(
  answer: Exclude<Attested, { source: "patroni" }>,
  method: string,
): HealthResponse {
  const body = answer.status === 200
    ? {
      source: "dcs",
      role: answer.testimony.member.role,
      state: answer.testimony.member.state,
      timeline: answer.testimony.member.timeline,
      dcs: answer.testimony.evidence,
      patroni: answer.entry ? `no answer (${answer.entry.failure})` : "asked again, no answer yet",
    }
    : { source: "dcs", error: answer.overruled };
  return {
    status: answer.status,
    headers: { "content-type": JSON_TYPE, "x-cache": X_CACHE.dcs, age: "0" },
    body: method === "OPTIONS" ? "" : JSON.stringify(body),
  };
}
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
  /** Responds to a check the witness judged. */
  const fromAttested = (req: HealthRequest, route: CheckRoute, started: number, a: Attested) => {
    if (a.source === "patroni") return fromCache(req, route, started, a.entry, a.result);
    if (log.enabled("debug")) {
      const why = a.status === 200 ? a.testimony.evidence : a.overruled;
      log.debug("dcs", { key: route.key, status: a.status, why });
    }
    return finish(req, route, started, dcsResponse(a, req.method), "dcs");
  };
  const witnessed = (req: HealthRequest, route: CheckRoute, started: number, w: AttestOptions) => {
    const answer = attest(w, route.path, route.key);
    if (!(answer instanceof Promise)) return fromAttested(req, route, started, answer);
    return answer.then(
      (a) => fromAttested(req, route, started, a),
      (e) => finish(req, route, started, failed(req, e), "local"),
    );
  };
  return (req) => {
    const started = log.enabled("info") ? performance.now() : 0;
    const route = routeRequest(req.method, req.target, options.metrics !== undefined);
    try {
      const local = localResponse(req, route);
      if (local || route.kind !== "check") return finish(req, route, started, local!, "local");
      if (options.witness) return witnessed(req, route, started, options.witness);
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

/** The word an agent check gets for a healthy member in another role (`agent.mismatch`). */
export type MismatchWord = AgentConfig["mismatch"];

/** What {@linkcode createAgentResponder} needs. */
export interface AgentResponderOptions {
  cache: HealthCache;
  log: Logger;
  /** `agent.mismatch`. */
  mismatch: MismatchWord;
  /** `agent.check`: asked when the client sends no line, or an empty one. */
  defaultCheck: string;
  /**
   * Called once per agent check with its path (the route's, or `other` when refused) and the
   * reply's word (`up`, `maint`, `drain`, `down`). @default {undefined}
   */
  onResponse?: (check: string, word: string) => void;
  /** The DCS witness beside the cache (with the same cache). @default {undefined} (Patroni alone) */
  witness?: AttestOptions;
}

/** Longest `#` comment of a `down` reply. */
const MAX_COMMENT = 80;

/** `down #reason`, the reason made short, printable ASCII. */
export function downReply(reason: string): string {
  return `down #${reason.replace(/[^\x20-\x7e]/g, "?").slice(0, MAX_COMMENT)}`;
}

const PRIMARY_ROLES = ["master", "primary"]; // Patroni before 4.0, and since
/** The leader checks, and the roles whose 503 there means the leader lock is missing. */
const LEADER_CHECK_ROLES: Readonly<Record<string, readonly string[]>> = {
  "/": PRIMARY_ROLES,
  "/primary": PRIMARY_ROLES,
  "/master": PRIMARY_ROLES,
  "/read-write": PRIMARY_ROLES,
  "/leader": [...PRIMARY_ROLES, "standby_leader"],
  "/standby-leader": ["standby_leader"],
};

/**
 * The agent reply for a cache entry of check `path`: Patroni's 200 is `up ready`; its 503 for a
 * running member in another role is `mismatch`; anything else is `down #<reason>` — also the 503
 * of a leader check from a member in the leader's role (it lost, or never got, the leader lock:
 * `drain` would keep its write sessions).
 */
export function agentReply(entry: CacheEntry, mismatch: MismatchWord, path: string): string {
  if (entry.failure) {
    return downReply(
      entry.failure === "invalid"
        ? "invalid patroni response"
        : `patroni unreachable (${entry.failure})`,
    );
  }
  if (entry.status === 200) return "up ready";
  const member = entry.member;
  if (entry.status !== 503 || member === undefined) return downReply("member state unknown");
  if (member.state !== "running") return downReply(`member ${member.state}`);
  if (LEADER_CHECK_ROLES[path]?.includes(member.role)) {
    return downReply(`${member.role} without the leader lock`);
  }
  return mismatch;
}

/** The agent reply for a witnessed check: the DCS's 200 is `up ready`, its veto `down #reason`. */
export function attestedReply(a: Attested, mismatch: MismatchWord, path: string): string {
  if (a.source === "patroni") return agentReply(a.entry, mismatch, path);
  return a.status === 200 ? "up ready" : downReply(a.overruled);
}

/** The reply for a target that is not a Patroni health check, which never reaches Patroni. */
function refusedReply(route: Route): string {
  return downReply(
    route.kind === "error" && route.status !== 404 ? route.message : "not a health check",
  );
}

/**
 * The agent handler: the line (or `defaultCheck`) goes through the HTTP allowlist as a `GET`, to
 * the same cache entry and single flight as an HTTP check; it never throws.
 */
export function createAgentResponder(options: AgentResponderOptions): AgentHandler {
  const { cache, log, mismatch, defaultCheck } = options;
  const finish = (
    req: AgentRequest,
    check: string,
    target: string,
    started: number,
    reply: string,
    cacheResult: string,
  ): string => {
    const space = reply.indexOf(" ");
    options.onResponse?.(check, space === -1 ? reply : reply.slice(0, space));
    if (log.enabled("info")) {
      log.info("agent check", {
        remote: req.remote,
        check: target || undefined, // none for a line the listener refused
        cache: cacheResult,
        duration_ms: Number((performance.now() - started).toFixed(3)),
        reply,
      });
    }
    return reply;
  };
  const failed = (req: AgentRequest, path: string, target: string, started: number, e: unknown) => {
    log.error(`agent check failed: ${(e as Error).message}`, { check: target });
    return finish(req, path, target, started, downReply("internal error"), "local");
  };
  return (req) => {
    const started = log.enabled("info") ? performance.now() : 0;
    if (req.refused !== undefined) {
      return finish(req, "other", req.line ?? "", started, downReply(req.refused), "local");
    }
    const target = req.line || defaultCheck;
    const route = routeRequest("GET", target, false);
    if (route.kind !== "check") {
      return finish(req, "other", target, started, refusedReply(route), "local");
    }
    const { path } = route;
    try {
      if (options.witness) {
        const reply = (a: Attested) =>
          finish(
            req,
            path,
            target,
            started,
            attestedReply(a, mismatch, path),
            a.source === "dcs" ? "dcs" : a.entry.failure ? "error" : a.result,
          );
        const answer = attest(options.witness, path, route.key);
        if (!(answer instanceof Promise)) return reply(answer);
        return answer.then(reply, (e) => failed(req, path, target, started, e));
      }
      const found = lookup(cache, route.key);
      if (!(found instanceof Promise)) {
        return finish(req, path, target, started, agentReply(found, mismatch, path), "hit");
      }
      return found.then(
        ({ entry, result }) =>
          finish(
            req,
            path,
            target,
            started,
            agentReply(entry, mismatch, path),
            entry.failure ? "error" : result,
          ),
        (e) => failed(req, path, target, started, e),
      );
    } catch (e) {
      return failed(req, path, target, started, e);
    }
  };
}
