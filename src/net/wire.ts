/**
 * Wire: HTTP/1 byte helpers shared by the server and the Patroni client.
 * @module
 */

/** Carriage return and line feed, the bytes that end HTTP/1 lines (and agent lines, and JSON stream messages). */
export const CR = 0x0d, LF = 0x0a;

/** What {@linkcode findHeadEnd} returns for a lone LF. */
export const BARE_LF = -2;

/** Offset of the CRLFCRLF ending the head, -1 when not there yet, {@linkcode BARE_LF} for a lone LF. */
export function findHeadEnd(buf: Uint8Array, len: number, from: number): number {
  for (let i = buf.indexOf(LF, from); i !== -1 && i < len; i = buf.indexOf(LF, i + 1)) {
    if (i === 0 || buf[i - 1] !== CR) return BARE_LF;
    if (i >= 3 && buf[i - 2] === LF && buf[i - 3] === CR) return i - 3;
  }
  return -1;
}

/** A copy of `buf` in a larger buffer of `size` bytes. */
export function grow(buf: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  const next = new Uint8Array(size);
  next.set(buf);
  return next;
}

/** `host:port`, with an IPv6 address in brackets (`[::1]:8008`). */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** A request target in origin-form: an absolute-form one (`http://host/path`) gives its path, unresolved. */
export function originForm(target: string): string {
  if (target[0] === "/") return target;
  const authority = target.indexOf("://");
  if (authority === -1) return target;
  const slash = target.indexOf("/", authority + 3);
  return slash === -1 ? "/" : target.slice(slash);
}
