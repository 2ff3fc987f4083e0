/**
 * Handler: route -> cache -> response (HTTP) or reply line (agent); every response rule in one
 * place, no socket needed.
 * @module
 */
import { attest, type Attested, type AttestOptions } from "./attest.ts";
import type { CacheEntry, CacheResult, HealthCache } from "./cache.ts";
import {
  type AgentHandler,
  type AgentRequest,
  type AnswerSource,
  type Handler,
  type HandlerResult,
  type HealthRequest,
  type HealthResponse,
  JSON_TYPE,
  jsonResponse,
} from "./health.ts";
import { formatAccessLine, type Logger } from "../log.ts";
import { LEADER_CHECK_ROLES, type Route, routeRequest } from "./routes.ts";

/** What the handler needs besides the request. */
export interface HandlerOptions {
  cache: HealthCache;
  log: Logger;
  /** The access log line's template (`frontend.logformat`), for the text log format. */
  accessLogTemplate: string;
  /** Renders `/metrics`, when served on the frontend. @default {undefined} (a 404) */
  metrics?: () => string;
  /** Called once per request, with the route, the response and how it was obtained. @default {undefined} */
  onResponse?: (
    route: Route,
    req: HealthRequest,
    res: HealthResponse,
    source: AnswerSource,
  ) => void;
  /** Monotonic clock in ms, the cache's (for the `age` header). @default {performance.now} */
  now?: () => number;
  /** The DCS witness beside the cache (with the same cache). @default {undefined} (Patroni alone) */
  witness?: AttestOptions;
}

/** A check's entry from the cache: the entry itself when fresh (a hit), else how it was obtained. */
type Lookup = CacheEntry | Promise<{ entry: CacheEntry; result: CacheResult }>;

/**
 * The cache entry for a check's key: synchronous for a fresh entry (the hot path, no allocation),
 * else joined to the request in flight or fetched. HTTP and agent checks both go through it.
 * `now` is a reading of the cache's clock the caller has anyway (else the cache reads it).
 */
export function lookup(cache: HealthCache, key: string, now?: number): Lookup {
  return cache.peek(key, now) ?? cache.get(key);
}

const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";
/** `X-Cache` of a check's answer, by how it was obtained. */
const X_CACHE: Record<CacheResult | "dcs", string> = {
  hit: "HIT",
  miss: "MISS",
  coalesced: "COALESCED",
  dcs: "DCS",
};

