/**
 * A fake etcd3 JSON gateway on loopback, for the watcher's tests and its heap measurement.
 * @module
 */
import { rawServer, send } from "./raw_server.ts";

/** One chunk of a chunked body. */
export const chunk = (text: string): string =>
  `${new TextEncoder().encode(text).length.toString(16)}\r\n${text}\r\n`;

/** What a fake gateway answers besides its version and watch stream. */
export interface GatewayAnswers {
  /** The range read's answer. @default {a scope without keys at revision 5} */
  range?: string;
  /** The answer to each lease read (it may take its time). @default {undefined} (none is expected) */
  lease?: () => string | Promise<string>;
  /** The watch's answer instead of a stream (an error status). @default {undefined} (the stream) */
  watchRefusal?: string;
  /** Called with each request's target. @default {undefined} */
  onRequest?: (target: string) => void;
}

/**
 * A fake etcd3 gateway on loopback: etcd 3.4's version, the range and lease answers given, and a
 * watch stream whose body `watch` writes in chunks, after the head.
 */
export function fakeGateway(
  watch: (conn: Deno.Conn) => Promise<void>,
  answers: GatewayAnswers = {},
) {
  const answer = (body: string) =>
    `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  return rawServer(async (conn, request) => {
    const target = request.match(/^\w+ (\S+)/)?.[1];
    if (target) answers.onRequest?.(target);
    if (target === "/version") {
      await send(conn, answer('{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}'));
    } else if (target === "/v3/kv/range") {
      await send(conn, answer(answers.range ?? '{"header":{"revision":"5"}}'));
    } else if (target === "/v3/lease/timetolive" && answers.lease) {
      await send(conn, answer(await answers.lease()));
    } else if (target === "/v3/watch" && answers.watchRefusal) {
      await send(conn, answers.watchRefusal);
    } else if (target === "/v3/watch") {
      await send(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      await watch(conn);
    }
  });
}
