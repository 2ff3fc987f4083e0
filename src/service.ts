/**
 * Service: wires a Config into backend, cache, handlers, listeners and metrics; reloads it in
 * place.
 * @module
 */
import { PatroniClient } from "./check/backend.ts";
import { HealthCache } from "./check/cache.ts";
import { type Config, describeChanges, reloadsFor } from "./config/config.ts";
import { type DcsConfig, dcsSettings, describeDcs } from "./config/dcs_config.ts";
import type { LogFormat } from "./log.ts";
import type { Reload } from "./config/schema.ts";
import type { DcsSettings, DcsView, DcsWatcher, DcsWatcherOptions } from "./dcs/view.ts";
import { Witness } from "./check/witness.ts";
import type { AttestOptions } from "./check/attest.ts";
import type { Identity } from "./check/backend.ts";
import { createAgentResponder, createHandler, metricsHandler } from "./check/handler.ts";
import type { AgentHandler, Handler, HealthRequest } from "./check/health.ts";
import { type HttpSpec, listen, type Listener, type ListenSpec } from "./net/listen.ts";
import type { Logger } from "./log.ts";
import { type DcsGauges, Metrics } from "./metrics.ts";
import type { Route } from "./check/routes.ts";

/** Starts a DCS watcher for some settings (one kind per module in src/dcs/). */
export type WatchFactory = (settings: DcsSettings, options: DcsWatcherOptions) => DcsWatcher;

/** What {@linkcode Service.start} takes besides the config. */
export interface ServiceOptions {
  /** Starts the DCS watcher of a `dcs:` section. @default {createWatcher of src/dcs/watch.ts, loaded only then} */
  watch?: WatchFactory;
  /** The log format whatever the config says (the -log-format flag). @default {undefined} (the config's `log-format`) */
  logFormat?: LogFormat;
}

/** The listeners a config may ask for, one slot each, as `patroniglue_open_connections` labels them. */
const SLOTS = ["frontend", "metrics", "agent"] as const;
type Slot = typeof SLOTS[number];

/** A slot a reload binds anew, opens or closes. */
interface Move {
  slot: Slot;
  /** What the slot serves under the previous config, and under the next (undefined: closed). */
  prev?: ListenSpec;
  next?: ListenSpec;
  /** The listener bound for `next`, to be swapped in. */
  bound?: Listener;
  /** The old listener's shutdown, begun before `bound` was bound on its address. */
  retiring?: Promise<void>;
}

