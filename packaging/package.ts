// Linux packages: a .deb and an .rpm of a compiled patroniglue binary, with the unit, the config and the system user.
//
//   deno task package --binary FILE [--target linux-amd64|linux-arm64] [--dist DIR]
//
// Both packages hold the same files (packageFiles): the binary in /usr/bin, the unit in the system
// unit directory, /etc/patroniglue/config.yml from config.yml.example as a configuration file the
// package manager keeps, and the documentation. The .deb is a staged tree built with
// `dpkg-deb --build --root-owner-group` and the maintainer scripts in packaging/deb/; the .rpm is
// built with `rpmbuild -bb` from packaging/rpm/patroniglue.spec.in. Neither strips the binary: a
// `deno compile` output carries its program after the runtime, and stripping cuts it off. The .deb's
// Depends comes from the binary's shared libraries (readelf, any architecture); rpmbuild finds the
// same Requires itself. SOURCE_DATE_EPOCH sets every date and modification time.
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import {
  absolutePath,
  binaryKind,
  BuildError,
  commandLine,
  findTarget,
  hostTarget,
  readFlags,
  readHead,
  sourceDateEpoch,
  type Target,
  TARGETS,
  VERSION,
  writeSha256Sums,
} from "./build.ts";

/** The package's name, its user's and its group's. */
export const NAME = "patroniglue";
/** Who the packages name as their maintainer (the project has no other address yet). */
export const MAINTAINER = "patroniglue maintainers <patroniglue@users.noreply.github.com>";
/** The license field: the repository states none yet (see packaging/deb/copyright). */
export const LICENSE = "Unspecified";
/** The one-line description. */
export const SUMMARY = "Caching health-check proxy in front of Patroni's REST API";
/** The packages' long description, as lines (a .deb indents each by one space). */
const DESCRIPTION = [
  "patroniglue sits next to every Patroni node and answers load-balancer health",
  "checks (HAProxy httpchk and agent-check) from a short in-memory cache of",
  "Patroni's REST API: a storm of checks costs Patroni one request per path per",
  "ttl, and a frozen Patroni never freezes the load balancer.",
];
/** The release of the package itself, for one version of patroniglue (the .rpm's `-1`). */
export const RPM_RELEASE = 1;

/** The targets packages are made for. */
export const LINUX_TARGETS: readonly Target[] = TARGETS.filter((t) => t.os === "linux");

/** Where the binary goes. */
export const BINARY_PATH = "/usr/bin/patroniglue";
/** The configuration file (a conffile; `%config(noreplace)`). */
export const CONFIG_PATH = "/etc/patroniglue/config.yml";
/** The documentation directory. */
export const DOC_DIR = "/usr/share/doc/patroniglue";
/** The manual page. */
export const MAN_PATH = "/usr/share/man/man1/patroniglue.1.gz";
/** What lintian is told about the binary, which is Deno's runtime (the .deb only). */
export const LINTIAN_OVERRIDES = "/usr/share/lintian/overrides/patroniglue";

/** The two package formats. */
export type PackageKind = "deb" | "rpm";

/** The system unit directory of each format's distributions (Debian 12; Fedora and RHEL). */
export const UNIT_DIR: Record<PackageKind, string> = {
  deb: "/lib/systemd/system",
  rpm: "/usr/lib/systemd/system",
};

/** One file in a package. */
export interface PackageFile {
  /** Where it is installed. */
  path: string;
  mode: number;
  /** Its group (the owner is root). @default {"root"} */
  group?: string;
  /** Where its bytes come from: `binary` (the file packaged), a path in the repository, or bytes. */
  from: "binary" | string | Uint8Array;
  /** A configuration file: kept when the operator changed it, on upgrade and reinstall. @default {false} */
  config?: boolean;
  /** Installed gzipped (-9, no name or time in the header), as manual pages are. @default {false} */
  gzip?: boolean;
}

