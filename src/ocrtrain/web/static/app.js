// ocrtrain web UI: plain JS, no build step. Everything shown comes from the /api endpoints;
// the page holds no state the server would need after a restart.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") n.className = v;
    else if (k === "text") n.textContent = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) n.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) n.append(kid);
  return n;
};

const MAX_LOG_LINES = 5000;
const state = { view: null, runId: null, timers: [], es: null, clockSkew: 0 };

// ---------------------------------------------------------------- helpers
function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)ocrtrain_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", headers: { Accept: "application/json" } };
  if (opts.body !== undefined) {
    init.body = JSON.stringify(opts.body);
    init.headers["Content-Type"] = "application/json";
  }
  if (init.method !== "GET") init.headers["X-Ocrtrain-CSRF"] = csrfToken();
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (_) { /* empty body */ }
  if (!resp.ok) {
    let msg = data && data.detail !== undefined ? data.detail : resp.statusText;
    if (Array.isArray(msg)) msg = msg.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    const err = new Error(String(msg));
    err.status = resp.status;
    throw err;
  }
  return data;
}

function toast(msg, bad = false) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (bad ? " bad" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add("hidden"), 5000);
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`;
}
const fmtPct = (p) => (p === null || p === undefined ? "–" : `${p.toFixed(0)}%`);
function fmtDur(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
function fmtTime(ts, withDate = false) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  const t = d.toLocaleTimeString([], { hour12: false });
  const day = `${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  return withDate ? `${day} ${t}` : t;
}
// Same rules as Python's shlex.quote: the preview is copyable into a POSIX shell.
function shQuote(s) {
  if (s === "") return "''";
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return "'" + s.replace(/'/g, "'\"'\"'") + "'";
}
// Hydra override syntax for a form value (quoted when the grammar needs it).
function hydraValue(v) {
  if (/^[A-Za-z0-9_.\-/:@%+]*$/.test(v) && v !== "") return v;
  return "'" + v.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'";
}
function every(ms, fn) {
  fn();
  const id = setInterval(() => { if (!document.hidden) fn(); }, ms);
  state.timers.push(id);
}

// ---------------------------------------------------------------- routing
function route() {
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
  if (state.es) { state.es.close(); state.es = null; }
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/run\/([\w.-]+)/);
  const cmp = hash.match(/^#\/compare\/([\w.,-]+)/);
  for (const v of document.querySelectorAll(".view")) v.classList.add("hidden");
  $("#nav-runs").classList.toggle("active", hash === "#/" || !!m || !!cmp);
  $("#nav-processes").classList.toggle("active", hash === "#/processes");
  every(3000, refreshGauges);
  if (cmp) {
    state.view = "compare";
    $("#view-compare").classList.remove("hidden");
    openCompare(cmp[1].split(",").filter(Boolean));
  } else if (m) {
    state.view = "run";
    $("#view-run").classList.remove("hidden");
    openRun(m[1]);
  } else if (hash === "#/processes") {
    state.view = "processes";
    $("#view-processes").classList.remove("hidden");
    every(2000, refreshProcesses);
  } else {
    state.view = "home";
    $("#view-home").classList.remove("hidden");
    every(2000, refreshRuns);
    if (!builder.loaded) builder.load([]);
  }
}
window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- gauges
let lastSnapshot = null;
function setGauge(node, frac, text) {
  const f = Math.max(0, Math.min(1, frac || 0));
  $("i", node).style.width = `${(f * 100).toFixed(1)}%`;
  $(".gv", node).textContent = text;
  node.classList.toggle("hot", f > 0.9);
}
async function refreshGauges() {
  try {
    const snap = await api("/api/processes");
    lastSnapshot = snap;
    const h = snap.host || {};
    setGauge($("#g-cpu"), (h.cpu_percent || 0) / 100, fmtPct(h.cpu_percent));
    const memFrac = h.mem_total ? h.mem_used / h.mem_total : 0;
    setGauge($("#g-mem"), memFrac, `${fmtBytes(h.mem_used)} / ${fmtBytes(h.mem_total)}`);
    const gpus = $("#g-gpus");
    gpus.replaceChildren(...(h.gpus || []).map((g, i) => {
      // Bar: GPU memory in use; text: utilisation and memory (monitor's gpu.to_dict keys).
      const node = el("div", { class: "gauge", title: g.name || "" },
        el("span", { class: "gl", text: `GPU${g.index ?? i}` }),
        el("span", { class: "gb" }, el("i")), el("span", { class: "gv" }));
      const used = g.mem_used ?? null;
      const total = g.mem_total ?? null;
      setGauge(node, total ? used / total : (g.util || 0) / 100,
        `${fmtPct(g.util ?? null)} · ${fmtBytes(used)} / ${fmtBytes(total)}`);
      return node;
    }));
    const badge = $("#orphan-badge");
    badge.classList.toggle("hidden", !snap.orphans);
    badge.textContent = `${snap.orphans} orphan${snap.orphans === 1 ? "" : "s"}`;
    badge.onclick = () => { location.hash = "#/processes"; };
  } catch (_) { /* the next tick retries */ }
}

