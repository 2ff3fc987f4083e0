/**
 * Decoding: what yaml.v2's decoder refuses (aliases that expand too much, collections as keys, merges of what is not a mapping), in its order.
 * @module
 */
import { YamlError } from "./nodes.ts";
import { type Raw, target } from "./parser.ts";

/** Up to this many decoded nodes, 99% of them may be inside aliases (decode.go's alias_ratio_range_low). */
const RATIO_RANGE_LOW = 400_000;
/** From this many, 10% (alias_ratio_range_high); the share falls linearly in between. */
const RATIO_RANGE_HIGH = 4_000_000;
/** yaml.v2 checks the share only past this many nodes decoded inside aliases, */
const MIN_ALIASED = 100;
/** and past this many decoded in all. */
const MIN_DECODED = 1000;

/** yaml.v2's limit on the share of decoding spent inside aliases (decode.go's allowedAliasRatio). */
function allowedAliasRatio(decoded: number): number {
  if (decoded <= RATIO_RANGE_LOW) return 0.99;
  if (decoded >= RATIO_RANGE_HIGH) return 0.1;
  return 0.99 - 0.89 * ((decoded - RATIO_RANGE_LOW) / (RATIO_RANGE_HIGH - RATIO_RANGE_LOW));
}

/** Walks the tree as yaml.v2 decodes it into `interface{}`, refusing what it refuses. */
export function checkDecoding(root: Raw): void {
  let decoded = 1; // the document
  let aliased = 0;
  let inAlias = 0;
  const visit = (n: Raw): void => {
    decoded++;
    if (inAlias > 0) aliased++;
    if (
      aliased > MIN_ALIASED && decoded > MIN_DECODED &&
      aliased / decoded > allowedAliasRatio(decoded)
    ) {
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
