// Installing the packages as operators do, where systemd is not running (as in a container): the .deb
// with apt-get and dpkg on this machine (install, the user, modes, reinstall, upgrade, remove, purge),
// the .rpm with rpm --root into a small root (its %pre creates the user there, reinstall, upgrade, erase).
import assert from "node:assert/strict";
import { hostTarget, VERSION } from "../packaging/build.ts";
import { BINARY_PATH, CONFIG_PATH } from "../packaging/package.ts";
import {
  CAN_BUILD_PACKAGES,
  CAN_INSTALL_DEB,
  elfStandIn,
  packageOf,
  scriptStandIn,
} from "./support/package.ts";
import { fixture } from "./support/glue.ts";
import { type CommandResult, hasProgram, ROOT, runCommand, tempDir } from "./support/tools.ts";

/** This machine's architecture: the packages installed here are built for it. */
const ARCH = hostTarget()?.arch ?? "amd64";

/** Runs a program as root on this machine; the environment is this process's plus `env`. */
function sh(script: string, env: Record<string, string> = {}): Promise<CommandResult> {
  return runCommand("sh", ["-c", script], {
    env: { ...Deno.env.toObject(), DEBIAN_FRONTEND: "noninteractive", ...env },
  });
}

async function ok(script: string, env: Record<string, string> = {}): Promise<string> {
  const out = await sh(script, env);
  assert.equal(out.code, 0, `${script}:\n${out.stdout}${out.stderr}`);
  return out.stdout + out.stderr;
}

/**
 * apt-get and dpkg, waiting up to 2 min for another apt or dpkg on this machine to finish. dpkg
 * defers the triggers of other packages (man-db's index takes seconds each time); {@linkcode cleanUp}
 * runs them once.
 */
const APT = "apt-get -y -q -o DPkg::Lock::Timeout=120";
const DPKG = 'err=$(mktemp); for i in $(seq 120); do if dpkg "$@" 2>"$err"; then cat "$err" >&2; ' +
  'rm -f "$err"; exit 0; fi; grep -q lock "$err" || { cat "$err" >&2; rm -f "$err"; exit 1; }; ' +
  "sleep 1; done; exit 1";

const dpkg = (args: string) => ok(`sh -c '${DPKG}' dpkg --no-triggers ${args}`);
const entry = (db: string, name: string) => sh(`getent ${db} ${name}`).then((o) => o.stdout.trim());

/** Owner, group and mode of a file, as `stat` prints them. */
const statOf = (path: string) => ok(`stat -c '%U:%G %a' ${path}`).then((s) => s.trim());

/** The package's own leftovers on this machine, removed: only what a failed run of this test made. */
async function cleanUp(): Promise<void> {
  await sh(`dpkg-query -W patroniglue >/dev/null 2>&1 && sh -c '${DPKG}' dpkg --purge patroniglue`);
  await sh(`sh -c '${DPKG}' dpkg --triggers-only --pending`);
  await sh("rm -rf /etc/patroniglue; getent passwd patroniglue && deluser --system patroniglue");
  await sh("getent group patroniglue && delgroup --system patroniglue");
}