// ---------------------------------------------------------------- runs list
const runsTable = { data: [], sort: "started", dir: -1, ticked: new Set() };
const SORT_KEYS = {
  state: (r) => r.state, name: (r) => r.name, id: (r) => r.id,
  started: (r) => r.started_at || r.created_at, duration: (r) => r.duration_s,
  cer: (r) => r.scores?.best_cer, acc: (r) => r.scores?.line_acc_at_best,
  step: (r) => r.scores?.step, loss: (r) => r.scores?.last_loss,
};
async function refreshRuns() {
  let data;
  try { data = await api("/api/runs?limit=200"); } catch (e) { return; }
  runsTable.data = data.runs;
  renderRuns();
}
function renderRuns() {
  const all = runsTable.data;
  const words = $("#runs-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const text = (r) => [r.name, r.id, r.state, ...(r.overrides || [r.command])].join(" ").toLowerCase();
  const shown = all.filter((r) => words.every((w) => text(r).includes(w)));
  const key = SORT_KEYS[runsTable.sort];
  shown.sort((a, b) => {
    const va = key(a);
    const vb = key(b);
    if (va === vb) return 0;
    if (va === null || va === undefined) return 1; // runs without a value sort last either way
    if (vb === null || vb === undefined) return -1;
    return (va < vb ? -1 : 1) * runsTable.dir;
  });
  const bestCer = Math.min(...all.map((r) => r.scores?.best_cer ?? Infinity));
  const num = (v, digits) => (v === null || v === undefined ? "–" : typeof v === "number" && digits ? v.toFixed(digits) : String(v));
  const rows = shown.map((r) => {
    const ov = r.overrides ? r.overrides.join(" ") : r.command;
    const sc = r.scores || {};
    const tick = el("input", { type: "checkbox", class: "tick", "aria-label": `tick run ${r.id}`, onclick: (ev) => {
      ev.stopPropagation();
      if (ev.target.checked) runsTable.ticked.add(r.id); else runsTable.ticked.delete(r.id);
      updateCompareButton();
    } });
    tick.checked = runsTable.ticked.has(r.id);
    return el("tr", { "data-id": r.id, onclick: () => { location.hash = `#/run/${r.id}`; } },
      el("td", { class: "tick" }, tick),
      el("td", {}, el("span", { class: `badge ${r.state}`, text: r.state })),
      el("td", { text: r.name }),
      el("td", { class: "mono", text: r.id }),
      el("td", { text: fmtTime(r.started_at || r.created_at, true) }),
      el("td", { text: fmtDur(r.duration_s) }),
      el("td", { class: `num cer${sc.best_cer === bestCer ? " best" : ""}`, title: sc.best_step !== null && sc.best_step !== undefined ? `at step ${sc.best_step}` : "", text: num(sc.best_cer, 4) }),
      el("td", { class: "num acc", text: num(sc.line_acc_at_best, 3) }),
      el("td", { class: "num step", text: num(sc.step) }),
      el("td", { class: "num loss", text: num(sc.last_loss, 4) }),
      el("td", { title: ov }, el("div", { class: "ov", text: ov })));
  });
  $("#runs-table tbody").replaceChildren(...rows);
  for (const th of document.querySelectorAll("#runs-table th[data-sort]")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === runsTable.sort && runsTable.dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.sort === runsTable.sort && runsTable.dir < 0);
  }
  $("#runs-empty").classList.toggle("hidden", all.length > 0);
  const active = all.filter((r) => r.active).length;
  $("#runs-count").textContent = `${shown.length} of ${all.length} shown, ${active} active`;
  updateCompareButton();
}
function updateCompareButton() {
  const n = runsTable.ticked.size;
  $("#btn-compare").disabled = n < 2;
  $("#btn-compare").textContent = n >= 2 ? `Compare ${n} runs` : "Compare curves";
}
for (const th of document.querySelectorAll("#runs-table th[data-sort]")) {
  th.addEventListener("click", () => {
    const k = th.dataset.sort;
    // Scores sort best first (lowest CER and loss, highest accuracy and step); dates newest first.
    if (runsTable.sort === k) runsTable.dir = -runsTable.dir;
    else runsTable.dir = ["cer", "loss", "name", "id", "state"].includes(k) ? 1 : -1;
    runsTable.sort = k;
    renderRuns();
  });
}
$("#runs-filter").addEventListener("input", renderRuns);
$("#btn-compare").addEventListener("click", () => { location.hash = `#/compare/${[...runsTable.ticked].join(",")}`; });

// ---------------------------------------------------------------- compare runs
const compareView = { ids: [], runs: [], board: null };
const COMPARE_KEYS = ["val/cer", "val/line_acc", "train/loss", "lr"];
async function openCompare(ids) {
  compareView.ids = ids;
  if (!compareView.board) compareView.board = new ChartBoard($("#compare-charts"));
  compareView.board.clear();
  every(3000, refreshCompare);
}
async function refreshCompare() {
  const runs = [];
  for (const id of compareView.ids) {
    try {
      const [info, m] = await Promise.all([api(`/api/runs/${id}`), api(`/api/runs/${id}/metrics`)]);
      runs.push({ label: `${info.run.name} ${info.run.id}`, records: m.points });
    } catch (_) { /* an unknown run is left out */ }
  }
  compareView.runs = runs;
  $("#compare-status").textContent = `${runs.length} runs`;
  drawCompare();
}
function drawCompare() {
  if (!compareView.board) return;
  compareView.board.showRuns(compareView.runs, COMPARE_KEYS, { xKey: $("#compare-x").value, logY: $("#compare-log").checked });
}
$("#compare-x").addEventListener("change", drawCompare);
$("#compare-log").addEventListener("change", drawCompare);

