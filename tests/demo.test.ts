// `deno task demo`: a newcomer's first run, with no Patroni installed.
import assert from "node:assert/strict";

Deno.test("demo: patroniglue answers in front of the simulated Patroni, and stops on Ctrl-C", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-P", "--allow-run", "tests/support/demo.ts"],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  try {
    let primary = 0;
    for (let i = 0; i < 200 && primary !== 200; i++) {
      try {
        const res = await fetch("http://127.0.0.1:8080/primary");
        await res.body?.cancel();
        primary = res.status;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.equal(primary, 200);
    const health = await fetch("http://127.0.0.1:8080/health");
    assert.deepEqual(await health.json(), { healthy: true });
  } finally {
    child.kill("SIGINT");
  }
  assert.equal((await child.status).code, 0);
  assert.match(await stdout, /curl -i http:\/\/127\.0\.0\.1:8080\/primary/);
  assert.match(await stderr, /listening on http:\/\/127\.0\.0\.1:8080/);
});
