/**
 * Decoding: what yaml.v2's decoder refuses (aliases that expand too much, collections as keys, merges of what is not a mapping), in its order.
 * @module
 */
import { YamlError } from "./nodes.ts";
import { type Raw, target } from "./parser.ts";

/** yaml.v2's limit on the share of decoding spent inside aliases (decode.go's allowedAliasRatio). */
function allowedAliasRatio(decoded: number): number {
  if (decoded <= 400_000) return 0.99;
  if (decoded >= 4_000_000) return 0.1;
  return 0.99 - 0.89 * ((decoded - 400_000) / 3_600_000);
}

/** Walks the tree as yaml.v2 decodes it into `interface{}`, refusing what it refuses. */
export function checkDecoding(root: Raw): void {
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
