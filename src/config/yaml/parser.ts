/**
 * Parser: libyaml's grammar over the tokens, building the raw node tree (aliases point at their anchor's node).
 * @module
 */
import { fail, type Mark } from "./cursor.ts";
import { type ScalarTag, YamlError, type YamlValue } from "./nodes.ts";
import { resolve, type Resolved } from "./scalars.ts";
import type { Scanner, Token, TokenType } from "./scanner.ts";

/** Deepest nesting of collections accepted, aliases included (a config needs 3). */
const MAX_DEPTH = 32;

/** A node as parsed, before aliases are followed and merge keys applied. */
export type Raw = RawScalar | RawSeq | RawMap | RawAlias;

interface RawScalar {
  kind: "scalar";
  value: YamlValue;
  tag: ScalarTag;
  /** A plain `<<`, which yaml.v2 treats as a merge key. */
  merge: boolean;
  /** No text at all (`key:` with nothing after it). */
  empty: boolean;
  line: number;
  col: number;
}

interface RawSeq {
  kind: "seq";
  items: Raw[];
  open: boolean;
  height: number;
  line: number;
  col: number;
}

/** A mapping as parsed: its pairs in order, merge keys not applied. */
export interface RawMap {
  kind: "map";
  pairs: [Raw, Raw][];
  open: boolean;
  height: number;
  line: number;
  col: number;
}

interface RawAlias {
  kind: "alias";
  name: string;
  target: RawScalar | RawSeq | RawMap;
  line: number;
  col: number;
}

function emptyScalar(mark: Mark): RawScalar {
  return {
    kind: "scalar",
    value: null,
    tag: "!!null",
    merge: false,
    empty: true,
    line: mark.line + 1,
    col: mark.column + 1,
  };
}

/** Reads the tokens of one document into a raw tree, refusing what libyaml's parser refuses. */
export class Parser {
  readonly #anchors = new Map<string, RawScalar | RawSeq | RawMap>();
  #depth = 0;

  readonly #s: Scanner;

  constructor(s: Scanner) {
    this.#s = s;
  }

  /** The first document's root, or null for a stream without one; anything after it is refused. */
  stream(): Raw | null {
    this.#s.peek();
    this.#s.next(); // stream-start
    let token = this.#s.peek();
    let root: Raw | null = null;
    if (token.type === "version-directive" || token.type === "document-start") {
      for (let seen = false; token.type === "version-directive"; token = this.#s.peek()) {
        if (seen) fail("a second %YAML directive", token.start);
        if (token.value !== "1.1") fail(`yaml.v2 reads YAML 1.1, not ${token.value}`, token.start);
        seen = true;
        this.#s.next();
      }
      if (token.type !== "document-start") fail("expected '---' after the directive", token.start);
      this.#s.next();
      token = this.#s.peek();
      const empty = ["version-directive", "document-start", "document-end", "stream-end"]
        .includes(token.type);
      root = empty ? null : this.#node(true, false);
    } else if (token.type !== "stream-end") root = this.#node(true, false);
    for (token = this.#s.peek(); token.type === "document-end"; token = this.#s.peek()) {
      this.#s.next();
    }
    if (token.type !== "stream-end") {
      const what = token.type === "document-start" || token.type === "version-directive"
        ? "a second YAML document starts here (a config is one document)"
        : "text after the end of the document (yaml.v2 ignores it)";
      fail(what, token.start);
    }
    return root;
  }

