// Request targets that are not Patroni health checks: whatever the way in, never forwarded.

/** Unsafe, topology and unknown targets, and tricks on the raw target (encodings, dot segments, forms). */
export const NOT_A_CHECK: readonly string[] = [
  "/failover",
  "/restart",
  "/switchover",
  "/reload",
  "/patroni",
  "/config",
  "/cluster",
  "/history",
  "/../primary",
  "//primary",
  "%70rimary",
  "/%70rimary",
  "/primary%00",
  "/primary/",
  "primary",
  "*",
  "http://patroni.example/primary",
  "/health",
  "/metrics",
];
