// The audiomoment search page: queries the JSON API of `audiomoment serve`, lists the
// ranked moments, plays each one with context and draws its recording's trace.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

const state = {
  status: null,       // last /api/status answer
  search: null,       // last search answer
  traces: new Map(),  // "recording|query|system" -> Promise of the trace answer
  players: [],        // result items with an audio element
};

// ------------------------------------------------------------------ helpers

function clock(seconds, hours) {
  const tenths = Math.round(seconds * 10);
  const h = Math.floor(tenths / 36000);
  const m = Math.floor((tenths % 36000) / 600);
  const rest = tenths % 600;
  const s = String(Math.floor(rest / 10)).padStart(2, "0") + "." + (rest % 10);
  return hours || h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) {
      detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function setStatus(text, kind = "") {
  const node = $("#status");
  node.textContent = text;
  node.className = "status " + kind;
}

function options() {
  const system = Number($("input[name=system]:checked").value);
  const top = Math.max(1, Math.min(100, Number($("#top").value) || 10));
  const limit = state.status ? state.status.limits.context_s : 10;
  const context = Math.max(0, Math.min(limit, Number($("#context").value) || 0));
  return { system, top, context };
}

// ------------------------------------------------------------------ status and progress

async function refreshStatus() {
  const s = await api("/api/status");
  state.status = s;
  const info = `${s.recordings} recordings, ${s.hours.toFixed(2)} h` +
    (s.with_audio < s.recordings ? ` (${s.recordings - s.with_audio} from features only)` : "");
  $("#index-info").textContent = info;
  const sys1 = $("input[name=system][value='1']");
  sys1.disabled = !s.system1;
  if (!s.system1) {
    $("input[name=system][value='2']").checked = true;
    sys1.parentElement.title = "this index holds no neutral embedding (System 1 needs it)";
  }
  return s;
}

// Runs `work` while polling /api/status, showing what the server is doing (e.g. loading the
// text encoder on the first query, which takes a while).
async function withProgress(label, work) {
  const started = performance.now();
  let done = false;
  setStatus(label, "busy");
  $("#search-button").disabled = true;
  const poll = async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 400));
      if (done) break;
      try {
        const s = await api("/api/status");
        if (done) break;
        const steps = s.activity.map((a) => `${a.label} (${a.seconds.toFixed(0)} s)`);
        const secs = ((performance.now() - started) / 1000).toFixed(0);
        setStatus(steps.length ? steps.join(" · ") : `${label} (${secs} s)`, "busy");
      } catch (e) { /* the search itself reports errors */ }
    }
  };
  poll();
  try {
    return await work();
  } finally {
    done = true;
    $("#search-button").disabled = false;
  }
}

// ------------------------------------------------------------------ searching

async function run(label, request) {
  stopAll();
  try {
    const answer = await withProgress(label, request);
    setStatus("");
    render(answer);
  } catch (e) {
    setStatus(e.message, "error");
  }
}

function searchText(text) {
  const o = options();
  const url = `/api/search?q=${encodeURIComponent(text)}&system=${o.system}&top=${o.top}`;
  return run(`searching for “${text}”…`, () => api(url));
}

function searchLike(recordingId, start, end, name) {
  const o = options();
  const url = `/api/search/like?recording_id=${recordingId}&start=${start}&end=${end}` +
    `&system=${o.system}&top=${o.top}`;
  $("#query").value = "";
  return run(`searching for more like ${name} ${clock(start)}–${clock(end)}…`, () => api(url));
}

