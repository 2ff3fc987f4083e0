// Service: wires a Config into backend, cache, handlers, listeners and metrics; reloads it in place.
import { type AgentListener, listenAgent } from "./agent.ts";
import { PatroniClient } from "./backend.ts";
import { HealthCache } from "./cache.ts";
import { type AgentConfig, type Config, describeChanges } from "./config.ts";
import { createAgentResponder, createHandler, metricsHandler } from "./handler.ts";
import type { AgentHandler, Handler } from "./health.ts";
import { listen, type Listener } from "./listen.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import type { Route } from "./routes.ts";

/** A running patroniglue: listeners, the pipeline behind them, and its metrics. */
export class Service {
  #config: Config;
  readonly #log: Logger;
  readonly metrics: Metrics;
  #client!: PatroniClient;
  #cache!: HealthCache;
  #handle!: Handler;
  #respondToAgent!: AgentHandler;
  #sweeper?: ReturnType<typeof setInterval>;
  #frontend?: Listener;
  #metricsListener?: Listener;
  #agent?: AgentListener;

  private constructor(config: Config, log: Logger, version: string) {
    this.#config = config;
    this.#log = log;
    this.metrics = new Metrics({
      version,
      startTime: Math.floor(Date.now() / 1000),
      cacheEntries: () => this.#cache.size,
      backendInFlight: () => this.#client.inFlight,
      backendTimeout: () => this.#config.backend.timeout,
      openConnections: () => this.#openConnections(),
    });
  }

  /** Starts everything `config` describes; throws (having closed what it opened) when a listener cannot bind. */
  static async start(config: Config, log: Logger, version: string): Promise<Service> {
    const service = new Service(config, log, version);
    service.#build(config);
    try {
      service.#frontend = await listen(config.frontend, (req) => service.#handle(req), log);
      if (config.metrics.enabled && config.metrics.listener) {
        service.#metricsListener = await service.#listenMetrics(config);
      }
      if (config.agent) service.#agent = service.#listenAgent(config.agent);
    } catch (e) {
      await service.stop();
      throw e;
    }
    return service;
  }

  /** The frontend listener. */
  get frontend(): Listener {
    return this.#frontend!;
  }

  /** Where agent checks are answered, and the check asked when HAProxy sends no line; unset without `agent.port`. */
  get agent(): { address: string; check: string } | undefined {
    return this.#agent && { address: this.#agent.address, check: this.#config.agent!.check };
  }

