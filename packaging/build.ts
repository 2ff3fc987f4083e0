// Release build: `deno compile` main.ts per target into dist/, then a .tar.gz each and SHA256SUMS.
//
//   deno task build [--target TRIPLE|OS-ARCH]... [--dist DIR]
//
// The permission set is deno.json's "permissions.default", passed with -P (never -A), so the
// binary gets what `deno task start` and the tests get. `deno compile` downloads its base runtime
// (denort) unless DENORT_BIN names one; when neither works the build says so in one line and
// exits non-zero, and it never keeps a file that is not a patroniglue binary for its target.
import denoJson from "../deno.json" with { type: "json" };
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";

/** One platform the release ships, named as the Go original named it. */
export interface Target {
  /** Rust target triple, as `deno compile --target` takes it. */
  triple: string;
  os: "linux" | "darwin";
  arch: "amd64" | "arm64";
}

/** Every target a release ships. */
export const TARGETS: readonly Target[] = [
  { triple: "x86_64-unknown-linux-gnu", os: "linux", arch: "amd64" },
  { triple: "aarch64-unknown-linux-gnu", os: "linux", arch: "arm64" },
  { triple: "x86_64-apple-darwin", os: "darwin", arch: "amd64" },
  { triple: "aarch64-apple-darwin", os: "darwin", arch: "arm64" },
];

/** The version, from deno.json (the single source). */
export const VERSION: string = denoJson.version;

/** Files shipped beside the binary when present: [path in the repo, name in the archive]. */
export const EXTRAS: readonly (readonly [string, string])[] = [
  ["config.yml.example", "config.yml.example"],
  ["packaging/patroniglue.service", "patroniglue.service"],
  ["README.md", "README.md"],
  ["LICENSE", "LICENSE"],
];

/** A build failure; its message is one line, printed after `build: `. */
export class BuildError extends Error {
  override name = "BuildError";
}

/** The target for a triple (`x86_64-unknown-linux-gnu`) or a short name (`linux-amd64`). */
export function findTarget(name: string): Target | undefined {
  return TARGETS.find((t) => t.triple === name || `${t.os}-${t.arch}` === name);
}

/** The target this process runs on, if it is one a release ships. */
export function hostTarget(): Target | undefined {
  return findTarget(Deno.build.target);
}

/** `patroniglue-VERSION-OS-ARCH`: the directory in dist/ and in the archive, and the archive's stem. */
export function distName(version: string, target: Target): string {
  return `patroniglue-${version}-${target.os}-${target.arch}`;
}

/** V8 flags baked into the binary, as `deno task start` passes them. V8's memory-saving heuristics
 * (a small young generation, memory-reducing full GCs) and no TurboFan tier (Maglev at most) keep RSS
 * under sustained load near 55 MiB instead of 67–74; throughput drops a few per cent (see bench/). */
export const V8_FLAGS = "--v8-flags=--optimize-for-size,--max-opt=2";

/** The `deno` arguments that compile main.ts for `target`: the permissions come from deno.json (-P). */
export function compileArgs(target: Target, output: string): string[] {
  return [
    "compile",
    "-q",
    "-P",
    V8_FLAGS,
    "--target",
    target.triple,
    "--output",
    output,
    "main.ts",
  ];
}

/** Compiles patroniglue for `target` into the file `output`; throws {@linkcode BuildError}. */
export type CompileStep = (target: Target, output: string) => Promise<void>;

/** What {@linkcode build} does. */
export interface BuildOptions {
  /** The repository: main.ts, deno.json and the {@linkcode EXTRAS}. */
  root: string;
  /** Where outputs go. */
  dist: string;
  version: string;
  targets: readonly Target[];
  compile: CompileStep;
  /** Modification time of archive entries, in seconds since the epoch. @default {now} */
  mtime?: number;
  /** Progress lines. @default {console.log} */
  log?: (line: string) => void;
}

/** What {@linkcode build} made, as paths relative to `dist`. */
export interface BuildResult {
  archives: string[];
  /** The SHA256SUMS text (it lists every archive of this version in `dist`). */
  sums: string;
}

