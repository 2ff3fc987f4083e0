import assert from "node:assert/strict";
import {
  canonicalKey,
  HEALTH_CHECK_PATHS,
  MAX_QUERY_PARAMS,
  MAX_QUERY_ROUTES,
  routeRequest,
} from "../src/check/routes.ts";

Deno.test("routes: every Patroni health check is forwarded for GET, HEAD and OPTIONS", () => {
  assert.equal(HEALTH_CHECK_PATHS.size, 17);
  for (const path of HEALTH_CHECK_PATHS) {
    for (const method of ["GET", "HEAD", "OPTIONS"]) {
      assert.deepEqual(routeRequest(method, path, true), { kind: "check", path, key: path });
    }
  }
});

Deno.test("routes: /health is local; /metrics only when enabled on the frontend", () => {
  assert.deepEqual(routeRequest("GET", "/health", true), { kind: "health" });
  assert.deepEqual(routeRequest("GET", "/metrics", true), { kind: "metrics" });
  assert.equal(routeRequest("GET", "/metrics", false).kind, "error");
});

Deno.test("routes: state-changing and topology endpoints are never forwarded", () => {
  for (
    const path of [
      "/restart",
      "/reload",
      "/reinitialize",
      "/failover",
      "/switchover",
      "/config",
      "/cluster",
      "/history",
      "/metrics",
      "/patroni",
      "/failsafe",
      "/sigterm",
      "/citus",
      "/mpp",
    ]
  ) {
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]) {
      const route = routeRequest(method, path, false);
      assert.equal(route.kind, "error", `${method} ${path}`);
      assert.equal(route.kind === "error" && route.status, 404);
    }
  }
});

Deno.test("routes: other methods on a known path are 405 with Allow", () => {
  assert.deepEqual(routeRequest("POST", "/primary", true), {
    kind: "error",
    status: 405,
    message: "method not allowed",
    allow: ["GET", "HEAD", "OPTIONS"],
  });
  const metrics = routeRequest("DELETE", "/metrics", true);
  assert.deepEqual(metrics.kind === "error" && metrics.allow, ["GET", "HEAD"]);
});

Deno.test("routes: raw targets are never normalized, so tricks do not slip through", () => {
  for (
    const target of [
      "/../primary",
      "/x/../primary",
      "//primary",
      "/primary/",
      "/primary/..",
      "/PRIMARY",
      "/%70rimary",
      "*",
      "/*",
      "/primary%3F",
      "/primary;x",
      "http://evil/primary",
    ]
  ) {
    const route = routeRequest("GET", target, true);
    assert.equal(route.kind === "error" && route.status, 404, target);
  }
});

Deno.test("routes: query parameters are parsed, sorted and re-encoded into one cache key", () => {
  assert.equal(canonicalKey("/replica", "lag=10MB&tag_zone=a"), "/replica?lag=10MB&tag_zone=a");
  assert.equal(canonicalKey("/replica", "tag_zone=a&lag=10MB"), "/replica?lag=10MB&tag_zone=a");
  assert.equal(canonicalKey("/replica", "b=2&a=2&a=1"), "/replica?a=1&a=2&b=2");
  assert.equal(canonicalKey("/replica", "lag=%31%30MB"), "/replica?lag=10MB");
  assert.equal(canonicalKey("/replica", ""), "/replica");
  assert.equal(canonicalKey("/replica", "&&"), "/replica");
  const injected = canonicalKey("/replica", "lag=1%0d%0aHost:%20evil&x=/../config#frag");
  assert.equal(injected, "/replica?lag=1%0D%0AHost%3A+evil&x=%2F..%2Fconfig%23frag");
});

Deno.test("routes: limits on target length and parameter count", () => {
  const long = routeRequest("GET", "/replica?lag=" + "1".repeat(3000), true);
  assert.equal(long.kind === "error" && long.status, 414);
  const many = Array.from({ length: MAX_QUERY_PARAMS + 1 }, (_, i) => `tag_${i}=x`).join("&");
  const route = routeRequest("GET", `/replica?${many}`, true);
  assert.equal(route.kind === "error" && route.status, 400);
});

Deno.test("routes: a check with a query is parsed once per target met lately, every method alike; the memory of them is bounded", () => {
  const lag = routeRequest("GET", "/replica?lag=1MB", false);
  assert.deepEqual(lag, { kind: "check", path: "/replica", key: "/replica?lag=1MB" });
  assert.equal(routeRequest("HEAD", "/replica?lag=1MB", false), lag, "the same route object");
  const refused = routeRequest("POST", "/replica?lag=1MB", false);
  assert.equal(refused.kind === "error" && refused.status, 405, "the method is still checked");
  for (let i = 0; i < MAX_QUERY_ROUTES; i++) routeRequest("GET", `/replica?lag=${i}`, false);
  const again = routeRequest("GET", "/replica?lag=1MB", false);
  assert.deepEqual(again, lag);
  assert.notEqual(again, lag, "forgotten once that many other targets came");
});