  #node(block: boolean, indentless: boolean): Raw {
    let token = this.#s.peek();
    if (token.type === "alias") {
      this.#s.next();
      return this.#alias(token);
    }
    let anchor: Token | undefined;
    if (token.type === "anchor") {
      anchor = token;
      this.#s.next();
      token = this.#s.peek();
    }
    const name = anchor?.value;
    if (indentless && token.type === "block-entry") {
      return this.#collection(name, this.#seq(token), (seq) => this.#indentlessSequence(seq));
    }
    switch (token.type) {
      case "scalar": {
        this.#s.next();
        const resolved: Resolved = token.plain
          ? resolve(token.value)
          : { value: token.value, tag: "!!str" };
        return this.#define(name, {
          kind: "scalar",
          value: resolved.value,
          tag: resolved.tag,
          merge: token.plain && token.value === "<<",
          empty: false,
          line: token.start.line + 1,
          col: token.start.column + 1,
        });
      }
      case "flow-sequence-start":
        return this.#collection(name, this.#seq(token), (seq) => this.#flowSequence(seq));
      case "flow-mapping-start":
        return this.#collection(name, this.#map(token), (map) => this.#flowMapping(map));
      case "block-sequence-start":
        if (block) {
          return this.#collection(name, this.#seq(token), (seq) => this.#blockSequence(seq));
        }
        break;
      case "block-mapping-start":
        if (block) {
          return this.#collection(name, this.#map(token), (map) => this.#blockMapping(map));
        }
        break;
    }
    if (anchor) return this.#define(name, emptyScalar(anchor.start));
    fail("expected a value here", token.start);
  }

  #define<T extends RawScalar | RawSeq | RawMap>(name: string | undefined, node: T): T {
    if (name !== undefined) this.#anchors.set(name, node);
    return node;
  }

  #alias(token: Token): RawAlias {
    const target = this.#anchors.get(token.value);
    const where = { line: token.start.line + 1, col: token.start.column + 1 };
    if (!target) throw new YamlError(`alias *${token.value} is not defined`, where.line, where.col);
    if (target.kind !== "scalar" && target.open) {
      throw new YamlError(
        `alias *${token.value} is inside the value it names`,
        where.line,
        where.col,
      );
    }
    return { kind: "alias", name: token.value, target, ...where };
  }

  #seq(token: Token): RawSeq {
    return { kind: "seq", items: [], open: true, height: 0, ...at(token) };
  }

  #map(token: Token): RawMap {
    return { kind: "map", pairs: [], open: true, height: 0, ...at(token) };
  }

  /** Reads a collection's entries with `body`, with its anchor defined while they are read. */
  #collection<T extends RawSeq | RawMap>(
    name: string | undefined,
    node: T,
    body: (node: T) => void,
  ): T {
    if (++this.#depth > MAX_DEPTH) {
      throw new YamlError(`nested deeper than ${MAX_DEPTH} levels`, node.line, node.col);
    }
    this.#define(name, node);
    body(node);
    this.#depth--;
    node.open = false;
    let tallest = 0;
    for (const child of node.kind === "seq" ? node.items : node.pairs.flat()) {
      tallest = Math.max(tallest, height(child));
    }
    node.height = 1 + tallest;
    if (node.height > MAX_DEPTH) {
      throw new YamlError(
        `nested deeper than ${MAX_DEPTH} levels (counting what aliases repeat)`,
        node.line,
        node.col,
      );
    }
    return node;
  }

  /** The value after an indicator: a node, or an empty scalar when one of `ends` follows. */
  #after(ends: TokenType[], block: boolean, indentless: boolean): Raw {
    const mark = this.#s.peek().start;
    this.#s.next();
    const token = this.#s.peek();
    return ends.includes(token.type) ? emptyScalar(endOf(mark)) : this.#node(block, indentless);
  }

  #blockSequence(seq: RawSeq): void {
    this.#s.next();
    for (;;) {
      const token = this.#s.peek();
      if (token.type === "block-entry") {
        seq.items.push(this.#after(["block-entry", "block-end"], true, false));
      } else if (token.type === "block-end") {
        this.#s.next();
        return;
      } else fail("expected the list's next '- ' item here (check the indentation)", token.start);
    }
  }

  #indentlessSequence(seq: RawSeq): void {
    while (this.#s.peek().type === "block-entry") {
      seq.items.push(this.#after(["block-entry", "key", "value", "block-end"], true, false));
    }
  }

  #blockMapping(map: RawMap): void {
    this.#s.next();
    const ends: TokenType[] = ["key", "value", "block-end"];
    for (;;) {
      const token = this.#s.peek();
      let key: Raw;
      if (token.type === "key") key = this.#after(ends, true, true);
      else if (token.type === "block-end") {
        this.#s.next();
        return;
      } else fail("expected the mapping's next 'key:' here (check the indentation)", token.start);
      const next = this.#s.peek();
      const value = next.type === "value" ? this.#after(ends, true, true) : emptyScalar(next.start);
      map.pairs.push([key, value]);
    }
  }

  #flowSequence(seq: RawSeq): void {
    this.#flowEntries(seq, "flow-sequence-end", (token) => {
      seq.items.push(token.type === "key" ? this.#flowPair(token) : this.#node(false, false));
    });
  }

  /** A flow collection's entries, each read by `entry`, separated by ',' up to `close`. */
  #flowEntries(open: RawSeq | RawMap, close: TokenType, entry: (token: Token) => void) {
    this.#s.next();
    const bracket = close === "flow-sequence-end" ? "]" : "}";
    for (let first = true;; first = false) {
      let token = this.#s.peek();
      if (!first && token.type !== close) {
        if (token.type !== "flow-entry") this.#unexpected(token, open, bracket);
        this.#s.next();
        token = this.#s.peek();
      }
      if (token.type === close) {
        this.#s.next();
        return;
      }
      if (ENDS.includes(token.type)) this.#unexpected(token, open, bracket);
      entry(token);
    }
  }

  /** Fails on what stands where a flow collection needs ',' or its closing bracket. */
  #unexpected(token: Token, open: RawSeq | RawMap, close: string): never {
    if (!ENDS.includes(token.type)) fail(`expected ',' or '${close}'`, token.start);
    const bracket = close === "]" ? "[" : "{";
    throw new YamlError(`'${bracket}' is never closed (no '${close}')`, open.line, open.col);
  }

  /** A `key: value` entry of a flow sequence: a mapping of one pair. */
  #flowPair(token: Token): RawMap {
    const map = this.#map(token);
    return this.#collection(undefined, map, () => {
      this.#s.next();
      let next = this.#s.peek();
      let key: Raw;
      if (["value", "flow-entry", "flow-sequence-end"].includes(next.type)) {
        // yaml.v2 drops the token that follows an empty key here.
        this.#s.next();
        key = emptyScalar(endOf(next.start));
      } else key = this.#node(false, false);
      next = this.#s.peek();
      const value = next.type === "value"
        ? this.#after(["flow-entry", "flow-sequence-end"], false, false)
        : emptyScalar(next.start);
      map.pairs.push([key, value]);
    });
  }

  #flowMapping(map: RawMap): void {
    const ends: TokenType[] = ["flow-entry", "flow-mapping-end"];
    this.#flowEntries(map, "flow-mapping-end", (token) => {
      if (token.type !== "key") {
        map.pairs.push([this.#node(false, false), emptyScalar(this.#s.peek().start)]);
        return;
      }
      const key = this.#after(["value", ...ends], false, false);
      const next = this.#s.peek();
      const value = next.type === "value"
        ? this.#after(ends, false, false)
        : emptyScalar(next.start);
      map.pairs.push([key, value]);
    });
  }
}

/** Tokens that end a document, and so any flow collection still open. */
const ENDS: TokenType[] = ["stream-end", "document-start", "document-end"];

function at(token: Token): { line: number; col: number } {
  return { line: token.start.line + 1, col: token.start.column + 1 };
}

/** The mark just after a one-character indicator that starts at `mark`. */
function endOf(mark: Mark): Mark {
  return { index: mark.index + 1, line: mark.line, column: mark.column + 1 };
}

function height(node: Raw): number {
  const n = node.kind === "alias" ? node.target : node;
  return n.kind === "scalar" ? 0 : n.height;
}

/** The node itself, or the anchored node an alias points at. */
export function target(node: Raw): RawScalar | RawSeq | RawMap {
  return node.kind === "alias" ? node.target : node;
}