/** Compiles each target, archives it and writes `SHA256SUMS`; stops at the first failure. */
export async function build(options: BuildOptions): Promise<BuildResult> {
  const { root, dist, version, targets, compile } = options;
  const log = options.log ?? console.log;
  const mtime = options.mtime ?? Math.floor(Date.now() / 1000);
  await Deno.mkdir(dist, { recursive: true });
  const archives: string[] = [];
  for (const target of targets) {
    const name = distName(version, target);
    const dir = `${dist}/${name}`;
    await removeIfPresent(dir);
    await removeIfPresent(`${dist}/${name}.tar.gz`);
    await Deno.mkdir(dir);
    try {
      await compile(target, `${dir}/patroniglue`);
    } catch (e) {
      await removeIfPresent(dir);
      throw e;
    }
    const entries: TarEntry[] = [
      { name: `${name}/`, mode: 0o755, mtime },
      { name: `${name}/patroniglue`, mode: 0o755, mtime, file: `${dir}/patroniglue` },
    ];
    for (const [from, to] of EXTRAS) {
      try {
        await Deno.copyFile(`${root}/${from}`, `${dir}/${to}`);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue;
        throw e;
      }
      entries.push({ name: `${name}/${to}`, mode: 0o644, mtime, file: `${dir}/${to}` });
    }
    await writeTarGz(`${dist}/${name}.tar.gz`, entries);
    archives.push(`${name}.tar.gz`);
    log(`build: ${dist}/${name}.tar.gz`);
  }
  const sums = await writeSha256Sums(dist, version);
  log(`build: ${dist}/SHA256SUMS`);
  return { archives, sums };
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Lowercase hex SHA-256 of a file. */
export async function sha256File(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `name` is a release file of `version`: an archive, a .deb or an .rpm. */
export function isReleaseFile(name: string, version: string): boolean {
  return (name.startsWith(`patroniglue-${version}-`) &&
    (name.endsWith(".tar.gz") || name.endsWith(".rpm"))) ||
    (name.startsWith(`patroniglue_${version}_`) && name.endsWith(".deb"));
}

/**
 * Writes `dist/SHA256SUMS` (`sha256sum` format) for every release file of `version` there: the
 * `patroniglue-VERSION-*.tar.gz` archives and the packages (`deno task package`).
 */
export async function writeSha256Sums(dist: string, version: string): Promise<string> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dist)) {
    if (entry.isFile && isReleaseFile(entry.name, version)) names.push(entry.name);
  }
  names.sort();
  let text = "";
  for (const name of names) text += `${await sha256File(`${dist}/${name}`)}  ${name}\n`;
  await Deno.writeTextFile(`${dist}/SHA256SUMS`, text);
  return text;
}

/** One member of a tar archive: a directory when `name` ends in `/`, else the contents of `file`. */
export interface TarEntry {
  name: string;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  file?: string;
}

/** Writes a gzip-compressed POSIX ustar archive; owner root, fixed order, so builds reproduce. */
export async function writeTarGz(path: string, entries: readonly TarEntry[]): Promise<void> {
  async function* chunks(): AsyncGenerator<Uint8Array<ArrayBuffer>> {
    for (const entry of entries) {
      const data = entry.file === undefined ? new Uint8Array() : await Deno.readFile(entry.file);
      yield tarHeader(entry, data.length);
      if (data.length === 0) continue;
      yield data;
      const pad = (512 - (data.length % 512)) % 512;
      if (pad) yield new Uint8Array(pad);
    }
    yield new Uint8Array(1024);
  }
  const out = await Deno.open(path, { write: true, create: true, truncate: true });
  await ReadableStream.from(chunks())
    .pipeThrough(new CompressionStream("gzip"))
    .pipeTo(out.writable);
}

function tarHeader(entry: TarEntry, size: number): Uint8Array<ArrayBuffer> {
  const header = new Uint8Array(512);
  const enc = new TextEncoder();
  const put = (offset: number, length: number, text: string) => {
    const bytes = enc.encode(text);
    if (bytes.length > length) throw new BuildError(`tar: ${entry.name}: field too long`);
    header.set(bytes, offset);
  };
  const octal = (offset: number, length: number, value: number) =>
    put(offset, length, value.toString(8).padStart(length - 1, "0") + "\0");
  const dir = entry.name.endsWith("/");
  put(0, 100, entry.name);
  octal(100, 8, entry.mode);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, dir ? 0 : size);
  octal(136, 12, entry.mtime);
  put(148, 8, "        ");
  put(156, 1, dir ? "5" : "0");
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  put(265, 32, "root");
  put(297, 32, "root");
  const sum = header.reduce((a, b) => a + b, 0);
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return header;
}

