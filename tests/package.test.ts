// Packages: the file list, names and metadata, the .deb and .rpm built from stand-in binaries (contents,
// modes, owners, conffiles, scripts, dependencies, reproducibility), lintian and rpmlint, the command line.
import assert from "node:assert/strict";
import { hostTarget, TARGETS, VERSION } from "../packaging/build.ts";
import {
  BINARY_PATH,
  CONFIG_PATH,
  debChangelog,
  debControl,
  debDate,
  debFileName,
  DOC_DIR,
  inspectBinary,
  LINUX_TARGETS,
  MAN_PATH,
  ownedDirs,
  packageFiles,
  parseArgs,
  RPM_RELEASE,
  rpmDate,
  rpmFileName,
  rpmFilesSection,
  rpmSpec,
  sharedLibraryDepends,
  UNIT_DIR,
} from "../packaging/package.ts";
import { CAN_BUILD_PACKAGES, elfStandIn, packageOf, PAYLOAD } from "./support/package.ts";
import { hasProgram, ROOT, runCommand, tempDir } from "./support/tools.ts";
import { gunzipSync } from "node:zlib";

const [amd64, arm64] = LINUX_TARGETS;

/** Runs a program that must succeed; its standard output. */
async function output(program: string, args: string[], cwd?: string): Promise<string> {
  const out = await runCommand(program, args, { cwd });
  assert.equal(out.code, 0, `${program} ${args.join(" ")}: ${out.stdout}${out.stderr}`);
  return out.stdout;
}

Deno.test("package files: the binary, the unit, the config as a conffile, the documentation", () => {
  const deb = packageFiles("deb", "1.2.3", 0);
  const rpm = packageFiles("rpm", "1.2.3", 0);
  const shared = [
    BINARY_PATH,
    CONFIG_PATH,
    MAN_PATH,
    `${DOC_DIR}/README.md`,
    `${DOC_DIR}/examples/config.yml.example`,
    `${DOC_DIR}/examples/haproxy.cfg.example`,
    `${DOC_DIR}/examples/prometheus/patroniglue.rules.yml`,
    `${DOC_DIR}/examples/grafana/patroniglue.json`,
  ];
  assert.deepEqual(
    deb.map((f) => f.path).sort(),
    [
      ...shared,
      "/lib/systemd/system/patroniglue.service",
      "/usr/share/lintian/overrides/patroniglue",
      `${DOC_DIR}/copyright`,
      `${DOC_DIR}/changelog.gz`,
    ].sort(),
  );
  assert.deepEqual(
    rpm.map((f) => f.path).sort(),
    [...shared, "/usr/lib/systemd/system/patroniglue.service"].sort(),
  );
  const byPath = (files: typeof deb, path: string) => files.find((f) => f.path === path)!;
  assert.deepEqual(byPath(deb, BINARY_PATH), { path: BINARY_PATH, mode: 0o755, from: "binary" });
  // The .deb's config is 0644 in the archive (its postinst sets the statoverride); the .rpm's is
  // root:patroniglue 0640 in the archive.
  assert.deepEqual(byPath(deb, CONFIG_PATH), {
    path: CONFIG_PATH,
    mode: 0o644,
    from: "config.yml.example",
    config: true,
  });
  assert.deepEqual(byPath(rpm, CONFIG_PATH), {
    path: CONFIG_PATH,
    mode: 0o640,
    group: "patroniglue",
    from: "config.yml.example",
    config: true,
  });
  for (const files of [deb, rpm]) {
    assert.deepEqual(files.filter((f) => f.config).map((f) => f.path), [CONFIG_PATH]);
    for (const f of files) {
      if (typeof f.from === "string" && f.from !== "binary") {
        assert.ok(Deno.statSync(`${ROOT}/${f.from}`).isFile, f.from);
      }
    }
  }
  assert.deepEqual(UNIT_DIR, { deb: "/lib/systemd/system", rpm: "/usr/lib/systemd/system" });
  assert.deepEqual(ownedDirs(rpm), [
    "/etc/patroniglue",
    DOC_DIR,
    `${DOC_DIR}/examples`,
    `${DOC_DIR}/examples/grafana`,
    `${DOC_DIR}/examples/prometheus`,
  ]);
});

