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

/** The chunks as one byte array. */
export function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
