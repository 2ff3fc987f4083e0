/**
 * patroniglue: parse flags, load the config, start the service, reload on SIGHUP, stop on
 * SIGTERM/SIGINT.
 * @module
 */
import denoJson from "./deno.json" with { type: "json" };
import { type Config, ConfigError, loadConfig } from "./src/config/config.ts";
import { inspectDcs } from "./src/config/dcs_config.ts";
import { FlagError, type Flags, parseFlags, usage } from "./src/config/flags.ts";
import { Logger, type LogLevel } from "./src/log.ts";
import { Service } from "./src/service.ts";
import { installLeanTimers } from "./src/timers.ts";

/** The version, from deno.json (the single source). */
export const VERSION: string = denoJson.version;

/** How long a shutdown may wait for answers in progress. */
const SHUTDOWN_MS = 5000;

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
  if (flags.help) console.error(usage(home));
  if (flags.version) console.log(VERSION);
  if (flags.help || flags.version) return 0;
  const log = new Logger({ level: logLevel(flags), format: flags.logFormat });
  const config = await loadOrExplain(flags.config, log, "cannot start");
  if (!config) return 1;
  log.format = flags.logFormat ?? config.logFormat;
  for (const warning of config.warnings) log.warn(warning);
  if (flags.checkConfig) return await checkConfig(config);
  return await serve(config, flags, log);
}

/** A valid config, or undefined with every problem logged after `prefix`. */
async function loadOrExplain(file: string, log: Logger, prefix: string) {
  try {
    return await loadConfig(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const problem of e.problems) log.error(`${prefix}: ${problem}`);
    return undefined;
  }
}

/** -check-config: the config is valid; what the DCS says, when it is configured. */
async function checkConfig(config: Config): Promise<number> {
  console.log("configuration OK");
  if (config.dcs) {
    console.log(await inspectDcs(config.dcs));
  }
  return 0;
}

/**
 * Runs the service until SIGTERM or SIGINT. Signals are taken before the ports open: a SIGTERM
 * sent as soon as a port answers stops cleanly, a SIGHUP during the start reloads once it is done.
 */
async function serve(config: Config, flags: Flags, log: Logger): Promise<number> {
  const stopping = Promise.withResolvers<string>();
  const started = Promise.withResolvers<Service>();
  let reloading = Promise.resolve();
  const signals = [
    ...(["SIGTERM", "SIGINT"] as const).map((s) => [s, () => stopping.resolve(s)] as const),
    ["SIGHUP", () => {
      reloading = Promise.all([started.promise, reloading]).then(([s]) => reload(s, flags, log));
    }] as const,
  ];
  for (const [s, h] of signals) Deno.addSignalListener(s, h);
  const unlisten = () => signals.forEach(([s, h]) => Deno.removeSignalListener(s, h));
  let service: Service;
  try {
    service = await Service.start(config, log, VERSION, { logFormat: flags.logFormat });
  } catch (e) {
    unlisten();
    log.error(`cannot start: ${(e as Error).message}`);
    return 1;
  }
  log.notice(`patroniglue ${VERSION} ${whereAndWhat(service, config)}`);
  started.resolve(service);
  const signal = await stopping.promise;
  unlisten();
  log.notice(`${signal}: shutting down`);
  const deadline = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), SHUTDOWN_MS));
  if (await Promise.race([service.stop().then(() => "stopped"), deadline]) === "timeout") {
    log.warn(`shutdown took longer than ${SHUTDOWN_MS / 1000}s; exiting anyway`);
  }
  log.notice("stopped");
  return 0;
}

/** `listening on URL, checking ...; agent checks on ...; DCS witness: ...`, for the start line. */
function whereAndWhat(service: Service, config: Config): string {
  const { backend } = config;
  return `listening on ${service.frontend.url}, checking ${backend.scheme}://${backend.host}:${backend.port} (ttl ${config.cache.ttl}s, timeout ${backend.timeout}s)${
    extras(service)
  }`;
}

/** Where agent checks are answered and which DCS is watched, for the start and reload lines. */
function extras(service: Service): string {
  const agent = service.agent;
  const dcs = service.dcs ? `; DCS witness: ${service.dcs}` : "";
  return (agent ? `; agent checks on ${agent.address} (default ${agent.check})` : "") + dcs;
}

/** SIGHUP: reads the config again and applies it, or keeps the running one and says why. */
async function reload(service: Service, flags: Flags, log: Logger): Promise<void> {
  log.notice(`SIGHUP: reloading ${flags.config}`);
  const refused = "reload refused, keeping the running configuration";
  const next = await loadOrExplain(flags.config, log, refused);
  if (!next) return;
  for (const warning of next.warnings) log.warn(warning);
  try {
    const changes = await service.reload(next);
    log.notice(
      changes.length
        ? `reloaded; ${changes.join("; ")}; listening on ${service.frontend.url}${extras(service)}`
        : "reloaded; nothing changed",
    );
  } catch (e) {
    log.error(`${refused}: ${(e as Error).message}`);
  }
}

if (import.meta.main) {
  installLeanTimers(); // before anything starts a timer: node:timers is never loaded
  Deno.exit(await main(Deno.args));
}
