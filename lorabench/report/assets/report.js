// lorabench report.html: sorts, filters and draws what lorabench/report/page.py computed.
// Every figure arrives formatted (t) and raw (v); nothing is recomputed here.
"use strict";
const D = JSON.parse(document.getElementById("lb-data").textContent);
const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
const DASHES = ["solid", "dash", "dot", "dashdot"];
const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const pointsById = new Map(D.points.map((p) => [p.id, p]));

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}
function options(select, values, all) {
  select.replaceChildren();
  if (all) select.append(el("option", { value: "", text: all }));
  for (const v of values) select.append(el("option", { value: v, text: v }));
}
const uniq = (xs) => [...new Set(xs)].sort((a, b) => String(a).localeCompare(String(b), undefined, { numeric: true }));
const metricName = (k) => (D.metrics[k] ? D.metrics[k].header : k);
// A header may break after an underscore (forgetting_pair_retrieval, tokens_to_target): a zero-width space.
const wrappable = (s) => s.replace(/_/g, "_\u200b");
const shortLabel = (p) => `${p.method}${p.rank === null ? "" : "-r" + p.rank} @${p.precision}`;

// ---------- header, configuration, summary words ----------
function header() {
  $("title").textContent = `lorabench report: ${D.suite}`;
  const runs = D.created ? `runs recorded ${D.created[0]} to ${D.created[1]}` : "no run dates";
  $("meta").textContent = `${D.n_runs} runs, ${D.points.length} grid points, ${D.tasks.length} tasks; ${runs}; page generated ${D.generated}.`;
  const cols = D.config.length ? Object.keys(D.config[0]) : [];
  const t = el("table", { id: "config-t" }, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { class: "l", text: c })))),
    el("tbody", {}, ...D.config.map((r) => el("tr", {}, ...cols.map((c) => el("td", { class: "l", text: r[c] }))))));
  $("config-table").append(t);
  for (const e of D.env) $("env").append(el("li", { text: e }));
  for (const n of D.notes) $("notes").append(el("li", { text: n }));
  for (const s of D.summary) {
    const box = el("div", { class: "task-summary" }, el("h3", { text: s.task }));
    box.append(el("ul", {}, ...s.lines.map((l) => el("li", { text: l }))));
    $("summary-text").append(box);
  }
  const legend = Object.entries(D.flags).map(([f, x]) => `${x.marker} = ${f}: ${x.meaning}`).join("; ");
  $("flag-legend").textContent = legend ? "Flags: " + legend + "." : "";
}

