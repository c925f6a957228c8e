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
  return answer(res);
}

// The JSON of an API response, or an Error saying what the API refused (its field errors or
// message; the status when the body is not the API's, e.g. a 413 from the body limit).
async function answer(res) {
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const fields = (data?.errors ?? []).map((e) => `${e.field}: ${e.message}`).join("; ");
    const tooLarge = res.status === 413 ? "413: the file is larger than the server accepts" : "";
    throw new Error(fields || data?.message || tooLarge || `${res.status} ${res.statusText}`);
  }
  return data;
}

// The error box of a control: its section's, form's or card's, else the page's first; never one
// folded away in a closed <details> (a form the user did not open), where nobody would see it.
const shown = (box) => !box.closest("details:not([open])");
const errorBox = (scope) => [...(scope.closest("section, form, .card")?.querySelectorAll("[data-error]") ?? [])].find(shown)
  ?? [...document.querySelectorAll("[data-error]")].find(shown);

function showError(scope, message) {
  const box = errorBox(scope);
  if (box) { box.textContent = message; box.hidden = false; } else { alert(message); }
  // An action that reports in the page's notice reports its refusal there too.
  if (scope.dataset?.announce) notify(`${scope.dataset.announce}: ${message}`, { kind: "error" });
}

// The page's notice (#notice): fixed at the bottom of the window, so an action's outcome shows
// where the user is even when its progress is elsewhere on the page. `href`: its run.
function notify(message, { kind = "", href = "" } = {}) {
  const box = document.getElementById("notice");
  if (!box) return;
  document.getElementById("notice-text").textContent = message;
  const link = document.getElementById("notice-link");
  link.hidden = !href;
  if (href) link.href = href;
  box.className = `toast ${kind}`.trim();
  box.hidden = false;
}
document.addEventListener("click", (ev) => {
  if (ev.target.closest("#notice-close")) document.getElementById("notice").hidden = true;
});

// What a finished run says, for the control that started it (`data-result` names how, and
// `data-result-into` the element that shows it): {text, kind}.
const results = {
  health(run) {
    const o = run.output ?? {};
    if (run.status !== "succeeded" || !o.status) {
      return { text: `The health check ${run.status}${run.error?.message ? `: ${run.error.message}` : ""}.`, kind: "unhealthy" };
    }
    const parts = [o.status.replace("_", " ")];
    if (o.latency_ms != null) parts.push(`${o.latency_ms} ms`);
    if (o.version) parts.push(`version ${o.version}`);
    if (o.error) parts.push(o.error);
    const at = run.finished_at ? ` (checked ${new Date(run.finished_at).toLocaleTimeString()})` : "";
    return { text: `Health: ${parts.join(" · ")}${at}`, kind: o.status === "healthy" ? "healthy" : "unhealthy" };
  },
};

// What to do when a run started by `el` ends: show its result and/or announce its outcome.
function onRunEnd(el, runId) {
  const into = el.dataset.resultInto ? document.getElementById(el.dataset.resultInto) : null;
  const result = results[el.dataset.result];
  const label = el.dataset.announce;
  if (into && result) { into.textContent = "Checking…"; into.className = "notice"; into.hidden = false; }
  if (label) notify(`${label} has started; this notice says how it ends.`, { href: `/runs/${runId}` });
  if (!(into && result) && !label) return undefined;
  return (run) => {
    if (into && result) {
      const r = result(run);
      into.textContent = r.text;
      into.className = `notice ${r.kind}`;
    }
    if (label) {
      const message = run.status === "succeeded" ? `${label} succeeded.`
        : run.status === "cancelled" ? `${label} was cancelled.`
        : `${label} ${run.status}${run.error?.message ? `: ${run.error.message}` : "."}`;
      notify(message, { kind: run.status === "succeeded" ? "succeeded" : "error", href: `/runs/${runId}` });
    }
  };
}

// A new attempt clears what the last one said: its error, and a "Saved." that is no longer news.
function clearMessages(scope) {
  const box = errorBox(scope);
  if (box) { box.hidden = true; box.textContent = ""; }
  for (const m of scope.querySelectorAll("[data-saved]")) m.hidden = true;
}

