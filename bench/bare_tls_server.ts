// A bare node:tls server that accepts TLS connections and does nothing with them: what holding a
// connection costs the transport itself, the reference of scenario (9).
// Usage: deno run -P bench/bare_tls_server.ts PORT CERT_FILE KEY_FILE (listens on 127.0.0.1)
import { createServer } from "node:tls";

const [port, certFile, keyFile] = [Number(Deno.args[0]), Deno.args[1], Deno.args[2]];
if (!Number.isInteger(port) || !certFile || !keyFile) {
  console.error("usage: bare_tls_server.ts PORT CERT_FILE KEY_FILE");
  Deno.exit(2);
}
const server = createServer({
  cert: Deno.readTextFileSync(certFile),
  key: Deno.readTextFileSync(keyFile),
  minVersion: "TLSv1.2",
});
// A reset client must not end the process; nothing is read, written or timed out.
server.on("secureConnection", (socket) => socket.on("error", () => {}));
server.on("tlsClientError", () => {});
server.listen(port, "127.0.0.1");
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
