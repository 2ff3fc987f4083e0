/**
 * Building: the nodes callers see from the raw tree, aliases followed, merge keys applied, duplicate keys refused.
 * @module
 */
import { YamlError, type YamlItem, type YamlNode } from "./nodes.ts";
import { type Raw, type RawMap, target } from "./parser.ts";
import { goFloat, keyString } from "./values.ts";

/**
 * How a key is the same key: `id` as yaml.v2's map compares keys (NaN equals nothing, -0 equals 0),
 * `names` also as Go prints them.
 */
function keyNames(key: YamlNode): { id: string | undefined; names: string[] } {
  if (key.kind !== "scalar") return { id: undefined, names: [] };
  const { value, tag } = key;
  const id = Number.isNaN(value) ? undefined : `${tag}:${value === 0 ? 0 : String(value)}`;
  const printed = keyString(key);
  const asFloat = typeof value === "number" ? goFloat(value) : printed;
  return { id, names: [...(id ? [id] : []), `printed:${printed}`, `printed:${asFloat}`] };
}

interface Entry {
  item: YamlItem;
  explicit: boolean;
  id: string | undefined;
  names: string[];
}

/** Turns the raw tree into the nodes callers see, each raw node once (aliases share theirs). */
export class Builder {
  readonly #done = new Map<Raw, YamlNode>();

  /** The node for a value; null for an empty one (`key:` with nothing after it). */
  value(raw: Raw): YamlNode | null {
    const n = target(raw);
    return n.kind === "scalar" && n.empty ? null : this.#node(n);
  }

  #node(raw: Raw): YamlNode {
    const n = target(raw);
    let node = this.#done.get(n);
    if (node) return node;
    if (n.kind === "scalar") {
      node = { kind: "scalar", value: n.value, tag: n.tag, line: n.line, col: n.col };
    } else if (n.kind === "seq") {
      node = {
        kind: "seq",
        items: n.items.map((item) => this.#node(item)),
        line: n.line,
        col: n.col,
      };
    } else node = { kind: "map", items: this.#items(n), line: n.line, col: n.col };
    this.#done.set(n, node);
    return node;
  }

  /**
   * A mapping's entries as yaml.v2 fills its map: in order, a later entry replacing an earlier one,
   * a list of merges applied last to first. Refused where that would silently drop a written key.
   */
  #items(map: RawMap): YamlItem[] {
    const entries: Entry[] = [];
    const byName = new Map<string, Entry>();
    const add = (item: YamlItem, explicit: boolean) => {
      const { id, names } = keyNames(item.key);
      const found = new Set(names.map((name) => byName.get(name)).filter((e) => e !== undefined));
      const [old] = found;
      if (old) {
        const same = found.size === 1 && id !== undefined && old.id === id;
        const { line, col } = item.key;
        const key = keyString(item.key);
        if (!same || (explicit && old.explicit)) {
          throw new YamlError(`duplicate key '${key}' (keys must be unique)`, line, col);
        }
        if (old.explicit) {
          const where = `${old.item.key.line}:${old.item.key.col}`;
          throw new YamlError(
            `the merge would replace key '${key}' written at ${where} (yaml.v2 lets a later '<<' win); put '<<' first`,
            item.mergedBy!.line,
            item.mergedBy!.col,
          );
        }
        for (const name of old.names) byName.delete(name);
        old.item = item;
        old.explicit = explicit;
        old.names = names;
        old.id = id;
        for (const name of names) byName.set(name, old);
        return;
      }
      const entry = { item, explicit, id, names };
      entries.push(entry);
      for (const name of names) byName.set(name, entry);
    };
    let merged: YamlNode | undefined;
    for (const [rawKey, rawValue] of map.pairs) {
      const key = this.#node(rawKey);
      if (rawKey.kind === "scalar" && rawKey.merge) {
        if (merged) {
          throw new YamlError(
            `duplicate key '<<' (merge several mappings with one '<<: [*a, *b]')`,
            key.line,
            key.col,
          );
        }
        merged = key;
        const sources = rawValue.kind === "seq" ? [...rawValue.items].reverse() : [rawValue];
        for (const source of sources) {
          const node = this.#node(source);
          if (node.kind !== "map") continue; // refused by checkDecoding
          for (const item of node.items) add({ ...item, mergedBy: key }, false);
        }
        continue;
      }
      if (key.kind === "scalar" && key.tag === "!!int" && !Number.isSafeInteger(key.value)) {
        throw new YamlError("an integer key beyond 2^53 cannot be read exactly", key.line, key.col);
      }
      add({ key, value: this.value(rawValue) }, true);
    }
    return entries.map((e) => e.item);
  }
}
