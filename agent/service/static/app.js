// Open-AutoGLM's web view: a study list, a live study page and a trial page, drawn from the service's JSON.
// Plain JS, SVG and canvas; nothing is fetched from anywhere but this server. It computes nothing the report
// does not: scores, the best trial, importance and curves all come from the API (agent.reporting.queries).
"use strict";

const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const FINISHED = new Set(["complete", "pruned", "failed"]);
const main = document.getElementById("main");
const liveMark = document.getElementById("live");
let leave = null; // stops the current page's timers and streams

// ------------------------------------------------------------------ helpers

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fmt(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) < 0.01 && v !== 0 ? v.toExponential(2) : v.toFixed(4);
  }
  if (Array.isArray(v)) return v.join("+");
  return String(v);
}

const score = (v) => (typeof v === "number" ? v.toFixed(4) : "—"); // a metric: always four places, as the report

function duration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.round(s);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${(s / 3600).toFixed(1)}h`;
}

const progressText = (e) => `step ${e.step ?? "?"}${e.loss !== undefined ? ` · loss ${fmt(e.loss)}` : ""}`;
const badge = (state) => `<span class="state ${esc(state)}">${esc(state)}</span>`;
const key = () => sessionStorage.getItem("autoglm-key") || "";

function askKey() {
  const form = document.getElementById("keyform");
  form.hidden = false;
  main.hidden = true;
  form.onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem("autoglm-key", document.getElementById("key").value.trim());
    form.hidden = true;
    main.hidden = false;
    route();
  };
}

async function api(path, options = {}) {
  const headers = {...(options.headers || {})};
  if (key()) headers.Authorization = `Bearer ${key()}`;
  const response = await fetch(path, {...options, headers});
  if (response.status === 401) {
    askKey();
    throw new Error("an API key is needed");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}
const getJSON = async (path) => (await api(path)).json();

// Server-sent events read with fetch, so that the key travels in a header and never in a URL.
function follow(path, onEvent) {
  const abort = new AbortController();
  let stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const response = await api(path, {signal: abort.signal});
        liveMark.className = "live on";
        liveMark.textContent = "live";
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, {stream: true});
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
            if (data) onEvent(JSON.parse(data));
          }
        }
        liveMark.className = "live";
        liveMark.textContent = "ended";
        return; // the stream ends after `done`
      } catch (e) {
        liveMark.className = "live";
        liveMark.textContent = stopped ? "" : "reconnecting…";
        if (stopped) return;
        await sleep(2000);
      }
    }
  })();
  return () => { stopped = true; abort.abort(); liveMark.textContent = ""; liveMark.className = "live"; };
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// ------------------------------------------------------------------ charts (SVG)

function scale(lo, hi, a, b, log = false) {
  if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
  if (hi === lo) { hi = lo + 1; lo = lo - 1; }
  return (v) => a + ((log ? Math.log10(v) : v) - lo) / (hi - lo) * (b - a);
}

function lineChart(series, {xlabel = "", ylabel = "", height = 220, hline = null} = {}) {
  const W = 560, H = height, L = 52, R = 12, T = 12, B = 34;
  const points = series.flatMap((s) => s.points).filter((p) => p[1] !== null && Number.isFinite(p[1]));
  if (!points.length) return `<p class="dim">nothing to draw yet</p>`;
  let ys = points.map((p) => p[1]);
  if (hline !== null) ys = ys.concat([hline.y]);
  const xs = points.map((p) => p[0]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const X = scale(x0, x1, L, W - R), Y = scale(y0, y1, H - B, T);
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img">`;
  svg += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>`;
  svg += `<text x="${L - 4}" y="${Y(y1) + 4}" text-anchor="end" font-size="10">${esc(fmt(y1))}</text>`;
  svg += `<text x="${L - 4}" y="${Y(y0) + 4}" text-anchor="end" font-size="10">${esc(fmt(y0))}</text>`;
  svg += `<text x="${L}" y="${H - B + 14}" font-size="10">${esc(fmt(x0))}</text><text x="${W - R}" y="${H - B + 14}" text-anchor="end" font-size="10">${esc(fmt(x1))}</text>`;
  svg += `<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle" font-size="11" fill="#555">${esc(xlabel)}</text>`;
  svg += `<text x="12" y="${(T + H - B) / 2}" font-size="11" fill="#555" transform="rotate(-90 12 ${(T + H - B) / 2})" text-anchor="middle">${esc(ylabel)}</text>`;
  if (hline !== null) {
    svg += `<line x1="${L}" x2="${W - R}" y1="${Y(hline.y)}" y2="${Y(hline.y)}" stroke="#D55E00" stroke-dasharray="5 4"/>`;
    svg += `<text x="${W - R}" y="${Y(hline.y) - 4}" text-anchor="end" font-size="10" fill="#D55E00">${esc(hline.label)}</text>`;
  }
  series.forEach((s, i) => {
    const colour = s.colour || PALETTE[i % PALETTE.length];
    const pts = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
    if (s.dots) {
      for (const [x, y] of pts) svg += `<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${colour}" opacity="0.7"/>`;
    } else if (pts.length) {
      const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
      svg += `<path d="${d}" fill="none" stroke="${colour}" stroke-width="${s.width || 1.6}"/>`;
    }
  });
  const named = series.filter((s) => s.name);
  named.forEach((s, i) => {
    svg += `<rect x="${L + 8}" y="${T + 4 + i * 14}" width="10" height="3" fill="${s.colour || PALETTE[series.indexOf(s) % PALETTE.length]}"/>`;
    svg += `<text x="${L + 22}" y="${T + 9 + i * 14}" font-size="10">${esc(s.name)}</text>`;
  });
  return svg + "</svg>";
}