Deno.test({
  name:
    "the .deb with apt-get and dpkg on this machine (needs root, apt-get, dpkg-deb, rpmbuild, readelf, setpriv), systemd not running: the user, root:patroniglue 0640, reinstall, upgrade, remove, purge",
  ignore: !CAN_INSTALL_DEB,
  async fn() {
    // Refuse to touch a patroniglue this test did not install.
    assert.notEqual((await sh("dpkg-query -W patroniglue")).code, 0, "patroniglue is installed");
    assert.equal(await entry("passwd", "patroniglue"), "", "a user patroniglue exists here");
    assert.equal(await entry("group", "patroniglue"), "", "a group patroniglue exists here");
    await using dir = await tempDir("pg-deb-");
    await Deno.mkdir(`${dir.path}/deno`, { mode: 0o777 });
    await Deno.chmod(`${dir.path}/deno`, 0o777);
    const binary = await scriptStandIn(dir.path, `${dir.path}/deno`);
    const { deb } = await packageOf(binary, ARCH, `${dir.path}/v1`);
    const debPath = `${dir.path}/v1/${deb}`;
    try {
      // Install as the README says (apt); dpkg does the rest, faster.
      await ok(`${APT} install ${debPath}`);
      const user = (await entry("passwd", "patroniglue")).split(":");
      assert.equal(user.length, 7, "the user exists");
      assert.ok(Number(user[2]) < 1000, `a system user: uid ${user[2]}`);
      assert.deepEqual(user.slice(5), ["/nonexistent", "/usr/sbin/nologin"]);
      const group = (await entry("group", "patroniglue")).split(":");
      assert.equal(group[2], user[3], "its own group");
      assert.equal(await statOf(CONFIG_PATH), "root:patroniglue 640");
      assert.equal(await statOf(BINARY_PATH), "root:root 755");
      assert.equal(await statOf("/lib/systemd/system/patroniglue.service"), "root:root 644");
      assert.equal(
        (await ok(`dpkg-statoverride --list ${CONFIG_PATH}`)).trim(),
        `root patroniglue 640 ${CONFIG_PATH}`,
      );
      assert.equal(
        await Deno.readTextFile(CONFIG_PATH),
        await Deno.readTextFile(`${ROOT}/config.yml.example`),
      );
      // Not enabled: the operator edits the config first.
      assert.equal((await sh("ls /etc/systemd/system/*.wants/patroniglue.service")).code, 2);

      // The service's user reads the config and a key 0640 root:patroniglue; other users do not.
      await ok(
        `install -d -m 0750 -o root -g patroniglue /etc/patroniglue/tls && ` +
          `install -m 0644 ${fixture("server.pem")} /etc/patroniglue/tls/cert.pem && ` +
          `install -m 0640 -o root -g patroniglue ${
            fixture("server.key")
          } /etc/patroniglue/tls/key.pem`,
      );
      const edited = (await Deno.readTextFile(CONFIG_PATH)).replace(
        "  # certfile: /etc/patroniglue/tls/cert.pem\n  # keyfile: /etc/patroniglue/tls/key.pem\n",
        "  certfile: /etc/patroniglue/tls/cert.pem\n  keyfile: /etc/patroniglue/tls/key.pem\n",
      );
      assert.notEqual(edited, await Deno.readTextFile(CONFIG_PATH));
      await Deno.writeTextFile(CONFIG_PATH, edited);
      const asUser = (user: string, group: string) =>
        sh(
          `setpriv --reuid=${user} --regid=${group} --init-groups env HOME=/nonexistent ` +
            `${BINARY_PATH} -check-config -config ${CONFIG_PATH}`,
        );
      const checked = await asUser("patroniglue", "patroniglue");
      assert.equal(checked.code, 0, checked.stdout + checked.stderr);
      assert.match(checked.stdout + checked.stderr, /configuration OK/);
      const nobody = await asUser("nobody", "nogroup");
      assert.equal(nobody.code, 1, nobody.stdout + nobody.stderr);
      assert.match(nobody.stderr, /config\.yml.*(denied|NotCapable|permission)/i);

      // Reinstall: the edited config, its owner and mode, and the user stay as they are.
      await dpkg(`-i ${debPath}`);
      assert.equal(await Deno.readTextFile(CONFIG_PATH), edited);
      assert.equal(await statOf(CONFIG_PATH), "root:patroniglue 640");
      assert.equal((await entry("passwd", "patroniglue")).split(":")[2], user[2]);

      // Upgrades to versions whose example changed. The operator keeps their config (dpkg asks;
      // --force-confold answers as the default does): the new one is beside it, and the mode stays.
      const nextVersion = async (n: number) => {
        await using next = await tempDir("pg-deb-root-");
        await ok(`cp -r ${ROOT}/. ${next.path}/ 2>/dev/null; true`);
        await Deno.writeTextFile(`${next.path}/config.yml.example`, `# version ${n}\n`);
        const version = `${VERSION}.${n}`;
        const { deb } = await packageOf(binary, ARCH, `${dir.path}/v${n}`, {
          root: next.path,
          version,
        });
        return { version, deb: `${dir.path}/v${n}/${deb}` };
      };
      const v2 = await nextVersion(2);
      await dpkg(`--force-confold -i ${v2.deb}`);
      assert.equal(await ok("dpkg-query -W -f '${Version}' patroniglue"), v2.version);
      assert.equal(await Deno.readTextFile(CONFIG_PATH), edited, "the operator's config is kept");
      assert.equal(await Deno.readTextFile(`${CONFIG_PATH}.dpkg-dist`), "# version 2\n");
      assert.equal(await statOf(CONFIG_PATH), "root:patroniglue 640");
      // The operator takes the new one (--force-confnew): dpkg writes it root:patroniglue 0640 too
      // (the statoverride), the old one saved beside it.
      const v3 = await nextVersion(3);
      await dpkg(`--force-confnew -i ${v3.deb}`);
      assert.equal(await Deno.readTextFile(CONFIG_PATH), "# version 3\n");
      assert.equal(await statOf(CONFIG_PATH), "root:patroniglue 640", "the statoverride applies");
      assert.equal(await Deno.readTextFile(`${CONFIG_PATH}.dpkg-old`), edited);
      await ok(`rm ${CONFIG_PATH}.dpkg-old`);

      // Remove: the binary goes, the config and the user stay.
      await dpkg("--remove patroniglue");
      assert.equal((await sh(`test -e ${BINARY_PATH}`)).code, 1);
      assert.equal(await statOf(CONFIG_PATH), "root:patroniglue 640");
      assert.notEqual(await entry("passwd", "patroniglue"), "");

      // Purge with the operator's key still in /etc/patroniglue: it stays, and so do the user and
      // group it may belong to; the config and its statoverride go.
      const purge = await dpkg("--purge patroniglue");
      assert.match(purge, /\/etc\/patroniglue still holds files; keeping them/);
      assert.equal((await sh(`test -e ${CONFIG_PATH}`)).code, 1);
      assert.equal(await statOf("/etc/patroniglue/tls/key.pem"), "root:patroniglue 640");
      assert.notEqual(await entry("passwd", "patroniglue"), "");
      assert.equal((await sh(`dpkg-statoverride --list ${CONFIG_PATH}`)).code, 1);

      // Install again (the user exists: it is used), then purge with nothing else left: the
      // package leaves nothing behind, user and group included.
      await ok("rm -r /etc/patroniglue/tls");
      await dpkg(`-i ${debPath}`);
      assert.equal((await entry("passwd", "patroniglue")).split(":")[2], user[2]);
      await ok("systemctl enable patroniglue.service"); // as the operator would, offline
      await dpkg("--purge patroniglue");
      assert.equal((await sh("dpkg-query -W patroniglue")).code, 1);
      for (
        const path of ["/etc/patroniglue", BINARY_PATH, "/lib/systemd/system/patroniglue.service"]
      ) {
        assert.equal((await sh(`test -e ${path}`)).code, 1, `${path} is gone`);
      }
      assert.equal((await sh("ls /etc/systemd/system/*.wants/patroniglue.service")).code, 2);
      assert.equal(await entry("passwd", "patroniglue"), "", "the user is gone");
      assert.equal(await entry("group", "patroniglue"), "", "the group is gone");
      assert.equal((await sh(`dpkg-statoverride --list ${CONFIG_PATH}`)).code, 1);
    } finally {
      await cleanUp();
    }
  },
});