  /** Client connections open now on each listener running. */
  #openConnections(): Record<string, number> {
    const open: Record<string, number> = { frontend: this.#frontend?.connections ?? 0 };
    if (this.#agent) open.agent = this.#agent.connections;
    if (this.#metricsListener) open.metrics = this.#metricsListener.connections;
    return open;
  }

  #listenAgent(agent: AgentConfig): AgentListener {
    return listenAgent(agent, (req) => this.#respondToAgent(req), this.#log);
  }

  #listenMetrics(config: Config): Promise<Listener> {
    const { host, port } = config.metrics.listener!;
    return listen(
      { host, port, tlsMinVersion: "TLSv1.2" },
      metricsHandler(() => this.metrics.render()),
      this.#log,
    );
  }

  /** (Re)creates the parts that `config` changes from `prev`: the backend client, the cache, the handlers. */
  #build(config: Config, prev?: Config): void {
    const newBackend = !prev || JSON.stringify(prev.backend) !== JSON.stringify(config.backend);
    const newCache = newBackend || changed(prev!.cache, config.cache, ["ttl", "maxEntries"]);
    if (newBackend) {
      this.#client?.close();
      this.#client = new PatroniClient(config.backend, this.#log);
    }
    if (newCache) {
      const client = this.#client;
      this.#cache?.close();
      this.#cache = new HealthCache({
        ttl: config.cache.ttl,
        maxEntries: config.cache.maxEntries,
        timeoutMs: config.backend.timeout * 1000,
        fetch: async (key, timeoutMs) => {
          const started = performance.now();
          const outcome = await client.fetchPatroniStatus(key, timeoutMs);
          this.metrics.countBackend(routeLabel(key), outcome, (performance.now() - started) / 1000);
          return outcome;
        },
        onRefreshAhead: (key) => this.metrics.countRefreshAhead(routeLabel(key)),
        onInvalidate: (key, by) => this.metrics.countInvalidation(routeLabel(key), routeLabel(by)),
      });
    }
    if (newCache || prev!.cache.interval !== config.cache.interval) {
      clearInterval(this.#sweeper);
      this.#sweeper = setInterval(() => this.#cache.sweep(), config.cache.interval * 1000);
    }
    this.#handle = createHandler({
      cache: this.#cache,
      log: this.#log,
      logformat: config.frontend.logformat,
      metrics: config.metrics.enabled && !config.metrics.listener
        ? () => this.metrics.render()
        : undefined,
      onResponse: (route, req, res, cacheResult) =>
        this.metrics.countRequest(routeName(route), req.method, res.status, cacheResult),
    });
    // Without an agent the last responder stays, for an agent listener that is closing.
    if (config.agent) {
      this.#respondToAgent = createAgentResponder({
        cache: this.#cache,
        log: this.#log,
        mismatch: config.agent.mismatch,
        defaultCheck: config.agent.check,
        onResponse: (check, word) => this.metrics.countAgentCheck(check, word),
      });
    }
  }

  /** Applies a new, validated config without dropping connections; returns what changed. */
  async reload(next: Config): Promise<string[]> {
    const prev = this.#config;
    const changes = describeChanges(prev, next);
    const rebind = changed(prev.frontend, next.frontend, ["host", "port", "tlsMinVersion"]) ||
      !prev.frontend.tls !== !next.frontend.tls;
    const metricsMoved = JSON.stringify(prev.metrics) !== JSON.stringify(next.metrics);
    const agentMoved = prev.agent?.host !== next.agent?.host ||
      prev.agent?.port !== next.agent?.port;
    let frontend = this.#frontend!, metricsListener = this.#metricsListener, agent = this.#agent;
    // New addresses are bound before the old listeners close; one that cannot be refuses the reload.
    const opened: { shutdown(): Promise<void> }[] = [];
    try {
      if (rebind) {
        opened.push(frontend = await listen(next.frontend, (req) => this.#handle(req), this.#log));
      }
      if (metricsMoved) {
        metricsListener = next.metrics.enabled && next.metrics.listener
          ? await this.#listenMetrics(next)
          : undefined;
        if (metricsListener) opened.push(metricsListener);
      }
      if (agentMoved) {
        agent = next.agent && this.#listenAgent(next.agent);
        if (agent) opened.push(agent);
      }
    } catch (e) {
      await Promise.all(opened.map((l) => l.shutdown()));
      throw e;
    }
    this.#build(next, prev);
    if (!rebind && next.frontend.tls && prev.frontend.tls) {
      const [a, b] = [prev.frontend.tls, next.frontend.tls];
      if (a.cert !== b.cert || a.key !== b.key) frontend.setCertificate!(b.cert, b.key);
    }
    if (rebind) {
      const old = this.#frontend!;
      this.#frontend = frontend;
      await old.shutdown();
    }
    if (metricsMoved) {
      const old = this.#metricsListener;
      this.#metricsListener = metricsListener;
      await old?.shutdown();
    }
    if (agentMoved) {
      const old = this.#agent;
      this.#agent = agent;
      await old?.shutdown();
    }
    this.#config = next;
    return changes;
  }

  /** Stops accepting, cancels backend requests, waits for responses in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#cache.close();
    this.#client.close();
    await Promise.all([
      this.#frontend?.shutdown(),
      this.#metricsListener?.shutdown(),
      this.#agent?.shutdown(),
    ]);
  }
}

function changed<T extends object>(a: T, b: T, keys: (keyof T)[]): boolean {
  return keys.some((k) => a[k] !== b[k]);
}

function routeLabel(key: string): string {
  const q = key.indexOf("?");
  return q === -1 ? key : key.slice(0, q);
}

function routeName(route: Route): string {
  switch (route.kind) {
    case "check":
      return route.path;
    case "health":
      return "/health";
    case "metrics":
      return "/metrics";
    default:
      return "other";
  }
}
