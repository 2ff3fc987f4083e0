// Packaging: build logic (targets, names, archives, checksums), the offline denort failure, the one
// permission set, the smoke script against `deno run -q -P main.ts`, the unit file and the image.
import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import denoJson from "../deno.json" with { type: "json" };
import { parseConfig } from "../src/config/config.ts";
import {
  binaryKind,
  build,
  BuildError,
  checkDenortBin,
  checkVersion,
  compileArgs,
  distName,
  explainCompileFailure,
  findTarget,
  hostTarget,
  parseArgs,
  sha256File,
  type Target,
  TARGETS,
  V8_FLAGS,
  verifyBinary,
  VERSION,
} from "../packaging/build.ts";
import { smokeConfig } from "../packaging/smoke.ts";
import { onPath, ROOT, runCommand } from "./support/tools.ts";

const DENO = Deno.execPath();
const target = (name: string): Target => findTarget(name)!;

const run = runCommand;

/** This process's environment without DENORT_BIN, plus `extra`. */
function envWith(extra: Record<string, string>): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  return { ...env, NO_COLOR: "1", ...extra };
}

const STUB = "#!/bin/sh\necho stub\n";
const fakeCompile = async (t: Target, output: string) => {
  await Deno.writeTextFile(output, `${STUB}# ${t.triple}\n`, { mode: 0o755 });
};