/** Whether an .rpm can be installed into a small root here: root, rpm, and the %pre's programs. */
const CAN_INSTALL_RPM = Deno.uid() === 0 && hostTarget()?.os === "linux" && CAN_BUILD_PACKAGES &&
  hasProgram("rpm") &&
  hasProgram("ldd") && ["/bin/dash", "/usr/bin/getent", "/usr/sbin/groupadd", "/usr/sbin/useradd"]
  .every((p) => Deno.statSync(p).isFile);

/**
 * A root holding just what the .rpm's scriptlets run (sh, getent, groupadd, useradd, their
 * libraries) and a passwd, group and shadow with root alone.
 */
async function smallRoot(dir: string): Promise<void> {
  await ok(
    `for b in /bin/dash /usr/bin/getent /usr/sbin/groupadd /usr/sbin/useradd; do ` +
      `for f in "$b" $(ldd "$b" | grep -o '/[^ ]*'); do ` +
      `mkdir -p "$R$(dirname "$f")" && cp -L "$f" "$R$f"; done; done; ` +
      `ln -s dash "$R/bin/sh" && mkdir -p "$R/etc" "$R/dev" "$R/tmp" "$R/var/tmp" && ` +
      `: > "$R/dev/null" && chmod 666 "$R/dev/null" && cp /etc/login.defs "$R/etc/" && ` +
      `echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd" && echo 'root:x:0:' > "$R/etc/group" && ` +
      `echo 'root:*:19000:0:99999:7:::' > "$R/etc/shadow" && echo 'root:*::' > "$R/etc/gshadow" && ` +
      `printf 'passwd: files\\ngroup: files\\nshadow: files\\n' > "$R/etc/nsswitch.conf"`,
    { R: dir },
  );
}