// A form's fields as JSON: checkboxes as booleans, numbers as numbers, multi-selects,
// comma- or newline-separated `data-list` fields and `data-list` checkbox groups (the values
// checked) as arrays, empty fields left out. Typed fields: `data-empty-null` sends an empty
// field as null, `data-cents` an amount in currency units as minor units, `data-json` its value
// parsed as JSON (the text when it is not), `data-datetime` a local date-time as an RFC 3339
// instant; `data-feature="key"` fields (of a plan's column) go to `features` (checkboxes as
// flags, numbers as limits, empty: null, unlimited).
function formBody(form) {
  const body = {};
  for (const el of form.elements) {
    if (el.dataset.feature !== undefined && !el.disabled) {
      body.features ??= {};
      body.features[el.dataset.feature] = el.type === "checkbox" ? el.checked : (el.value === "" ? null : Number(el.value));
      continue;
    }
    if (!el.name || el.disabled) continue;
    // `data-if-changed`: sent only when changed from what the page showed (a PATCH that tests a
    // connection when its URL is sent must not test it for an unchanged one).
    if (el.dataset.ifChanged !== undefined && !changed(el)) continue;
    if (el.dataset.emptyNull !== undefined && el.value === "") body[el.name] = null;
    else if (el.dataset.cents !== undefined) { if (el.value !== "") body[el.name] = Math.round(Number(el.value) * 100); }
    else if (el.dataset.json !== undefined) {
      if (el.value !== "") { try { body[el.name] = JSON.parse(el.value); } catch { body[el.name] = el.value; } }
    }
    else if (el.dataset.datetime !== undefined) { if (el.value !== "") body[el.name] = new Date(el.value).toISOString(); }
    else if (el.type === "checkbox" && el.dataset.list !== undefined) {
      body[el.name] ??= [];
      if (el.checked) body[el.name].push(el.value);
    }
    else if (el.type === "checkbox") body[el.name] = el.checked;
    else if (el.type === "number") { if (el.value !== "") body[el.name] = Number(el.value); }
    else if (el.multiple) body[el.name] = [...el.selectedOptions].map((o) => o.value);
    else if (el.dataset.list !== undefined) body[el.name] = el.value.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
    else if (el.value !== "") body[el.name] = el.value;
  }
  return body;
}

function changed(el) {
  if (el.tagName === "SELECT") return [...el.options].some((o) => o.selected !== o.defaultSelected);
  if (el.type === "checkbox") return el.checked !== el.defaultChecked;
  return el.value !== el.defaultValue;
}

// `data-query="a b"` on a form: those fields go in the URL's query string, not the body (the
// API's `?confirm=` of a delete).
function withQuery(url, body, names) {
  const q = new URLSearchParams();
  for (const name of names) {
    if (body[name] !== undefined) q.set(name, body[name]);
    delete body[name];
  }
  const query = q.toString();
  return query ? `${url}${url.includes("?") ? "&" : "?"}${query}` : url;
}

async function act(el, body) {
  let [method, url] = el.dataset.api.split(" ");
  if (el.dataset.query) url = withQuery(url, body, el.dataset.query.split(" "));
  el.setAttribute("aria-busy", "true");
  clearMessages(el);
  try {
    const data = await api(method, url, method === "DELETE" ? undefined : body);
    const then = el.dataset.then ?? "";
    if (then === "reload") { location.reload(); }
    else if (then === "watch" && data?.id) { watch(data.id, { refresh: true, onEnd: onRunEnd(el, data.id) }); }
    else if (then === "outcome" && data) {
      // A drift action's outcome: a run to follow, or an approval to wait for.
      const label = el.dataset.announce ?? el.textContent.trim();
      if (data.run?.id) watch(data.run.id, { refresh: true, onEnd: onRunEnd(el, data.run.id) });
      else if (data.result === "approval_required") {
        notify(`${label} needs another admin's approval: the request waits for their decision.`);
        refreshParts();
      } else refreshParts();
    }
    else if (then === "show-secret" && data?.secret) {
      document.getElementById("secret-value").textContent = data.secret;
      document.getElementById("secret").hidden = false;
    }
    else if (then === "redirect-url" && data?.url) { location.href = data.url; }
    else if (then.startsWith("go:")) { location.href = then.slice(3).replace("{id}", data?.id ?? ""); }
    else if (then === "saved") { const m = el.querySelector("[data-saved]"); if (m) { m.hidden = false; } }
    else if (then === "test-result" && data) {
      // A channel test: its answer in the row's "last test" cell, without a reload.
      const out = el.closest("tr")?.querySelector("[data-test-result]");
      if (out) { out.textContent = data.ok ? "ok" : (data.error ?? "failed"); out.className = `status ${data.ok ? "ok" : "error"}`; }
    }
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
  if (el.dataset.confirm && !confirm(el.dataset.confirm)) return;
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
  if (form.dataset.confirm && !confirm(form.dataset.confirm)) return;
  act(form, formBody(form));
});

