// The README chart: throughput (linear) and p99 (log scale) per target for scenarios (1) and (2),
// drawn as SVG and rendered to PNG by resvg (an npm package with a prebuilt binary; fonts from the
// system, DejaVu Sans where installed).
import { Resvg } from "npm:@resvg/resvg-js@2.6.2";
import type { LoadStats, Results } from "./types.ts";
import type { TargetName } from "./targets.ts";

export const COLORS: Record<TargetName, string> = {
  patroniglue: "#1f6fb5",
  nginx: "#2e9b47",
  haproxy: "#d9822b",
  limit: "#a33b8c",
  direct: "#8a8a8a",
};

const W = 1100;
const H = 460;
const FONT = "DejaVu Sans, Liberation Sans, Arial, sans-serif";

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function short(n: number): string {
  if (n >= 10_000) return `${(n / 1000).toFixed(0)}k`;
  if (n >= 1000) return `${(n / 1000).toFixed(1)}k`;
  return n.toFixed(0);
}

function msLabel(x: number): string {
  return x >= 100 ? `${x.toFixed(0)}` : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

interface Panel {
  x: number;
  title: string;
  value: (s: LoadStats) => number;
  label: (v: number) => string;
  log: boolean;
}

/** The chart as SVG text. */
export function chartSvg(r: Results): string {
  const groups = [
    { name: "(1) cache hits /primary", stats: r.hit },
    { name: "(2) mix of 4 checks", stats: r.mix },
  ].filter((g) => Object.keys(g.stats).length > 0);
  const targets = r.targets.filter((t) => groups.some((g) => g.stats[t]));
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${
      W / 2
    }" y="26" font-size="17" font-weight="bold" text-anchor="middle">patroniglue vs nginx proxy_cache vs HAProxy cache vs the limit vs Patroni direct</text>`,
    `<text x="${W / 2}" y="46" font-size="12" fill="#555" text-anchor="middle">${
      esc(
        `wrk -t${r.options.threads} -c${r.options.connections}, medians of ${r.options.runs} alternating runs; ` +
          `${r.machine.cpus} cores, simulated Patroni ${r.settings.delayMs} ms per check, ttl ${r.settings.ttl} s` +
          (r.options.quick ? " — QUICK RUN, not representative" : ""),
      )
    }</text>`,
  );
  const panels: Panel[] = [
    {
      x: 20,
      title: "Throughput, req/s (higher is better)",
      value: (s) => s.rps,
      label: short,
      log: false,
    },
    {
      x: W / 2 + 10,
      title: "p99 latency, ms (lower is better; log scale)",
      value: (s) => s.p99,
      label: msLabel,
      log: true,
    },
  ];
  const top = 90;
  const bottom = H - 70;
  const pw = W / 2 - 40;
  for (const p of panels) {
    const values = groups.flatMap((g) =>
      targets.map((t) => g.stats[t] ? p.value(g.stats[t]!) : NaN)
    )
      .filter((v) => Number.isFinite(v) && v > 0);
    const left = p.x + 50;
    const width = pw - 55;
    out.push(
      `<text x="${p.x + pw / 2}" y="${
        top - 18
      }" font-size="14" font-weight="bold" text-anchor="middle">${esc(p.title)}</text>`,
    );
    let scale: (v: number) => number;
    let ticks: number[];
    if (p.log) {
      const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values, 1))));
      const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values, 10))));
      scale = (v) =>
        (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo));
      ticks = [];
      for (let k = Math.log10(lo); k <= Math.log10(hi) + 0.001; k++) {
        ticks.push(Number((10 ** k).toPrecision(1)));
      }
    } else {
      const max = Math.max(...values, 1);
      const step = niceStep(max / 5);
      const hi = Math.ceil(max / step) * step;
      scale = (v) => v / hi;
      ticks = [];
      for (let t = 0; t <= hi + step / 2; t += step) ticks.push(t);
    }
    const y = (v: number) => bottom - scale(v) * (bottom - top);
    for (const t of ticks) {
      out.push(
        `<line x1="${left}" x2="${left + width}" y1="${y(t)}" y2="${y(t)}" stroke="#e3e3e3"/>`,
        `<text x="${left - 6}" y="${y(t) + 4}" font-size="11" fill="#555" text-anchor="end">${
          p.log ? String(t) : short(t)
        }</text>`,
      );
    }
    out.push(
      `<line x1="${left}" x2="${left + width}" y1="${bottom}" y2="${bottom}" stroke="#444"/>`,
    );
    const gw = width / groups.length;
    groups.forEach((g, gi) => {
      const bw = Math.min(60, (gw - 30) / targets.length);
      const gx = left + gi * gw + (gw - bw * targets.length) / 2;
      targets.forEach((t, ti) => {
        const s = g.stats[t];
        if (!s) return;
        const v = p.value(s);
        const yy = y(v);
        const x = gx + ti * bw;
        out.push(
          `<rect x="${x + 3}" y="${yy}" width="${bw - 6}" height="${
            Math.max(0, bottom - yy)
          }" fill="${COLORS[t]}"/>`,
          `<text x="${x + bw / 2}" y="${yy - 5}" font-size="11" text-anchor="middle">${
            p.label(v)
          }</text>`,
        );
      });
      out.push(
        `<text x="${left + gi * gw + gw / 2}" y="${
          bottom + 18
        }" font-size="12" text-anchor="middle">${esc(g.name)}</text>`,
      );
    });
  }
  // Legend.
  const lw = 170;
  let lx = W / 2 - (lw * targets.length) / 2;
  for (const t of targets) {
    out.push(
      `<rect x="${lx}" y="${H - 32}" width="14" height="14" fill="${COLORS[t]}"/>`,
      `<text x="${lx + 20}" y="${H - 20}" font-size="13">${
        t === "nginx"
          ? "nginx proxy_cache"
          : t === "haproxy"
          ? "HAProxy cache"
          : t === "direct"
          ? "Patroni direct"
          : t === "limit"
          ? "limit (HAProxy return)"
          : t
      }</text>`,
    );
    lx += lw;
  }
  out.push("</svg>");
  return out.join("\n");
}

function niceStep(raw: number): number {
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

/** The chart as PNG bytes. */
export function renderChart(r: Results): Uint8Array {
  const resvg = new Resvg(chartSvg(r), {
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
    fitTo: { mode: "original" },
  });
  return resvg.render().asPng();
}