// ---------------------------------------------------------------- command builder
const builder = {
  loaded: false,
  baseGroups: null, // group -> default choice with no overrides
  schema: null,
  edited: new Map(), // field key -> raw value the user typed
  validateTimer: null,
  seq: 0,

  async load(choices) {
    let schema;
    try {
      const q = choices.map((c) => `choice=${encodeURIComponent(c)}`).join("&");
      schema = await api(`/api/config/schema${q ? "?" + q : ""}`);
    } catch (e) {
      $("#validation").className = "validation bad";
      $("#validation").textContent = `config unavailable: ${e.message}`;
      $("#launch").disabled = true;
      return;
    }
    this.schema = schema;
    if (!this.baseGroups) {
      this.baseGroups = Object.fromEntries(schema.groups.map((g) => [g.name, g.default]));
    }
    $("#config-dir").textContent = schema.config_dir;
    this.render();
    this.loaded = true;
    this.update();
  },

  render() {
    const s = this.schema;
    const presets = $("#presets");
    const groups = $("#groups");
    presets.replaceChildren();
    groups.replaceChildren();
    for (const g of s.groups) {
      const sel = el("select", { id: `group-${g.name}`, "data-group": g.name, onchange: () => this.groupChanged() });
      if (g.preset || g.default === null) sel.append(el("option", { value: "", text: "(none)" }));
      for (const o of g.options) sel.append(el("option", { value: o, text: o }));
      sel.value = g.default || "";
      const label = g.preset ? `${g.name} preset` : g.name;
      const box = el("label", { class: `sel${g.preset ? " preset" : ""}` }, label, sel);
      if (!g.preset && g.options.length < 2) sel.disabled = true;
      (g.preset ? presets : groups).append(box);
    }
    const sections = $("#sections");
    sections.replaceChildren();
    for (const sec of s.sections) {
      const grid = el("div", { class: "fields" });
      for (const f of sec.fields) grid.append(...this.fieldRow(f));
      const open = sec.name === "general" || sec.name === "trainer";
      sections.append(el("details", { class: "section", open },
        el("summary", {}, sec.name, el("span", { class: "muted", text: `${sec.fields.length} options` })), grid));
    }
  },

  fieldRow(f) {
    const def = f.default === null ? "null" : String(f.default);
    let input;
    if (f.type === "bool") {
      input = el("input", { type: "checkbox" });
      input.checked = this.edited.has(f.key) ? this.edited.get(f.key) === "true" : !!f.default;
    } else if (f.choices) {
      input = el("select", {}, ...f.choices.map((c) => el("option", { value: c, text: c })));
      input.value = this.edited.has(f.key) ? this.edited.get(f.key) : def;
    } else {
      const numeric = f.type === "int" || f.type === "float";
      input = el("input", { type: numeric ? "number" : "text", step: f.type === "float" ? "any" : "1", spellcheck: "false" });
      input.value = this.edited.has(f.key) ? this.edited.get(f.key) : def;
    }
    input.dataset.key = f.key;
    input.dataset.type = f.type;
    input.dataset.default = def;
    input.name = f.key;
    input.addEventListener("input", () => this.fieldChanged(input));
    input.addEventListener("change", () => this.fieldChanged(input));
    const k = el("label", { class: "k", title: `${f.key} (${f.type}), default ${def}`, text: f.key });
    // An interpolation shows what it stands for now; the config's comments are the help.
    const cell = el("div", { class: "v" }, input,
      f.resolved !== undefined ? el("span", { class: "resolved muted", title: `${def} resolves to ${f.resolved}`, text: `= ${f.resolved}` }) : null);
    const row = [k, cell];
    if (f.help) row.push(el("div", { class: "help muted", title: f.help, text: f.help }));
    this.mark(input, k);
    return row;
  },

  valueOf(input) { return input.type === "checkbox" ? String(input.checked) : input.value.trim(); },

  mark(input, label) {
    const changed = this.valueOf(input) !== input.dataset.default;
    input.classList.toggle("changed", changed);
    (label || input.closest(".v").previousSibling).classList.toggle("changed-k", changed);
  },

  // Fill the form with a run's overrides: group choices, known fields, the rest as extra lines.
  async clone(overrides) {
    const groups = new Set(this.schema ? this.schema.groups.map((g) => g.name) : []);
    const fields = new Set(this.schema ? this.schema.sections.flatMap((s) => s.fields.map((f) => f.key)) : []);
    const choices = [];
    const extra = [];
    this.edited.clear();
    for (const o of overrides) {
      const [k, ...rest] = o.split("=");
      const v = rest.join("=");
      if (groups.has(k)) choices.push(o);
      else if (fields.has(k) && !o.startsWith("+") && !o.startsWith("~")) this.edited.set(k, v.replace(/^'(.*)'$/, "$1"));
      else extra.push(o);
    }
    $("#extra").value = extra.join("\n");
    await this.load(choices);
    for (const sel of document.querySelectorAll("[data-group]")) {
      const c = choices.find((x) => x.startsWith(`${sel.dataset.group}=`));
      if (c) sel.value = c.split("=")[1] === "null" ? "" : c.split("=")[1];
    }
    this.update();
  },

  fieldChanged(input) {
    const v = this.valueOf(input);
    if (v === input.dataset.default) this.edited.delete(input.dataset.key);
    else this.edited.set(input.dataset.key, v);
    this.mark(input);
    this.update();
  },

  choices() {
    const out = [];
    for (const sel of document.querySelectorAll("[data-group]")) {
      const g = sel.dataset.group;
      const base = this.baseGroups[g] || "";
      if (sel.value !== base) out.push(`${g}=${sel.value === "" ? "null" : sel.value}`);
    }
    return out;
  },

  groupChanged() { this.load(this.choices()); },

  overrides() {
    const out = this.choices();
    for (const input of document.querySelectorAll("#sections [data-key]")) {
      const v = this.valueOf(input);
      if (v === input.dataset.default) continue;
      const t = input.dataset.type;
      let text = v;
      if (t === "str" || t === "null") text = v === "null" || v === "" ? "null" : hydraValue(v);
      if ((t === "int" || t === "float") && v === "") text = "null";
      out.push(`${input.dataset.key}=${text}`);
    }
    for (const line of $("#extra").value.split("\n")) if (line.trim()) out.push(line.trim());
    return out;
  },

  update() {
    const ov = this.overrides();
    const argv = [...this.schema.argv_prefix, ...ov];
    $("#cmd").textContent = argv.map(shQuote).join(" ");
    const v = $("#validation");
    v.className = "validation pending";
    v.textContent = "checking overrides…";
    clearTimeout(this.validateTimer);
    this.validateTimer = setTimeout(() => this.validate(ov), 250);
  },

  async validate(ov) {
    const seq = ++this.seq;
    const v = $("#validation");
    try {
      const res = await api("/api/config/validate", { method: "POST", body: { overrides: ov } });
      if (seq !== this.seq) return;
      $("#cmd").textContent = res.command;
      v.className = "validation ok";
      v.textContent = `✓ config composes (${ov.length} override${ov.length === 1 ? "" : "s"})`;
      $("#launch").disabled = false;
    } catch (e) {
      if (seq !== this.seq) return;
      v.className = "validation bad";
      v.textContent = `✗ ${e.message}`;
      $("#launch").disabled = true;
    }
  },

  async launch(ev) {
    ev.preventDefault();
    const btn = $("#launch");
    btn.disabled = true;
    $("#launch-msg").textContent = "starting…";
    const name = $("#run-name").value.trim();
    try {
      const res = await api("/api/runs", { method: "POST", body: { overrides: this.overrides(), name: name || null } });
      $("#launch-msg").textContent = "";
      toast(`run ${res.id} started`);
      location.hash = `#/run/${res.id}`;
    } catch (e) {
      $("#launch-msg").textContent = "";
      const v = $("#validation");
      v.className = "validation bad";
      v.textContent = `✗ ${e.message}`;
      toast(`launch refused: ${e.message}`, true);
    } finally {
      btn.disabled = false;
    }
  },
};
$("#builder").addEventListener("submit", (ev) => builder.launch(ev));
$("#extra").addEventListener("input", () => builder.update());
$("#copy-cmd").addEventListener("click", async () => {
  const text = $("#cmd").textContent;
  try { await navigator.clipboard.writeText(text); toast("command copied"); } catch (_) {
    const r = document.createRange(); r.selectNodeContents($("#cmd"));
    const s = getSelection(); s.removeAllRanges(); s.addRange(r);
    toast("select-all done: press Ctrl+C");
  }
});

