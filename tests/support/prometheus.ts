// Prometheus for tests: a strict reader of the text exposition format, and promtool.
import { hasProgram, runCommand } from "./tools.ts";

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses exposition text; throws on any line that does not follow the format. */
export function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  for (const line of text.slice(0, -1).split("\n")) {
    let m = line.match(/^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/);
    if (m) {
      if (m[1] === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(m[3])) {
          throw new Error(`bad type: ${line}`);
        }
        if (types.has(m[2])) throw new Error(`duplicate TYPE: ${line}`);
        types.set(m[2], m[3]);
      } else helps.add(m[2]);
      continue;
    }
    m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/);
    if (!m) throw new Error(`bad line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let pos = 0;
      while (pos < m[3].length) {
        re.lastIndex = pos;
        const l = re.exec(m[3]);
        if (!l) throw new Error(`bad labels: ${line}`);
        labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
        pos = re.lastIndex;
      }
    }
    const value = Number(m[4].replace("+Inf", "Infinity"));
    if (Number.isNaN(value) && m[4] !== "NaN") throw new Error(`bad value: ${line}`);
    const family = m[1].replace(/_(bucket|sum|count)$/, "");
    if (!types.has(m[1]) && !types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    if (!helps.has(m[1]) && !helps.has(family)) throw new Error(`sample without HELP: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

/** The value of the one sample named `name` whose labels include `labels`. */
export function sampleValue(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )?.value;
}

/** Prometheus's promtool (Debian's `prometheus` package). */
export const HAS_PROMTOOL: boolean = hasProgram("promtool");

/** Runs `promtool args`, `stdin` on its input; its exit code and everything it printed. */
export async function promtool(
  args: string[],
  stdin = "",
): Promise<{ code: number; output: string }> {
  const { code, stdout, stderr } = await runCommand("promtool", args, { stdin });
  return { code, output: stdout + stderr };
}

/** `promtool check metrics` of exposition `text`: what it complains of, "" when nothing. */
export async function checkMetrics(text: string): Promise<string> {
  const { code, output } = await promtool(["check", "metrics"], text);
  return code === 0 ? output.trim() : `exit ${code}: ${output}`;
}
