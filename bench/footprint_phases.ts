// What each phase of a patroniglue start adds, in one process (scenario (12)): V8's live heap after
// a full GC, and the deno executable's code and read-only pages and the anonymous memory resident,
// after the runtime starts, after each of patroniglue's modules is imported (leaves first), once
// the configuration is read, once it listens, after the first check and after four routes. Then it
// prints `ready PORT`, waits for a line on stdin (the parent runs wrk) and measures once more.
// It imports nothing of the bench, nothing with a timer, and prints one JSON line per phase.
// Usage: deno run -A --v8-flags=--expose-gc bench/footprint_phases.ts CONFIG_FILE
declare const gc: () => void;

const root = new URL("..", import.meta.url);
const configFile = Deno.args[0];
if (!configFile) {
  console.error("usage: footprint_phases.ts CONFIG_FILE");
  Deno.exit(2);
}

/** The deno executable's resident code and read-only data, and all anonymous memory, KiB. */
function resident(): { code: number; readOnlyData: number; anonymous: number } {
  let code = 0, readOnlyData = 0, anonymous = 0;
  let current = "";
  for (const line of Deno.readTextFileSync("/proc/self/smaps").split("\n")) {
    const m = line.match(/^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/);
    if (m) {
      const exe = m[2].trim().endsWith("/deno");
      current = !exe ? "" : m[1].includes("x") ? "code" : m[1].startsWith("r-") ? "ro" : "";
      continue;
    }
    const rss = line.match(/^Rss:\s+(\d+) kB/);
    if (rss && current === "code") code += Number(rss[1]);
    if (rss && current === "ro") readOnlyData += Number(rss[1]);
    const anon = line.match(/^Anonymous:\s+(\d+) kB/);
    if (anon) anonymous += Number(anon[1]);
  }
  return { code, readOnlyData, anonymous };
}

function mark(phase: string): void {
  gc();
  gc();
  const heap = Deno.memoryUsage().heapUsed / 1024;
  console.log(JSON.stringify({ phase, heap: Math.round(heap), ...resident() }));
}

/** patroniglue's own modules a start loads, each after the modules it imports (from `deno info --json`). */
async function modulesInOrder(): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL("main.ts", root).href],
    stdout: "piped",
    stderr: "null",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[];
    }[];
  };
  // What a start loads: modules loaded on demand (the TLS transport, the DCS watchers) are not.
  const deps = new Map(info.modules.map((m) => [
    m.specifier,
    (m.dependencies ?? []).flatMap((d) => d.code && !d.isDynamic ? [d.code.specifier] : []),
  ]));
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (s: string) => {
    if (seen.has(s) || !s.startsWith(root.href) || !s.endsWith(".ts")) return;
    seen.add(s);
    for (const d of deps.get(s) ?? []) visit(d);
    order.push(s);
  };
  visit(new URL("main.ts", root).href);
  return order;
}

async function get(port: number, path: string): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    const buf = new Uint8Array(4096);
    while (await conn.read(buf) !== null) { /* to the end */ }
  } finally {
    conn.close();
  }
}

const modules = await modulesInOrder();
resident();
mark("the runtime started");
for (const m of modules) {
  const module = await import(m);
  // main.ts installs its timers before anything starts one; so does this start (where they exist).
  if (m.endsWith("/src/timers.ts")) module.installLeanTimers();
  mark(`+ ${m.slice(root.href.length)}`);
}
const { loadConfig } = await import(new URL("src/config/config.ts", root).href);
const { Logger } = await import(new URL("src/log.ts", root).href);
const { Service } = await import(new URL("src/service.ts", root).href);
const config = await loadConfig(configFile);
mark("configuration read");
const service = await Service.start(config, new Logger({ level: "error" }), "footprint");
mark("listening (Service.start)");
const port = config.frontend.port as number;
await get(port, "/primary");
mark("first check (one backend GET)");
for (const path of ["/leader", "/read-only", "/replica"]) await get(port, path);
mark("four routes checked");
console.log(`ready ${port}`);
const buf = new Uint8Array(64);
await Deno.stdin.read(buf);
mark("after the load");
await service.stop();