// ---------------------------------------------------------------- one run
const runView = { id: null, run: null, stop: null, lines: 0, metrics: [], metricsOffset: 0, lastSeq: 0 };

function openRun(id) {
  Object.assign(runView, { id, run: null, stop: null, lines: 0, metrics: [], metricsOffset: 0, lastSeq: 0 });
  if (runBoard) runBoard.clear();
  if (resourceBoard) resourceBoard.clear();
  if (rankBoard) rankBoard.clear();
  $("#log").replaceChildren();
  $("#log-hits").classList.add("hidden");
  $("#timeline").replaceChildren();
  $("#run-title").textContent = id;
  every(1000, refreshRun);
  every(2000, refreshMetrics);
  every(2000, refreshRunProcs);
  every(3000, refreshCheckpoints);
  every(5000, refreshResources);
  gallery.steps = [];
  gallery.follow = true;
  gallery.shown = null;
  $("#gallery tbody").replaceChildren();
  $("#gallery").removeAttribute("data-step");
  every(3000, refreshSamples);
  $("#read-result").textContent = "";
  $("#ckpts tbody").replaceChildren();
  $("#ckpts").removeAttribute("data-run");
  $("#ckpt-tools").classList.add("hidden");
  startLogStream(id);
}

async function refreshRun() {
  const id = runView.id;
  let d;
  try { d = await api(`/api/runs/${id}`); } catch (e) {
    if (e.status === 404 && id === runView.id) $("#run-title").textContent = `${id}: not found`;
    return;
  }
  if (id !== runView.id) return; // another run was opened while this answer was on its way
  state.clockSkew = d.now - Date.now() / 1000;
  const r = d.run;
  runView.run = r;
  runView.stop = d.stop;
  $("#run-title").textContent = r.name;
  const badge = $("#run-state");
  badge.textContent = r.state;
  badge.className = `badge ${r.state}`;
  const meta = [`id ${r.id}`, `started ${fmtTime(r.started_at || r.created_at, true)}`, fmtDur(r.duration_s)];
  if (r.exit_code !== null) meta.push(`exit ${r.exit_code}`);
  if (r.reason && !/^exit code/.test(r.reason)) meta.push(r.reason);
  $("#run-meta").textContent = meta.join(" · ");
  $("#run-cmd").textContent = r.command;
  $("#btn-stop").disabled = !r.active || !!(d.stop && r.state === "stopping");
  $("#btn-kill").disabled = !r.active;
  $("#btn-clone").disabled = !r.overrides;
  updateCountdown();
  const fresh = d.events.filter((e) => e.seq > runView.lastSeq);
  for (const e of fresh) {
    runView.lastSeq = e.seq;
    const detail = fmtDetail(e.detail || {});
    $("#timeline").append(el("li", { class: `k-${e.kind}` }, el("span", { class: "t", text: fmtTime(e.ts) }),
      el("b", { text: e.kind.replace(/_/g, " ") }), e.pid ? ` pid ${e.pid}` : "", e.signal ? ` sig ${e.signal}` : "",
      detail ? el("div", { class: "d", text: detail }) : null));
  }
}