function barChart(values, {height = null} = {}) {
  const entries = Object.entries(values).sort((a, b) => b[1] - a[1]);
  const W = 560, row = 20, L = 130, H = height || entries.length * row + 10;
  const max = Math.max(...entries.map((e) => e[1]), 1e-9);
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img">`;
  entries.forEach(([name, v], i) => {
    const w = (v / max) * (W - L - 60);
    svg += `<text x="${L - 6}" y="${i * row + 15}" text-anchor="end" font-size="11">${esc(name)}</text>`;
    svg += `<rect x="${L}" y="${i * row + 5}" width="${w.toFixed(1)}" height="13" fill="#0072B2"/>`;
    svg += `<text x="${L + w + 4}" y="${i * row + 15}" font-size="10">${v.toFixed(3)}</text>`;
  });
  return svg + "</svg>";
}

// Parallel coordinates on a canvas: one line per complete trial, coloured from worst (light) to best (dark).
function parallelCoordinates(canvas, rows, direction) {
  const done = rows.filter((r) => r.state === "complete" && r.objective !== null);
  const ctx = canvas.getContext("2d");
  const W = canvas.width = canvas.clientWidth * devicePixelRatio, H = canvas.height = 260 * devicePixelRatio;
  ctx.scale(devicePixelRatio, devicePixelRatio);
  const w = W / devicePixelRatio, h = H / devicePixelRatio;
  ctx.clearRect(0, 0, w, h);
  if (!done.length) { ctx.fillStyle = "#6b7280"; ctx.fillText("no complete trial yet", 10, 20); return; }
  const names = (done[0].tuned || []).filter((n) => done.some((r) => fmt(r.config[n]) !== fmt(done[0].config[n])));
  const axes = [...names.map((n) => ({name: n, get: (r) => r.config[n]})), {name: "objective", get: (r) => r.objective}];
  const T = 30, B = 18, L = 30, R = 30;
  const step = axes.length > 1 ? (w - L - R) / (axes.length - 1) : 0;
  const maps = axes.map((axis) => {
    const values = done.map(axis.get);
    if (values.every((v) => typeof v === "number")) {
      const lo = Math.min(...values), hi = Math.max(...values);
      const log = lo > 0 && hi / lo > 20;
      const f = scale(lo, hi, h - B, T, log);
      return {f, ticks: [[lo, f(lo)], [hi, f(hi)]]};
    }
    const levels = [...new Set(values.map(fmt))].sort();
    const f = (v) => levels.length === 1 ? (T + h - B) / 2 : T + levels.indexOf(fmt(v)) / (levels.length - 1) * (h - B - T);
    return {f, ticks: levels.map((l) => [l, f(l)])};
  });
  const objectives = done.map((r) => r.objective);
  const [lo, hi] = [Math.min(...objectives), Math.max(...objectives)];
  const sign = direction === "minimize" ? -1 : 1;
  const ordered = [...done].sort((a, b) => sign * (a.objective - b.objective)); // best drawn last, on top
  for (const r of ordered) {
    const t = hi === lo ? 1 : (sign > 0 ? (r.objective - lo) : (hi - r.objective)) / (hi - lo);
    ctx.strokeStyle = `rgba(${Math.round(200 - 180 * t)}, ${Math.round(210 - 110 * t)}, ${Math.round(230 - 52 * t)}, ${0.35 + 0.6 * t})`;
    ctx.lineWidth = 1 + t;
    ctx.beginPath();
    axes.forEach((axis, i) => {
      const y = maps[i].f(axis.get(r));
      if (i) ctx.lineTo(L + i * step, y); else ctx.moveTo(L, y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#1d2330";
  ctx.font = "11px system-ui";
  axes.forEach((axis, i) => {
    const x = L + i * step;
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, h - B); ctx.stroke();
    ctx.textAlign = i === 0 ? "left" : i === axes.length - 1 ? "right" : "center";
    ctx.fillText(axis.name, x, 12);
    ctx.font = "9px system-ui";
    for (const [label, y] of maps[i].ticks.slice(0, 8)) ctx.fillText(fmt(label), x, y - 2);
    ctx.font = "11px system-ui";
  });
}

// ------------------------------------------------------------------ the study list

function listPage() {
  document.getElementById("crumbs").textContent = "";
  main.innerHTML = `<h2>Studies</h2><div id="list"><p class="dim">Loading…</p></div>`;
  let alive = true;
  const draw = async () => {
    try {
      const rows = await getJSON("/v1/studies");
      if (!alive) return;
      if (!rows.length) {
        document.getElementById("list").innerHTML = `<p class="dim">No study yet: submit one with POST /v1/studies, the Python client, or <code>autoglm tune</code>.</p>`;
        return;
      }
      const body = rows.map((r) => {
        const spent = r.spent || {};
        const limit = (r.limits || {}).max_trials;
        return `<tr><td><a href="#/s/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td>${badge(r.state)}</td>
          <td>${esc(r.task || "—")}</td><td class="num">${esc(r.metric ? score(r.best) : "—")} <span class="dim">${esc(r.metric || "")}</span></td>
          <td class="num">${r.done ?? 0}${limit ? " / " + limit : ""}${r.failed ? ` <span class="error">(${r.failed} failed)</span>` : ""}</td>
          <td class="num">${duration(spent.seconds)}</td><td>${esc(r.created || (r.queued_at ? new Date(r.queued_at * 1000).toLocaleString() : "—"))}</td>
          <td class="error">${esc(r.error || "")}</td></tr>`;
      }).join("");
      document.getElementById("list").innerHTML = `<table><thead><tr><th>study</th><th>state</th><th>task</th>
        <th class="num">best</th><th class="num">trials</th><th class="num">time spent</th><th>started</th><th></th></tr></thead>
        <tbody>${body}</tbody></table>`;
    } catch (e) {
      document.getElementById("list").innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  };
  draw();
  const timer = setInterval(draw, 3000);
  return () => { alive = false; clearInterval(timer); };
}

// ------------------------------------------------------------------ a study, live

function studyPage(id) {
  const path = `/v1/studies/${encodeURIComponent(id)}`;
  document.getElementById("crumbs").innerHTML = `› ${esc(id)}`;
  main.innerHTML = `<div id="head"><h2>${esc(id)}</h2></div><div id="cards" class="cards"></div><div id="budget"></div>
    <div class="charts">
      <div class="chart"><h3>Best so far</h3><div id="c-best"></div></div>
      <div class="chart"><h3>Parallel coordinates <span class="dim">(complete trials; darker is better)</span></h3><canvas id="c-par" style="height:260px"></canvas></div>
      <div class="chart"><h3>Parameter importance</h3><div id="c-imp"></div></div>
      <div class="chart"><h3>Loss curves of the top trials</h3><div id="c-loss"></div></div>
    </div>
    <h3>Trials</h3><div id="trials"><p class="dim">Loading…</p></div>`;
  const state = {info: null, trials: new Map(), settled: -1, charts: null, progress: new Map(), alive: true, shown: 300};

  const refresh = async () => {
    const [info, page] = await Promise.all([getJSON(`${path}?leaderboard=false`), getJSON(`${path}/trials?after=${state.settled}`)]);
    if (!state.alive) return;
    state.info = info;
    for (const t of page.trials) state.trials.set(t.number, t);
    state.settled = page.settled;
    state.metric = page.metric;
    state.direction = page.direction;
    drawHead(); drawTrials();
  };
  const refreshCharts = async () => {
    if (!state.info || !state.info.detail) return;
    state.charts = await getJSON(`${path}/charts`);
    if (state.alive) drawCharts();
  };
  const soon = debounce(() => refresh().catch(showError), 200);
  const chartsSoon = debounce(() => refreshCharts().catch(showError), 600);
  const showError = (e) => { document.getElementById("trials").insertAdjacentHTML("afterbegin", `<p class="error">${esc(e.message)}</p>`); };

  function drawHead() {
    const info = state.info, d = info.detail;
    const task = d ? d.task : {};
    const stop = ["queued", "running"].includes(info.state) && info.submitted ? `<button id="b-stop">Stop</button>` : "";
    const resume = ["stopped", "failed"].includes(info.state) && info.submitted ? `<button id="b-resume">Resume</button>` : "";
    document.getElementById("head").innerHTML = `<h2>${esc(id)} ${badge(info.state)}</h2>
      <div class="dim">${esc(task.description || "")}</div>
      <div class="dim">${d ? `${esc(task.type)} · ${esc(task.metric)} (${esc(task.direction)}) · label ${esc(task.label_column)} · ${esc((task.text_columns || []).join(", "))}` : "waiting for a slot"}${d && d.stop_reason ? ` · stopped because: ${esc(d.stop_reason)}` : ""}</div>
      ${d && d.plan_notes && d.plan_notes.length ? `<details id="plan"${state.planOpen ? " open" : ""}><summary class="dim">How it was planned</summary>
        <ul>${d.plan_notes.map((n) => `<li class="dim">${esc(n)}</li>`).join("")}</ul></details>` : ""}
      ${info.error ? `<p class="error">${esc(info.error)}</p>` : ""}<div class="actions">${stop}${resume}
      ${d && info.state === "complete" ? `<button id="b-report">Report</button>` : ""}</div>`;
    const plan = document.getElementById("plan"); // the head is redrawn on every update: the fold stays as left
    if (plan) plan.ontoggle = () => { state.planOpen = plan.open; };
    const act = (what) => async () => { await api(`${path}/${what}`, {method: "POST"}); soon(); };
    if (stop) document.getElementById("b-stop").onclick = act("stop");
    if (resume) document.getElementById("b-resume").onclick = act("resume");
    const report = document.getElementById("b-report");
    if (report) report.onclick = async () => { // fetched with the key, then shown from a blob: no key in a URL
      const blob = await (await api(`${path}/report?format=html`)).blob();
      window.open(URL.createObjectURL(new Blob([blob], {type: "text/html"})));
    };
    if (!d) { document.getElementById("cards").innerHTML = ""; return; }
    const best = d.best, floor = d.baseline, counts = d.trials;
    document.getElementById("cards").innerHTML = `
      <div class="card"><h3>Best ${esc(task.metric)}</h3><div class="big" id="best-value">${best ? score(best.objective) : "—"}</div>
        <div class="dim">${best ? `trial ${best.number} (${esc(best.source)}), chosen on validation` : "no complete trial yet"}</div></div>
      <div class="card"><h3>Held-out test score</h3><div class="big">${best ? score(best.test_objective) : "—"}</div>
        <div class="dim">the best trial on rows no proposer saw</div></div>
      <div class="card"><h3>Floor (TF-IDF + logistic regression)</h3><div class="big">${floor ? score(floor.validation) : "—"}</div>
        <div class="dim">${floor ? `test ${score(floor.test)}; a fine-tune must beat it` : "no floor for this task"}</div></div>
      <div class="card"><h3>Trials</h3><div class="big">${counts.complete} <span class="dim">complete</span></div>
        <div class="dim">${counts.running} running · ${counts.waiting} waiting · ${counts.pruned} pruned · ${counts.failed} failed</div></div>`;
    const spent = d.budget.spent, limits = d.budget.limits;
    const bars = [["trials", spent.trials, limits.trials, (v) => fmt(Math.round(v))], ["time", spent.seconds, limits.seconds, duration],
      ["device-hours", spent.device_hours, limits.device_hours, (v) => (v || 0).toFixed(3)], ["LLM tokens", spent.llm_tokens, limits.llm_tokens, (v) => fmt(Math.round(v || 0))]];
    document.getElementById("budget").innerHTML = `<div class="cards">${bars.map(([name, v, lim, f]) =>
      `<div class="card"><h3>${name}</h3><div>${f(v)}${lim ? ` / ${f(lim)}` : " <span class='dim'>(no limit)</span>"}</div>
       <div class="bar"><div style="width:${lim ? Math.min(100, 100 * v / lim).toFixed(1) : 0}%"></div></div></div>`).join("")}</div>`;
  }

  function drawTrials() {
    const all = [...state.trials.values()].sort((a, b) => b.number - a.number);
    const rows = all.slice(0, state.shown); // the newest first; a long study shows the rest on request
    if (!rows.length) { document.getElementById("trials").innerHTML = `<p class="dim">no trial yet</p>`; return; }
    const tuned = (rows[0].tuned || []).filter((n) => rows.some((r) => fmt(r.config[n]) !== fmt(rows[0].config[n]))).slice(0, 7);
    const best = state.info.detail && state.info.detail.best ? state.info.detail.best.number : null;
    const body = rows.map((r) => {
      const live = state.progress.get(r.number);
      const progress = r.state === "running" ? `<div class="dim" id="p-${r.number}">${live ? progressText(live) : ""}</div>` : "";
      const why = r.failure_kind ? `<span class="error">${esc(r.failure_kind)}: ${esc(r.message || "")}</span>` : "";
      return `<tr class="${r.number === best ? "best" : ""}" data-trial="${r.number}"><td class="num"><a href="#/s/${encodeURIComponent(id)}/t/${r.number}">${r.number === best ? "★ " : ""}${r.number}</a></td>
        <td>${esc(r.source)}</td><td>${badge(r.state)}${progress}</td><td class="num">${score(r.objective)}</td><td class="num">${score(r.test_objective)}</td>
        ${tuned.map((n) => `<td class="num">${esc(fmt(r.config[n]))}</td>`).join("")}
        <td class="num">${duration(r.duration_s)}</td><td class="reason">${esc(r.rationale || "")} ${why}</td></tr>`;
    }).join("");
    document.getElementById("trials").innerHTML = `<table id="trial-table"><thead><tr><th class="num">#</th><th>source</th><th>state</th>
      <th class="num">${esc(state.metric || "score")}</th><th class="num">test</th>${tuned.map((n) => `<th class="num">${esc(n)}</th>`).join("")}
      <th class="num">time</th><th>planner's reason</th></tr></thead><tbody>${body}</tbody></table>
      ${all.length > rows.length ? `<p><button id="b-more">Show all ${all.length} trials</button></p>` : ""}`;
    const more = document.getElementById("b-more");
    if (more) more.onclick = () => { state.shown = Infinity; drawTrials(); };
  }

  function drawCharts() {
    const c = state.charts, d = state.info.detail;
    const rows = [...state.trials.values()];
    const scored = rows.filter((r) => r.state === "complete" && r.objective !== null).map((r) => [r.number, r.objective]);
    const floor = d && d.baseline ? {y: d.baseline.validation, label: "floor (TF-IDF + LR)"} : null;
    document.getElementById("c-best").innerHTML = lineChart(
      [{name: "best so far", points: c.best_so_far, width: 2.2}, {name: "each trial", points: scored, dots: true, colour: "#999"}],
      {xlabel: "trial", ylabel: state.metric, hline: floor});
    document.getElementById("c-imp").innerHTML = c.importance && Object.keys(c.importance).length ? barChart(c.importance) + `<p class="dim">${esc(c.importance_caption)}</p>`
      : `<p class="dim">${esc(c.importance_caption)}</p>`;
    const curves = Object.entries(c.loss_curves).map(([n, pts]) => ({name: `trial ${n}`, points: pts}));
    document.getElementById("c-loss").innerHTML = lineChart(curves, {xlabel: "optimizer step", ylabel: "training loss"});
    parallelCoordinates(document.getElementById("c-par"), rows, state.direction);
  }

  const stopStream = follow(`${path}/events`, (event) => {
    if (event.event === "progress" && event.trial !== null) {
      state.progress.set(event.trial, event);
      const cell = document.getElementById(`p-${event.trial}`); // only that cell: a long table is not redrawn
      if (cell) cell.textContent = progressText(event);
      return;
    }
    soon();
    if (event.event === "done" || (event.event === "trial" && FINISHED.has(event.state))) chartsSoon();
  });
  refresh().then(refreshCharts).catch(showError);
  return () => { state.alive = false; stopStream(); };
}

// ------------------------------------------------------------------ one trial

function trialPage(id, number) {
  const path = `/v1/studies/${encodeURIComponent(id)}`;
  document.getElementById("crumbs").innerHTML = `› <a href="#/s/${encodeURIComponent(id)}">${esc(id)}</a> › trial ${number}`;
  main.innerHTML = `<p class="dim">Loading…</p>`;
  let alive = true;
  const draw = async () => {
    const t = await getJSON(`${path}/trials/${number}`);
    if (!alive) return;
    const curves = Object.entries(t.curves);
    const progress = curves.filter(([k]) => k.startsWith("progress:"));
    // scores only: an evaluation also logs counts (eval_rows, predicted_classes) that would flatten the chart
    const evals = curves.filter(([k]) => k.startsWith("eval:") && !/_(rows|classes)$/.test(k));
    const chart = (list, ylabel) => list.length ? lineChart(list.map(([k, pts]) => ({name: k.split(":")[1], points: pts})), {xlabel: "step", ylabel}) : `<p class="dim">none recorded</p>`;
    const loss = progress.filter(([k]) => k === "progress:loss");
    main.innerHTML = `<h2>Trial ${t.number} ${badge(t.state)}</h2>
      <div class="dim">source ${esc(t.source)} · started ${esc(t.started || "—")} · ${duration(t.duration_s)}</div>
      ${t.failure_kind ? `<p class="error"><b>failed: ${esc(t.failure_kind)}</b> — ${esc(t.message || "")}</p>` : ""}
      ${t.rationale ? `<p><b>Planner's reason:</b> ${esc(t.rationale)}</p>` : ""}
      ${t.repairs.length ? `<p class="dim">repairs: ${esc(t.repairs.join("; "))}</p>` : ""}
      <div class="cards"><div class="card"><h3>validation</h3><div class="big">${score(t.objective)}</div></div>
        <div class="card"><h3>held-out test</h3><div class="big">${score(t.test_objective)}</div></div></div>
      <div class="charts"><div class="chart"><h3>Training loss</h3>${chart(loss, "loss")}</div>
        <div class="chart"><h3>Evaluations</h3>${chart(evals, "metric")}</div></div>
      <h3>Config</h3><table>${Object.entries(t.config).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(fmt(v))}</td></tr>`).join("")}</table>
      <h3>Metrics</h3><pre>${esc(JSON.stringify(t.metrics, null, 2))}</pre>
      <h3>Events</h3><table><thead><tr><th>kind</th><th class="num">step</th><th>time</th><th>detail</th></tr></thead><tbody>
      ${t.events.map((e) => `<tr><td>${esc(e.kind)}</td><td class="num">${e.step ?? ""}</td><td>${new Date(e.time * 1000).toLocaleTimeString()}</td>
        <td>${esc(e.message || "")} ${e.loss !== undefined ? `loss ${fmt(e.loss)}` : ""} ${e.metrics ? esc(JSON.stringify(e.metrics)) : ""}</td></tr>`).join("")}</tbody></table>`;
    return t.state;
  };
  const soon = debounce(() => draw().catch(() => {}), 300);
  let stopStream = () => {};
  draw().then((s) => {
    if (alive && !FINISHED.has(s)) stopStream = follow(`${path}/events`, (e) => { if (e.trial === number || e.event === "done") soon(); });
  }).catch((e) => { main.innerHTML = `<p class="error">${esc(e.message)}</p>`; });
  return () => { alive = false; stopStream(); };
}

// ------------------------------------------------------------------ routing

function route() {
  if (leave) leave();
  const hash = location.hash.slice(1) || "/";
  let m;
  if ((m = hash.match(/^\/s\/([^/]+)\/t\/(\d+)$/))) leave = trialPage(decodeURIComponent(m[1]), Number(m[2]));
  else if ((m = hash.match(/^\/s\/([^/]+)$/))) leave = studyPage(decodeURIComponent(m[1]));
  else leave = listPage();
}

window.addEventListener("hashchange", route);
route();
