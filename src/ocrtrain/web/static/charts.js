// Metric charts drawn with uPlot (vendored in static/uplot): hover values in the legend,
// drag to zoom (double-click resets), click a legend entry to hide or show its series,
// log-scale y, and the best (lowest) CER marked. A series keeps its colour everywhere.
"use strict";

const SERIES_COLORS = {
  "train/loss": "#2563eb", "val/loss": "#dc2626", "test/loss": "#9333ea",
  "val/cer": "#dc2626", "test/cer": "#9333ea", "val/line_acc": "#16a34a", "test/line_acc": "#0d9488",
  "lr": "#ea580c", "lines_per_s": "#0891b2",
  "cpu_percent": "#2563eb", "rss_mib": "#16a34a", "gpu_mib": "#9333ea",
};
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#a16207", "#db2777", "#4b5563", "#65a30d"];
function colorOf(name, index) {
  if (index === undefined && SERIES_COLORS[name]) return SERIES_COLORS[name];
  if (index !== undefined) return PALETTE[index % PALETTE.length];
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

// Chart groups: every numeric key of the records lands in exactly one.
const CHART_GROUPS = [
  { id: "loss", title: "Loss", match: (k) => /(^|\/)loss$/.test(k) },
  { id: "cer", title: "Character error rate and line accuracy", match: (k) => /(^|\/)(cer|line_acc)$/.test(k) },
  { id: "lr", title: "Learning rate", match: (k) => k === "lr" },
  { id: "speed", title: "Training speed (lines/s)", match: (k) => k === "lines_per_s" },
  { id: "cpu", title: "CPU of the run's processes (% of one core)", match: (k) => k === "cpu_percent" },
  { id: "mem", title: "Memory of the run's processes (MiB): RSS and GPU", match: (k) => /_mib$/.test(k) },
];
const NOT_SERIES = new Set(["step", "epoch", "time", "split", "processes"]);
function groupOf(key) {
  return CHART_GROUPS.find((g) => g.match(key)) || { id: "other", title: "Other", match: () => true };
}

// x of a record: step, epoch, or seconds since the first record with a time.
function xOf(rec, xKey, t0) {
  if (xKey === "time") return typeof rec.time === "number" && t0 !== null ? rec.time - t0 : null;
  const v = rec[xKey];
  return typeof v === "number" ? v : null;
}

// Per series key: sorted [xs, ys] with one value per x (the last one recorded).
function seriesTables(records, xKey, keys) {
  const t0 = records.find((r) => typeof r.time === "number")?.time ?? null;
  const byKey = new Map(keys.map((k) => [k, new Map()]));
  for (const rec of records) {
    const x = xOf(rec, xKey, t0);
    if (x === null) continue;
    for (const k of keys) {
      const v = rec[k];
      if (typeof v === "number" && isFinite(v)) byKey.get(k).set(x, v);
    }
  }
  const out = new Map();
  for (const [k, m] of byKey) {
    const xs = [...m.keys()].sort((a, b) => a - b);
    out.set(k, [xs, xs.map((x) => m.get(x))]);
  }
  return out;
}

function numericKeys(records) {
  const keys = new Set();
  for (const r of records) for (const [k, v] of Object.entries(r)) if (!NOT_SERIES.has(k) && typeof v === "number") keys.add(k);
  return [...keys].sort();
}

const fmtVal = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(3) : v.toPrecision(3));
const X_LABELS = { step: "step", epoch: "epoch", time: "seconds since start" };

// Marks the lowest point of each CER series (the model best.ckpt keeps).
function bestMarkerPlugin() {
  return {
    hooks: {
      draw: (u) => {
        const ctx = u.ctx;
        u.series.forEach((s, i) => {
          if (!i || !s.show || !/cer/.test(s.label)) return;
          const ys = u.data[i];
          let best = -1;
          for (let j = 0; j < ys.length; j++) if (ys[j] !== null && ys[j] !== undefined && (best < 0 || ys[j] < ys[best])) best = j;
          if (best < 0) return;
          const cx = u.valToPos(u.data[0][best], "x", true);
          const cy = u.valToPos(ys[best], s.scale || "y", true);
          ctx.save();
          ctx.strokeStyle = s._stroke || "#111";
          ctx.fillStyle = "#fff";
          ctx.lineWidth = 2 * uPlot.pxRatio;
          ctx.beginPath();
          ctx.arc(cx, cy, 5 * uPlot.pxRatio, 0, 2 * Math.PI);
          ctx.fill();
          ctx.stroke();
          ctx.restore();
        });
      },
    },
  };
}