/** A temporary repository root holding the files shipped beside the binary. */
/** A scratch repository root (what build() packs) with `dist` inside; removed on dispose. */
async function fixtureRoot(): Promise<{ root: string; dist: string } & AsyncDisposable> {
  const root = await Deno.makeTempDir({ prefix: "pg-root-" });
  await Deno.writeTextFile(`${root}/config.yml.example`, "frontend:\n  port: 8080\n");
  await Deno.mkdir(`${root}/packaging`);
  await Deno.copyFile(
    `${ROOT}/packaging/patroniglue.service`,
    `${root}/packaging/patroniglue.service`,
  );
  return {
    root,
    dist: `${root}/dist`,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

Deno.test("targets: linux and macOS on amd64 and arm64, named like the Go original", () => {
  assert.deepEqual(
    TARGETS.map((t) => [t.triple, distName("1.2.3", t)]),
    [
      ["x86_64-unknown-linux-gnu", "patroniglue-1.2.3-linux-amd64"],
      ["aarch64-unknown-linux-gnu", "patroniglue-1.2.3-linux-arm64"],
      ["x86_64-apple-darwin", "patroniglue-1.2.3-darwin-amd64"],
      ["aarch64-apple-darwin", "patroniglue-1.2.3-darwin-arm64"],
    ],
  );
  for (const t of TARGETS) {
    assert.equal(findTarget(t.triple), t);
    assert.equal(findTarget(`${t.os}-${t.arch}`), t);
  }
  assert.equal(findTarget("x86_64-pc-windows-msvc"), undefined);
  assert.equal(VERSION, denoJson.version);
});

Deno.test("permissions: the compile step passes -P (deno.json's set), never -A or --allow-*", () => {
  for (const t of TARGETS) {
    const args = compileArgs(t, "/out/patroniglue");
    assert.deepEqual(args, [
      "compile",
      "-q",
      "-P",
      V8_FLAGS,
      "--target",
      t.triple,
      "--output",
      "/out/patroniglue",
      "main.ts",
    ]);
    assert.ok(!args.some((a) => a === "-A" || a.startsWith("--allow")), args.join(" "));
  }
});

Deno.test("permissions: one set in deno.json, used by `deno task start`; nothing else grants any", async () => {
  const perms = (denoJson as { permissions?: { default?: Record<string, unknown> } }).permissions
    ?.default;
  assert.ok(perms, "deno.json has permissions.default");
  assert.deepEqual(Object.keys(perms).sort(), ["env", "net", "read"]);
  assert.equal(denoJson.tasks.start, `deno run -q -P ${V8_FLAGS} main.ts`);
  assert.equal(denoJson.tasks.build, "deno run -q -A packaging/build.ts");
  // The binary carries deno.json's set; nothing that builds or runs it adds permissions.
  for (
    const file of [
      "build.sh",
      "Dockerfile",
      "packaging/patroniglue.service",
      ".github/workflows/release.yml",
      ".github/workflows/ci.yml",
    ]
  ) {
    const text = await Deno.readTextFile(`${ROOT}/${file}`);
    assert.doesNotMatch(text, /--allow-/, file);
    assert.doesNotMatch(text, /deno (run|compile)\b.*\s-A\b.*\bmain\.ts/, file);
  }
  const build = await Deno.readTextFile(`${ROOT}/packaging/build.ts`);
  assert.doesNotMatch(build, /"--allow-|"-A"/);
});

Deno.test("build: a fake compile step gives a directory, a .tar.gz per target and SHA256SUMS", async () => {
  await using fixture = await fixtureRoot();
  const { root, dist } = fixture;
  const lines: string[] = [];
  const opts = { root, dist, version: "1.2.3", targets: TARGETS, compile: fakeCompile };
  const result = await build({ ...opts, mtime: 1700000000, log: (l) => lines.push(l) });
  const names = TARGETS.map((t) => distName("1.2.3", t));
  assert.deepEqual(result.archives, names.map((n) => `${n}.tar.gz`));
  assert.equal(lines.length, TARGETS.length + 1);

  // SHA256SUMS: `sha256sum` format, sorted, one line per archive, right hashes.
  const sums = await Deno.readTextFile(`${dist}/SHA256SUMS`);
  assert.equal(sums, result.sums);
  const sumLines = sums.trimEnd().split("\n");
  assert.deepEqual(sumLines.map((l) => l.split("  ")[1]), [...result.archives].sort());
  for (const line of sumLines) {
    const [hash, name] = line.split("  ");
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(hash, await sha256File(`${dist}/${name}`));
  }
  if (await onPath("sha256sum")) {
    const check = await run("sha256sum", ["-c", "SHA256SUMS"], { cwd: dist });
    assert.equal(check.code, 0, check.stdout + check.stderr);
  }

  // Each archive: one directory named like the archive, the binary (0755) and the extras.
  for (const [i, t] of TARGETS.entries()) {
    const listing = await run("tar", ["-tvzf", `${dist}/${names[i]}.tar.gz`]);
    assert.equal(listing.code, 0, listing.stderr);
    const entries = listing.stdout.trim().split("\n").map((l) => l.split(/\s+/));
    assert.deepEqual(entries.map((e) => e.at(-1)), [
      `${names[i]}/`,
      `${names[i]}/patroniglue`,
      `${names[i]}/config.yml.example`,
      `${names[i]}/patroniglue.service`,
    ]);
    assert.deepEqual(entries.map((e) => e[0]), [
      "drwxr-xr-x",
      "-rwxr-xr-x",
      "-rw-r--r--",
      "-rw-r--r--",
    ]);
    assert.ok(entries.every((e) => /^root\/root$|^0\/0$/.test(e[1])), listing.stdout);
    const out = await Deno.makeTempDir({ dir: root });
    const extract = await run("tar", ["-xzf", `${dist}/${names[i]}.tar.gz`, "-C", out]);
    assert.equal(extract.code, 0, extract.stderr);
    assert.equal(
      await Deno.readTextFile(`${out}/${names[i]}/patroniglue`),
      `${STUB}# ${t.triple}\n`,
    );
    assert.equal(
      await Deno.readTextFile(`${out}/${names[i]}/patroniglue.service`),
      await Deno.readTextFile(`${ROOT}/packaging/patroniglue.service`),
    );
  }

  // Same inputs and SOURCE_DATE_EPOCH, same bytes: the checksums reproduce.
  const again = await build({ ...opts, mtime: 1700000000, log: () => {} });
  assert.equal(again.sums, result.sums);
});

Deno.test("build: one --target at a time; SHA256SUMS lists every archive of this version", async () => {
  await using fixture = await fixtureRoot();
  const { root, dist } = fixture;
  await Deno.mkdir(dist);
  await Deno.writeTextFile(`${dist}/patroniglue-0.0.9-linux-amd64.tar.gz`, "older version");
  const opts = { root, dist, version: "1.2.3", compile: fakeCompile, log: () => {} };
  await build({ ...opts, targets: [target("linux-arm64")] });
  const { sums } = await build({ ...opts, targets: [target("darwin-amd64")] });
  assert.deepEqual(sums.trimEnd().split("\n").map((l) => l.split("  ")[1]), [
    "patroniglue-1.2.3-darwin-amd64.tar.gz",
    "patroniglue-1.2.3-linux-arm64.tar.gz",
  ]);
});

Deno.test("build: a failed compile leaves nothing for that target and no SHA256SUMS", async () => {
  await using fixture = await fixtureRoot();
  const { root, dist } = fixture;
  await assert.rejects(
    build({
      root,
      dist,
      version: "1.2.3",
      targets: [target("linux-amd64")],
      compile: async (t, output) => {
        await Deno.writeTextFile(output, "half a binary");
        throw new BuildError(`cannot get denort for ${t.triple}: no internet access`);
      },
      log: () => {},
    }),
    BuildError,
  );
  const left = [];
  for await (const e of Deno.readDir(dist)) left.push(e.name);
  assert.deepEqual(left, []);
});

// What deno 2.9.6 prints when it cannot download denort (recorded on this machine).
const OFFLINE_STDERR =
  `\x1b[0m\x1b[1m\x1b[31merror\x1b[0m: Writing deno compile executable to temporary file '/tmp/x/patroniglue.tmp-242214c8be68167f'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)
    3: dns error
    4: failed to lookup address information: Name or service not known

Stack backtrace:
   0: <unknown>
`;

Deno.test("compile failures are explained in one line", () => {
  const linux = target("linux-amd64");
  assert.equal(
    explainCompileFailure(linux, OFFLINE_STDERR),
    "cannot get denort for x86_64-unknown-linux-gnu: no internet access; set DENORT_BIN to a denort binary",
  );
  const refused = OFFLINE_STDERR.replace(/dns error.*$/m, "tcp connect error: Connection refused");
  assert.match(explainCompileFailure(linux, refused), /^cannot get denort .*no internet access/);
  const notFound =
    `error: Writing deno compile executable\n\nCaused by:\n    0: Setting up base binary.\n` +
    `    1: Download of https://dl.deno.land/release/v2.9.6/denort-x.zip failed: 404 Not Found\n`;
  assert.equal(
    explainCompileFailure(linux, notFound),
    "cannot get denort for x86_64-unknown-linux-gnu: Download of https://dl.deno.land/release/v2.9.6/denort-x.zip failed: 404 Not Found; set DENORT_BIN to a denort binary",
  );
  assert.match(
    explainCompileFailure(
      linux,
      "error: Writing deno compile executable\n\nCaused by:\n    0: Could not find denort at '/x/denort'\n    1: No such file or directory (os error 2)\n",
    ),
    /^DENORT_BIN=\/x\/denort: no such file;/,
  );
  const typeError =
    "\x1b[0m\x1b[1mTS2322 [ERROR]: Type 'string' is not assignable to type 'number'.\n" +
    "error: Type checking failed.\n";
  assert.equal(
    explainCompileFailure(linux, typeError),
    "deno compile failed for x86_64-unknown-linux-gnu: Type checking failed.",
  );
  for (const s of [OFFLINE_STDERR, refused, notFound, typeError]) {
    assert.ok(!explainCompileFailure(linux, s).includes("\n"));
  }
});

// Whether the denort download is cached (a connected machine that compiled before): then the
// build below would succeed without the network, and the offline case cannot be shown.
const denortCached = await (async () => {
  const info = await run(DENO, ["info", "--json"]);
  const dir = JSON.parse(info.stdout).denoDir as string;
  const zip = `${dir}/dl/release/v${Deno.version.deno}/denort-x86_64-unknown-linux-gnu.zip`;
  return await Deno.stat(zip).then(() => true, () => false);
})();

/** Runs the build into an empty dist/; asserts exit 1, exactly `line` on stderr, nothing built. */
async function expectBuildRefused(
  args: string[],
  env: Record<string, string>,
  line: string,
): Promise<void> {
  const dist = await Deno.makeTempDir({ prefix: "pg-dist-" });
  try {
    const out = await run(
      DENO,
      ["run", "-q", "-A", "packaging/build.ts", ...args, "--dist", dist],
      {
        env: envWith(env),
      },
    );
    assert.equal(out.code, 1, out.stderr);
    assert.equal(out.stdout, "");
    assert.equal(out.stderr, line + "\n");
    const left = [];
    for await (const e of Deno.readDir(dist)) left.push(e.name);
    assert.deepEqual(left, []);
  } finally {
    await Deno.remove(dist, { recursive: true });
  }
}

Deno.test({
  name: "build without internet: one line naming denort and DENORT_BIN, exit 1, nothing built",
  ignore: denortCached,
  async fn() {
    // A proxy that refuses connections stands in for "no internet" on a connected machine too.
    await expectBuildRefused(
      ["--target", "linux-amd64"],
      { HTTPS_PROXY: "http://127.0.0.1:1", HTTP_PROXY: "http://127.0.0.1:1" },
      "build: cannot get denort for x86_64-unknown-linux-gnu: no internet access; set DENORT_BIN to a denort binary",
    );
  },
});

Deno.test("build with DENORT_BIN naming a missing file: one line, exit 1, nothing built", async () => {
  await expectBuildRefused(
    [],
    { DENORT_BIN: "/nonexistent" },
    `build: DENORT_BIN=/nonexistent: no such file; set it to a denort binary (deno ${Deno.version.deno}) or unset it to download denort`,
  );
});

Deno.test("build with DENORT_BIN naming the deno CLI: refused, since that binary would be deno", async () => {
  const out = await run(DENO, ["run", "-q", "-A", "packaging/build.ts", "--dist", "/nonexistent"], {
    env: envWith({ DENORT_BIN: DENO }),
  });
  assert.equal(out.code, 1, out.stderr);
  assert.equal(
    out.stderr,
    `build: DENORT_BIN=${DENO} is the deno CLI, not denort: it would make a binary that is not patroniglue\n`,
  );
});

Deno.test("DENORT_BIN must be an executable for the target asked for", async () => {
  const host = hostTarget();
  const other = TARGETS.find((t) => t !== host)!;
  if (host) {
    await assert.rejects(
      checkDenortBin(DENO, [other]),
      new BuildError(
        `DENORT_BIN=${DENO} is a ${host.os}-${host.arch} binary: it cannot build ${other.triple}`,
      ),
    );
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/script`, STUB, { mode: 0o755 });
    await assert.rejects(checkDenortBin(`${dir}/script`, undefined), /not a denort executable/);
    await assert.rejects(checkDenortBin(dir, undefined), /not a file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("binaryKind reads ELF and Mach-O headers", async () => {
  const elf = (machine: number) => {
    const b = new Uint8Array(64);
    b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    new DataView(b.buffer).setUint16(18, machine, true);
    return b;
  };
  const macho = (cpu: number) => {
    const b = new Uint8Array(64);
    new DataView(b.buffer).setUint32(0, 0xfeedfacf, true);
    new DataView(b.buffer).setUint32(4, cpu, true);
    return b;
  };
  assert.deepEqual(binaryKind(elf(62)), { os: "linux", arch: "amd64" });
  assert.deepEqual(binaryKind(elf(183)), { os: "linux", arch: "arm64" });
  assert.deepEqual(binaryKind(macho(0x01000007)), { os: "darwin", arch: "amd64" });
  assert.deepEqual(binaryKind(macho(0x0100000c)), { os: "darwin", arch: "arm64" });
  assert.equal(binaryKind(elf(40)), undefined);
  assert.equal(binaryKind(new TextEncoder().encode(STUB.repeat(4))), undefined);
  const host = hostTarget();
  if (host) {
    using f = await Deno.open(DENO);
    const head = new Uint8Array(64);
    await f.read(head);
    assert.deepEqual(binaryKind(head), { os: host.os, arch: host.arch });
  }
});

Deno.test("a compiled file that is not patroniglue for its target is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/right`, `#!/bin/sh\necho ${VERSION}\n`, { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/deno`, "#!/bin/sh\necho 'deno 2.9.6'\n", { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/hangs`, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    await checkVersion(`${dir}/right`, VERSION);
    await assert.rejects(
      checkVersion(`${dir}/deno`, VERSION),
      new BuildError(
        `${dir}/deno is not patroniglue ${VERSION}: -version printed "deno 2.9.6" (exit 0)`,
      ),
    );
    await assert.rejects(checkVersion(`${dir}/hangs`, VERSION, 200), /killed by SIGKILL/);
    await assert.rejects(
      verifyBinary(`${dir}/right`, target("linux-amd64"), VERSION),
      /not a linux-amd64 executable/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build.ts command line", () => {
  assert.deepEqual(parseArgs([]), { targets: undefined, dist: "dist" });
  assert.deepEqual(
    parseArgs(["--target", "linux-amd64", "--target=aarch64-apple-darwin", "--dist=out"]),
    { targets: [target("linux-amd64"), target("darwin-arm64")], dist: "out" },
  );
  assert.deepEqual(parseArgs(["--", "--target", "linux-arm64", "--target", "linux-arm64"]), {
    targets: [target("linux-arm64")],
    dist: "dist",
  });
  assert.throws(() => parseArgs(["--target", "windows-amd64"]), /unknown target "windows-amd64"/);
  assert.throws(() => parseArgs(["--target"]), /--target needs a value/);
  assert.throws(() => parseArgs(["-A"]), /unknown argument "-A"/);
});

Deno.test("build.sh runs `deno task build` with its arguments", async () => {
  const text = await Deno.readTextFile(`${ROOT}/build.sh`);
  assert.match(text, /^#!\/bin\/sh\n/);
  assert.match(text, /\nexec deno task -q build "\$@"\n/);
  assert.ok(((await Deno.stat(`${ROOT}/build.sh`)).mode! & 0o111) !== 0, "build.sh is executable");
});

Deno.test("smoke config: the example on loopback and free ports, valid for patroniglue", async () => {
  const example = await Deno.readTextFile(`${ROOT}/config.yml.example`);
  const ports = { frontend: 41001, backend: 41002, metrics: 41003 };
  for (const source of [example, undefined]) {
    const text = smokeConfig(source, ports);
    const config = await parseConfig(text, "smoke.yml");
    assert.equal(config.frontend.host, "127.0.0.1");
    assert.equal(config.frontend.port, 41001);
    assert.equal(config.frontend.tls, undefined);
    assert.deepEqual(
      [config.backend.host, config.backend.port, config.backend.scheme],
      ["127.0.0.1", 41002, "http"],
    );
    assert.ok(config.cache.ttl <= 1);
  }
  // Everything else is the example's: its comments and other keys stay.
  const text = smokeConfig(example, ports);
  assert.match(text, /# Access-log format/);
  const withMetrics = smokeConfig("metrics:\n  port: 9187\n", ports);
  assert.deepEqual(parseYaml(withMetrics).metrics, { port: 41003, host: "127.0.0.1" });
});

Deno.test("smoke script passes against `deno run -q -P main.ts` (deno.json's permission set)", async () => {
  const out = await run(DENO, [
    "run",
    "-q",
    "-A",
    "packaging/smoke.ts",
    "--",
    DENO,
    "run",
    "-q",
    "-P",
    "main.ts",
  ]);
  assert.equal(out.code, 0, out.stdout + out.stderr);
  const lines = out.stdout.trimEnd().split("\n");
  assert.deepEqual(lines.map((l) => l.replace(/\d+/g, "N")), [
    "ok   -version prints N.N.N",
    "ok   /health N on http://N.N.N.N:N",
    "ok   /primary N while the member is primary",
    "ok   /primary N after the member turned replica (N ms)",
    "ok   SIGTERM -> exit N",
    "smoke: N passed, N failed",
  ]);
  assert.equal(lines[0], `ok   -version prints ${VERSION}`);
  assert.equal(lines.at(-1), "smoke: 5 passed, 0 failed");
});

Deno.test("smoke script fails, one line per check, against a command that is not patroniglue", async () => {
  const out = await run(DENO, [
    "run",
    "-q",
    "-A",
    "packaging/smoke.ts",
    "--",
    DENO,
    "eval",
    "console.log('9.9.9')",
  ]);
  assert.equal(out.code, 1, out.stdout + out.stderr);
  const lines = out.stdout.trimEnd().split("\n");
  assert.equal(lines[0], `FAIL -version prints ${VERSION}: printed "9.9.9", exit 0`);
  assert.match(lines[1], /^FAIL starts with .*config\.yml: exited with 0: "9\.9\.9"$/);
  assert.equal(lines.at(-1), "smoke: 0 passed, 2 failed");
});

const UNIT = `${ROOT}/packaging/patroniglue.service`;

Deno.test("systemd unit: the system user patroniglue, hardened sandbox, restart on failure, reload by SIGHUP", async () => {
  const text = await Deno.readTextFile(UNIT);
  const directives = text.split("\n").filter((l) => /^[A-Z]/.test(l));
  for (
    const d of [
      "User=patroniglue",
      "Group=patroniglue",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "RemoveIPC=yes",
      "NoNewPrivileges=yes",
      "Restart=on-failure",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "CapabilityBoundingSet=",
      "ExecStartPre=/usr/bin/patroniglue -check-config -config /etc/patroniglue/config.yml",
      "ExecStart=/usr/bin/patroniglue -config /etc/patroniglue/config.yml",
    ]
  ) assert.ok(directives.includes(d), d);
  assert.ok(
    !directives.some((d) => d.startsWith("DynamicUser")),
    "a static user, not a transient one",
  );
  assert.ok(!directives.some((d) => d.startsWith("AmbientCapabilities")));
  assert.ok(!directives.some((d) => d.startsWith("MemoryDenyWriteExecute")), "V8 needs W^X off");
  assert.match(
    text,
    /\n#CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n#AmbientCapabilities=CAP_NET_BIND_SERVICE\n/,
  );
});

/** The unit with the port-80 opt-in: its commented capability lines instead of the empty set. */
function withPort80(unit: string): string {
  const port80 = unit
    .replace(/\nCapabilityBoundingSet=\n/, "\n")
    .replace("#CapabilityBoundingSet=", "CapabilityBoundingSet=")
    .replace("#AmbientCapabilities=", "AmbientCapabilities=");
  assert.notEqual(port80, unit);
  return port80;
}

Deno.test({
  name: "systemd unit passes `systemd-analyze verify`, as shipped and with the port-80 opt-in",
  ignore: !(await onPath("systemd-analyze")),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pg-unit-" });
    try {
      // verify wants ExecStart's program to exist: point it at a stub, change nothing else.
      await Deno.writeTextFile(`${dir}/patroniglue`, STUB, { mode: 0o755 });
      const shipped = (await Deno.readTextFile(UNIT)).replaceAll(
        "/usr/bin/patroniglue",
        `${dir}/patroniglue`,
      );
      const port80 = withPort80(shipped);
      for (const [name, text] of [["shipped", shipped], ["port80", port80]]) {
        await Deno.mkdir(`${dir}/${name}`);
        await Deno.writeTextFile(`${dir}/${name}/patroniglue.service`, text);
        const out = await run("systemd-analyze", [
          "verify",
          "--man=no",
          `${dir}/${name}/patroniglue.service`,
        ]);
        assert.equal(out.code, 0, `${name}: ${out.stdout}${out.stderr}`);
        assert.equal(out.stderr.trim(), "", name);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "systemd unit: exposure at most 2.0 (`systemd-analyze security --offline=true`), as shipped and with the port-80 opt-in, in the unit or a drop-in",
  ignore: !(await onPath("systemd-analyze")),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pg-unit-" });
    try {
      const shipped = await Deno.readTextFile(UNIT);
      for (const [name, text] of [["shipped", shipped], ["port80", withPort80(shipped)]]) {
        await Deno.mkdir(`${dir}/${name}`);
        await Deno.writeTextFile(`${dir}/${name}/patroniglue.service`, text);
        const out = await run("systemd-analyze", [
          "security",
          "--offline=true",
          "--no-pager",
          `${dir}/${name}/patroniglue.service`,
        ], { cwd: dir });
        assert.equal(out.code, 0, `${name}: ${out.stdout}${out.stderr}`);
        const level = out.stdout.match(/Overall exposure level for \S+: (\d+\.\d+)/)?.[1];
        assert.ok(level !== undefined, out.stdout);
        assert.ok(Number(level) <= 2.0, `${name}: exposure ${level}`);
        // A static user is as good as a transient one here: the analysis says so.
        assert.match(out.stdout, /✓ User=\/DynamicUser=/, name);
      }
      // The two lines in a drop-in (systemctl edit), over the unit as a package installs it.
      const root = `${dir}/root`;
      await Deno.mkdir(`${root}/lib/systemd/system`, { recursive: true });
      await Deno.mkdir(`${root}/etc/systemd/system/patroniglue.service.d`, { recursive: true });
      await Deno.copyFile(UNIT, `${root}/lib/systemd/system/patroniglue.service`);
      const lines = shipped.split("\n").filter((l) =>
        /^#(CapabilityBoundingSet|AmbientCapabilities)=/.test(l)
      );
      await Deno.writeTextFile(
        `${root}/etc/systemd/system/patroniglue.service.d/port80.conf`,
        `[Service]\n${lines.map((l) => l.slice(1)).join("\n")}\n`,
      );
      const out = await run("systemd-analyze", [
        "security",
        "--offline=true",
        "--no-pager",
        `--root=${root}`,
        "patroniglue.service",
      ], { cwd: dir });
      assert.equal(out.code, 0, out.stdout + out.stderr);
      assert.match(
        out.stdout,
        /✗ CapabilityBoundingSet=~CAP_NET_\(BIND_SERVICE.*elevated networking/,
      );
      const level = Number(out.stdout.match(/Overall exposure level for \S+: (\d+\.\d+)/)?.[1]);
      assert.ok(level <= 2.0, `drop-in: exposure ${level}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The setpriv(1) options that give a process what the unit's capability lines give the service. */
function capabilityOptions(unit: string): string[] {
  const directive = (name: string) =>
    unit.split("\n").find((l) => l.startsWith(`${name}=`))?.slice(name.length + 1).trim() ?? "";
  const caps = (value: string) =>
    value.split(/\s+/).filter(Boolean).map((c) => `,+${c.replace(/^CAP_/, "").toLowerCase()}`)
      .join("");
  const bounding = caps(directive("CapabilityBoundingSet"));
  const ambient = caps(directive("AmbientCapabilities"));
  const options = [`--bounding-set=-all${bounding}`, `--inh-caps=-all${ambient}`];
  if (ambient) options.push(`--ambient-caps=-all${ambient}`);
  return options;
}

/** Whether this process can make a network namespace (root, and a runtime that lets it). */
const CAN_UNSHARE_NET = Deno.uid() === 0 &&
  await run("unshare", ["--net", "true"]).then((o) => o.code === 0, () => false) &&
  await onPath("setpriv") && await onPath("ip") && await onPath("curl");

Deno.test({
  name:
    "systemd unit: as a non-root user, port 80 is refused as shipped and served with the capability lines (needs root, a network namespace, setpriv, ip, curl)",
  ignore: !CAN_UNSHARE_NET,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pg-port80-" });
    try {
      await Deno.chmod(dir, 0o755);
      await Deno.writeTextFile(
        `${dir}/config.yml`,
        "frontend:\n  host: 127.0.0.1\n  port: 80\nbackend:\n  host: 127.0.0.1\n  port: 8008\n",
        { mode: 0o644 },
      );
      await Deno.chmod(`${dir}/config.yml`, 0o644);
      await Deno.mkdir(`${dir}/deno`);
      await Deno.chown(`${dir}/deno`, 65534, 65534);
      // In a network namespace of its own (unprivileged ports start at 1024 there): the service's
      // user change, capabilities and no_new_privs, then /health on port 80 or the exit.
      const script = `
        ip link set lo up
        caps="$1"; shift
        DENO_DIR="$DIR/deno" HOME=/nonexistent setpriv --reuid=65534 --regid=65534 \\
          --clear-groups $caps --no-new-privs "$@" 2>"$DIR/stderr" &
        pid=$!
        for i in $(seq 1 300); do
          code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:80/health) && break
          kill -0 $pid 2>/dev/null || break
          sleep 0.1
        done
        echo "health=$code"
        kill $pid 2>/dev/null; wait $pid; echo "exit=$?"`;
      const shipped = await Deno.readTextFile(UNIT);
      const attempt = async (unit: string) => {
        const out = await run("unshare", [
          "--net",
          "sh",
          "-c",
          script,
          "sh",
          capabilityOptions(unit).join(" "),
          DENO,
          "run",
          "-q",
          "-P",
          "--config",
          `${ROOT}/deno.json`,
          `${ROOT}/main.ts`,
          "-config",
          `${dir}/config.yml`,
        ], { env: { ...Deno.env.toObject(), DIR: dir } });
        return { ...out, stderr: await Deno.readTextFile(`${dir}/stderr`) };
      };
      const refused = await attempt(shipped);
      assert.match(refused.stdout, /health=000\nexit=1\n/, refused.stdout + refused.stderr);
      assert.match(refused.stderr, /cannot listen on 127\.0\.0\.1:80: Permission denied/);
      const served = await attempt(withPort80(shipped));
      assert.match(served.stdout, /health=200\nexit=0\n/, served.stdout + served.stderr);
      assert.match(served.stderr, /listening on http:\/\/127\.0\.0\.1:80,/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("Dockerfile: distroless, non-root, the linux binary and the example config", async () => {
  const text = await Deno.readTextFile(`${ROOT}/Dockerfile`);
  const lines = text.split("\n").filter((l) => /^[A-Z]/.test(l));
  assert.ok(lines.includes("FROM gcr.io/distroless/cc-debian12:nonroot"));
  assert.ok(lines.includes("USER 65532:65532"));
  assert.ok(
    lines.includes("COPY dist/patroniglue-${VERSION}-linux-${TARGETARCH}/patroniglue /patroniglue"),
  );
  assert.ok(lines.includes("COPY config.yml.example /etc/patroniglue/config.yml.example"));
  assert.ok(lines.includes('ENTRYPOINT ["/patroniglue"]'));
  assert.ok(lines.includes('CMD ["-config", "/etc/patroniglue/config.yml"]'));
  // The COPY path is the build's output for both linux architectures.
  for (const t of TARGETS.filter((t) => t.os === "linux")) {
    assert.equal(`patroniglue-\${VERSION}-linux-${t.arch}`, distName("${VERSION}", t));
  }
  // EXPOSE is the example's frontend.port.
  const example = parseYaml(await Deno.readTextFile(`${ROOT}/config.yml.example`));
  assert.ok(lines.includes(`EXPOSE ${example.frontend.port}`));
  // The build context is only what the image copies.
  const ignore = (await Deno.readTextFile(`${ROOT}/.dockerignore`)).split("\n")
    .filter((l) => l && !l.startsWith("#"));
  assert.deepEqual(ignore, ["*", "!dist/patroniglue-*-linux-*/patroniglue", "!config.yml.example"]);
});

Deno.test({
  name: "Dockerfile passes hadolint",
  ignore: !(await onPath("hadolint")),
  async fn() {
    const out = await run("hadolint", ["Dockerfile"]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
  },
});

Deno.test("workflows: release builds, smoke-tests, pushes the image and publishes; ci runs .ci/run", async () => {
  const release = parseYaml(await Deno.readTextFile(`${ROOT}/.github/workflows/release.yml`));
  assert.deepEqual(release.on, { push: { tags: ["v*"] } });
  type Step = { run?: string; uses?: string; with?: Record<string, unknown> };
  const steps: Step[] = Object.values(release.jobs as Record<string, { steps: Step[] }>)
    .flatMap((j) => j.steps);
  const runs = steps.map((s) => s.run ?? "").join("\n");
  assert.match(runs, /npm install -g deno@2\.9\.6/);
  assert.match(runs, /\.\/build\.sh/);
  assert.match(runs, /packaging\/smoke\.ts -- .*linux-amd64\/patroniglue/);
  assert.match(runs, /sha256sum -c SHA256SUMS/);
  assert.match(
    runs,
    /gh release create .*dist\/\*\.tar\.gz dist\/\*\.deb dist\/\*\.rpm dist\/SHA256SUMS/,
  );
  // Packages for both linux architectures, from the built binaries; linted; the .deb installed.
  assert.match(
    runs,
    /for arch in amd64 arm64; do\n\s+deno task package --binary "dist\/patroniglue-\$VERSION-linux-\$arch\/patroniglue"/,
  );
  assert.match(runs, /lintian --fail-on error dist\/\*\.deb/);
  assert.match(runs, /rpmlint -c packaging\/rpm\/rpmlint\.toml dist\/\*\.rpm/);
  assert.match(runs, /apt-get install -y "\.\/dist\/patroniglue_\$\{VERSION\}_amd64\.deb"/);
  assert.match(runs, /packaging\/smoke\.ts -- \/usr\/bin\/patroniglue/);
  assert.ok(runs.indexOf("deno task package") < runs.indexOf("sha256sum -c SHA256SUMS"));
  const uploaded = steps.find((s) => s.uses?.startsWith("actions/upload-artifact@"))?.with?.path;
  assert.match(String(uploaded), /dist\/\*\.deb\n.*dist\/\*\.rpm/s);
  const pushed = steps.find((s) => s.uses?.startsWith("docker/build-push-action@") && s.with?.push);
  assert.equal(pushed?.with?.platforms, "linux/amd64,linux/arm64");
  const ci = parseYaml(await Deno.readTextFile(`${ROOT}/.github/workflows/ci.yml`));
  const ciRuns = ci.jobs.ci.steps.map((s: { run?: string }) => s.run ?? "");
  assert.ok(ciRuns.includes("bash .ci/run"));
  assert.ok(ciRuns.some((r: string) => r.includes("npm install -g deno@2.9.6")));
});
