// WorkflowOps web UI: team, invitations and approvals (beside app.js, self-contained).
// - the nav's count of workflow actions waiting for a decision;
// - the invitation page: its token comes from the URL's fragment, which browsers never send,
//   and is posted in a form body, so it reaches no server log;
// - the Team page: an invitation's accept link shown (copyable) with whether it was emailed,
//   role changes confirmed and acknowledged, new API keys listed at once;
// - a workflow's actions: one that policy holds for another admin says so and links to it.
"use strict";
(() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

  // The API's answer as {status, data}; an Error with what it refused (its field errors or
  // message) when it did.
  async function call(method, url, body) {
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
    return { status: res.status, data };
  }

  // The error box of the element's card (hidden again by `clearError`).
  const errorBox = (el) => el.closest("section, form, .card")?.querySelector("[data-error]");
  function showError(el, message) {
    const box = errorBox(el);
    if (box) { box.textContent = message; box.hidden = false; } else { alert(message); }
  }
  function clearError(el) {
    const box = errorBox(el);
    if (box) box.hidden = true;
  }

  // An instant as the pages print it: "2025-01-31 14:05 UTC".
  const utc = (iso) => `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;

  function td(text) {
    const cell = document.createElement("td");
    cell.textContent = text ?? "";
    return cell;
  }

  // A new row in a table, in place of its "none yet" row.
  function prepend(tbody, tr) {
    tbody.querySelector("tr[data-empty]")?.remove();
    tbody.prepend(tr);
  }

  // ---- the nav: requests waiting for a decision ------------------------------------------------
  async function countPending() {
    const badge = document.getElementById("pending-approvals");
    if (!badge) return;
    try {
      const res = await fetch("/approvals/pending-count", { credentials: "same-origin", cache: "no-store", headers: { accept: "application/json" } });
      const n = res.ok ? (await res.json()).pending : 0;
      badge.textContent = n > 0 ? String(n) : "";
      badge.hidden = !(n > 0);
    } catch { badge.hidden = true; }
  }

  // ---- the invitation page -----------------------------------------------------------------------
  const tokenInFragment = () => {
    try { return decodeURIComponent(location.hash.replace(/^#/, "")).trim(); } catch { return ""; }
  };

  // Posts the token to open its invitation: in the page's form when it has one, else in a new
  // one (the page already shows an invitation, and another link was opened in its tab).
  function submitToken(token) {
    let form = document.getElementById("open-invitation");
    if (!form) {
      form = document.createElement("form");
      form.method = "post";
      form.action = "/invitations/accept";
      form.hidden = true;
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "token";
      input.id = "invitation-token";
      form.append(input);
      document.body.append(form);
    }
    form.querySelector("#invitation-token").value = token;
    form.submit();
  }

  function openInvitation() {
    if (!document.getElementById("open-invitation")) return;
    const token = tokenInFragment();
    if (token) submitToken(token); else document.getElementById("no-token").hidden = false;
  }

  // A link that differs only in its fragment does not load a page: open its invitation here.
  window.addEventListener("hashchange", () => {
    const token = tokenInFragment();
    if (token && document.body.dataset.invitationPage !== undefined) submitToken(token);
  });

  document.addEventListener("DOMContentLoaded", () => {
    openInvitation();
    countPending();
  });

  // ---- inviting ------------------------------------------------------------------------------------
  function showInvitation(created) {
    const inv = created.invitation;
    document.getElementById("invited-email").textContent = inv.email;
    document.getElementById("invited-expires").textContent = utc(inv.expires_at);
    document.getElementById("invite-link").value = created.accept_url;
    document.getElementById("copy-status").hidden = true;
    const mail = document.getElementById("invite-email-status");
    mail.className = created.email_sent ? "" : "error";
    mail.textContent = created.email_sent
      ? `The link was emailed to ${inv.email}.`
      : `Not emailed: ${created.email_error ?? "unknown reason"}. Send the link to ${inv.email} yourself.`;
    document.getElementById("invite-result").hidden = false;

    const tbody = document.querySelector("#invitations tbody");
    if (!tbody) return;
    const tr = document.createElement("tr");
    tr.id = `invitation-${inv.id}`;
    tr.append(td(inv.email), td(inv.role), td(utc(inv.expires_at)), td(tbody.closest("table").dataset.me));
    const cell = document.createElement("td");
    const revoke = document.createElement("button");
    revoke.className = "secondary";
    revoke.textContent = "Revoke";
    revoke.dataset.revokeInvitation = "";
    // Handled by app.js, as the rows the page was rendered with.
    revoke.dataset.api = `DELETE /api/v1/team/invitations/${inv.id}`;
    revoke.dataset.then = "reload";
    revoke.dataset.confirm = `Revoke the invitation of ${inv.email}? Its link stops working.`;
    cell.append(revoke);
    tr.append(cell);
    prepend(tbody, tr);
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form#invite");
    if (!form) return;
    ev.preventDefault();
    const button = form.querySelector("button[type=submit]");
    if (button?.disabled) return;
    clearError(form);
    button?.setAttribute("aria-busy", "true");
    try {
      const { data } = await call("POST", "/api/v1/team/invitations",
        { email: form.elements.email.value.trim(), role: form.elements.role.value });
      showInvitation(data);
      form.elements.email.value = "";
    } catch (e) {
      showError(form, e.message);
    } finally {
      button?.removeAttribute("aria-busy");
    }
  });

  document.addEventListener("click", async (ev) => {
    if (ev.target.id !== "copy-invite-link") return;
    const input = document.getElementById("invite-link");
    let copied = false;
    try {
      await navigator.clipboard.writeText(input.value);
      copied = true;
    } catch {
      // Not a secure context, or no permission: the selection and the browser's own copy.
      input.select();
      copied = document.execCommand?.("copy") ?? false;
    }
    const status = document.getElementById("copy-status");
    status.textContent = copied ? "Copied." : "Select the link and copy it.";
    status.hidden = false;
  });

  // ---- roles -----------------------------------------------------------------------------------------
  document.addEventListener("change", async (ev) => {
    const sel = ev.target.closest("select[data-member-role]");
    if (!sel) return;
    const was = sel.dataset.current;
    const role = sel.value;
    const status = document.getElementById("role-status");
    status.hidden = true;
    clearError(sel);
    if (!confirm(`Change the role of ${sel.dataset.email} from ${was} to ${role}?`)) {
      sel.value = was;
      return;
    }
    sel.disabled = true;
    try {
      await call("PATCH", `/api/v1/team/members/${sel.dataset.memberRole}`, { role });
      sel.dataset.current = role;
      status.textContent = `Saved: ${sel.dataset.email} is now ${role}.`;
      status.hidden = false;
      // Your own role: what the page lets you do has changed with it.
      if (sel.dataset.self !== undefined) setTimeout(() => location.reload(), 800);
    } catch (e) {
      sel.value = was;
      showError(sel, e.message);
    } finally {
      sel.disabled = false;
    }
  });

  // ---- API keys --------------------------------------------------------------------------------------
  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form#new-key");
    if (!form) return;
    ev.preventDefault();
    clearError(form);
    try {
      const { data } = await call("POST", "/api/v1/api-keys",
        { name: form.elements.name.value, role: form.elements.role.value });
      document.getElementById("secret-value").textContent = data.secret;
      document.getElementById("secret").hidden = false;
      const k = data.key;
      const tr = document.createElement("tr");
      const code = document.createElement("code");
      code.textContent = `${k.prefix}…`;
      const keyCell = document.createElement("td");
      keyCell.append(code);
      tr.append(td(k.name), keyCell, td(k.role), td("never"), td(k.expires_at ? k.expires_at.slice(0, 10) : "—"));
      const cell = document.createElement("td");
      const revoke = document.createElement("button");
      revoke.className = "secondary";
      revoke.textContent = "Revoke";
      revoke.dataset.api = `DELETE /api/v1/api-keys/${k.id}`;
      revoke.dataset.then = "reload";
      revoke.dataset.confirm = `Revoke ${k.name}? Clients using it stop working at once.`;
      cell.append(revoke);
      tr.append(cell);
      const tbody = document.querySelector("#keys tbody");
      if (tbody) prepend(tbody, tr);
      form.elements.name.value = "";
    } catch (e) {
      showError(form, e.message);
    }
  });

  // ---- workflow actions --------------------------------------------------------------------------
  document.addEventListener("click", async (ev) => {
    const el = ev.target.closest("button[data-workflow-action]");
    if (!el || el.disabled) return;
    ev.preventDefault();
    clearError(el);
    const reason = document.getElementById("action-reason")?.value.trim();
    const body = { action: el.dataset.workflowAction };
    if (reason) body.reason = reason;
    el.setAttribute("aria-busy", "true");
    try {
      const { status, data } = await call("POST", el.dataset.url, body);
      if (status === 202 && data?.request) {
        // Held by policy: nothing happened yet; another admin decides on the Approvals page.
        const box = document.getElementById("approval-requested");
        box.replaceChildren(
          `Approval requested from another admin: ${data.request.action} waits for their decision. `);
        const link = document.createElement("a");
        link.href = `/approvals#request-${data.request.id}`;
        link.id = "approval-link";
        link.textContent = "See the request";
        box.append(link);
        box.hidden = false;
        el.disabled = true;
        el.title = "approval requested";
        countPending();
      } else {
        location.reload();
      }
    } catch (e) {
      showError(el, e.message);
    } finally {
      el.removeAttribute("aria-busy");
    }
  });
})();