// ---------- leaderboards ----------
const sortState = {}; // task -> {key, dir}
function rowValue(p, key) {
  if (key === "point") return p.label;
  if (key === "n") return p.n;
  if (key === "alpha") return parseFloat(p.alpha);
  if (key === "flags") return p.markers.join(" ");
  if (key === "pareto") return p.pareto ? 1 : 0;
  const v = p.values[key];
  return v ? v.v : null;
}
function boardColumns(task) {
  return [{ key: "point", header: "point", l: true }, ...D.columns[task],
    { key: "alpha", header: "α" }, { key: "n", header: "n" }, { key: "flags", header: "flags", l: true },
    { key: "pareto", header: "◆" }];
}
function renderBoards() {
  const f = {
    task: $("f-task").value, model: $("f-model").value, method: $("f-method").value,
    precision: $("f-precision").value, flag: $("f-flag").value, text: $("f-text").value.toLowerCase(),
  };
  const boards = $("boards");
  boards.replaceChildren();
  for (const task of D.tasks) {
    if (f.task && f.task !== task) continue;
    const cols = boardColumns(task);
    const primary = D.columns[task].length ? D.columns[task][0].key : null;
    let pts = D.points.filter((p) => p.task === task);
    const total = pts.length;
    pts = pts.filter((p) => (!f.model || p.model === f.model) && (!f.method || p.method === f.method) &&
      (!f.precision || p.precision === f.precision) && (!f.flag || p.flags.includes(f.flag)) &&
      (!f.text || p.label.toLowerCase().includes(f.text)));
    const st = sortState[task];
    if (st) {
      pts.sort((a, b) => {
        const x = rowValue(a, st.key), y = rowValue(b, st.key);
        if (x === null || Number.isNaN(x)) return 1;
        if (y === null || Number.isNaN(y)) return -1;
        const c = typeof x === "string" ? x.localeCompare(y, undefined, { numeric: true }) : x - y;
        return st.dir === "ascending" ? c : -c;
      });
    }
    const ths = cols.map((c) => {
      const src = c.key === "peak_mem_train_mb" ? uniq(pts.map((p) => p.mem_source).filter((x) => x)).join(", ") : "";
      const tip = c.description ? `${c.description} (${c.direction})` : "";
      const th = el("th", { class: "sortable" + (c.l ? " l" : ""), "data-key": c.key, title: tip, text: wrappable(src ? `${c.header} (${src})` : c.header) });
      if (st && st.key === c.key) th.setAttribute("aria-sort", st.dir);
      th.addEventListener("click", () => {
        const cur = sortState[task];
        // First click: best first in the metric's direction (text and counts: ascending).
        const first = D.metrics[c.key] ? (D.metrics[c.key].higher ? "descending" : "ascending") : "ascending";
        const dir = cur && cur.key === c.key ? (cur.dir === "ascending" ? "descending" : "ascending") : first;
        sortState[task] = { key: c.key, dir };
        renderBoards();
      });
      return th;
    });
    const rows = pts.map((p) => {
      const tds = cols.map((c) => {
        if (c.key === "point") return el("td", { class: "l", text: p.label });
        if (c.key === "alpha") return el("td", { text: p.alpha });
        if (c.key === "n") return el("td", { text: p.n === p.seeds ? String(p.n) : `${p.n}/${p.seeds}`, title: p.status });
        if (c.key === "flags") return el("td", { class: "l" }, ...p.markers.map((m, i) => el("span", { class: "flag " + m, title: p.flags[i], text: m })));
        if (c.key === "pareto") return el("td", { class: "pareto", text: p.pareto ? "◆" : "" });
        const v = p.values[c.key];
        // The primary metric and tokens/s show their seed band; other columns the mean (band on hover).
        if (!v) return el("td", { text: "-" });
        const full = c.key === primary || c.key === "tokens_per_s";
        // The band goes on its own line under the mean: the table keeps to the page's width.
        const band = full && v.t.startsWith(v.m) ? v.t.slice(v.m.length).trim() : "";
        return el("td", { class: c.key === primary ? "primary" : null, title: v.t }, v.m,
          ...(band ? [el("span", { class: "band", text: band })] : []));
      });
      const cls = p.status !== "success" ? "failed" : p.flags.includes("did_not_learn") ? "dnl" : null;
      const tr = el("tr", { class: cls, "data-point": p.id, tabindex: "0" }, ...tds);
      tr.addEventListener("click", () => openDrill(p.id));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openDrill(p.id); });
      return tr;
    });
    const dir = primary ? ` (default order: ${primary}, ${D.metrics[primary].direction})` : "";
    boards.append(el("div", { class: "board", "data-task": task },
      el("h3", { text: `${task}${dir}: ${pts.length} of ${total} points` }),
      el("div", { class: "wrap" }, el("table", { class: "leaderboard" }, el("thead", {}, el("tr", {}, ...ths)), el("tbody", {}, ...rows)))));
  }
}
function setupFilters() {
  options($("f-task"), D.tasks, "all tasks");
  options($("f-model"), uniq(D.points.map((p) => p.model)), "all models");
  options($("f-method"), uniq(D.points.map((p) => p.method)), "all methods");
  options($("f-precision"), uniq(D.points.map((p) => p.precision)), "all precisions");
  options($("f-flag"), Object.keys(D.flags), "any or no flag");
  for (const id of ["f-task", "f-model", "f-method", "f-precision", "f-flag"]) $(id).addEventListener("change", renderBoards);
  $("f-text").addEventListener("input", renderBoards);
}

