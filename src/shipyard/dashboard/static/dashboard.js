// shipyard dashboard: live fragments over server-sent events, filters without reloads,
// charts with uPlot (vendored). No data leaves this page but to its own server.
"use strict";
(function () {
  const live = document.getElementById("live");
  const streams = new Map();

  function showProblems(data) {
    const box = document.getElementById("problems");
    if (!box) return;
    box.replaceChildren(...data.problems.map((text) => {
      const p = document.createElement("p");
      p.className = "problem";
      p.textContent = text;
      return p;
    }));
  }

  function connect(el, url, onEvent) {
    const old = streams.get(el);
    if (old) old.close();
    const es = new EventSource(url);
    es.onopen = () => { live.classList.add("on"); };
    es.onerror = () => { live.classList.remove("on"); };
    es.addEventListener(onEvent.name, (ev) => onEvent.fn(JSON.parse(ev.data)));
    es.addEventListener("problems", (ev) => showProblems(JSON.parse(ev.data)));
    streams.set(el, es);
  }

  function setText(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  // The experiments table: rows replaced in place, or the whole body when rows came or went.
  const rows = document.getElementById("rows");
  const filters = document.getElementById("filters");
  function query() {
    const params = new URLSearchParams();
    for (const el of filters.querySelectorAll("[data-filter]")) {
      if (el.value) params.set(el.name, el.value);
    }
    return params.toString();
  }
  function applyRows(data) {
    if (data.replace !== undefined) {
      rows.innerHTML = data.replace;
    } else {
      for (const [id, html] of data.upsert) {
        const tr = document.getElementById(id);
        if (tr) tr.outerHTML = html;
      }
    }
    setText("total", data.total);
    setText("shown", rows.querySelectorAll("tr").length);
    document.body.dataset.updated = String(Date.now());
  }
  function follow() {
    const q = query();
    connect(rows, "/stream/experiments" + (q ? "?" + q : ""), { name: "rows", fn: applyRows });
  }
  if (rows && filters) {
    let timer = null;
    const changed = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = query();
        history.replaceState(null, "", q ? "?" + q : location.pathname);
        const old = streams.get(rows);
        if (old) old.close();  // rows of the old filters must not land after the new ones
        const r = await fetch("/fragments/experiments" + (q ? "?" + q : ""));
        rows.innerHTML = await r.text();
        setText("total", r.headers.get("X-Total"));
        setText("shown", rows.querySelectorAll("tr").length);
        follow();
      }, 150);
    };
    filters.addEventListener("change", changed);
    filters.addEventListener("input", changed);
    follow();
  }

  // Other live parts: the whole fragment, when it changed.
  for (const el of document.querySelectorAll("[data-stream]")) {
    if (el === rows) continue;
    connect(el, el.dataset.stream, { name: "fragment", fn: (data) => {
      el.innerHTML = data.html;
      document.body.dataset.updated = String(Date.now());
      drawCharts();
    } });
  }

  // Charts: columns from the server ({x: [...], series: [...]}), drawn with uPlot.
  const charts = new Map();
  const colours = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d"];
  async function drawChart(el, xKey, xLabel, time) {
    if (typeof uPlot === "undefined") return;
    const r = await fetch(el.dataset.url);
    const cols = await r.json();
    const names = Object.keys(cols).filter((k) => k !== xKey);
    if (!cols[xKey] || cols[xKey].length === 0) {
      el.innerHTML = '<p class="muted">' + (el.dataset.empty || "nothing recorded yet") + "</p>";
      charts.delete(el);
      return;
    }
    const data = [cols[xKey], ...names.map((n) => cols[n])];
    const old = charts.get(el);
    if (old && old.series.length === data.length) { old.setData(data); return; }
    if (old) old.destroy();
    el.innerHTML = "";
    const opts = {
      width: Math.min(el.clientWidth || 900, 1100), height: 220, scales: { x: { time: time } },
      series: [{ label: xLabel }, ...names.map((n, i) => ({ label: n, stroke: colours[i % colours.length],
                                                              scale: i === 0 ? "y" : "m" + i }))],
      axes: [{}, { scale: "y" }],
    };
    charts.set(el, new uPlot(opts, data, el));
  }
  function drawCharts() {
    for (const el of document.querySelectorAll(".usage-chart")) drawChart(el, "t", "hour", true);
  }
  const progress = document.getElementById("progress-chart");
  if (progress) {
    const tick = () => drawChart(progress, "t", "time", true);
    tick();
    setInterval(tick, 5000);
  }
  drawCharts();
})();
