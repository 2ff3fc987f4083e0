/**
 * DCS codec: an answer's JSON body, and base64 text (etcd3's keys and values, etcd v2's basic auth); what is malformed is a DcsError 'invalid'.
 *
 * @module
 */
import type { HttpResponse } from "../net/http_client.ts";
import { DcsError } from "./runner.ts";

/** An answer's body as JSON; a DcsError ('invalid') when it is not JSON. */
export function answerJson(response: HttpResponse): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(response.body));
  } catch {
    throw new DcsError("invalid", `malformed answer: status ${response.status}, not JSON`);
  }
}

/** An answer's body as a JSON object, or an empty one when it is none (read for what it may say). */
export function answerObject(response: HttpResponse): Record<string, unknown> {
  try {
    const data = answerJson(response);
    return typeof data === "object" && data !== null ? data as Record<string, unknown> : {};
  } catch {
    return {};
  }
}

/** Base64 of a string's UTF-8 bytes. */
export function toBase64(text: string): string {
  return new TextEncoder().encode(text).toBase64();
}

/** A base64 string's UTF-8 text; throws a DcsError for bad base64. */
export function fromBase64(text: string): string {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(text);
  } catch {
    throw new DcsError("invalid", "malformed answer: bad base64");
  }
  return new TextDecoder().decode(bytes);
}