// ---------- charts ----------
function methodColours() {
  const m = uniq(D.points.map((p) => p.method));
  return Object.fromEntries(m.map((x, i) => [x, PALETTE[i % PALETTE.length]]));
}
let COLOURS = {};
function errorBar(pts, key) {
  return {
    type: "data", symmetric: false, thickness: 1, width: 3,
    array: pts.map((p) => (p.values[key] ? p.values[key].hi - p.values[key].v : 0)),
    arrayminus: pts.map((p) => (p.values[key] ? p.values[key].v - p.values[key].lo : 0)),
  };
}
function layout(extra) {
  const narrow = window.innerWidth < 700;
  return Object.assign({
    margin: { l: 60, r: 10, t: 30, b: narrow ? 40 : 50 }, hovermode: "closest", font: { size: narrow ? 10 : 12 },
    legend: narrow ? { orientation: "h", y: -0.25 } : { orientation: "v" },
  }, extra);
}
function taskPrimary(task) {
  return D.columns[task].length && D.metrics[D.columns[task][0].key].kind === "quality" ? D.columns[task][0].key : null;
}
function summaryChart() {
  const task = $("summary-task").value;
  const q = taskPrimary(task);
  const pts = D.points.filter((p) => p.task === task && q && p.values[q]);
  const traces = [{
    type: "bar", orientation: "h", y: pts.map((p) => p.label), x: pts.map((p) => p.values[q].v),
    error_x: errorBar(pts, q).array ? { type: "data", symmetric: false, array: errorBar(pts, q).array, arrayminus: errorBar(pts, q).arrayminus } : undefined,
    marker: { color: pts.map((p) => (p.pareto ? "#b0306a" : p.flags.includes("did_not_learn") ? "#e0b000" : "#6b8fb8")) },
    text: pts.map((p) => p.values[q].t), textposition: "inside", insidetextanchor: "start", hovertemplate: "%{y}: %{text}<extra></extra>",
  }];
  const h = Math.max(260, 26 * pts.length + 90);
  Plotly.react("summary-chart", traces, layout({
    height: h, margin: { l: Math.min(260, window.innerWidth * 0.45), r: 10, t: 20, b: 40 },
    xaxis: { title: { text: q ? `${metricName(q)} (${D.metrics[q].direction})` : "" } },
    yaxis: { autorange: "reversed", automargin: true }, showlegend: false,
  }), CONFIG);
  $("summary-how").textContent = q ? `${task}: ${q} per grid point, best first; magenta bars are the Pareto set (${q} × peak memory), amber did not learn. Whiskers: the band described under Run configuration.` : "";
}
function paretoAxes() {
  const task = $("p-task").value;
  const qs = Object.keys(D.pareto[task] || {});
  const keepY = $("p-y").value, keepX = $("p-x").value;
  options($("p-y"), qs);
  $("p-y").replaceChildren(...qs.map((q) => el("option", { value: q, text: metricName(q) })));
  if (qs.includes(keepY)) $("p-y").value = keepY;
  const xs = D.pareto_costs.filter((c) => D.points.some((p) => p.task === task && p.values[c]));
  $("p-x").replaceChildren(...xs.map((c) => el("option", { value: c, text: metricName(c) })));
  if (xs.includes(keepX)) $("p-x").value = keepX;
}
function paretoChart() {
  const task = $("p-task").value, q = $("p-y").value, c = $("p-x").value;
  const front = new Set(((D.pareto[task] || {})[q] || {})[c] || []);
  const pts = D.points.filter((p) => p.task === task && p.values[q] && p.values[c]);
  const traces = [];
  for (const method of uniq(pts.map((p) => p.method))) {
    const mp = pts.filter((p) => p.method === method);
    traces.push({
      type: "scatter", mode: "markers", name: method, x: mp.map((p) => p.values[c].v), y: mp.map((p) => p.values[q].v),
      error_x: errorBar(mp, c), error_y: errorBar(mp, q),
      marker: {
        size: 11, color: COLOURS[method], opacity: 0.9,
        symbol: mp.map((p) => (p.flags.includes("did_not_learn") ? "x" : p.precision === "fp32" ? "circle" : p.precision === "nf4" ? "diamond" : "square")),
        line: { width: mp.map((p) => (front.has(p.id) ? 3 : 0)), color: "#b0306a" },
      },
      customdata: mp.map((p) => p.id),
      text: mp.map((p) => `${p.label}<br>${q}: ${p.values[q].t}<br>${c}: ${p.values[c].t}${front.has(p.id) ? "<br>Pareto" : ""}${p.flags.length ? "<br>flags: " + p.flags.join(", ") : ""}`),
      hovertemplate: "%{text}<extra></extra>",
    });
  }
  const f = pts.filter((p) => front.has(p.id)).sort((a, b) => a.values[c].v - b.values[c].v);
  if (f.length > 1) traces.push({ type: "scatter", mode: "lines", name: "Pareto front", x: f.map((p) => p.values[c].v), y: f.map((p) => p.values[q].v), line: { color: "#b0306a", dash: "dot", width: 1.5 }, hoverinfo: "skip" });
  const logX = c === "adapter_bytes" || c === "trainable_pct";
  Plotly.react("pareto-chart", traces, layout({
    height: window.innerWidth < 700 ? 420 : 480,
    xaxis: { title: { text: `${metricName(c)} (${D.metrics[c].direction})` }, type: logX ? "log" : "linear", exponentformat: "none" },
    yaxis: { title: { text: `${metricName(q)} (${D.metrics[q].direction})` }, exponentformat: "none" },
  }), CONFIG);
  $("pareto-chart").dataset.axes = `${q}|${c}`;
  const mem = c === "peak_mem_train_mb" && pts.some((p) => p.mem_source === "rss") ? " Memory here is host RSS: it cannot show quantisation's saving; compare trainable % or adapter bytes too." : "";
  $("pareto-how").textContent = `${pts.length} points; ${front.size} on the Pareto front (magenta ring, dotted line): no other point is better outside the noise on one axis without being worse outside it on the other. Marker: circle fp32, square int8/other, diamond nf4, x did not learn. Whiskers: the seed band.${mem}`;
  const plot = $("pareto-chart");
  if (!plot.dataset.bound) {
    plot.dataset.bound = "1";
    plot.on("plotly_click", (ev) => { const id = ev.points[0].customdata; if (id !== undefined) openDrill(id); });
  }
}
function ema(xs, a) {
  if (!a) return xs;
  const out = [];
  let s = null;
  for (const x of xs) { s = s === null ? x : a * s + (1 - a) * x; out.push(s); }
  return out;
}
function bandTraces(series, name, colour, dash, a, key) {
  const c = series;
  return [
    { type: "scatter", mode: "lines", x: c.step, y: ema(c.hi, a), line: { width: 0 }, showlegend: false, hoverinfo: "skip", legendgroup: key },
    { type: "scatter", mode: "lines", x: c.step, y: ema(c.lo, a), line: { width: 0 }, fill: "tonexty", fillcolor: colour + "33", showlegend: false, hoverinfo: "skip", legendgroup: key },
    { type: "scatter", mode: "lines", x: c.step, y: ema(c.mean, a), name, line: { color: colour, dash, width: 2 }, legendgroup: key },
  ];
}
function curvesChart() {
  const task = $("c-task").value, a = parseFloat($("c-smooth").value);
  $("c-smooth-v").textContent = a.toFixed(2);
  const pts = D.points.filter((p) => p.task === task && p.loss);
  const traces = [], evals = [];
  pts.forEach((p, i) => {
    const colour = PALETTE[i % PALETTE.length], dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
    const name = `${shortLabel(p)} (n=${p.n})` + (p.flags.includes("did_not_learn") ? " DNL" : "");
    traces.push(...bandTraces(p.loss, name, colour, dash, a, String(p.id)));
    if (p.eval) evals.push(...bandTraces(p.eval, name, colour, dash, a, String(p.id)));
  });
  // Records without curves (a committed baseline keeps none): say so instead of drawing empty axes.
  const none = traces.length ? [] : [{ text: "no run of this task recorded a training-loss curve", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { size: 14 } }];
  Plotly.react("curves-chart", traces, layout({
    height: window.innerWidth < 700 ? 460 : 440, xaxis: { title: { text: "optimizer step" } }, yaxis: { title: { text: "train loss" } },
    annotations: none,
  }), CONFIG);
  const q = taskPrimary(task);
  $("eval-chart").hidden = !evals.length;
  const split = [...new Set(pts.filter((p) => p.eval).map((p) => p.eval_split || "test"))].join("/") || "test";
  if (evals.length) Plotly.react("eval-chart", evals, layout({ height: 380, xaxis: { title: { text: "optimizer step" } }, yaxis: { title: { text: `${split} ${q}` } } }), CONFIG);
  ttqChart(task, pts, q);
  $("curves-how").textContent = `One line per grid point: the mean over its seeds; the shaded band is the 95% t interval with 3+ seeds, the min–max range with 2. Smoothing is an exponential moving average (0: none). Click a legend entry to hide it. Compare where curves end, not where they start; a flat curve did not learn.`;
}