// Following a run live (`#live`). With `refresh`, the page's server-rendered parts that the run
// changes (`[data-refresh]`, by id) are fetched again when the run ends, and when it parks
// waiting (a promotion's approval) after `since` (the cursor of its last event when the page
// was rendered: the stream replays what came before). Pages ask for it only for a run that was
// still going when they were rendered; a finished run's stream ends at once, and refreshing on
// that would repeat. A refresh never reloads the page nor opens another stream.
// `onEnd(run)`: called with the finished run (the API's view of it) when its stream ends.
let source = null;
function watch(runId, { refresh = false, since = "", onEnd = undefined } = {}) {
  const live = document.getElementById("live");
  if (!live) return;
  live.hidden = false;
  live.dataset.run = runId;
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  const status = document.getElementById("run-status");
  const log = document.getElementById("log");
  if (log) log.replaceChildren();
  for (const c of live.querySelectorAll("[data-cancel]")) c.hidden = false;
  if (source) source.close();
  source = new EventSource(`/api/v1/runs/${runId}/events`);
  source.onerror = () => checkConnection();
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
    const st = document.getElementById("run-status") ?? status;
    if (st) { st.textContent = s.status; st.className = `status ${s.status}`; }
    if (s.status === "succeeded" && bar) { bar.value = bar.max; if (text && !text.textContent) text.textContent = "100%"; }
    if (refresh && s.status === "waiting" && newer(e.lastEventId, since)) refreshParts();
  });
  source.addEventListener("end", (e) => {
    source.close();
    source = null;
    let reason = null;
    try { reason = JSON.parse(e.data || "{}").reason ?? null; } catch { reason = null; }
    if (reason) {
      // The session ended (expired, revoked), not the run.
      showError(live, "The live view stopped: your session has ended. Sign in again to follow the run.");
      return;
    }
    for (const c of document.querySelectorAll("button[data-cancel]")) c.hidden = true;
    if (refresh) refreshParts();
    if (onEnd) api("GET", `/api/v1/runs/${runId}`).then(onEnd).catch((err) => showError(live, err.message));
  });
}

// Whether the event cursor `id` ("tx-id") comes after `since` (none: everything is news).
function newer(id, since) {
  if (!since || !id) return true;
  const [a, b] = id.split("-").map(Number);
  const [c, d] = since.split("-").map(Number);
  return a > c || (a === c && b > d);
}

// Fetches the page again and swaps in its fresh `[data-refresh]` parts (one refresh at a time).
let refreshing = Promise.resolve();
function refreshParts() {
  refreshing = refreshing.then(async () => {
    try {
      const res = await fetch(location.href, { credentials: "same-origin", headers: { accept: "text/html" }, cache: "no-store" });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const el of document.querySelectorAll("[data-refresh][id]")) {
        const fresh = doc.getElementById(el.id);
        if (fresh) el.replaceWith(document.adoptNode(fresh));
      }
      const html = document.documentElement;
      html.dataset.refreshed = String(Number(html.dataset.refreshed ?? 0) + 1);
    } catch { /* the page stays as it was; the live view still shows the outcome */ }
  });
  return refreshing;
}

document.addEventListener("click", (ev) => {
  const el = ev.target.closest("button[data-cancel]");
  if (!el || el.disabled) return;
  const run = document.getElementById("live")?.dataset.run;
  clearMessages(el);
  if (run) api("POST", `/api/v1/runs/${run}/cancel`).catch((e) => showError(el, e.message));
});

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  const run = live?.dataset.run;
  if (run) watch(run, { refresh: live.dataset.refreshOnEnd !== undefined, since: live.dataset.since ?? "" });
});

