// YAML for config files: block and flow collections, YAML 1.1 scalars, anchors, positions for every node.

/** A parsed value with where it starts (1-based line and column). */
export type YamlNode =
  | { kind: "scalar"; value: YamlValue; line: number; col: number }
  | { kind: "map"; items: { key: YamlNode; value: YamlNode | null }[]; line: number; col: number }
  | { kind: "seq"; items: YamlNode[]; line: number; col: number };

/** What a YAML value becomes in JavaScript. */
export type YamlValue = null | boolean | number | string | YamlValue[] | {
  [key: string]: YamlValue;
};

/** A syntax error at a position; the message says what was expected. */
export class YamlError extends SyntaxError {
  constructor(message: string, readonly line: number, readonly col: number) {
    super(message);
  }
}

/** One non-blank line: its indentation and content, comments removed. */
interface Line {
  n: number;
  indent: number;
  text: string;
}

/**
 * Parses one YAML document (YAML 1.1 scalars, as Go's yaml.v2 reads them). Refused, with a position:
 * tabs in indentation, duplicate keys, tags, block scalars (`|`, `>`), multi-line plain scalars and
 * more than one document. Aliases resolve to their anchor's value.
 */
export function parseYaml(text: string): YamlNode | null {
  return new Parser(text).document();
}

/** A node as a plain JavaScript value. */
export function toValue(node: YamlNode | null): YamlValue {
  if (node === null) return null;
  if (node.kind === "scalar") return node.value;
  if (node.kind === "seq") return node.items.map(toValue);
  const out: Record<string, YamlValue> = {};
  for (const { key, value } of node.items) out[String(toValue(key))] = toValue(value);
  return out;
}

/** Deepest nesting of collections accepted (a config needs 3). */
const MAX_DEPTH = 32;
const NULLS = new Set(["", "~", "null", "Null", "NULL"]);
const TRUES = new Set(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"]);
const FALSES = new Set([
  "n",
  "N",
  "no",
  "No",
  "NO",
  "false",
  "False",
  "FALSE",
  "off",
  "Off",
  "OFF",
]);
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
  "/": "/",
  "\\": "\\",
  N: "\x85",
  _: "\xa0",
  L: "\u2028",
  P: "\u2029",
};

/** A plain scalar as Go's yaml.v2 resolves it (YAML 1.1): null, bool, int (0x, 0 octal, 0b), float, or text. */
export function resolvePlain(text: string): YamlValue {
  if (NULLS.has(text)) return null;
  if (TRUES.has(text)) return true;
  if (FALSES.has(text)) return false;
  if (!/^[-+.0-9]/.test(text)) return text;
  const t = text.replace(/_/g, "");
  let m: RegExpMatchArray | null;
  if ((m = t.match(/^([-+]?)0x([0-9a-fA-F]+)$/))) return sign(m[1]) * parseInt(m[2], 16);
  if ((m = t.match(/^([-+]?)0b([01]+)$/))) return sign(m[1]) * parseInt(m[2], 2);
  if ((m = t.match(/^([-+]?)0([0-7]+)$/))) return sign(m[1]) * parseInt(m[2], 8);
  if (/^[-+]?(0|[1-9][0-9]*)$/.test(t) && text[0] !== "_") return Number(t);
  // Go's yaml.v2 float: an exponent needs no dot, its sign is optional.
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(t)) return Number(t);
  if (/^[-+]?\.(inf|Inf|INF)$/.test(text)) return text[0] === "-" ? -Infinity : Infinity;
  if (/^\.(nan|NaN|NAN)$/.test(text)) return NaN;
  return text;
}

function sign(s: string): number {
  return s === "-" ? -1 : 1;
}

class Parser {
  readonly lines: Line[] = [];
  i = 0;
  readonly anchors = new Map<string, YamlNode | null>();
  depth = 0;

  constructor(text: string) {
    const raw = text.replace(/^\uFEFF/, "").split(/\r?\n/);
    let ended = false;
    raw.forEach((line, index) => {
      const n = index + 1;
      if (ended) {
        if (stripComment(line).trim() !== "") {
          throw new YamlError("only one YAML document is allowed", n, 1);
        }
        return;
      }
      const tab = line.match(/^ *\t/);
      const body = stripComment(line);
      if (body.trim() === "") return;
      if (tab) throw new YamlError("tabs are not allowed in indentation", n, tab[0].length);
      if (/^%/.test(body)) throw new YamlError("YAML directives are not supported", n, 1);
      if (/^---(\s|$)/.test(body)) {
        if (this.lines.length) throw new YamlError("only one YAML document is allowed", n, 1);
        const rest = `   ${body.slice(3)}`.trimEnd(); // the marker blanked: columns stay right
        const indent = rest.length - rest.trimStart().length;
        if (indent < rest.length) this.lines.push({ n, indent, text: rest });
        return;
      }
      if (/^\.\.\.(\s|$)/.test(body)) {
        ended = true;
        return;
      }
      const indent = body.length - body.trimStart().length;
      this.lines.push({ n, indent, text: body.trimEnd() });
    });
  }

