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
  /** Written in the mapping, not brought in by a merge key. */
  explicit: boolean;
  id: string | undefined;
  names: string[];
}

/**
 * A mapping's entries as yaml.v2 fills its map: in order, a later entry replacing an earlier one of
 * the same key. Refused where that would silently drop a written key.
 */
class Entries {
  readonly #list: Entry[] = [];
  readonly #byName = new Map<string, Entry>();

  /** Adds an entry written in the mapping (`explicit`) or brought in by a merge key. */
  add(item: YamlItem, explicit: boolean): void {
    const { id, names } = keyNames(item.key);
    const found = new Set(
      names.map((name) => this.#byName.get(name)).filter((e) => e !== undefined),
    );
    const [old] = found;
    if (!old) {
      const entry = { item, explicit, id, names };
      this.#list.push(entry);
      for (const name of names) this.#byName.set(name, entry);
      return;
    }
    const same = found.size === 1 && id !== undefined && old.id === id;
    checkReplace(old, item, explicit, same);
    for (const name of old.names) this.#byName.delete(name);
    old.item = item;
    old.explicit = explicit;
    old.names = names;
    old.id = id;
    for (const name of names) this.#byName.set(name, old);
  }

  /** The entries, each where its key first came. */
  items(): YamlItem[] {
    return this.#list.map((e) => e.item);
  }
}

/**
 * Refuses `item` in place of `old` where a written key would be lost: keys that only print alike
 * (not `same` to yaml.v2), two written keys, or a merged key over a written one (yaml.v2 lets the
 * merge win). A key replaces a merged one of the same key.
 */
function checkReplace(old: Entry, item: YamlItem, explicit: boolean, same: boolean): void {
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

  /** A mapping's entries, merge keys applied (see {@linkcode Entries}). */
  #items(map: RawMap): YamlItem[] {
    const entries = new Entries();
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
        this.#merge(entries, key, rawValue);
        continue;
      }
      if (key.kind === "scalar" && key.tag === "!!int" && !Number.isSafeInteger(key.value)) {
        throw new YamlError("an integer key beyond 2^53 cannot be read exactly", key.line, key.col);
      }
      entries.add({ key, value: this.value(rawValue) }, true);
    }
    return entries.items();
  }

  /** Adds the entries of the mappings merge key `key` names, a list of them last to first. */
  #merge(entries: Entries, key: YamlNode, value: Raw): void {
    const sources = value.kind === "seq" ? [...value.items].reverse() : [value];
    for (const source of sources) {
      const node = this.#node(source);
      if (node.kind !== "map") continue; // refused by checkDecoding
      for (const item of node.items) entries.add({ ...item, mergedBy: key }, false);
    }
  }
}