// ---- the promotion wizard -------------------------------------------------------------------
function wizardBody() {
  const form = document.getElementById("wizard");
  const ids = [...form.querySelectorAll('input[name="workflow_ids"]:checked')].map((c) => c.value);
  const note = form.querySelector('input[name="note"]').value;
  const body = { pipeline_id: form.dataset.pipeline, stage_index: Number(form.dataset.stage), workflow_ids: ids };
  if (note) body.note = note;
  return body;
}

function cell(text, cls) {
  const td = document.createElement("td");
  const span = document.createElement("span");
  if (cls) span.className = cls;
  span.textContent = text ?? "";
  td.append(span);
  return td;
}

function renderPreview(p) {
  const out = document.getElementById("preview-result");
  out.replaceChildren();
  const table = document.createElement("table");
  table.id = "preview-table";
  table.innerHTML = "<thead><tr><th>Workflow</th><th>Status</th><th>Risk</th><th>What changed</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const i of p.items) {
    const tr = document.createElement("tr");
    tr.append(cell(i.name), cell(i.status, `diff ${i.status}`), cell(i.risk, `risk ${i.risk}`), cell(`${i.summary}${i.reasons?.length ? " — " + i.reasons.join("; ") : ""}`));
    body.append(tr);
  }
  table.append(body);
  const gates = document.createElement("ul");
  gates.className = "plain";
  gates.id = "preview-gates";
  for (const g of p.gates) {
    const li = document.createElement("li");
    li.append(cell(g.status, `gate ${g.status}`).firstChild, ` ${g.gate} — ${g.message}`);
    gates.append(li);
  }
  const verdict = document.createElement("p");
  verdict.id = "preview-verdict";
  verdict.className = p.blocked ? "error" : "";
  verdict.textContent = p.blocked ? "Blocked by a gate: fix it before promoting." : `Ready: overall risk ${p.risk}.`;
  const scroll = document.createElement("div");
  scroll.className = "scroll";
  scroll.append(table);
  out.append(verdict, scroll, gates);
  out.scrollIntoView({ block: "start" });
}

// A random key (crypto.randomUUID needs a secure context; getRandomValues does not).
function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// The wizard's Idempotency-Key for `body`: one per wizard page in the tab's history and per
// request, kept in its history entry. Back from the new promotion and Promote again sends the
// same key, and the API answers with the promotion already made instead of a second one; a
// different choice of workflows, or the wizard opened anew, is a new request with a new key.
function promotionKey(body) {
  const request = JSON.stringify(body);
  const kept = history.state?.promotionRequest;
  if (kept?.request === request) return kept.key;
  const key = `wizard-${randomKey()}`;
  history.replaceState({ ...(history.state ?? {}), promotionRequest: { request, key } }, "");
  return key;
}

async function createPromotion(body) {
  const res = await fetch("/api/v1/promotions", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf(), accept: "application/json", "idempotency-key": promotionKey(body) },
    body: JSON.stringify(body),
  });
  return answer(res);
}

document.addEventListener("click", async (ev) => {
  const preview = ev.target.closest("button[data-preview]");
  const promote = ev.target.closest("button[data-promote]");
  if ((!preview && !promote) || ev.target.disabled) return;
  ev.preventDefault();
  const el = preview ?? promote;
  if (el.getAttribute("aria-busy")) return;
  clearMessages(el);
  el.setAttribute("aria-busy", "true");
  try {
    if (preview) renderPreview(await api("POST", "/api/v1/promotions/preview", wizardBody()));
    else location.href = `/promotions/${(await createPromotion(wizardBody())).id}`;
  } catch (e) { showError(el, e.message); }
  finally { el.removeAttribute("aria-busy"); }
});

document.addEventListener("change", (ev) => {
  if (ev.target.id !== "select-all") return;
  for (const c of document.querySelectorAll('input[name="workflow_ids"]')) c.checked = ev.target.checked;
});

// ---- the pipeline editor (PIPE-006) ---------------------------------------------------------
// Environments are listed in promotion order (dev, staging, production); a new stage goes from
// where the last one ended to the next environment of the pipeline's provider. What the editor
// does not show (a stage's promotion window) is kept as it was.
const editor = () => document.getElementById("pipeline-editor");
const pipelineProvider = () => editor()?.querySelector('[name="provider"]')?.value ?? "n8n";