// Time to quality: the eval curve against what training spent (tokens, seconds, joules), with the task's target.
function ttqChart(task, pts, q) {
  const axis = $("c-cost").value, labels = { tokens: "training tokens (warm-up included)", seconds: "training seconds (eval excluded)", joules: "device energy (J)" };
  const traces = [];
  pts.forEach((p, i) => {
    const c = p.quality_cost;
    if (!c || !c[axis]) return;
    const colour = PALETTE[i % PALETTE.length], dash = DASHES[Math.floor(i / PALETTE.length) % DASHES.length];
    traces.push({ type: "scatter", mode: "lines+markers", x: c[axis], y: c.value, name: shortLabel(p), line: { color: colour, dash, width: 2 }, marker: { size: 4 } });
  });
  const t = (D.targets || {})[task];
  const shapes = t && t.metric === q ? [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: t.target, y1: t.target, line: { dash: "dot", color: "#888", width: 1 } }] : [];
  $("ttq").hidden = !traces.length;
  if (!traces.length) return;
  Plotly.react("ttq-chart", traces, layout({ height: 380, shapes, xaxis: { title: { text: labels[axis] } }, yaxis: { title: { text: `eval ${q}` } } }), CONFIG);
  $("ttq-how").textContent = t ? `Dotted line: the target, ${q} ${t.target.toPrecision(4)} (${t.rule}). A method's time to target is where its line first crosses it (the leaderboard's "to target" columns). Energy is shown only where the device has a counter (NVML, RAPL).` : "";
}

