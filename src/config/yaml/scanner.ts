/**
 * Scanner: libyaml's tokens, simple keys and indentation, as yaml.v2 2.4.0 computes them.
 * @module
 */
import {
  AMPERSAND,
  ASTERISK,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  DASH,
  DOT,
  DOUBLE_QUOTE,
  EXCLAMATION,
  GREATER,
  has,
  isBlank,
  isBlankZ,
  isBreak,
  isBreakZ,
  isDigit,
  isNameChar,
  OPEN_BRACE,
  OPEN_BRACKET,
  PERCENT,
  PIPE,
  QUESTION,
  SINGLE_QUOTE,
  SPACE,
  TAB,
} from "./chars.ts";
import { Cursor, fail, type Mark } from "./cursor.ts";
import { scanBlockScalar, scanPlain, scanQuoted } from "./scalar_text.ts";

/** The kinds of token libyaml's scanner produces (tags and %TAG are refused before a token). */
export type TokenType =
  | "stream-start"
  | "stream-end"
  | "document-start"
  | "document-end"
  | "block-sequence-start"
  | "block-mapping-start"
  | "block-end"
  | "flow-sequence-start"
  | "flow-sequence-end"
  | "flow-mapping-start"
  | "flow-mapping-end"
  | "block-entry"
  | "flow-entry"
  | "key"
  | "value"
  | "alias"
  | "anchor"
  | "scalar"
  | "version-directive";

/** A token with where it starts. */
export interface Token {
  type: TokenType;
  start: Mark;
  /** A scalar's text, an anchor's or alias's name, or a `%YAML` directive's version. */
  value: string;
  /** A scalar written without quotes or block indicator. */
  plain: boolean;
}

/** A place where a mapping key without `?` may have started. */
interface SimpleKey {
  possible: boolean;
  required: boolean;
  tokenNumber: number;
  mark: Mark;
}

/** How many characters a simple key may span, from its start to its ':' (libyaml's limit). */
const MAX_SIMPLE_KEY_LENGTH = 1024;
/** Tokens taken off the queue before their room is given back. */
const QUEUE_SHIFT = 256;

/** Turns the text into tokens, one `peek` at a time, as libyaml's scanner does. */
export class Scanner {
  #tokens: Token[] = [];
  #head = 0;
  /** Tokens taken off the queue so far. */
  #parsed = 0;
  #available = false;
  #started = false;
  #indent = -1;
  readonly #indents: number[] = [];
  #keyAllowed = false;
  readonly #keys: SimpleKey[] = [];
  readonly #keyByToken = new Map<number, number>();
  #flowLevel = 0;

  readonly #cur: Cursor;

  constructor(src: string) {
    this.#cur = new Cursor(src);
  }

  /** The next token, scanning as far ahead as a pending simple key needs. */
  peek(): Token {
    if (!this.#available) this.#fetchMore();
    return this.#tokens[this.#head];
  }

  /** Drops the token that `peek` gave. */
  next(): void {
    this.#available = false;
    this.#parsed++;
    if (++this.#head > QUEUE_SHIFT) {
      this.#tokens = this.#tokens.slice(this.#head);
      this.#head = 0;
    }
  }

  #fetchMore(): void {
    for (;;) {
      if (this.#head !== this.#tokens.length) {
        const k = this.#keyByToken.get(this.#parsed);
        if (k === undefined) break;
        const key = this.#keys[k];
        // yaml.v2 indexes past its simple-key stack here and panics.
        if (key === undefined) fail("cannot read this combination of keys", this.#cur.mark());
        if (!this.#keyIsValid(key)) break;
      }
      this.#fetchNext();
    }
    this.#available = true;
  }

  #push(type: TokenType, start: Mark, value = "", plain = false): void {
    this.#tokens.push({ type, start, value, plain });
  }

  /** Inserts a token `at` places after the queue's head (appends when `at` is negative). */
  #insert(at: number, token: Token): void {
    if (at < 0) this.#tokens.push(token);
    else this.#tokens.splice(this.#head + at, 0, token);
  }

