// External programs for tests: which ones a test can use (tests that need a missing one are ignored, not passed), and running them.

/** The repository's path (no trailing slash). */
export const ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** A new temporary directory (mode 0755: tools that drop privileges read it), removed on dispose. */
export async function tempDir(prefix: string): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  await Deno.chmod(path, 0o755);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** Whether `program --version` (or `version`) runs. */
export function hasProgram(program: string, args = ["--version"]): boolean {
  try {
    return new Deno.Command(program, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** Whether `program` is on PATH (for programs without a `--version`). */
export async function onPath(program: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", {
      args: ["-c", 'command -v "$0"', program],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** What {@linkcode runCommand} got back: the exit code and the output as text. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@linkcode runCommand}. */
export interface RunOptions {
  /** @default {the repository} */
  cwd?: string;
  /** The whole environment (nothing else is passed). @default {this process's} */
  env?: Record<string, string>;
  /** Text on its standard input. @default {none} */
  stdin?: string;
}

/** Runs a program to completion. */
export async function runCommand(
  program: string,
  args: string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const child = new Deno.Command(program, {
    args,
    cwd: options.cwd ?? ROOT,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env, clearEnv: true } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
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
