/**
 * Scalar text: what plain, quoted and block scalars read as, by libyaml's rules (escapes, line folding, block indentation and chomping).
 * @module
 */
import {
  BACKSLASH,
  COLON,
  DASH,
  DIGIT_0,
  DOUBLE_QUOTE,
  has,
  HASH,
  HIGH_SURROGATE,
  isBlank,
  isBlankZ,
  isBreak,
  isBreakZ,
  isDigit,
  isHex,
  LAST_SURROGATE,
  MAX_CODE_POINT,
  PLUS,
  SINGLE_QUOTE,
  SPACE,
  TAB,
} from "./chars.ts";
import { type Cursor, fail, type Mark } from "./cursor.ts";

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

/**
 * Blanks and line breaks inside a quoted or plain scalar, into `gap`. A tab left of `indent` on a
 * continuation line is refused.
 */
function scanGap(cur: Cursor, gap: Gap, indent: number, start: Mark): void {
  while (isBlank(cur.at()) || isBreak(cur.at())) {
    if (isBlank(cur.at())) {
      if (gap.folded && cur.column < indent && cur.at() === TAB) {
        fail("a tab cannot indent the continuation of a plain scalar", start);
      }
      if (!gap.folded) gap.spaces += cur.read();
      else cur.skip();
    } else if (!gap.folded) {
      gap.spaces = "";
      gap.firstBreak = cur.readLine();
      gap.folded = true;
    } else gap.breaks += cur.readLine();
  }
}

/** A plain scalar's text, and whether it ended after a line break (where a key may start). */
export function scanPlain(
  cur: Cursor,
  indent: number,
  flow: boolean,
): { text: string; afterBreak: boolean } {
  const start = cur.mark();
  let text = "";
  const gap = newGap();
  for (;;) {
    if (cur.atDocumentIndicator() || cur.at() === HASH) break;
    while (!isBlankZ(cur.at())) {
      const c = cur.at();
      if ((c === COLON && isBlankZ(cur.at(1))) || (flow && has(",?[]{}", c))) break;
      if (gap.folded || gap.spaces !== "") text += fold(gap);
      text += cur.read();
    }
    if (!(isBlank(cur.at()) || isBreak(cur.at()))) break;
    scanGap(cur, gap, indent, start);
    if (!flow && cur.column < indent) break;
  }
  return { text, afterBreak: gap.folded };
}