/** The response of a check the DCS answered: its 200 with the evidence, or its veto of a 200. */
function dcsResponse(
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

/** One HTTP check on its way through the handler: the request, its route, when it began. */
interface Exchange {
  req: HealthRequest;
  route: Route;
  /** performance.now() at the start, when the access log is written (else 0). */
  started: number;
}

/** The handler: one route, at most one cache lookup, one response; it never throws. */
export function createHandler(options: HandlerOptions): Handler {
  const responder = new HttpResponder(options);
  return (req) => responder.handle(req);
}

/** What {@linkcode createHandler} returns, as an object: every HTTP response rule. */
class HttpResponder {
  readonly #options: HandlerOptions;
  readonly #now: () => number;
  /** A hit's response, per cache entry and age in seconds: hits allocate nothing more. */
  readonly #hits = new WeakMap<CacheEntry, { age: number; res: HealthResponse }>();

  constructor(options: HandlerOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
  }

  handle(req: HealthRequest): HandlerResult {
    const { cache, log, metrics, witness } = this.#options;
    const started = log.enabled("info") ? performance.now() : 0;
    const x: Exchange = { req, route: routeRequest(req.method, req.target, !!metrics), started };
    try {
      const route = x.route;
      const local = this.#local(req, route);
      if (local || route.kind !== "check") return this.#finish(x, local!, "local");
      if (witness) return this.#witnessed(x, route, witness);
      const at = this.#now(); // one reading for the freshness check and a hit's age
      const found = lookup(cache, route.key, at);
      if (!(found instanceof Promise)) return this.#fromCache(x, found, "hit", at);
      return found.then(
        ({ entry, result }) => this.#fromCache(x, entry, result),
        (e) => this.#failed(x, e),
      );
    } catch (e) {
      return this.#failed(x, e);
    }
  }

  /** The response that needs no cache, if any. */
  #local(req: HealthRequest, route: Route): HealthResponse | undefined {
    if (route.kind === "error") return errorResponse(route);
    if (req.hasBody) return jsonResponse(413, { error: "request body not allowed" });
    if (route.kind === "health") return jsonResponse(200, { healthy: true });
    if (route.kind === "metrics") return metricsResponse(this.#options.metrics!());
    return undefined;
  }

  #witnessed(x: Exchange, route: CheckRoute, witness: AttestOptions): HandlerResult {
    const at = this.#now(); // as for a hit without the witness: one reading
    const answer = attest(witness, route.path, route.key, at);
    if (!(answer instanceof Promise)) return this.#fromAttested(x, answer, at);
    return answer.then((a) => this.#fromAttested(x, a), (e) => this.#failed(x, e));
  }

  /** Responds to a check the witness judged; `at`, a clock reading for a hit judged at once. */
  #fromAttested(x: Exchange, a: Attested, at?: number): HealthResponse {
    if (a.source === "patroni") return this.#fromCache(x, a.entry, a.result, at);
    const { log } = this.#options;
    if (log.enabled("debug")) {
      const why = a.status === 200 ? a.testimony.evidence : a.overruled;
      log.debug("dcs", { key: (x.route as CheckRoute).key, status: a.status, why });
    }
    return this.#finish(x, dcsResponse(a, x.req.method), "dcs");
  }

  /** Responds from a cache entry; an entry that records a backend failure counts as `error`. */
  #fromCache(x: Exchange, entry: CacheEntry, result: CacheResult, at?: number): HealthResponse {
    const { log } = this.#options;
    if (log.enabled("debug")) {
      const key = (x.route as CheckRoute).key;
      log.debug("cache", { key, result, status: entry.status, failure: entry.failure });
    }
    const res = this.#cached(x.req, entry, result, at ?? this.#now());
    return this.#finish(x, res, sourceOf(entry, result));
  }

  /** A cache entry's response; a hit's is shared by every hit of the same age (not for OPTIONS). */
  #cached(req: HealthRequest, entry: CacheEntry, result: CacheResult, now: number): HealthResponse {
    const age = Math.max(0, Math.floor((now - entry.storedAt) / 1000));
    const options = req.method === "OPTIONS";
    const shared = result === "hit" && !options;
    if (shared) {
      const memo = this.#hits.get(entry);
      if (memo?.age === age) return memo.res;
    }
    const res: HealthResponse = {
      status: entry.status,
      headers: { "content-type": JSON_TYPE, "x-cache": X_CACHE[result], age: String(age) },
      body: options ? "" : entry.body,
    };
    if (shared) {
      res.reused = true;
      this.#hits.set(entry, { age, res });
    }
    return res;
  }

  #failed(x: Exchange, e: unknown): HealthResponse {
    this.#options.log.error(`handler failed: ${(e as Error).message}`, { uri: x.req.target });
    return this.#finish(x, jsonResponse(500, { error: "internal error" }), "local");
  }

  /** Counts and logs the response, then hands it over. */
  #finish(x: Exchange, res: HealthResponse, source: AnswerSource): HealthResponse {
    const { log, accessLogTemplate, onResponse } = this.#options;
    onResponse?.(x.route, x.req, res, source);
    if (!log.enabled("info")) return res;
    const { req } = x;
    const durationMs = performance.now() - x.started;
    const record = {
      remote: req.remote,
      method: req.method,
      uri: req.target,
      status: res.status,
      cache: source,
    };
    if (log.format === "json") {
      log.info("request", { ...record, duration_ms: Number(durationMs.toFixed(3)) });
    } else log.info(formatAccessLine(accessLogTemplate, { ...record, durationMs }));
    return res;
  }
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
export type MismatchWord = typeof MISMATCH_WORDS[number];

/** The words `agent.mismatch` may be. */
export const MISMATCH_WORDS = ["maint", "drain"] as const;

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