Deno.test("package names, dates and metadata", () => {
  assert.deepEqual(LINUX_TARGETS, TARGETS.filter((t) => t.os === "linux"));
  assert.equal(debFileName("1.2.3", amd64), "patroniglue_1.2.3_amd64.deb");
  assert.equal(debFileName("1.2.3", arm64), "patroniglue_1.2.3_arm64.deb");
  assert.equal(rpmFileName("1.2.3", amd64), "patroniglue-1.2.3-1.x86_64.rpm");
  assert.equal(rpmFileName("1.2.3", arm64), "patroniglue-1.2.3-1.aarch64.rpm");
  assert.equal(debDate(1_767_225_600), "Thu, 01 Jan 2026 00:00:00 +0000");
  assert.equal(rpmDate(1_767_225_600), "Thu Jan 01 2026");
  assert.equal(rpmDate(1_796_000_000), "Mon Nov 30 2026");
  const control = debControl("1.2.3", arm64, ["libc6 (>= 2.27)"], 42);
  assert.match(control, /^Package: patroniglue\nVersion: 1\.2\.3\nArchitecture: arm64\n/);
  assert.match(control, /\nInstalled-Size: 42\nDepends: adduser, libc6 \(>= 2\.27\)\n/);
  assert.match(control, /\nDescription: [^\n]+\n( [^\n]{1,79}\n)+$/);
  const changelog = new TextDecoder().decode(gunzipSync(debChangelog("1.2.3", 1_767_225_600)));
  assert.match(changelog, /^patroniglue \(1\.2\.3\) unstable; urgency=medium\n/);
  assert.match(changelog, /\n -- .+ <.+@.+> {2}Thu, 01 Jan 2026 00:00:00 \+0000\n$/);
});

Deno.test("rpm spec: the template's values filled in, the %files from the list", async () => {
  const files = rpmFilesSection(packageFiles("rpm", "1.2.3", 0));
  assert.match(files, /^%attr\(0755,root,root\) \/usr\/bin\/patroniglue$/m);
  assert.match(
    files,
    /^%config\(noreplace\) %attr\(0640,root,patroniglue\) \/etc\/patroniglue\/config\.yml$/m,
  );
  assert.match(files, /^%dir %attr\(0755,root,root\) \/etc\/patroniglue$/m);
  assert.match(
    files,
    /^%doc %attr\(0644,root,root\) \/usr\/share\/man\/man1\/patroniglue\.1\.gz$/m,
  );
  const template = await Deno.readTextFile(`${ROOT}/packaging/rpm/patroniglue.spec.in`);
  const values = {
    VERSION: "1.2.3",
    LICENSE: "X",
    MAINTAINER: "M <m@example.org>",
    SUMMARY: "S",
    DESCRIPTION: "D1\nD2",
    RELEASE: "7",
    STAGE: "/stage",
    FILES: files,
    DATE: "Thu Jan 01 2026",
  };
  const spec = rpmSpec(template, values);
  assert.doesNotMatch(spec, /@[A-Z]+@/);
  assert.match(spec, /^Version: +1\.2\.3$/m);
  assert.match(spec, /^Release: +7$/m);
  assert.match(spec, /^Summary: +S$/m);
  assert.match(spec, /^%description\nD1\nD2\n/m);
  assert.match(spec, /^\* Thu Jan 01 2026 M <m@example\.org> - 1\.2\.3-7$/m);
  // Nothing strips the binary: that would cut off the program a `deno compile` output carries.
  assert.match(spec, /^%global __strip \/bin\/true$/m);
  assert.match(spec, /^%global __os_install_post %\{nil\}$/m);
  assert.throws(() => rpmSpec(template, { ...values, DATE: undefined! }), /no value for @DATE@/);
});

