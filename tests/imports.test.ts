// The module graph of main.ts and src/, as `deno info --json` gives it: no import cycle (types included), the layers' rules, Node's layer loaded on demand only.
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/**
 * The layers, lowest first, and the folders each may import besides its own: transports and
 * servers (net), the DCS view (dcs), the check path (check), reading the config (config). Modules
 * directly in src/ are the wiring (service.ts, metrics.ts), which may import every layer.
 */
const LAYERS: Record<string, string[]> = {
  "src/net/": [],
  "src/dcs/": ["src/net/"],
  "src/check/": ["src/dcs/", "src/net/"],
  "src/config/": ["src/check/", "src/dcs/", "src/net/"],
  "src/": ["src/config/", "src/check/", "src/dcs/", "src/net/"],
};
/** Modules every layer may import, which import none of the project's but each other. */
const BASE = ["src/log.ts", "src/check/health.ts", "src/net/wire.ts"];
/** Modules only the wiring may import: the listeners' binds. */
const WIRED_ONLY = ["src/net/listen.ts"];

/** The layer (folder) of a module: its deepest folder in {@linkcode LAYERS}. */
function layerOf(file: string): string {
  return Object.keys(LAYERS).filter((l) => file.startsWith(l)).sort((a, b) =>
    b.length - a.length
  )[0];
}

/** main.ts and src/, each with the project modules it imports, from `deno info --json`. */
function projectGraph(): Map<string, string[]> {
  const out = new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).outputSync();
  assert.ok(out.success, "deno info --json main.ts");
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: {
      specifier: string;
      dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
    }[];
  };
  const local = (specifier: string) =>
    specifier.startsWith(ROOT.href) ? specifier.slice(ROOT.href.length) : undefined;
  const graph = new Map<string, string[]>();
  for (const module of info.modules) {
    const file = local(module.specifier);
    if (file === undefined || !(file === "main.ts" || file.startsWith("src/"))) continue;
    const deps = (module.dependencies ?? []).flatMap((d) => [d.code?.specifier, d.type?.specifier])
      .map((s) => s && local(s)).filter((s): s is string => s !== undefined);
    graph.set(file, [...new Set(deps)]);
  }
  return graph;
}

/** The .ts files below `dir` (a path from the root, ending in `/`), folders included. */
function sourcesIn(dir: string): string[] {
  return [...Deno.readDirSync(new URL(dir, ROOT))].flatMap((entry) =>
    entry.isDirectory
      ? sourcesIn(`${dir}${entry.name}/`)
      : entry.isFile && entry.name.endsWith(".ts")
      ? [`${dir}${entry.name}`]
      : []
  );
}

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

Deno.test("imports: main.ts and src/ have no import cycle, types included; every module is in use", () => {
  const graph = projectGraph();
  const cycle = findCycle(graph);
  assert.equal(cycle, undefined, `import cycle: ${cycle?.join(" -> ")}`);
  const unused = sourcesIn("src/").filter((file) => !graph.has(file));
  assert.deepEqual(unused, [], "modules main.ts never reaches");
});

Deno.test("imports: each layer imports only the layers below it, and the base", () => {
  const wrong: string[] = [];
  for (const [file, imports] of projectGraph()) {
    if (file === "main.ts") continue;
    for (const target of imports) {
      const [from, to] = [layerOf(file), layerOf(target)];
      const allowed = BASE.includes(file)
        ? BASE.includes(target)
        : BASE.includes(target) || from === to || LAYERS[from].includes(to);
      if (!allowed) wrong.push(`${file} imports ${target}`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("imports: the listeners' binds are the wiring's alone", () => {
  for (const [file, imports] of projectGraph()) {
    for (const target of imports.filter((t) => WIRED_ONLY.includes(t))) {
      assert.equal(file, "src/service.ts", `${file} imports ${target}`);
    }
  }
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
const ON_DEMAND = ["src/net/tls_transport.ts", "src/dcs/watch.ts"];

Deno.test("imports: the TLS transport and the DCS watchers load on demand only: a plain HTTP frontend without dcs: never compiles them", () => {
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