/** The OS and architecture an executable is built for, from its first bytes (ELF or Mach-O 64). */
export function binaryKind(head: Uint8Array): Pick<Target, "os" | "arch"> | undefined {
  if (head.length < 20) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46) {
    if (head[4] !== 2 || head[5] !== 1) return undefined; // 64-bit, little-endian
    const machine = view.getUint16(18, true);
    if (machine === 62) return { os: "linux", arch: "amd64" };
    if (machine === 183) return { os: "linux", arch: "arm64" };
    return undefined;
  }
  if (view.getUint32(0, true) === 0xfeedfacf) {
    const cpu = view.getUint32(4, true);
    if (cpu === 0x01000007) return { os: "darwin", arch: "amd64" };
    if (cpu === 0x0100000c) return { os: "darwin", arch: "arm64" };
  }
  return undefined;
}

/** The first 64 bytes of a file (an executable's header). */
export async function readHead(path: string): Promise<Uint8Array> {
  using file = await Deno.open(path);
  const head = new Uint8Array(64);
  const n = await file.read(head);
  return head.subarray(0, n ?? 0);
}

/** Text only the deno CLI carries (its `deno compile --help`), never denort. */
const DENO_CLI_MARKER = "Compile the script into a self contained executable";

/** Whether `path` is the deno CLI: a base binary made from it runs deno, not patroniglue. */
export async function isDenoCli(path: string): Promise<boolean> {
  return Buffer.from(await Deno.readFile(path)).includes(DENO_CLI_MARKER);
}

/**
 * Checks `DENORT_BIN` before compiling and picks the targets it can build: the one it was built for
 * when none is asked for, else the ones asked for, which must all match it.
 */
export async function checkDenortBin(
  path: string,
  asked: readonly Target[] | undefined,
): Promise<Target[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new BuildError(
        `DENORT_BIN=${path}: no such file; set it to a denort binary (deno ${Deno.version.deno}) or unset it to download denort`,
      );
    }
    throw new BuildError(`DENORT_BIN=${path}: cannot read it: ${(e as Error).message}`);
  }
  if (!info.isFile) throw new BuildError(`DENORT_BIN=${path}: not a file`);
  const kind = binaryKind(await readHead(path));
  if (!kind) {
    throw new BuildError(
      `DENORT_BIN=${path}: not a denort executable for any of ${
        TARGETS.map((t) => `${t.os}-${t.arch}`).join(", ")
      }`,
    );
  }
  const own = TARGETS.find((t) => t.os === kind.os && t.arch === kind.arch)!;
  for (const target of asked ?? []) {
    if (target !== own) {
      throw new BuildError(
        `DENORT_BIN=${path} is a ${own.os}-${own.arch} binary: it cannot build ${target.triple}`,
      );
    }
  }
  if (await isDenoCli(path)) {
    throw new BuildError(
      `DENORT_BIN=${path} is the deno CLI, not denort: it would make a binary that is not patroniglue`,
    );
  }
  return [own];
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** One line saying why `deno compile` failed, from its stderr. */
export function explainCompileFailure(target: Target, stderr: string): string {
  const text = stderr.replace(ANSI, "");
  const missing = text.match(/Could not find denort at '([^']*)'/)?.[1];
  if (missing !== undefined) {
    return `DENORT_BIN=${missing}: no such file; set it to a denort binary or unset it to download denort`;
  }
  const causes = [...text.matchAll(/^\s*\d+: (.+)$/gm)].map((m) => m[1].trim());
  const error = text.match(/^error: (.+)$/m)?.[1].trim();
  if (/Setting up base binary|denort-|dl\.deno\.land/.test(text)) {
    const offline =
      /dns error|failed to lookup|Connect|connection refused|timed out|network is unreachable/i
        .test(text);
    const why = offline ? "no internet access" : (causes.at(-1) ?? error ?? "download failed");
    return `cannot get denort for ${target.triple}: ${why}; set DENORT_BIN to a denort binary`;
  }
  const why = [error, causes.at(-1)].filter(Boolean).join(": ") || "no error message";
  return `deno compile failed for ${target.triple}: ${why}`;
}

/** Checks that `path` is patroniglue for `target`: its format, and `-version` where it can run. */
export async function verifyBinary(path: string, target: Target, version: string): Promise<void> {
  const kind = binaryKind(await readHead(path));
  if (kind?.os !== target.os || kind.arch !== target.arch) {
    throw new BuildError(
      `the compiled file for ${target.triple} is not a ${target.os}-${target.arch} executable`,
    );
  }
  if (hostTarget() === target) await checkVersion(path, version);
}