// The template's environments: [{id, name, provider}] in promotion order.
function editorEnvironments() {
  const tpl = document.getElementById("stage-template");
  return [...(tpl?.content.querySelectorAll('[data-field="source_environment_id"] option') ?? [])]
    .map((o) => ({ id: o.value, name: o.dataset.name, provider: o.dataset.provider }));
}

// Offers only the pipeline provider's environments in a stage's selects.
function limitToProvider(node) {
  const provider = pipelineProvider();
  for (const o of node.querySelectorAll("[data-field$=_environment_id] option")) {
    const other = o.dataset.provider !== provider;
    o.hidden = other;
    o.disabled = other;
  }
}

function stageDefaults(node) {
  const envs = editorEnvironments().filter((e) => e.provider === pipelineProvider());
  if (!envs.length) return;
  const last = [...document.querySelectorAll("#stages fieldset.stage")].pop();
  const after = last?.querySelector('[data-field="target_environment_id"]').value;
  const from = envs.findIndex((e) => e.id === after);
  const source = envs[from >= 0 ? from : 0];
  const target = envs.slice(envs.indexOf(source) + 1)[0] ?? envs.find((e) => e.id !== source.id) ?? source;
  node.querySelector('[data-field="source_environment_id"]').value = source.id;
  node.querySelector('[data-field="target_environment_id"]').value = target.id;
}

function addStage(stage) {
  const tpl = document.getElementById("stage-template");
  const node = tpl.content.firstElementChild.cloneNode(true);
  limitToProvider(node);
  if (stage) {
    node.querySelector('[data-field="source_environment_id"]').value = stage.source_environment_id;
    node.querySelector('[data-field="target_environment_id"]').value = stage.target_environment_id;
    node.querySelector('[data-field="approvals"]').value = stage.approvals?.required ?? 0;
    const roles = stage.approvals?.roles ?? ["admin"];
    for (const c of node.querySelectorAll("[data-approval-role]")) c.checked = roles.includes(c.dataset.approvalRole);
    node.querySelector('[data-field="allow_self_approval"]').checked = !!stage.approvals?.allow_self_approval;
    for (const [k, v] of Object.entries(stage.gates ?? {})) {
      const el = node.querySelector(`[data-gate="${k}"]`);
      if (!el) continue;
      if (el.type === "checkbox") el.checked = !!v; else el.value = v ?? "";
    }
    for (const [k, v] of Object.entries(stage.policy ?? {})) {
      const el = node.querySelector(`[data-policy="${k}"]`);
      if (el) el.checked = !!v;
    }
    if (stage.window) {
      node.dataset.window = JSON.stringify(stage.window);
      const note = node.querySelector(".window-note");
      const w = stage.window;
      note.textContent = `Promotions run ${w.days.join(", ")} ${w.start}–${w.end} (${w.timezone ?? "UTC"}); the API changes this window.`;
      note.hidden = false;
    }
  } else {
    stageDefaults(node);
  }
  document.getElementById("stages").append(node);
}

function pipelineBody(form) {
  const stages = [...form.querySelectorAll("#stages fieldset.stage")].map((f) => {
    const gates = {};
    for (const el of f.querySelectorAll("[data-gate]")) {
      if (el.type === "checkbox") gates[el.dataset.gate] = el.checked;
      else if (el.value) gates[el.dataset.gate] = el.value;
    }
    const policy = {};
    for (const el of f.querySelectorAll("[data-policy]")) policy[el.dataset.policy] = el.checked;
    const required = Number(f.querySelector('[data-field="approvals"]').value || 0);
    const roles = [...f.querySelectorAll("[data-approval-role]:checked")].map((c) => c.dataset.approvalRole);
    const allow_self_approval = f.querySelector('[data-field="allow_self_approval"]').checked;
    const stage = {
      source_environment_id: f.querySelector('[data-field="source_environment_id"]').value,
      target_environment_id: f.querySelector('[data-field="target_environment_id"]').value,
      gates, policy, approvals: { required, roles, allow_self_approval },
    };
    if (f.dataset.window) stage.window = JSON.parse(f.dataset.window);
    return stage;
  });
  const body = {
    name: form.querySelector('[name="name"]').value,
    provider: form.querySelector('[name="provider"]').value,
    active: form.querySelector('[name="active"]').checked,
    stages,
  };
  const d = form.querySelector('[name="description"]').value;
  if (d) body.description = d;
  return body;
}

