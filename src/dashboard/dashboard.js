// eddy's live dashboard: subscribes to /events (server-sent events) and draws
// every panel on plain canvases. No library, no network beyond this server.
//
// Memory stays bounded: the health history is trimmed to the server's own
// bound, and every other panel is replaced by each update. Each chart canvas
// carries data-points (points drawn) and data-last (latest value), and the
// body data-updates (updates received), so a test can see the page is live.
"use strict";

const HEALTH_KEPT = 1200; // as many points as the server keeps (health.rs)
const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6"];

let health = [];
let updates = 0;
let source = null;

// ---------- formatting ----------

const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
const fmtNum = (v) => {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (a >= 100) return v.toFixed(0);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
};
// Tick labels with as many decimals as the spacing of the ticks needs.
function tickFormat(lo, hi) {
  const step = Math.abs(hi - lo) / 4 || 1;
  const big = Math.max(Math.abs(lo), Math.abs(hi));
  if (big >= 1e4) return fmtNum;
  const decimals = Math.min(8, Math.max(0, 1 - Math.floor(Math.log10(step))));
  return (v) => v.toFixed(decimals);
}
const fmtPrice = (v) => (Math.abs(v) >= 1e4 ? fmtInt(v) : v.toFixed(2));
const fmtClock = (ms) => new Date(ms).toISOString().substring(11, 19);
const fmtSeconds = (s) => (s = Math.max(0, s), s < 120 ? s.toFixed(0) + " s" : Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0"));

// ---------- canvas helpers ----------

// A canvas sized to its CSS box at the device's pixel ratio.
function surface(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  return { ctx, w, h };
}

function mark(canvas, points, last) {
  canvas.dataset.points = String(points);
  canvas.dataset.last = last === undefined || last === null ? "" : String(last);
}

function empty(canvas, message) {
  const { ctx, w, h } = surface(canvas);
  ctx.fillStyle = "#8a90a0";
  ctx.textAlign = "center";
  ctx.fillText(message, w / 2, h / 2);
  mark(canvas, 0);
}

function extent(values, pad) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!isFinite(lo)) return [0, 1];
  if (lo === hi) { const d = Math.abs(lo) * 0.01 || 1; lo -= d; hi += d; }
  const p = (hi - lo) * (pad === undefined ? 0.05 : pad);
  // Counts and rates never go below zero: neither does their axis.
  return [lo >= 0 ? Math.max(0, lo - p) : lo - p, hi + p];
}

