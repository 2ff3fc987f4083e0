// patroniglue: parse flags, load the config, start the service, reload on SIGHUP, stop on SIGTERM/SIGINT.
import denoJson from "./deno.json" with { type: "json" };
import { type Config, ConfigError, loadConfig } from "./src/config.ts";
import { FlagError, type Flags, parseFlags, usage } from "./src/flags.ts";
import { Logger, type LogLevel } from "./src/log.ts";
import { Service } from "./src/service.ts";
import { installLeanTimers } from "./src/timers.ts";

/** The version, from deno.json (the single source). */
export const VERSION: string = denoJson.version;

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
    if (!["", "text", "json"].includes(flags.logFormat)) {
      throw new FlagError(
        `invalid value "${flags.logFormat}" for -log-format: must be text or json`,
      );
    }
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
  const log = new Logger({
    level: logLevel(flags),
    format: flags.logFormat === "json" ? "json" : "text",
  });
  const load = async (): Promise<Config> => {
    const config = await loadConfig(flags.config);
    if (flags.logFormat === "") log.format = config.logFormat;
    for (const warning of config.warnings) log.warn(warning);
    return config;
  };
  let config: Config;
  try {
    config = await load();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const problem of e.problems) log.error(`cannot start: ${problem}`);
    return 1;
  }
  if (flags.checkConfig) {
    console.log("configuration OK");
    return 0;
  }

  // Listened for before the service starts: a SIGTERM that comes as soon as the port answers (a
  // supervisor stopping it at once) stops it cleanly instead of killing it.
  const stopping = Promise.withResolvers<string>();
  const signals = ["SIGTERM", "SIGINT"] as const;
  const handlers = signals.map((s) => [s, () => stopping.resolve(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  const unlisten = () => {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  };

  let service: Service;
  try {
    service = await Service.start(config, log, VERSION);
  } catch (e) {
    unlisten();
    log.error(`cannot start: ${(e as Error).message}`);
    return 1;
  }
  const { backend } = config;
  /** Where agent checks are answered, for the start and reload lines. */
  const agentChecks = () => {
    const agent = service.agent;
    return agent ? `; agent checks on ${agent.address} (default ${agent.check})` : "";
  };
  log.notice(
    `patroniglue ${VERSION} listening on ${service.frontend.url}, checking ${backend.scheme}://${backend.host}:${backend.port} (ttl ${config.cache.ttl}s, timeout ${backend.timeout}s)${agentChecks()}`,
  );

  let reloading = Promise.resolve();
  const reload = async () => {
    log.notice(`SIGHUP: reloading ${flags.config}`);
    let next: Config;
    try {
      next = await load();
    } catch (e) {
      const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
      for (const p of problems) {
        log.error(`reload refused, keeping the running configuration: ${p}`);
      }
      return;
    }
    try {
      const changes = await service.reload(next);
      log.notice(
        changes.length
          ? `reloaded; ${changes.join("; ")}; listening on ${service.frontend.url}${agentChecks()}`
          : "reloaded; nothing changed",
      );
    } catch (e) {
      log.error(`reload refused, keeping the running configuration: ${(e as Error).message}`);
    }
  };
  const onHangup = () => {
    reloading = reloading.then(reload);
  };
  Deno.addSignalListener("SIGHUP", onHangup);

  const signal = await stopping.promise;
  unlisten();
  Deno.removeSignalListener("SIGHUP", onHangup);
  log.notice(`${signal}: shutting down`);
  const deadline = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5000));
  if (await Promise.race([service.stop().then(() => "stopped"), deadline]) === "timeout") {
    log.warn("shutdown took longer than 5s; exiting anyway");
  }
  log.notice("stopped");
  return 0;
}

if (import.meta.main) {
  installLeanTimers(); // before anything starts a timer: node:timers is never loaded
  Deno.exit(await main(Deno.args));
}