// An event's details in human units: sizes in bytes as KiB/MiB, seconds as durations, times
// as clock times, nested objects as "key value" pairs.
function fmtDetailValue(k, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") {
    if (/(rss|bytes|mem)/.test(k)) return fmtBytes(v);
    if (/(_s|grace|timeout|elapsed|duration)$/.test(k)) return v < 60 ? `${+v.toFixed(2)} s` : fmtDur(v);
    if (/(_at|^ts|deadline)$/.test(k) && v > 1e9) return fmtTime(v);
    return String(+v.toFixed(3));
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.map((x) => fmtDetailValue(k, x)).join(", ");
  if (typeof v === "object") return Object.entries(v).map(([kk, vv]) => `${kk} ${fmtDetailValue(kk, vv)}`).join(", ");
  return String(v);
}
function fmtDetail(detail) {
  return Object.entries(detail)
    .filter(([, v]) => v !== null && v !== "" && !(typeof v === "object" && !Object.keys(v).length))
    .map(([k, v]) => `${k.replace(/_/g, " ")}: ${fmtDetailValue(k, v)}`).join(" · ");
}

function updateCountdown() {
  const cd = $("#stop-countdown");
  const r = runView.run;
  const s = runView.stop;
  if (!r || !s || !r.active) { cd.classList.add("hidden"); return; }
  const now = Date.now() / 1000 + state.clockSkew;
  const left = s.deadline - now;
  cd.classList.remove("hidden");
  if (s.force) cd.textContent = "killing…";
  else if (left > 0) cd.textContent = `stopping: SIGKILL in ${Math.ceil(left)} s`;
  else cd.textContent = "stopping: grace over, killing…";
}
state.countdownTimer = setInterval(() => { if (state.view === "run") updateCountdown(); }, 250);

async function stopRun(force) {
  const r = runView.run;
  if (!r) return;
  if (force && !confirm(`Kill run ${r.id} now (SIGKILL, no checkpoint)?`)) return;
  try {
    const res = await api(`/api/runs/${r.id}/stop`, { method: "POST", body: { force } });
    runView.stop = res.stop;
    toast(force ? `run ${r.id}: killed` : `run ${r.id}: stopping (grace ${res.stop ? res.stop.grace : r.grace} s)`);
    refreshRun();
  } catch (e) { toast(`stop failed: ${e.message}`, true); }
}
$("#btn-stop").addEventListener("click", () => stopRun(false));
$("#btn-kill").addEventListener("click", () => stopRun(true));

// -- log stream
function startLogStream(id) {
  const log = $("#log");
  const es = new EventSource(`/api/runs/${id}/logs?tail=262144`);
  state.es = es;
  $("#log-status").textContent = "connecting…";
  es.addEventListener("lines", (ev) => {
    const data = JSON.parse(ev.data);
    appendLines(data.lines);
    $("#log-status").textContent = `${runView.lines} lines · live`;
  });
  es.addEventListener("end", (ev) => {
    const data = JSON.parse(ev.data);
    es.close();
    $("#log-status").textContent = `${runView.lines} lines · ended (${data.state})`;
  });
  es.onerror = () => { if (es.readyState !== EventSource.CLOSED) $("#log-status").textContent = "reconnecting…"; };
  log.onscroll = () => {
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
    if (!atBottom && $("#follow").checked && !log.dataset.auto) $("#follow").checked = false;
  };
}

function appendLines(lines) {
  const log = $("#log");
  const q = $("#log-search").value.trim().toLowerCase();
  const frag = document.createDocumentFragment();
  for (const text of lines) {
    const d = document.createElement("div");
    d.textContent = text || "\u200b";
    if (/error|traceback|exception/i.test(text)) d.className = "err";
    if (q && text.toLowerCase().includes(q)) d.classList.add("m");
    frag.append(d);
  }
  log.append(frag);
  runView.lines += lines.length;
  let extra = log.childElementCount - MAX_LOG_LINES;
  while (extra-- > 0) log.firstElementChild.remove();
  if ($("#follow").checked) {
    log.dataset.auto = "1";
    log.scrollTop = log.scrollHeight;
    requestAnimationFrame(() => { delete log.dataset.auto; });
  }
}

function applySearch() {
  const log = $("#log");
  const q = $("#log-search").value.trim().toLowerCase();
  let n = 0;
  for (const d of log.children) {
    const hit = !!q && d.textContent.toLowerCase().includes(q);
    d.classList.toggle("m", hit);
    if (hit) n++;
  }
  log.classList.toggle("filtering", !!q);
  $("#log-status").textContent = q ? `${n} matching of ${log.childElementCount} kept lines (Enter: whole log)` : `${runView.lines} lines`;
}
$("#log-search").addEventListener("input", applySearch);
$("#log-search").addEventListener("keydown", async (ev) => {
  if (ev.key !== "Enter") return;
  const q = $("#log-search").value.trim();
  const box = $("#log-hits");
  if (!q) { box.classList.add("hidden"); return; }
  try {
    const res = await api(`/api/runs/${runView.id}/logs/search?q=${encodeURIComponent(q)}`);
    box.replaceChildren(el("div", { class: "muted", text: `${res.hits.length} hit(s) in the whole log` }),
      ...res.hits.map((h) => el("div", { text: `${h.line}: ${h.text}` })));
    box.classList.remove("hidden");
  } catch (e) { toast(e.message, true); }
});
$("#follow").addEventListener("change", () => { if ($("#follow").checked) $("#log").scrollTop = $("#log").scrollHeight; });