function searchClip(file) {
  const o = options();
  const limit = state.status ? state.status.limits.upload_bytes : Infinity;
  if (file.size > limit) {
    setStatus(`${file.name}: ${(file.size / 1e6).toFixed(1)} MB; clips are limited to ` +
              `${(limit / 1e6).toFixed(0)} MB`, "error");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("system", o.system);
  form.append("top", o.top);
  $("#query").value = "";
  return run(`searching by example: ${file.name}…`,
             () => api("/api/search/clip", { method: "POST", body: form }));
}

// ------------------------------------------------------------------ results

function render(answer) {
  state.search = answer;
  state.players = [];
  const list = $("#results");
  list.replaceChildren();
  const recordings = new Map(answer.recordings.map((r) => [r.id, r]));
  const n = answer.moments.length;
  $("#summary").textContent = n
    ? `${n} moment${n > 1 ? "s" : ""} for “${answer.query}” (System ${answer.system}, ` +
      `${answer.seconds.toFixed(2)} s)`
    : `no moment found for “${answer.query}”`;
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) {
        observer.unobserve(entry.target);
        entry.target.loadTrace();
      }
    }
  }, { rootMargin: "200px" });
  answer.moments.forEach((m, i) => {
    const item = resultItem(answer, m, recordings.get(m.recording_id), i + 1);
    list.append(item);
    observer.observe(item);
  });
}

function resultItem(answer, m, rec, rank) {
  const hours = rec.duration_s >= 3600;
  const item = el("li", { class: "result", "data-recording-id": m.recording_id,
                          "data-start": m.start, "data-end": m.end });
  const more = el("button", { type: "button", class: "more", text: "more like this",
                              title: "search for moments like this one" });
  more.addEventListener("click", () => searchLike(m.recording_id, m.start, m.end, rec.name));
  const actions = el("span", { class: "actions" }, more);
  const head = el("div", { class: "head" },
    el("span", { class: "rank", text: `${rank}.` }),
    el("span", { class: "name", text: rec.name }),
    el("span", { class: "time", text: `${clock(m.start, hours)}–${clock(m.end, hours)}` }),
    el("span", { class: "score", text: `score ${m.score.toFixed(2)}`,
                 title: `calibrated z ${m.z.toFixed(3)}; report score ${m.report_score.toFixed(3)}` }),
    actions);
  item.append(head);

  item.moment = m;
  item.recording = rec;
  if (rec.has_audio) {
    const link = el("a", { class: "download", text: "download WAV", download: "",
                           title: "the moment with its context, as a WAV file" });
    item.download = link;
    setDownload(item);
    actions.append(link);
    const audio = el("audio", { controls: "", preload: "none",
                                src: `/api/recordings/${m.recording_id}/audio` });
    const play = el("button", { type: "button", class: "play", text: "▶ play moment" });
    play.addEventListener("click", () => playMoment(item));
    item.append(el("div", { class: "player" }, play, audio));
    item.audio = audio;
    setupPlayer(item);
    state.players.push(item);
  } else {
    item.append(el("p", { class: "no-audio",
      text: `No player: ${rec.audio_note || "this recording has no audio file"}. ` +
            "Its moments and trace are shown." }));
  }
  const canvas = el("canvas", { class: "trace", "aria-label": "trace of the recording" });
  const overview = el("canvas", { class: "overview", "aria-label": "whole recording" });
  item.append(canvas, overview);
  item.canvas = canvas;
  item.overview = overview;
  item.view = viewOf(m, rec);
  canvas.addEventListener("click", (ev) => seekFromDrawing(item, ev, canvas, item.view));
  overview.addEventListener("click", (ev) =>
    seekFromDrawing(item, ev, overview, [0, rec.duration_s]));
  item.loadTrace = () => loadTrace(item, answer);
  return item;
}

function setDownload(item) {
  const m = item.moment;
  item.download.href = `/api/recordings/${m.recording_id}/clip?start=${m.start}` +
    `&end=${m.end}&context=${options().context}&download=true`;
}

// The stretch of the recording drawn: all of it when short, else the moment with room
// around it.
function viewOf(m, rec) {
  const d = rec.duration_s;
  if (d <= 180) return [0, d];
  const span = Math.min(d, Math.max(90, 5 * (m.end - m.start)));
  let a = (m.start + m.end) / 2 - span / 2;
  a = Math.max(0, Math.min(d - span, a));
  return [a, a + span];
}

// ------------------------------------------------------------------ playing

