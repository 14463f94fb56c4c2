// The dashboard: plain JavaScript over the ingress's JSON API, no build chain and no CDN.
"use strict";

let selected = null;

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else if (key.startsWith("data-")) node.setAttribute(key, value); else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
};

const bar = (p) => {
  const outer = el("div", { class: "bar", title: `${p.done} done, ${p.running} running, ${p.queued} queued, ${p.failed} failed of ${p.total}` });
  const pct = (n) => (p.total ? (100 * n) / p.total : 0);
  const done = el("span"); done.style.width = `${pct(p.done)}%`;
  const running = el("span", { class: "running" }); running.style.left = `${pct(p.done)}%`; running.style.width = `${pct(p.running)}%`;
  const failed = el("span", { class: "failed" }); failed.style.left = `${pct(p.done + p.running)}%`; failed.style.width = `${pct(p.failed)}%`;
  outer.append(done, running, failed);
  return el("span", {}, outer, ` ${p.done}/${p.total}`);
};

const fill = (id, rows) => document.querySelector(`#${id} tbody`).replaceChildren(...rows);

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function refresh() {
  const [jobs, queues, workers] = await Promise.all([getJson("/jobs"), getJson("/queues"), getJson("/workers")]);
  fill("jobs", jobs.map((job) => {
    const s = job.status;
    const row = el("tr", { class: "job", "data-job": job.spec.id },
      el("td", {}, job.spec.id), el("td", {}, job.spec.app),
      el("td", { class: `state ${s.state}`, "data-state": s.state }, s.state),
      el("td", {}, bar(s.map)), el("td", {}, bar(s.reduce)),
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
  const headers = { "content-type": "application/json" };
  if (form.get("apiKey")) headers["x-api-key"] = form.get("apiKey");
  const result = document.getElementById("submit-result");
  const response = await fetch("/jobs", { method: "POST", headers, body: JSON.stringify(body) });
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