// -- metrics
async function refreshMetrics() {
  const id = runView.id;
  let d;
  try { d = await api(`/api/runs/${id}/metrics?offset=${runView.metricsOffset}`); } catch (_) { return; }
  if (id !== runView.id) return;
  if (d.points.length) {
    runView.metrics.push(...d.points);
    if (runView.metrics.length > 20000) runView.metrics.splice(0, runView.metrics.length - 20000);
  }
  runView.metricsOffset = d.offset;
  $("#metrics-status").textContent = d.path ? `${runView.metrics.length} records` : "no metrics yet";
  drawCharts();
}

let runBoard = null;
let resourceBoard = null;
let rankBoard = null;
const RANK_CHARTS = {
  cpu_percent: "CPU per rank, with its workers (% of one core)",
  rss_mib: "RSS per rank, with its workers (MiB)",
  gpu_mib: "GPU memory per rank (MiB)",
  net_sent_mib: "Network sent per rank (MiB, TCP)",
  net_recv_mib: "Network received per rank (MiB, TCP)",
  step: "Step each rank is at",
};
function drawCharts() {
  if (!runBoard) runBoard = new ChartBoard($("#charts"));
  runBoard.showRun(runView.metrics, { xKey: $("#metrics-x").value, logY: $("#metrics-log").checked });
}
// The supervisor's samples of the run's CPU, RSS and GPU memory, against time.
async function refreshResources() {
  const id = runView.id;
  let d;
  try { d = await api(`/api/runs/${id}/resources`); } catch (_) { return; }
  if (id !== runView.id) return;
  if (!resourceBoard) resourceBoard = new ChartBoard($("#resource-charts"));
  resourceBoard.showRun(d.samples, { xKey: "time", logY: false });
  const ranks = d.ranks || [];
  $("#rank-resources").classList.toggle("hidden", !ranks.length);
  if (!ranks.length) { if (rankBoard) rankBoard.clear(); return; }
  if (!rankBoard) rankBoard = new ChartBoard($("#rank-charts"));
  const series = ranks.map((r) => ({ label: `rank ${r.global_rank} (node ${r.node_rank}, local ${r.local_rank})`, records: r.samples }));
  const keys = Object.keys(RANK_CHARTS).filter((k) => ranks.some((r) => r.samples.some((s) => typeof s[k] === "number")));
  rankBoard.showRuns(series, keys, { xKey: "time", logY: false, titles: RANK_CHARTS });
}
$("#metrics-x").addEventListener("change", drawCharts);
$("#metrics-log").addEventListener("change", drawCharts);

// -- checkpoints: download, read an image, evaluate (as a supervised run)
const fmtScore = (v) => (v === null || v === undefined ? "–" : v.toFixed(4));
async function refreshCheckpoints() {
  const id = runView.id;
  let d;
  try { d = await api(`/api/runs/${id}/checkpoints`); } catch (_) { return; }
  if (id !== runView.id) return; // another run was opened meanwhile
  const base = `/api/runs/${encodeURIComponent(runView.id)}/checkpoints/`;
  $("#ckpts tbody").replaceChildren(...d.checkpoints.map((c) => el("tr", { "data-name": c.name },
    el("td", { class: "mono", title: c.path, text: c.name }),
    el("td", { text: c.step ?? "–" }),
    el("td", { text: fmtScore(c.metrics["val/cer"]) }),
    el("td", { text: fmtBytes(c.size) }),
    el("td", {}, el("a", { href: base + encodeURIComponent(c.name), download: "", class: "download", text: "Download" })))));
  $("#ckpts").setAttribute("data-run", runView.id);
  $("#ckpt-status").textContent = d.checkpoints.length ? d.folder : "none saved yet";
  $("#ckpt-tools").classList.toggle("hidden", !d.checkpoints.length);
  const pick = $("#ckpt-pick");
  const names = d.checkpoints.map((c) => c.name);
  if ([...pick.options].map((o) => o.value).join() !== names.join()) {
    const keep = pick.value;
    pick.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(keep)) pick.value = keep;
  }
}
$("#read-file").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  ev.target.value = "";
  if (!file) return;
  const out = $("#read-result");
  out.textContent = "reading…";
  const url = `/api/runs/${encodeURIComponent(runView.id)}/checkpoints/${encodeURIComponent($("#ckpt-pick").value)}/read`;
  try {
    const resp = await fetch(url, { method: "POST", body: file,
      headers: { "Content-Type": file.type || "image/png", "X-Ocrtrain-CSRF": csrfToken() } });
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.detail || resp.statusText);
    out.textContent = data.text === "" ? "(read nothing)" : data.text;
    out.title = `${file.name}, read with ${data.checkpoint}`;
  } catch (e) { out.textContent = ""; toast(`could not read ${file.name}: ${e.message}`, true); }
});
$("#eval-kind").addEventListener("change", () => {
  $("#eval-arg").value = $("#eval-kind").value === "synth" ? "200" : "";
  $("#eval-arg").placeholder = $("#eval-kind").value === "synth" ? "lines" : "/path/to/folder with labels.tsv";
});
$("#btn-clone").addEventListener("click", async () => {
  const r = runView.run;
  if (!r || !r.overrides) return;
  location.hash = "#/";
  await builder.load([]);
  await builder.clone(r.overrides);
  $("#run-name").value = r.name === "train" ? "" : r.name;
  toast(`the form holds run ${r.id}'s overrides: change what you like and launch`);
});
$("#btn-eval").addEventListener("click", async () => {
  const kind = $("#eval-kind").value;
  const arg = $("#eval-arg").value.trim();
  const body = kind === "synth" ? { synth: parseInt(arg, 10) } : { data: arg };
  try {
    const res = await api(`/api/runs/${encodeURIComponent(runView.id)}/checkpoints/${encodeURIComponent($("#ckpt-pick").value)}/evaluate`,
      { method: "POST", body });
    toast(`evaluation started as run ${res.id}`);
    location.hash = `#/run/${res.id}`;
  } catch (e) { toast(`evaluation refused: ${e.message}`, true); }
});