Deno.test("inspectBinary: a Linux ELF of either architecture, or a script stand-in; nothing else", async () => {
  await using dir = await tempDir("pg-inspect-");
  assert.deepEqual(await inspectBinary(await elfStandIn(dir.path, "amd64")), {
    kind: "elf",
    target: amd64,
  });
  assert.deepEqual(await inspectBinary(await elfStandIn(dir.path, "arm64")), {
    kind: "elf",
    target: arm64,
  });
  await Deno.writeTextFile(`${dir.path}/script`, "#!/bin/sh\n");
  assert.deepEqual(await inspectBinary(`${dir.path}/script`), { kind: "script" });
  const macho = new Uint8Array(64);
  new DataView(macho.buffer).setUint32(0, 0xfeedfacf, true);
  new DataView(macho.buffer).setUint32(4, 0x0100000c, true);
  await Deno.writeFile(`${dir.path}/macho`, macho);
  await assert.rejects(
    inspectBinary(`${dir.path}/macho`),
    /is a darwin-arm64 executable, not a Linux one/,
  );
  await Deno.writeTextFile(`${dir.path}/junk`, "not an executable at all");
  await assert.rejects(
    inspectBinary(`${dir.path}/junk`),
    /is not an executable for linux-amd64 or linux-arm64/,
  );
  await assert.rejects(inspectBinary(`${dir.path}/missing`), /cannot read it/);
  await assert.rejects(inspectBinary(dir.path), /not a file/);
});

Deno.test("package.ts command line", () => {
  assert.deepEqual(parseArgs(["--binary", "b"]), { binary: "b", target: undefined, dist: "dist" });
  assert.deepEqual(parseArgs(["--binary=b", "--target", "linux-arm64", "--dist=out"]), {
    binary: "b",
    target: arm64,
    dist: "out",
  });
  assert.deepEqual(parseArgs(["--", "--binary", "b", "--target", "x86_64-unknown-linux-gnu"]), {
    binary: "b",
    target: amd64,
    dist: "dist",
  });
  assert.throws(() => parseArgs([]), /--binary is required/);
  assert.throws(() => parseArgs(["--binary", "b", "--target", "darwin-arm64"]), /unknown target/);
  assert.throws(() => parseArgs(["--binary"]), /--binary needs a value/);
  assert.throws(() => parseArgs(["--binary", "b", "-x"]), /unknown argument "-x"/);
});

Deno.test({
  name:
    "Depends from the binary's libraries by readelf: deno's (a denort-like ELF) and the stand-ins'",
  ignore: !hasProgram("readelf"),
  async fn() {
    // deno and denort are built alike: glibc (its newest symbol version) and libgcc_s.
    const deno = await sharedLibraryDepends(Deno.execPath());
    assert.equal(deno.length, 2, deno.join(", "));
    assert.match(deno[0], /^libc6 \(>= 2\.\d+\)$/);
    assert.match(deno[1], /^libgcc-s1 \(>= 3\.\d\)$/);
    await using dir = await tempDir("pg-depends-");
    for (const arch of ["amd64", "arm64"] as const) {
      const depends = await sharedLibraryDepends(await elfStandIn(dir.path, arch));
      assert.deepEqual(depends.map((d) => d.replace(/[\d.]+\)$/, "N)")), ["libc6 (>= N)"]);
    }
    // A library no Debian package is known for is refused, not left out.
    if (hasProgram("openssl", ["version"])) {
      const openssl = (await output("sh", ["-c", "command -v openssl"])).trim();
      await assert.rejects(sharedLibraryDepends(openssl), /needs libssl\.so\.3: no Debian package/);
    }
  },
});

/** A .deb's or an .rpm's file listing: [mode, owner/group, path] per entry. */
async function debListing(deb: string): Promise<string[][]> {
  return (await output("dpkg-deb", ["--contents", deb])).trimEnd().split("\n").map((l) => {
    const f = l.split(/\s+/);
    return [f[0], f[1], f[5].replace(/^\./, "").replace(/(.)\/$/, "$1")];
  });
}

async function rpmListing(rpm: string): Promise<string[][]> {
  return (await output("rpm", [
    "-qp",
    "--qf",
    "[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]",
    rpm,
  ]))
    .trimEnd().split("\n").map((l) => l.split(" "));
}