/** Documentation shipped in both packages: [path in the repository, path under {@linkcode DOC_DIR}]. */
export const DOCS: readonly (readonly [string, string])[] = [
  ["README.md", "README.md"],
  ["config.yml.example", "examples/config.yml.example"],
  ["packaging/haproxy.cfg.example", "examples/haproxy.cfg.example"],
  ["packaging/prometheus/patroniglue.rules.yml", "examples/prometheus/patroniglue.rules.yml"],
  ["packaging/grafana/patroniglue.json", "examples/grafana/patroniglue.json"],
];

/**
 * The files of a package of `kind`. The .deb's config is 0644 in the archive: its postinst makes it
 * root:patroniglue 0640 with a statoverride once the group exists, which dpkg then applies to every
 * later version; the .rpm's %pre creates the group before the file is unpacked with its mode.
 */
export function packageFiles(kind: PackageKind, version: string, epoch: number): PackageFile[] {
  const files: PackageFile[] = [
    { path: BINARY_PATH, mode: 0o755, from: "binary" },
    {
      path: `${UNIT_DIR[kind]}/patroniglue.service`,
      mode: 0o644,
      from: "packaging/patroniglue.service",
    },
    kind === "deb"
      ? { path: CONFIG_PATH, mode: 0o644, from: "config.yml.example", config: true }
      : { path: CONFIG_PATH, mode: 0o640, group: NAME, from: "config.yml.example", config: true },
    { path: MAN_PATH, mode: 0o644, from: "packaging/patroniglue.1", gzip: true },
    ...DOCS.map(([from, to]) => ({ path: `${DOC_DIR}/${to}`, mode: 0o644, from })),
  ];
  if (kind === "deb") {
    files.push(
      { path: LINTIAN_OVERRIDES, mode: 0o644, from: "packaging/deb/lintian-overrides" },
      { path: `${DOC_DIR}/copyright`, mode: 0o644, from: "packaging/deb/copyright" },
      { path: `${DOC_DIR}/changelog.gz`, mode: 0o644, from: debChangelog(version, epoch) },
    );
  }
  return files;
}

/** The directories a package owns: those under /etc/patroniglue and the documentation directory. */
export function ownedDirs(files: readonly PackageFile[]): string[] {
  const dirs = new Set<string>();
  for (const { path } of files) {
    for (let dir = dirname(path); dir.startsWith("/etc/patroniglue") || dir.startsWith(DOC_DIR);) {
      dirs.add(dir);
      dir = dirname(dir);
    }
  }
  return [...dirs].sort();
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** Debian's name for a target's architecture. */
export function debArch(target: Target): string {
  return target.arch;
}

/** RPM's name for a target's architecture. */
export function rpmArch(target: Target): string {
  return target.arch === "amd64" ? "x86_64" : "aarch64";
}

/** `patroniglue_VERSION_ARCH.deb`. */
export function debFileName(version: string, target: Target): string {
  return `${NAME}_${version}_${debArch(target)}.deb`;
}

/** `patroniglue-VERSION-1.ARCH.rpm`. */
export function rpmFileName(version: string, target: Target): string {
  return `${NAME}-${version}-${RPM_RELEASE}.${rpmArch(target)}.rpm`;
}

/** The date of `epoch` (seconds) as Debian's changelog writes it: `Thu, 01 Jan 2026 00:00:00 +0000`. */
export function debDate(epoch: number): string {
  return new Date(epoch * 1000).toUTCString().replace("GMT", "+0000");
}

/** The date of `epoch` (seconds) as an RPM changelog writes it: `Thu Jan 01 2026`. */
export function rpmDate(epoch: number): string {
  const [day, date, month, year] = new Date(epoch * 1000).toUTCString().split(/,? /);
  return `${day} ${month} ${date} ${year}`;
}

/** The .deb's changelog, gzipped (-9, no name or time in the header). */
export function debChangelog(version: string, epoch: number): Uint8Array {
  const text = `${NAME} (${version}) unstable; urgency=medium\n\n` +
    `  * patroniglue ${version}: see README.md and the release notes.\n\n` +
    ` -- ${MAINTAINER}  ${debDate(epoch)}\n`;
  return gzipSync(new TextEncoder().encode(text), { level: 9 });
}

/** The shared libraries glibc itself provides (Debian's libc6). */
const GLIBC_LIBRARIES =
  /^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libutil\.so\.1|ld-linux-(x86-64|aarch64)\.so\.[12])$/;

