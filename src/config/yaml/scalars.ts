/**
 * Scalars: a plain scalar resolved as yaml.v2's resolve.go resolves it (YAML 1.1), with Go's strconv rules for numbers.
 * @module
 */
import type { ScalarTag, YamlValue } from "./nodes.ts";

/** A plain scalar's value and the tag yaml.v2 gives it. */
export interface Resolved {
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

/** A plain scalar's value and tag, by yaml.v2's resolve.go rules. */
export function resolve(text: string): Resolved {
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
