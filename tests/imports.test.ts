// The module graph of main.ts and src/*.ts: no import cycle (types included), listeners on top.
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/**
 * Who may import each listener-side module: service.ts wires the listeners, listen.ts alone uses
 * the HTTP/1 server and the TLS transport under them, and the connection interface, accept loop,
 * back-off and deadlines under them all are theirs alone.
 */
const ALLOWED_IMPORTERS: Record<string, string[]> = {
  "src/listen.ts": ["src/service.ts"],
  "src/agent.ts": ["src/service.ts"],
  "src/connections.ts": ["src/http1.ts", "src/agent.ts", "src/listen.ts", "src/tls_conn.ts"],
  "src/http1.ts": ["src/listen.ts"],
  "src/tls_conn.ts": ["src/listen.ts"],
};
/** Modules anything may import, which import no module of the project. */
const LEAVES = ["src/health.ts", "src/wire.ts"];

/** `source` with comments blanked out; string and template literals are kept as they are. */
function withoutComments(source: string): string {
  let out = "";
  /** Open template literals, each with the brace depth of its `${` expressions. */
  const templates: number[] = [];
  let depth = 0;
  for (let i = 0; i < source.length;) {
    const c = source[i];
    if (templates.length > 0 && depth === templates[templates.length - 1]) {
      // Inside a template literal's text.
      if (c === "\\") {
        out += source.slice(i, i + 2);
        i += 2;
      } else if (c === "`") {
        templates.pop();
        out += c;
        i++;
      } else if (c === "$" && source[i + 1] === "{") {
        depth++;
        out += "${";
        i += 2;
      } else {
        out += c;
        i++;
      }
      continue;
    }
    if (c === "/" && source[i + 1] === "/") {
      const end = source.indexOf("\n", i);
      i = end === -1 ? source.length : end;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end === -1 ? source.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c && source[j] !== "\n") {
        j += source[j] === "\\" ? 2 : 1;
      }
      out += source.slice(i, j + 1);
      i = j + 1;
    } else if (c === "`") {
      templates.push(depth);
      out += c;
      i++;
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      out += c;
      i++;
    }
  }
  return out;
}

