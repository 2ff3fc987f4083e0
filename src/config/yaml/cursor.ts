/**
 * Cursor: the text read one character at a time, with the mark (0-based index, line and column) of where it stands.
 * @module
 */
import {
  CR,
  DASH,
  DOT,
  HASH,
  HIGH_SURROGATE,
  isBlank,
  isBlankZ,
  isBreak,
  isBreakZ,
  LF,
  LOW_SURROGATE,
  LS,
  PS,
} from "./chars.ts";
import { YamlError } from "./nodes.ts";

/** A 0-based position: characters from the start, line, and column. */
export interface Mark {
  index: number;
  line: number;
  column: number;
}

/** Refuses the document at `mark`. */
export function fail(message: string, mark: Mark): never {
  throw new YamlError(message, mark.line + 1, mark.column + 1);
}

/** The scanner's place in the text; a character beyond U+FFFF counts as one. */
export class Cursor {
  readonly #src: string;
  /** UTF-16 offset. */
  #pos = 0;
  #index = 0;
  #line = 0;
  #column = 0;

  constructor(src: string) {
    this.#src = src;
  }

  /** Characters read so far. */
  get index(): number {
    return this.#index;
  }

  /** 0-based line. */
  get line(): number {
    return this.#line;
  }

  /** 0-based column. */
  get column(): number {
    return this.#column;
  }

  /** Where the cursor stands. */
  mark(): Mark {
    return { index: this.#index, line: this.#line, column: this.#column };
  }

  /** The whole text was read. */
  atEnd(): boolean {
    return this.#pos >= this.#src.length;
  }

  /** The UTF-16 code `k` places ahead, 0 past the end. */
  at(k = 0): number {
    const p = this.#pos + k;
    return p < this.#src.length ? this.#src.charCodeAt(p) : 0;
  }

  /** Steps over one character. */
  skip(): void {
    const u = this.#src.charCodeAt(this.#pos);
    this.#pos += u >= HIGH_SURROGATE && u < LOW_SURROGATE ? 2 : 1;
    this.#index++;
    this.#column++;
  }

  /** Steps over one character and gives it. */
  read(): string {
    const from = this.#pos;
    this.skip();
    return this.#src.slice(from, this.#pos);
  }

  /** Steps over the characters up to a line break or the end, and gives them. */
  readToBreak(): string {
    const from = this.#pos;
    while (!isBreakZ(this.at())) this.skip();
    return this.#src.slice(from, this.#pos);
  }

  /** Steps over spaces and tabs. */
  skipBlanks(): void {
    while (isBlank(this.at())) this.skip();
  }

  /** Steps over a comment, if one starts here, up to its line break. */
  skipComment(): void {
    if (this.at() === HASH) { while (!isBreakZ(this.at())) this.skip(); }
  }

  /** Steps over a line break (CRLF is one), if one is here. */
  skipLine(): void {
    if (this.at() === CR && this.at(1) === LF) {
      this.#pos += 2;
      this.#index += 2;
    } else if (isBreak(this.at())) {
      this.#pos++;
      this.#index++;
    } else return;
    this.#column = 0;
    this.#line++;
  }

  /** Consumes a line break: "\n" for CR, LF, CRLF and NEL; LS and PS stay themselves. */
  readLine(): string {
    const c = this.at();
    if (!isBreak(c)) return "";
    this.skipLine();
    return c === LS || c === PS ? String.fromCharCode(c) : "\n";
  }

  /** At the end, a last line that has no line break counts as ended (libyaml's stream end). */
  endLastLine(): void {
    if (this.#column === 0) return;
    this.#column = 0;
    this.#line++;
  }

  /** `---` or `...` at the start of a line, then a blank, a line break or the end. */
  atDocumentIndicator(): boolean {
    const c = this.at();
    return this.#column === 0 && (c === DASH || c === DOT) && this.at(1) === c &&
      this.at(2) === c && isBlankZ(this.at(3));
  }
}