// Line chart. series: [{name, points: [[x, y]], color, right, dots}]
function lineChart(canvas, series, opts) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return empty(canvas, opts.waiting || "waiting for data…");
  const { ctx, w, h } = surface(canvas);
  const rightUsed = series.some((s) => s.right && s.points.length);
  const [x0, x1] = extent(all.map((p) => p[0]), 0);
  const side = (right) => series.filter((s) => !!s.right === right).flatMap((s) => s.points.map((p) => p[1]));
  const yl = extent(side(false)), yr = extent(side(true));
  const fl = tickFormat(yl[0], yl[1]), fr = tickFormat(yr[0], yr[1]);
  // Margins as wide as the widest tick label.
  const width = (f, [lo, hi]) => Math.max(ctx.measureText(f(lo)).width, ctx.measureText(f(hi)).width) + 10;
  const m = { l: Math.max(36, width(fl, yl)), r: rightUsed ? Math.max(36, width(fr, yr)) : 14, t: 18, b: 22 };
  const X = (x) => m.l + ((x - x0) / (x1 - x0 || 1)) * (w - m.l - m.r);
  const Y = (y, [lo, hi]) => h - m.b - ((y - lo) / (hi - lo)) * (h - m.t - m.b);
  // grid and axes
  ctx.strokeStyle = "#eceef2"; ctx.fillStyle = "#6b7385"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const f = i / 4, y = m.t + f * (h - m.t - m.b);
    ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(w - m.r, y); ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(fl(yl[1] - f * (yl[1] - yl[0])), m.l - 4, y + 4);
    if (rightUsed) { ctx.textAlign = "left"; ctx.fillText(fr(yr[1] - f * (yr[1] - yr[0])), w - m.r + 4, y + 4); }
  }
  ctx.textAlign = "center";
  for (let i = 0; i <= 4; i++) {
    const x = x0 + (i / 4) * (x1 - x0);
    ctx.fillText(opts.x(x), X(x), h - 6);
  }
  // series
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const range = s.right ? yr : yl;
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 1.6;
    if (s.dots) {
      for (const [x, y] of s.points) { ctx.beginPath(); ctx.arc(X(x), Y(y, range), 2.5, 0, 7); ctx.fill(); }
    } else {
      ctx.beginPath();
      s.points.forEach(([x, y], j) => (j ? ctx.lineTo(X(x), Y(y, range)) : ctx.moveTo(X(x), Y(y, range))));
      ctx.stroke();
    }
  });
  // legend
  let lx = m.l + 6;
  ctx.textAlign = "left";
  series.forEach((s, i) => {
    ctx.fillStyle = s.color || COLORS[i % COLORS.length];
    ctx.fillRect(lx, 5, 10, 3);
    ctx.fillStyle = "#1d2330";
    const label = s.name + (s.right ? " (right)" : "");
    ctx.fillText(label, lx + 13, 11);
    lx += ctx.measureText(label).width + 26;
  });
  const first = series.find((s) => s.points.length);
  mark(canvas, all.length, first.points[first.points.length - 1][1]);
}

function candleChart(canvas, bars) {
  if (!bars.length) return empty(canvas, "waiting for bars…");
  const { ctx, w, h } = surface(canvas);
  const [lo, hi] = extent(bars.flatMap((b) => [b.low, b.high]));
  const fy = tickFormat(lo, hi);
  const m = { l: Math.max(36, ctx.measureText(fy(hi)).width + 10), r: 14, t: 10, b: 22 };
  const Y = (y) => h - m.b - ((y - lo) / (hi - lo)) * (h - m.t - m.b);
  const step = (w - m.l - m.r) / bars.length;
  ctx.fillStyle = "#6b7385"; ctx.textAlign = "right";
  for (let i = 0; i <= 4; i++) {
    const v = lo + (i / 4) * (hi - lo);
    ctx.fillText(fy(v), m.l - 4, Y(v) + 4);
  }
  ctx.textAlign = "center";
  [0, bars.length - 1].forEach((i) => ctx.fillText(fmtClock(bars[i].t), m.l + (i + 0.5) * step, h - 6));
  bars.forEach((b, i) => {
    const x = m.l + (i + 0.5) * step;
    const up = b.close >= b.open;
    ctx.strokeStyle = ctx.fillStyle = up ? "#2e9d57" : "#c0392b";
    ctx.beginPath(); ctx.moveTo(x, Y(b.high)); ctx.lineTo(x, Y(b.low)); ctx.stroke();
    const top = Y(Math.max(b.open, b.close)), bottom = Y(Math.min(b.open, b.close));
    ctx.fillRect(x - Math.max(1, step * 0.35), top, Math.max(2, step * 0.7), Math.max(1, bottom - top));
  });
  mark(canvas, bars.length, bars[bars.length - 1].close);
}

// Diverging blue (-1) / white (0) / red (+1).
function corrColor(c) {
  const t = Math.max(-1, Math.min(1, c));
  const k = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? `rgb(255,${k},${k})` : `rgb(${k},${k},255)`;
}

