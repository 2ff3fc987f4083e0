/**
 * Logging: levels, timestamps, text or JSON lines on stderr, and escaping of client-supplied text.
 * @module
 */
import type { AnswerSource } from "./check/health.ts";

/** Log levels, from the most to the least verbose. */
export type LogLevel = "debug" | "info" | "notice" | "warn" | "error";
/** Line formats: a human line or one JSON object per line. */
export type LogFormat = "text" | "json";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, notice: 2, warn: 3, error: 4 };
const encoder = new TextEncoder();

/** Extra structured fields for a log line. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** Options for {@linkcode Logger}. */
export interface LoggerOptions {
  /** Lowest level written; `notice` is for the few lifecycle lines (start, stop, reload). @default {"notice"} */
  level?: LogLevel;
  /** Line format. @default {"text"} */
  format?: LogFormat;
  /** Where lines go. @default {writes to stderr} */
  write?: (line: string) => void;
  /** Clock for timestamps. @default {Date.now} */
  now?: () => number;
}

/** Writes leveled, timestamped lines; a disabled level costs one comparison. */
export class Logger {
  level: LogLevel;
  format: LogFormat;
  readonly #write: (line: string) => void;
  readonly #now: () => number;

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? "notice";
    this.format = options.format ?? "text";
    this.#write = options.write ?? ((line) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
    this.#now = options.now ?? Date.now;
  }

  /** Whether a line at `level` would be written. */
  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= LEVEL_RANK[this.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log("info", msg, fields);
  }
  notice(msg: string, fields?: LogFields): void {
    this.log("notice", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log("error", msg, fields);
  }

  /** Writes one line if `level` is enabled. */
  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const time = new Date(this.#now()).toISOString();
    if (this.format === "json") {
      this.#write(JSON.stringify({ time, level, msg, ...fields }));
      return;
    }
    let line = `${time} ${level.toUpperCase()} ${escapeText(msg)}`;
    if (fields) {
      for (const [key, value] of Object.entries(fields)) {
        if (value !== undefined) line += ` ${key}=${escapeText(String(value))}`;
      }
    }
    this.#write(line);
  }
}

/** Escapes control characters, backslashes and non-ASCII so that client text cannot forge log lines. */
export function escapeText(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\uffff\\]/g, (c) => {
    if (c === "\\") return "\\\\";
    const code = c.charCodeAt(0);
    return code < 0x100
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** What an access-log line can show. */
export interface AccessRecord {
  /** Remote address, `ip:port`. */
  remote: string;
  method: string;
  /** The request target as received. */
  uri: string;
  status: number;
  durationMs: number;
  /** How the check was answered. */
  cache: AnswerSource;
}

/** The original's default access-log format. */
export const DEFAULT_LOG_FORMAT = "%a - %m %U";

/** Placeholders of `frontend.logformat`. */
export const LOG_FORMAT_PLACEHOLDERS = ["%a", "%m", "%U", "%s", "%D", "%C", "%%"] as const;

/** Renders `format` for one request; client-supplied text is escaped. */
export function formatAccessLine(format: string, r: AccessRecord): string {
  return format.replace(/%[amUsDC%]/g, (p) => {
    switch (p) {
      case "%a":
        return escapeText(r.remote);
      case "%m":
        return escapeText(r.method);
      case "%U":
        return escapeText(r.uri);
      case "%s":
        return String(r.status);
      case "%D":
        return r.durationMs.toFixed(1);
      case "%C":
        return r.cache;
      default:
        return "%";
    }
  });
}
