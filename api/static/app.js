// WorkflowOps web UI: actions through the JSON API (with the page's CSRF token), errors shown
// inline, and runs followed live over their SSE stream (one EventSource per page).
"use strict";

// Each SSE message is the run's event: {id, run_id, kind, data, created_at}.
const payload = (e) => { const m = JSON.parse(e.data); return m.data ?? m; };

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

async function api(method, url, body) {
  const res = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf(), accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const fields = (data?.errors ?? []).map((e) => `${e.field}: ${e.message}`).join("; ");
    throw new Error(fields || data?.message || `${res.status} ${res.statusText}`);
  }
  return data;
}

function showError(scope, message) {
  const box = scope.closest("section, form, .card")?.querySelector("[data-error]") ?? document.querySelector("[data-error]");
  if (box) { box.textContent = message; box.hidden = false; } else { alert(message); }
}

function formBody(form) {
  const body = {};
  for (const [k, v] of new FormData(form).entries()) { if (v !== "") body[k] = v; }
  return body;
}

async function act(el, body) {
  const [method, url] = el.dataset.api.split(" ");
  el.setAttribute("aria-busy", "true");
  try {
    const data = await api(method, url, body);
    const then = el.dataset.then ?? "";
    if (then === "reload") { location.reload(); }
    else if (then === "watch" && data?.id) { watch(data.id); }
    else if (then.startsWith("go:")) { location.href = then.slice(3).replace("{id}", data?.id ?? ""); }
  } catch (e) {
    showError(el, e.message);
  } finally {
    el.removeAttribute("aria-busy");
  }
}

document.addEventListener("click", (ev) => {
  const el = ev.target.closest("button[data-api]");
  if (!el || el.disabled) return;
  ev.preventDefault();
  let body = el.dataset.body ? JSON.parse(el.dataset.body) : {};
  if (el.dataset.bodyFrom) {
    const v = document.querySelector(el.dataset.bodyFrom)?.value;
    if (v) body = { ...body, comment: v };
  }
  act(el, body);
});

document.addEventListener("submit", (ev) => {
  const form = ev.target.closest("form[data-api]");
  if (!form) return;
  ev.preventDefault();
  act(form, formBody(form));
});

let source = null;
function watch(runId) {
  const live = document.getElementById("live");
  if (!live) return;
  live.hidden = false;
  live.dataset.run = runId;
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  const status = document.getElementById("run-status");
  const log = document.getElementById("log");
  if (log) log.replaceChildren();
  if (source) source.close();
  source = new EventSource(`/api/v1/runs/${runId}/events`);
  source.addEventListener("progress", (e) => {
    const p = payload(e);
    if (bar && p.total > 0) { bar.max = p.total; bar.value = p.done; }
    if (text) text.textContent = p.total > 0 ? `${Math.round((100 * p.done) / p.total)}% (${p.done}/${p.total})` : "";
  });
  source.addEventListener("log", (e) => {
    const l = payload(e);
    if (log) { const li = document.createElement("li"); li.className = l.level; li.textContent = l.message; log.append(li); }
  });
  source.addEventListener("state", (e) => {
    const s = payload(e);
    if (status) { status.textContent = s.status; status.className = `status ${s.status}`; }
    if (s.status === "succeeded" && bar) { bar.value = bar.max; if (text && !text.textContent) text.textContent = "100%"; }
  });
  source.addEventListener("end", () => {
    source.close();
    source = null;
    if (live.dataset.reloadOnEnd) setTimeout(() => location.reload(), 300);
  });
}

document.addEventListener("click", (ev) => {
  const el = ev.target.closest("button[data-cancel]");
  if (!el || el.disabled) return;
  const run = document.getElementById("live")?.dataset.run;
  if (run) api("POST", `/api/v1/runs/${run}/cancel`).catch((e) => showError(el, e.message));
});

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("live")?.dataset.run;
  if (run) watch(run);
});
