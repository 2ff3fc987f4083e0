// `deno task demo`: patroniglue in front of a simulated Patroni that changes role now and then.
// It binds first, then prints only addresses that answer: free ports replace the usual ones when busy.
import { VERSION } from "../../main.ts";
import { parseConfig } from "../../src/config/config.ts";
import { Logger } from "../../src/log.ts";
import { Service } from "../../src/service.ts";
import { FakePatroni } from "./fake_patroni.ts";

const CONFIG = new URL("demo.yml", import.meta.url);
/** The ports demo.yml names. */
const USUAL = { frontend: 8080, agent: 8081, patroni: 18008 };

/** `wanted` if it can be bound on loopback now, else a free port; `held` keeps them apart. */
function portOr(wanted: number, held: Deno.TcpListener[]): number {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: "127.0.0.1", port: wanted });
  } catch {
    listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  }
  held.push(listener);
  return listener.addr.port;
}

async function startFake(): Promise<FakePatroni> {
  try {
    return await FakePatroni.start({ port: USUAL.patroni, delayMs: 2 });
  } catch {
    return await FakePatroni.start({ delayMs: 2 });
  }
}

/** Starts patroniglue (the service main.ts runs) with demo.yml on the ports free now. */
async function startGlue(backendPort: number, log: Logger): Promise<Service> {
  const template = await Deno.readTextFile(CONFIG);
  for (let attempt = 1;; attempt++) {
    const held: Deno.TcpListener[] = [];
    const ports: [number, number][] = [
      [USUAL.frontend, portOr(USUAL.frontend, held)],
      [USUAL.agent, portOr(USUAL.agent, held)],
      [USUAL.patroni, backendPort],
    ];
    for (const l of held) l.close();
    let text = template;
    for (const [usual, port] of ports) {
      text = text.replace(new RegExp(`^ {2}port: ${usual}$`, "m"), `  port: ${port}`);
    }
    try {
      return await Service.start(await parseConfig(text, CONFIG.pathname), log, VERSION);
    } catch (e) {
      // A port taken between the look and the bind: look again.
      if (attempt === 3 || !/cannot listen/.test((e as Error).message)) throw e;
    }
  }
}

const log = new Logger({ level: "info" });
const fake = await startFake();
let glue: Service;
try {
  glue = await startGlue(fake.port, log);
} catch (e) {
  log.error(`demo: cannot start: ${(e as Error).message}`);
  await fake.close();
  Deno.exit(1);
}
const url = glue.frontend.url;
const agent = glue.agent!.address;
const [agentHost, agentPort] = [agent.slice(0, agent.lastIndexOf(":")), agent.split(":").pop()];
log.notice(
  `patroniglue ${VERSION} listening on ${url}, checking ${fake.url}; agent checks on ${agent} (default ${
    glue.agent!.check
  })`,
);
const busy = fake.port !== USUAL.patroni || url !== `http://127.0.0.1:${USUAL.frontend}` ||
    agent !== `127.0.0.1:${USUAL.agent}`
  ? `\n(${USUAL.frontend}, ${USUAL.agent} or ${USUAL.patroni} was busy: free ports are used instead)`
  : "";
const nc = `nc ${agentHost} ${agentPort}`;
const agentLines = [
  [`printf '/primary\\n' | ${nc}`, "an HAProxy agent check: up ready"],
  [`printf '/replica\\n' | ${nc}`, "a healthy member in another role: maint"],
  [`${nc} < /dev/null`, "no line: agent.check, /primary"],
].map(([command, what]) => `  ${command.padEnd(42)} # ${what}`).join("\n");
console.log(
  `simulated Patroni on ${fake.url} (role: ${fake.role}); patroniglue on ${url}, agent checks on ${agent}${busy}
try:
  curl -i ${url}/primary
  curl -i ${url}/replica?lag=10MB
  curl -I ${url}/read-write
  curl -i -X OPTIONS ${url}/primary
  curl -i ${url}/health
  curl -i ${url}/metrics
  curl -i -X POST ${url}/failover     # refused locally, never forwarded
${agentLines}
  (without nc: bash -c 'exec 3<>/dev/tcp/${agentHost}/${agentPort}; printf "/replica\\n" >&3; cat <&3')
The simulated member switches between primary and replica every 30 s. Ctrl-C stops.`,
);

const flip = setInterval(() => {
  fake.role = fake.role === "primary" ? "replica" : "primary";
  console.log(`simulated Patroni is now ${fake.role}`);
}, 30_000);
const stopping = Promise.withResolvers<Deno.Signal>();
const signals = ["SIGINT", "SIGTERM"] as const;
const handlers = signals.map((s) => [s, () => stopping.resolve(s)] as const);
for (const [s, h] of handlers) Deno.addSignalListener(s, h);
log.notice(`${await stopping.promise}: shutting down`);
for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
clearInterval(flip);
await glue.stop();
await fake.close();
log.notice("stopped");