// Each player plays a stretch [from, stopAt): by default the moment with `context` seconds
// on each side; its own controls and the drawing can move it.
function bounds(item) {
  const ctx = options().context;
  const d = item.recording.duration_s;
  return [Math.max(0, item.moment.start - ctx), Math.min(d, item.moment.end + ctx)];
}

function setupPlayer(item) {
  const audio = item.audio;
  audio.addEventListener("play", () => {
    for (const other of state.players) {
      if (other !== item && !other.audio.paused) other.audio.pause();
    }
    const [lo, hi] = bounds(item);
    if (item.stopAt == null) {
      const t = audio.currentTime;
      if (t < lo - 0.25 || t >= hi) audio.currentTime = lo;
      item.stopAt = hi;
    }
    tick(item);
  });
  audio.addEventListener("timeupdate", () => checkStop(item));
  audio.addEventListener("pause", () => { item.stopAt = null; draw(item); });
  audio.addEventListener("seeked", () => draw(item));
}

function checkStop(item) {
  if (item.stopAt != null && item.audio.currentTime >= item.stopAt) {
    item.audio.pause();
    item.audio.currentTime = item.stopAt;
    item.stopAt = null;
  }
}

function tick(item) {
  if (item.audio.paused) return;
  checkStop(item);
  draw(item);
  requestAnimationFrame(() => tick(item));
}

function playMoment(item) {
  const [lo, hi] = bounds(item);
  item.stopAt = hi;
  item.audio.currentTime = lo;
  item.audio.play().catch((e) => setStatus(`cannot play: ${e.message}`, "error"));
}

function seekFromDrawing(item, ev, canvas, view) {
  const box = canvas.getBoundingClientRect();
  const t = view[0] + ((ev.clientX - box.left) / box.width) * (view[1] - view[0]);
  const time = Math.max(0, Math.min(item.recording.duration_s, t));
  if (!item.audio) return;
  const [lo, hi] = bounds(item);
  item.stopAt = time < hi ? hi : Math.min(item.recording.duration_s, time + (hi - lo));
  item.audio.currentTime = time;
  item.audio.play().catch((e) => setStatus(`cannot play: ${e.message}`, "error"));
}

function stopAll() {
  for (const item of state.players) item.audio.pause();
}

// ------------------------------------------------------------------ drawing

function loadTrace(item, answer) {
  const key = `${item.moment.recording_id}|${answer.query_id}|${answer.system}`;
  if (!state.traces.has(key)) {
    state.traces.set(key, api(`/api/recordings/${item.moment.recording_id}/trace` +
                              `?query_id=${answer.query_id}&system=${answer.system}`));
  }
  state.traces.get(key).then((trace) => {
    item.trace = trace;
    draw(item);
  }).catch((e) => {
    item.traceError = e.message;
    draw(item);
  });
}

function sizeCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  return [g, canvas.clientWidth, canvas.clientHeight];
}

function shade(g, x, w, h, a, b, color) {
  const x0 = x(a), x1 = x(b);
  if (x1 < 0 || x0 > w) return;
  g.fillStyle = color;
  g.fillRect(x0, 0, Math.max(1.5, x1 - x0), h);
}

function curve(g, values, hop, x, y, color, width) {
  g.strokeStyle = color;
  g.lineWidth = width;
  g.beginPath();
  let pen = false;
  values.forEach((v, i) => {
    if (v == null) { pen = false; return; }
    const px = x((i + 0.5) * hop), py = y(v);
    if (pen) g.lineTo(px, py); else g.moveTo(px, py);
    pen = true;
  });
  g.stroke();
}