// A chart in `box` for the given tables {label: [xs, ys]}; recreated when its shape changes.
class MetricChart {
  constructor(box, title) {
    this.box = box;
    this.title = title;
    this.plot = null;
    this.shape = "";
  }
  update(tables, opts) {
    const labels = [...tables.keys()];
    const shape = [labels.join("|"), opts.xKey, opts.logY, this.box.clientWidth].join("#");
    let data = labels.length ? uPlot.join([...tables.values()]) : [[]];
    if (opts.logY) data = data.map((col, i) => (i ? col.map((v) => (v !== null && v > 0 ? v : null)) : col));
    if (this.plot && shape === this.shape) { this.plot.setData(data, false); this.plot.redraw(); return; }
    this.shape = shape;
    if (this.plot) this.plot.destroy();
    const series = [{ label: X_LABELS[opts.xKey] || opts.xKey, value: (u, v) => fmtVal(v) }];
    labels.forEach((label, i) => series.push({
      label,
      stroke: opts.colors ? opts.colors(label, i) : colorOf(label),
      width: 1.6,
      spanGaps: true,
      points: { size: 4 },
      value: (u, v) => fmtVal(v),
    }));
    this.plot = new uPlot({
      title: this.title,
      width: Math.max(this.box.clientWidth - 4, 240),
      height: 190,
      series,
      scales: { x: { time: false }, y: opts.logY ? { distr: 3 } : {} },
      axes: [{ label: X_LABELS[opts.xKey] || opts.xKey, size: 36 }, { size: 60 }],
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      plugins: [bestMarkerPlugin()],
    }, data, this.box);
  }
  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
    this.shape = "";
    this.box.replaceChildren();
  }
}

// All charts of one run (or of several runs overlaid) in a container, one per chart group.
class ChartBoard {
  constructor(container) {
    this.container = container;
    this.charts = new Map();
  }
  clear() {
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
    this.container.replaceChildren();
  }
  chart(group) {
    if (!this.charts.has(group.id)) {
      const box = el("div", { class: "chart-box", "data-chart": group.id });
      this.container.append(box);
      this.charts.set(group.id, new MetricChart(box, group.title));
    }
    return this.charts.get(group.id);
  }
  // One run: every recorded scalar, grouped.
  showRun(records, opts) {
    const keys = numericKeys(records);
    const groups = new Map();
    for (const k of keys) {
      const g = groupOf(k);
      if (!groups.has(g.id)) groups.set(g.id, { group: g, keys: [] });
      groups.get(g.id).keys.push(k);
    }
    for (const id of [...this.charts.keys()]) if (!groups.has(id)) { this.charts.get(id).destroy(); this.charts.get(id).box.remove(); this.charts.delete(id); }
    const rank = (g) => { const i = CHART_GROUPS.findIndex((c) => c.id === g.id); return i < 0 ? CHART_GROUPS.length : i; };
    const ordered = [...groups.values()].sort((a, b) => rank(a.group) - rank(b.group));
    for (const { group, keys: ks } of ordered) this.chart(group).update(seriesTables(records, opts.xKey, ks), opts);
    return keys.length;
  }
  // Several runs: one chart per key, a series per run, each run keeping its colour.
  showRuns(runs, keys, opts) {
    keys.forEach((key) => {
      const tables = new Map();
      runs.forEach((r) => tables.set(r.label, seriesTables(r.records, opts.xKey, [key]).get(key)));
      const colors = (label) => colorOf(label, runs.findIndex((r) => r.label === label));
      this.chart({ id: key, title: (opts.titles && opts.titles[key]) || key }).update(tables, { ...opts, colors });
    });
  }
}