function heatmap(canvas, corr) {
  if (!corr || !corr.pairs.length) return empty(canvas, "waiting for the first 60 s window…");
  const { ctx, w, h } = surface(canvas);
  const n = corr.symbols.length;
  const labels = n <= 40;
  const m = labels ? 52 : 8;
  const cell = Math.min((w - m - 8) / n, (h - m - 8) / n);
  const cells = new Map();
  for (const [a, b, c] of corr.pairs) { cells.set(a + "," + b, c); cells.set(b + "," + a, c); }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const c = i === j ? 1 : cells.get(i + "," + j);
      ctx.fillStyle = c === undefined ? "#eee" : corrColor(c);
      ctx.fillRect(m + j * cell, m + i * cell, cell - 0.5, cell - 0.5);
    }
  }
  if (labels) {
    ctx.fillStyle = "#1d2330"; ctx.font = `${Math.min(11, cell * 0.8)}px system-ui`;
    corr.symbols.forEach((s, i) => {
      ctx.textAlign = "right"; ctx.fillText(s, m - 3, m + (i + 0.7) * cell);
      ctx.save(); ctx.translate(m + (i + 0.7) * cell, m - 3); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(s, 0, 0); ctx.restore();
    });
  }
  // colour key
  const kx = m + n * cell + 6;
  if (kx + 14 < w) {
    for (let i = 0; i <= 40; i++) { ctx.fillStyle = corrColor(1 - i / 20); ctx.fillRect(kx, m + i * (n * cell / 41), 10, n * cell / 41 + 1); }
  }
  mark(canvas, corr.pairs.length, corr.pairs[0][2]);
}

function itemBars(canvas, top) {
  if (!top || !top.items.length) return empty(canvas, "waiting for the first complete window…");
  const { ctx, w, h } = surface(canvas);
  const items = top.items;
  const m = { l: 70, r: 50, t: 6, b: 6 };
  const max = Math.max(...items.map((i) => i.total));
  const row = (h - m.t - m.b) / items.length;
  const X = (v) => ((w - m.l - m.r) * v) / max;
  items.forEach((it, i) => {
    const y = m.t + i * row;
    let x = m.l;
    [["views", "#3366cc"], ["clicks", "#ff9900"], ["purchases", "#109618"]].forEach(([k, color]) => {
      ctx.fillStyle = color; ctx.fillRect(x, y + row * 0.15, X(it[k]), row * 0.7); x += X(it[k]);
    });
    ctx.fillStyle = "#1d2330"; ctx.textAlign = "right";
    ctx.fillText("item " + it.item_id, m.l - 4, y + row * 0.65);
    ctx.textAlign = "left"; ctx.fillText(fmtInt(it.total), x + 4, y + row * 0.65);
  });
  mark(canvas, items.length, items[0].total);
}

// ---------- panels ----------

function setText(id, text) { document.getElementById(id).textContent = text; }

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.append(c); else td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

