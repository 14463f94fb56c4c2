// The dashboard: plain JavaScript over the ingress's JSON API, no build chain and no CDN.
"use strict";

let selected = null;

// One sample per refresh from GET /scale; rates come from the workers' cumulative counters.
const history = [];
const windowMs = 5 * 60 * 1000;
window.queueHistory = history;

// Slots each job held at each sample (its tasks reported running), for the per-job plot.
const jobColors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const jobColor = new Map();

function record(scale, jobs) {
  const now = Date.now();
  const last = history[history.length - 1];
  const seconds = last ? (now - last.t) / 1000 : 0;
  // A worker that stops takes its counters with it: never plot a negative rate.
  const rate = (value, previous) => (last && seconds > 0 ? Math.max(0, (value - previous) / seconds) : 0);
  history.push({
    t: now, queued: scale.queuedTasks, leased: scale.leasedTasks, pending: scale.pendingTasks ?? 0,
    // A job's share: its tasks running or let in for a slot (short tasks report their start only at their end).
    slots: Object.fromEntries(jobs.filter((j) => ["Mapping", "Reducing"].includes(j.status.state)).map((j) => [j.spec.id, j.status.runningTasks + j.status.queuedTasks])), workers: scale.workers, busy: scale.busyWorkers, desired: scale.desiredWorkers,
    completed: scale.tasksCompleted, bytes: scale.bytesProcessed,
    tasksPerSecond: rate(scale.tasksCompleted, last?.completed ?? 0), mbPerSecond: rate(scale.bytesProcessed, last?.bytes ?? 0) / 1e6,
  });
  while (history.length && history[0].t < now - windowMs) history.shift();
  const load = document.getElementById("load");
  load.dataset.samples = history.length;
  load.dataset.maxWorkers = Math.max(...history.map((h) => h.workers));
  load.dataset.maxQueued = Math.max(...history.map((h) => h.queued));
  load.dataset.workers = scale.workers;
  const shares = {};
  for (const h of history) for (const [id, n] of Object.entries(h.slots)) shares[id] = Math.max(shares[id] ?? 0, n);
  load.dataset.jobSlots = JSON.stringify(shares);
}

// One line per job seen in the window: the slots its tasks held at each sample (fair sharing at work).
function plotJobSlots() {
  const ids = [];
  for (const h of history) for (const id of Object.keys(h.slots)) if (!ids.includes(id)) ids.push(id);
  for (const id of ids) if (!jobColor.has(id)) jobColor.set(id, jobColors[jobColor.size % jobColors.length]);
  const series = ids.slice(-8).map((id) => ({ key: `slots:${id}`, label: id.slice(-6), color: jobColor.get(id) }));
  plot("plot-jobs", series, (p, key) => p.slots[key.slice(6)] ?? 0);
}

function plot(id, series, value = (p, key) => p[key]) {
  const canvas = document.getElementById(id);
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 34, bottom = 16, top = 6;
  g.clearRect(0, 0, w, h);
  const now = Date.now();
  let max = 1;
  for (const s of series) for (const p of history) max = Math.max(max, value(p, s.key));
  max = Math.ceil(max);
  g.strokeStyle = "#ccc"; g.fillStyle = "#555"; g.font = "10px sans-serif";
  g.beginPath(); g.moveTo(left, top); g.lineTo(left, h - bottom); g.lineTo(w, h - bottom); g.stroke();
  g.fillText(String(max), 2, top + 8); g.fillText("0", 2, h - bottom);
  // The axis spans what was seen (at least 30 s, at most the 5-minute window), so a short burst is readable.
  const start = Math.max(now - windowMs, history.length ? history[0].t : now);
  const span = Math.max(30 * 1000, now - start);
  g.fillText(`-${Math.round(span / 1000)} s`, left, h - 3); g.fillText("now", w - 22, h - 3);
  const x = (t) => left + ((t - (now - span)) / span) * (w - left);
  const y = (v) => h - bottom - (v / max) * (h - bottom - top);
  series.forEach((s, i) => {
    g.strokeStyle = s.color; g.lineWidth = 1.5; g.beginPath();
    history.forEach((p, j) => (j ? g.lineTo(x(p.t), y(value(p, s.key))) : g.moveTo(x(p.t), y(value(p, s.key)))));
    g.stroke();
    const current = history.length ? value(history[history.length - 1], s.key) : 0;
    g.fillStyle = s.color; g.fillText(`${s.label} ${Number.isInteger(current) ? current : current.toFixed(1)}`, left + 6 + (i % 3) * 100, top + 10 + Math.floor(i / 3) * 11);
  });
}

