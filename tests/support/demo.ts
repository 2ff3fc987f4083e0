// `deno task demo`: patroniglue in front of a simulated Patroni that changes role now and then.
import { FakePatroni } from "./fake_patroni.ts";

const root = new URL("../../", import.meta.url);
const fake = await FakePatroni.start({ port: 18008, delayMs: 2 });
const glue = new Deno.Command(Deno.execPath(), {
  args: ["run", "-q", "-P", "main.ts", "-verbose", "-config", "tests/support/demo.yml"],
  cwd: root,
}).spawn();

console.log(
  `simulated Patroni on ${fake.url} (role: ${fake.role}); patroniglue on http://127.0.0.1:8080
try:
  curl -i http://127.0.0.1:8080/primary
  curl -i http://127.0.0.1:8080/replica?lag=10MB
  curl -I http://127.0.0.1:8080/read-write
  curl -i -X OPTIONS http://127.0.0.1:8080/primary
  curl -i http://127.0.0.1:8080/health
  curl -i http://127.0.0.1:8080/metrics
  curl -i -X POST http://127.0.0.1:8080/failover     # refused locally, never forwarded
The simulated member switches between primary and replica every 30 s. Ctrl-C stops.`,
);

const flip = setInterval(() => {
  fake.role = fake.role === "primary" ? "replica" : "primary";
  console.log(`simulated Patroni is now ${fake.role}`);
}, 30_000);
const stop = () => glue.kill("SIGTERM");
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
const status = await glue.status;
clearInterval(flip);
Deno.removeSignalListener("SIGINT", stop);
Deno.removeSignalListener("SIGTERM", stop);
await fake.close();
Deno.exit(status.code);
