// Which external programs a test can use (tests that need a missing one are ignored, not passed).

/** Whether `program --version` (or `version`) runs. */
export function hasProgram(program: string, args = ["--version"]): boolean {
  try {
    return new Deno.Command(program, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** The openssl command line, for TLS handshakes with a chosen protocol version. */
export const HAS_OPENSSL: boolean = hasProgram("openssl", ["version"]);
