/**
 * Health: the handler's contract — the request a listener hands over and the response it writes
 * (HTTP and agent).
 * @module
 */

/** A request reduced to what routing needs; the target is raw, never normalized. */
export interface HealthRequest {
  method: string;
  target: string;
  /** `ip:port` of the client (`[ip]:port` for IPv6). */
  remote: string;
  /** Whether the request carries a body (refused: health checks have none). */
  hasBody: boolean;
}

/** A response, before a listener writes it. */
export interface HealthResponse {
  status: number;
  headers: Record<string, string>;
  /** The GET body; listeners drop it on the wire for HEAD (keeping Content-Length); empty for OPTIONS. */
  body: string;
  /** Set when the same object serves other requests too: a listener may keep its encoding. */
  reused?: boolean;
}

/**
 * How a check was answered, as `X-Cache`, the access log's `%C` and `/metrics` say it: from a
 * fresh entry (`hit`), by a request to Patroni (`miss`), by joining one in flight (`coalesced`), by
 * the DCS witness (`dcs`), from an entry that records a failure (`error`), or locally (`local`).
 */
export type AnswerSource = "hit" | "miss" | "coalesced" | "dcs" | "error" | "local";

/** A handler's result: synchronous when served from memory, a promise when Patroni is asked. */
export type HandlerResult = HealthResponse | Promise<HealthResponse>;

/** What a listener calls for each request. */
export type Handler = (req: HealthRequest) => HandlerResult;

/** The media type of every response but /metrics. */
export const JSON_TYPE = "application/json";

/** A response whose body is `body` as JSON. */
export function jsonResponse(status: number, body: unknown): HealthResponse {
  return { status, headers: { "content-type": JSON_TYPE }, body: JSON.stringify(body) };
}

/** What the agent listener hands over for one connection. */
export interface AgentRequest {
  /** The line read, without its line ending; `undefined` when none came (the default check). */
  line?: string;
  /** Why the input was refused (`line too long`, ...): short ASCII, answered `down`. */
  refused?: string;
  /** `ip:port` of the client. */
  remote: string;
}

/** What the agent listener calls per connection: the reply line, without its newline. */
export type AgentHandler = (req: AgentRequest) => string | Promise<string>;
