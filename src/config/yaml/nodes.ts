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
