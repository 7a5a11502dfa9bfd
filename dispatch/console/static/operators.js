// The operators page (admins): add an operator, and per operator change the display name and
// role, disable or enable, reset the password. It follows the live stream: another admin's
// change appears at once, except over what this admin is typing, which is kept.
"use strict";

(() => {
  // admin.js (loaded first) lends its helpers.
  const { $, $$, C, t, esc, api, L, show, field, enc } = window.ConsoleAdmin.kit;
  const isAdmin = () => (C().me() || {}).role === "admin";
  let shownOps = [];  // the records the rows were drawn from

  function known(record) {
    shownOps = shownOps.map((o) => (o.username === record.username ? record : o));
  }

  async function renderOperatorsPage() {
    const el = show("operators-view", "operators");
    if (!isAdmin()) { el.innerHTML = `<p class="muted">${L("adm_operators_only_admin")}</p>`; return; }
    el.innerHTML = `<div class="view-head"><h2>${L("adm_operators")}</h2></div>
      <form id="adm-op-add" class="card inline-form">
        <h3>${L("adm_add_operator")}</h3>
        ${field("username", "adm_username", "", 'required minlength="2" maxlength="64" pattern="[A-Za-z0-9_.@\\-]+" autocomplete="off"')}
        ${field("display_name", "adm_display_name", "", 'maxlength="200"')}
        <label><span data-i18n="adm_role">${esc(t("adm_role"))}</span><select name="role" required>
          <option value="" data-i18n="adm_choose_role">${esc(t("adm_choose_role"))}</option>
          ${["operator", "supervisor", "admin"].map((r) => `<option value="${r}" data-i18n="role_${r}">${esc(t(`role_${r}`))}</option>`).join("")}
        </select></label>
        ${field("password", "adm_password", "", 'type="password" required minlength="8" autocomplete="new-password"')}
        <button type="submit">${L("adm_add_operator")}</button>
        <span id="adm-op-status" role="status"></span>
      </form>
      <p id="adm-op-error" class="error" role="alert"></p>
      <table class="adm-table"><thead><tr><th>${L("adm_username")}</th><th>${L("adm_display_name")}</th>
        <th>${L("adm_role")}</th><th>${L("adm_status")}</th><th>${L("adm_reset_password")}</th><th></th></tr></thead>
        <tbody id="adm-op-body"></tbody></table>`;
    $("#adm-op-add").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      $("#adm-op-error").textContent = "";
      if (!form.checkValidity()) {
        const bad = form.querySelector(":invalid");
        $("#adm-op-error").textContent = `${t("adm_error")}: ${bad.closest("label").querySelector("span").textContent} — ${bad.validationMessage}`;
        return;
      }
      const f = form.elements;
      try {
        await api("POST", "/api/v1/operators", { username: f.username.value.trim(),
          display_name: f.display_name.value.trim(), role: f.role.value, password: f.password.value });
        form.reset();
        $("#adm-op-status").textContent = t("adm_operator_added");
        await loadOperators();
      } catch (e) { $("#adm-op-error").textContent = `${t("adm_error")}: ${e.message}`; }
    });
    await loadOperators();
  }

  async function loadOperators() {
    const ops = await api("GET", "/api/v1/operators");
    // The answer may come after the admin began typing in a row: what is typed is drawn back.
    const typed = $$("#adm-op-body tr").filter(typedIn).map((tr) => ({ user: tr.dataset.username,
      values: ["display_name", "role", "password"].map((n) => [n, tr.querySelector(`[name="${n}"]`).value]) }));
    const active = document.activeElement;
    const focus = active && active.closest("#adm-op-body tr") ? [active.closest("tr").dataset.username, active.name] : null;
    shownOps = ops;
    $("#adm-op-body").innerHTML = ops.map((o) => `<tr data-username="${esc(o.username)}">
        <td>${esc(o.username)}</td>
        <td><input name="display_name" value="${esc(o.display_name)}" maxlength="200" aria-label="${esc(t("adm_display_name"))} ${esc(o.username)}"></td>
        <td><select name="role" aria-label="${esc(t("adm_role"))} ${esc(o.username)}">${["operator", "supervisor", "admin"].map((r) =>
          `<option value="${r}" ${r === o.role ? "selected" : ""} data-i18n="role_${r}">${esc(t(`role_${r}`))}</option>`).join("")}</select>
          <button type="button" class="small adm-op-save">${L("save")}</button></td>
        <td><span class="${o.disabled ? "bad" : "ok"}">${esc(t(o.disabled ? "adm_disabled" : "adm_enabled"))}</span>
          <button type="button" class="small secondary adm-op-toggle">${L(o.disabled ? "adm_enable" : "adm_disable")}</button></td>
        <td><input name="password" type="password" minlength="8" autocomplete="new-password" aria-label="${esc(t("adm_new_password"))} ${esc(o.username)}"
          data-i18n-placeholder="adm_new_password" placeholder="${esc(t("adm_new_password"))}">
          <button type="button" class="small secondary adm-op-password">${L("adm_reset_password")}</button></td>
        <td class="adm-op-result" role="status"></td></tr>`).join("");
    $$("#adm-op-body tr").forEach((tr) => {
      const user = tr.dataset.username;
      const result = tr.querySelector(".adm-op-result");
      const patch = async (body, done) => {
        result.textContent = "";
        result.className = "adm-op-result";
        try {
          const saved = await api("PATCH", `/api/v1/operators/${enc(user)}`, body);
          known(saved);
          if (done) { result.textContent = done; return; }
          await loadOperators();
        } catch (e) { result.textContent = `${t("adm_error")}: ${e.message}`; result.classList.add("error"); }
      };
      tr.querySelector(".adm-op-save").addEventListener("click", () => {
        // Only what changed, so the audit log says what was done.
        const was = ops.find((o) => o.username === user);
        const body = {};
        const name = tr.querySelector('[name="display_name"]').value.trim();
        const role = tr.querySelector('[name="role"]').value;
        if (name !== was.display_name) body.display_name = name;
        if (role !== was.role) body.role = role;
        patch(body, t("adm_saved"));
      });
      tr.querySelector(".adm-op-toggle").addEventListener("click", () => patch({
        disabled: !ops.find((o) => o.username === user).disabled }));
      tr.querySelector(".adm-op-password").addEventListener("click", () => {
        const input = tr.querySelector('[name="password"]');
        if (input.value.length < 8) { result.textContent = `${t("adm_error")}: ${t("adm_new_password")}`; result.classList.add("error"); return; }
        patch({ password: input.value }, t("adm_password_reset")).then(() => { input.value = ""; });
      });
    });
    for (const { user, values } of typed) {
      const tr = $$("#adm-op-body tr").find((r) => r.dataset.username === user);
      if (tr) values.forEach(([n, v]) => { tr.querySelector(`[name="${n}"]`).value = v; });
    }
    if (focus) {
      const tr = $$("#adm-op-body tr").find((r) => r.dataset.username === focus[0]);
      const el = tr && tr.querySelector(`[name="${focus[1]}"]`);
      if (el) el.focus();
    }
    document.body.dataset.operatorsLoaded = String(Date.now());
  }

  // What the person has typed in a row that its record does not say (a password typed counts).
  function typedIn(tr) {
    const was = shownOps.find((o) => o.username === tr.dataset.username);
    if (!was) return false;
    return tr.querySelector('[name="display_name"]').value.trim() !== was.display_name
      || tr.querySelector('[name="role"]').value !== was.role
      || tr.querySelector('[name="password"]').value !== "";
  }

  const sameOperator = (a, b) => a.display_name === b.display_name && a.role === b.role && a.disabled === b.disabled;

  // Another admin's change: the table is drawn again from the server unless something is being
  // typed in it; then the changed row says what changed, and nothing typed is touched.
  function operatorChanged(record) {
    if (!$("#adm-op-body") || $("#operators-view").classList.contains("hidden")) return;
    const was = shownOps.find((o) => o.username === record.username);
    if (was && sameOperator(was, record)) { known(record); return; }
    const rows = $$("#adm-op-body tr");
    const tr = rows.find((r) => r.dataset.username === record.username);
    // A save of this page's own that the stream brought first: the row already says it.
    if (tr && was && tr.querySelector('[name="display_name"]').value.trim() === record.display_name
      && tr.querySelector('[name="role"]').value === record.role && was.disabled === record.disabled) { known(record); return; }
    if (!rows.some(typedIn)) { loadOperators().catch(() => {}); return; }
    if (!tr) return;  // a new operator is listed once the typing is done (the next draw)
    known(record);
    const result = tr.querySelector(".adm-op-result");
    result.className = "adm-op-result changed";
    result.textContent = `${t("adm_operator_changed")} ${record.display_name} · ${t(`role_${record.role}`)} · ${
      t(record.disabled ? "adm_disabled" : "adm_enabled")}`;
  }

  window.addEventListener("console:change", (ev) => {
    const change = ev.detail.change;
    if (change && change.topic === "operator" && change.data && change.data.username) operatorChanged(change.data);
  });

  window.ConsoleOperators = { render: renderOperatorsPage };
})();
