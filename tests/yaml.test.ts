// The config YAML reader: values as Go's yaml.v2 reads them, positions, and clear refusals.
import assert from "node:assert/strict";
import YAML from "yaml";
import { keyString, parseYaml, resolvePlain, toValue, YamlError } from "../src/config/yaml/mod.ts";

const read = (text: string) => toValue(parseYaml(text));

/** Documents on which this reader and the full `yaml` package (YAML 1.1) must agree. */
const CORPUS = [
  Deno.readTextFileSync(new URL("../config.yml.example", import.meta.url)),
  "",
  "# only a comment\n",
  "---\nfrontend:\n  port: 8080\n...\n",
  "--- [a, b]\n",
  "--- # a comment\nx: 1\n",
  "frontend:\n  host: localhost\n  port: 8080\n  certfile: /etc/a b/c.pem # comment\n",
  "backend:\n  insecure: yes\n  scheme: 'https'\n  host: \"::1\"\n",
  "a: on\nb: Off\nc: NO\nd: y\ne: ~\nf: null\ng:\nh: TRUE\n",
  "a: 0x1F\nb: 010\nc: 1_000\nd: -7\ne: +3\nf: 0.25\ng: .5\nh: -.inf\ni: 1.5e+3\n",
  "a: 'it''s'\nb: \"tab\\there \\u00e9 \\x41 \\\\ \\\"q\\\"\"\nc: 'x # not a comment'\nd: a#b\n",
  "list:\n  - a\n  - 'b'\n  - 3\nsame:\n- x\n- y\nflow: [TLS_A, \"TLS_B\", 3]\nmap: {a: 1, b: [x, y]}\n",
  "multi: [a,\n  b,\n  c]\nafter: 1\n",
  "seq:\n  - name: a\n    port: 1\n  - name: b\n    port: 2\n  -\n  - - nested\n",
  "base: &b 5\nuse: *b\nm: &m\n  k: v\nn: *m\n",
  "k: v:w\nurl: http://x:8008/path\nempty_quoted: ''\ncolon_end: 'a:'\n",
  "key with spaces: 1\n\"quoted key\": 2\n'single': 3\n",
  "\n\n  # indented comment\nroot:\n\n  child: 1\n\n",
];

Deno.test("yaml: agrees with the yaml package (YAML 1.1) on config-like documents", () => {
  for (const text of CORPUS) {
    assert.deepEqual(read(text), YAML.parse(text, { version: "1.1" }) ?? null, text);
  }
});

Deno.test("yaml: plain scalars resolve as Go's yaml.v2 does", () => {
  const cases: [string, unknown][] = [
    ["yes", true],
    ["Off", false],
    ["y", true],
    ["~", null],
    ["", null],
    ["nULL", "nULL"],
    ["8008", 8008],
    ["0x10", 16],
    ["0X1F", 31],
    ["017", 15],
    ["0o17", 15],
    ["0b101", 5],
    ["+0x10", 16],
    ["-0", 0],
    ["-0.0", -0],
    ["1e9", 1e9],
    ["1.5", 1.5],
    ["1_0.5", 10.5],
    [".5_5", 0.55],
    ["._5", "._5"],
    ["1e400", "1e400"], // overflows a float64: yaml.v2 keeps the text
    ["1e-400", 0],
    ["-.INF", -Infinity],
    ["0x8000000000000000", 9223372036854775808],
    ["-0x8000000000000001", "-0x8000000000000001"],
    ["0b+1", 1], // yaml.v2's second try at binary takes a sign
    ["1.2.3", "1.2.3"],
    ["127.0.0.1", "127.0.0.1"],
    ["TLSv1.2", "TLSv1.2"],
    ["2001-12-14", "2001-12-14"],
    ["08", 8], // not octal, so yaml.v2's float
    ["_1", "_1"],
    ["<<", "<<"],
  ];
  for (const [text, value] of cases) assert.deepStrictEqual(resolvePlain(text), value, text);
  assert.ok(Number.isNaN(resolvePlain(".nan")));
});

