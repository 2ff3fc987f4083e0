/**
 * The config's YAML: read exactly as Go's yaml.v2 2.4.0 reads it (libyaml's grammar, YAML 1.1 scalars, merge keys), or refused with a position.
 * @module
 */
import { Builder } from "./build.ts";
import { BOM, checkCharacters } from "./chars.ts";
import { checkDecoding } from "./decode.ts";
import type { YamlNode } from "./nodes.ts";
import { Parser } from "./parser.ts";
import { Scanner } from "./scanner.ts";

export {
  type ScalarTag,
  YamlError,
  type YamlItem,
  type YamlNode,
  type YamlValue,
} from "./nodes.ts";
export { resolvePlain } from "./scalars.ts";
export { keyString, toValue } from "./values.ts";

/**
 * Parses the one YAML document in `text` into the value yaml.v2 gives it (null when there is none),
 * merge keys applied. Refused, with a position: whatever yaml.v2 refuses; and, though yaml.v2 reads
 * them, tags (`!!str`, `%TAG`), a second document or text after the first, duplicate keys (also
 * keys that only print alike, such as `1` and `'1'`), a key that a later merge key would replace,
 * integer keys beyond 2^53, characters outside YAML's printable set, a byte order mark after the
 * start, and nesting deeper than 32 levels (aliases included).
 */
export function parseYaml(text: string): YamlNode | null {
  const src = text.charCodeAt(0) === BOM ? text.slice(1) : text;
  checkCharacters(src);
  const root = new Parser(new Scanner(src)).stream();
  if (root === null) return null;
  checkDecoding(root);
  return new Builder().value(root);
}
