// The config's YAML: read exactly as Go's yaml.v2 2.4.0 reads it (libyaml's grammar, YAML 1.1 scalars, merge keys), or refused with a position.

/** The type yaml.v2 gives a scalar when it decodes into `interface{}` (a timestamp stays a string). */
export type ScalarTag = "!!null" | "!!bool" | "!!int" | "!!float" | "!!str";

/** A parsed value with where it starts (1-based line and column). */
export type YamlNode =
  | { kind: "scalar"; value: YamlValue; tag: ScalarTag; line: number; col: number }
  | { kind: "map"; items: YamlItem[]; line: number; col: number }
  | { kind: "seq"; items: YamlNode[]; line: number; col: number };

/**
 * One entry of a mapping. `value` is null when nothing follows the key. An entry that a merge key
 * (`<<: *defaults`) brought in keeps the key and value nodes where the anchor defined them, and names
 * the `<<` key in `mergedBy`.
 */
export interface YamlItem {
  key: YamlNode;
  value: YamlNode | null;
  mergedBy?: YamlNode;
}

/** What a YAML value becomes in JavaScript. */
export type YamlValue = null | boolean | number | string | YamlValue[] | {
  [key: string]: YamlValue;
};

/** A document the reader refuses, at a 1-based line and column; the message says why. */
export class YamlError extends Error {
  override name = "YamlError";
  constructor(message: string, readonly line: number, readonly col: number) {
    super(message);
  }
}

/** Deepest nesting of collections accepted, aliases included (a config needs 3). */
const MAX_DEPTH = 32;

/**
 * Parses the one YAML document in `text` into the value yaml.v2 gives it (null when there is none),
 * merge keys applied. Refused, with a position: whatever yaml.v2 refuses; and, though yaml.v2 reads
 * them, tags (`!!str`, `%TAG`), a second document or text after the first, duplicate keys (also
 * keys that only print alike, such as `1` and `'1'`), a key that a later merge key would replace,
 * integer keys beyond 2^53, characters outside YAML's printable set, a byte order mark after the
 * start, and nesting deeper than 32 levels (aliases included).
 */
export function parseYaml(text: string): YamlNode | null {
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  checkCharacters(src);
  const root = new Parser(new Scanner(src)).stream();
  if (root === null) return null;
  checkDecoding(root);
  return new Builder().value(root);
}

/** A node as a plain JavaScript value; mapping keys are written as {@linkcode keyString} writes them. */
export function toValue(node: YamlNode | null): YamlValue {
  const done = new Map<YamlNode, YamlValue>();
  const convert = (n: YamlNode | null): YamlValue => {
    if (n === null) return null;
    if (n.kind === "scalar") return n.value;
    let value = done.get(n);
    if (value === undefined) {
      value = n.kind === "seq"
        ? n.items.map(convert)
        : Object.fromEntries(n.items.map((item) => [keyString(item.key), convert(item.value)]));
      done.set(n, value);
    }
    return value;
  };
  return convert(node);
}

/** A key as Go's `fmt.Sprint` prints what yaml.v2 decoded (`<nil>`, `true`, `1e+06`, `+Inf`, `[a b]`). */
export function keyString(node: YamlNode): string {
  if (node.kind === "seq") return `[${node.items.map(keyString).join(" ")}]`;
  if (node.kind === "map") {
    const items = node.items.map((i) => `${keyString(i.key)}:${valueString(i.value)}`);
    return `map[${items.sort().join(" ")}]`;
  }
  const { value, tag } = node;
  if (value === null) return "<nil>";
  if (typeof value === "number") {
    return tag === "!!int" && Number.isInteger(value) ? BigInt(value).toString() : goFloat(value);
  }
  return String(value);
}

function valueString(node: YamlNode | null): string {
  return node === null ? "<nil>" : keyString(node);
}

/** A float64 as Go's `%v` prints it: shortest digits, exponent form below 1e-4 and from 1e+06. */
function goFloat(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "+Inf";
  if (x === -Infinity) return "-Inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(exponent);
  if (exp < -4 || exp >= 6) {
    const e = Math.abs(exp);
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : "";
    return `${sign}${digits[0]}${frac}e${exp < 0 ? "-" : "+"}${e < 10 ? "0" : ""}${e}`;
  }
  const point = exp + 1;
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}

// ---------------------------------------------------------------------------------------------
// Scalars: YAML 1.1 resolution as yaml.v2's resolve.go does it, with Go's strconv rules.

interface Resolved {
  value: YamlValue;
  tag: ScalarTag;
}

const SPECIAL = new Map<string, Resolved>();
for (
  const [words, value, tag] of [
    ["y Y yes Yes YES true True TRUE on On ON", true, "!!bool"],
    ["n N no No NO false False FALSE off Off OFF", false, "!!bool"],
    ["~ null Null NULL", null, "!!null"],
    [".nan .NaN .NAN", NaN, "!!float"],
    [".inf .Inf .INF +.inf +.Inf +.INF", Infinity, "!!float"],
    ["-.inf -.Inf -.INF", -Infinity, "!!float"],
  ] as const
) {
  for (const word of words.split(" ")) SPECIAL.set(word, { value, tag });
}
SPECIAL.set("", { value: null, tag: "!!null" });

const YAML_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;
const MAX_INT64 = (1n << 63n) - 1n;
const MAX_UINT64 = (1n << 64n) - 1n;
const DIGITS: Record<number, RegExp> = {
  2: /^[01]*$/,
  8: /^[0-7]*$/,
  10: /^[0-9]*$/,
  16: /^[0-9a-fA-F]*$/,
};
const PREFIX: Record<number, string> = { 2: "0b", 8: "0o", 10: "", 16: "0x" };
/** Digits (without leading zeros) beyond which a number in a base overflows 64 bits. */
const MAX_DIGITS: Record<number, number> = { 2: 64, 8: 22, 10: 20, 16: 16 };