function drawPlots() {
  plot("plot-depth", [{ key: "queued", label: "queued", color: "#1f77b4" }, { key: "leased", label: "leased", color: "#ff7f0e" }, { key: "pending", label: "pending", color: "#7f7f7f" }]);
  plotJobSlots();
  plot("plot-workers", [{ key: "workers", label: "workers", color: "#2ca02c" }, { key: "busy", label: "busy", color: "#d62728" }, { key: "desired", label: "desired", color: "#9467bd" }]);
  plot("plot-tasks", [{ key: "tasksPerSecond", label: "tasks/s", color: "#1f77b4" }]);
  plot("plot-bytes", [{ key: "mbPerSecond", label: "MB/s", color: "#8c564b" }]);
}

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else if (key.startsWith("data-")) node.setAttribute(key, value); else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
};

const bar = (p) => {
  const outer = el("div", { class: "bar", title: `${p.done} done, ${p.running} running, ${p.queued} queued, ${p.pending ?? 0} pending, ${p.failed} failed of ${p.total}` });
  const pct = (n) => (p.total ? (100 * n) / p.total : 0);
  const done = el("span"); done.style.width = `${pct(p.done)}%`;
  const running = el("span", { class: "running" }); running.style.left = `${pct(p.done)}%`; running.style.width = `${pct(p.running)}%`;
  const failed = el("span", { class: "failed" }); failed.style.left = `${pct(p.done + p.running)}%`; failed.style.width = `${pct(p.failed)}%`;
  outer.append(done, running, failed);
  return el("span", {}, outer, ` ${p.done}/${p.total}`);
};

const fill = (id, rows) => document.querySelector(`#${id} tbody`).replaceChildren(...rows);

// The credential lives for this tab only (sessionStorage) and goes with every call: an API key as
// X-Api-Key, a JSON web token (three base64url parts) as a bearer token.
const credentialKey = "queue-credential";
const isJwt = (c) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(c);
function authHeaders(extra = {}) {
  const credential = sessionStorage.getItem(credentialKey);
  if (!credential) return extra;
  return { ...extra, ...(isJwt(credential) ? { authorization: `Bearer ${credential}` } : { "x-api-key": credential }) };
}

function askToSignIn(message) {
  const form = document.getElementById("signin");
  form.hidden = false;
  document.getElementById("signout").hidden = true;
  document.getElementById("signin-result").textContent = message;
}

async function api(path, init = {}) {
  const response = await fetch(path, { cache: "no-store", ...init, headers: authHeaders(init.headers) });
  if (response.status === 401) {
    askToSignIn(sessionStorage.getItem(credentialKey) ? "That credential was not accepted." : "This engine needs an API key or a token.");
    throw new Error("sign in to see this engine");
  }
  return response;
}

async function getJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

document.getElementById("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(credentialKey, new FormData(event.target).get("credential"));
  event.target.reset();
  event.target.hidden = true;
  document.getElementById("signout").hidden = false;
  refresh().catch(() => {});
});

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(credentialKey);
  location.reload();
});
if (sessionStorage.getItem(credentialKey)) document.getElementById("signout").hidden = false;

