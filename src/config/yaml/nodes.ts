/**
 * Nodes: what the reader gives its callers (the node tree with positions, the values it stands for) and the error it refuses a document with.
 * @module
 */

/** The type yaml.v2 gives a scalar when it decodes into `interface{}` (a timestamp stays a string). */
export type ScalarTag = "!!null" | "!!bool" | "!!int" | "!!float" | "!!str";

/** A parsed value with where it starts (1-based line and column). */
export type YamlNode =
  | { kind: "scalar"; value: YamlValue; tag: ScalarTag; line: number; col: number }
  | { kind: "map"; items: YamlItem[]; line: number; col: number }
  | { kind: "seq"; items: YamlNode[]; line: number; col: number };

/**
 * One entry of a mapping. An entry that a merge key (`<<: *defaults`) brought in keeps the key and
 * value nodes where the anchor defined them.
 */
export interface YamlItem {
  /** The key, a scalar (a collection as key is refused). */
  key: YamlNode;
  /** The value; null when nothing follows the key. */
  value: YamlNode | null;
  /** The `<<` key that brought the entry in, if a merge did. */
  mergedBy?: YamlNode;
}

/** What a YAML value becomes in JavaScript. */
export type YamlValue = null | boolean | number | string | YamlValue[] | {
  [key: string]: YamlValue;
};

/** A document the reader refuses, at a 1-based line and column; the message says why. */
export class YamlError extends Error {
  /** Always `YamlError`. */
  override name = "YamlError";
  /** A refusal saying `message`, at the 1-based `line` and `col`. */
  constructor(message: string, readonly line: number, readonly col: number) {
    super(message);
  }
}