/** How a check answered from `entry` was obtained: a recorded backend failure counts as `error`. */
function sourceOf(entry: CacheEntry, result: CacheResult): AnswerSource {
  return entry.failure ? "error" : result;
}

/** Longest `#` comment of a `down` reply. */
const MAX_COMMENT = 80;

/** `down #reason`, the reason made short, printable ASCII. */
export function downReply(reason: string): string {
  return `down #${reason.replace(/[^\x20-\x7e]/g, "?").slice(0, MAX_COMMENT)}`;
}

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
function attestedReply(a: Attested, mismatch: MismatchWord, path: string): string {
  if (a.source === "patroni") return agentReply(a.entry, mismatch, path);
  return a.status === 200 ? "up ready" : downReply(a.overruled);
}

/** The reply for a target that is not a Patroni health check, which never reaches Patroni. */
function refusedReply(route: Route): string {
  return downReply(
    route.kind === "error" && route.status !== 404 ? route.message : "not a health check",
  );
}

/** One agent check on its way: the request, the check's path (`other` when refused), the target, when it began. */
interface AgentExchange {
  req: AgentRequest;
  check: string;
  target: string;
  started: number;
}

/**
 * The agent handler: the line (or `defaultCheck`) goes through the HTTP allowlist as a `GET`, to
 * the same cache entry and single flight as an HTTP check; it never throws.
 */
export function createAgentResponder(options: AgentResponderOptions): AgentHandler {
  const responder = new AgentResponder(options);
  return (req) => responder.handle(req);
}

/** What {@linkcode createAgentResponder} returns, as an object: every agent reply rule. */
class AgentResponder {
  readonly #options: AgentResponderOptions;

  constructor(options: AgentResponderOptions) {
    this.#options = options;
  }

  handle(req: AgentRequest): string | Promise<string> {
    const { log, defaultCheck } = this.#options;
    const started = log.enabled("info") ? performance.now() : 0;
    const target = req.refused !== undefined ? req.line ?? "" : req.line || defaultCheck;
    const x: AgentExchange = { req, check: "other", target, started };
    if (req.refused !== undefined) return this.#finish(x, downReply(req.refused), "local");
    const route = routeRequest("GET", target, false);
    if (route.kind !== "check") return this.#finish(x, refusedReply(route), "local");
    x.check = route.path;
    try {
      return this.#answer(x, route);
    } catch (e) {
      return this.#failed(x, e);
    }
  }

  /** The reply from the cache (and the witness, when there is one). */
  #answer(x: AgentExchange, route: CheckRoute): string | Promise<string> {
    const { cache, mismatch, witness } = this.#options;
    const path = route.path;
    if (witness) {
      const reply = (a: Attested) =>
        this.#finish(
          x,
          attestedReply(a, mismatch, path),
          a.source === "dcs" ? "dcs" : sourceOf(a.entry, a.result),
        );
      const answer = attest(witness, path, route.key);
      if (!(answer instanceof Promise)) return reply(answer);
      return answer.then(reply, (e) => this.#failed(x, e));
    }
    const found = lookup(cache, route.key);
    if (!(found instanceof Promise)) {
      return this.#finish(x, agentReply(found, mismatch, path), sourceOf(found, "hit"));
    }
    return found.then(
      ({ entry, result }) =>
        this.#finish(x, agentReply(entry, mismatch, path), sourceOf(entry, result)),
      (e) => this.#failed(x, e),
    );
  }

  #failed(x: AgentExchange, e: unknown): string {
    this.#options.log.error(`agent check failed: ${(e as Error).message}`, { check: x.target });
    return this.#finish(x, downReply("internal error"), "local");
  }

  /** Counts and logs the reply, then hands it over. */
  #finish(x: AgentExchange, reply: string, source: AnswerSource): string {
    const { log, onResponse } = this.#options;
    const space = reply.indexOf(" ");
    onResponse?.(x.check, space === -1 ? reply : reply.slice(0, space));
    if (log.enabled("info")) {
      log.info("agent check", {
        remote: x.req.remote,
        check: x.target || undefined, // none for a line the listener refused
        cache: source,
        duration_ms: Number((performance.now() - x.started).toFixed(3)),
        reply,
      });
    }
    return reply;
  }
}
