/**
 * Characters: what libyaml's reader lets through, and the names and classes of the characters the scanner tests.
 * @module
 */
import { YamlError } from "./nodes.ts";

/** YAML's printable set, minus the byte order mark (which yaml.v2 handles inconsistently mid-stream). */
const FORBIDDEN =
  /[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\u{10000}-\u{10ffff}]/u;

/** Refuses a character outside YAML's printable set, at its position. */
export function checkCharacters(src: string): void {
  const bad = FORBIDDEN.exec(src);
  if (!bad) return;
  const code = bad[0].codePointAt(0)!;
  const hex = code.toString(16).toUpperCase().padStart(4, "0");
  const what = code === BOM ? "a byte order mark after the start" : `the character U+${hex}`;
  const { line, col } = positionOf(src, bad.index);
  throw new YamlError(`${what} is not allowed in a YAML file`, line, col);
}

/** The 1-based line and column of a string offset, counting line breaks as YAML does. */
function positionOf(src: string, offset: number): { line: number; col: number } {
  let line = 1;
  let col = 1;
  for (let k = 0; k < offset; k++) {
    const c = src.charCodeAt(k);
    if (c === CR && src.charCodeAt(k + 1) === LF) continue;
    if (isBreak(c)) {
      line++;
      col = 1;
    } else if (c < LOW_SURROGATE || c > LAST_SURROGATE) col++;
  }
  return { line, col };
}

/** Tab: a blank, but never indentation. */
export const TAB = 0x09;
/** Line feed. */
export const LF = 0x0a;
/** Carriage return, alone or before a line feed. */
export const CR = 0x0d;
/** Space: a blank, and the only indentation. */
export const SPACE = 0x20;
/** Next line: a line break that YAML 1.1 reads as a line feed. */
const NEL = 0x85;
/** Line separator: a line break that YAML 1.1 keeps as itself. */
export const LS = 0x2028;
/** Paragraph separator: a line break that YAML 1.1 keeps as itself. */
export const PS = 0x2029;
/** The byte order mark, allowed only as the first character. */
export const BOM = 0xfeff;
/** The first of the UTF-16 high surrogates, which start a character beyond U+FFFF. */
export const HIGH_SURROGATE = 0xd800;
/** The first of the UTF-16 low surrogates, which end a character beyond U+FFFF. */
export const LOW_SURROGATE = 0xdc00;
/** The last of the UTF-16 surrogates. */
export const LAST_SURROGATE = 0xdfff;
/** The last Unicode code point. */
export const MAX_CODE_POINT = 0x10ffff;

/** `!`, which starts a tag. */
export const EXCLAMATION = 0x21;
/** `"`, around a double-quoted scalar. */
export const DOUBLE_QUOTE = 0x22;
/** `#`, which starts a comment. */
export const HASH = 0x23;
/** `%`, which starts a directive. */
export const PERCENT = 0x25;
/** `&`, before an anchor's name. */
export const AMPERSAND = 0x26;
/** `'`, around a single-quoted scalar. */
export const SINGLE_QUOTE = 0x27;
/** `*`, before an alias's name. */
export const ASTERISK = 0x2a;
/** `+`, a block scalar's "keep" chomping indicator. */
export const PLUS = 0x2b;
/** `,`, between flow entries. */
export const COMMA = 0x2c;
/** `-`: a list item, `---`, a block scalar's "strip" chomping indicator. */
export const DASH = 0x2d;
/** `.`: `...`, and the point in a `%YAML` version. */
export const DOT = 0x2e;
/** `0`, the digit a digit's value counts from (never a block scalar's indentation indicator). */
export const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
/** `:`, before a mapping value. */
export const COLON = 0x3a;
/** `>`, a folded block scalar. */
export const GREATER = 0x3e;
/** `?`, before an explicit mapping key. */
export const QUESTION = 0x3f;
/** `[`, which opens a flow sequence. */
export const OPEN_BRACKET = 0x5b;
/** `\`, which starts an escape in a double-quoted scalar. */
export const BACKSLASH = 0x5c;
/** `]`, which closes a flow sequence. */
export const CLOSE_BRACKET = 0x5d;
/** `{`, which opens a flow mapping. */
export const OPEN_BRACE = 0x7b;
/** `|`, a literal block scalar. */
export const PIPE = 0x7c;
/** `}`, which closes a flow mapping. */
export const CLOSE_BRACE = 0x7d;
const UPPER_A = 0x41;
const UPPER_F = 0x46;
const UPPER_Z = 0x5a;
const UNDERSCORE = 0x5f;
const LOWER_A = 0x61;
const LOWER_F = 0x66;
const LOWER_Z = 0x7a;

/** A space or a tab. */
export function isBlank(c: number): boolean {
  return c === SPACE || c === TAB;
}

/** A YAML 1.1 line break: LF, CR, NEL, LS or PS. */
export function isBreak(c: number): boolean {
  return c === LF || c === CR || c === NEL || c === LS || c === PS;
}

/** A line break or the end of the input (0). */
export function isBreakZ(c: number): boolean {
  return c === 0 || isBreak(c);
}

/** A blank, a line break or the end of the input (0). */
export function isBlankZ(c: number): boolean {
  return isBlank(c) || isBreakZ(c);
}

/** An ASCII decimal digit. */
export function isDigit(c: number): boolean {
  return c >= DIGIT_0 && c <= DIGIT_9;
}

/** An ASCII hexadecimal digit, either case. */
export function isHex(c: number): boolean {
  return isDigit(c) || (c >= UPPER_A && c <= UPPER_F) || (c >= LOWER_A && c <= LOWER_F);
}

/** A character of an anchor or alias name. */
export function isNameChar(c: number): boolean {
  return isDigit(c) || (c >= UPPER_A && c <= UPPER_Z) || (c >= LOWER_A && c <= LOWER_Z) ||
    c === UNDERSCORE || c === DASH;
}

/** `c` is one of `chars` (never the end of the input). */
export function has(chars: string, c: number): boolean {
  return c !== 0 && chars.includes(String.fromCharCode(c));
}
