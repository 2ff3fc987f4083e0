// Stand-ins for the compiled binary in package tests (`deno compile` cannot run here), and building packages of them.
import { buildPackages, type PackageResult } from "../../packaging/package.ts";
import { findTarget, hostTarget, type Target, VERSION } from "../../packaging/build.ts";
import { hasProgram, onPath, ROOT } from "./tools.ts";

/** What building packages needs: dpkg-deb, rpmbuild and readelf. */
export const CAN_BUILD_PACKAGES: boolean = hasProgram("dpkg-deb") && hasProgram("rpmbuild") &&
  hasProgram("readelf");

/** Whether this process may install packages on this machine (root, apt-get and dpkg). */
export const CAN_INSTALL_DEB: boolean = Deno.uid() === 0 && hostTarget()?.os === "linux" &&
  CAN_BUILD_PACKAGES &&
  hasProgram("apt-get") && hasProgram("dpkg") && (await onPath("setpriv"));

/** What a `deno compile` output has after its runtime, and what a strip would cut off. */
export const PAYLOAD = "\n// patroniglue's program, after the runtime\n";

/** Stand-ins are padded to this size, so that the documentation is a small part of a package, as with the real binary (rpmlint's package-with-huge-docs). */
const STAND_IN_BYTES = 2 * 1024 * 1024;

/** ELF machine numbers (e_machine) of the targets' architectures. */
const MACHINE: Record<Target["arch"], number> = { amd64: 62, arm64: 183 };

/**
 * A dynamically linked ELF executable for `arch`, standing in for the compiled binary: this machine's
 * /usr/bin/true with its machine field set to `arch` (its libraries and symbol versions stay real),
 * padded, and {@linkcode PAYLOAD} at its end, as a `deno compile` output carries its program.
 */
export async function elfStandIn(dir: string, arch: Target["arch"]): Promise<string> {
  const bytes = await Deno.readFile("/usr/bin/true");
  new DataView(bytes.buffer).setUint16(18, MACHINE[arch], true);
  const path = `${dir}/patroniglue-${arch}`;
  const payload = new TextEncoder().encode(PAYLOAD);
  const file = new Uint8Array(Math.max(STAND_IN_BYTES, bytes.length + payload.length));
  file.set(bytes);
  file.set(payload, file.length - payload.length);
  await Deno.writeFile(path, file, { mode: 0o755 });
  return path;
}

/**
 * A script standing in for the compiled binary that runs this checkout's main.ts with deno.json's
 * permissions, from any directory and as any user (`denoDir` must be writable by that user).
 */
export async function scriptStandIn(dir: string, denoDir: string): Promise<string> {
  const path = `${dir}/patroniglue-script`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nDENO_DIR=${denoDir} exec ${Deno.execPath()} run -q -P --config ${ROOT}/deno.json ` +
      `${ROOT}/main.ts "$@"\n`,
    { mode: 0o755 },
  );
  return path;
}

/** Builds the packages of `binary` for `arch` into `dist` from this checkout, quietly. */
export function packageOf(
  binary: string,
  arch: Target["arch"],
  dist: string,
  options: { root?: string; version?: string; epoch?: number; compression?: "xz" | "fast" } = {},
): Promise<PackageResult> {
  return buildPackages({
    root: options.root ?? ROOT,
    binary,
    target: findTarget(`linux-${arch}`)!,
    dist,
    version: options.version ?? VERSION,
    epoch: options.epoch ?? 1_796_000_000,
    compression: options.compression,
    log: () => {},
  });
}
