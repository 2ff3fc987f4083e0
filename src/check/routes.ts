/**
 * Routes: the allowlist of Patroni health checks, allowed methods, and canonical cache keys.
 * @module
 */

/** Patroni's read-only health checks, forwarded as `GET path?query`. */
export const HEALTH_CHECK_PATHS: ReadonlySet<string> = new Set([
  "/",
  "/primary",
  "/master",
  "/leader",
  "/standby-leader",
  "/replica",
  "/read-write",
  "/read-only",
  "/read-only-sync",
  "/sync",
  "/synchronous",
  "/async",
  "/asynchronous",
  "/quorum",
  "/read-only-quorum",
  "/liveness",
  "/readiness",
]);

/** Patroni's primary roles: `master` before 4.0, `primary` since. */
const PRIMARY_ROLES: readonly string[] = ["master", "primary"];

/**
 * The leader checks: a member passes them only while it holds the leader lock, and reports one of
 * these roles in them.
 */
export const LEADER_CHECK_ROLES: Readonly<Record<string, readonly string[]>> = {
  "/": PRIMARY_ROLES,
  "/primary": PRIMARY_ROLES,
  "/master": PRIMARY_ROLES,
  "/read-write": PRIMARY_ROLES,
  "/leader": [...PRIMARY_ROLES, "standby_leader"],
  "/standby-leader": ["standby_leader"],
};

/** Methods a health check accepts; each is answered from one backend GET. */
export const CHECK_METHODS = ["GET", "HEAD", "OPTIONS"] as const;
const METRICS_METHODS = ["GET", "HEAD"] as const;

/** Longest request target accepted. */
export const MAX_TARGET_LENGTH = 2048;
/** Most query parameters accepted. */
export const MAX_QUERY_PARAMS = 16;

/** What a request maps to. */
export type Route =
  /** Forward to Patroni; `key` is the canonical `path?query`, also the backend target. */
  | { kind: "check"; path: string; key: string }
  | { kind: "health" }
  | { kind: "metrics" }
  | { kind: "error"; status: 400 | 404 | 405 | 414; message: string; allow?: readonly string[] };

const HEALTH_ROUTE: Route = { kind: "health" };
const METRICS_ROUTE: Route = { kind: "metrics" };
/** The routes of query-less checks, built once: the common request allocates no route. */
const PLAIN_CHECK_ROUTES: ReadonlyMap<string, Route> = new Map(
  [...HEALTH_CHECK_PATHS].map((path) => [path, { kind: "check", path, key: path }]),
);

/**
 * The routes of checks with a query, by raw target, for the targets met lately: a check repeated
 * with its query (`/replica?lag=1MB`) parses it once. Bounded: emptied when full.
 */
const QUERY_ROUTES = new Map<string, Route>();
/** The most targets {@linkcode QUERY_ROUTES} holds. */
export const MAX_QUERY_ROUTES = 256;

/** Maps a method and a raw request target to a route; never decodes or normalizes the path. */
export function routeRequest(method: string, target: string, metricsOnFrontend: boolean): Route {
  if (target.length > MAX_TARGET_LENGTH) {
    return {
      kind: "error",
      status: 414,
      message: `request target longer than ${MAX_TARGET_LENGTH} bytes`,
    };
  }
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? "" : target.slice(q + 1);
  const isMetrics = path === "/metrics" && metricsOnFrontend;
  const allowed = isMetrics
    ? METRICS_METHODS
    : HEALTH_CHECK_PATHS.has(path) || path === "/health"
    ? CHECK_METHODS
    : undefined;
  if (!allowed) return { kind: "error", status: 404, message: "not found" };
  if (!(allowed as readonly string[]).includes(method)) {
    return { kind: "error", status: 405, message: "method not allowed", allow: allowed };
  }
  if (isMetrics) return METRICS_ROUTE;
  if (path === "/health") return HEALTH_ROUTE;
  if (query === "") return PLAIN_CHECK_ROUTES.get(path)!;
  let route = QUERY_ROUTES.get(target);
  if (route) return route;
  const key = canonicalKey(path, query);
  route = typeof key === "string" ? { kind: "check", path, key } : key;
  if (QUERY_ROUTES.size >= MAX_QUERY_ROUTES) QUERY_ROUTES.clear();
  QUERY_ROUTES.set(target, route);
  return route;
}

/** `path?query` with parameters parsed, sorted by name then value, and re-encoded. */
export function canonicalKey(path: string, query: string): string | Route {
  if (query === "") return path;
  let params: [string, string][];
  try {
    params = [...new URLSearchParams(query)];
  } catch {
    return { kind: "error", status: 400, message: "malformed query string" };
  }
  if (params.length > MAX_QUERY_PARAMS) {
    return {
      kind: "error",
      status: 400,
      message: `more than ${MAX_QUERY_PARAMS} query parameters`,
    };
  }
  if (params.length === 0) return path;
  params.sort(([ak, av], [bk, bv]) => ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0);
  return `${path}?${new URLSearchParams(params)}`;
}