Deno.test({
  name:
    "the .rpm with rpm --root into a small root (needs root, rpm, rpmbuild, ldd): %pre makes the user, root:patroniglue 0640, reinstall, upgrade, erase",
  ignore: !CAN_INSTALL_RPM,
  async fn() {
    await using dir = await tempDir("pg-rpm-");
    const root = `${dir.path}/root`;
    await smallRoot(root);
    const binary = await elfStandIn(dir.path, ARCH);
    const { rpm } = await packageOf(binary, ARCH, `${dir.path}/v1`);
    const rpmDb = `rpm --root ${root} --dbpath /var/lib/rpm`;
    // No rpm database knows the root's few files: dependencies are not checked there.
    const rpmCmd = `${rpmDb} --force-debian --nodeps`;
    await ok(`${rpmDb} --initdb`);
    const rootEntry = async (file: string, name: string) =>
      (await Deno.readTextFile(`${root}/etc/${file}`)).split("\n").find((l) =>
        l.startsWith(`${name}:`)
      )?.split(":");

    await ok(`${rpmCmd} -i ${dir.path}/v1/${rpm}`);
    const user = await rootEntry("passwd", "patroniglue");
    assert.ok(user, "%pre made the user in the root");
    assert.ok(Number(user[2]) < 1000, `a system user: uid ${user[2]}`);
    assert.deepEqual(user.slice(5), ["/nonexistent", "/sbin/nologin"]);
    const group = await rootEntry("group", "patroniglue");
    assert.equal(group?.[2], user[3]);
    const config = await Deno.stat(`${root}${CONFIG_PATH}`);
    assert.deepEqual([config.uid, config.gid, config.mode! & 0o7777], [0, Number(group[2]), 0o640]);
    assert.equal((await Deno.stat(`${root}${BINARY_PATH}`)).mode! & 0o7777, 0o755);
    assert.ok((await Deno.stat(`${root}/usr/lib/systemd/system/patroniglue.service`)).isFile);
    await ok(`${rpmDb} -V --nodeps patroniglue`);

    // Reinstall: the operator's config is kept (%config(noreplace)), the user is not made twice.
    const edited = (await Deno.readTextFile(`${root}${CONFIG_PATH}`)) + "# edited\n";
    await Deno.writeTextFile(`${root}${CONFIG_PATH}`, edited);
    await ok(`${rpmCmd} -i --replacepkgs ${dir.path}/v1/${rpm}`);
    assert.equal(await Deno.readTextFile(`${root}${CONFIG_PATH}`), edited);
    assert.equal(
      (await Deno.readTextFile(`${root}/etc/passwd`)).match(/^patroniglue:/gm)?.length,
      1,
    );

    // Upgrade to a version whose example changed: the operator's stays, the new one is .rpmnew.
    await using next = await tempDir("pg-rpm-root-");
    await ok(`cp -r ${ROOT}/. ${next.path}/ 2>/dev/null; true`);
    await Deno.writeTextFile(`${next.path}/config.yml.example`, "# the next version's example\n");
    const v2 = await packageOf(binary, ARCH, `${dir.path}/v2`, {
      root: next.path,
      version: `${VERSION}.1`,
    });
    await ok(`${rpmCmd} -U ${dir.path}/v2/${v2.rpm}`);
    assert.equal((await ok(`${rpmDb} -q --qf '%{VERSION}' patroniglue`)).trim(), `${VERSION}.1`);
    assert.equal(await Deno.readTextFile(`${root}${CONFIG_PATH}`), edited);
    assert.equal(
      await Deno.readTextFile(`${root}${CONFIG_PATH}.rpmnew`),
      "# the next version's example\n",
    );

    // Erase: the files go; the edited config is saved as .rpmsave; the user stays (RPM's way).
    await ok(`${rpmCmd} -e patroniglue`);
    assert.equal((await sh(`test -e ${root}${BINARY_PATH}`)).code, 1);
    assert.equal(await Deno.readTextFile(`${root}${CONFIG_PATH}.rpmsave`), edited);
    assert.ok(await rootEntry("passwd", "patroniglue"));
  },
});
