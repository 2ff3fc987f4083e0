// The config YAML reader: values as Go's yaml.v2 reads them, positions, and clear refusals.
import assert from "node:assert/strict";
import YAML from "yaml";
import { parseYaml, resolvePlain, toValue, YamlError } from "../src/yaml.ts";

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
    ["~", null],
    ["", null],
    ["8008", 8008],
    ["0x10", 16],
    ["017", 15],
    ["0b101", 5],
    ["1e9", 1e9],
    ["1.5", 1.5],
    ["-.INF", -Infinity],
    ["1.2.3", "1.2.3"],
    ["127.0.0.1", "127.0.0.1"],
    ["TLSv1.2", "TLSv1.2"],
    ["08", 8], // not octal, so yaml.v2's float
    ["_1", "_1"],
  ];
  for (const [text, value] of cases) assert.deepEqual(resolvePlain(text), value, text);
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

Deno.test("yaml: what it does not read is refused with a position, never an exception of another kind", () => {
  const cases: [string, RegExp, number, number][] = [
    ["a:\n\tb: 1\n", /tabs/, 2, 1],
    ["a: 1\na: 2\n", /duplicate key 'a'/, 2, 1],
    ["m: {a: 1, a: 2}\n", /duplicate key 'a'/, 1, 11],
    ["a:\n  b: 1\n   c: 2\n", /bad indentation/, 3, 4],
    ["a: 'open\n", /unterminated single-quoted/, 1, 4],
    ['a: "bad \\q"\n', /unknown escape/, 1, 10],
    ["a: |\n  text\n", /block scalars/, 1, 4],
    ["a: !!str 1\n", /tags/, 1, 4],
    ["a: 1\n---\nb: 2\n", /one YAML document/, 2, 1],
    ["a: *nope\n", /alias \*nope is not defined/, 1, 4],
    ["a: [1, 2\n", /unterminated \[/, 1, 4],
    ["a: {k: [1]\n", /unterminated \{/, 1, 4],
    ["a: [1, 2] x\n", /unexpected text after/, 1, 11],
    ["a: [1, 2 x: y]\n", /expected ',' or ']'/, 1, 11],
    ["a: plain\n  continued\n", /multi-line plain scalars/, 2, 3],
    [`a: ${"[".repeat(100)}${"]".repeat(100)}\n`, /nested deeper than 32/, 1, 36],
    [
      Array.from({ length: 40 }, (_, i) => `${" ".repeat(i)}k${i}:`).join("\n"),
      /nested deeper/,
      33,
      33,
    ],
  ];
  for (const [text, message, line, col] of cases) {
    assert.throws(() => parseYaml(text), (e: unknown) => {
      assert.ok(e instanceof YamlError, `${JSON.stringify(text)}: ${e}`);
      assert.match(e.message, message, JSON.stringify(text));
      assert.deepEqual([e.line, e.col], [line, col], `${JSON.stringify(text)}: ${e.message}`);
      return true;
    });
  }
});