/** A plain scalar as Go's yaml.v2 resolves it (YAML 1.1): null, bool, int (0x, 0o, 0 octal, 0b), float, or text. */
export function resolvePlain(text: string): YamlValue {
  return resolve(text).value;
}

function resolve(text: string): Resolved {
  const c = text[0] ?? "";
  const hint = c === ""
    ? "N"
    : c === "+" || c === "-"
    ? "S"
    : c >= "0" && c <= "9"
    ? "D"
    : c === "."
    ? "."
    : "yYnNtTfFoO~".includes(c)
    ? "M"
    : "";
  if (hint === "") return { value: text, tag: "!!str" };
  const special = SPECIAL.get(text);
  if (special) return special;
  if (hint === ".") {
    const f = goParseFloat(text);
    if (f !== undefined) return { value: f, tag: "!!float" };
  } else if (hint === "D" || hint === "S") {
    const plain = text.replaceAll("_", "");
    const n = goParseInt(plain, 0) ?? goParseUint(plain, 0);
    if (n !== undefined) return { value: Number(n), tag: "!!int" };
    if (YAML_FLOAT.test(plain)) {
      const f = goParseFloat(plain);
      if (f !== undefined) return { value: f, tag: "!!float" };
    }
    const binary = plain.startsWith("0b")
      ? goParseInt(plain.slice(2), 2) ?? goParseUint(plain.slice(2), 2)
      : plain.startsWith("-0b")
      ? goParseInt(`-${plain.slice(3)}`, 2)
      : undefined;
    if (binary !== undefined) return { value: Number(binary), tag: "!!int" };
  }
  return { value: text, tag: "!!str" };
}

/** Go's strconv.ParseUint(s, base, 64) for bases 0, 2, 8, 10 and 16, on text without underscores. */
function goParseUint(s: string, base: number): bigint | undefined {
  if (s === "") return undefined;
  let digits = s;
  if (base === 0) {
    base = 10;
    if (s[0] === "0") {
      const p = s.length >= 3 ? s[1].toLowerCase() : "";
      base = p === "b" ? 2 : p === "x" ? 16 : 8;
      digits = p === "b" || p === "o" || p === "x" ? s.slice(2) : s.slice(1);
    }
  }
  if (!DIGITS[base].test(digits)) return undefined;
  const significant = digits.replace(/^0+/, "");
  if (significant === "") return 0n;
  if (significant.length > MAX_DIGITS[base]) return undefined;
  const n = BigInt(PREFIX[base] + significant);
  return n <= MAX_UINT64 ? n : undefined;
}

/** Go's strconv.ParseInt(s, base, 64). */
function goParseInt(s: string, base: number): bigint | undefined {
  const negative = s[0] === "-";
  const n = goParseUint(s[0] === "+" || negative ? s.slice(1) : s, base);
  if (n === undefined) return undefined;
  if (negative) return n <= MAX_INT64 + 1n ? -n : undefined;
  return n <= MAX_INT64 ? n : undefined;
}

/** Go's strconv.ParseFloat(s, 64) for decimal text (what yaml.v2 hands it); overflow fails. */
function goParseFloat(s: string): number | undefined {
  const m = s.match(/^[-+]?([0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9][0-9_]*)?$/);
  if (!m || !/[0-9]/.test(m[1])) return undefined;
  if (s.includes("_") && !underscoresOk(s)) return undefined;
  const f = Number(s.replaceAll("_", ""));
  return Number.isFinite(f) ? f : undefined;
}

/** Go's rule for underscores in a number: each one sits between two digits. */
function underscoresOk(s: string): boolean {
  let saw = "^";
  for (const ch of s.replace(/^[-+]/, "")) {
    if (ch >= "0" && ch <= "9") saw = "0";
    else if (ch === "_") {
      if (saw !== "0") return false;
      saw = "_";
    } else {
      if (saw === "_") return false;
      saw = "!";
    }
  }
  return saw !== "_";
}

// ---------------------------------------------------------------------------------------------
// Characters: what libyaml's reader lets through.

/** YAML's printable set, minus the byte order mark (which yaml.v2 handles inconsistently mid-stream). */
const FORBIDDEN =
  /[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\u{10000}-\u{10ffff}]/u;

function checkCharacters(src: string): void {
  const bad = FORBIDDEN.exec(src);
  if (!bad) return;
  const code = bad[0].codePointAt(0)!;
  const hex = code.toString(16).toUpperCase().padStart(4, "0");
  const what = code === 0xfeff ? "a byte order mark after the start" : `the character U+${hex}`;
  const { line, col } = positionOf(src, bad.index);
  throw new YamlError(`${what} is not allowed in a YAML file`, line, col);
}

/** The 1-based line and column of a string offset, counting line breaks as YAML does. */
function positionOf(src: string, offset: number): { line: number; col: number } {
  let line = 1;
  let col = 1;
  for (let k = 0; k < offset; k++) {
    const c = src.charCodeAt(k);
    if (c === 0x0d && src.charCodeAt(k + 1) === 0x0a) continue;
    if (isBreak(c)) {
      line++;
      col = 1;
    } else if (c < 0xdc00 || c > 0xdfff) col++;
  }
  return { line, col };
}

// ---------------------------------------------------------------------------------------------
// Scanner: libyaml's tokens, simple keys and indentation, as yaml.v2 2.4.0 computes them.