  document(): YamlNode | null {
    if (this.lines.length === 0) return null;
    const node = this.block(this.lines[0].indent);
    if (this.i < this.lines.length) {
      const l = this.lines[this.i];
      throw new YamlError("bad indentation (or text after the document's end)", l.n, l.indent + 1);
    }
    return node;
  }

  /** A block node whose first line is indented exactly `indent`. */
  block(indent: number): YamlNode | null {
    const l = this.lines[this.i];
    if (++this.depth > MAX_DEPTH) {
      throw new YamlError(`nested deeper than ${MAX_DEPTH} levels`, l.n, l.indent + 1);
    }
    try {
      return this.blockAt(indent, l);
    } finally {
      this.depth--;
    }
  }

  blockAt(indent: number, l: Line): YamlNode | null {
    if (isSeqItem(l.text.slice(l.indent))) return this.sequence(indent);
    if (keyEnd(l.text, l.indent, l.n) !== -1) return this.mapping(indent, l.indent);
    this.i++;
    return this.inline(l, l.indent, l.text.length);
  }

  mapping(indent: number, firstCol: number): YamlNode {
    const first = this.lines[this.i];
    const node: YamlNode = { kind: "map", items: [], line: first.n, col: firstCol + 1 };
    const seen = new Set<string>();
    let col = firstCol;
    while (this.i < this.lines.length) {
      const l = this.lines[this.i];
      if (l !== first) {
        if (l.indent < indent) break;
        if (l.indent > indent) {
          throw new YamlError("bad indentation of a mapping entry", l.n, l.indent + 1);
        }
        col = l.indent;
      }
      const colon = keyEnd(l.text, col, l.n);
      if (colon === -1) throw new YamlError("expected 'key: value'", l.n, col + 1);
      const key = this.scalarAt(l, col, colon);
      if (key.kind === "scalar" && typeof key.value === "string" && key.value.startsWith("? ")) {
        throw new YamlError("complex mapping keys are not supported", l.n, col + 1);
      }
      addUniqueKey(seen, key);
      this.i++;
      node.items.push({ key, value: this.valueAfter(l, colon + 1, indent, true) });
    }
    return node;
  }

  sequence(indent: number): YamlNode {
    const first = this.lines[this.i];
    const node: YamlNode = { kind: "seq", items: [], line: first.n, col: indent + 1 };
    while (this.i < this.lines.length) {
      const l = this.lines[this.i];
      if (l.indent < indent) break;
      if (l.indent > indent) {
        throw new YamlError("bad indentation of a list item", l.n, l.indent + 1);
      }
      if (!isSeqItem(l.text.slice(indent))) break;
      const rest = l.text.slice(indent + 1);
      const offset = indent + 1 + (rest.length - rest.trimStart().length);
      if (offset < l.text.length && keyEnd(l.text, offset, l.n) !== -1) {
        // `- key: value` starts a mapping indented at the key's column.
        this.lines[this.i] = { n: l.n, indent: offset, text: l.text };
        node.items.push(this.mapping(offset, offset));
        continue;
      }
      if (isSeqItem(l.text.slice(offset))) {
        // `- - item` starts a list nested at the inner dash's column.
        this.lines[this.i] = { n: l.n, indent: offset, text: l.text };
        node.items.push(this.block(offset)!);
        continue;
      }
      this.i++;
      node.items.push(this.valueAfter(l, indent + 1, indent, false) ?? nullAt(l, indent));
    }
    return node;
  }

  /** The value after `key:` or `-` at `from` on line `l`: inline, or the block on the next lines. */
  valueAfter(l: Line, from: number, indent: number, inMap: boolean): YamlNode | null {
    let start = from;
    while (l.text[start] === " ") start++;
    let anchor: string | undefined;
    const a = l.text.slice(start).match(/^&([^\s,[\]{}]+)\s*/);
    if (a) {
      anchor = a[1];
      start += a[0].length;
    }
    let value: YamlNode | null;
    if (start < l.text.length) value = this.inline(l, start, l.text.length);
    else {
      const next = this.lines[this.i];
      const nested = next &&
        (next.indent > indent ||
          (inMap && next.indent === indent && isSeqItem(next.text.slice(indent))));
      value = nested ? this.block(next.indent) : null;
    }
    if (anchor !== undefined) this.anchors.set(anchor, value);
    return value;
  }