// What is wrong with the stages before asking the API (the API checks it all again).
function stageProblems(body) {
  const envs = new Map(editorEnvironments().map((e) => [e.id, e]));
  const name = new Map([...envs].map(([id, e]) => [id, e.name]));
  const problems = [];
  body.stages.forEach((s, i) => {
    const other = [s.source_environment_id, s.target_environment_id].find((id) => envs.get(id)?.provider !== body.provider);
    if (other !== undefined) {
      problems.push(other && name.has(other)
        ? `stage ${i + 1}: ${name.get(other)} is not a ${body.provider} environment`
        : `stage ${i + 1}: no ${body.provider} environment to pick; connect two first`);
    }
    else if (s.source_environment_id === s.target_environment_id) {
      problems.push(`stage ${i + 1}: From and To are both ${name.get(s.source_environment_id) ?? "the same environment"}; pick another target`);
    }
    if (s.approvals.required > 0 && !s.approvals.roles.length) {
      problems.push(`stage ${i + 1}: say which roles may approve`);
    }
  });
  if (!body.stages.length) problems.push("add a stage");
  return problems;
}

// The API names stages by index and environments by id: the editor shows numbers and names.
function editorMessage(message) {
  const name = new Map(editorEnvironments().map((e) => [e.id, e.name]));
  return message
    .replace(/stages\[(\d+)\](?:\.([\w.]+))?/g, (_, i, rest) => `stage ${Number(i) + 1}${rest ? ` ${rest.replace(/[._]/g, " ")}` : ""}`)
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, (id) => name.get(id.toLowerCase()) ?? id);
}

document.addEventListener("click", (ev) => {
  if (ev.target.matches?.(":disabled")) return;
  if (ev.target.id === "add-stage") { addStage(); return; }
  if (ev.target.classList.contains("remove-stage")) { ev.target.closest("fieldset").remove(); return; }
  const edit = ev.target.closest("button[data-edit-pipeline]");
  if (!edit || edit.disabled) return;
  const doc = JSON.parse(edit.dataset.json);
  const form = editor();
  form.dataset.method = "PUT";
  form.dataset.url = `/api/v1/pipelines/${edit.dataset.editPipeline}`;
  clearMessages(form);
  document.getElementById("editor-title").textContent = `Edit ${doc.name}`;
  form.querySelector('[name="name"]').value = doc.name;
  form.querySelector('[name="description"]').value = doc.description ?? "";
  const provider = form.querySelector('[name="provider"]');
  provider.value = doc.provider;
  // A pipeline keeps its provider: its stages are that provider's environments.
  provider.disabled = true;
  provider.title = "a pipeline keeps its provider";
  form.querySelector('[name="active"]').checked = doc.active !== false;
  document.getElementById("stages").replaceChildren();
  for (const s of doc.stages) addStage(s);
  form.scrollIntoView();
});

// Another provider: its environments, and stages that start over from them.
document.addEventListener("change", (ev) => {
  if (ev.target.id !== "pipeline-provider") return;
  const stages = document.getElementById("stages");
  stages.replaceChildren();
  addStage();
});

document.addEventListener("submit", async (ev) => {
  const form = ev.target.closest("#pipeline-editor");
  if (!form) return;
  ev.preventDefault();
  clearMessages(form);
  const body = pipelineBody(form);
  const problems = stageProblems(body);
  if (problems.length) { showError(form, problems.join("; ")); return; }
  try {
    await api(form.dataset.method, form.dataset.url, body);
    location.reload();
  } catch (e) { showError(form, editorMessage(e.message)); }
});

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("stages") && !document.querySelector("#stages fieldset")) addStage();
});

// ---- snapshots: restore preview and comparison ----------------------------------------------
function renderChanges(title, counts, changes) {
  const out = document.getElementById("shown");
  out.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = title;
  const p = document.createElement("p");
  p.textContent = counts;
  const ul = document.createElement("ul");
  ul.className = "plain";
  for (const c of changes) {
    const li = document.createElement("li");
    li.textContent = `${c.name ?? c.id}: ${c.action}${c.summary ? " — " + c.summary : ""}${c.risk ? ` (risk ${c.risk.level})` : ""}`;
    ul.append(li);
  }
  out.append(h, p, ul);
  out.scrollIntoView({ block: "nearest" });
}

