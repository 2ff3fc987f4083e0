// patroniglue: parse flags, load the config, wire cache, backend and frontend, serve until a signal.
import denoJson from "./deno.json" with { type: "json" };
import { type Config, ConfigError, loadConfig } from "./src/config.ts";
import { FlagError, type Flags, parseFlags, usage } from "./src/flags.ts";
import { Logger, type LogLevel } from "./src/log.ts";
import { PatroniClient } from "./src/backend.ts";
import { HealthCache } from "./src/cache.ts";
import { createHandler, listen, type Listener } from "./src/frontend.ts";

/** The version, from deno.json (the single source). */
export const VERSION: string = denoJson.version;

/** A running patroniglue. */
export interface Patroniglue {
  readonly frontend: Listener;
  /** Stops accepting, cancels backend requests, closes everything. */
  stop(): Promise<void>;
}

/** Starts the proxy described by `config`. */
export async function startPatroniglue(config: Config, log: Logger): Promise<Patroniglue> {
  const client = new PatroniClient(config.backend);
  const cache = new HealthCache({
    ttl: config.cache.ttl,
    maxEntries: config.cache.maxEntries,
    fetch: (key) => client.fetchPatroniStatus(key),
  });
  const handle = createHandler({ cache, log, logformat: config.frontend.logformat });
  const sweeper = setInterval(() => cache.sweep(), config.cache.interval * 1000);
  let frontend: Listener;
  try {
    frontend = await listen(config.frontend, handle, log);
  } catch (e) {
    clearInterval(sweeper);
    client.close();
    throw e;
  }
  return {
    frontend,
    async stop() {
      clearInterval(sweeper);
      client.close();
      await frontend.shutdown();
    },
  };
}

function logLevel(flags: Flags): LogLevel {
  if (flags.quiet) return "error";
  if (flags.verbose) return "info";
  if (flags.debug) return "debug";
  return "notice";
}

/** Runs the command line; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const home = Deno.env.get("HOME");
  let flags: Flags;
  try {
    flags = parseFlags(args, home);
  } catch (e) {
    if (!(e instanceof FlagError)) throw e;
    console.error(`${e.message}\n${usage(home)}`);
    return 2;
  }
  if (flags.help) {
    console.error(usage(home));
    return 0;
  }
  if (flags.version) {
    console.log(VERSION);
    return 0;
  }
  if (flags.logFormat !== "" && flags.logFormat !== "text" && flags.logFormat !== "json") {
    console.error(
      `invalid value "${flags.logFormat}" for -log-format: must be text or json\n${usage(home)}`,
    );
    return 2;
  }
  const log = new Logger({
    level: logLevel(flags),
    format: flags.logFormat === "json" ? "json" : "text",
  });
  let config: Config;
  try {
    config = await loadConfig(flags.config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const problem of e.problems) log.error(`cannot start: ${problem}`);
    return 1;
  }
  if (flags.logFormat === "") log.format = config.logFormat;
  for (const warning of config.warnings) log.warn(warning);
  if (flags.checkConfig) {
    console.log("configuration OK");
    return 0;
  }

  let glue: Patroniglue;
  try {
    glue = await startPatroniglue(config, log);
  } catch (e) {
    log.error(`cannot start: ${(e as Error).message}`);
    return 1;
  }
  const backend = `${config.backend.scheme}://${config.backend.host}:${config.backend.port}`;
  log.notice(
    `patroniglue ${VERSION} listening on ${glue.frontend.url}, checking ${backend} (ttl ${config.cache.ttl}s, timeout ${config.backend.timeout}s)`,
  );

  const stopping = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const onSignal = Object.fromEntries(
    signals.map((s) => [s, () => stopping.resolve(s)]),
  ) as Record<Deno.Signal, () => void>;
  for (const s of signals) Deno.addSignalListener(s, onSignal[s]);
  const signal = await stopping.promise;
  for (const s of signals) Deno.removeSignalListener(s, onSignal[s]);
  log.notice(`${signal}: shutting down`);
  const deadline = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5000));
  const result = await Promise.race([glue.stop().then(() => "stopped" as const), deadline]);
  if (result === "timeout") log.warn("shutdown took longer than 5s; exiting anyway");
  log.notice("stopped");
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