const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const NEL = 0x85;
const LS = 0x2028;
const PS = 0x2029;

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB;
}

function isBreak(c: number): boolean {
  return c === LF || c === CR || c === NEL || c === LS || c === PS;
}

/** A line break or the end of the input (0). */
function isBreakZ(c: number): boolean {
  return c === 0 || isBreak(c);
}

function isBlankZ(c: number): boolean {
  return isBlank(c) || isBreakZ(c);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** A character of an anchor or alias name. */
function isNameChar(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f ||
    c === 0x2d;
}

function has(chars: string, c: number): boolean {
  return c !== 0 && chars.includes(String.fromCharCode(c));
}

/** A 0-based position: characters from the start, line, and column. */
interface Mark {
  index: number;
  line: number;
  column: number;
}

type TokenType =
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

interface Token {
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

function fail(message: string, mark: Mark): never {
  throw new YamlError(message, mark.line + 1, mark.column + 1);
}

class Scanner {
  private pos = 0;
  private index = 0;
  private line = 0;
  private column = 0;
  private tokens: Token[] = [];
  private head = 0;
  /** Tokens taken off the queue so far. */
  private parsed = 0;
  private available = false;
  private started = false;
  private indent = -1;
  private readonly indents: number[] = [];
  private keyAllowed = false;
  private readonly keys: SimpleKey[] = [];
  private readonly keyByToken = new Map<number, number>();
  private flowLevel = 0;

  constructor(private readonly src: string) {}

  /** The next token, scanning as far ahead as a pending simple key needs. */
  peek(): Token {
    if (!this.available) this.fetchMore();
    return this.tokens[this.head];
  }

  /** Drops the token that `peek` gave. */
  next(): void {
    this.available = false;
    this.parsed++;
    if (++this.head > 256) {
      this.tokens = this.tokens.slice(this.head);
      this.head = 0;
    }
  }

  private c(k = 0): number {
    const p = this.pos + k;
    return p < this.src.length ? this.src.charCodeAt(p) : 0;
  }

  private mark(): Mark {
    return { index: this.index, line: this.line, column: this.column };
  }

  private skip(): void {
    const u = this.src.charCodeAt(this.pos);
    this.pos += u >= 0xd800 && u <= 0xdbff ? 2 : 1;
    this.index++;
    this.column++;
  }

  private read(): string {
    const from = this.pos;
    this.skip();
    return this.src.slice(from, this.pos);
  }

  private skipLine(): void {
    if (this.c() === CR && this.c(1) === LF) {
      this.pos += 2;
      this.index += 2;
    } else if (isBreak(this.c())) {
      this.pos++;
      this.index++;
    } else return;
    this.column = 0;
    this.line++;
  }

  /** Consumes a line break: "\n" for CR, LF, CRLF and NEL; LS and PS stay themselves. */
  private readLine(): string {
    const c = this.c();
    if (!isBreak(c)) return "";
    this.skipLine();
    return c === LS || c === PS ? String.fromCharCode(c) : "\n";
  }

  private atDocumentIndicator(): boolean {
    const c = this.c();
    return this.column === 0 && (c === 0x2d || c === 0x2e) && this.c(1) === c && this.c(2) === c &&
      isBlankZ(this.c(3));
  }

  private fetchMore(): void {
    for (;;) {
      if (this.head !== this.tokens.length) {
        const k = this.keyByToken.get(this.parsed);
        if (k === undefined) break;
        const key = this.keys[k];
        // yaml.v2 indexes past its simple-key stack here and panics.
        if (key === undefined) fail("cannot read this combination of keys", this.mark());
        if (!this.keyIsValid(key)) break;
      }
      this.fetchNext();
    }
    this.available = true;
  }

  private push(type: TokenType, start: Mark, value = "", plain = false): void {
    this.tokens.push({ type, start, value, plain });
  }

  /** Inserts a token `at` places after the queue's head (appends when `at` is negative). */
  private insert(at: number, token: Token): void {
    if (at < 0) this.tokens.push(token);
    else this.tokens.splice(this.head + at, 0, token);
  }

  private fetchNext(): void {
    if (!this.started) {
      this.started = true;
      this.keys.push({ possible: false, required: false, tokenNumber: 0, mark: this.mark() });
      this.keyAllowed = true;
      return this.push("stream-start", this.mark());
    }
    this.skipToToken();
    this.unrollIndent(this.column);
    if (this.pos >= this.src.length) return this.fetchStreamEnd();
    const c = this.c();
    const next = this.c(1);
    const flow = this.flowLevel > 0;
    if (this.column === 0 && c === 0x25) return this.fetchDirective();
    if (this.atDocumentIndicator()) {
      return this.fetchDocumentIndicator(c === 0x2d ? "document-start" : "document-end");
    }
    if (c === 0x5b) return this.fetchFlowStart("flow-sequence-start");
    if (c === 0x7b) return this.fetchFlowStart("flow-mapping-start");
    if (c === 0x5d) return this.fetchFlowEnd("flow-sequence-end");
    if (c === 0x7d) return this.fetchFlowEnd("flow-mapping-end");
    if (c === 0x2c) return this.fetchFlowEntry();
    if (c === 0x2d && isBlankZ(next)) return this.fetchEntry("block-entry");
    if (c === 0x3f && (flow || isBlankZ(next))) return this.fetchEntry("key");
    if (c === 0x3a && (flow || isBlankZ(next))) return this.fetchValue();
    if (c === 0x2a) return this.fetchAnchor("alias");
    if (c === 0x26) return this.fetchAnchor("anchor");
    if (c === 0x21) fail("YAML tags (!) are not supported", this.mark());
    if ((c === 0x7c || c === 0x3e) && !flow) return this.fetchBlockScalar(c === 0x7c);
    if (c === 0x27 || c === 0x22) return this.fetchQuoted(c === 0x27);
    if (
      !(isBlankZ(c) || has("-?:,[]{}#&*!|>'\"%@`", c)) || (c === 0x2d && !isBlank(next)) ||
      (!flow && (c === 0x3f || c === 0x3a) && !isBlankZ(next))
    ) {
      return this.fetchPlain();
    }
    if (c === TAB) fail("a tab cannot indent YAML or follow '-', '?' or ':' here", this.mark());
    fail(`a value cannot start with '${String.fromCharCode(c)}'`, this.mark());
  }

  private keyIsValid(key: SimpleKey): boolean {
    if (!key.possible) return false;
    if (key.mark.line < this.line || key.mark.index + 1024 < this.index) {
      if (key.required) fail("expected ':' after this key (a key fits on one line)", key.mark);
      key.possible = false;
      return false;
    }
    return true;
  }

  private saveKey(): void {
    if (!this.keyAllowed) return;
    const key: SimpleKey = {
      possible: true,
      required: this.flowLevel === 0 && this.indent === this.column,
      tokenNumber: this.parsed + this.tokens.length - this.head,
      mark: this.mark(),
    };
    this.removeKey();
    this.keys[this.keys.length - 1] = key;
    this.keyByToken.set(key.tokenNumber, this.keys.length - 1);
  }

  private removeKey(): void {
    const key = this.keys[this.keys.length - 1];
    if (!key.possible) return;
    if (key.required) fail("expected ':' after this key (a key fits on one line)", key.mark);
    key.possible = false;
    this.keyByToken.delete(key.tokenNumber);
  }

  private rollIndent(column: number, tokenNumber: number, type: TokenType, mark: Mark): void {
    if (this.flowLevel > 0 || this.indent >= column) return;
    this.indents.push(this.indent);
    this.indent = column;
    const token = { type, start: mark, value: "", plain: false };
    this.insert(tokenNumber > -1 ? tokenNumber - this.parsed : -1, token);
  }

  private unrollIndent(column: number): void {
    if (this.flowLevel > 0) return;
    while (this.indent > column) {
      this.push("block-end", this.mark());
      this.indent = this.indents.pop()!;
    }
  }

  /** Skips blanks, comments and line breaks up to the next token. */
  private skipToToken(): void {
    for (;;) {
      while (
        this.c() === SPACE || ((this.flowLevel > 0 || !this.keyAllowed) && this.c() === TAB)
      ) {
        this.skip();
      }
      if (this.c() === 0x23) { while (!isBreakZ(this.c())) this.skip(); }
      if (!isBreak(this.c())) return;
      this.skipLine();
      if (this.flowLevel === 0) this.keyAllowed = true;
    }
  }

  private fetchStreamEnd(): void {
    if (this.column !== 0) {
      this.column = 0;
      this.line++;
    }
    this.unrollIndent(-1);
    this.removeKey();
    this.keyAllowed = false;
    this.push("stream-end", this.mark());
  }

  /** A `%YAML` directive (`%TAG` is refused with tags). */
  private fetchDirective(): void {
    this.unrollIndent(-1);
    this.removeKey();
    this.keyAllowed = false;
    const start = this.mark();
    this.skip();
    let name = "";
    while (isNameChar(this.c())) name += this.read();
    if (name === "TAG") fail("YAML tags (%TAG) are not supported", start);
    if (name !== "YAML" || !isBlankZ(this.c())) fail("the only YAML directive is %YAML", start);
    while (isBlank(this.c())) this.skip();
    const number = () => {
      let digits = "";
      while (isDigit(this.c())) digits += this.read();
      if (digits === "" || digits.length > 2) fail("%YAML needs a version such as 1.1", start);
      return Number(digits);
    };
    const major = number();
    if (this.c() !== 0x2e) fail("%YAML needs a version such as 1.1", start);
    this.skip();
    const version = `${major}.${number()}`;
    while (isBlank(this.c())) this.skip();
    if (this.c() === 0x23) { while (!isBreakZ(this.c())) this.skip(); }
    if (!isBreakZ(this.c())) fail("only a comment can follow a %YAML directive", start);
    this.skipLine();
    this.push("version-directive", start, version);
  }

  private fetchDocumentIndicator(type: TokenType): void {
    this.unrollIndent(-1);
    this.removeKey();
    this.keyAllowed = false;
    const start = this.mark();
    this.skip();
    this.skip();
    this.skip();
    this.push(type, start);
  }

  private fetchFlowStart(type: TokenType): void {
    this.saveKey();
    this.keys.push({
      possible: false,
      required: false,
      tokenNumber: this.parsed + this.tokens.length - this.head,
      mark: this.mark(),
    });
    this.flowLevel++;
    this.keyAllowed = true;
    this.fetchIndicator(type);
  }

  private fetchFlowEnd(type: TokenType): void {
    this.removeKey();
    if (this.flowLevel > 0) {
      this.flowLevel--;
      this.keyByToken.delete(this.keys.pop()!.tokenNumber);
    }
    this.keyAllowed = false;
    this.fetchIndicator(type);
  }

  private fetchIndicator(type: TokenType): void {
    const start = this.mark();
    this.skip();
    this.push(type, start);
  }

  private fetchFlowEntry(): void {
    this.removeKey();
    this.keyAllowed = true;
    this.fetchIndicator("flow-entry");
  }

  /** `- ` or `? `, which in block context may open a list or a mapping at this column. */
  private fetchEntry(type: "block-entry" | "key"): void {
    const list = type === "block-entry";
    if (this.flowLevel === 0) {
      if (!this.keyAllowed) {
        fail(
          `${list ? "a list item ('- ')" : "a mapping key ('? ')"} cannot start here`,
          this.mark(),
        );
      }
      const start = list ? "block-sequence-start" : "block-mapping-start";
      this.rollIndent(this.column, -1, start, this.mark());
    }
    this.removeKey();
    this.keyAllowed = list || this.flowLevel === 0;
    this.fetchIndicator(type);
  }

  private fetchValue(): void {
    const key = this.keys[this.keys.length - 1];
    if (this.keyIsValid(key)) {
      this.insert(key.tokenNumber - this.parsed, {
        type: "key",
        start: key.mark,
        value: "",
        plain: false,
      });
      this.rollIndent(key.mark.column, key.tokenNumber, "block-mapping-start", key.mark);
      key.possible = false;
      this.keyByToken.delete(key.tokenNumber);
      this.keyAllowed = false;
    } else {
      if (this.flowLevel === 0) {
        if (!this.keyAllowed) {
          fail(
            "unexpected ':' (check the indentation; a nested 'key: value' needs its own line)",
            this.mark(),
          );
        }
        this.rollIndent(this.column, -1, "block-mapping-start", this.mark());
      }
      this.keyAllowed = this.flowLevel === 0;
    }
    this.fetchIndicator("value");
  }

  private fetchAnchor(type: "alias" | "anchor"): void {
    this.saveKey();
    this.keyAllowed = false;
    const start = this.mark();
    this.skip();
    let name = "";
    while (isNameChar(this.c())) name += this.read();
    if (name === "" || !(isBlankZ(this.c()) || has("?:,]}%@`", this.c()))) {
      fail(`an ${type} name is letters, digits, '-' and '_', then a space`, start);
    }
    this.push(type, start, name);
  }

  private fetchBlockScalar(literal: boolean): void {
    this.removeKey();
    this.keyAllowed = true;
    const start = this.mark();
    this.skip();
    let chomping = 0;
    let increment = 0;
    const chomp = () => {
      if (this.c() === 0x2b || this.c() === 0x2d) {
        chomping = this.c() === 0x2b ? 1 : -1;
        this.skip();
        return true;
      }
      return false;
    };
    const indentation = () => {
      if (!isDigit(this.c())) return;
      if (this.c() === 0x30) fail("a block scalar's indentation indicator cannot be 0", start);
      increment = this.c() - 0x30;
      this.skip();
    };
    if (chomp()) indentation();
    else if (isDigit(this.c())) {
      indentation();
      chomp();
    }
    while (isBlank(this.c())) this.skip();
    if (this.c() === 0x23) { while (!isBreakZ(this.c())) this.skip(); }
    if (!isBreakZ(this.c())) fail("only a comment can follow '|' or '>' on its line", start);
    this.skipLine();
    let indent = increment > 0 ? (this.indent >= 0 ? this.indent + increment : increment) : 0;
    let text = "";
    let leadingBreak = "";
    let breaks = "";
    const scanBreaks = () => {
      let maxIndent = 0;
      for (;;) {
        while ((indent === 0 || this.column < indent) && this.c() === SPACE) this.skip();
        if (this.column > maxIndent) maxIndent = this.column;
        if ((indent === 0 || this.column < indent) && this.c() === TAB) {
          fail("a tab cannot indent a block scalar", this.mark());
        }
        if (!isBreak(this.c())) break;
        breaks += this.readLine();
      }
      if (indent === 0) indent = Math.max(maxIndent, this.indent + 1, 1);
    };
    scanBreaks();
    let leadingBlank = false;
    while (this.column === indent && this.pos < this.src.length) {
      const trailingBlank = isBlank(this.c());
      if (!literal && !leadingBlank && !trailingBlank && leadingBreak[0] === "\n") {
        if (breaks === "") text += " ";
      } else text += leadingBreak;
      text += breaks;
      leadingBreak = "";
      breaks = "";
      leadingBlank = isBlank(this.c());
      const from = this.pos;
      while (!isBreakZ(this.c())) this.skip();
      text += this.src.slice(from, this.pos);
      leadingBreak = this.readLine();
      scanBreaks();
    }
    if (chomping !== -1) text += leadingBreak;
    if (chomping === 1) text += breaks;
    this.push("scalar", start, text);
  }

  private fetchQuoted(single: boolean): void {
    this.saveKey();
    this.keyAllowed = false;
    const start = this.mark();
    const quote = single ? 0x27 : 0x22;
    const kind = single ? "single" : "double";
    this.skip();
    let text = "";
    const gap = newGap();
    for (;;) {
      if (this.atDocumentIndicator()) {
        fail(`a document marker ends this ${kind}-quoted scalar`, start);
      }
      if (this.pos >= this.src.length) fail(`unterminated ${kind}-quoted scalar`, start);
      while (!isBlankZ(this.c())) {
        const c = this.c();
        if (single && c === quote && this.c(1) === quote) {
          text += "'";
          this.skip();
          this.skip();
        } else if (c === quote) break;
        else if (!single && c === 0x5c && isBreak(this.c(1))) {
          this.skip();
          this.skipLine();
          gap.folded = true;
          break;
        } else if (!single && c === 0x5c) text += this.escape();
        else text += this.read();
      }
      if (this.c() === quote) break;
      this.scanGap(gap, -1, start);
      text += fold(gap);
    }
    this.skip();
    this.push("scalar", start, text);
  }

  /**
   * Blanks and line breaks inside a quoted or plain scalar, into `gap`. A tab left of `indent` on a
   * continuation line is refused.
   */
  private scanGap(gap: Gap, indent: number, start: Mark): void {
    while (isBlank(this.c()) || isBreak(this.c())) {
      if (isBlank(this.c())) {
        if (gap.folded && this.column < indent && this.c() === TAB) {
          fail("a tab cannot indent the continuation of a plain scalar", start);
        }
        if (!gap.folded) gap.spaces += this.read();
        else this.skip();
      } else if (!gap.folded) {
        gap.spaces = "";
        gap.firstBreak = this.readLine();
        gap.folded = true;
      } else gap.breaks += this.readLine();
    }
  }

  /** A double-quoted scalar's escape sequence at the backslash: its text. */
  private escape(): string {
    const at = this.mark();
    const e = String.fromCharCode(this.c(1));
    const size = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    const known = ESCAPES[e];
    if (size === 0 && known === undefined) fail(`unknown escape '\\${e}'`, at);
    this.skip();
    this.skip();
    if (size === 0) return known;
    let code = 0;
    for (let k = 0; k < size; k++) {
      const c = this.c(k);
      if (!isHex(c)) fail(`'\\${e}' needs ${size} hexadecimal digits`, at);
      code = code * 16 + parseInt(String.fromCharCode(c), 16);
    }
    if ((code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) {
      fail(`'\\${e}' escapes no Unicode character`, at);
    }
    for (let k = 0; k < size; k++) this.skip();
    return String.fromCodePoint(code);
  }

  private fetchPlain(): void {
    this.saveKey();
    this.keyAllowed = false;
    const start = this.mark();
    const indent = this.indent + 1;
    let text = "";
    const gap = newGap();
    for (;;) {
      if (this.atDocumentIndicator() || this.c() === 0x23) break;
      while (!isBlankZ(this.c())) {
        const c = this.c();
        if (
          (c === 0x3a && isBlankZ(this.c(1))) || (this.flowLevel > 0 && has(",?[]{}", c))
        ) {
          break;
        }
        if (gap.folded || gap.spaces !== "") text += fold(gap);
        text += this.read();
      }
      if (!(isBlank(this.c()) || isBreak(this.c()))) break;
      this.scanGap(gap, indent, start);
      if (this.flowLevel === 0 && this.column < indent) break;
    }
    if (gap.folded) this.keyAllowed = true;
    this.push("scalar", start, text, true);
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

// ---------------------------------------------------------------------------------------------
// Parser: libyaml's grammar over the tokens, building the node tree (aliases point at their anchor's node).

/** A node as parsed, before aliases are followed and merge keys applied. */
type Raw = RawScalar | RawSeq | RawMap | RawAlias;

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

interface RawMap {
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

class Parser {
  private readonly anchors = new Map<string, RawScalar | RawSeq | RawMap>();
  private depth = 0;

  constructor(private readonly s: Scanner) {}

  /** The first document's root, or null for a stream without one; anything after it is refused. */
  stream(): Raw | null {
    this.s.peek();
    this.s.next(); // stream-start
    let token = this.s.peek();
    let root: Raw | null = null;
    if (token.type === "version-directive" || token.type === "document-start") {
      for (let seen = false; token.type === "version-directive"; token = this.s.peek()) {
        if (seen) fail("a second %YAML directive", token.start);
        if (token.value !== "1.1") fail(`yaml.v2 reads YAML 1.1, not ${token.value}`, token.start);
        seen = true;
        this.s.next();
      }
      if (token.type !== "document-start") fail("expected '---' after the directive", token.start);
      this.s.next();
      token = this.s.peek();
      const empty = ["version-directive", "document-start", "document-end", "stream-end"]
        .includes(token.type);
      root = empty ? null : this.node(true, false);
    } else if (token.type !== "stream-end") root = this.node(true, false);
    for (token = this.s.peek(); token.type === "document-end"; token = this.s.peek()) this.s.next();
    if (token.type !== "stream-end") {
      const what = token.type === "document-start" || token.type === "version-directive"
        ? "a second YAML document starts here (a config is one document)"
        : "text after the end of the document (yaml.v2 ignores it)";
      fail(what, token.start);
    }
    return root;
  }

  private node(block: boolean, indentless: boolean): Raw {
    let token = this.s.peek();
    if (token.type === "alias") {
      this.s.next();
      return this.alias(token);
    }
    let anchor: Token | undefined;
    if (token.type === "anchor") {
      anchor = token;
      this.s.next();
      token = this.s.peek();
    }
    const name = anchor?.value;
    if (indentless && token.type === "block-entry") {
      return this.collection(name, this.seq(token), (seq) => this.indentlessSequence(seq));
    }
    switch (token.type) {
      case "scalar": {
        this.s.next();
        const resolved: Resolved = token.plain
          ? resolve(token.value)
          : { value: token.value, tag: "!!str" };
        return this.define(name, {
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
        return this.collection(name, this.seq(token), (seq) => this.flowSequence(seq));
      case "flow-mapping-start":
        return this.collection(name, this.map(token), (map) => this.flowMapping(map));
      case "block-sequence-start":
        if (block) return this.collection(name, this.seq(token), (seq) => this.blockSequence(seq));
        break;
      case "block-mapping-start":
        if (block) return this.collection(name, this.map(token), (map) => this.blockMapping(map));
        break;
    }
    if (anchor) return this.define(name, emptyScalar(anchor.start));
    fail("expected a value here", token.start);
  }

  private define<T extends RawScalar | RawSeq | RawMap>(name: string | undefined, node: T): T {
    if (name !== undefined) this.anchors.set(name, node);
    return node;
  }

  private alias(token: Token): RawAlias {
    const target = this.anchors.get(token.value);
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

  private seq(token: Token): RawSeq {
    return { kind: "seq", items: [], open: true, height: 0, ...at(token) };
  }

  private map(token: Token): RawMap {
    return { kind: "map", pairs: [], open: true, height: 0, ...at(token) };
  }

  /** Reads a collection's entries with `body`, with its anchor defined while they are read. */
  private collection<T extends RawSeq | RawMap>(
    name: string | undefined,
    node: T,
    body: (node: T) => void,
  ): T {
    if (++this.depth > MAX_DEPTH) {
      throw new YamlError(`nested deeper than ${MAX_DEPTH} levels`, node.line, node.col);
    }
    this.define(name, node);
    body(node);
    this.depth--;
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
  private after(ends: TokenType[], block: boolean, indentless: boolean): Raw {
    const mark = this.s.peek().start;
    this.s.next();
    const token = this.s.peek();
    return ends.includes(token.type) ? emptyScalar(endOf(mark)) : this.node(block, indentless);
  }

  private blockSequence(seq: RawSeq): void {
    this.s.next();
    for (;;) {
      const token = this.s.peek();
      if (token.type === "block-entry") {
        seq.items.push(this.after(["block-entry", "block-end"], true, false));
      } else if (token.type === "block-end") {
        this.s.next();
        return;
      } else fail("expected the list's next '- ' item here (check the indentation)", token.start);
    }
  }

  private indentlessSequence(seq: RawSeq): void {
    while (this.s.peek().type === "block-entry") {
      seq.items.push(this.after(["block-entry", "key", "value", "block-end"], true, false));
    }
  }

  private blockMapping(map: RawMap): void {
    this.s.next();
    const ends: TokenType[] = ["key", "value", "block-end"];
    for (;;) {
      const token = this.s.peek();
      let key: Raw;
      if (token.type === "key") key = this.after(ends, true, true);
      else if (token.type === "block-end") {
        this.s.next();
        return;
      } else fail("expected the mapping's next 'key:' here (check the indentation)", token.start);
      const next = this.s.peek();
      const value = next.type === "value" ? this.after(ends, true, true) : emptyScalar(next.start);
      map.pairs.push([key, value]);
    }
  }

  private flowSequence(seq: RawSeq): void {
    this.flowEntries(seq, "flow-sequence-end", (token) => {
      seq.items.push(token.type === "key" ? this.flowPair(token) : this.node(false, false));
    });
  }

  /** A flow collection's entries, each read by `entry`, separated by ',' up to `close`. */
  private flowEntries(open: RawSeq | RawMap, close: TokenType, entry: (token: Token) => void) {
    this.s.next();
    const bracket = close === "flow-sequence-end" ? "]" : "}";
    for (let first = true;; first = false) {
      let token = this.s.peek();
      if (!first && token.type !== close) {
        if (token.type !== "flow-entry") this.unexpected(token, open, bracket);
        this.s.next();
        token = this.s.peek();
      }
      if (token.type === close) {
        this.s.next();
        return;
      }
      if (ENDS.includes(token.type)) this.unexpected(token, open, bracket);
      entry(token);
    }
  }

  /** Fails on what stands where a flow collection needs ',' or its closing bracket. */
  private unexpected(token: Token, open: RawSeq | RawMap, close: string): never {
    if (!ENDS.includes(token.type)) fail(`expected ',' or '${close}'`, token.start);
    const bracket = close === "]" ? "[" : "{";
    throw new YamlError(`'${bracket}' is never closed (no '${close}')`, open.line, open.col);
  }

  /** A `key: value` entry of a flow sequence: a mapping of one pair. */
  private flowPair(token: Token): RawMap {
    const map = this.map(token);
    return this.collection(undefined, map, () => {
      this.s.next();
      let next = this.s.peek();
      let key: Raw;
      if (["value", "flow-entry", "flow-sequence-end"].includes(next.type)) {
        // yaml.v2 drops the token that follows an empty key here.
        this.s.next();
        key = emptyScalar(endOf(next.start));
      } else key = this.node(false, false);
      next = this.s.peek();
      const value = next.type === "value"
        ? this.after(["flow-entry", "flow-sequence-end"], false, false)
        : emptyScalar(next.start);
      map.pairs.push([key, value]);
    });
  }

  private flowMapping(map: RawMap): void {
    const ends: TokenType[] = ["flow-entry", "flow-mapping-end"];
    this.flowEntries(map, "flow-mapping-end", (token) => {
      if (token.type !== "key") {
        map.pairs.push([this.node(false, false), emptyScalar(this.s.peek().start)]);
        return;
      }
      const key = this.after(["value", ...ends], false, false);
      const next = this.s.peek();
      const value = next.type === "value"
        ? this.after(ends, false, false)
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

function target(node: Raw): RawScalar | RawSeq | RawMap {
  return node.kind === "alias" ? node.target : node;
}

// ---------------------------------------------------------------------------------------------
// Decoding: what yaml.v2's decoder refuses, counted in its order.

/** yaml.v2's limit on the share of decoding spent inside aliases (decode.go's allowedAliasRatio). */
function allowedAliasRatio(decoded: number): number {
  if (decoded <= 400_000) return 0.99;
  if (decoded >= 4_000_000) return 0.1;
  return 0.99 - 0.89 * ((decoded - 400_000) / 3_600_000);
}

/** Walks the tree as yaml.v2 decodes it into `interface{}`, refusing what it refuses. */
function checkDecoding(root: Raw): void {
  let decoded = 1; // the document
  let aliased = 0;
  let inAlias = 0;
  const visit = (n: Raw): void => {
    decoded++;
    if (inAlias > 0) aliased++;
    if (aliased > 100 && decoded > 1000 && aliased / decoded > allowedAliasRatio(decoded)) {
      throw new YamlError("aliases expand too much (yaml.v2 refuses this too)", n.line, n.col);
    }
    if (n.kind === "alias") {
      inAlias++;
      visit(n.target);
      inAlias--;
    } else if (n.kind === "seq") { for (const item of n.items) visit(item); }
    else if (n.kind === "map") {
      for (const [key, value] of n.pairs) {
        if (key.kind === "scalar" && key.merge) {
          merge(key, value);
          continue;
        }
        visit(key);
        if (target(key).kind !== "scalar") {
          throw new YamlError("a mapping or a list cannot be a key", key.line, key.col);
        }
        visit(value);
      }
    }
  };
  const merge = (key: Raw, value: Raw) => {
    const sources = value.kind === "seq" ? [...value.items].reverse() : [value];
    for (const source of sources) {
      if (target(source).kind !== "map") {
        throw new YamlError(
          "'<<' merges a mapping, an alias of one, or a list of those",
          key.line,
          key.col,
        );
      }
      visit(source);
    }
  };
  visit(root);
}

// ---------------------------------------------------------------------------------------------
// Building: the nodes callers see, with merge keys applied.

/**
 * How a key is the same key: `id` as yaml.v2's map compares keys (NaN equals nothing, -0 equals 0),
 * `names` also as Go prints them.
 */
function keyNames(key: YamlNode): { id: string | undefined; names: string[] } {
  if (key.kind !== "scalar") return { id: undefined, names: [] };
  const { value, tag } = key;
  const id = Number.isNaN(value) ? undefined : `${tag}:${value === 0 ? 0 : String(value)}`;
  const printed = keyString(key);
  const asFloat = typeof value === "number" ? goFloat(value) : printed;
  return { id, names: [...(id ? [id] : []), `printed:${printed}`, `printed:${asFloat}`] };
}

interface Entry {
  item: YamlItem;
  explicit: boolean;
  id: string | undefined;
  names: string[];
}

class Builder {
  private readonly done = new Map<Raw, YamlNode>();

  /** The node for a value; null for an empty one (`key:` with nothing after it). */
  value(raw: Raw): YamlNode | null {
    const n = target(raw);
    return n.kind === "scalar" && n.empty ? null : this.node(n);
  }

  node(raw: Raw): YamlNode {
    const n = target(raw);
    let node = this.done.get(n);
    if (node) return node;
    if (n.kind === "scalar") {
      node = { kind: "scalar", value: n.value, tag: n.tag, line: n.line, col: n.col };
    } else if (n.kind === "seq") {
      node = {
        kind: "seq",
        items: n.items.map((item) => this.node(item)),
        line: n.line,
        col: n.col,
      };
    } else node = { kind: "map", items: this.items(n), line: n.line, col: n.col };
    this.done.set(n, node);
    return node;
  }

  /**
   * A mapping's entries as yaml.v2 fills its map: in order, a later entry replacing an earlier one,
   * a list of merges applied last to first. Refused where that would silently drop a written key.
   */
  private items(map: RawMap): YamlItem[] {
    const entries: Entry[] = [];
    const byName = new Map<string, Entry>();
    const add = (item: YamlItem, explicit: boolean) => {
      const { id, names } = keyNames(item.key);
      const found = new Set(names.map((name) => byName.get(name)).filter((e) => e !== undefined));
      const [old] = found;
      if (old) {
        const same = found.size === 1 && id !== undefined && old.id === id;
        const { line, col } = item.key;
        const key = keyString(item.key);
        if (!same || (explicit && old.explicit)) {
          throw new YamlError(`duplicate key '${key}' (keys must be unique)`, line, col);
        }
        if (old.explicit) {
          const where = `${old.item.key.line}:${old.item.key.col}`;
          throw new YamlError(
            `the merge would replace key '${key}' written at ${where} (yaml.v2 lets a later '<<' win); put '<<' first`,
            item.mergedBy!.line,
            item.mergedBy!.col,
          );
        }
        for (const name of old.names) byName.delete(name);
        old.item = item;
        old.explicit = explicit;
        old.names = names;
        old.id = id;
        for (const name of names) byName.set(name, old);
        return;
      }
      const entry = { item, explicit, id, names };
      entries.push(entry);
      for (const name of names) byName.set(name, entry);
    };
    let merged: YamlNode | undefined;
    for (const [rawKey, rawValue] of map.pairs) {
      const key = this.node(rawKey);
      if (rawKey.kind === "scalar" && rawKey.merge) {
        if (merged) {
          throw new YamlError(
            `duplicate key '<<' (merge several mappings with one '<<: [*a, *b]')`,
            key.line,
            key.col,
          );
        }
        merged = key;
        const sources = rawValue.kind === "seq" ? [...rawValue.items].reverse() : [rawValue];
        for (const source of sources) {
          const node = this.node(source);
          if (node.kind !== "map") continue; // refused by checkDecoding
          for (const item of node.items) add({ ...item, mergedBy: key }, false);
        }
        continue;
      }
      if (key.kind === "scalar" && key.tag === "!!int" && !Number.isSafeInteger(key.value)) {
        throw new YamlError("an integer key beyond 2^53 cannot be read exactly", key.line, key.col);
      }
      add({ key, value: this.value(rawValue) }, true);
    }
    return entries.map((e) => e.item);
  }
}