function renderHealth(u) {
  const t = u.totals, last = health[health.length - 1];
  setText("c-generated", fmtInt(t.generated));
  setText("c-ingested", fmtInt(t.ingested));
  setText("c-rows", fmtInt(t.rows_out));
  setText("c-late", fmtInt(t.late));
  setText("c-malformed", fmtInt(t.malformed));
  setText("c-inflight", fmtInt(t.in_flight));
  setText("c-windows", fmtInt(t.windows_closed));
  setText("c-elapsed", fmtSeconds(t.elapsed_s));
  if (last) {
    setText("c-wmlag", fmtInt(last.watermark_lag_ms) + " ms");
    setText("c-cpu", last.cpu_percent.toFixed(0) + " %");
    setText("c-rss", last.rss_mib.toFixed(1) + " MiB");
  }
  const pts = (f) => health.filter((p) => f(p) !== null && f(p) !== undefined).map((p) => [p.t_s, f(p)]);
  const x = (s) => fmtSeconds(s);
  lineChart(document.getElementById("chart-throughput"), [
    { name: "in /s", points: pts((p) => p.in_per_s) },
    { name: "out /s", points: pts((p) => p.out_per_s), right: true },
  ], { x });
  lineChart(document.getElementById("chart-latency"), [
    { name: "window p50", points: pts((p) => p.latency_p50_ms) },
    { name: "window p99", points: pts((p) => p.latency_p99_ms) },
    { name: "per-record p99", points: pts((p) => p.record_p99_ms) },
  ], { x, waiting: "waiting for the first window to close…" });
  lineChart(document.getElementById("chart-lag"), [
    { name: "watermark lag", points: pts((p) => p.watermark_lag_ms) },
    { name: "generator lag", points: pts((p) => p.generator_lag_ms) },
  ], { x });
  lineChart(document.getElementById("chart-resources"), [
    { name: "CPU %", points: pts((p) => p.cpu_percent) },
    { name: "RSS MiB", points: pts((p) => p.rss_mib), right: true },
  ], { x });
  const watermarks = t.workers.map((w) => w.watermark_ms);
  fillTable("workers", t.workers.map((w, i) => {
    const state = document.createElement("span");
    state.className = "state-" + w.state; state.textContent = w.state;
    return [String(i), state, fmtInt(w.ingested), w.watermark_ms ? fmtClock(w.watermark_ms) : "–",
      w.watermark_ms ? fmtInt(Math.max(0, w.watermark_ms - w.frontier_ms)) + " ms" : "–",
      w.kafka_lag === undefined ? "–" : fmtInt(w.kafka_lag)];
  }));
  // Database sinks: rows committed, and retries while the database was away.
  const sinks = Object.entries(t.sinks || {});
  const line = document.getElementById("sinks");
  line.hidden = sinks.length === 0;
  line.textContent = sinks.map(([name, c]) =>
    `${name} sink: ${fmtInt(c.rows)} rows committed, ${fmtInt(c.retries)} retries`).join(" · ");
  document.getElementById("workers").dataset.workers = String(watermarks.length);
}

function renderMarket(b) {
  const picker = document.getElementById("symbol");
  if (picker.options.length !== b.symbols.length) {
    picker.replaceChildren(...b.symbols.map((s) => new Option(s, s)));
  }
  const m = b.market;
  // The server says which symbol it shows (the asked one, else the most traded).
  if (m) picker.value = m.symbol;
  setText("market-symbol", m ? m.symbol : "");
  const x = fmtClock;
  lineChart(document.getElementById("chart-price"), m ? [
    { name: "close", points: m.bars.map((r) => [r.t + 1000, r.close]) },
    { name: "EWMA", points: m.ewma.map(([t, v]) => [t + 1000, v]) },
    { name: "10 s mean", points: m.moving_average },
    { name: "forecast", points: m.close_forecast.map(([t, v]) => [t + 1000, v]), color: "#9467bd" },
    { name: "anomaly", points: m.anomalies.map(([t, close]) => [t, close]), dots: true, color: "#d62728" },
  ] : [], { x });
  lineChart(document.getElementById("chart-volforecast"), m ? [
    { name: "actual", points: m.vol_forecast.map(([t, , , a]) => [t, a]), dots: true },
    { name: "forecast", points: m.vol_forecast.map(([t, f]) => [t, f]), color: "#9467bd" },
    { name: "naive (last window)", points: m.vol_forecast.map(([t, , n]) => [t, n]), color: "#8a90a0" },
  ] : [], { x, waiting: "waiting for the first scored window…" });
  lineChart(document.getElementById("chart-volatility"), m ? [
    { name: "realised 60 s", points: m.volatility.map(([t, v]) => [t + 60000, v]), dots: true },
    { name: "EWM vol", points: m.ewm_vol.map(([t, v]) => [t + 1000, v]), right: true },
  ] : [], { x });
  candleChart(document.getElementById("chart-bars"), m ? m.bars.slice(-60) : []);
  heatmap(document.getElementById("chart-correlation"), b.correlation);
  setText("corr-window", b.correlation ? "from " + fmtClock(b.correlation.window_start_ms) : "");
  fillTable("latest-bars", b.latest_bars.map((r) => [r.symbol, fmtClock(r.t), fmtPrice(r.open), fmtPrice(r.high),
    fmtPrice(r.low), fmtPrice(r.close), fmtInt(r.volume), fmtInt(r.trades), fmtPrice(r.vwap)]));
}

