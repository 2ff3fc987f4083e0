// Command-line flags with Go `flag` semantics: -flag, --flag, -flag=value, -flag value.

/** Parsed command line. */
export interface Flags {
  /** Configuration file. @default {"$HOME/.patroniglue.yml"} */
  config: string;
  /** Access log (INFO). @default {false} */
  verbose: boolean;
  /** Cache and backend decisions (DEBUG). @default {false} */
  debug: boolean;
  /** Errors only; wins over -verbose and -debug, as in the original. @default {false} */
  quiet: boolean;
  /** Print the version and exit. @default {false} */
  version: boolean;
  /** Print usage and exit 0. @default {false} */
  help: boolean;
  /** Validate the configuration and the files it names, then exit. @default {false} */
  checkConfig: boolean;
  /** Log line format: text or json. @default {""} (the config's, else text) */
  logFormat: string;
}

/** A command line that Go's `flag` package would refuse (exit code 2). */
export class FlagError extends Error {
  override name = "FlagError";
}

type FlagSpec =
  & { name: string; usage: string }
  & ({ kind: "bool"; key: keyof Flags } | { kind: "string"; key: keyof Flags; arg: string });

const FLAG_SPECS: FlagSpec[] = [
  {
    name: "check-config",
    kind: "bool",
    key: "checkConfig",
    usage: "Validate the configuration file and exit",
  },
  { name: "config", kind: "string", key: "config", arg: "string", usage: "Configuration file" },
  { name: "debug", kind: "bool", key: "debug", usage: "Debug mode" },
  {
    name: "log-format",
    kind: "string",
    key: "logFormat",
    arg: "string",
    usage: "Log line format: text or json",
  },
  { name: "quiet", kind: "bool", key: "quiet", usage: "Quiet mode" },
  { name: "verbose", kind: "bool", key: "verbose", usage: "Verbose mode" },
  { name: "version", kind: "bool", key: "version", usage: "Print version" },
];

/** The default `-config` value, as the original: `$HOME/.patroniglue.yml`. */
export function defaultConfigPath(home: string | undefined): string {
  return `${home ?? ""}/.patroniglue.yml`;
}

/** Go-style usage text. */
export function usage(home: string | undefined): string {
  const lines = ["Usage of patroniglue:"];
  for (const spec of FLAG_SPECS) {
    lines.push(`  -${spec.name}${spec.kind === "string" ? ` ${spec.arg}` : ""}`);
    const def = spec.key === "config" ? ` (default "${defaultConfigPath(home)}")` : "";
    lines.push(`    \t${spec.usage}${def}`);
  }
  return lines.join("\n") + "\n";
}

const BOOL_VALUES: Record<string, boolean> = {
  "1": true,
  t: true,
  T: true,
  true: true,
  TRUE: true,
  True: true,
  "0": false,
  f: false,
  F: false,
  false: false,
  FALSE: false,
  False: false,
};

/** Parses `args` as Go's flag.Parse would; throws {@linkcode FlagError} on bad input. */
export function parseFlags(args: readonly string[], home: string | undefined): Flags {
  const flags: Flags = {
    config: defaultConfigPath(home),
    verbose: false,
    debug: false,
    quiet: false,
    version: false,
    help: false,
    checkConfig: false,
    logFormat: "",
  };
  const values = flags as unknown as Record<string, string | boolean>;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      if (i + 1 < args.length) throw new FlagError(`unexpected argument: ${args[i + 1]}`);
      break;
    }
    if (arg.length < 2 || arg[0] !== "-") throw new FlagError(`unexpected argument: ${arg}`);
    const body = arg.startsWith("--") ? arg.slice(2) : arg.slice(1);
    if (body === "" || body[0] === "-" || body[0] === "=") {
      throw new FlagError(`bad flag syntax: ${arg}`);
    }
    const eq = body.indexOf("=");
    const name = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    if (name === "help" || name === "h") {
      flags.help = true;
      continue;
    }
    const spec = FLAG_SPECS.find((s) => s.name === name);
    if (!spec) throw new FlagError(`flag provided but not defined: -${name}`);
    if (spec.kind === "bool") {
      if (inline === undefined) {
        values[spec.key] = true;
      } else if (inline in BOOL_VALUES) {
        values[spec.key] = BOOL_VALUES[inline];
      } else {
        throw new FlagError(`invalid boolean value "${inline}" for -${name}`);
      }
    } else if (inline !== undefined) {
      values[spec.key] = inline;
    } else if (i + 1 < args.length) {
      values[spec.key] = args[++i];
    } else {
      throw new FlagError(`flag needs an argument: -${name}`);
    }
  }
  return flags;
}