document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("button[data-show]");
  if (!el) return;
  ev.preventDefault();
  clearMessages(el);
  try {
    const d = await api("GET", el.dataset.show);
    if ("diff" in d && "summary" in d) {
      renderChanges(`Git → ${d.status}`, `${d.summary} (risk ${d.risk.level}${d.risk.reasons.length ? ": " + d.risk.reasons.join("; ") : ""})`, []);
    } else if ("update" in d) {
      renderChanges("Restore preview", `${d.update} to update, ${d.create} to create, ${d.unchanged} unchanged; ${d.not_in_snapshot.length} not in the snapshot (left alone)`, d.changes);
    } else {
      const changes = d.diffs.concat(d.added.map((w) => ({ ...w, action: "added" })), d.removed.map((w) => ({ ...w, action: "removed" })));
      renderChanges("Comparison", `${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`, changes);
    }
  } catch (e) { showError(el, e.message); }
});

// Fields that apply to one kind of thing only (a notification channel's URL, recipients or
// signing secret): the others are hidden and disabled, so they are neither seen nor sent.
function showKind(select) {
  for (const el of select.form.querySelectorAll("[data-kinds]")) {
    const on = el.dataset.kinds.split(" ").includes(select.value);
    el.hidden = !on;
    for (const input of el.querySelectorAll("input, textarea, select")) input.disabled = !on;
  }
}
document.addEventListener("change", (ev) => {
  const select = ev.target.closest("select[data-kind-select]");
  if (select) showKind(select);
});
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select[data-kind-select]")) showKind(select);
});

// Role changes on the team page.
document.addEventListener("change", async (ev) => {
  const sel = ev.target.closest("select[data-member]");
  if (!sel) return;
  clearMessages(sel);
  try { await api("PATCH", `/api/v1/team/members/${sel.dataset.member}`, { role: sel.value }); }
  catch (e) { showError(sel, e.message); location.reload(); }
});

// Bulk actions on the workflows of one environment (BULK-004/005).
document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("button[data-bulk]");
  if (!el || el.disabled) return;
  ev.preventDefault();
  const form = document.getElementById("bulk");
  const ids = [...document.querySelectorAll('input[name="workflow_ids"]:checked')].map((c) => c.value);
  clearMessages(el);
  try {
    const out = await api("POST", `/api/v1/environments/${form.dataset.environment}/workflows/bulk-actions`,
      { action: form.querySelector('[name="action"]').value, workflow_ids: ids });
    const msg = document.getElementById("bulk-message");
    if (out.run) { msg.textContent = `Started on ${ids.length} workflow(s).`; watch(out.run.id, { refresh: true }); }
    else msg.textContent = `${out.requests.length} approval request(s) created: another admin decides.`;
  } catch (e) { showError(el, e.message); }
});

// Upload workflow JSON (one workflow, an array, or n8n's {workflows: [...]}) (WF-009).
document.addEventListener("change", async (ev) => {
  const input = ev.target.closest("input[data-upload]");
  if (!input || !input.files.length) return;
  clearMessages(input);
  try {
    const doc = JSON.parse(await input.files[0].text());
    const workflows = Array.isArray(doc) ? doc : (doc.workflows ?? [doc]);
    await api("POST", input.dataset.upload, { workflows });
    location.reload();
  } catch (e) { showError(input, e.message); }
});

// Onboarding untracked workflows from the matrix page (CAN-009/010).
document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("button[data-onboard]");
  if (!el || el.disabled) return;
  ev.preventDefault();
  const items = [...document.querySelectorAll('#onboard input[name="workflow_ids"]:checked')].map((c) => {
    const [environment_id, workflow_id] = c.value.split("/");
    return { environment_id, workflow_id };
  });
  clearMessages(el);
  try {
    const run = await api("POST", "/api/v1/canonical/onboard", { items });
    watch(run.id, { refresh: true });
  } catch (e) { showError(el, e.message); }
});

// The header's Menu button (narrow screens, see app.css): shows or hides the links.
document.addEventListener("click", (ev) => {
  const toggle = ev.target.closest("#menu-toggle");
  if (!toggle) return;
  const open = toggle.closest("header").classList.toggle("open");
  toggle.setAttribute("aria-expanded", String(open));
});

