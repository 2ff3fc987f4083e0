// `deno task demo`: a newcomer's first run, with no Patroni installed (and maybe port 8080 taken).
import assert from "node:assert/strict";
import { agentCheck } from "./support/agent_client.ts";

/** Runs the demo until it has printed its commands; `stop()` sends Ctrl-C and collects the rest. */
async function startDemo() {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-P", "--allow-run", "tests/support/demo.ts"],
    cwd: new URL("../", import.meta.url),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("Ctrl-C stops.")) {
    const { value, done } = await reader.read();
    if (done) {
      const status = await child.status;
      throw new Error(`demo exited ${status.code}:\n${stdout}\n${await stderr}`);
    }
    stdout += value;
  }
  const rest = (async () => {
    for (let r; !(r = await reader.read()).done;) stdout += r.value;
  })();
  const url = stdout.match(/curl -i (http:\/\/127\.0\.0\.1:\d+)\/primary\n/)![1];
  const agentPort = Number(stdout.match(/printf '\/primary\\n' \| nc 127\.0\.0\.1 (\d+) /)![1]);
  const patroni = Number(stdout.match(/simulated Patroni on http:\/\/127\.0\.0\.1:(\d+) /)![1]);
  const bash = stdout.match(/\(without nc: (bash -c '.*')\)\n/)![1];
  return {
    url,
    agentPort,
    patroni,
    bash,
    get stdout() {
      return stdout;
    },
    async stop() {
      child.kill("SIGINT");
      const { code } = await child.status;
      await rest;
      return { code, stderr: await stderr };
    },
  };
}

/** What the printed addresses answer, at once: the commands are printed only once they do. */
async function tryPrinted(demo: Awaited<ReturnType<typeof startDemo>>) {
  const primary = await fetch(`${demo.url}/primary`);
  await primary.body?.cancel();
  assert.equal(primary.status, 200);
  assert.deepEqual(await (await fetch(`${demo.url}/health`)).json(), { healthy: true });
  assert.equal((await agentCheck(demo.agentPort, "/primary\n")).text, "up ready\n");
  assert.equal((await agentCheck(demo.agentPort, "/replica\n")).text, "maint\n");
  assert.equal((await agentCheck(demo.agentPort)).text, "up ready\n", "no line: /primary");
  // The line printed for a machine without nc works as printed.
  const out = await new Deno.Command("bash", { args: ["-c", demo.bash.slice(9, -1)] }).output();
  assert.equal(new TextDecoder().decode(out.stdout), "maint\n");
}

Deno.test("demo: patroniglue and its agent listener answer at the printed addresses, and stop on Ctrl-C", async () => {
  const demo = await startDemo();
  try {
    await tryPrinted(demo);
  } finally {
    const { code, stderr } = await demo.stop();
    assert.equal(code, 0, stderr);
    assert.match(stderr, new RegExp(`listening on ${demo.url.replaceAll(".", "\\.")}, `));
    assert.match(stderr, /NOTICE stopped\n$/);
  }
});

Deno.test("demo: with 8080, 8081 and 18008 taken, it takes free ports and prints only those", async () => {
  const taken: Deno.TcpListener[] = [];
  for (const port of [8080, 8081, 18008]) {
    try {
      taken.push(Deno.listen({ hostname: "127.0.0.1", port }));
    } catch { /* busy already: as good */ }
  }
  try {
    const demo = await startDemo();
    try {
      assert.notEqual(demo.url, "http://127.0.0.1:8080");
      assert.notEqual(demo.agentPort, 8081);
      assert.notEqual(demo.patroni, 18008);
      assert.doesNotMatch(demo.stdout, /127\.0\.0\.1:(8080|8081|18008)\b|nc 127\.0\.0\.1 8081\b/);
      assert.match(demo.stdout, /8080, 8081 or 18008 was busy: free ports are used instead/);
      await tryPrinted(demo);
    } finally {
      const { code, stderr } = await demo.stop();
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stderr, /Address already in use|ERROR/);
    }
  } finally {
    for (const l of taken) l.close();
  }
});
