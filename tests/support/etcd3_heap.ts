/**
 * Prints the heap an etcd3 watcher keeps per lease read, as JSON: run with
 * `--v8-flags=--expose-gc`. A fake gateway holds the lock for pg1 and keeps the watch open, so one
 * session polls for the whole run.
 * @module
 */
import { toBase64 } from "../../src/dcs/codec.ts";
import { createEtcd3Watcher } from "../../src/dcs/etcd3.ts";
import { chunk, fakeGateway } from "./fake_gateway.ts";
import { send } from "./raw_server.ts";

const gc = (globalThis as { gc?: () => void }).gc!;
const leader = toBase64("/service/pg/leader");
let reads = 0;
const end = Promise.withResolvers<void>();
const kv = `{"key":"${leader}","value":"${toBase64("pg1")}","lease":"42"}`;
const gateway = fakeGateway(async (conn) => {
  await send(conn, chunk('{"result":{"created":true}}\n'));
  await end.promise;
}, {
  range: `{"header":{"revision":"5"},"kvs":[${kv}]}`,
  lease: () => (reads++, `{"ID":"42","TTL":"4","grantedTTL":"5","keys":["${leader}"]}`),
});
const watcher = createEtcd3Watcher({
  type: "etcd3",
  endpoints: [`http://127.0.0.1:${gateway.port}`],
  namespace: "/service",
  scope: "pg",
}, { pollIntervalMs: 1, requestTimeoutMs: 5000 });
const until = async (n: number) => {
  while (reads < n) await new Promise((r) => setTimeout(r, 10));
};
await until(500);
gc();
const [fromReads, fromHeap] = [reads, Deno.memoryUsage().heapUsed];
await until(fromReads + 3000);
gc();
const [toReads, toHeap] = [reads, Deno.memoryUsage().heapUsed];
end.resolve();
await watcher.close();
await gateway.close();
console.log(JSON.stringify({ bytesPerRead: (toHeap - fromHeap) / (toReads - fromReads) }));
