import assert from "node:assert/strict";
import { FlagError, FLAGS, type Flags, parseFlags, usage } from "../src/config/flags.ts";

Deno.test("flags: defaults follow the original ($HOME/.patroniglue.yml, warn level)", () => {
  const flags = parseFlags([], "/home/pg");
  assert.equal(flags.config, "/home/pg/.patroniglue.yml");
  assert.equal(flags.verbose || flags.debug || flags.quiet || flags.version || flags.help, false);
});

Deno.test("flags: every Go spelling of a value flag", () => {
  for (
    const args of [
      ["-config", "a.yml"],
      ["--config", "a.yml"],
      ["-config=a.yml"],
      ["--config=a.yml"],
    ]
  ) {
    assert.equal(parseFlags(args, "/h").config, "a.yml", args.join(" "));
  }
  assert.equal(parseFlags(["-config", "-weird.yml"], "/h").config, "-weird.yml");
  assert.equal(parseFlags(["-config="], "/h").config, "");
});

Deno.test("flags: booleans, with Go's explicit values", () => {
  assert.equal(parseFlags(["-verbose"], "/h").verbose, true);
  assert.equal(parseFlags(["--debug"], "/h").debug, true);
  assert.equal(parseFlags(["-quiet=true"], "/h").quiet, true);
  assert.equal(parseFlags(["-verbose=false"], "/h").verbose, false);
  assert.equal(parseFlags(["-version=1"], "/h").version, true);
  assert.equal(parseFlags(["-check-config"], "/h").checkConfig, true);
  assert.throws(
    () => parseFlags(["-verbose=yes"], "/h"),
    /invalid boolean value "yes" for -verbose/,
  );
});

Deno.test("flags: -h, -help and --help ask for usage", () => {
  for (const a of ["-h", "-help", "--help", "--h"]) assert.equal(parseFlags([a], "/h").help, true);
});

Deno.test("flags: unknown flags, missing values and stray arguments are refused", () => {
  assert.throws(() => parseFlags(["-x"], "/h"), new FlagError("flag provided but not defined: -x"));
  assert.throws(() => parseFlags(["--cofnig=a"], "/h"), /flag provided but not defined: -cofnig/);
  assert.throws(() => parseFlags(["-config"], "/h"), /flag needs an argument: -config/);
  assert.throws(() => parseFlags(["config.yml"], "/h"), /unexpected argument: config.yml/);
  assert.throws(() => parseFlags(["---config"], "/h"), /bad flag syntax/);
  assert.throws(() => parseFlags(["-"], "/h"), /unexpected argument/);
  assert.deepEqual(parseFlags(["-verbose", "--"], "/h").verbose, true);
  assert.throws(() => parseFlags(["--", "x"], "/h"), /unexpected argument: x/);
});

Deno.test("flags: usage lists every flag the Go way", () => {
  const text = usage("/h");
  assert.match(text, /^Usage of patroniglue:\n/);
  for (const f of ["-config string", "-verbose", "-debug", "-quiet", "-version", "-check-config"]) {
    assert.ok(text.includes(`  ${f}\n`), f);
  }
  assert.match(text, /\(default "\/h\/.patroniglue.yml"\)/);
});

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;

/** The parsed type is derived from the one declaration: each flag camelCased, with its type. */
const DERIVED: true = true satisfies Equal<
  Flags,
  {
    checkConfig: boolean;
    config: string;
    debug: boolean;
    logFormat: "text" | "json" | undefined;
    quiet: boolean;
    verbose: boolean;
    version: boolean;
    help: boolean;
  }
>;

Deno.test("flags: one declaration gives each flag its parsing, default, checks and usage line", () => {
  assert.equal(DERIVED, true);
  assert.deepEqual(parseFlags([], "/h"), {
    help: false,
    checkConfig: false,
    config: "/h/.patroniglue.yml",
    debug: false,
    logFormat: undefined,
    quiet: false,
    verbose: false,
    version: false,
  });
  assert.equal(parseFlags(["-log-format", "json"], "/h").logFormat, "json");
  assert.equal(parseFlags(["-log-format=text"], "/h").logFormat, "text");
  assert.throws(
    () => parseFlags(["-log-format=xml"], "/h"),
    new FlagError('invalid value "xml" for -log-format: must be text or json'),
  );
  const lines = usage("/h").split("\n");
  for (const name of Object.keys(FLAGS)) {
    assert.ok(lines.some((l) => l.startsWith(`  -${name}`)), name);
  }
});
