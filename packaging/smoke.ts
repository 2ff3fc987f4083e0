// Smoke test of a patroniglue command against a simulated Patroni:
//
//   deno run -A packaging/smoke.ts -- deno run -q -P main.ts
//   deno run -A packaging/smoke.ts -- ./dist/patroniglue-0.1.0-linux-amd64/patroniglue
//   deno run -A packaging/smoke.ts -- docker run --rm --network host -v /tmp:/tmp:ro IMAGE
//
// Checks that `-version` prints deno.json's version; starts the command with a copy of
// config.yml.example moved to free loopback ports; checks /health 200 and /primary 200, then
// /primary 503 once the member turns replica and the cached answer expires; SIGTERM -> exit 0.
// Prints one line per check and exits 1 when any fails.
import denoJson from "../deno.json" with { type: "json" };
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { FakePatroni } from "../tests/support/fake_patroni.ts";

/** Longest wait for the command to answer /health after it starts. */
const START_TIMEOUT_MS = 20_000;
/** Longest wait for the command to exit after SIGTERM. */
const STOP_TIMEOUT_MS = 10_000;

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Where the smoke configuration points. */
export interface SmokePorts {
  frontend: number;
  backend: number;
  /** For `metrics.port`, used only when the example sets one. */
  metrics: number;
}

/**
 * The example configuration moved to loopback and the given ports, plain HTTP on both sides,
 * and a cache ttl of at most 1 s; written from scratch when there is no example.
 */
export function smokeConfig(example: string | undefined, ports: SmokePorts): string {
  const doc = parseDocument(example ?? "");
  if (doc.errors.length) throw new Error(`config.yml.example: ${doc.errors[0].message}`);
  doc.setIn(["frontend", "host"], "127.0.0.1");
  doc.setIn(["frontend", "port"], ports.frontend);
  for (const key of ["certfile", "keyfile"]) doc.deleteIn(["frontend", key]);
  doc.setIn(["backend", "host"], "127.0.0.1");
  doc.setIn(["backend", "port"], ports.backend);
  doc.setIn(["backend", "scheme"], "http");
  for (const key of ["insecure", "cafile", "certfile", "keyfile"]) doc.deleteIn(["backend", key]);
  const ttl = doc.getIn(["cache", "ttl"]);
  if (typeof ttl !== "number" || ttl > 1) doc.setIn(["cache", "ttl"], 1);
  if (doc.getIn(["cache", "interval"]) === undefined) doc.setIn(["cache", "interval"], 0.25);
  if (doc.hasIn(["metrics", "port"])) {
    doc.setIn(["metrics", "host"], "127.0.0.1");
    doc.setIn(["metrics", "port"], ports.metrics);
  }
  return doc.toString();
}

/** The outcome of {@linkcode smoke}. */
export interface SmokeResult {
  passed: number;
  failed: number;
}

/** What {@linkcode smoke} runs. */
export interface SmokeOptions {
  /** The command, without `-version` or `-config`. */
  command: readonly string[];
  /** config.yml.example's text, or undefined to write the configuration from scratch. */
  example?: string;
  /** Working directory of the command. @default {Deno.cwd()} */
  cwd?: string;
  /** Where each check's line goes. @default {console.log} */
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects a stream's text, to show a failed command's output. */
function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text().catch(() => "");
}