  #fetchNext(): void {
    if (!this.#started) {
      this.#started = true;
      this.#keys.push({ possible: false, required: false, tokenNumber: 0, mark: this.#cur.mark() });
      this.#keyAllowed = true;
      return this.#push("stream-start", this.#cur.mark());
    }
    this.#skipToToken();
    this.#unrollIndent(this.#cur.column);
    if (this.#cur.atEnd()) return this.#fetchStreamEnd();
    const c = this.#cur.at();
    const next = this.#cur.at(1);
    const flow = this.#flowLevel > 0;
    if (this.#cur.column === 0 && c === PERCENT) return this.#fetchDirective();
    if (this.#cur.atDocumentIndicator()) {
      return this.#fetchDocumentIndicator(c === DASH ? "document-start" : "document-end");
    }
    if (c === OPEN_BRACKET) return this.#fetchFlowStart("flow-sequence-start");
    if (c === OPEN_BRACE) return this.#fetchFlowStart("flow-mapping-start");
    if (c === CLOSE_BRACKET) return this.#fetchFlowEnd("flow-sequence-end");
    if (c === CLOSE_BRACE) return this.#fetchFlowEnd("flow-mapping-end");
    if (c === COMMA) return this.#fetchFlowEntry();
    if (c === DASH && isBlankZ(next)) return this.#fetchEntry("block-entry");
    if (c === QUESTION && (flow || isBlankZ(next))) return this.#fetchEntry("key");
    if (c === COLON && (flow || isBlankZ(next))) return this.#fetchValue();
    if (c === ASTERISK) return this.#fetchAnchor("alias");
    if (c === AMPERSAND) return this.#fetchAnchor("anchor");
    if (c === EXCLAMATION) fail("YAML tags (!) are not supported", this.#cur.mark());
    if ((c === PIPE || c === GREATER) && !flow) return this.#fetchBlockScalar(c === PIPE);
    if (c === SINGLE_QUOTE || c === DOUBLE_QUOTE) return this.#fetchQuoted(c === SINGLE_QUOTE);
    if (
      !(isBlankZ(c) || has("-?:,[]{}#&*!|>'\"%@`", c)) || (c === DASH && !isBlank(next)) ||
      (!flow && (c === QUESTION || c === COLON) && !isBlankZ(next))
    ) {
      return this.#fetchPlain();
    }
    if (c === TAB) {
      fail("a tab cannot indent YAML or follow '-', '?' or ':' here", this.#cur.mark());
    }
    fail(`a value cannot start with '${String.fromCharCode(c)}'`, this.#cur.mark());
  }

  #keyIsValid(key: SimpleKey): boolean {
    if (!key.possible) return false;
    if (
      key.mark.line < this.#cur.line || key.mark.index + MAX_SIMPLE_KEY_LENGTH < this.#cur.index
    ) {
      if (key.required) fail("expected ':' after this key (a key fits on one line)", key.mark);
      key.possible = false;
      return false;
    }
    return true;
  }

  #saveKey(): void {
    if (!this.#keyAllowed) return;
    const key: SimpleKey = {
      possible: true,
      required: this.#flowLevel === 0 && this.#indent === this.#cur.column,
      tokenNumber: this.#parsed + this.#tokens.length - this.#head,
      mark: this.#cur.mark(),
    };
    this.#removeKey();
    this.#keys[this.#keys.length - 1] = key;
    this.#keyByToken.set(key.tokenNumber, this.#keys.length - 1);
  }

  #removeKey(): void {
    const key = this.#keys[this.#keys.length - 1];
    if (!key.possible) return;
    if (key.required) fail("expected ':' after this key (a key fits on one line)", key.mark);
    key.possible = false;
    this.#keyByToken.delete(key.tokenNumber);
  }

  #rollIndent(column: number, tokenNumber: number, type: TokenType, mark: Mark): void {
    if (this.#flowLevel > 0 || this.#indent >= column) return;
    this.#indents.push(this.#indent);
    this.#indent = column;
    const token = { type, start: mark, value: "", plain: false };
    this.#insert(tokenNumber > -1 ? tokenNumber - this.#parsed : -1, token);
  }

  #unrollIndent(column: number): void {
    if (this.#flowLevel > 0) return;
    while (this.#indent > column) {
      this.#push("block-end", this.#cur.mark());
      this.#indent = this.#indents.pop()!;
    }
  }

  /** Skips blanks, comments and line breaks up to the next token. */
  #skipToToken(): void {
    for (;;) {
      while (
        this.#cur.at() === SPACE ||
        ((this.#flowLevel > 0 || !this.#keyAllowed) && this.#cur.at() === TAB)
      ) {
        this.#cur.skip();
      }
      this.#cur.skipComment();
      if (!isBreak(this.#cur.at())) return;
      this.#cur.skipLine();
      if (this.#flowLevel === 0) this.#keyAllowed = true;
    }
  }

  #fetchStreamEnd(): void {
    this.#cur.endLastLine();
    this.#unrollIndent(-1);
    this.#removeKey();
    this.#keyAllowed = false;
    this.#push("stream-end", this.#cur.mark());
  }

  /** A `%YAML` directive (`%TAG` is refused with tags). */
  #fetchDirective(): void {
    this.#unrollIndent(-1);
    this.#removeKey();
    this.#keyAllowed = false;
    const start = this.#cur.mark();
    this.#cur.skip();
    let name = "";
    while (isNameChar(this.#cur.at())) name += this.#cur.read();
    if (name === "TAG") fail("YAML tags (%TAG) are not supported", start);
    if (name !== "YAML" || !isBlankZ(this.#cur.at())) {
      fail("the only YAML directive is %YAML", start);
    }
    this.#cur.skipBlanks();
    const number = () => {
      let digits = "";
      while (isDigit(this.#cur.at())) digits += this.#cur.read();
      if (digits === "" || digits.length > 2) fail("%YAML needs a version such as 1.1", start);
      return Number(digits);
    };
    const major = number();
    if (this.#cur.at() !== DOT) fail("%YAML needs a version such as 1.1", start);
    this.#cur.skip();
    const version = `${major}.${number()}`;
    this.#cur.skipBlanks();
    this.#cur.skipComment();
    if (!isBreakZ(this.#cur.at())) fail("only a comment can follow a %YAML directive", start);
    this.#cur.skipLine();
    this.#push("version-directive", start, version);
  }

  #fetchDocumentIndicator(type: TokenType): void {
    this.#unrollIndent(-1);
    this.#removeKey();
    this.#keyAllowed = false;
    const start = this.#cur.mark();
    this.#cur.skip();
    this.#cur.skip();
    this.#cur.skip();
    this.#push(type, start);
  }

  #fetchFlowStart(type: TokenType): void {
    this.#saveKey();
    this.#keys.push({
      possible: false,
      required: false,
      tokenNumber: this.#parsed + this.#tokens.length - this.#head,
      mark: this.#cur.mark(),
    });
    this.#flowLevel++;
    this.#keyAllowed = true;
    this.#fetchIndicator(type);
  }

  #fetchFlowEnd(type: TokenType): void {
    this.#removeKey();
    if (this.#flowLevel > 0) {
      this.#flowLevel--;
      this.#keyByToken.delete(this.#keys.pop()!.tokenNumber);
    }
    this.#keyAllowed = false;
    this.#fetchIndicator(type);
  }

  #fetchIndicator(type: TokenType): void {
    const start = this.#cur.mark();
    this.#cur.skip();
    this.#push(type, start);
  }

  #fetchFlowEntry(): void {
    this.#removeKey();
    this.#keyAllowed = true;
    this.#fetchIndicator("flow-entry");
  }

  /** `- ` or `? `, which in block context may open a list or a mapping at this column. */
  #fetchEntry(type: "block-entry" | "key"): void {
    const list = type === "block-entry";
    if (this.#flowLevel === 0) {
      if (!this.#keyAllowed) {
        fail(
          `${list ? "a list item ('- ')" : "a mapping key ('? ')"} cannot start here`,
          this.#cur.mark(),
        );
      }
      const start = list ? "block-sequence-start" : "block-mapping-start";
      this.#rollIndent(this.#cur.column, -1, start, this.#cur.mark());
    }
    this.#removeKey();
    this.#keyAllowed = list || this.#flowLevel === 0;
    this.#fetchIndicator(type);
  }

  #fetchValue(): void {
    const key = this.#keys[this.#keys.length - 1];
    if (this.#keyIsValid(key)) {
      this.#insert(key.tokenNumber - this.#parsed, {
        type: "key",
        start: key.mark,
        value: "",
        plain: false,
      });
      this.#rollIndent(key.mark.column, key.tokenNumber, "block-mapping-start", key.mark);
      key.possible = false;
      this.#keyByToken.delete(key.tokenNumber);
      this.#keyAllowed = false;
    } else {
      if (this.#flowLevel === 0) {
        if (!this.#keyAllowed) {
          fail(
            "unexpected ':' (check the indentation; a nested 'key: value' needs its own line)",
            this.#cur.mark(),
          );
        }
        this.#rollIndent(this.#cur.column, -1, "block-mapping-start", this.#cur.mark());
      }
      this.#keyAllowed = this.#flowLevel === 0;
    }
    this.#fetchIndicator("value");
  }

  #fetchAnchor(type: "alias" | "anchor"): void {
    this.#saveKey();
    this.#keyAllowed = false;
    const start = this.#cur.mark();
    this.#cur.skip();
    let name = "";
    while (isNameChar(this.#cur.at())) name += this.#cur.read();
    if (name === "" || !(isBlankZ(this.#cur.at()) || has("?:,]}%@`", this.#cur.at()))) {
      fail(`an ${type} name is letters, digits, '-' and '_', then a space`, start);
    }
    this.#push(type, start, name);
  }

  #fetchBlockScalar(literal: boolean): void {
    this.#removeKey();
    this.#keyAllowed = true;
    const start = this.#cur.mark();
    this.#push("scalar", start, scanBlockScalar(this.#cur, literal, this.#indent));
  }

  #fetchQuoted(single: boolean): void {
    this.#saveKey();
    this.#keyAllowed = false;
    const start = this.#cur.mark();
    this.#push("scalar", start, scanQuoted(this.#cur, single));
  }

  #fetchPlain(): void {
    this.#saveKey();
    this.#keyAllowed = false;
    const start = this.#cur.mark();
    const { text, afterBreak } = scanPlain(this.#cur, this.#indent + 1, this.#flowLevel > 0);
    if (afterBreak) this.#keyAllowed = true;
    this.#push("scalar", start, text, true);
  }
}