  /** An inline value: a flow collection (possibly over several lines), an alias or a scalar. */
  inline(l: Line, start: number, end: number): YamlNode | null {
    const c = l.text[start];
    if (c === "[" || c === "{") return this.flow(l, start);
    if (c === "*") {
      const name = l.text.slice(start + 1, end).trim();
      if (!this.anchors.has(name)) {
        throw new YamlError(`alias *${name} is not defined`, l.n, start + 1);
      }
      return this.anchors.get(name)!;
    }
    if (c === "!") throw new YamlError("YAML tags are not supported", l.n, start + 1);
    if (c === "|" || c === ">") {
      throw new YamlError("block scalars (| and >) are not supported", l.n, start + 1);
    }
    const next = this.lines[this.i];
    if (
      next && next.indent > l.indent && c !== '"' && c !== "'" &&
      !isSeqItem(next.text.slice(next.indent))
    ) {
      if (keyEnd(next.text, next.indent, next.n) === -1) {
        throw new YamlError("multi-line plain scalars are not supported", next.n, next.indent + 1);
      }
    }
    return this.scalarAt(l, start, end);
  }

  /** A quoted or plain scalar spanning `[start, end)` of a line. */
  scalarAt(l: Line, start: number, end: number): YamlNode {
    const text = l.text.slice(start, end).trim();
    const at = { line: l.n, col: start + 1 };
    if (text[0] === '"' || text[0] === "'") {
      const { value, next } = quoted(text, 0, l.n, start);
      if (text.slice(next).trim() !== "") {
        throw new YamlError("unexpected text after a quoted scalar", l.n, start + next + 1);
      }
      return { kind: "scalar", value, ...at };
    }
    if (/^[@`]/.test(text)) {
      throw new YamlError(`a plain scalar cannot start with '${text[0]}'`, l.n, start + 1);
    }
    if (text.startsWith("&") || text.startsWith("*")) {
      throw new YamlError("anchors and aliases are only supported as values", l.n, start + 1);
    }
    return { kind: "scalar", value: resolvePlain(text), ...at };
  }

  /** A flow collection starting at `start` on line `l`; it may continue on the next lines. */
  flow(l: Line, start: number): YamlNode {
    // Join lines until the brackets balance (outside quotes).
    let open = 0;
    let quote = "";
    let j = this.i;
    let text = l.text.slice(start);
    const positions: [number, number][] = [];
    for (let k = 0; k < text.length; k++) positions.push([l.n, start + k + 1]);
    for (;;) {
      open = 0;
      quote = "";
      for (let k = 0; k < text.length; k++) {
        const ch = text[k];
        if (quote) {
          if (ch === "\\" && quote === '"') k++;
          else if (ch === quote) quote = "";
        } else if (ch === '"' || ch === "'") quote = ch;
        else if (ch === "[" || ch === "{") open++;
        else if (ch === "]" || ch === "}") open--;
      }
      if (open <= 0 || j >= this.lines.length) break;
      const more = this.lines[j++];
      text += " " + more.text.trimStart();
      positions.push([more.n, more.indent]);
      for (let k = 0; k < more.text.trimStart().length; k++) {
        positions.push([more.n, more.indent + k + 1]);
      }
    }
    this.i = j;
    const where = (k: number) => positions[Math.min(k, positions.length - 1)] ?? [l.n, start + 1];
    const fail = (message: string, k: number): never => {
      const [line, col] = where(k);
      throw new YamlError(message, line, col);
    };
    let k = 0;
    let depth = 0;
    const space = () => {
      while (text[k] === " ") k++;
    };
    const value = (): YamlNode => {
      space();
      const [line, col] = where(k);
      const ch = text[k];
      if ((ch === "[" || ch === "{") && ++depth > MAX_DEPTH) {
        fail(`nested deeper than ${MAX_DEPTH} levels`, k);
      }
      /** The entries of a collection opened at `k`, each read by `entry`, up to `close`. */
      const entries = (close: string, entry: () => void) => {
        const opened = k++;
        const unterminated = `unterminated ${text[opened]} (no closing ${close})`;
        for (space(); text[k] !== close; space()) {
          if (k >= text.length) fail(unterminated, opened);
          entry();
          space();
          if (text[k] === ",") k++;
          else if (k >= text.length) fail(unterminated, opened);
          else if (text[k] !== close) fail(`expected ',' or '${close}'`, k);
        }
        k++;
        depth--;
      };
      if (ch === "[") {
        const node: YamlNode = { kind: "seq", items: [], line, col };
        entries("]", () => node.items.push(value()));
        return node;
      }
      if (ch === "{") {
        const node: YamlNode = { kind: "map", items: [], line, col };
        const seen = new Set<string>();
        entries("}", () => {
          const key = value();
          space();
          let item: YamlNode | null = null;
          if (text[k] === ":") {
            k++;
            space();
            item = text[k] === "," || text[k] === "}" ? null : value();
          }
          addUniqueKey(seen, key);
          node.items.push({ key, value: item });
        });
        return node;
      }
      if (ch === '"' || ch === "'") {
        const [ln] = where(k);
        const q = quoted(text, k, ln, 0);
        k = q.next;
        return { kind: "scalar", value: q.value, line, col };
      }
      if (ch === "*" || ch === "&" || ch === "!") {
        fail("anchors, aliases and tags are not supported inside [ ] or { }", k);
      }
      if (ch === undefined) fail("unterminated [ or {", k);
      const from = k;
      while (
        k < text.length && !/[,\]}]/.test(text[k]) &&
        !(text[k] === ":" && /[\s,\]}]/.test(text[k + 1] ?? " "))
      ) {
        k++;
      }
      return { kind: "scalar", value: resolvePlain(text.slice(from, k).trim()), line, col };
    };
    const node = value();
    space();
    if (k < text.length) fail("unexpected text after ] or }", k);
    return node;
  }
}

/** Records a mapping key; a key seen before in the same mapping is an error at its position. */
function addUniqueKey(seen: Set<string>, key: YamlNode): void {
  const name = String(toValue(key));
  if (seen.has(name)) {
    throw new YamlError(`duplicate key '${name}' (keys must be unique)`, key.line, key.col);
  }
  seen.add(name);
}

function nullAt(l: Line, indent: number): YamlNode {
  return { kind: "scalar", value: null, line: l.n, col: indent + 1 };
}

function isSeqItem(text: string): boolean {
  return text === "-" || text.startsWith("- ");
}

/** The index of the `:` ending a mapping key that starts at `from`, or -1 when the line has none. */
function keyEnd(text: string, from: number, n: number): number {
  const c = text[from];
  if (c === "[" || c === "{" || c === "*" || c === "!" || c === "|" || c === ">") return -1;
  let k = from;
  if (c === '"' || c === "'") {
    k = quoted(text, from, n, 0).next;
    while (text[k] === " ") k++;
    return text[k] === ":" && (k + 1 === text.length || text[k + 1] === " ") ? k : -1;
  }
  for (; k < text.length; k++) {
    if (text[k] === ":" && (k + 1 === text.length || text[k + 1] === " ")) return k;
  }
  return -1;
}

/** A quoted scalar at `from`: its value and the index after the closing quote. */
function quoted(text: string, from: number, line: number, colBase: number) {
  const q = text[from];
  let value = "";
  for (let k = from + 1; k < text.length; k++) {
    const ch = text[k];
    if (q === "'" && ch === "'") {
      if (text[k + 1] === "'") {
        value += "'";
        k++;
        continue;
      }
      return { value, next: k + 1 };
    }
    if (q === '"' && ch === '"') return { value, next: k + 1 };
    if (q === '"' && ch === "\\") {
      const e = text[++k];
      const hex = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
      if (hex) {
        const digits = text.slice(k + 1, k + 1 + hex);
        if (!new RegExp(`^[0-9a-fA-F]{${hex}}$`).test(digits)) {
          throw new YamlError(`bad escape \\${e}${digits}`, line, colBase + k + 1);
        }
        value += String.fromCodePoint(parseInt(digits, 16));
        k += hex;
      } else if (e in ESCAPES) value += ESCAPES[e];
      else throw new YamlError(`unknown escape \\${e ?? ""}`, line, colBase + k + 1);
      continue;
    }
    value += ch;
  }
  throw new YamlError(
    `unterminated ${q === '"' ? "double" : "single"}-quoted scalar`,
    line,
    colBase + from + 1,
  );
}

/** A line without its comment (`#` at the start or after a space, outside quotes). */
function stripComment(line: string): string {
  let quote = "";
  for (let k = 0; k < line.length; k++) {
    const ch = line[k];
    if (quote) {
      if (ch === "\\" && quote === '"') k++;
      else if (ch === quote) {
        if (quote === "'" && line[k + 1] === "'") k++;
        else quote = "";
      }
    } else if ((ch === '"' || ch === "'") && (k === 0 || /[\s:[{,-]/.test(line[k - 1]))) quote = ch;
    else if (ch === "#" && (k === 0 || line[k - 1] === " " || line[k - 1] === "\t")) {
      return line.slice(0, k);
    }
  }
  return line;
}