function renderInteractions(b) {
  itemBars(document.getElementById("chart-items"), b.top_items);
  setText("items-window", b.top_items ? "from " + fmtClock(b.top_items.window_start_ms) : "");
  lineChart(document.getElementById("chart-activity"), [
    { name: "interactions", points: b.activity.map((a) => [a.window_start_ms, a.interactions]) },
    { name: "active users", points: b.activity.map((a) => [a.window_start_ms, a.users]), right: true },
  ], { x: fmtClock, waiting: "waiting for the first 60 s window…" });
  setText("alerts-total", fmtInt(b.alerts_total));
  const list = document.getElementById("alerts");
  list.replaceChildren(...b.alerts.map((a) => {
    const li = document.createElement("li");
    li.className = a.fired ? "fired" : "closed";
    li.textContent = `item ${a.item_id}: ${fmtInt(a.total)} interactions in the window from ${fmtClock(a.window_start_ms)} (threshold ${fmtInt(a.threshold)})`;
    return li;
  }));
}

function renderModels(b) {
  const q = b.quality;
  const kinds = Object.entries(q.anomalies);
  setText("anomalies-total", fmtInt(kinds.reduce((n, [, c]) => n + c, 0)));
  setText("anomaly-kinds", kinds.map(([k, c]) => `${k} ${fmtInt(c)}`).join(" · "));
  const list = document.getElementById("anomalies");
  list.replaceChildren(...b.anomalies.map((a) => {
    const li = document.createElement("li");
    li.className = "anomaly";
    li.textContent = `${a.kind} on ${a.stream} ${a.key} at ${fmtClock(a.ts_ms)} (score ${a.score.toFixed(1)})`;
    return li;
  }));
  fillTable("forecast-errors", Object.entries(q.forecasts).map(([target, e]) => [target, fmtInt(e.n),
    e.mae.toPrecision(4), e.naive_mae.toPrecision(4), e.naive_mae > 0 ? (1 - e.mae / e.naive_mae).toFixed(3) : "–"]));
}

function render(u) {
  // A restarted server numbers its points from 0 again.
  if (u.health.length && health.length && u.health[0].seq <= health[health.length - 1].seq) health = [];
  health.push(...u.health);
  if (health.length > HEALTH_KEPT) health.splice(0, health.length - HEALTH_KEPT);
  const i = u.info;
  setText("run-info", `${i.name || "pipeline"} · ${i.workers} worker(s) × ${i.processes} process(es) · ${i.timing}` +
    (i.timing === "RealTime" ? ` ×${i.speed}` : "") + ` · max delay ${i.max_delay_ms} ms`);
  const status = document.getElementById("connection");
  status.textContent = u.totals.finished ? "finished" : "live";
  status.className = "status " + (u.totals.finished ? "finished" : "live");
  renderHealth(u);
  renderMarket(u.board);
  renderInteractions(u.board);
  renderModels(u.board);
  updates += 1;
  document.body.dataset.updates = String(updates);
}

function connect() {
  if (source) source.close();
  // The picker's choice; before it has one, the page's ?symbol= (a link to a symbol).
  const symbol = document.getElementById("symbol").value || new URLSearchParams(location.search).get("symbol") || "";
  source = new EventSource("/events" + (symbol ? "?symbol=" + encodeURIComponent(symbol) : ""));
  source.addEventListener("update", (e) => render(JSON.parse(e.data)));
  source.onerror = () => {
    const status = document.getElementById("connection");
    if (!status.classList.contains("finished")) { status.textContent = "connection lost, retrying"; status.className = "status lost"; }
  };
}

document.getElementById("symbol").addEventListener("change", () => { health = []; connect(); });
connect();
