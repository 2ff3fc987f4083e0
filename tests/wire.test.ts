// The HTTP/1 byte helpers shared by the server, the client and the agent listener.
import assert from "node:assert/strict";
import { BARE_LF, CR, findHeadEnd, grow, hostPort, LF, originForm } from "../src/net/wire.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

Deno.test("wire: findHeadEnd finds the CRLFCRLF after a head, from where it left off", () => {
  const head = bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody");
  assert.equal(findHeadEnd(head, head.length, 0), 23);
  assert.equal(findHeadEnd(head, 20, 0), -1, "not there yet within the bytes read");
  assert.equal(findHeadEnd(head, head.length, 16), 23, "scanning on from an offset");
  assert.equal(findHeadEnd(bytes("\r\n\r\n"), 4, 0), 0);
});

Deno.test("wire: a lone LF anywhere before the end is refused as BARE_LF", () => {
  for (const text of ["GET / HTTP/1.1\nHost: x\r\n\r\n", "\n", "GET /\r\nX: y\n\r\n"]) {
    const b = bytes(text);
    assert.equal(findHeadEnd(b, b.length, 0), BARE_LF, JSON.stringify(text));
  }
  assert.deepEqual([CR, LF], [13, 10]);
});

Deno.test("wire: grow copies into a larger buffer, leaving the rest zero", () => {
  const grown = grow(bytes("abc"), 6);
  assert.deepEqual([...grown], [97, 98, 99, 0, 0, 0]);
});

Deno.test("wire: hostPort brackets IPv6 addresses only", () => {
  assert.equal(hostPort("127.0.0.1", 8008), "127.0.0.1:8008");
  assert.equal(hostPort("::1", 8008), "[::1]:8008");
  assert.equal(hostPort("db.example", 443), "db.example:443");
});

Deno.test("wire: originForm takes an absolute-form target's path as written, never resolved", () => {
  assert.equal(originForm("http://x/../primary"), "/../primary");
  assert.equal(originForm("http://evil.com/primary?x=1"), "/primary?x=1");
  assert.equal(originForm("http://localhost:8080/"), "/");
  assert.equal(originForm("http://x//x/primary"), "//x/primary");
  assert.equal(originForm("http://x"), "/");
  assert.equal(originForm("/../primary"), "/../primary");
  assert.equal(originForm("*"), "*");
});
