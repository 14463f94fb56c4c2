// A job's page: its timeline (one row per worker slot, one bar per attempt), counters, errors and output.
// Plain JavaScript over GET /jobs/{id}/timeline; one canvas, however many attempts, so 2,000+ tasks stay fast.
"use strict";

const jobId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
document.getElementById("job-id").textContent = jobId;

// Fill by phase and outcome; a backup gets a dark outline, a backup that won a thick gold one.
const colors = {
  Map: { Succeeded: "#3b82f6", Running: "#93c5fd" },
  Reduce: { Succeeded: "#16a34a", Running: "#86efac" },
  Sample: { Succeeded: "#9333ea", Running: "#d8b4fe" },
  Failed: "#dc2626", Killed: "#9ca3af", Lost: "#f59e0b", OutputLost: "#ea580c",
};
const fill = (bar) => (bar.outcome === "Succeeded" || bar.outcome === "Running" ? colors[bar.phase][bar.outcome] : colors[bar.outcome]);

document.getElementById("legend").append(...[
  ["map", colors.Map.Succeeded], ["reduce", colors.Reduce.Succeeded], ["sample", colors.Sample.Succeeded], ["running", colors.Map.Running],
  ["failed", colors.Failed], ["killed (another attempt won, or the job ended)", colors.Killed], ["lost (no report; sent again)", colors.Lost],
  ["output lost (a reducer found it missing or damaged; the map ran again)", colors.OutputLost],
  ["queue wait", "#cbd5e1"], ["backup", "#fff; outline: 2px solid #111"], ["backup that won", "#fff; outline: 3px solid #d4a017"],
].map(([label, color]) => { const s = document.createElement("span"); s.innerHTML = `<i style="background:${color}"></i>`; s.append(label); return s; }));

const credentialKey = "queue-credential";
function authHeaders() {
  const c = sessionStorage.getItem(credentialKey);
  if (!c) return {};
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(c) ? { authorization: `Bearer ${c}` } : { "x-api-key": c };
}

const state = { timeline: null, lanesBars: [], x: null, rowHeight: 14, top: 18 };
// For tests and the curious: what was drawn.
window.jobTimeline = state;

const ms = (t) => (t ? Date.parse(t) : null);
const secs = (a, b) => ((b - a) / 1000).toFixed(3);

function draw() {
  const t = state.timeline;
  const canvas = document.getElementById("timeline");
  const width = canvas.parentElement.clientWidth;
  const lanes = t.lanes.length;
  // Rows shrink for big pools so the page stays one screen tall; a bar is never thinner than 2 px.
  state.rowHeight = Math.max(2, Math.min(14, Math.floor(600 / Math.max(1, lanes))));
  const height = state.top + lanes * state.rowHeight + 20;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio; canvas.height = height * ratio; canvas.style.height = `${height}px`;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 150, right = 10;
  const t0 = ms(t.status.submittedAt);
  const t1 = Math.max(ms(t.status.finishedAt) ?? ms(t.at), t0 + 1);
  const x = (v) => left + ((v - t0) / (t1 - t0)) * (width - left - right);
  state.x = x; state.left = left;
  const y = (lane) => state.top + lane * state.rowHeight;
  g.font = "10px sans-serif"; g.fillStyle = "#555";
  // Lane labels: the worker on its first slot's row, when rows are tall enough to read.
  if (state.rowHeight >= 10) {
    t.lanes.forEach((lane, i) => { if (lane.slot === 0) g.fillText(lane.worker.slice(0, 22), 2, y(i) + state.rowHeight - 3); });
  }
  // Phase boundaries: the plan, the map phase's end, the job's end.
  const marks = [["start", t.status.startedAt], ["maps done", t.status.mapFinishedAt], ["end", t.status.finishedAt]];
  let lastLabel = -Infinity;
  for (const [label, at] of marks) {
    if (!at) continue;
    const mx = x(ms(at));
    g.strokeStyle = "#6b7280"; g.setLineDash([4, 3]); g.beginPath(); g.moveTo(mx, state.top - 4); g.lineTo(mx, height - 16); g.stroke(); g.setLineDash([]);
    // Marks close together (a short phase) put their labels side by side, not on top of each other.
    const lx = Math.min(Math.max(mx + 2, lastLabel + 4), width - 50);
    g.fillText(label, lx, 11);
    lastLabel = lx + g.measureText(label).width;
  }
  g.fillText("0 s", left, height - 4);
  g.fillText(`${secs(t0, t1)} s`, width - right - 40, height - 4);
  const perLane = t.lanes.map(() => []);
  const now = ms(t.at);
  for (const bar of t.bars) {
    const start = ms(bar.startedAt), end = ms(bar.endedAt) ?? now;
    const bx = x(start), bw = Math.max(1, x(end) - bx), by = y(bar.lane) + 1, bh = Math.max(1, state.rowHeight - 2);
    if (bar.queuedAt && ms(bar.queuedAt) < start) {
      g.strokeStyle = "#cbd5e1"; g.lineWidth = 1; g.beginPath(); g.moveTo(x(ms(bar.queuedAt)), by + bh / 2); g.lineTo(bx, by + bh / 2); g.stroke();
    }
    g.fillStyle = fill(bar); g.fillRect(bx, by, bw, bh);
    if (bar.backup) {
      g.strokeStyle = bar.won ? "#d4a017" : "#111"; g.lineWidth = bar.won ? 3 : 2; g.strokeRect(bx, by, bw, bh); g.lineWidth = 1;
    }
    perLane[bar.lane].push({ ...bar, x0: bx, x1: bx + bw });
  }
  state.lanesBars = perLane;
  state.drawn = t.bars.length;
  canvas.dataset.drawn = String(t.bars.length);
}

