// A bare Deno.listen loop answering every read with the same bytes (a patroniglue hit, from a
// file): what the runtime's own accept, read and write cost, the reference of scenario (12).
// Usage: deno run -P bench/bare_listen.ts PORT RESPONSE_FILE (listens on 127.0.0.1)
const [port, file] = [Number(Deno.args[0]), Deno.args[1]];
if (!Number.isInteger(port) || !file) {
  console.error("usage: bare_listen.ts PORT RESPONSE_FILE");
  Deno.exit(2);
}
const response = Deno.readFileSync(file);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
Deno.addSignalListener("SIGINT", () => Deno.exit(0));
for await (const conn of listener) {
  (async () => {
    const buf = new Uint8Array(4096);
    try {
      while (await conn.read(buf) !== null) await conn.write(response);
    } catch { /* reset */ }
    try {
      conn.close();
    } catch { /* closed */ }
  })();
}