/** Status of `GET url`, or the error's message. */
async function get(url: string): Promise<number | string> {
  try {
    const res = await fetch(url);
    await res.body?.cancel();
    return res.status;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Runs every check against `command`; one line per check. */
export async function smoke(options: SmokeOptions): Promise<SmokeResult> {
  const log = options.log ?? console.log;
  const [program, ...args] = options.command;
  const cwd = options.cwd ?? Deno.cwd();
  const version = denoJson.version;
  const result: SmokeResult = { passed: 0, failed: 0 };
  const check = (ok: boolean, what: string, detail = "") => {
    ok ? result.passed++ : result.failed++;
    log(`${ok ? "ok  " : "FAIL"} ${what}${detail && !ok ? `: ${detail}` : ""}`);
    return ok;
  };

  // -version
  try {
    const out = await new Deno.Command(program, {
      args: [...args, "-version"],
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const printed = new TextDecoder().decode(out.stdout).trim();
    check(
      out.code === 0 && printed === version,
      `-version prints ${version}`,
      `printed ${JSON.stringify(printed)}, exit ${out.code}${
        out.stderr.length ? `, stderr ${JSON.stringify(new TextDecoder().decode(out.stderr))}` : ""
      }`,
    );
  } catch (e) {
    check(false, `-version prints ${version}`, `cannot run ${program}: ${(e as Error).message}`);
    return result;
  }

  const dir = await Deno.makeTempDir({ prefix: "patroniglue-smoke-" });
  const fake = await FakePatroni.start({ role: "primary" });
  let child: Deno.ChildProcess | undefined;
  let output: Promise<[string, string]> | undefined;
  try {
    const ports = { frontend: freePort(), backend: fake.port, metrics: freePort() };
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(config, smokeConfig(options.example, ports));
    // Readable by other users, e.g. a container's non-root user with the directory mounted.
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(config, 0o644);
    const base = `http://127.0.0.1:${ports.frontend}`;

    child = new Deno.Command(program, {
      args: [...args, "-config", config],
      cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    output = Promise.all([collect(child.stdout), collect(child.stderr)]);
    let exited: Deno.CommandStatus | undefined;
    child.status.then((s) => exited = s);
    const showOutput = async () => {
      const [out, err] = await output!;
      return JSON.stringify((out + err).trim().split("\n").slice(-5).join("\n"));
    };

    // Starts and answers /health.
    const started = Date.now();
    let health: number | string = "not tried";
    while (Date.now() - started < START_TIMEOUT_MS && exited === undefined) {
      health = await get(`${base}/health`);
      if (typeof health === "number") break;
      await sleep(100);
    }
    if (exited !== undefined) {
      check(false, `starts with ${config}`, `exited with ${exited.code}: ${await showOutput()}`);
      return result;
    }
    if (!check(health === 200, `/health 200 on ${base}`, `got ${health}`)) return result;

    // /primary while the member is primary.
    const primary = await get(`${base}/primary`);
    check(primary === 200, "/primary 200 while the member is primary", `got ${primary}`);

    // /primary once the member is a replica and the cached answer has expired.
    fake.role = "replica";
    const turned = Date.now();
    let after: number | string = "not tried";
    while (Date.now() - turned < 5_000) {
      after = await get(`${base}/primary`);
      if (after === 503) break;
      await sleep(100);
    }
    check(
      after === 503,
      `/primary 503 after the member turned replica (${Date.now() - turned} ms)`,
      `still ${after} after 5 s`,
    );

    // SIGTERM -> exit 0.
    child.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stopped = await Promise.race([
      child.status,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), STOP_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    if (stopped === undefined) {
      check(false, "SIGTERM -> exit 0", `still running after ${STOP_TIMEOUT_MS / 1000} s`);
    } else {
      check(
        stopped.code === 0,
        "SIGTERM -> exit 0",
        `exit ${stopped.code}${
          stopped.signal ? ` (${stopped.signal})` : ""
        }: ${await showOutput()}`,
      );
    }
    return result;
  } finally {
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await child.status;
      await output;
    }
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const args = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  if (args.length === 0) {
    console.error("usage: deno run -A packaging/smoke.ts -- <command...>");
    Deno.exit(2);
  }
  let example: string | undefined;
  try {
    example = await Deno.readTextFile(
      fileURLToPath(new URL("../config.yml.example", import.meta.url)),
    );
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const { passed, failed } = await smoke({ command: args, example });
  console.log(`smoke: ${passed} passed, ${failed} failed`);
  Deno.exit(failed === 0 && passed > 0 ? 0 : 1);
}