function barAt(px, py) {
  const lane = Math.floor((py - state.top) / state.rowHeight);
  const bars = state.lanesBars[lane];
  if (!bars) return null;
  // Bars of a lane do not overlap and are in start order: a binary search finds the last one starting
  // at or before the pointer; it, or a neighbour within 2 px (thin bars), is the one meant.
  let lo = 0, hi = bars.length - 1, at = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (bars[mid].x0 <= px) { at = mid; lo = mid + 1; } else hi = mid - 1;
  }
  if (at >= 0 && px <= bars[at].x1) return bars[at];
  const near = [bars[at], bars[at + 1]].filter((b) => b && Math.min(Math.abs(b.x0 - px), Math.abs(b.x1 - px)) <= 2);
  return near[0] ?? null;
}

function describe(bar) {
  const lines = [
    `${bar.task}  attempt ${bar.attempt}${bar.backup ? " (backup)" : ""}${bar.won ? " — won" : ""}`,
    `${bar.outcome} on ${state.timeline.lanes[bar.lane].worker}, slot ${state.timeline.lanes[bar.lane].slot}`,
    `queued ${bar.queuedAt ? new Date(bar.queuedAt).toISOString().slice(11, 23) : "?"}, ran ${bar.endedAt ? secs(ms(bar.startedAt), ms(bar.endedAt)) : "…"} s`,
  ];
  if (bar.inputBytes != null) lines.push(`read ${bar.inputBytes} bytes, ${bar.inputRecords} records in, ${bar.outputRecords} out`);
  if (bar.error) lines.push(bar.error.slice(-300));
  return lines.join("\n");
}

function showTip(event) {
  const canvas = document.getElementById("timeline");
  const rect = canvas.getBoundingClientRect();
  const bar = state.timeline && barAt(event.clientX - rect.left, event.clientY - rect.top);
  const tip = document.getElementById("tip");
  if (!bar) { tip.hidden = true; return; }
  tip.textContent = describe(bar);
  tip.dataset.attempt = bar.attempt;
  tip.hidden = false;
  tip.style.left = `${Math.min(event.clientX - rect.left + 12, rect.width - 300)}px`;
  tip.style.top = `${event.clientY - rect.top + 12}px`;
}
document.getElementById("timeline").addEventListener("mousemove", showTip);
document.getElementById("timeline").addEventListener("click", showTip);
document.getElementById("timeline").addEventListener("mouseleave", () => { document.getElementById("tip").hidden = true; });
window.addEventListener("resize", () => state.timeline && draw());