/** Compares dotted version numbers. */
function compareVersions(a: string, b: string): number {
  const [x, y] = [a.split(".").map(Number), b.split(".").map(Number)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  }
  return 0;
}

/** Runs a program to completion; its exit code and output. */
async function run(
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(program, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new BuildError(
        `cannot run ${program}: not installed (${PROGRAMS[program] ?? program})`,
      );
    }
    throw e;
  }
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** The Debian package each program the build runs comes from. */
const PROGRAMS: Record<string, string> = {
  readelf: "apt-get install binutils",
  "dpkg-deb": "apt-get install dpkg",
  rpmbuild: "apt-get install rpm, or dnf install rpm-build",
};

/** Runs a program that must succeed; throws a one-line {@linkcode BuildError} with its last words. */
async function runOk(
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const out = await run(program, args, options);
  if (out.code !== 0) {
    const said = (out.stderr.trim() || out.stdout.trim()).split("\n").slice(-3).join("; ");
    throw new BuildError(`${program} failed (exit ${out.code}): ${said}`);
  }
  return out.stdout;
}

/**
 * The .deb's Depends for the shared libraries an ELF executable needs: `libc6 (>= 2.X)` for glibc's
 * (X the newest GLIBC_ symbol version it uses) and `libgcc-s1 (>= Y)` for libgcc_s. Read with
 * readelf, which reads executables of any architecture; a library without a known package is refused.
 */
export async function sharedLibraryDepends(path: string): Promise<string[]> {
  const dynamic = await runOk("readelf", ["--wide", "--dynamic", path]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) =>
    m[1]
  );
  const versions = await runOk("readelf", ["--wide", "--version-info", path]);
  const newest = new Map<string, string>();
  const needs = versions.slice(Math.max(0, versions.indexOf("Version needs section")));
  for (const m of needs.matchAll(/Name: (GLIBC|GCC)_([0-9][0-9.]*)\s/g)) {
    const known = newest.get(m[1]);
    if (known === undefined || compareVersions(m[2], known) > 0) newest.set(m[1], m[2]);
  }
  const depends = new Set<string>();
  for (const library of needed) {
    if (GLIBC_LIBRARIES.test(library)) {
      const glibc = newest.get("GLIBC");
      depends.add(glibc ? `libc6 (>= ${glibc})` : "libc6");
    } else if (library === "libgcc_s.so.1") {
      depends.add(`libgcc-s1 (>= ${newest.get("GCC") ?? "3.0"})`);
    } else {
      throw new BuildError(
        `${path} needs ${library}: no Debian package is known for it; add it to package.ts`,
      );
    }
  }
  return [...depends];
}

/** What the packaged file is: a Linux executable for a target, or a script (a stand-in, for tests). */
export type BinaryKind = { kind: "elf"; target: Target } | { kind: "script" };

/** Checks the file to package; throws a {@linkcode BuildError} saying why it cannot be packaged. */
export async function inspectBinary(path: string): Promise<BinaryKind> {
  let head: Uint8Array;
  try {
    if (!(await Deno.stat(path)).isFile) throw new BuildError(`--binary ${path}: not a file`);
    head = await readHead(path);
  } catch (e) {
    if (e instanceof BuildError) throw e;
    throw new BuildError(`--binary ${path}: cannot read it: ${(e as Error).message}`);
  }
  const kind = binaryKind(head);
  const target = kind && LINUX_TARGETS.find((t) => t.os === kind.os && t.arch === kind.arch);
  if (target) return { kind: "elf", target };
  if (kind) {
    throw new BuildError(
      `--binary ${path} is a ${kind.os}-${kind.arch} executable, not a Linux one`,
    );
  }
  if (head[0] === 0x23 && head[1] === 0x21) return { kind: "script" };
  throw new BuildError(
    `--binary ${path} is not an executable for ${
      LINUX_TARGETS.map((t) => `${t.os}-${t.arch}`).join(" or ")
    }`,
  );
}