async function refresh() {
  const [jobs, queues, workers, scale] = await Promise.all([getJson("/jobs"), getJson("/queues"), getJson("/workers"), getJson("/scale")]);
  record(scale, jobs);
  drawPlots();
  fill("jobs", jobs.map((job) => {
    const s = job.status;
    const row = el("tr", { class: "job", "data-job": job.spec.id },
      el("td", {}, el("a", { href: `/ui/jobs/${encodeURIComponent(job.spec.id)}`, class: "job-link", title: "the job's page: timeline, counters, errors, output" }, job.spec.id)), el("td", {}, job.spec.app),
      el("td", { class: `state ${s.state}`, "data-state": s.state }, s.state),
      el("td", {}, bar(s.map)), el("td", {}, bar(s.reduce)),
      el("td", { class: "share", "data-running": s.runningTasks, "data-queued": s.queuedTasks, "data-pending": s.pendingTasks, "data-weight": s.weight },
        `${s.runningTasks} running, ${s.queuedTasks} queued, ${s.pendingTasks} pending, ${job.spec.priority} (${s.weight})`),
      el("td", {}, `${s.attempts} (${s.failedAttempts} failed)`),
      el("td", {}, new Date(s.submittedAt).toLocaleTimeString()));
    row.addEventListener("click", () => { selected = job.spec.id; refresh(); });
    return row;
  }));
  fill("queues", queues.map((q) => el("tr", {}, el("td", {}, q.queue), el("td", {}, q.active), el("td", {}, q.leased), el("td", {}, q.deadLettered))));
  fill("workers", workers.map((w) => el("tr", {}, el("td", {}, w.worker), el("td", {}, `${w.busy} / ${w.slots}`), el("td", {}, w.running.join(", ")), el("td", {}, w.version), el("td", {}, new Date(w.lastSeen).toLocaleTimeString()))));

  const dead = [];
  for (const job of jobs.slice(0, 10)) {
    if (job.status.map.failed + job.status.reduce.failed === 0) continue;
    const detail = await getJson(`/jobs/${job.spec.id}?tasks=true`);
    for (const t of detail.tasks.filter((t) => t.deadLetterReason)) dead.push(el("tr", {}, el("td", {}, job.spec.id), el("td", {}, taskId(t)), el("td", {}, t.deadLetterReason)));
  }
  fill("dead", dead);

  if (selected) {
    const detail = await getJson(`/jobs/${selected}?tasks=true`);
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-id").textContent = selected;
    document.getElementById("detail-error").textContent = detail.status.error ?? "";
    fill("tasks", detail.tasks.map((t) => el("tr", {},
      el("td", {}, taskId(t)), el("td", { class: `state ${t.state}` }, t.state), el("td", {}, t.attempts), el("td", {}, t.failedAttempts),
      el("td", {}, t.worker ?? ""), el("td", {}, t.status ?? ""), el("td", { class: "error" }, t.lastError ?? ""), el("td", {}, t.deadLetterReason ?? ""))));
  }
  document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

const taskId = (t) => `${t.phase === "Map" ? "m" : "r"}-${String(t.index).padStart(5, "0")}`;

document.getElementById("submit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { app: form.get("app"), input: form.get("input"), mapTasks: Number(form.get("mapTasks")), reduceTasks: Number(form.get("reduceTasks")) };
  if (form.get("pattern")) body.args = { pattern: form.get("pattern") };
  const result = document.getElementById("submit-result");
  let response;
  try {
    response = await api("/jobs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch (error) {
    result.textContent = error.message;
    return;
  }
  const answer = await response.json();
  if (response.ok) {
    selected = answer.id;
    result.textContent = `submitted ${answer.id}`;
    result.dataset.job = answer.id;
  } else {
    result.textContent = `${answer.title}: ${answer.detail}`;
  }
  refresh();
});

const loop = async () => {
  try { await refresh(); } catch (error) { document.getElementById("refreshed").textContent = `refresh failed: ${error.message}`; }
  setTimeout(loop, 1000);
};
loop();