// The connection indicator (HEALTH-003): /readyz every 20 s, and when a live stream breaks.
async function checkConnection() {
  const el = document.getElementById("connection");
  if (!el) return;
  let ok = false;
  try { ok = (await fetch("/readyz", { cache: "no-store" })).ok; } catch { ok = false; }
  el.textContent = ok ? "● connected" : "● connection lost — retrying";
  el.className = `connection ${ok ? "ok" : "lost"}`;
}
setInterval(checkConnection, 20000);
document.addEventListener("DOMContentLoaded", checkConnection);

// The platform console: a select that applies itself (the top tenants' metric), and the
// Impersonate button of a user's row, which opens the form asking why and for how long
// (PLAT-013). The form posts natively: the server switches this browser's session cookies.
document.addEventListener("change", (ev) => {
  const select = ev.target.closest("select[data-autosubmit]");
  if (select?.form) select.form.requestSubmit();
});
document.addEventListener("click", (ev) => {
  const el = ev.target.closest("button[data-impersonate]");
  if (!el || el.disabled) return;
  const dialog = document.getElementById("impersonate-dialog");
  if (!dialog) return;
  const form = dialog.querySelector("form");
  form.elements.user_id.value = el.dataset.impersonate;
  dialog.querySelector("[data-target]").textContent = el.dataset.email ?? "";
  dialog.showModal();
  form.elements.reason.focus();
});
document.addEventListener("click", (ev) => {
  const el = ev.target.closest("button[data-close-dialog]");
  if (el) el.closest("dialog")?.close();
});

// Support tickets: a file chosen for a ticket is sent as it is (its bytes as the body, its type
// as Content-Type, its name as ?filename=), then the page shows it in the ticket's files.
document.addEventListener("change", async (ev) => {
  const input = ev.target.closest("input[type=file][data-attach]");
  if (!input || !input.files.length) return;
  const file = input.files[0];
  const progress = input.closest("section")?.querySelector("[data-attach-progress]");
  const box = input.closest("section")?.querySelector("[data-error]");
  if (box) box.hidden = true;
  if (progress) progress.hidden = false;
  input.disabled = true;
  try {
    await answer(await fetch(`${input.dataset.attach}?filename=${encodeURIComponent(file.name)}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": file.type || "application/octet-stream", "x-csrf-token": csrf(), accept: "application/json" },
      body: file,
    }));
    location.reload();
  } catch (e) {
    showError(input, `Could not attach ${file.name}: ${e.message}`);
    input.value = "";
  } finally {
    input.disabled = false;
    if (progress) progress.hidden = true;
  }
});

// Plans & billing: the upcoming invoice of a subscription (BILL-010), fetched when asked for and
// shown under its button: each line, then the total and when it is due.
const money = (cents, currency) => {
  try { return new Intl.NumberFormat(undefined, { style: "currency", currency: (currency || "usd").toUpperCase() }).format(cents / 100); }
  catch { return `${(cents / 100).toFixed(2)} ${(currency || "").toUpperCase()}`; }
};
document.addEventListener("click", async (ev) => {
  const el = ev.target.closest("button[data-upcoming]");
  if (!el || el.disabled) return;
  ev.preventDefault();
  const out = el.closest("section")?.querySelector("[data-upcoming-out]");
  if (!out) return;
  el.setAttribute("aria-busy", "true");
  clearMessages(el);
  try {
    const inv = await api("GET", el.dataset.upcoming);
    const table = document.createElement("table");
    table.className = "upcoming-invoice";
    table.innerHTML = "<thead><tr><th>Upcoming invoice</th><th>Amount</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const line of inv.lines ?? []) {
      const tr = document.createElement("tr");
      tr.append(cell(line.description ?? ""), cell(money(line.amount, inv.currency)));
      body.append(tr);
    }
    const total = document.createElement("tr");
    const end = typeof inv.period_end === "number" ? new Date(inv.period_end * 1000) : (inv.period_end ? new Date(inv.period_end) : null);
    const due = end ? ` (period ending ${end.toLocaleDateString()})` : "";
    total.append(cell(`Total${due}`, "strong"), cell(money(inv.amount_due ?? inv.total, inv.currency), "strong"));
    body.append(total);
    table.append(body);
    out.replaceChildren(table);
    out.hidden = false;
  } catch (e) { showError(el, e.message); }
  finally { el.removeAttribute("aria-busy"); }
});
