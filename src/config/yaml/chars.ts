/**
 * Characters: what libyaml's reader lets through, the classes the scanner tests characters for, and positions (0-based marks, 1-based in errors).
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

/** Tab: a blank, but never indentation. */
export const TAB = 0x09;
/** Line feed. */
export const LF = 0x0a;
/** Carriage return, alone or before a line feed. */
export const CR = 0x0d;
/** Space: a blank, and the only indentation. */
export const SPACE = 0x20;
const NEL = 0x85;
/** Line separator: a line break that YAML 1.1 keeps as itself. */
export const LS = 0x2028;
/** Paragraph separator: a line break that YAML 1.1 keeps as itself. */
export const PS = 0x2029;

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
  return c >= 0x30 && c <= 0x39;
}

/** An ASCII hexadecimal digit, either case. */
export function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** A character of an anchor or alias name. */
export function isNameChar(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f ||
    c === 0x2d;
}

/** `c` is one of `chars` (never the end of the input). */
export function has(chars: string, c: number): boolean {
  return c !== 0 && chars.includes(String.fromCharCode(c));
}

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