Deno.test({
  name:
    "packages of an amd64 and an arm64 stand-in (dpkg-deb, rpmbuild, readelf, rpm): contents, modes, owners, metadata, scripts, SHA256SUMS",
  ignore: !CAN_BUILD_PACKAGES || !hasProgram("rpm"),
  async fn() {
    await using dir = await tempDir("pg-pkg-");
    const dist = `${dir.path}/dist`;
    for (const [arch, target] of [["amd64", amd64], ["arm64", arm64]] as const) {
      const binary = await elfStandIn(dir.path, arch);
      const { deb, rpm, sums } = await packageOf(binary, arch, dist);
      assert.equal(deb, debFileName(VERSION, target));
      assert.equal(rpm, rpmFileName(VERSION, target));
      const debPath = `${dist}/${deb}`, rpmPath = `${dist}/${rpm}`;

      // .deb metadata: the version from deno.json, the architecture, Depends from the binary.
      const field = (name: string) => output("dpkg-deb", ["--field", debPath, name]);
      assert.equal(await field("Package"), "patroniglue\n");
      assert.equal(await field("Version"), `${VERSION}\n`);
      assert.equal(await field("Architecture"), `${arch}\n`);
      assert.match(await field("Depends"), /^adduser, libc6 \(>= 2\.\d+\)\n$/);
      assert.ok(Number(await field("Installed-Size")) > 50);
      // .deb contents: every file of the list, directories 0755, all root/root.
      const listing = await debListing(debPath);
      const files = packageFiles("deb", VERSION, 0);
      for (const { path, mode } of files) {
        const entry = listing.find((e) => e[2] === path);
        assert.ok(entry, `${path} in the .deb`);
        assert.equal(entry[0], `-${permissions(mode)}`, path);
      }
      assert.equal(listing.filter((e) => e[0].startsWith("-")).length, files.length);
      assert.ok(listing.filter((e) => e[0].startsWith("d")).every((e) => e[0] === "drwxr-xr-x"));
      assert.ok(listing.every((e) => e[1] === "root/root"), "root/root");
      // The control area: the conffile, md5sums that check out, the maintainer scripts.
      const control = `${dir.path}/control-${arch}`;
      await output("dpkg-deb", ["--control", debPath, control]);
      assert.equal(await Deno.readTextFile(`${control}/conffiles`), `${CONFIG_PATH}\n`);
      for (const script of ["postinst", "prerm", "postrm"]) {
        assert.equal(
          await Deno.readTextFile(`${control}/${script}`),
          await Deno.readTextFile(`${ROOT}/packaging/deb/${script}`),
        );
        assert.equal((await Deno.stat(`${control}/${script}`)).mode! & 0o777, 0o755);
        await output("sh", ["-n", `${control}/${script}`]);
      }
      const tree = `${dir.path}/tree-${arch}`;
      await output("dpkg-deb", ["--extract", debPath, tree]);
      const md5sums = await Deno.readTextFile(`${control}/md5sums`);
      assert.doesNotMatch(md5sums, /etc\/patroniglue/, "conffiles are not in md5sums");
      await output("md5sum", ["--check", "--quiet", `${control}/md5sums`], tree);
      // The files themselves: the binary untouched (not stripped), the repository's unit and example.
      assert.deepEqual(await Deno.readFile(`${tree}${BINARY_PATH}`), await Deno.readFile(binary));
      assert.ok(
        new TextDecoder().decode(await Deno.readFile(`${tree}${BINARY_PATH}`)).endsWith(PAYLOAD),
      );
      assert.equal(
        await Deno.readTextFile(`${tree}/lib/systemd/system/patroniglue.service`),
        await Deno.readTextFile(`${ROOT}/packaging/patroniglue.service`),
      );
      assert.equal(
        await Deno.readTextFile(`${tree}${CONFIG_PATH}`),
        await Deno.readTextFile(`${ROOT}/config.yml.example`),
      );
      assert.equal(
        new TextDecoder().decode(gunzipSync(await Deno.readFile(`${tree}${MAN_PATH}`))),
        await Deno.readTextFile(`${ROOT}/packaging/patroniglue.1`),
      );

      // .rpm metadata and contents.
      const [name, version, release, rpmArch] = (await output("rpm", [
        "-qp",
        "--qf",
        "%{NAME} %{VERSION} %{RELEASE} %{ARCH}",
        rpmPath,
      ])).split(" ");
      assert.deepEqual([name, version, release, rpmArch], [
        "patroniglue",
        VERSION,
        String(RPM_RELEASE),
        arch === "amd64" ? "x86_64" : "aarch64",
      ]);
      const rpmFiles = await rpmListing(rpmPath);
      const rpmExpected = packageFiles("rpm", VERSION, 0);
      for (const f of rpmExpected) {
        const entry = rpmFiles.find((e) => e[2] === f.path);
        assert.ok(entry, `${f.path} in the .rpm`);
        assert.deepEqual(entry.slice(0, 2), [
          `-${permissions(f.mode)}`,
          `root/${f.group ?? "root"}`,
        ], f.path);
      }
      assert.equal(rpmFiles.length, rpmExpected.length + ownedDirs(rpmExpected).length);
      assert.equal(await output("rpm", ["-qp", "--configfiles", rpmPath]), `${CONFIG_PATH}\n`);
      const scripts = await output("rpm", ["-qp", "--scripts", rpmPath]);
      assert.match(scripts, /getent group patroniglue >\/dev\/null \|\| groupadd -r patroniglue/);
      assert.match(scripts, /useradd -r -g patroniglue -d \/nonexistent -M -s \/sbin\/nologin/);
      const requires = await output("rpm", ["-qp", "--requires", rpmPath]);
      assert.match(requires, /^\/usr\/sbin\/useradd$/m);
      assert.match(requires, /^libc\.so\.6\(GLIBC_2\.\d+\)\(64bit\)$/m, "found in the binary");
      const cpio = `${dir.path}/rpm-${arch}`;
      await Deno.mkdir(cpio);
      await output("sh", ["-c", 'rpm2cpio "$0" | cpio -idm --quiet', rpmPath], cpio);
      assert.deepEqual(await Deno.readFile(`${cpio}${BINARY_PATH}`), await Deno.readFile(binary));

      // SHA256SUMS: every release file of this version in dist, checked by sha256sum.
      assert.deepEqual(
        sums.trimEnd().split("\n").map((l) => l.split("  ")[1]),
        arch === "amd64"
          ? [rpm, deb].sort()
          : [rpmFileName(VERSION, amd64), rpm, debFileName(VERSION, amd64), deb].sort(),
      );
      await output("sha256sum", ["--check", "--quiet", "SHA256SUMS"], dist);
    }
  },
});