/** What {@linkcode buildPackages} does. */
export interface PackageOptions {
  /** The repository: the unit, config.yml.example, the documentation, packaging/deb and packaging/rpm. */
  root: string;
  /** The file to package as /usr/bin/patroniglue. */
  binary: string;
  target: Target;
  /** Where the packages go. */
  dist: string;
  version: string;
  /** Dates and modification times, in seconds since the epoch. @default {now} */
  epoch?: number;
  /** How the payloads are compressed: xz, or gzip -1 (quicker, for tests of large binaries). @default {"xz"} */
  compression?: "xz" | "fast";
  /** Progress lines. @default {console.log} */
  log?: (line: string) => void;
}

/** What {@linkcode buildPackages} made, as paths relative to `dist`. */
export interface PackageResult {
  deb: string;
  rpm: string;
  /** The SHA256SUMS text (it lists every release file of this version in `dist`). */
  sums: string;
}

/** Builds the .deb and the .rpm of `binary` for `target`, then writes SHA256SUMS. */
export async function buildPackages(options: PackageOptions): Promise<PackageResult> {
  const log = options.log ?? console.log;
  const epoch = options.epoch ?? Math.floor(Date.now() / 1000);
  const inspected = await inspectBinary(options.binary);
  if (inspected.kind === "elf" && inspected.target !== options.target) {
    const { os, arch } = inspected.target;
    throw new BuildError(
      `--binary ${options.binary} is a ${os}-${arch} executable: it cannot go in a ${options.target.os}-${options.target.arch} package`,
    );
  }
  const depends = inspected.kind === "elf" ? await sharedLibraryDepends(options.binary) : [];
  await Deno.mkdir(options.dist, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "patroniglue-package-" });
  try {
    const settings = { ...options, epoch, work, depends };
    const deb = await buildDeb(settings);
    log(`package: ${options.dist}/${deb}`);
    const rpm = await buildRpm(settings);
    log(`package: ${options.dist}/${rpm}`);
    const sums = await writeSha256Sums(options.dist, options.version);
    log(`package: ${options.dist}/SHA256SUMS`);
    return { deb, rpm, sums };
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

type BuildSettings = PackageOptions & { epoch: number; work: string; depends: string[] };

/** Writes `files` under `dir` with their modes and `epoch` as their modification time. */
async function stage(
  settings: BuildSettings,
  dir: string,
  files: readonly PackageFile[],
): Promise<void> {
  for (const file of files) {
    const to = `${dir}${file.path}`;
    await Deno.mkdir(dirname(to), { recursive: true });
    if (file.from instanceof Uint8Array) await Deno.writeFile(to, file.from);
    else {
      const from = file.from === "binary" ? settings.binary : `${settings.root}/${file.from}`;
      if (file.gzip) await Deno.writeFile(to, gzipSync(await Deno.readFile(from), { level: 9 }));
      else await Deno.copyFile(from, to);
    }
    await Deno.chmod(to, file.mode);
  }
  // Directories last (copying into one changes its time); every one 0755.
  const dirs: string[] = [];
  for await (const entry of walk(dir)) {
    if (entry.isDirectory) dirs.push(entry.path);
    else await Deno.utime(entry.path, settings.epoch, settings.epoch);
  }
  for (const d of [...dirs, dir].reverse()) {
    await Deno.chmod(d, 0o755);
    await Deno.utime(d, settings.epoch, settings.epoch);
  }
}

async function* walk(dir: string): AsyncGenerator<{ path: string; isDirectory: boolean }> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    yield { path, isDirectory: entry.isDirectory };
    if (entry.isDirectory) yield* walk(path);
  }
}