// -- predictions gallery: the fixed validation lines, read at each validation
const gallery = { steps: [], follow: true, shown: null };
async function refreshSamples() {
  const id = runView.id;
  let d;
  try { d = await api(`/api/runs/${id}/samples`); } catch (_) { return; }
  if (id !== runView.id) return;
  gallery.steps = d.steps;
  const slider = $("#gallery-step");
  slider.max = String(Math.max(d.steps.length - 1, 0));
  slider.disabled = d.steps.length < 2;
  $("#gallery-status").textContent = d.steps.length ? `${d.steps.length} validation(s)` : "no validation yet";
  if (gallery.follow && d.step !== null && d.step !== gallery.shown) {
    slider.value = String(d.steps.length - 1);
    showSamples(d);
  }
}
function showSamples(d) {
  gallery.shown = d.step;
  $("#gallery-step-label").textContent = d.step === null ? "" : `${d.step} (epoch ${(d.epoch ?? 0) + 1})`;
  $("#gallery").setAttribute("data-step", String(d.step));
  $("#gallery tbody").replaceChildren(...d.lines.map((l) => el("tr", { class: l.reading === l.truth ? "right" : "wrong" },
    el("td", { class: "img" }, el("img", { src: l.image, alt: l.truth })),
    el("td", { class: "truth", text: l.truth }),
    el("td", { class: "reading", text: l.reading === "" ? "(nothing)" : l.reading }),
    el("td", { class: "num cer", text: l.cer.toFixed(3) }))));
}
$("#gallery-step").addEventListener("input", async () => {
  const i = parseInt($("#gallery-step").value, 10);
  gallery.follow = i === gallery.steps.length - 1;
  const step = gallery.steps[i];
  if (step === undefined) return;
  try { showSamples(await api(`/api/runs/${runView.id}/samples?step=${step}`)); } catch (e) { toast(e.message, true); }
});

// -- process tree
const PROC_COLUMNS = ["Process", "PID", "CPU", "RSS", "GPU mem", "Rank", "Step", "Net ↑ / ↓", "Command"];

function rankText(p) {
  if (p.global_rank === null || p.global_rank === undefined) return "–";
  const local = p.local_rank === null || p.local_rank === undefined ? "?" : p.local_rank;
  const node = p.node_rank === null || p.node_rank === undefined ? "?" : p.node_rank;
  return `${p.global_rank} / ${local} @ ${node}`;
}

function procRows(procs) {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const kids = new Map();
  const roots = [];
  for (const p of procs) {
    if (byPid.has(p.ppid) && p.ppid !== p.pid) {
      if (!kids.has(p.ppid)) kids.set(p.ppid, []);
      kids.get(p.ppid).push(p);
    } else roots.push(p);
  }
  const rows = [];
  const walk = (p, depth, last) => {
    const prefix = depth ? "  ".repeat(depth - 1) + (last ? "└─ " : "├─ ") : "";
    const orphan = (p.flags || []).includes("orphan");
    rows.push(el("tr", { class: orphan ? "orphan" : "" },
      el("td", {}, el("span", { class: "tree", text: prefix }), el("span", { class: "role", text: p.role || "?" }),
        orphan ? el("span", { class: "badge orphan", text: "orphan" }) : null),
      el("td", { class: "mono", text: String(p.pid) }),
      el("td", { text: fmtPct(p.cpu_percent) }),
      el("td", { text: fmtBytes(p.rss_bytes) }),
      el("td", { text: p.gpu_mem_bytes === null || p.gpu_mem_bytes === undefined ? "–" : fmtBytes(p.gpu_mem_bytes) }),
      el("td", { class: "mono rank", title: "global rank / local rank @ node", text: rankText(p) }),
      el("td", { class: "num", text: p.step === null || p.step === undefined ? "–" : String(p.step) }),
      el("td", { class: "net", title: "TCP bytes sent / received by this process's sockets",
        text: p.net_sent_bytes === null || p.net_sent_bytes === undefined ? "–" : `${fmtBytes(p.net_sent_bytes)} / ${fmtBytes(p.net_recv_bytes)}` }),
      el("td", { class: "cmd", title: p.cmdline || "", text: p.cmdline || "" })));
    const ks = (kids.get(p.pid) || []).sort((a, b) => a.pid - b.pid);
    ks.forEach((k, i) => walk(k, depth + 1, i === ks.length - 1));
  };
  roots.sort((a, b) => a.pid - b.pid).forEach((p) => walk(p, 0, true));
  return rows;
}

async function refreshRunProcs() {
  const id = runView.id;
  let d;
  try { d = await api(`/api/runs/${id}/processes`); } catch (_) { return; }
  if (id !== runView.id) return;
  const tbody = $("#run-procs tbody");
  const procs = d.run ? d.run.processes || [] : [];
  tbody.replaceChildren(...procRows(procs));
  const flags = d.run && d.run.flags && d.run.flags.length ? ` · ${d.run.flags.join(", ")}` : "";
  const ended = runView.run && !runView.run.active;
  $("#run-procs-status").textContent = !procs.length ? "no live process"
    : ended ? `${procs.length} still alive after the run ended${flags}` : `${procs.length} live${flags}`;
}