/** A single- or double-quoted scalar's text, from its opening quote to its closing one. */
export function scanQuoted(cur: Cursor, single: boolean): string {
  const start = cur.mark();
  const quote = single ? SINGLE_QUOTE : DOUBLE_QUOTE;
  const kind = single ? "single" : "double";
  cur.skip();
  let text = "";
  const gap = newGap();
  for (;;) {
    if (cur.atDocumentIndicator()) fail(`a document marker ends this ${kind}-quoted scalar`, start);
    if (cur.atEnd()) fail(`unterminated ${kind}-quoted scalar`, start);
    while (!isBlankZ(cur.at())) {
      const c = cur.at();
      if (single && c === quote && cur.at(1) === quote) {
        text += "'";
        cur.skip();
        cur.skip();
      } else if (c === quote) break;
      else if (!single && c === BACKSLASH && isBreak(cur.at(1))) {
        cur.skip();
        cur.skipLine();
        gap.folded = true;
        break;
      } else if (!single && c === BACKSLASH) text += escape(cur);
      else text += cur.read();
    }
    if (cur.at() === quote) break;
    scanGap(cur, gap, -1, start);
    text += fold(gap);
  }
  cur.skip();
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

/** A double-quoted scalar's escape sequence at the backslash: its text. */
function escape(cur: Cursor): string {
  const at = cur.mark();
  const e = String.fromCharCode(cur.at(1));
  const size = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
  const known = ESCAPES[e];
  if (size === 0 && known === undefined) fail(`unknown escape '\\${e}'`, at);
  cur.skip();
  cur.skip();
  if (size === 0) return known;
  let code = 0;
  for (let k = 0; k < size; k++) {
    const c = cur.at(k);
    if (!isHex(c)) fail(`'\\${e}' needs ${size} hexadecimal digits`, at);
    code = code * 16 + parseInt(String.fromCharCode(c), 16);
  }
  if ((code >= HIGH_SURROGATE && code <= LAST_SURROGATE) || code > MAX_CODE_POINT) {
    fail(`'\\${e}' escapes no Unicode character`, at);
  }
  for (let k = 0; k < size; k++) cur.skip();
  return String.fromCodePoint(code);
}

/** How a block scalar ends: without its final line breaks (`-`), with one, or with all (`+`). */
type Chomping = "strip" | "clip" | "keep";

/**
 * A block scalar's header after `|` or `>`: its chomping indicator and its indentation indicator (0
 * when there is none), in either order, then only a comment to the end of the line.
 */
function blockHeader(cur: Cursor, start: Mark): { chomping: Chomping; increment: number } {
  let chomping: Chomping = "clip";
  let increment = 0;
  const chomp = () => {
    if (cur.at() !== PLUS && cur.at() !== DASH) return false;
    chomping = cur.at() === PLUS ? "keep" : "strip";
    cur.skip();
    return true;
  };
  const indentation = () => {
    if (!isDigit(cur.at())) return;
    if (cur.at() === DIGIT_0) fail("a block scalar's indentation indicator cannot be 0", start);
    increment = cur.at() - DIGIT_0;
    cur.skip();
  };
  if (chomp()) indentation();
  else if (isDigit(cur.at())) {
    indentation();
    chomp();
  }
  cur.skipBlanks();
  cur.skipComment();
  if (!isBreakZ(cur.at())) fail("only a comment can follow '|' or '>' on its line", start);
  cur.skipLine();
  return { chomping, increment };
}

/** A block scalar being read: its indentation (0 until the first line sets it) and pending empty lines. */
interface Block {
  indent: number;
  /** The parent block's indentation. */
  parent: number;
  breaks: string;
}

/**
 * Steps over the indentation and the empty lines before the block's next line, keeping their line
 * breaks; the first time, the deepest of them (or the next line) sets the block's indentation.
 */
function blockBreaks(cur: Cursor, block: Block): void {
  let maxIndent = 0;
  for (;;) {
    while ((block.indent === 0 || cur.column < block.indent) && cur.at() === SPACE) cur.skip();
    if (cur.column > maxIndent) maxIndent = cur.column;
    if ((block.indent === 0 || cur.column < block.indent) && cur.at() === TAB) {
      fail("a tab cannot indent a block scalar", cur.mark());
    }
    if (!isBreak(cur.at())) break;
    block.breaks += cur.readLine();
  }
  if (block.indent === 0) block.indent = Math.max(maxIndent, block.parent + 1, 1);
}

/** A literal (`|`) or folded (`>`) block scalar's text, from its indicator, inside a block at `parent`. */
export function scanBlockScalar(cur: Cursor, literal: boolean, parent: number): string {
  const start = cur.mark();
  cur.skip();
  const { chomping, increment } = blockHeader(cur, start);
  const indent = increment > 0 ? (parent >= 0 ? parent + increment : increment) : 0;
  const block: Block = { indent, parent, breaks: "" };
  let text = "";
  let leadingBreak = "";
  let leadingBlank = false;
  blockBreaks(cur, block);
  while (cur.column === block.indent && !cur.atEnd()) {
    const trailingBlank = isBlank(cur.at());
    if (!literal && !leadingBlank && !trailingBlank && leadingBreak[0] === "\n") {
      if (block.breaks === "") text += " ";
    } else text += leadingBreak;
    text += block.breaks;
    block.breaks = "";
    leadingBlank = trailingBlank;
    text += cur.readToBreak();
    leadingBreak = cur.readLine();
    blockBreaks(cur, block);
  }
  if (chomping !== "strip") text += leadingBreak;
  if (chomping === "keep") text += block.breaks;
  return text;
}
