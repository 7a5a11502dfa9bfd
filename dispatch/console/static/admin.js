// Administration pages of the console: households (list, card, editor, away, archive, notes,
// history, enroll codes); the operators and gateways pages (operators.js, gateways.js) borrow
// this module's helpers through window.ConsoleAdmin.kit. app.js owns the page; it hands each
// route here first (window.ConsoleAdmin.route) and lends its helpers through window.Console. Static labels carry data-i18n, so a change of language
// relabels them without rebuilding a form somebody is typing in.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const C = () => window.Console;
  const t = (key) => C().t(key);
  const esc = (text) => C().esc(text);
  const api = (method, path, body) => C().api(method, path, body);
  const me = () => C().me() || {};
  const isSupervisor = () => ["supervisor", "admin"].includes(me().role);
  const isAdmin = () => me().role === "admin";
  const L = (key) => `<span data-i18n="${key}">${esc(t(key))}</span>`;
  const enc = encodeURIComponent;
  const DEVICE_KINDS = ["sos", "smoke", "gas", "water", "motion", "door", "inactivity", "other"];

  let searchTimer = null;
  const list = { q: "", archived: false };
  const historyCache = new Map();

  function section(id) {
    let el = document.getElementById(id);
    if (!el) {
      el = document.createElement("section");
      el.id = id;
      el.className = "view hidden";
      $("main").appendChild(el);
    }
    return el;
  }

  function show(id, nav) {
    const el = section(id);
    el.classList.remove("hidden");
    $$("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    return el;
  }

  // A wall-clock date and time in the centre's zone, as a UTC instant (ISO 8601).
  function zonedToUtc(date, time, tz) {
    const [y, mo, d] = date.split("-").map(Number);
    const [h, mi] = time.split(":").map(Number);
    const wanted = Date.UTC(y, mo - 1, d, h, mi);
    let guess = wanted;
    for (let i = 0; i < 3; i++) {
      const p = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
        timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      }).formatToParts(new Date(guess)).map((x) => [x.type, x.value]));
      guess += wanted - Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute);
    }
    return new Date(guess).toISOString();
  }

  function awayText(h) {
    if (!h.away_until || new Date(h.away_until) <= new Date()) return "";
    return `${t(h.away_reason === "hospital" ? "adm_reason_hospital" : "adm_reason_away")} ${t("adm_away_until")} ${C().fmtTime(h.away_until)}`;
  }

  const splitPhones = (text) => text.split(/[,，;；]/).map((p) => p.trim()).filter(Boolean);

  // ---------------------------------------------------------------- households list

  function renderHouseholdsPage() {
    const el = show("households-view", "households");
    el.innerHTML = `<div class="view-head">
        <h2>${L("nav_households")}</h2>
        <input id="adm-hh-search" type="search" aria-label="${esc(t("search"))}"
          data-i18n-placeholder="adm_search_hint" placeholder="${esc(t("adm_search_hint"))}" value="${esc(list.q)}">
        <label class="inline"><input type="checkbox" id="adm-hh-archived" ${list.archived ? "checked" : ""}> ${L("adm_archived")}</label>
        <span class="spacer"></span>
        ${isSupervisor() ? `<a class="button primary" id="adm-hh-new" href="#/household/new">${L("adm_new_household")}</a>` : ""}
      </div>
      <table class="adm-table"><thead><tr><th>${L("hh_name")}</th><th>${L("adm_residents")}</th>
        <th>${L("hh_address")}</th><th>${L("col_community")}</th><th>${L("adm_status")}</th></tr></thead>
        <tbody id="adm-hh-body"></tbody></table>
      <p id="adm-hh-empty" class="muted hidden">${L("adm_none_found")}</p>`;
    $("#adm-hh-search").addEventListener("input", (e) => {
      list.q = e.target.value;
      clearTimeout(searchTimer);
      searchTimer = setTimeout(loadHouseholdRows, 250);
    });
    $("#adm-hh-archived").addEventListener("change", (e) => { list.archived = e.target.checked; loadHouseholdRows(); });
    loadHouseholdRows();
  }

  let listTicket = 0;
  async function loadHouseholdRows() {
    const ticket = ++listTicket;
    const params = new URLSearchParams({ limit: "200" });
    if (list.q.trim()) params.set("q", list.q.trim());
    if (list.archived) params.set("archived", "true");
    const page = await api("GET", `/api/v1/households?${params}`);
    if (ticket !== listTicket || !$("#adm-hh-body")) return;
    const items = page.items || [];
    $("#adm-hh-body").innerHTML = items.map((h) => `<tr data-id="${esc(h.id)}">
        <td><a href="#/household/${esc(enc(h.id))}">${esc(h.name)}</a></td>
        <td>${esc((h.residents || []).map((r) => r.name).join(", "))}</td>
        <td>${esc(h.address || "")}</td><td>${esc(h.community || "")}</td>
        <td>${h.archived_at ? `<span class="tag">${esc(t("adm_archived_on"))} ${esc(C().fmtTime(h.archived_at))}</span>`
          : awayText(h) ? `<span class="tag away">${esc(awayText(h))}</span>` : esc(t("adm_at_home"))}</td></tr>`).join("");
    $("#adm-hh-empty").classList.toggle("hidden", items.length > 0);
    document.body.dataset.householdsLoaded = String(Date.now());
  }

  // ---------------------------------------------------------------- household page

  // The household on screen, for the live stream: its record, whether the person typed in its
  // form since it was drawn, and a change that came in while their save was under way.
  let shown = { id: null, record: null, dirty: false, saving: false, missed: null };

  let pageTicket = 0;
  async function renderHouseholdPage(id, given = null) {
    // Drawn again in place (after a save, say), the page stays while it is read; come to from
    // another page, what it showed last time is not offered to be typed into.
    const inPlace = visible("household-view") && section("household-view").dataset.id === id;
    const el = show("household-view", "households");
    const isNew = id === "new";
    if (isNew && !isSupervisor()) { location.hash = "#/households"; return; }
    const ticket = ++pageTicket;
    let h = given;
    if (!isNew && !h) {
      // Nothing of the page shown before stays while this one is read: its forms could be
      // filled in, then replaced under the person's hands when the answer comes.
      if (!inPlace) {
        el.dataset.id = "";
        shown = { id: null, record: null, dirty: false, saving: false, missed: null };
        el.innerHTML = `<p class="muted" role="status">${L("adm_loading")}</p>`;
      }
      try { h = await api("GET", `/api/v1/households/${enc(id)}`); } catch (e) {
        if (ticket === pageTicket) el.innerHTML = `<p class="error" role="alert">${esc(e.message)}</p>`;
        return;
      }
      // A later drawing (a pushed change, another household) has the newer say.
      if (ticket !== pageTicket) return;
    }
    el.dataset.id = isNew ? "" : h.id;
    shown = { id: isNew ? null : h.id, record: h, dirty: false, saving: false, missed: null };
    el.innerHTML = `<p id="adm-hh-changed" class="notice hidden" role="status"><span data-i18n="adm_record_changed">${esc(t("adm_record_changed"))}</span>
        <button type="button" id="adm-hh-theirs" class="small secondary">${L("adm_show_theirs")}</button></p>
      <div class="view-head">
        <a href="#/households">← ${L("nav_households")}</a>
        <h2 id="adm-hh-title">${isNew ? L("adm_new_household") : esc(h.name)}</h2>
        ${h && h.archived_at ? `<span class="tag">${L("adm_archived_on")} ${esc(C().fmtTime(h.archived_at))}</span>` : ""}
        ${h && awayText(h) ? `<span class="tag away">${esc(awayText(h))}</span>` : ""}
      </div>
      <div class="adm-grid">
        <div class="adm-main">${isSupervisor() ? editorHtml(h) : readOnlyHtml(h)}</div>
        <div class="adm-side">${isNew ? "" : sideHtml(h)}</div>
      </div>`;
    $("#adm-hh-theirs").addEventListener("click", () => renderHouseholdPage(h.id, shown.newer));
    if (isSupervisor()) wireEditor(h);
    if (!isNew) wireSide(h);
    if (!isNew && isSupervisor() && window.WristbandPanel) window.WristbandPanel.show(h, C());
  }

  function field(name, key, value, attrs = "") {
    return `<label><span data-i18n="${key}">${esc(t(key))}</span>
      <input name="${name}" value="${esc(value ?? "")}" ${attrs}></label>`;
  }
  function area(name, key, value) {
    return `<label class="full"><span data-i18n="${key}">${esc(t(key))}</span>
      <textarea name="${name}" rows="2">${esc(value ?? "")}</textarea></label>`;
  }

  function residentHtml(r = {}) {
    return `<fieldset class="adm-item" data-list="residents">
      <legend>${L("resident")}</legend>
      ${field("name", "adm_name", r.name, 'required maxlength="200"')}
      <label><span data-i18n="adm_birth_date">${esc(t("adm_birth_date"))}</span>
        <input type="date" name="birth_date" value="${esc(r.birth_date || "")}"></label>
      <input type="hidden" name="birth_year" value="${esc(r.birth_year || "")}">
      ${field("language", "adm_language", r.language, 'maxlength="200"')}
      ${field("phones", "adm_phones", (r.phones || []).join(", "))}
      ${area("medical_notes", "adm_medical", r.medical_notes)}
      ${area("medications", "adm_medications", r.medications)}
      ${area("allergies", "adm_allergies", r.allergies)}
      ${field("doctor", "adm_doctor", r.doctor, 'maxlength="200"')}
      ${area("advance_care", "adm_advance_care", r.advance_care)}
      <button type="button" class="secondary small adm-remove">${L("adm_remove")}</button>
    </fieldset>`;
  }

  function contactHtml(c = {}, position = 1) {
    return `<fieldset class="adm-item" data-list="emergency_contacts">
      <legend>${L("adm_contacts")}</legend>
      ${field("name", "adm_name", c.name, 'required maxlength="200"')}
      ${field("relation", "adm_relation", c.relation, 'maxlength="200"')}
      ${field("phones", "adm_phones", (c.phones || []).join(", "))}
      ${field("priority", "adm_call_order", c.priority || position, 'type="number" min="1" max="99" required')}
      <label class="inline"><input type="checkbox" name="has_key" ${c.has_key ? "checked" : ""}> ${L("adm_has_key")}</label>
      <button type="button" class="secondary small adm-remove">${L("adm_remove")}</button>
    </fieldset>`;
  }

  function deviceHtml(d = {}) {
    const kinds = DEVICE_KINDS.includes(d.kind || "") || !d.kind ? DEVICE_KINDS : [d.kind, ...DEVICE_KINDS];
    return `<fieldset class="adm-item" data-list="devices">
      <legend>${L("device")}</legend>
      ${field("id", "adm_device_id", d.id, 'required maxlength="128" pattern="[A-Za-z0-9_.:@\\-]+"')}
      <label><span data-i18n="adm_device_kind">${esc(t("adm_device_kind"))}</span>
        <select name="kind" required>
          <option value="" data-i18n="adm_choose_kind">${esc(t("adm_choose_kind"))}</option>
          ${kinds.map((k) => `<option value="${esc(k)}" ${k === d.kind ? "selected" : ""}
            ${DEVICE_KINDS.includes(k) ? `data-i18n="adm_kind_${k}"` : ""}>${esc(DEVICE_KINDS.includes(k) ? t(`adm_kind_${k}`) : k)}</option>`).join("")}
        </select></label>
      ${field("room", "adm_device_room", d.room, 'maxlength="200"')}
      ${field("label", "adm_device_label", d.label, 'maxlength="200"')}
      <button type="button" class="secondary small adm-remove">${L("adm_remove")}</button>
    </fieldset>`;
  }

  function editorHtml(h) {
    const v = h || {};
    return `<form id="adm-hh-form" class="card adm-form" novalidate>
      <h3>${L("adm_household")}</h3>
      <div class="adm-fields">
        ${h ? "" : field("household_id", "adm_household_id", "", 'maxlength="128" pattern="[A-Za-z0-9_.:@\\-]+"')}
        ${field("name", "hh_name", v.name, 'required maxlength="200"')}
        ${field("address", "hh_address", v.address, 'maxlength="500"')}
        ${field("community", "hh_community", v.community, 'maxlength="200"')}
        ${field("phone", "hh_phone", v.phone, 'maxlength="32"')}
      </div>
      <h3>${L("adm_access")}</h3>
      <div class="adm-fields">
        ${field("key_safe", "hh_key_safe", v.key_safe, 'maxlength="500"')}
        ${area("access_notes", "hh_access_notes", v.access_notes)}
        ${area("notes", "hh_notes", v.notes)}
      </div>
      <h3>${L("adm_residents")}</h3>
      <div class="adm-list" id="adm-residents">${(v.residents || []).map((r) => residentHtml(r)).join("")}</div>
      <button type="button" class="secondary" id="adm-add-resident">${L("adm_add_resident")}</button>
      <h3>${L("adm_contacts")}</h3>
      <div class="adm-list" id="adm-contacts">${(v.emergency_contacts || []).map((c, i) => contactHtml(c, i + 1)).join("")}</div>
      <button type="button" class="secondary" id="adm-add-contact">${L("adm_add_contact")}</button>
      <h3>${L("adm_devices")}</h3>
      <div class="adm-list" id="adm-devices">${(v.devices || []).map((d) => deviceHtml(d)).join("")}</div>
      <button type="button" class="secondary" id="adm-add-device">${L("adm_add_device")}</button>
      <div class="adm-save">
        <button type="submit" id="adm-hh-save">${L("adm_save_household")}</button>
        <span id="adm-hh-status" role="status"></span>
      </div>
      <p id="adm-hh-error" class="error" role="alert"></p>
    </form>`;
  }

  function collect(form) {
    const val = (root, name) => {
      const input = root.querySelector(`[name="${name}"]`);
      return input ? input.value.trim() : "";
    };
    const body = {};
    // The household's own fields come first in the form, before any resident's "name".
    ["name", "address", "community", "phone", "key_safe", "access_notes", "notes"].forEach((k) => {
      body[k] = val(form, k);
    });
    const id = val(form, "household_id");
    if (id) body.id = id;
    body.residents = $$('fieldset[data-list="residents"]', form).map((f) => {
      const r = {
        name: val(f, "name"), language: val(f, "language"), phones: splitPhones(val(f, "phones")),
        medical_notes: val(f, "medical_notes"), medications: val(f, "medications"),
        allergies: val(f, "allergies"), doctor: val(f, "doctor"), advance_care: val(f, "advance_care"),
      };
      const born = val(f, "birth_date");
      if (born) r.birth_date = born;
      else if (val(f, "birth_year")) r.birth_year = Number(val(f, "birth_year"));
      return r;
    });
    body.emergency_contacts = $$('fieldset[data-list="emergency_contacts"]', form).map((f) => ({
      name: val(f, "name"), relation: val(f, "relation"), phones: splitPhones(val(f, "phones")),
      priority: Number(val(f, "priority")), has_key: f.querySelector('[name="has_key"]').checked,
    }));
    body.devices = $$('fieldset[data-list="devices"]', form).map((f) => ({
      id: val(f, "id"), kind: val(f, "kind"), room: val(f, "room"), label: val(f, "label"),
    }));
    return body;
  }

  function wireEditor(h) {
    const form = $("#adm-hh-form");
    const add = (button, list, html) => $(button).addEventListener("click", () => {
      $(list).insertAdjacentHTML("beforeend", html());
      const added = $(list).lastElementChild;
      added.querySelector("input").focus();
    });
    add("#adm-add-resident", "#adm-residents", () => residentHtml());
    add("#adm-add-contact", "#adm-contacts", () => contactHtml({}, $$("#adm-contacts fieldset").length + 1));
    add("#adm-add-device", "#adm-devices", () => deviceHtml());
    form.addEventListener("click", (e) => {
      if (e.target.closest(".adm-remove")) e.target.closest("fieldset").remove();
    });
    form.addEventListener("input", () => { shown.dirty = true; });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("#adm-hh-error").textContent = "";
      $("#adm-hh-status").textContent = "";
      if (!form.checkValidity()) {
        const bad = form.querySelector(":invalid");
        const label = bad.closest("label");
        $("#adm-hh-error").textContent = `${t("adm_error")}: ${label ? label.querySelector("span").textContent : bad.name} — ${bad.validationMessage}`;
        bad.focus();
        return;
      }
      const body = collect(form);
      try {
        if (h) {
          // Another supervisor's change since this form was opened is refused, not overwritten.
          const mine = shown;
          mine.saving = true;
          const saved = await api("PUT", `/api/v1/households/${enc(h.id)}`, { ...body, expected_updated_at: h.updated_at })
            .finally(() => { mine.saving = false; });
          h.updated_at = saved.updated_at;
          if (shown.id !== mine.id) return; // another household is on the page now
          Object.assign(shown, { record: saved, dirty: false });
          // Someone else's change that came in while this one was saved, after it, is shown now.
          if (shown.missed && !sameRecord(shown.missed, saved)) householdChanged(shown.missed);
          shown.missed = null;
          $("#adm-hh-status").textContent = t("adm_saved");
          $("#adm-hh-title").textContent = body.name;
        } else {
          const made = await api("POST", "/api/v1/households", body);
          location.hash = `#/household/${enc(made.id)}`;
        }
      } catch (e) {
        $("#adm-hh-error").textContent = e.status === 409 && h ? t("adm_changed_meanwhile") : `${t("adm_error")}: ${e.message}`;
      }
    });
  }

  function readOnlyHtml(h) {
    const row = (key, value) => (value ? `<dt>${L(key)}</dt><dd>${esc(value)}</dd>` : "");
    const residents = (h.residents || []).map((r) => `<dl class="facts">
        <dt>${L("resident")}</dt><dd><strong>${esc(r.name)}</strong></dd>
        ${row("adm_birth_date", r.birth_date || r.birth_year)}${row("adm_language", r.language)}
        ${row("phones", (r.phones || []).join(", "))}${row("adm_medical", r.medical_notes)}
        ${row("adm_medications", r.medications)}${row("adm_allergies", r.allergies)}
        ${row("adm_doctor", r.doctor)}${row("adm_advance_care", r.advance_care)}</dl>`).join("");
    const contacts = [...(h.emergency_contacts || [])].sort((a, b) => a.priority - b.priority)
      .map((c) => `<li>${esc(c.priority)}. <strong>${esc(c.name)}</strong> ${esc(c.relation || "")}
        ${esc((c.phones || []).join(", "))} ${c.has_key ? `<span class="tag">${esc(t("adm_has_key"))}</span>` : ""}</li>`).join("");
    const devices = (h.devices || []).map((d) => `<li><code>${esc(d.id)}</code>
        ${esc(DEVICE_KINDS.includes(d.kind) ? t(`adm_kind_${d.kind}`) : d.kind || "")} · ${esc(d.room || "")} ${esc(d.label || "")}</li>`).join("");
    return `<div class="card" id="adm-hh-readonly">
      <p class="muted">${L("adm_read_only")}</p>
      <dl class="facts">${row("hh_address", [h.address, h.community].filter(Boolean).join(" · "))}
        ${row("hh_phone", h.phone)}${row("hh_key_safe", h.key_safe)}${row("hh_access_notes", h.access_notes)}
        ${row("hh_notes", h.notes)}</dl>
      <h3>${L("adm_residents")}</h3>${residents || "<p class=\"muted\">—</p>"}
      <h3>${L("adm_contacts")}</h3><ul>${contacts || "<li class=\"muted\">—</li>"}</ul>
      <h3>${L("adm_devices")}</h3><ul>${devices || "<li class=\"muted\">—</li>"}</ul>
    </div>`;
  }

  function sideHtml(h) {
    const sup = isSupervisor();
    const away = awayText(h);
    return `<div class="card" id="adm-away">
        <h3>${L("adm_away")}</h3>
        <p id="adm-away-state">${away ? `<span class="tag away">${esc(away)}</span> ${esc(h.away_note || "")}` : L("adm_at_home")}</p>
        ${sup ? `<form id="adm-away-form" class="adm-fields">
          <label><span data-i18n="adm_away">${esc(t("adm_away"))}</span><select name="reason" required>
            <option value="" data-i18n="adm_choose_reason">${esc(t("adm_choose_reason"))}</option>
            <option value="away" data-i18n="adm_reason_away">${esc(t("adm_reason_away"))}</option>
            <option value="hospital" data-i18n="adm_reason_hospital">${esc(t("adm_reason_hospital"))}</option></select></label>
          <label><span data-i18n="adm_until_date">${esc(t("adm_until_date"))}</span><input type="date" name="date" required></label>
          <label><span data-i18n="adm_until_time">${esc(t("adm_until_time"))}</span><input type="time" name="time" required></label>
          ${field("note", "adm_away_note", "", 'maxlength="500"')}
          <p class="muted hint">${L("adm_away_hint")}</p>
          <button type="submit">${L("adm_set_away")}</button>
          ${away ? `<button type="button" class="secondary" id="adm-away-clear">${L("adm_clear_away")}</button>` : ""}
        </form>` : ""}
        <p id="adm-away-error" class="error" role="alert"></p>
      </div>
      ${sup ? `<div class="card" id="adm-enroll">
        <h3>${L("adm_gateways")}</h3>
        <ul id="adm-hh-gateways" class="plain"></ul>
        ${h.archived_at ? "" : `<button type="button" id="adm-enroll-btn" class="secondary">${L("adm_enroll")}</button>`}
        <p id="adm-enroll-code" role="status"></p>
        <p id="adm-enroll-error" class="error" role="alert"></p>
      </div>
      <div class="card" id="adm-archive">
        ${h.archived_at ? `<button type="button" id="adm-restore-btn" class="secondary">${L("adm_restore")}</button>`
          : `<button type="button" id="adm-archive-btn" class="secondary">${L("adm_archive")}</button>
          <div id="adm-archive-confirm" class="hidden"><p>${L("adm_archive_confirm")}</p>
            <button type="button" id="adm-archive-yes" class="urgent">${L("adm_confirm")}</button>
            <button type="button" id="adm-archive-no" class="secondary">${L("cancel")}</button></div>`}
        <p id="adm-archive-error" class="error" role="alert"></p>
      </div>` : ""}
      <div class="card" id="adm-notes">
        <h3>${L("adm_notes_title")}</h3>
        <form id="adm-note-form" class="inline-form">
          <input name="text" required maxlength="4000" aria-label="${esc(t("adm_add_note"))}"
            data-i18n-placeholder="adm_add_note" placeholder="${esc(t("adm_add_note"))}">
          <button type="submit" class="secondary">${L("add")}</button>
        </form>
        <p id="adm-note-error" class="error" role="alert"></p>
        <ol id="adm-notes-list" class="plain"></ol>
      </div>
      <div class="card" id="adm-history">
        <h3>${L("adm_history")}</h3>
        <ol id="adm-history-list" class="plain"></ol>
      </div>`;
  }

  function historyItems(items) {
    if (!items.length) return `<li class="muted">${esc(t("adm_no_history"))}</li>`;
    return items.map((i) => `<li><a href="#/incident/${esc(enc(i.id))}">${esc(C().fmtTime(i.alarm_at || i.opened_at))}
        · ${esc(C().kindLabel(i.kind))}</a> · ${esc(i.state === "resolved"
          ? `${t("adm_state_resolved")}${i.outcome ? ` (${t(`out_${i.outcome}`) === `out_${i.outcome}` ? i.outcome : t(`out_${i.outcome}`)})` : ""}`
          : t(`state_${i.state}`))}</li>`).join("");
  }

  async function loadSide(h) {
    const base = `/api/v1/households/${enc(h.id)}`;
    const [notes, history] = await Promise.all([api("GET", `${base}/notes`), api("GET", `${base}/history`)]);
    $("#adm-notes-list").innerHTML = notes.length ? notes.map((n) => `<li><time>${esc(C().fmtTime(n.at))}</time>
        <strong>${esc(n.author)}</strong> ${esc(n.text)}</li>`).join("") : `<li class="muted">${esc(t("adm_no_notes"))}</li>`;
    $("#adm-history-list").innerHTML = historyItems(history);
    if ($("#adm-hh-gateways")) {
      const gws = await api("GET", `/api/v1/gateways?household_id=${enc(h.id)}`);
      $("#adm-hh-gateways").innerHTML = gws.length ? gws.map((g) => `<li><a href="#/gateways">${esc(g.id)}</a>
          <span class="${g.online && !g.revoked ? "ok" : "bad"}">${esc(t(g.online ? "online" : "offline"))}</span></li>`).join("")
        : `<li class="muted">${esc(t("adm_no_gateways"))}</li>`;
    }
  }

  function wireSide(h) {
    const base = `/api/v1/households/${enc(h.id)}`;
    const reload = () => renderHouseholdPage(h.id);
    loadSide(h).catch(() => {});
    $("#adm-note-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = ev.target.elements.text;
      $("#adm-note-error").textContent = "";
      try {
        await api("POST", `${base}/notes`, { text: input.value.trim() });
        input.value = "";
        await loadSide(h);
      } catch (e) { $("#adm-note-error").textContent = `${t("adm_error")}: ${e.message}`; }
    });
    const awayForm = $("#adm-away-form");
    if (awayForm) {
      awayForm.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const f = awayForm.elements;
        $("#adm-away-error").textContent = "";
        if (!awayForm.checkValidity()) {
          $("#adm-away-error").textContent = `${t("adm_error")}: ${awayForm.querySelector(":invalid").validationMessage}`;
          return;
        }
        try {
          await api("PUT", `${base}/away`, {
            reason: f.reason.value, note: f.note.value.trim(),
            until: zonedToUtc(f.date.value, f.time.value, C().tz()),
          });
          reload();
        } catch (e) { $("#adm-away-error").textContent = `${t("adm_error")}: ${e.message}`; }
      });
      const clear = $("#adm-away-clear");
      if (clear) clear.addEventListener("click", async () => {
        try { await api("DELETE", `${base}/away`); reload(); } catch (e) { $("#adm-away-error").textContent = e.message; }
      });
    }
    const enroll = $("#adm-enroll-btn");
    if (enroll) enroll.addEventListener("click", async () => {
      $("#adm-enroll-error").textContent = "";
      try {
        const code = await api("POST", `${base}/enroll-codes`);
        $("#adm-enroll-code").innerHTML = `${L("adm_enroll_code")}: <code id="adm-code">${esc(code.code)}</code>
          · ${L("adm_expires")} ${esc(C().fmtTime(code.expires_at))}<br><span class="muted">${L("adm_enroll_hint")}</span>`;
      } catch (e) { $("#adm-enroll-error").textContent = e.message; }
    });
    const archive = $("#adm-archive-btn");
    if (archive) {
      archive.addEventListener("click", () => { $("#adm-archive-confirm").classList.remove("hidden"); $("#adm-archive-yes").focus(); });
      $("#adm-archive-no").addEventListener("click", () => $("#adm-archive-confirm").classList.add("hidden"));
      $("#adm-archive-yes").addEventListener("click", async () => {
        try { await api("POST", `${base}/archive`); reload(); } catch (e) { $("#adm-archive-error").textContent = e.message; }
      });
    }
    const restore = $("#adm-restore-btn");
    if (restore) restore.addEventListener("click", async () => {
      try { await api("POST", `${base}/restore`); reload(); } catch (e) { $("#adm-archive-error").textContent = e.message; }
    });
  }

  // ---------------------------------------------------------------- following the live stream

  const instant = (v) => (v ? new Date(v).getTime() : null);
  const sameRecord = (a, b) => Boolean(a && b) && ["updated_at", "archived_at", "away_until"]
    .every((k) => instant(a[k]) === instant(b[k])) && a.away_reason === b.away_reason && a.away_note === b.away_note;
  const visible = (id) => !section(id).classList.contains("hidden");

  // Another console's change to a household: the list re-reads; the page shows the new record,
  // unless the person has typed in its form: that is never overwritten, the page says the record
  // changed and offers the new version.
  function householdChanged(record) {
    if (visible("households-view")) loadHouseholdRows().catch(() => {});
    if (!visible("household-view") || shown.id !== record.id) return;
    if (shown.saving) { shown.missed = record; return; }
    if (sameRecord(record, shown.record)) return;
    if (!shown.dirty) {
      const focused = document.activeElement && document.activeElement.id;
      renderHouseholdPage(record.id, record).then(() => { if (focused && $(`#${CSS.escape(focused)}`)) $(`#${CSS.escape(focused)}`).focus(); });
      return;
    }
    shown.newer = record;
    $("#adm-hh-changed").classList.remove("hidden");
  }

  window.addEventListener("console:change", (ev) => {
    const change = ev.detail.change;
    if (!change || change.topic !== "household") return;
    if (change.kind === "household.note_added") {
      if (visible("household-view") && shown.id === change.entity_id && shown.record) loadSide(shown.record).catch(() => {});
      return;
    }
    if (change.data && change.data.id) householdChanged(change.data);
  });

  // The incident's household card: what a call needs beyond app.js's lines (medications,
  // allergies, doctor, advance care, away), and this home's recent alarms.
  function householdCard(card, hh, inc) {
    if (!card || !hh || !hh.id) return;
    const extra = document.createElement("div");
    extra.className = "adm-card-extra";
    const rows = (hh.residents || []).flatMap((r) => [
      ["adm_medications", r.medications], ["adm_allergies", r.allergies],
      ["adm_doctor", r.doctor], ["adm_advance_care", r.advance_care],
    ].filter(([, v]) => v).map(([k, v]) => `<dt>${L(k)}</dt><dd>${esc(r.name)}: ${esc(v)}</dd>`)).join("");
    const away = awayText(hh);
    extra.innerHTML = `${away ? `<p class="tag away">${esc(away)}</p>` : ""}
      ${rows ? `<dl class="facts">${rows}</dl>` : ""}
      <h4>${L("adm_alarm_history")}</h4><ol class="plain adm-card-history"></ol>
      <a href="#/household/${esc(enc(hh.id))}">${L("adm_see_household")}</a>`;
    card.appendChild(extra);
    const cached = historyCache.get(hh.id);
    const fill = (items) => {
      const ol = extra.querySelector(".adm-card-history");
      if (ol) ol.innerHTML = historyItems(items.filter((i) => i.id !== inc.id).slice(0, 5));
    };
    if (cached && Date.now() - cached.at < 30000) { fill(cached.items); return; }
    api("GET", `/api/v1/households/${enc(hh.id)}/history?limit=6`).then((items) => {
      historyCache.set(hh.id, { at: Date.now(), items });
      fill(items);
    }).catch(() => {});
  }

  // ---------------------------------------------------------------- routing

  function route(name, id) {
    $$(".admin-only").forEach((el) => el.classList.toggle("hidden", !isAdmin()));
    if (name !== "gateways") window.ConsoleGateways.leave();
    if (name === "households") { renderHouseholdsPage(); return true; }
    if (name === "household" && id) { renderHouseholdPage(decodeURIComponent(id)); return true; }
    if (name === "operators") { window.ConsoleOperators.render().catch(() => {}); return true; }
    if (name === "gateways") { window.ConsoleGateways.render(); return true; }
    return false;
  }

  // Lists show words built in script (status, durations): rebuild them in the new language.
  // Forms keep what is typed; their labels carry data-i18n and change with the page.
  function relabel() {
    setTimeout(relabelNow, 0); // after app.js has switched the language
  }
  function relabelNow() {
    if (!section("households-view").classList.contains("hidden")) loadHouseholdRows().catch(() => {});
    if (!section("gateways-view").classList.contains("hidden")) window.ConsoleGateways.load().catch(() => {});
  }
  $("#lang").addEventListener("change", relabel);
  $$("[data-lang]").forEach((b) => b.addEventListener("click", relabel));

  // app.js hands over the gateways on a gateway's change (read again, or the change applied).
  const gateways = (list) => { if ($("#gateways-body")) window.ConsoleGateways.load(list).catch(() => {}); };

  window.ConsoleAdmin = { route, householdCard, gateways, kit: { $, $$, C, t, esc, api, L, enc, show, field, section } };
})();
