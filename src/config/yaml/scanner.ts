/**
 * Scanner: libyaml's tokens, simple keys and indentation, as yaml.v2 2.4.0 computes them.
 * @module
 */
import {
  AMPERSAND,
  ASTERISK,
  BACKSLASH,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  CR,
  DASH,
  DIGIT_0,
  DOT,
  DOUBLE_QUOTE,
  EXCLAMATION,
  fail,
  GREATER,
  has,
  HASH,
  HIGH_SURROGATE,
  isBlank,
  isBlankZ,
  isBreak,
  isBreakZ,
  isDigit,
  isHex,
  isNameChar,
  LAST_SURROGATE,
  LF,
  LOW_SURROGATE,
  LS,
  type Mark,
  MAX_CODE_POINT,
  OPEN_BRACE,
  OPEN_BRACKET,
  PERCENT,
  PIPE,
  PLUS,
  PS,
  QUESTION,
  SINGLE_QUOTE,
  SPACE,
  TAB,
} from "./chars.ts";

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
  #pos = 0;
  #index = 0;
  #line = 0;
  #column = 0;
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

  readonly #src: string;

  constructor(src: string) {
    this.#src = src;
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

  #c(k = 0): number {
    const p = this.#pos + k;
    return p < this.#src.length ? this.#src.charCodeAt(p) : 0;
  }

  #mark(): Mark {
    return { index: this.#index, line: this.#line, column: this.#column };
  }

  #skip(): void {
    const u = this.#src.charCodeAt(this.#pos);
    this.#pos += u >= HIGH_SURROGATE && u < LOW_SURROGATE ? 2 : 1;
    this.#index++;
    this.#column++;
  }

  #read(): string {
    const from = this.#pos;
    this.#skip();
    return this.#src.slice(from, this.#pos);
  }

  #skipLine(): void {
    if (this.#c() === CR && this.#c(1) === LF) {
      this.#pos += 2;
      this.#index += 2;
    } else if (isBreak(this.#c())) {
      this.#pos++;
      this.#index++;
    } else return;
    this.#column = 0;
    this.#line++;
  }

  /** Consumes a line break: "\n" for CR, LF, CRLF and NEL; LS and PS stay themselves. */
  #readLine(): string {
    const c = this.#c();
    if (!isBreak(c)) return "";
    this.#skipLine();
    return c === LS || c === PS ? String.fromCharCode(c) : "\n";
  }

  #atDocumentIndicator(): boolean {
    const c = this.#c();
    return this.#column === 0 && (c === DASH || c === DOT) && this.#c(1) === c &&
      this.#c(2) === c &&
      isBlankZ(this.#c(3));
  }

  #fetchMore(): void {
    for (;;) {
      if (this.#head !== this.#tokens.length) {
        const k = this.#keyByToken.get(this.#parsed);
        if (k === undefined) break;
        const key = this.#keys[k];
        // yaml.v2 indexes past its simple-key stack here and panics.
        if (key === undefined) fail("cannot read this combination of keys", this.#mark());
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
      this.#keys.push({ possible: false, required: false, tokenNumber: 0, mark: this.#mark() });
      this.#keyAllowed = true;
      return this.#push("stream-start", this.#mark());
    }
    this.#skipToToken();
    this.#unrollIndent(this.#column);
    if (this.#pos >= this.#src.length) return this.#fetchStreamEnd();
    const c = this.#c();
    const next = this.#c(1);
    const flow = this.#flowLevel > 0;
    if (this.#column === 0 && c === PERCENT) return this.#fetchDirective();
    if (this.#atDocumentIndicator()) {
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
    if (c === EXCLAMATION) fail("YAML tags (!) are not supported", this.#mark());
    if ((c === PIPE || c === GREATER) && !flow) return this.#fetchBlockScalar(c === PIPE);
    if (c === SINGLE_QUOTE || c === DOUBLE_QUOTE) return this.#fetchQuoted(c === SINGLE_QUOTE);
    if (
      !(isBlankZ(c) || has("-?:,[]{}#&*!|>'\"%@`", c)) || (c === DASH && !isBlank(next)) ||
      (!flow && (c === QUESTION || c === COLON) && !isBlankZ(next))
    ) {
      return this.#fetchPlain();
    }
    if (c === TAB) fail("a tab cannot indent YAML or follow '-', '?' or ':' here", this.#mark());
    fail(`a value cannot start with '${String.fromCharCode(c)}'`, this.#mark());
  }

  #keyIsValid(key: SimpleKey): boolean {
    if (!key.possible) return false;
    if (key.mark.line < this.#line || key.mark.index + MAX_SIMPLE_KEY_LENGTH < this.#index) {
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
      required: this.#flowLevel === 0 && this.#indent === this.#column,
      tokenNumber: this.#parsed + this.#tokens.length - this.#head,
      mark: this.#mark(),
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
      this.#push("block-end", this.#mark());
      this.#indent = this.#indents.pop()!;
    }
  }

  /** Skips blanks, comments and line breaks up to the next token. */
  #skipToToken(): void {
    for (;;) {
      while (
        this.#c() === SPACE || ((this.#flowLevel > 0 || !this.#keyAllowed) && this.#c() === TAB)
      ) {
        this.#skip();
      }
      if (this.#c() === HASH) { while (!isBreakZ(this.#c())) this.#skip(); }
      if (!isBreak(this.#c())) return;
      this.#skipLine();
      if (this.#flowLevel === 0) this.#keyAllowed = true;
    }
  }

  #fetchStreamEnd(): void {
    if (this.#column !== 0) {
      this.#column = 0;
      this.#line++;
    }
    this.#unrollIndent(-1);
    this.#removeKey();
    this.#keyAllowed = false;
    this.#push("stream-end", this.#mark());
  }

  /** A `%YAML` directive (`%TAG` is refused with tags). */
  #fetchDirective(): void {
    this.#unrollIndent(-1);
    this.#removeKey();
    this.#keyAllowed = false;
    const start = this.#mark();
    this.#skip();
    let name = "";
    while (isNameChar(this.#c())) name += this.#read();
    if (name === "TAG") fail("YAML tags (%TAG) are not supported", start);
    if (name !== "YAML" || !isBlankZ(this.#c())) fail("the only YAML directive is %YAML", start);
    while (isBlank(this.#c())) this.#skip();
    const number = () => {
      let digits = "";
      while (isDigit(this.#c())) digits += this.#read();
      if (digits === "" || digits.length > 2) fail("%YAML needs a version such as 1.1", start);
      return Number(digits);
    };
    const major = number();
    if (this.#c() !== DOT) fail("%YAML needs a version such as 1.1", start);
    this.#skip();
    const version = `${major}.${number()}`;
    while (isBlank(this.#c())) this.#skip();
    if (this.#c() === HASH) { while (!isBreakZ(this.#c())) this.#skip(); }
    if (!isBreakZ(this.#c())) fail("only a comment can follow a %YAML directive", start);
    this.#skipLine();
    this.#push("version-directive", start, version);
  }

  #fetchDocumentIndicator(type: TokenType): void {
    this.#unrollIndent(-1);
    this.#removeKey();
    this.#keyAllowed = false;
    const start = this.#mark();
    this.#skip();
    this.#skip();
    this.#skip();
    this.#push(type, start);
  }

  #fetchFlowStart(type: TokenType): void {
    this.#saveKey();
    this.#keys.push({
      possible: false,
      required: false,
      tokenNumber: this.#parsed + this.#tokens.length - this.#head,
      mark: this.#mark(),
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
    const start = this.#mark();
    this.#skip();
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
          this.#mark(),
        );
      }
      const start = list ? "block-sequence-start" : "block-mapping-start";
      this.#rollIndent(this.#column, -1, start, this.#mark());
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
            this.#mark(),
          );
        }
        this.#rollIndent(this.#column, -1, "block-mapping-start", this.#mark());
      }
      this.#keyAllowed = this.#flowLevel === 0;
    }
    this.#fetchIndicator("value");
  }

  #fetchAnchor(type: "alias" | "anchor"): void {
    this.#saveKey();
    this.#keyAllowed = false;
    const start = this.#mark();
    this.#skip();
    let name = "";
    while (isNameChar(this.#c())) name += this.#read();
    if (name === "" || !(isBlankZ(this.#c()) || has("?:,]}%@`", this.#c()))) {
      fail(`an ${type} name is letters, digits, '-' and '_', then a space`, start);
    }
    this.#push(type, start, name);
  }

  #fetchBlockScalar(literal: boolean): void {
    this.#removeKey();
    this.#keyAllowed = true;
    const start = this.#mark();
    this.#skip();
    let chomping = 0;
    let increment = 0;
    const chomp = () => {
      if (this.#c() === PLUS || this.#c() === DASH) {
        chomping = this.#c() === PLUS ? 1 : -1;
        this.#skip();
        return true;
      }
      return false;
    };
    const indentation = () => {
      if (!isDigit(this.#c())) return;
      if (this.#c() === DIGIT_0) fail("a block scalar's indentation indicator cannot be 0", start);
      increment = this.#c() - DIGIT_0;
      this.#skip();
    };
    if (chomp()) indentation();
    else if (isDigit(this.#c())) {
      indentation();
      chomp();
    }
    while (isBlank(this.#c())) this.#skip();
    if (this.#c() === HASH) { while (!isBreakZ(this.#c())) this.#skip(); }
    if (!isBreakZ(this.#c())) fail("only a comment can follow '|' or '>' on its line", start);
    this.#skipLine();
    let indent = increment > 0 ? (this.#indent >= 0 ? this.#indent + increment : increment) : 0;
    let text = "";
    let leadingBreak = "";
    let breaks = "";
    const scanBreaks = () => {
      let maxIndent = 0;
      for (;;) {
        while ((indent === 0 || this.#column < indent) && this.#c() === SPACE) this.#skip();
        if (this.#column > maxIndent) maxIndent = this.#column;
        if ((indent === 0 || this.#column < indent) && this.#c() === TAB) {
          fail("a tab cannot indent a block scalar", this.#mark());
        }
        if (!isBreak(this.#c())) break;
        breaks += this.#readLine();
      }
      if (indent === 0) indent = Math.max(maxIndent, this.#indent + 1, 1);
    };
    scanBreaks();
    let leadingBlank = false;
    while (this.#column === indent && this.#pos < this.#src.length) {
      const trailingBlank = isBlank(this.#c());
      if (!literal && !leadingBlank && !trailingBlank && leadingBreak[0] === "\n") {
        if (breaks === "") text += " ";
      } else text += leadingBreak;
      text += breaks;
      leadingBreak = "";
      breaks = "";
      leadingBlank = isBlank(this.#c());
      const from = this.#pos;
      while (!isBreakZ(this.#c())) this.#skip();
      text += this.#src.slice(from, this.#pos);
      leadingBreak = this.#readLine();
      scanBreaks();
    }
    if (chomping !== -1) text += leadingBreak;
    if (chomping === 1) text += breaks;
    this.#push("scalar", start, text);
  }

  #fetchQuoted(single: boolean): void {
    this.#saveKey();
    this.#keyAllowed = false;
    const start = this.#mark();
    const quote = single ? SINGLE_QUOTE : DOUBLE_QUOTE;
    const kind = single ? "single" : "double";
    this.#skip();
    let text = "";
    const gap = newGap();
    for (;;) {
      if (this.#atDocumentIndicator()) {
        fail(`a document marker ends this ${kind}-quoted scalar`, start);
      }
      if (this.#pos >= this.#src.length) fail(`unterminated ${kind}-quoted scalar`, start);
      while (!isBlankZ(this.#c())) {
        const c = this.#c();
        if (single && c === quote && this.#c(1) === quote) {
          text += "'";
          this.#skip();
          this.#skip();
        } else if (c === quote) break;
        else if (!single && c === BACKSLASH && isBreak(this.#c(1))) {
          this.#skip();
          this.#skipLine();
          gap.folded = true;
          break;
        } else if (!single && c === BACKSLASH) text += this.#escape();
        else text += this.#read();
      }
      if (this.#c() === quote) break;
      this.#scanGap(gap, -1, start);
      text += fold(gap);
    }
    this.#skip();
    this.#push("scalar", start, text);
  }

  /**
   * Blanks and line breaks inside a quoted or plain scalar, into `gap`. A tab left of `indent` on a
   * continuation line is refused.
   */
  #scanGap(gap: Gap, indent: number, start: Mark): void {
    while (isBlank(this.#c()) || isBreak(this.#c())) {
      if (isBlank(this.#c())) {
        if (gap.folded && this.#column < indent && this.#c() === TAB) {
          fail("a tab cannot indent the continuation of a plain scalar", start);
        }
        if (!gap.folded) gap.spaces += this.#read();
        else this.#skip();
      } else if (!gap.folded) {
        gap.spaces = "";
        gap.firstBreak = this.#readLine();
        gap.folded = true;
      } else gap.breaks += this.#readLine();
    }
  }

  /** A double-quoted scalar's escape sequence at the backslash: its text. */
  #escape(): string {
    const at = this.#mark();
    const e = String.fromCharCode(this.#c(1));
    const size = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    const known = ESCAPES[e];
    if (size === 0 && known === undefined) fail(`unknown escape '\\${e}'`, at);
    this.#skip();
    this.#skip();
    if (size === 0) return known;
    let code = 0;
    for (let k = 0; k < size; k++) {
      const c = this.#c(k);
      if (!isHex(c)) fail(`'\\${e}' needs ${size} hexadecimal digits`, at);
      code = code * 16 + parseInt(String.fromCharCode(c), 16);
    }
    if ((code >= HIGH_SURROGATE && code <= LAST_SURROGATE) || code > MAX_CODE_POINT) {
      fail(`'\\${e}' escapes no Unicode character`, at);
    }
    for (let k = 0; k < size; k++) this.#skip();
    return String.fromCodePoint(code);
  }

  #fetchPlain(): void {
    this.#saveKey();
    this.#keyAllowed = false;
    const start = this.#mark();
    const indent = this.#indent + 1;
    let text = "";
    const gap = newGap();
    for (;;) {
      if (this.#atDocumentIndicator() || this.#c() === HASH) break;
      while (!isBlankZ(this.#c())) {
        const c = this.#c();
        if (
          (c === COLON && isBlankZ(this.#c(1))) || (this.#flowLevel > 0 && has(",?[]{}", c))
        ) {
          break;
        }
        if (gap.folded || gap.spaces !== "") text += fold(gap);
        text += this.#read();
      }
      if (!(isBlank(this.#c()) || isBreak(this.#c()))) break;
      this.#scanGap(gap, indent, start);
      if (this.#flowLevel === 0 && this.#column < indent) break;
    }
    if (gap.folded) this.#keyAllowed = true;
    this.#push("scalar", start, text, true);
  }
}

/** The blanks and line breaks between two runs of a scalar's text. */
interface Gap {
  /** A line break was seen: blanks after it are indentation. */
  folded: boolean;
  spaces: string;
  firstBreak: string;
  breaks: string;
}

function newGap(): Gap {
  return { folded: false, spaces: "", firstBreak: "", breaks: "" };
}

/** What a gap becomes in the scalar (a single line break folds to a space), emptying the gap. */
function fold(gap: Gap): string {
  const text = !gap.folded
    ? gap.spaces
    : gap.firstBreak[0] === "\n"
    ? gap.breaks === "" ? " " : gap.breaks
    : gap.firstBreak + gap.breaks;
  Object.assign(gap, newGap());
  return text;
}

const ESCAPES: Record<string, string> = {
  "0": "\0",
  a: "\x07",
  b: "\b",
  t: "\t",
  "\t": "\t",
  n: "\n",
  v: "\v",
  f: "\f",
  r: "\r",
  e: "\x1b",
  " ": " ",
  '"': '"',
  "'": "'",
  "\\": "\\",
  N: "\x85",
  _: "\xa0",
  L: "\u2028",
  P: "\u2029",
};