// ---------- drill-down ----------
function kv(obj) { return el("pre", { text: JSON.stringify(obj, null, 2) }); }
function openDrill(id) {
  const p = pointsById.get(Number(id));
  if (!p) return;
  $("drill-title").textContent = `${p.label} on ${p.task}`;
  const body = $("drill-body");
  body.replaceChildren();
  body.append(el("p", { text: `status: ${p.status}; seeds: ${p.n}/${p.seeds} succeeded; alpha: ${p.alpha}; memory source: ${p.mem_source || "-"}` }));
  if (p.flags.length) body.append(el("ul", {}, ...p.flags.map((f) => el("li", { text: `${f}: ${(D.flags[f] || {}).meaning || ""}` }))));
  const vals = Object.entries(p.values).map(([k, v]) => el("tr", {}, el("td", { class: "l", text: metricName(k) }), el("td", { text: v.t }), el("td", { class: "l", text: v.band })));
  body.append(el("div", { class: "wrap" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", { class: "l", text: "figure" }), el("th", { text: "value" }), el("th", { class: "l", text: "band" }))), el("tbody", {}, ...vals))));
  if (p.sweep) {
    const sw = p.sweep;
    body.append(el("h4", { text: `learning-rate sweep: chosen on validation ${sw.metric} (${sw.direction}), test ${sw.test_metric || "-"} reported` }));
    const head = el("tr", {}, ...["lr", "seeds", `validation ${sw.metric}`, `test ${sw.test_metric || "-"}`, ""].map((t) => el("th", { class: "l", text: t })));
    const rows = sw.rows.map((r) => el("tr", {}, ...[r.lr, r.seeds, r.val, r.test, r.note].map((t) => el("td", { class: "l", text: t }))));
    body.append(el("div", { class: "wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows))));
    sw.notes.forEach((n) => body.append(el("p", { text: n })));
  }
  const chart = el("div", { id: "drill-chart", class: "chart" });
  body.append(chart);
  const traces = [];
  p.runs.forEach((rid, i) => {
    const r = D.runs[rid];
    if (!r) return;
    const det = el("details", { open: i === 0 ? "" : null, "data-run": rid }, el("summary", { text: `seed ${r.seed}: ${r.status} (${rid})` }));
    if (r.error) det.append(el("p", { class: "err", text: r.error }));
    if (r.flags.length) det.append(el("p", { text: "flags: " + r.flags.join(", ") }));
    if (r.predictions.length) {
      const cols = ["input", "reference", "prediction"].filter((k) => r.predictions.some((x) => k in x));
      det.append(el("h4", { text: "predictions (first " + r.predictions.length + ")" }));
      det.append(el("div", { class: "wrap" }, el("table", { class: "pred" }, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { class: "l", text: c })))),
        el("tbody", {}, ...r.predictions.map((x) => el("tr", {}, ...cols.map((c) => el("td", { text: x[c] === undefined ? "" : x[c] }))))))));
    }
    det.append(el("h4", { text: "metrics (test split)" }), kv(r.metrics));
    if (r.val_metrics) det.append(el("h4", { text: "val_metrics (validation split)" }), kv(r.val_metrics));
    det.append(el("h4", { text: "resolved configuration (spec)" }), kv(r.spec));
    det.append(el("h4", { text: "resolved by the run" }), kv(r.resolved));
    det.append(el("h4", { text: "environment" }), kv(r.env));
    det.append(el("h4", { text: "profile" }), kv(r.profile));
    body.append(det);
    if (r.train_loss.length) traces.push({ type: "scatter", mode: "lines", name: `seed ${r.seed}`, x: r.train_loss.map((c) => c[0]), y: r.train_loss.map((c) => c[1]) });
  });
  $("drill").showModal();
  if (traces.length) Plotly.newPlot(chart, traces, layout({ height: 300, xaxis: { title: { text: "optimizer step" } }, yaxis: { title: { text: "train loss" } } }), CONFIG);
  else chart.remove();
}

// ---------- compare, more ----------
function renderCompare() {
  if (!D.compare) return;
  $("compare").hidden = false;
  $("toc-compare").hidden = false;
  $("compare-base").textContent = `Baseline: ${D.baseline}`;
  const onlyNoise = $("cmp-noise").checked, all = $("cmp-all").checked, task = $("cmp-task").value;
  const rows = D.compare.filter((r) => (!onlyNoise || r.outside_noise) && (all || r.change) && (!task || r.task === task));
  const cols = ["point", "metric", "baseline", "current", "change", "mark"];
  const body = rows.map((r) => el("tr", {}, el("td", { class: "l", text: r.point }), el("td", { class: "l", text: r.metric }),
    el("td", { text: r.baseline }), el("td", { text: r.current }), el("td", { text: r.change }), el("td", { text: r.mark })));
  $("compare-table").replaceChildren(el("table", { id: "compare-t" }, el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { class: c === "point" || c === "metric" ? "l" : null, text: c })))), el("tbody", {}, ...body)));
}
function renderMore() {
  const m = $("more-body");
  if (D.others.length) m.append(el("h3", { text: "Records in this directory not in this suite's plan" }), el("ul", {}, ...D.others.map((o) => el("li", { text: `${o.label} (${o.run_id}, ${o.status})` }))));
  if (D.plots.length) m.append(el("h3", { text: "Static plots (PNG, beside this page)" }), el("ul", {}, ...D.plots.map((p) => el("li", {}, el("a", { href: p.file, text: p.title })))));
}