/** The .deb's control file. */
export function debControl(
  version: string,
  target: Target,
  depends: readonly string[],
  installedKiB: number,
): string {
  return [
    `Package: ${NAME}`,
    `Version: ${version}`,
    `Architecture: ${debArch(target)}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedKiB}`,
    `Depends: ${["adduser", ...depends].join(", ")}`,
    "Section: database",
    "Priority: optional",
    `Description: ${SUMMARY}`,
    ...DESCRIPTION.map((line) => ` ${line}`),
    "",
  ].join("\n");
}

async function buildDeb(settings: BuildSettings): Promise<string> {
  const { root, target, version, epoch, work } = settings;
  const dir = `${work}/deb`;
  const files = packageFiles("deb", version, epoch);
  await Deno.mkdir(`${dir}/DEBIAN`, { recursive: true });
  await stage(settings, dir, files);
  let kib = 0;
  const sums: string[] = [];
  for (const file of files) {
    const bytes = await Deno.readFile(`${dir}${file.path}`);
    kib += Math.ceil(bytes.length / 1024);
    // Conffiles have their checksums in dpkg's database already (dh_md5sums leaves them out too).
    if (!file.config) {
      sums.push(`${createHash("md5").update(bytes).digest("hex")}  ${file.path.slice(1)}`);
    }
  }
  kib += ownedDirs(files).length;
  const control: [string, string, number][] = [
    ["control", debControl(version, target, settings.depends, kib), 0o644],
    ["conffiles", files.filter((f) => f.config).map((f) => `${f.path}\n`).join(""), 0o644],
    [
      "md5sums",
      sums.sort((a, b) => a.slice(34).localeCompare(b.slice(34))).join("\n") + "\n",
      0o644,
    ],
  ];
  for (const script of ["postinst", "prerm", "postrm"]) {
    control.push([script, await Deno.readTextFile(`${root}/packaging/deb/${script}`), 0o755]);
  }
  for (const [name, text, mode] of control) {
    await Deno.writeTextFile(`${dir}/DEBIAN/${name}`, text, { mode });
    await Deno.chmod(`${dir}/DEBIAN/${name}`, mode);
    await Deno.utime(`${dir}/DEBIAN/${name}`, epoch, epoch);
  }
  const name = debFileName(version, target);
  await runOk("dpkg-deb", [
    "--root-owner-group",
    ...(settings.compression === "fast" ? ["-Zgzip", "-z1"] : ["-Zxz"]),
    "--build",
    dir,
    `${settings.dist}/${name}`,
  ], {
    env: { ...Deno.env.toObject(), SOURCE_DATE_EPOCH: String(epoch) },
  });
  return name;
}

/** The %files lines of the .rpm's spec. */
export function rpmFilesSection(files: readonly PackageFile[]): string {
  const lines = ownedDirs(files).map((d) => `%dir %attr(0755,root,root) ${d}`);
  for (const file of files) {
    const attr = `%attr(${file.mode.toString(8).padStart(4, "0")},root,${file.group ?? "root"})`;
    const doc = file.path.startsWith("/usr/share/doc/") || file.path.startsWith("/usr/share/man/");
    const kind = file.config ? "%config(noreplace) " : doc ? "%doc " : "";
    lines.push(`${kind}${attr} ${file.path}`);
  }
  return lines.join("\n");
}

/** The .rpm's spec: packaging/rpm/patroniglue.spec.in with its @NAME@ values filled in. */
export function rpmSpec(template: string, values: Record<string, string>): string {
  return template.replace(/@([A-Z]+)@/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new BuildError(`patroniglue.spec.in: no value for ${whole}`);
    return value;
  });
}