// ---------------------------------------------------------------- processes view
async function refreshProcesses() {
  let snap;
  try { snap = await api("/api/processes"); } catch (e) { $("#ps-status").textContent = e.message; return; }
  const box = $("#ps-runs");
  const blocks = (snap.runs || []).map((r) => {
    const flags = (r.flags || []).map((f) => el("span", { class: `badge ${f}`, text: f }));
    const table = el("table", { class: "procs" },
      el("thead", {}, el("tr", {}, ...PROC_COLUMNS.map((t) => el("th", { text: t })))),
      el("tbody", {}, ...procRows(r.processes || [])));
    const broken = (r.flags || []).length || (r.processes || []).some((p) => (p.flags || []).includes("orphan"));
    return el("div", { class: "ps-run", "data-run": r.id },
      el("h3", {}, el("a", { href: `#/run/${r.id}`, text: r.name || r.id }), el("span", { class: "mono muted", text: r.id }),
        el("span", { class: `badge ${r.state || ""}`, text: r.state || "not in this journal" }), ...flags,
        el("span", { class: "muted", text: `supervisor ${r.supervisor_pid ?? "–"} · ${(r.processes || []).length} processes` }),
        broken ? el("button", { class: "warn small run-cleanup", onclick: () => cleanupDryRun(r.id) }, "Clean up this run…") : null),
      table);
  });
  box.replaceChildren(...blocks);
  $("#ps-empty").classList.toggle("hidden", blocks.length > 0);
  $("#ps-status").textContent = `${(snap.runs || []).length} run(s) · ${snap.orphans || 0} orphan(s) · ${fmtTime(snap.taken_at)}`;
}

// Cleanup always shows the dry run first; `cleanupScope` is a run id, or null for all runs.
let cleanupScope = null;
async function cleanupDryRun(runId) {
  cleanupScope = runId;
  $("#cleanup-msg").textContent = "";
  $("#cleanup-box h3").textContent = runId ? `Cleanup of run ${runId} (dry run)` : "Cleanup of all orphans (dry run)";
  try {
    const res = await api("/api/cleanup", { method: "POST", body: { dry_run: true, run_id: runId } });
    showCleanupPlan(res.plan);
    $("#cleanup-box").classList.remove("hidden");
  } catch (e) { toast(`cleanup unavailable: ${e.message}`, true); }
}
function procLine(p) {
  const who = [p.role || "process", p.run_id ? `of run ${p.run_id}` : null].filter(Boolean).join(" ");
  return el("li", {}, el("b", { text: `pid ${p.pid}` }), ` ${who}`, p.reason ? el("span", { class: "muted", text: ` — ${p.reason}` }) : null,
    p.cmdline ? el("div", { class: "mono muted", text: p.cmdline }) : null);
}
function cleanupSection(title, items) {
  return items.length ? [el("h4", { text: title }), el("ul", {}, ...items)] : [];
}
function showCleanupPlan(plan) {
  const box = $("#cleanup-plan");
  const items = plan.items || [];
  const nothing = !items.length && !(plan.stale_runs || []).length && !(plan.live_runs || []).length;
  box.replaceChildren(
    el("p", { class: "muted", text: `Planned at ${fmtTime(plan.created_at)}. Processes get SIGTERM, then SIGKILL after the grace.` }),
    ...(nothing ? [el("p", { text: "Nothing to clean up: no orphaned process and no stale run." })] : []),
    ...cleanupSection(`End ${items.length} orphaned process${items.length === 1 ? "" : "es"}`, items.map(procLine)),
    ...cleanupSection("Stop these live runs through their supervisors", (plan.live_runs || []).map((r) => el("li", { class: "mono", text: r }))),
    ...cleanupSection("Close these runs as lost (their supervisor is gone)", (plan.stale_runs || []).map((r) => el("li", { class: "mono", text: r }))));
  $("#btn-cleanup-go").disabled = nothing;
}
function showCleanupReport(rep) {
  const ids = (xs) => xs.map((r) => el("li", { class: "mono", text: typeof r === "string" ? r : JSON.stringify(r) }));
  $("#cleanup-plan").replaceChildren(
    el("p", { text: rep.ok ? "Every planned process has ended." : "Some processes could not be ended (below)." }),
    ...cleanupSection("Ended", (rep.ended || []).map(procLine)),
    ...cleanupSection("Could not be ended", (rep.survived || []).map(procLine)),
    ...cleanupSection("Left alone", (rep.skipped || []).map(procLine)),
    ...cleanupSection("Runs closed as lost", ids(rep.marked_lost || [])),
    ...cleanupSection("Runs stopped", ids(rep.stopped_runs || [])));
}
$("#btn-cleanup").addEventListener("click", () => cleanupDryRun(null));
$("#btn-cleanup-cancel").addEventListener("click", () => $("#cleanup-box").classList.add("hidden"));
$("#btn-cleanup-go").addEventListener("click", async () => {
  $("#btn-cleanup-go").disabled = true;
  try {
    const res = await api("/api/cleanup", { method: "POST", body: { dry_run: false, run_id: cleanupScope } });
    $("#cleanup-msg").textContent = res.ok ? "done" : "done, with problems (see the report)";
    $("#cleanup-box h3").textContent = "Cleanup report";
    showCleanupReport(res.report);
    refreshProcesses();
  } catch (e) { toast(`cleanup failed: ${e.message}`, true); }
});