/** Runs `path -version` (for at most `timeoutMs`) and checks that it prints `version`. */
export async function checkVersion(
  path: string,
  version: string,
  timeoutMs = 30_000,
): Promise<void> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(path, {
      args: ["-version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    throw new BuildError(`cannot run ${path}: ${(e as Error).message}`);
  }
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output().finally(() => clearTimeout(timer));
  const decode = (b: Uint8Array) => new TextDecoder().decode(b).replace(ANSI, "").trim();
  const printed = decode(out.stdout) || decode(out.stderr).split("\n")[0];
  if (out.code !== 0 || printed !== version) {
    const how = out.signal ? `killed by ${out.signal}` : `exit ${out.code}`;
    throw new BuildError(
      `${path} is not patroniglue ${version}: -version printed ${JSON.stringify(printed)} (${how})`,
    );
  }
}

/** The real compile step: `deno compile -P` in `root`, then {@linkcode verifyBinary}. */
export function denoCompile(root: string, version: string): CompileStep {
  return async (target, output) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: compileArgs(target, output),
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (out.code !== 0) {
      throw new BuildError(explainCompileFailure(target, new TextDecoder().decode(out.stderr)));
    }
    await verifyBinary(output, target, version);
  };
}

const USAGE = `usage: deno task build [--target TARGET]... [--dist DIR]
  --target  build only this target (repeatable): ${
  TARGETS.map((t) => `${t.triple} or ${t.os}-${t.arch}`).join(", ")
}
  --dist    output directory (default: dist, in the working directory)
  env DENORT_BIN        a denort binary for the target, instead of downloading it
  env SOURCE_DATE_EPOCH modification time of archive entries (default: now)`;

/**
 * Reads `--flag value` and `--flag=value` arguments in order (`--` is skipped): `take` is called with
 * each flag and a reader of its value, and returns false for a flag it does not know.
 */
export function readFlags(
  args: readonly string[],
  usage: string,
  take: (flag: string, value: () => string) => boolean,
): void {
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].includes("=") ? args[i].split(/=(.*)/s, 2) : [args[i]];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new BuildError(`${flag} needs a value\n${usage}`);
      return v;
    };
    if (flag !== "--" && !take(flag, value)) {
      throw new BuildError(`unknown argument ${JSON.stringify(args[i])}\n${usage}`);
    }
  }
}

/** Parses the command line: `undefined` targets means every target (or DENORT_BIN's). */
export function parseArgs(args: readonly string[]): { targets?: Target[]; dist: string } {
  let targets: Target[] | undefined;
  let dist = "dist";
  readFlags(args, USAGE, (flag, value) => {
    if (flag === "--target" || flag === "-target") {
      const name = value();
      const target = findTarget(name);
      if (!target) throw new BuildError(`unknown target ${JSON.stringify(name)}\n${USAGE}`);
      targets ??= [];
      if (!targets.includes(target)) targets.push(target);
    } else if (flag === "--dist") dist = value();
    else return false;
    return true;
  });
  return { targets, dist };
}

/**
 * A release tool's command line: `--help`, then `parse` (its error: one line after `name: ` and the
 * usage, exit 2), then `act` with the repository root (a {@linkcode BuildError}: one line, exit 1).
 */
export async function commandLine<T>(
  name: string,
  usage: string,
  args: readonly string[],
  parse: (args: readonly string[]) => T,
  act: (parsed: T, root: string) => Promise<void>,
): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usage);
    return 0;
  }
  let parsed: T;
  try {
    parsed = parse(args);
  } catch (e) {
    console.error(`${name}: ${(e as Error).message}`);
    return 2;
  }
  const root = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
  try {
    await act(parsed, root);
    return 0;
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    console.error(`${name}: ${e.message}`);
    return 1;
  }
}

/** A path from the command line, made absolute against the working directory. */
export function absolutePath(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/** `SOURCE_DATE_EPOCH`, when it is set to a positive integer. */
export function sourceDateEpoch(): number | undefined {
  const epoch = Number(Deno.env.get("SOURCE_DATE_EPOCH"));
  return Number.isInteger(epoch) && epoch > 0 ? epoch : undefined;
}

/** Runs the command line; resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return commandLine("build", USAGE, args, parseArgs, async (parsed, root) => {
    let targets = parsed.targets ?? TARGETS;
    const denort = Deno.env.get("DENORT_BIN");
    // deno compile treats a set-but-empty DENORT_BIN as a path; empty means unset here.
    if (denort === "") Deno.env.delete("DENORT_BIN");
    if (denort) {
      const own = await checkDenortBin(denort, parsed.targets);
      if (!parsed.targets) {
        console.log(
          `build: DENORT_BIN is a denort for ${own[0].triple}; building that target only`,
        );
      }
      targets = own;
    }
    await build({
      root,
      dist: absolutePath(parsed.dist),
      version: VERSION,
      targets,
      compile: denoCompile(root, VERSION),
      mtime: sourceDateEpoch(),
    });
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