Deno.test("yaml: every node knows its line and column", () => {
  const root = parseYaml("# c\nfrontend:\n  port: 8080\n  list: [a, b]\n");
  assert.ok(root?.kind === "map");
  const frontend = root.items[0];
  assert.deepEqual([frontend.key.line, frontend.key.col], [2, 1]);
  assert.ok(frontend.value?.kind === "map");
  const [port, list] = frontend.value.items;
  assert.deepEqual([port.key.line, port.key.col, port.value?.line, port.value?.col], [3, 3, 3, 9]);
  assert.ok(list.value?.kind === "seq");
  assert.deepEqual([list.value.items[1].line, list.value.items[1].col], [4, 13]);
});

/** Asserts that `text` is refused with a YamlError matching `message` at `line`:`col`. */
function assertRefused(text: string, message: RegExp, line: number, col: number) {
  assert.throws(() => parseYaml(text), (e: unknown) => {
    assert.ok(e instanceof YamlError, `${JSON.stringify(text)}: ${e}`);
    assert.match(e.message, message, JSON.stringify(text));
    assert.deepEqual([e.line, e.col], [line, col], `${JSON.stringify(text)}: ${e.message}`);
    return true;
  });
}

Deno.test("yaml: what yaml.v2 refuses is refused with a position", () => {
  const cases: [string, RegExp, number, number][] = [
    ["a:\n\tb: 1\n", /a tab cannot indent/, 2, 1],
    ["a:\n  b: 1\n   c: 2\n", /unexpected ':' \(check the indentation/, 3, 5],
    ["a: b: c\n", /unexpected ':'/, 1, 5],
    ["a: 'open\n", /unterminated single-quoted/, 1, 4],
    ['a: "bad \\q"\n', /unknown escape '\\q'/, 1, 9],
    ['a: "\\/"\n', /unknown escape '\\\/'/, 1, 5], // YAML 1.2's \/ is not YAML 1.1
    ['a: "\\ud800"\n', /escapes no Unicode character/, 1, 5],
    ["a: *nope\n", /alias \*nope is not defined/, 1, 4],
    ["a: &a [1, *a]\n", /alias \*a is inside the value it names/, 1, 11],
    ["a: [1, 2\n", /'\[' is never closed/, 1, 4],
    ["a: {k: [1]\n", /'\{' is never closed/, 1, 4],
    ["a: [1, 2] x\n", /expected the mapping's next 'key:'/, 1, 11],
    ["- a\nb: 1\n", /expected the list's next '- ' item/, 2, 1],
    ["a: 1\nkey\nb: 2\n", /expected ':' after this key/, 2, 1],
    ["...\na: 1\n", /expected a value/, 1, 1],
    ["%YAML 1.2\n---\na: 1\n", /reads YAML 1.1, not 1.2/, 1, 1],
    ["[a]: 1\n", /a mapping or a list cannot be a key/, 1, 1],
    ["? {a: 1}\n: 1\n", /a mapping or a list cannot be a key/, 1, 3],
    ["a: {<<: 1}\n", /'<<' merges a mapping, an alias of one, or a list of those/, 1, 5],
    ["a:\n  <<:\n", /'<<' merges a mapping/, 2, 3],
    ["s: &s [1]\na: {<<: *s}\n", /'<<' merges a mapping/, 2, 5],
    ["a: {<<: [{b: 1}, 2]}\n", /'<<' merges a mapping/, 1, 5],
    ["a: {<<: [[{b: 1}]]}\n", /'<<' merges a mapping/, 1, 5],
    ["a: &a {x: 1, <<: *a}\n", /alias \*a is inside the value it names/, 1, 18],
    // A billion laughs: yaml.v2 stops at 99% of decoding spent in aliases.
    [
      "a: &a [x, x, x, x, x, x, x, x, x, x]\n" +
      ["b", "c", "d"].map((k, i) => `${k}: &${k} [${Array(10).fill(`*${"abc"[i]}`).join(", ")}]\n`)
        .join(""),
      /aliases expand too much/,
      1,
      14,
    ],
  ];
  for (const [text, message, line, col] of cases) assertRefused(text, message, line, col);
});

Deno.test("yaml: what yaml.v2 reads but a config has no use for is refused with a position", () => {
  const cases: [string, RegExp, number, number][] = [
    ["a: 1\na: 2\n", /duplicate key 'a' \(keys must be unique\)/, 2, 1],
    ["m: {a: 1, a: 2}\n", /duplicate key 'a'/, 1, 11],
    ["1: a\n'1': b\n", /duplicate key '1'/, 2, 1], // distinct in yaml.v2, alike when printed
    ["{.nan: 1, .NaN: 2}\n", /duplicate key 'NaN'/, 1, 11],
    ["a: !!str 1\n", /YAML tags \(!\) are not supported/, 1, 4],
    ["%TAG !e! tag:e.com,2000:\n---\na: 1\n", /YAML tags \(%TAG\)/, 1, 1],
    ["a: 1\n---\nb: 2\n", /a second YAML document starts here/, 2, 1],
    ["a: 1\n...\nb: 2\n", /text after the end of the document \(yaml.v2 ignores it\)/, 3, 1],
    ["--- >\nline\n", /text after the end of the document/, 2, 1],
    ["[a] ]\n", /text after the end of the document/, 1, 5],
    ["a: b\ufeffc\n", /a byte order mark after the start/, 1, 5],
    ["a: \u0007\n", /the character U\+0007 is not allowed/, 1, 4],
    ["9007199254740993: a\n", /an integer key beyond 2\^53 cannot be read exactly/, 1, 1],
    ["a: x\nb: \u{1F600}\ud800\n", /U\+D800/, 2, 5],
    // yaml.v2 lets this merge replace port: 2; the YAML spec and any reader of the file say 2.
    [
      "d: &d {port: 1}\nf:\n  port: 2\n  <<: *d\n",
      /the merge would replace key 'port' written at 3:3/,
      4,
      3,
    ],
    [
      "f:\n  <<: {a: 1}\n  <<: {b: 2}\n",
      /duplicate key '<<' \(merge several mappings with one/,
      3,
      3,
    ],
    ["a: &a {1: x}\nb: {<<: *a, '1': y}\n", /duplicate key '1'/, 2, 13],
    [`a: ${"[".repeat(100)}${"]".repeat(100)}\n`, /nested deeper than 32 levels/, 1, 35],
    [
      Array.from({ length: 40 }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n"),
      /nested deeper than 32 levels/,
      33,
      33,
    ],
    [
      "a: &a [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\nb: [*a]\n",
      /nested deeper than 32 levels \(counting what aliases repeat\)/,
      1,
      1,
    ],
  ];
  for (const [text, message, line, col] of cases) assertRefused(text, message, line, col);
});

Deno.test("yaml: YamlError is its own class, not a SyntaxError", () => {
  const e = new YamlError("bad", 2, 3);
  assert.ok(e instanceof Error && !(e instanceof SyntaxError));
  assert.equal(e.name, "YamlError");
  assert.deepEqual([e.message, e.line, e.col], ["bad", 2, 3]);
  assert.throws(() => parseYaml("a: [\n"), (thrown: unknown) => {
    assert.ok(thrown instanceof YamlError);
    assert.match(String(thrown), /^YamlError: '\[' is never closed/);
    return true;
  });
});

// Expected values below are what yaml.v2 2.4.0 decodes (checked with the Go program that wrote
// fixtures/yaml-test-suite/expected.jsonl).
Deno.test("yaml: merge keys are applied as yaml.v2 applies them, in block and flow mappings", () => {
  const cases: [string, unknown][] = [
    // One alias; a key written after '<<' wins.
    [
      "defaults: &d\n  host: db\n  port: 5432\nfrontend:\n  <<: *d\n  port: 8008\n",
      { defaults: { host: "db", port: 5432 }, frontend: { host: "db", port: 8008 } },
    ],
    [
      "d: &d {host: db, port: 5432}\nf: {<<: *d, port: 8008}\n",
      { d: { host: "db", port: 5432 }, f: { host: "db", port: 8008 } },
    ],
    // A list: an earlier alias wins over a later one.
    [
      "a: &a {host: a, port: 1}\nb: &b {port: 2, timeout: 3}\nf:\n  <<: [*a, *b]\n",
      {
        a: { host: "a", port: 1 },
        b: { port: 2, timeout: 3 },
        f: { host: "a", port: 1, timeout: 3 },
      },
    ],
    [
      "a: &a {k: 1}\nb: &b {k: 2, j: 2}\nf: {<<: [*b, *a], j: 3}\n",
      { a: { k: 1 }, b: { k: 2, j: 2 }, f: { k: 2, j: 3 } },
    ],
    // Mappings written in place, as one value or in a block list.
    ["f:\n  <<: {a: 1}\n  b: 2\n", { f: { a: 1, b: 2 } }],
    ["f:\n  <<:\n    - {a: 1}\n    - {a: 2, b: 2}\n", { f: { a: 1, b: 2 } }],
    // A merged mapping's own merges come along.
    [
      "a: &a {x: 1}\nb: &b {<<: *a, w: 2}\nc: {<<: *b, z: 3}\n",
      { a: { x: 1 }, b: { x: 1, w: 2 }, c: { x: 1, w: 2, z: 3 } },
    ],
    ["f: {<<: [], a: 1}\n", { f: { a: 1 } }],
    ["a: &a {k: ~, j: }\nb: {<<: *a}\n", { a: { k: null, j: null }, b: { k: null, j: null } }],
    // Only a plain '<<' merges.
    ["f: {'<<': {a: 1}}\n", { f: { "<<": { a: 1 } } }],
    ["f: [<<]\n", { f: ["<<"] }],
  ];
  for (const [text, value] of cases) assert.deepStrictEqual(read(text), value, text);
});

Deno.test("yaml: merged entries arrive in the node tree, with the positions of what they merged", () => {
  const root = parseYaml("base: &b\n  host: db\n  port: 1\nfrontend:\n  <<: *b\n  port: 2\n");
  assert.ok(root?.kind === "map");
  const frontend = root.items[1].value;
  assert.ok(frontend?.kind === "map");
  const seen = frontend.items.map((i) => [
    keyString(i.key),
    i.key.line,
    i.key.col,
    i.value?.line,
    i.value?.col,
    i.mergedBy && [i.mergedBy.line, i.mergedBy.col],
  ]);
  assert.deepEqual(seen, [
    ["host", 2, 3, 2, 9, [5, 3]], // where the anchor defines it, brought by the '<<' at 5:3
    ["port", 6, 3, 6, 9, undefined], // written here: replaces the merged port
  ]);
});

Deno.test("yaml: reads block scalars, multi-line scalars, explicit keys and %YAML 1.1 as yaml.v2 does", () => {
  const cases: [string, unknown][] = [
    [
      "lit: |\n  a\n   b\n\n  c\nfold: >-\n  a\n  b\n\n  c\nkeep: |+\n  x\n\nend: 1\n",
      { lit: "a\n b\n\nc\n", fold: "a b\nc", keep: "x\n\n", end: 1 },
    ],
    [
      "plain: a\n  b\n\n  c\nsingle: 'a\n  b'\ndouble: \"a\\\n  b \\u00e9\"\n",
      { plain: "a b\nc", single: "a b", double: "ab é" },
    ],
    ["? a\n: 1\n? b\n", { a: 1, b: null }],
    ["%YAML 1.1\n---\na: 1\n", { a: 1 }],
    ["key: &an:chor value\n", { key: ":chor value" }], // an anchor name stops at ':'
    ["[a, b, c,#invalid\n]\n", ["a", "b", "c"]], // '#' after ',' starts a comment
    ["a: [1, 2 x: y]\n", { a: [1, { "2 x": true }] }],
    ["a:\tb\n", { a: "b" }],
    ["a: 1\n...\n...\n", { a: 1 }],
    ["- \n- ~\n-\n", [null, null, null]],
    ["[?]]\n", [{ "<nil>": null }]], // yaml.v2 drops the token after an empty '?' key
  ];
  for (const [text, value] of cases) assert.deepStrictEqual(read(text), value, text);
});

Deno.test("yaml: keys print as Go prints yaml.v2's keys", () => {
  const value = read("1000000: a\n1.5: b\n~: c\ntrue: d\n.inf: e\n1e-5: f\n-.inf: h\n");
  assert.deepStrictEqual(value, {
    "1000000": "a", // an int
    "1.5": "b",
    "<nil>": "c",
    true: "d",
    "+Inf": "e",
    "1e-05": "f",
    "-Inf": "h",
  });
  assert.deepStrictEqual(read("1e6: a\n"), { "1e+06": "a" }); // a float
  // fmt.Sprint of float64 values, as Go 1.19 prints them.
  const floats: [number, string][] = [
    [1234567, "1.234567e+06"],
    [100000.5, "100000.5"],
    [1e21, "1e+21"],
    [0.0001, "0.0001"],
    [0.00012345, "0.00012345"],
    [5e-324, "5e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"],
    [-0, "-0"],
    [NaN, "NaN"],
  ];
  for (const [f, printed] of floats) {
    assert.equal(keyString({ kind: "scalar", value: f, tag: "!!float", line: 1, col: 1 }), printed);
  }
  const proto = read("__proto__: {a: 1}\n") as Record<string, unknown>;
  assert.deepEqual(Object.keys(proto), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
});

Deno.test("yaml: config files as operators write them: BOM, CRLF, '---', comments, quotes, flow lists, aliases", () => {
  const text =
    "\ufeff---\r\n# config\r\nfrontend:\r\n  host: 'h' # c\r\n  ports: [1, \"2\"]\r\n  a: &x yes\r\n  b: *x\r\n";
  assert.deepStrictEqual(read(text), {
    frontend: { host: "h", ports: [1, "2"], a: true, b: true },
  });
  const root = parseYaml(text);
  assert.ok(root?.kind === "map");
  assert.deepEqual([root.items[0].key.line, root.items[0].key.col], [3, 1]);
});

Deno.test("yaml: mutated suite documents are read or refused, never another exception", () => {
  const dir = new URL("./fixtures/yaml-test-suite/", import.meta.url);
  const pieces = [":", "- ", "? ", "[", "}", ",", "#", "&a ", "*a", "'", '"', "\t", "\n  ", "<<: "];
  let read = 0;
  let refused = 0;
  for (const entry of [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".yaml.in"))) {
    const text = Deno.readTextFileSync(new URL(entry.name, dir));
    for (let k = 0; k < 8; k++) {
      const at = (k * 37 + text.length) % (text.length + 1);
      const piece = pieces[(k * 5 + text.length) % pieces.length];
      const mutated = text.slice(0, at) + piece + text.slice(at + (k % 3));
      try {
        toValue(parseYaml(mutated));
        read++;
      } catch (e) {
        if (!(e instanceof YamlError)) throw new Error(`${entry.name} #${k}: ${e}`);
        assert.ok(e.line >= 1 && e.col >= 1);
        refused++;
      }
    }
  }
  assert.ok(read > 100 && refused > 100, `${read} read, ${refused} refused`);
});

Deno.test("yaml: large documents are read in linear time", () => {
  const long = `[${Array.from({ length: 50_000 }, (_, i) => `v${i}`).join(", ")}]\n`;
  assert.equal((read(long) as unknown[]).length, 50_000);
  const many = Array.from({ length: 20_000 }, (_, i) => `k${i}: &a${i} {x: ${i}}\n`).join("") +
    "all:\n  <<: [" + Array.from({ length: 500 }, (_, i) => `*a${i}`).join(", ") + "]\n";
  assert.deepEqual((read(many) as Record<string, unknown>).all, { x: 0 });
  const scalar = read(`a: ${"x ".repeat(100_000)}\n  ${"y".repeat(100_000)}\n`);
  assert.equal((scalar as Record<string, string>).a.length, 300_000);
});