/** The DCS witness while `dcs:` is configured: its watcher and the rules over its view. */
interface DcsWitness {
  watcher: DcsWatcher;
  /** The rules over the view, built with the handlers for the config they serve. */
  witness?: Witness;
  unsubscribe: () => void;
}

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
  readonly #listeners: Partial<Record<Slot, Listener>> = {};
  #dcs?: DcsWitness;
  /**
   * What is being closed and nobody waits for (the watcher of a reload that changed `dcs:`, a
   * listener a refused reload had closed), for stop() to wait on.
   */
  #closing: Promise<void> = Promise.resolve();
  /** The reload in progress (settled: never rejects), for stop() to wait on. */
  #reloading: Promise<unknown> = Promise.resolve();
  #watch?: WatchFactory;
  readonly #logFormat?: LogFormat;

  private constructor(config: Config, log: Logger, version: string, options: ServiceOptions) {
    this.#config = config;
    this.#log = log;
    this.#watch = options.watch;
    this.#logFormat = options.logFormat;
    this.metrics = new Metrics({
      version,
      startTime: Math.floor(Date.now() / 1000),
      cacheEntries: () => this.#cache.size,
      backendInFlight: () => this.#client.inFlight,
      dcs: () => this.#dcsGauges(),
      backendTimeout: () => this.#config.backend.timeout,
      openConnections: () => this.#openConnections(),
    });
  }

  /** Starts everything `config` describes; throws (having closed what it opened) when a listener cannot bind. */
  static async start(
    config: Config,
    log: Logger,
    version: string,
    options: ServiceOptions = {},
  ): Promise<Service> {
    const service = new Service(config, log, version, options);
    await service.#loadWatch(config);
    service.#build(config);
    try {
      for (const slot of SLOTS) {
        const spec = service.#spec(slot, config);
        if (spec) service.#listeners[slot] = await listen(spec, log);
      }
    } catch (e) {
      await service.stop();
      throw e;
    }
    return service;
  }

  /** The frontend listener. */
  get frontend(): Listener {
    return this.#listeners.frontend!;
  }

  /** Where agent checks are answered, and the check asked when HAProxy sends no line; unset without `agent.port`. */
  get agent(): { address: string; check: string } | undefined {
    const agent = this.#listeners.agent;
    return agent && { address: agent.address, check: this.#config.agent!.check };
  }

  /** Client connections open now on each listener running (the frontend's before it runs: 0). */
  #openConnections(): Record<string, number> {
    const open: Record<string, number> = { frontend: 0 };
    for (const slot of SLOTS) {
      const listener = this.#listeners[slot];
      if (listener) open[slot] = listener.connections;
    }
    return open;
  }

  /** What the listener in `slot` serves under `config`, and where; undefined when it has none. */
  #spec(slot: Slot, config: Config): ListenSpec | undefined {
    switch (slot) {
      case "frontend": {
        const { host, port, tls, tlsMinVersion } = config.frontend;
        const handle = (req: HealthRequest) => this.#handle(req);
        const cert = tls && { cert: tls.cert, key: tls.key, minVersion: tlsMinVersion };
        return { protocol: "http", host, port, handle, tls: cert };
      }
      case "agent": {
        if (!config.agent) return undefined;
        const { host, port } = config.agent;
        return { protocol: "agent", host, port, handle: (req) => this.#respondToAgent(req) };
      }
      case "metrics": {
        const where = config.metrics.enabled ? config.metrics.listener : undefined;
        if (!where) return undefined;
        const handle = metricsHandler(() => this.metrics.render());
        return { protocol: "http", host: where.host, port: where.port, handle };
      }
    }
  }

  /**
   * (Re)creates what `reloads` asks for (everything when undefined, at start): the backend client,
   * the cache, the sweeper, the DCS watcher; the handlers are made anew each time.
   */
  #build(config: Config, reloads?: ReadonlySet<Reload>): void {
    const needs = (r: Reload) => !reloads || reloads.has(r);
    const newCache = needs("client") || needs("cache");
    if (needs("client")) {
      this.#client?.close();
      this.#client = new PatroniClient(config.backend, this.#log);
    }
    if (newCache) this.#newCache(config);
    if (newCache || needs("sweeper")) {
      clearInterval(this.#sweeper);
      this.#sweeper = setInterval(() => this.#cache.sweep(), config.cache.interval * 1000);
    }
    if (needs("watcher")) this.#watchDcs(config.dcs);
    if (needs("log")) this.#log.format = this.#logFormat ?? config.logFormat;
    this.#newHandlers(config);
  }

  /** A new cache in front of the current client, its backend requests counted. */
  #newCache(config: Config): void {
    const client = this.#client;
    this.#cache?.close();
    this.#cache = new HealthCache({
      ttl: config.cache.ttl,
      maxEntries: config.cache.maxEntries,
      timeoutMs: config.backend.timeout * 1000,
      fetch: async (key, timeoutMs) => {
        const started = performance.now();
        const outcome = await client.fetchPatroniStatus(key, timeoutMs);
        const seconds = (performance.now() - started) / 1000;
        this.metrics.countBackend(routeLabel(key), outcome, seconds, started);
        if (outcome.ok && outcome.identity) this.#heardPatroni(outcome.identity);
        return outcome;
      },
      onRefreshAhead: (key) => this.metrics.countRefreshAhead(routeLabel(key)),
      onInvalidate: (key, by) => this.metrics.countInvalidation(routeLabel(key), routeLabel(by)),
    });
  }

  /** New handlers (HTTP and agent) over the current cache and witness: the next checks see `config`. */
  #newHandlers(config: Config): void {
    const dcs = this.#dcs;
    if (dcs && config.dcs) {
      const { watcher } = dcs;
      const { name, scope, margin } = config.dcs;
      dcs.witness = new Witness({ view: () => watcher.view(), name, scope, margin });
    }
    const witness: AttestOptions | undefined = dcs?.witness && {
      cache: this.#cache,
      witness: dcs.witness,
      patienceMs: config.backend.timeout * 1000 / 2,
      onAnswer: (path, status) => this.metrics.countDcsAnswer(path, status),
    };
    const metrics = this.metrics;
    this.#handle = createHandler({
      witness,
      cache: this.#cache,
      log: this.#log,
      accessLogTemplate: config.frontend.logformat,
      metrics: config.metrics.enabled && !config.metrics.listener
        ? () => metrics.render()
        : undefined,
      onResponse: (route, req, res, source) =>
        metrics.countRequest(routeName(route), req.method, res.status, source),
    });
    // Without an agent the last responder stays, for an agent listener that is closing.
    if (!config.agent) return;
    this.#respondToAgent = createAgentResponder({
      cache: this.#cache,
      log: this.#log,
      mismatch: config.agent.mismatch,
      defaultCheck: config.agent.check,
      onResponse: (check, word) => metrics.countAgentCheck(check, word),
      witness,
    });
  }

  /** Loads the DCS watchers when `config` first needs one: a config without `dcs:` never does. */
  async #loadWatch(config: Config): Promise<void> {
    if (config.dcs && !this.#watch) this.#watch = (await import("./dcs/watch.ts")).createWatcher;
  }

  /** (Re)starts the DCS watcher for `dcs`, or stops it when `dcs:` is gone. */
  #watchDcs(dcs: DcsConfig | undefined): void {
    const closing = this.#stopDcs();
    this.#closing = Promise.all([this.#closing, closing]).then(() => {});
    if (!dcs) return;
    const log = this.#log, metrics = this.metrics, where = describeDcs(dcs);
    let unreachable = false;
    const watcher = this.#watch!(dcsSettings(dcs), {
      onError: (failure, message) => {
        metrics.countDcsError(failure);
        if (!unreachable) log.warn(`DCS ${where} is unreachable: ${message}`);
        unreachable = true;
      },
      onRecover: () => {
        if (unreachable) log.notice(`DCS ${where} is reachable again`);
        unreachable = false;
      },
    });
    const unsubscribe = watcher.subscribe((view, previous) => {
      try {
        this.#heard(view, previous);
      } catch (e) {
        this.#log.error(`DCS view not applied: ${(e as Error).message}`);
      }
    });
    this.#dcs = { watcher, unsubscribe };
  }

  /** The DCS the witness watches (`etcd3 http://... /service/main (member node1)`); unset without `dcs:`. */
  get dcs(): string | undefined {
    return this.#dcs && this.#config.dcs && describeDcs(this.#config.dcs);
  }

  /** Patroni said who it is: a member or cluster other than the one watched silences the witness. */
  #heardPatroni(identity: Identity): void {
    const why = this.#dcs?.witness?.hear(identity);
    if (why) this.#log.error(`DCS witness silent: ${why}`);
  }

  /** A new DCS view: a change of the lock or of this member's role or state ends what it contradicts. */
  #heard(view: DcsView, previous: DcsView | undefined): void {
    const witness = this.#dcs?.witness;
    if (!witness) return;
    if (!previous) return this.#firstView(view, witness);
    const name = witness.name;
    const [was, is] = [previous.leader?.holder, view.leader?.holder];
    if (was !== is) {
      this.#log.notice(`DCS: leader lock ${was ?? "free"} -> ${is ?? "free"}`);
      this.#cache.invalidate(() => false, "dcs");
      return;
    }
    const [before, after] = [previous.members.get(name), view.members.get(name)];
    if (before?.role === after?.role && before?.state === after?.state) return;
    this.#log.notice(
      `DCS: member ${name} ${before?.role ?? "absent"}/${before?.state ?? "-"} -> ${
        after?.role ?? "absent"
      }/${after?.state ?? "-"}`,
    );
    this.#cache.invalidate(
      (member) => member?.role === after?.role && member?.state === after?.state,
      "dcs",
    );
  }

  /** Says what cannot work with the first view: a margin not below the ttl, no key for this member. */
  #firstView(view: DcsView, witness: Witness): void {
    const margin = witness.marginMs(view) / 1000;
    if (view.ttl !== undefined && margin >= view.ttl) {
      this.#log.warn(
        `dcs.margin ${margin} s is not below Patroni's ttl ${view.ttl} s: the DCS will never answer 200`,
      );
    }
    if (!view.members.has(witness.name)) {
      const known = [...view.members.keys()].join(", ") || "none";
      this.#log.warn(
        `DCS: no member key for ${witness.name} (members: ${known}): the witness neither vouches nor vetoes until there is one; check dcs.name`,
      );
    }
  }

  #dcsGauges(): DcsGauges | undefined {
    const { watcher, witness } = this.#dcs ?? {};
    if (!watcher || !witness) return undefined;
    const view = watcher.view();
    const now = performance.now();
    return {
      up: watcher.reachable ? 1 : 0,
      viewAgeSeconds: view ? Math.max(0, now - view.confirmedAt) / 1000 : -1,
      lockLeftSeconds: witness.lockLeftMs(view) / 1000,
      lockHeld: view?.leader?.holder === witness.name && witness.lockLeftMs(view) > 0 ? 1 : 0,
    };
  }

  #stopDcs(): Promise<void> {
    const dcs = this.#dcs;
    this.#dcs = undefined;
    if (!dcs) return Promise.resolve();
    dcs.unsubscribe();
    return dcs.watcher.close();
  }

  /** Applies a new, validated config without dropping connections; returns what changed. */
  reload(next: Config): Promise<string[]> {
    const reloading = this.#reload(next);
    this.#reloading = reloading.catch(() => {});
    return reloading;
  }

  async #reload(next: Config): Promise<string[]> {
    await this.#loadWatch(next);
    const prev = this.#config;
    const changes = describeChanges(prev, next);
    const reloads = reloadsFor(prev, next);
    const moves = SLOTS.filter((slot) => rebinds(slot, reloads, prev, next))
      .map((slot): Move => ({ slot, prev: this.#spec(slot, prev), next: this.#spec(slot, next) }));
    await this.#bind(moves);
    this.#build(next, reloads);
    const frontend = this.#spec("frontend", next) as HttpSpec;
    if (!moves.some((m) => m.slot === "frontend") && reloads.has("certificate") && frontend.tls) {
      this.frontend.setTls!(frontend.tls);
    }
    const retiring = moves.map((m) => {
      const old = this.#listeners[m.slot];
      if (m.bound) this.#listeners[m.slot] = m.bound;
      else delete this.#listeners[m.slot];
      return m.retiring ?? old?.shutdown();
    });
    this.#config = next;
    await (this.#closing = Promise.all([this.#closing, ...retiring]).then(() => {}));
    return changes;
  }

  /**
   * Binds what `moves` ask for: first those rebound on their own address (HTTPS turned on or off,
   * another minimum version), which must close first; then new addresses, while the old listeners
   * still serve, in slot order, so that a listener new to this reload (the agent's last) accepts
   * its first connection only once the reload's handlers are built. One that cannot be bound
   * refuses the reload: every step taken is undone and the old listeners serve on.
   */
  async #bind(moves: Move[]): Promise<void> {
    const undo: (() => Promise<void>)[] = [];
    try {
      for (const m of moves.filter(inPlace)) {
        await this.#rebindInPlace(m);
        undo.push(() => this.#restore(m));
      }
      for (const m of moves.filter((m) => m.next && !inPlace(m))) {
        const bound = m.bound = await listen(m.next!, this.#log);
        undo.push(() => bound.shutdown());
      }
    } catch (e) {
      // Every step, whatever another's fate: a listener left out would serve untracked.
      const undone = await Promise.allSettled(undo.map((step) => step()));
      const failed = undone.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) this.#log.error(`cannot restore a listener: ${(failed.reason as Error).message}`);
      throw e;
    }
  }

  /**
   * Binds `m.next` where the listener in `m.slot` (closed first) listened, trying for a while as
   * the port is freed; when it cannot, binds `m.prev` there again and throws.
   */
  async #rebindInPlace(m: Move): Promise<void> {
    m.retiring = this.#listeners[m.slot]!.shutdown();
    try {
      m.bound = await retrying(() => listen(m.next!, this.#log));
    } catch (e) {
      await this.#restore(m);
      throw e;
    }
  }

  /**
   * Puts a listener for `m.prev` back in its slot, on its address, the reload refused: what was
   * bound for `m.next` is closed; the old listener's shutdown is left for stop() to wait on.
   */
  async #restore(m: Move): Promise<void> {
    this.#closing = Promise.all([this.#closing, m.retiring]).then(() => {});
    await m.bound?.shutdown();
    m.bound = undefined;
    this.#listeners[m.slot] = await retrying(() => listen(m.prev!, this.#log));
  }

  /** Waits for a reload in progress, stops accepting, cancels backend requests, waits for responses in progress. */
  async stop(): Promise<void> {
    await this.#reloading;
    clearInterval(this.#sweeper);
    this.#cache.close();
    this.#client.close();
    await Promise.all([
      this.#stopDcs(),
      this.#closing,
      ...SLOTS.map((slot) => this.#listeners[slot]?.shutdown()),
    ]);
  }
}

/**
 * Whether a reload from `prev` to `next` binds the listener in `slot` anew, opens or closes it:
 * as the schema says, and the frontend when HTTPS is turned on or off.
 */
function rebinds(slot: Slot, reloads: ReadonlySet<Reload>, prev: Config, next: Config): boolean {
  return reloads.has(slot) || (slot === "frontend" && !prev.frontend.tls !== !next.frontend.tls);
}

/** Whether `m` binds where its slot's listener is bound now: it must close first. */
function inPlace(m: Move): boolean {
  return m.prev !== undefined && m.next !== undefined && sameAddress(m.prev, m.next);
}

/** Whether two listener configs name one host and port. */
function sameAddress(
  a: { host: string; port: number },
  b: { host: string; port: number },
): boolean {
  return a.host === b.host && a.port === b.port;
}

/** How long a port just closed may take to be free again for the same process. */
const REBIND_TRIES = 20, REBIND_PAUSE_MS = 50;

/** `bind()`, tried again while the address is still in use. */
async function retrying<T>(bind: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await bind();
    } catch (e) {
      if (attempt >= REBIND_TRIES || !/in use/i.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, REBIND_PAUSE_MS));
    }
  }
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