function permissions(mode: number): string {
  return [6, 3, 0].map((shift) => {
    const bits = (mode >> shift) & 7;
    return (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") + (bits & 1 ? "x" : "-");
  }).join("");
}

Deno.test({
  name:
    "packages reproduce (dpkg-deb, rpmbuild, readelf): the same binary and SOURCE_DATE_EPOCH give the same bytes",
  ignore: !CAN_BUILD_PACKAGES,
  async fn() {
    await using dir = await tempDir("pg-repro-");
    const binary = await elfStandIn(dir.path, "amd64");
    const first = await packageOf(binary, "amd64", `${dir.path}/a`);
    const second = await packageOf(binary, "amd64", `${dir.path}/b`);
    assert.equal(first.sums, second.sums);
    const third = await packageOf(binary, "amd64", `${dir.path}/c`, { epoch: 1_800_000_000 });
    assert.notEqual(third.sums, first.sums, "the epoch is in the packages");
  },
});

/** Asserts that lintian reports no error and no warning (overridden tags aside) on `debs`. */
async function assertLintianClean(debs: string[]): Promise<void> {
  const out = await runCommand("lintian", ["--fail-on", "error,warning", ...debs]);
  const findings = out.stdout.split("\n").filter((l) => /^[EW]: /.test(l));
  assert.deepEqual(findings, [], out.stdout + out.stderr);
  assert.equal(out.code, 0, out.stdout + out.stderr);
}

/** rpmlint's warnings on the .rpm, each left for a reason (the README lists them). */
const RPMLINT_WARNINGS = [
  // Units live in /usr/lib/systemd/system on Fedora and RHEL.
  "only-non-binary-in-usr-lib",
  // root:patroniglue is the config's group on purpose.
  "non-standard-gid /etc/patroniglue/config.yml patroniglue",
  // The project has no canonical URL or license yet.
  "no-url-tag",
  "invalid-license Unspecified",
  // rpmlint 2.4 records a manual page's section instead of its name, so it never finds one.
  "no-manual-page-for-binary patroniglue",
];

/** Asserts that rpmlint, with packaging/rpm/rpmlint.toml, reports no error and only the known warnings. */
async function assertRpmlintKnown(rpm: string, home: string): Promise<void> {
  const out = await runCommand("rpmlint", ["-c", `${ROOT}/packaging/rpm/rpmlint.toml`, rpm], {
    env: { ...Deno.env.toObject(), HOME: home },
  });
  const findings = out.stdout.split("\n").filter((l) => /^patroniglue\.\S+: [EW]: /.test(l))
    .map((l) => l.replace(/^patroniglue\.\S+: /, ""));
  assert.deepEqual(findings.filter((f) => f.startsWith("E: ")), [], out.stdout);
  assert.deepEqual(
    findings.map((f) => f.slice(3)).sort(),
    [...RPMLINT_WARNINGS].sort(),
    out.stdout,
  );
  assert.match(out.stdout, / 0 errors, 5 warnings/);
  assert.equal(out.code, 0, out.stdout + out.stderr);
}

Deno.test({
  name: "lintian: no error and no warning on the .deb (amd64 and arm64 stand-ins)",
  ignore: !CAN_BUILD_PACKAGES || !hasProgram("lintian"),
  async fn() {
    await using dir = await tempDir("pg-lintian-");
    const debs = [];
    for (const arch of ["amd64", "arm64"] as const) {
      const { deb } = await packageOf(await elfStandIn(dir.path, arch), arch, dir.path);
      debs.push(`${dir.path}/${deb}`);
    }
    await assertLintianClean(debs);
  },
});

Deno.test({
  name:
    "rpmlint: no error on the .rpm; the warnings are the known ones (amd64 and arm64 stand-ins)",
  ignore: !CAN_BUILD_PACKAGES || !hasProgram("rpmlint"),
  async fn() {
    await using dir = await tempDir("pg-rpmlint-");
    for (const arch of ["amd64", "arm64"] as const) {
      const { rpm } = await packageOf(await elfStandIn(dir.path, arch), arch, dir.path);
      await assertRpmlintKnown(`${dir.path}/${rpm}`, dir.path);
    }
  },
});

Deno.test({
  name:
    "lintian and rpmlint on packages of deno's own binary (built as denort is): no error, the same warnings; its Depends",
  ignore: !CAN_BUILD_PACKAGES || !hasProgram("lintian") || !hasProgram("rpmlint") ||
    hostTarget()?.os !== "linux",
  async fn() {
    // The release binary is denort with the program appended: lintian finds in it what it finds in
    // deno (a statically linked Little CMS, no RELRO), which the package's overrides say.
    await using dir = await tempDir("pg-denolint-");
    const arch = hostTarget()!.arch;
    const { deb, rpm } = await packageOf(Deno.execPath(), arch, dir.path, { compression: "fast" });
    assert.match(
      await output("dpkg-deb", ["--field", `${dir.path}/${deb}`, "Depends"]),
      /^adduser, libc6 \(>= 2\.\d+\), libgcc-s1 \(>= 3\.\d\)\n$/,
    );
    await assertLintianClean([`${dir.path}/${deb}`]);
    await assertRpmlintKnown(`${dir.path}/${rpm}`, dir.path);
  },
});

Deno.test({
  name:
    "deno task package (dpkg-deb, rpmbuild, readelf): both packages and SHA256SUMS; a wrong binary is one line and exit 1",
  ignore: !CAN_BUILD_PACKAGES,
  async fn() {
    await using dir = await tempDir("pg-cli-");
    const binary = await elfStandIn(dir.path, "arm64");
    const run = (args: string[]) =>
      runCommand(Deno.execPath(), ["task", "-q", "package", ...args], {
        env: { ...Deno.env.toObject(), NO_COLOR: "1", SOURCE_DATE_EPOCH: "1796000000" },
      });
    const ok = await run(["--binary", binary, "--dist", `${dir.path}/dist`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(
      ok.stdout,
      [debFileName(VERSION, arm64), rpmFileName(VERSION, arm64), "SHA256SUMS"]
        .map((n) => `package: ${dir.path}/dist/${n}\n`).join(""),
      "the target is the binary's",
    );
    const wrong = await run(["--binary", binary, "--target", "linux-amd64", "--dist", dir.path]);
    assert.equal(wrong.code, 1);
    assert.equal(
      wrong.stderr,
      `package: --binary ${binary} is a linux-arm64 executable: it cannot go in a linux-amd64 package\n`,
    );
    const missing = await run(["--dist", dir.path]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^package: --binary is required\nusage: deno task package/);
  },
});