const row = (...cells) => { const tr = document.createElement("tr"); for (const c of cells) { const td = document.createElement("td"); td.textContent = c ?? ""; tr.append(td); } return tr; };
const rows = (id, list) => document.querySelector(`#${id} tbody`).replaceChildren(...list);

function render() {
  const t = state.timeline, s = t.status;
  const stateCell = document.getElementById("job-state");
  stateCell.textContent = s.state; stateCell.className = `state ${s.state}`; stateCell.dataset.state = s.state;
  const phase = (p) => `${p.done}/${p.total} done, ${p.running} running, ${p.queued} queued, ${p.pending} pending, ${p.failed} failed`;
  rows("summary", [
    row("app", t.spec.app + (t.spec.mapper ? ` (${t.spec.mapper} | ${t.spec.reducer ?? "identity"})` : "")),
    row("input", `${t.spec.inputContainer}/${t.spec.inputPrefix}`),
    row("submitted", new Date(s.submittedAt).toLocaleString()),
    row("map phase", `${phase(s.map)}${s.mapSeconds != null ? `, ${s.mapSeconds.toFixed(3)} s` : ""}`),
    row("reduce phase", `${phase(s.reduce)}${s.reduceSeconds != null ? `, ${s.reduceSeconds.toFixed(3)} s` : ""}`),
    row("attempts", `${s.attempts} (${s.failedAttempts} failed, ${s.killedAttempts} killed, ${s.backupAttempts} backups of which ${s.backupWins} won, ${s.recoveredAttempts} sent again, ${s.mapReruns} maps run again for lost output)`),
    row("priority", `${t.spec.priority} (weight ${s.weight})`),
    row("trace", s.traceId ?? "—"),
  ]);
  const counters = ["inputBytes", "inputRecords", "outputRecords", "outputBytes", "combineInputRecords", "combineOutputRecords", "spilledRecords", "inputGroups", "skippedRecords"];
  rows("counters", counters.map((c) => row(c, s.mapCounters[c], s.reduceCounters[c])));
  document.getElementById("error").textContent = s.error ?? "";
  const problems = t.bars.filter((b) => b.outcome === "Failed" || b.outcome === "Lost" || b.outcome === "OutputLost").map((b) =>
    row(b.task, b.attempt, t.lanes[b.lane].worker, b.outcome === "Lost" ? "no report came; sent again" : b.outcome === "OutputLost" ? `output lost; the map ran again: ${b.error}` : b.error));
  rows("errors", [...problems, ...t.deadLetters.map((d) => row(d.split(":")[0], "", "", `dead-lettered: ${d.slice(d.indexOf(":") + 1)}`))]);
  rows("outputs", t.outputs.map((o) => row(o.name, o.length.toLocaleString())));
  document.getElementById("spec").textContent = JSON.stringify(t.spec, null, 2);
  draw();
}

async function refresh() {
  const response = await fetch(`/jobs/${encodeURIComponent(jobId)}/timeline`, { cache: "no-store", headers: authHeaders() });
  const problem = document.getElementById("problem");
  if (!response.ok) {
    problem.hidden = false;
    problem.textContent = response.status === 401
      ? "This engine needs an API key or a token: sign in on the dashboard (same tab), then come back."
      : response.status === 404 ? `No job '${jobId}' that you may see.` : `GET timeline: ${response.status}`;
    return false;
  }
  problem.hidden = true;
  state.timeline = await response.json();
  render();
  document.getElementById("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  return !["Succeeded", "Failed", "Cancelled"].includes(state.timeline.status.state);
}

// Live while the job runs (every second), then one last time after it ends.
const loop = async () => {
  let again = true;
  try { again = await refresh(); } catch (error) { document.getElementById("refreshed").textContent = `refresh failed: ${error.message}`; }
  if (again) setTimeout(loop, 1000);
};
loop();