async function buildRpm(settings: BuildSettings): Promise<string> {
  const { root, target, version, epoch, work } = settings;
  const stageDir = `${work}/rpm-stage`;
  const files = packageFiles("rpm", version, epoch);
  await stage(settings, stageDir, files);
  const spec = rpmSpec(await Deno.readTextFile(`${root}/packaging/rpm/patroniglue.spec.in`), {
    VERSION: version,
    LICENSE,
    MAINTAINER,
    SUMMARY,
    DESCRIPTION: DESCRIPTION.join("\n"),
    RELEASE: String(RPM_RELEASE),
    STAGE: stageDir,
    FILES: rpmFilesSection(files),
    DATE: rpmDate(epoch),
  });
  await Deno.writeTextFile(`${work}/patroniglue.spec`, spec);
  const name = rpmFileName(version, target);
  const define = (macro: string, value: string) => ["--define", `${macro} ${value}`];
  await Deno.mkdir(`${work}/rpmtmp`);
  await runOk("rpmbuild", [
    "-bb",
    "--quiet",
    "--target",
    `${rpmArch(target)}-linux`,
    ...define("_topdir", `${work}/rpmbuild`),
    ...define("_tmppath", `${work}/rpmtmp`),
    ...define("_rpmdir", settings.dist),
    ...define("_build_name_fmt", name),
    ...define("_buildhost", "patroniglue"),
    ...define("_binary_payload", settings.compression === "fast" ? "w1.gzdio" : "w6.xzdio"),
    ...define("use_source_date_epoch_as_buildtime", "1"),
    ...define("clamp_mtime_to_source_date_epoch", "1"),
    `${work}/patroniglue.spec`,
  ], { env: { ...Deno.env.toObject(), SOURCE_DATE_EPOCH: String(epoch) } });
  return name;
}

const USAGE = `usage: deno task package --binary FILE [--target TARGET] [--dist DIR]
  --binary  the compiled patroniglue (dist/patroniglue-VERSION-linux-ARCH/patroniglue)
  --target  ${
  LINUX_TARGETS.map((t) => `${t.os}-${t.arch}`).join(" or ")
} (default: the binary's; a script stand-in: this machine's)
  --dist    output directory (default: dist, in the working directory)
  env SOURCE_DATE_EPOCH dates and modification times in the packages (default: now)
needs dpkg-deb, rpmbuild and readelf (Debian: apt-get install dpkg rpm binutils)`;

/** Parses the command line. */
export function parseArgs(
  args: readonly string[],
): { binary: string; target?: Target; dist: string } {
  let binary: string | undefined;
  let target: Target | undefined;
  let dist = "dist";
  readFlags(args, USAGE, (flag, value) => {
    if (flag === "--binary") binary = value();
    else if (flag === "--target") {
      const name = value();
      target = findTarget(name);
      if (target?.os !== "linux") {
        throw new BuildError(`unknown target ${JSON.stringify(name)}\n${USAGE}`);
      }
    } else if (flag === "--dist") dist = value();
    else return false;
    return true;
  });
  if (binary === undefined) throw new BuildError(`--binary is required\n${USAGE}`);
  return { binary, target, dist };
}

/** Runs the command line; resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return commandLine("package", USAGE, args, parseArgs, async (parsed, root) => {
    const inspected = await inspectBinary(parsed.binary);
    const target = parsed.target ?? (inspected.kind === "elf" ? inspected.target : hostTarget());
    if (inspected.kind === "script") {
      console.log(
        `package: ${parsed.binary} is a script, not a compiled binary: packaging it as a stand-in`,
      );
    }
    if (target?.os !== "linux") {
      throw new BuildError(`--target is needed for a script on this machine\n${USAGE}`);
    }
    await buildPackages({
      root,
      binary: absolutePath(parsed.binary),
      target,
      dist: absolutePath(parsed.dist),
      version: VERSION,
      epoch: sourceDateEpoch(),
    });
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