// ---------- start: tables at once, charts once the inlined library is unpacked ----------
function charts() {
  COLOURS = methodColours();
  for (const id of ["summary-task", "p-task", "c-task"]) options($(id), D.tasks);
  $("summary-task").addEventListener("change", summaryChart);
  $("p-task").addEventListener("change", () => { paretoAxes(); paretoChart(); });
  $("p-x").addEventListener("change", paretoChart);
  $("p-y").addEventListener("change", paretoChart);
  $("c-task").addEventListener("change", curvesChart);
  $("c-smooth").addEventListener("input", curvesChart);
  $("c-cost").addEventListener("change", curvesChart);
  for (const id of ["summary-task", "p-task", "c-task"]) if (D.main_task) $(id).value = D.main_task;
  if (D.tasks.length) { summaryChart(); paretoAxes(); paretoChart(); curvesChart(); }
}
async function loadPlotly() {
  const b64 = document.getElementById("plotly-gz").textContent.trim();
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const s = document.createElement("script");
  s.textContent = await new Response(stream).text();
  document.head.append(s);
}
header();
setupFilters();
renderBoards();
options($("cmp-task"), D.tasks, "all tasks");
$("cmp-noise").addEventListener("change", renderCompare);
$("cmp-all").addEventListener("change", renderCompare);
$("cmp-task").addEventListener("change", renderCompare);
renderCompare();
renderMore();
$("drill-close").addEventListener("click", () => $("drill").close());
$("drill").addEventListener("click", (e) => { if (e.target === $("drill")) $("drill").close(); });
loadPlotly().then(charts).then(() => { document.body.dataset.ready = "1"; }).catch((e) => {
  document.body.dataset.ready = "error";
  console.error("charts unavailable: " + e);
});
