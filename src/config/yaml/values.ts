/**
 * Values: a node as a plain JavaScript value, and a mapping key as Go prints what yaml.v2 decoded.
 * @module
 */
import type { YamlNode, YamlValue } from "./nodes.ts";

/** A node as a plain JavaScript value; mapping keys are written as {@linkcode keyString} writes them. */
export function toValue(node: YamlNode | null): YamlValue {
  const done = new Map<YamlNode, YamlValue>();
  const convert = (n: YamlNode | null): YamlValue => {
    if (n === null) return null;
    if (n.kind === "scalar") return n.value;
    let value = done.get(n);
    if (value === undefined) {
      value = n.kind === "seq"
        ? n.items.map(convert)
        : Object.fromEntries(n.items.map((item) => [keyString(item.key), convert(item.value)]));
      done.set(n, value);
    }
    return value;
  };
  return convert(node);
}

/** A key as Go's `fmt.Sprint` prints what yaml.v2 decoded (`<nil>`, `true`, `1e+06`, `+Inf`, `[a b]`). */
export function keyString(node: YamlNode): string {
  if (node.kind === "seq") return `[${node.items.map(keyString).join(" ")}]`;
  if (node.kind === "map") {
    const items = node.items.map((i) => `${keyString(i.key)}:${valueString(i.value)}`);
    return `map[${items.sort().join(" ")}]`;
  }
  const { value, tag } = node;
  if (value === null) return "<nil>";
  if (typeof value === "number") {
    return tag === "!!int" && Number.isInteger(value) ? BigInt(value).toString() : goFloat(value);
  }
  return String(value);
}

function valueString(node: YamlNode | null): string {
  return node === null ? "<nil>" : keyString(node);
}

/** A float64 as Go's `%v` prints it: shortest digits, exponent form below 1e-4 and from 1e+06. */
export function goFloat(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "+Inf";
  if (x === -Infinity) return "-Inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, exponent] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(exponent);
  if (exp < -4 || exp >= 6) {
    const e = Math.abs(exp);
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : "";
    return `${sign}${digits[0]}${frac}e${exp < 0 ? "-" : "+"}${e < 10 ? "0" : ""}${e}`;
  }
  const point = exp + 1;
  if (point <= 0) return `${sign}0.${"0".repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${"0".repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
