// A controllable Patroni stand-in (role, lag, tags, delay, freeze, counts), shared by tests, demo and bench.

/** The member role the simulation plays. */
export type FakeRole = "primary" | "replica" | "standby_leader";

/** Options for {@linkcode FakePatroni.start}. */
export interface FakePatroniOptions {
  /** @default {"127.0.0.1"} */
  hostname?: string;
  /** @default {0} (any free port) */
  port?: number;
  /** @default {"primary"} */
  role?: FakeRole;
  /** Milliseconds each check takes (Patroni runs a SQL query per check). @default {0} */
  delayMs?: number;
  /** HTTPS with this certificate. @default {undefined} */
  tls?: { cert: string; key: string };
}

const UNITS: Record<string, number> = {
  "": 1,
  B: 1,
  KB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};

/** Parses Patroni's `?lag=` (bytes, or `16kB`, `10MB`, `1GB`); undefined when absent or bad. */
export function parseLag(value: string | null): number | undefined {
  const m = value?.match(/^(\d+)\s*([kKmMgGtT]?[bB]?)$/);
  return m ? Number(m[1]) * (UNITS[m[2].toUpperCase()] ?? 1) : undefined;
}

/** A simulated Patroni REST API on loopback. */
export class FakePatroni {
  role: FakeRole;
  delayMs: number;
  /** Replication lag in bytes (replica). */
  lagBytes = 0;
  /** Synchronous standby (replica). */
  sync = false;
  /** Member tags, for `?tag_key=value` and `noloadbalance`. */
  tags: Record<string, string> = {};
  /** The cluster it says it belongs to (`patroni.scope` in its body). */
  scope = "fake";
  /** Backend GETs received, by path+query as received. */
  readonly counts = new Map<string, number>();
  /** Distinct client connections seen (by remote port). */
  readonly connections = new Set<number>();
  /** Requests answered or in progress. */
  requests = 0;
  #frozen?: PromiseWithResolvers<void>;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly url: string;
  readonly port: number;

  private constructor(server: Deno.HttpServer<Deno.NetAddr>, options: FakePatroniOptions) {
    this.#server = server;
    this.role = options.role ?? "primary";
    this.delayMs = options.delayMs ?? 0;
    this.port = server.addr.port;
    this.url = `${options.tls ? "https" : "http"}://${server.addr.hostname}:${this.port}`;
  }

  /** Starts listening. */
  static start(options: FakePatroniOptions = {}): Promise<FakePatroni> {
    const ready = Promise.withResolvers<FakePatroni>();
    const box: { fake?: FakePatroni } = {};
    const server = Deno.serve({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      ...options.tls,
      onListen: () => queueMicrotask(() => ready.resolve(box.fake!)),
    }, (req, info) => box.fake!.#handle(req, info));
    box.fake = new FakePatroni(server, options);
    return ready.promise;
  }

  /** Requests received for one path+query (as sent). */
  count(target: string): number {
    return this.counts.get(target) ?? 0;
  }

  /** Holds every request until {@linkcode thaw}, as a SIGSTOPped Patroni does. */
  freeze(): void {
    this.#frozen ??= Promise.withResolvers<void>();
  }

  /** Releases held requests; they are answered with the state as it is now. */
  thaw(): void {
    this.#frozen?.resolve();
    this.#frozen = undefined;
  }

  /** The status Patroni would give for `path` and its query, in the current state. */
  statusFor(path: string, params: URLSearchParams): 200 | 503 {
    const primary = this.role === "primary";
    const leader = primary || this.role === "standby_leader";
    const maxLag = parseLag(params.get("lag"));
    const tagsMatch = [...params].every(([k, v]) =>
      !k.startsWith("tag_") || this.tags[k.slice(4)] === v
    );
    const replica = this.role === "replica" && this.tags.noloadbalance !== "true" &&
      (maxLag === undefined || this.lagBytes <= maxLag) && tagsMatch;
    const ok: Record<string, boolean> = {
      "/": primary,
      "/primary": primary,
      "/master": primary,
      "/read-write": primary,
      "/leader": leader,
      "/standby-leader": this.role === "standby_leader",
      "/replica": replica,
      "/read-only": leader || replica,
      "/sync": replica && this.sync,
      "/synchronous": replica && this.sync,
      "/read-only-sync": primary || (replica && this.sync),
      "/async": replica && !this.sync,
      "/asynchronous": replica && !this.sync,
      "/quorum": false,
      "/read-only-quorum": primary,
      "/liveness": true,
      "/readiness": leader ||
        (this.role === "replica" && (maxLag === undefined || this.lagBytes <= maxLag)),
      "/patroni": true,
    };
    return ok[path] ? 200 : 503;
  }

  /** The JSON body Patroni 3.x sends with every check. */
  body(): Record<string, unknown> {
    return {
      state: "running",
      role: this.role === "primary" ? "master" : this.role,
      server_version: 150010,
      timeline: 1,
      xlog: this.role === "primary" ? { location: 67108864 } : {
        received_location: 67108864 - this.lagBytes,
        replayed_location: 67108864 - this.lagBytes,
      },
      tags: this.tags,
      patroni: { version: "3.0.2", scope: this.scope },
    };
  }

  async #handle(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> {
    const url = new URL(req.url);
    const target = url.pathname + url.search;
    this.counts.set(target, this.count(target) + 1);
    this.connections.add(info.remoteAddr.port);
    this.requests++;
    while (this.#frozen) await this.#frozen.promise;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const status = this.statusFor(url.pathname, url.searchParams);
    return Response.json(this.body(), { status });
  }

  /** Stops listening (clients then see "connection refused"); held requests are released first. */
  async close(): Promise<void> {
    this.thaw();
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