function draw(item) {
  const [g, w, h] = sizeCanvas(item.canvas);
  const [v0, v1] = item.view;
  const x = (t) => ((t - v0) / (v1 - v0)) * w;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#fbfcfd";
  g.fillRect(0, 0, w, h);
  const plotH = h - 16;
  const trace = item.trace;
  if (trace) {
    for (const other of trace.moments) {
      shade(g, x, w, plotH, other.start, other.end, "rgba(230, 126, 34, 0.14)");
    }
  }
  shade(g, x, w, plotH, item.moment.start, item.moment.end, "rgba(230, 126, 34, 0.38)");
  const [lo, hi] = bounds(item);
  g.strokeStyle = "rgba(230, 126, 34, 0.8)";
  g.setLineDash([3, 3]);
  g.strokeRect(x(lo), 0.5, x(hi) - x(lo), plotH - 1);
  g.setLineDash([]);
  if (trace) {
    const hop = trace.hop_s;
    const first = Math.max(0, Math.floor(v0 / hop)), last = Math.ceil(v1 / hop);
    const seen = trace.trace.slice(first, last).concat(trace.smoothed.slice(first, last))
      .filter((v) => v != null);
    let min = Math.min(...seen), max = Math.max(...seen);
    if (!isFinite(min) || max - min < 1e-9) { min -= 1; max += 1; }
    const pad = 0.08 * (max - min);
    const y = (v) => plotH - 4 - ((v - min + pad) / (max - min + 2 * pad)) * (plotH - 8);
    const yp = (p) => plotH - 4 - p * (plotH - 8);
    g.strokeStyle = "rgba(46, 160, 67, 0.6)";
    g.setLineDash([4, 4]);
    g.beginPath();
    g.moveTo(0, yp(trace.threshold));
    g.lineTo(w, yp(trace.threshold));
    g.stroke();
    g.setLineDash([]);
    curve(g, trace.posterior, hop, x, yp, "rgba(46, 160, 67, 0.9)", 1.5);
    curve(g, trace.trace, hop, x, y, "rgba(120, 130, 140, 0.55)", 1);
    curve(g, trace.smoothed, hop, x, y, "#1f6feb", 1.8);
  } else {
    g.fillStyle = "#5f6b76";
    g.font = "12px sans-serif";
    g.fillText(item.traceError ? `trace: ${item.traceError}` : "loading the trace…", 8, 18);
  }
  // time axis
  g.fillStyle = "#5f6b76";
  g.font = "11px sans-serif";
  const span = v1 - v0;
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
    .find((s) => span / s <= 10) || 7200;
  const hours = item.recording.duration_s >= 3600;
  for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
    g.fillRect(x(t), plotH, 1, 4);
    g.fillText(clock(t, hours).replace(/\.0$/, ""), x(t) + 2, h - 2);
  }
  if (item.audio && (item.audio.currentTime > 0 || !item.audio.paused)) {
    g.fillStyle = "#d1242f";
    g.fillRect(x(item.audio.currentTime) - 0.75, 0, 1.5, plotH);
  }
  drawOverview(item);
}

function drawOverview(item) {
  const [g, w, h] = sizeCanvas(item.overview);
  const d = item.recording.duration_s;
  const x = (t) => (t / d) * w;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#e9edf1";
  g.fillRect(0, 0, w, h);
  g.fillStyle = "rgba(31, 111, 235, 0.18)";
  g.fillRect(x(item.view[0]), 0, Math.max(2, x(item.view[1]) - x(item.view[0])), h);
  if (item.trace) {
    for (const other of item.trace.moments) {
      shade(g, x, w, h, other.start, other.end, "rgba(230, 126, 34, 0.35)");
    }
  }
  shade(g, x, w, h, item.moment.start, item.moment.end, "rgba(230, 126, 34, 0.9)");
}

// ------------------------------------------------------------------ wiring

function setup() {
  $("#search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("#query").value.trim();
    if (text) searchText(text);
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) searchClip(file);
  });
  $("#clip-file").addEventListener("change", (ev) => {
    const file = ev.target.files[0];
    if (file) searchClip(file);
    ev.target.value = "";
  });
  $("#context").addEventListener("change", () => {
    for (const li of document.querySelectorAll(".result")) {
      if (li.download) setDownload(li);
      draw(li);
    }
  });
  window.addEventListener("resize", () => {
    for (const li of document.querySelectorAll(".result")) draw(li);
  });
  refreshStatus().then((s) => {
    $("#context").value = s.context_s;
  }).catch((e) => setStatus(e.message, "error"));
}

document.addEventListener("DOMContentLoaded", setup);