const IMPORT_FORMS = [
  // import x from "m"; import type { X } from "m"; import * as m from "m"; export { x } from "m"
  /\b(?:import|export)\s+(?:type\s+)?[\w$*{}\s,]*?\bfrom\s*(["'])([^"'\n]+)\1/g,
  // import "m" (for its effects)
  /\bimport\s*(["'])([^"'\n]+)\1/g,
  // import("m"), also in `typeof import("m")`
  /\bimport\s*\(\s*(["'])([^"'\n]+)\1\s*\)/g,
];

/** The specifiers `source` imports or re-exports, `import type` and `import()` included. */
function importsOf(source: string): string[] {
  const code = withoutComments(source);
  return [...new Set(IMPORT_FORMS.flatMap((form) => [...code.matchAll(form)].map((m) => m[2])))];
}

/** main.ts and src/*.ts, each with the project modules it imports (paths from the root). */
function projectGraph(): Map<string, string[]> {
  const files = ["main.ts"];
  for (const entry of Deno.readDirSync(new URL("src/", ROOT))) {
    if (entry.isFile && entry.name.endsWith(".ts")) files.push(`src/${entry.name}`);
  }
  const graph = new Map<string, string[]>();
  for (const file of files.sort()) {
    const url = new URL(file, ROOT);
    const local = importsOf(Deno.readTextFileSync(url))
      .filter((s) => s.startsWith("."))
      .map((s) => new URL(s, url).pathname.slice(ROOT.pathname.length))
      .filter((path) => path.endsWith(".ts"));
    graph.set(file, local);
  }
  return graph;
}

/** A cycle in `graph` as a path that ends where it starts, or undefined. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === "done") return undefined;
    if (state.get(node) === "open") return [...path.slice(path.indexOf(node)), node];
    state.set(node, "open");
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

Deno.test("imports: the reader finds every form of import and skips comments", () => {
  const source = `
// import { fake } from "./commented.ts";
/* import "./blocked.ts"; */
import { a, type B } from "./a.ts";
import type {
  C,
  D,
} from "./types.ts";
import * as all from './all.ts';
import "./effect.ts";
export { e } from "./e.ts";
export type { F } from "./f.ts";
export * from "./star.ts";
const url = \`http://\${host}/x\`; // import { g } from "./after-template.ts";
type H = typeof import("./typeof.ts");
const later = await import("./dynamic.ts");
const text = "import x from './in-string.ts'";
`;
  assert.deepEqual(importsOf(source).sort(), [
    "./a.ts",
    "./all.ts",
    "./dynamic.ts",
    "./e.ts",
    "./effect.ts",
    "./f.ts",
    "./in-string.ts", // a string that reads like an import counts: stricter, never laxer
    "./star.ts",
    "./typeof.ts",
    "./types.ts",
  ]);
});

Deno.test("imports: a planted cycle is found, with its path", () => {
  const graph = new Map([
    ["src/a.ts", ["src/b.ts"]],
    ["src/b.ts", ["src/c.ts"]],
    ["src/c.ts", ["src/a.ts"]],
    ["src/d.ts", ["src/a.ts"]],
  ]);
  assert.deepEqual(findCycle(graph), ["src/a.ts", "src/b.ts", "src/c.ts", "src/a.ts"]);
  graph.set("src/c.ts", []);
  assert.equal(findCycle(graph), undefined);
});

Deno.test("imports: main.ts and src/ have no import cycle, types included", () => {
  const graph = projectGraph();
  for (const [file, imports] of graph) {
    for (const target of imports) assert.ok(graph.has(target), `${file} imports ${target}`);
  }
  const cycle = findCycle(graph);
  assert.equal(cycle, undefined, `import cycle: ${cycle?.join(" -> ")}`);
});

Deno.test("imports: node: and npm: modules load on demand only, so a plain setup has no Node layer", () => {
  // Anything but `import type`, which is erased; `import()` is how a module loads one when needed.
  const eager = /\b(?:import|export)\s+(?!type\s)[^;]*?\bfrom\s*["']((?:node|npm):[^"']+)["']/g;
  for (const file of projectGraph().keys()) {
    const code = withoutComments(Deno.readTextFileSync(new URL(file, ROOT)));
    const found = [...code.matchAll(eager)].map((m) => m[1]);
    assert.deepEqual(found, [], `${file} loads ${found.join(", ")} at start`);
  }
});

/** Project modules only some configurations use, loaded with `import()` where they are needed. */
const ON_DEMAND = ["src/tls_conn.ts"];

Deno.test("imports: the TLS transport loads on demand only, so a plain-HTTP frontend never compiles it", () => {
  const eager = /\b(?:import|export)\s+(?!type\s)[^;]*?\bfrom\s*["'](\.[^"']+)["']/g;
  for (const file of projectGraph().keys()) {
    const url = new URL(file, ROOT);
    const code = withoutComments(Deno.readTextFileSync(url));
    const found = [...code.matchAll(eager)]
      .map((m) => new URL(m[1], url).pathname.slice(ROOT.pathname.length))
      .filter((path) => ON_DEMAND.includes(path));
    assert.deepEqual(found, [], `${file} loads ${found.join(", ")} at start`);
  }
});

Deno.test("imports: listeners sit on top; health.ts and wire.ts are leaves", () => {
  const graph = projectGraph();
  for (const [file, imports] of graph) {
    for (const target of imports) {
      const allowed = ALLOWED_IMPORTERS[target];
      assert.ok(
        !allowed || allowed.includes(file),
        `${file} imports ${target}, which only ${allowed?.join(", ")} may import`,
      );
    }
  }
  for (const leaf of LEAVES) assert.deepEqual(graph.get(leaf), [], `${leaf} is a leaf`);
});
