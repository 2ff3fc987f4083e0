/**
 * Command-line flags with Go `flag` semantics (-flag, --flag, -flag=value, -flag value), declared
 * once: the parsed type, the defaults, the checks and the usage text all come from {@linkcode FLAGS}.
 * @module
 */
import { type Camel, camel } from "./schema.ts";

/** A flag with a value: its usage line's argument name and, when it has a fixed set, the choices. */
interface ValueFlag<C extends string = string> {
  kind: "string";
  /** The argument's name in the usage (`-config string`). */
  arg: string;
  usage: string;
  /** The only values accepted. @default {undefined} (any) */
  choices?: readonly C[];
}

/** A flag that is true when given (or given `=true`, `=1`, ...). */
interface BoolFlag {
  kind: "bool";
  usage: string;
}

/** Every flag, by its name on the command line, in the order `-help` lists them. */
export const FLAGS = {
  "check-config": { kind: "bool", usage: "Validate the configuration file and exit" },
  config: { kind: "string", arg: "string", usage: "Configuration file" },
  debug: { kind: "bool", usage: "Debug mode" },
  "log-format": {
    kind: "string",
    arg: "string",
    usage: "Log line format: text or json",
    choices: ["text", "json"],
  },
  quiet: { kind: "bool", usage: "Quiet mode" },
  verbose: { kind: "bool", usage: "Verbose mode" },
  version: { kind: "bool", usage: "Print version" },
} as const satisfies Record<string, BoolFlag | ValueFlag>;

type FlagValue<F> = F extends BoolFlag ? boolean
  : F extends { choices: readonly (infer C)[] } ? C | undefined
  : string;

/**
 * The parsed command line: each flag of {@linkcode FLAGS} camelCased (`check-config` ->
 * `checkConfig`), plus `help` (`-h`, `-help`). `config` defaults to `$HOME/.patroniglue.yml`; a
 * flag with choices is undefined when not given.
 */
export type Flags = { [K in keyof Parsed]: Parsed[K] };
type Parsed =
  & { -readonly [K in keyof typeof FLAGS as Camel<K>]: FlagValue<typeof FLAGS[K]> }
  & { help: boolean };

/** A command line that Go's `flag` package would refuse (exit code 2). */
export class FlagError extends Error {
  override name = "FlagError";
}

/** The default `-config` value, as the original: `$HOME/.patroniglue.yml`. */
export function defaultConfigPath(home: string | undefined): string {
  return `${home ?? ""}/.patroniglue.yml`;
}

/** Go-style usage text. */
export function usage(home: string | undefined): string {
  const lines = ["Usage of patroniglue:"];
  for (const [name, flag] of Object.entries(FLAGS) as [string, BoolFlag | ValueFlag][]) {
    lines.push(`  -${name}${flag.kind === "string" ? ` ${flag.arg}` : ""}`);
    const def = name === "config" ? ` (default "${defaultConfigPath(home)}")` : "";
    lines.push(`    \t${flag.usage}${def}`);
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

/** One argument split as Go does: `--name=value` -> name and the inline value, if any. */
function splitFlag(arg: string): { name: string; inline?: string } {
  const body = arg.startsWith("--") ? arg.slice(2) : arg.slice(1);
  if (body === "" || body[0] === "-" || body[0] === "=") {
    throw new FlagError(`bad flag syntax: ${arg}`);
  }
  const eq = body.indexOf("=");
  return eq === -1 ? { name: body } : { name: body.slice(0, eq), inline: body.slice(eq + 1) };
}

/** A flag's value from its inline text or the next argument (`take`). */
function valueOf(
  name: string,
  flag: BoolFlag | ValueFlag,
  inline: string | undefined,
  take: () => string | undefined,
): string | boolean {
  if (flag.kind === "bool") {
    if (inline === undefined) return true;
    if (inline in BOOL_VALUES) return BOOL_VALUES[inline];
    throw new FlagError(`invalid boolean value "${inline}" for -${name}`);
  }
  const value = inline ?? take();
  if (value === undefined) throw new FlagError(`flag needs an argument: -${name}`);
  if (flag.choices && !flag.choices.includes(value)) {
    throw new FlagError(
      `invalid value "${value}" for -${name}: must be ${flag.choices.join(" or ")}`,
    );
  }
  return value;
}

/** Parses `args` as Go's flag.Parse would; throws {@linkcode FlagError} on bad input. */
export function parseFlags(args: readonly string[], home: string | undefined): Flags {
  const values: Record<string, string | boolean | undefined> = { help: false };
  for (const [name, flag] of Object.entries(FLAGS)) {
    values[camel(name)] = flag.kind === "bool" ? false : undefined;
  }
  values.config = defaultConfigPath(home);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      if (i + 1 < args.length) throw new FlagError(`unexpected argument: ${args[i + 1]}`);
      break;
    }
    if (arg.length < 2 || arg[0] !== "-") throw new FlagError(`unexpected argument: ${arg}`);
    const { name, inline } = splitFlag(arg);
    if (name === "help" || name === "h") {
      values.help = true;
      continue;
    }
    const flag: BoolFlag | ValueFlag | undefined = Object.hasOwn(FLAGS, name)
      ? FLAGS[name as keyof typeof FLAGS]
      : undefined;
    if (!flag) throw new FlagError(`flag provided but not defined: -${name}`);
    values[camel(name)] = valueOf(name, flag, inline, () => args[++i]);
  }
  return values as Flags;
}
