// The console's rescue parts: the dispatch panel in the incident view (pick a rescuer or team from
// the roster, reassign, call off) and the Rescuers view (the status board; supervisors keep the
// roster there). app.js tells this module what it shows through window events:
//   console:incident {incident, me}  the incident view was (re)rendered
//   console:stream   EventSource     the live stream was (re)opened
// and this module asks app.js to re-read everything with console:reload.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const WORKING = ["acknowledged", "callback_made", "responder_dispatched", "on_scene"];
  const ENDED = ["done", "cancelled", "reassigned"];
  const st = { me: null, incident: null, formsFor: null, panelFor: null, roster: [], teams: [], assignments: [], boardTimer: null };

  const lang = () => document.documentElement.lang || "en";
  function t(key) {
    const table = window.I18N[lang()] || window.I18N.en;
    return table[key] ?? window.I18N.en[key] ?? key;
  }
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const isSupervisor = () => Boolean(st.me && ["supervisor", "admin"].includes(st.me.role));

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  function fmtSince(iso) {
    if (!iso) return "—";
    const s = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
    const m = Math.floor(s / 60);
    return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await resp.text();
    const data = text ? JSON.parse(text) : null;
    if (!resp.ok) {
      const err = new Error((data && (data.title && data.detail ? `${data.title}: ${data.detail}` : data.title || data.detail)) || resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return data;
  }
  const reload = () => { st.panelFor = null; window.dispatchEvent(new CustomEvent("console:reload")); };

  // ------------------------------------------------------------------ the incident's rescue panel

  function rescuerOption(r) {
    const dist = r.distance_km == null ? t("r_unknown_distance") : `${r.distance_km} ${t("r_km")}`;
    const label = `${r.name}${r.team ? ` · ${r.team}` : ""} · ${t(`r_status_${r.status}`)} · ${dist}`;
    return `<option value="${r.id}" ${r.status === "available" ? "" : "disabled"}>${esc(label)}</option>`;
  }

  // The picker keeps what the operator chose while the panel refreshes; another incident starts
  // it empty (nothing chosen for one home is offered on the next).
  function renderPicker() {
    const form = $("#rescue-form");
    if (!form) return;
    const keep = { rescuer: form.elements.rescuer.value, team: form.elements.team.value };
    form.elements.rescuer.innerHTML = `<option value="">${esc(t("r_choose_rescuer"))}</option>${st.roster.map(rescuerOption).join("")}`;
    const teams = st.teams.filter((tm) => st.roster.some((r) => r.team_id === tm.id && r.status === "available"));
    form.elements.team.innerHTML = `<option value="">${esc(t("r_choose_team"))}</option>${teams.map((tm) =>
      `<option value="${tm.id}">${esc(tm.name)}</option>`).join("")}`;
    if ([...form.elements.rescuer.options].some((o) => o.value === keep.rescuer && !o.disabled)) form.elements.rescuer.value = keep.rescuer;
    if ([...form.elements.team.options].some((o) => o.value === keep.team)) form.elements.team.value = keep.team;
  }

  function renderAssignments() {
    const inc = st.incident;
    const mine = inc && st.me && inc.operator === st.me.username;
    const open = mine && WORKING.includes(inc.state);
    const others = st.roster.filter((r) => r.status === "available");
    // What is being written on a task (whom to send instead, why) stays when the list is drawn
    // again with news of it (the rescuer accepted, arrived); tasks are this incident's only.
    const typed = new Map($$("#rescue-list li[data-assignment]").map((li) => [li.dataset.assignment, {
      to: ($("select[name=to]", li) || {}).value || "",
      reason: ($("input[name=reason]", li) || {}).value || "",
      focused: li.contains(document.activeElement) ? document.activeElement.name : "",
    }]));
    $("#rescue-list").innerHTML = st.assignments.length ? st.assignments.map((a) => {
      const live = !ENDED.includes(a.state);
      const times = [["r_task_accepted", a.accepted_at], ["r_task_en_route", a.en_route_at], ["r_task_on_scene", a.on_scene_at]]
        .filter(([, v]) => v).map(([k, v]) => `${t(k)} ${fmtTime(v)}`).join(" · ");
      return `<li data-assignment="${a.id}" class="rescue-${esc(a.state)}">
        <strong>${esc(a.rescuer)}</strong>${a.team ? ` <span class="tag">${esc(a.team)}</span>` : ""}
        <span class="pill">${esc(t(`r_task_${a.state}`))}</span>
        <span class="muted">${esc(fmtTime(a.assigned_at))}${times ? ` · ${esc(times)}` : ""}${a.handed_over_to ? ` · ${esc(a.handed_over_to)}` : ""}</span>
        ${live && open ? `<span class="rescue-change">
          <select name="to" aria-label="${esc(t("r_reassign_to"))}"><option value="">${esc(t("r_reassign_to"))}</option>
            ${others.map((r) => `<option value="${r.id}">${esc(r.name)}</option>`).join("")}</select>
          <input name="reason" maxlength="200" aria-label="${esc(t("r_reason"))}" placeholder="${esc(t("r_reason"))}">
          <button type="button" class="small secondary" data-do="reassign">${esc(t("r_reassign"))}</button>
          <button type="button" class="small secondary" data-do="cancel">${esc(t("r_cancel_task"))}</button>
        </span>` : ""}
      </li>`;
    }).join("") : `<li class="muted">${esc(t("r_sent_none"))}</li>`;
    $$("#rescue-list li[data-assignment]").forEach((li) => {
      const kept = typed.get(li.dataset.assignment);
      const to = $("select[name=to]", li);
      if (!kept || !to) return;
      // A rescuer who is no longer free is not chosen silently in their place: left unchosen.
      if ([...to.options].some((o) => o.value === kept.to)) to.value = kept.to;
      $("input[name=reason]", li).value = kept.reason;
      if (kept.focused) $(`[name=${kept.focused}]`, li).focus();
    });
    $("#rescue-send").disabled = !open;
  }

  // Re-render the list only when what it shows changed, so a rescuer being chosen and a
  // reason being typed are not wiped by a pushed change to the incident.
  function renderAssignmentsIfChanged() {
    const inc = st.incident;
    const sig = JSON.stringify([st.assignments, inc.state, inc.operator, st.me && st.me.username,
      st.roster.map((r) => [r.id, r.status])]);
    if ($("#rescue-list").dataset.sig === sig) return;
    $("#rescue-list").dataset.sig = sig;
    renderAssignments();
  }

  async function loadPanel() {
    const inc = st.incident;
    if (!inc) return;
    const [roster, teams, assignments] = await Promise.all([
      api("GET", `/api/v1/rescue/rescuers?incident_id=${encodeURIComponent(inc.id)}`),
      api("GET", "/api/v1/rescue/teams"),
      api("GET", `/api/v1/incidents/${encodeURIComponent(inc.id)}/rescue`),
    ]);
    if (!st.incident || st.incident.id !== inc.id) return;
    Object.assign(st, { roster, teams, assignments });
    renderPicker();
    renderAssignmentsIfChanged();
    $("#rescue-send").disabled = !(inc.operator === st.me.username && WORKING.includes(inc.state));
    // A rescuer with the resident is not dismissed from a desk: the resolve form asks for their
    // handover (dispatch refuses the resolution without it) and says the others are called off.
    const withResident = assignments.some((a) => ["on_scene", "handed_over"].includes(a.state));
    const handover = $("#resolve-form input[name=on_scene_handover]");
    handover.classList.toggle("hidden", !withResident);
    handover.required = withResident;
    $("#resolve-onscene-hint").classList.toggle("hidden", !withResident);
  }

  window.addEventListener("console:incident", (ev) => {
    st.me = ev.detail.me;
    st.incident = ev.detail.incident;
    if (st.formsFor !== st.incident.id) {
      st.formsFor = st.incident.id;
      $("#rescue-form").reset();
      $("#rescue-error").textContent = "";
      $("#rescue-list").dataset.sig = "";
      $("#rescue-list").innerHTML = ""; // nothing written on one incident's tasks goes to the next
    }
    // The roster and tasks are read again when what they depend on changed, not for every
    // pushed change to the incident (a new press joining it, say).
    const sig = JSON.stringify([st.incident.id, st.incident.state, st.incident.operator,
      st.incident.dispatched_at, st.incident.on_scene_at, st.incident.resolved_at]);
    if (st.panelFor === sig) { renderAssignmentsIfChanged(); return; }
    st.panelFor = sig;
    loadPanel().catch((e) => { st.panelFor = null; $("#rescue-error").textContent = e.message; });
  });

  $("#rescue-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    const body = f.team.value ? { team_id: Number(f.team.value) } : f.rescuer.value ? { rescuer_id: Number(f.rescuer.value) } : null;
    $("#rescue-error").textContent = "";
    if (!body) { $("#rescue-error").textContent = t("r_pick_first"); return; }
    try {
      await api("POST", `/api/v1/incidents/${encodeURIComponent(st.incident.id)}/rescue`, body);
      ev.target.reset();
      reload();
    } catch (e) { $("#rescue-error").textContent = e.message; }
  });
  // A rescuer and a team at once would be a guess about which one was meant.
  $("#rescue-form").elements.rescuer.addEventListener("change", (e) => { if (e.target.value) $("#rescue-form").elements.team.value = ""; });
  $("#rescue-form").elements.team.addEventListener("change", (e) => { if (e.target.value) $("#rescue-form").elements.rescuer.value = ""; });

  $("#rescue-list").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-do]");
    if (!button) return;
    const li = button.closest("li[data-assignment]");
    const reason = $("input[name=reason]", li).value.trim();
    $("#rescue-error").textContent = "";
    if (!reason) { $("#rescue-error").textContent = t("r_reason_needed"); $("input[name=reason]", li).focus(); return; }
    const id = li.dataset.assignment;
    try {
      if (button.dataset.do === "reassign") {
        const to = $("select[name=to]", li).value;
        if (!to) { $("#rescue-error").textContent = t("r_pick_first"); return; }
        await api("POST", `/api/v1/rescue/assignments/${id}/reassign`, { rescuer_id: Number(to), reason });
      } else {
        await api("POST", `/api/v1/rescue/assignments/${id}/cancel`, { reason });
      }
      $("#rescue-list").dataset.sig = "";
      reload();
    } catch (e) { $("#rescue-error").textContent = e.message; }
  });

  // ------------------------------------------------------------------ the status board

  const onBoard = () => location.hash.replace(/^#\//, "").split("/")[0] === "rescuers";

  function boardRow(r) {
    const a = r.assignment;
    const flags = [r.not_accepted ? t("r_not_accepted") : "", r.over_target ? t("r_over_target") : ""].filter(Boolean);
    const where = r.lat != null ? `${r.lat.toFixed(4)}, ${r.lon.toFixed(4)} · ${fmtTime(r.located_at)}` : "—";
    const manage = isSupervisor() ? `<td class="manage">
        <button type="button" class="small secondary" data-status="available" ${r.status === "available" ? "disabled" : ""}>${esc(t("r_set_available"))}</button>
        <button type="button" class="small secondary" data-status="off_duty" ${r.status === "off_duty" ? "disabled" : ""}>${esc(t("r_set_off_duty"))}</button></td>` : "";
    return `<tr data-rescuer="${r.id}" class="${flags.length ? "late" : ""}">
      <td><strong>${esc(r.name)}</strong></td><td>${esc(r.team || "—")}</td>
      <td><span class="pill r-${esc(r.status)}">${esc(t(`r_status_${r.status}`))}</span>
        ${flags.map((f) => `<span class="flag">${esc(f)}</span>`).join(" ")}</td>
      <td class="since">${esc(fmtSince(r.status_since))}</td>
      <td>${a ? `<a href="#/incident/${encodeURIComponent(a.incident_id)}">${esc(a.household_name || a.incident_id)}</a>
        · ${esc(t(`r_task_${a.state}`))}` : "—"}</td>
      <td><a href="tel:${esc(r.phone.replace(/[^0-9+]/g, ""))}">${esc(r.phone)}</a></td>
      <td class="muted">${esc(where)}</td><td class="muted">${esc(r.shift || "")}</td>${manage}</tr>`;
  }

  async function loadBoard() {
    if (!onBoard() || !st.me) return;
    const [roster, teams] = await Promise.all([api("GET", "/api/v1/rescue/rescuers"), api("GET", "/api/v1/rescue/teams")]);
    $("#rescuer-board").innerHTML = roster.map(boardRow).join("") || `<tr><td colspan="9" class="muted">${esc(t("r_board_empty"))}</td></tr>`;
    $$(".supervisor-only", $("#rescuers-view")).forEach((el) => el.classList.toggle("hidden", !isSupervisor()));
    const select = $("#roster-form select[name=team_id]");
    const chosen = select.value;
    select.innerHTML = `<option value="">${esc(t("r_no_team"))}</option>${teams.map((tm) => `<option value="${tm.id}">${esc(tm.name)}</option>`).join("")}`;
    select.value = chosen;
  }

  function scheduleBoard() {
    clearInterval(st.boardTimer);
    // Times since and the late flags move with the clock: re-read while the board is shown.
    st.boardTimer = setInterval(() => { if (onBoard()) loadBoard().catch(() => {}); }, 5000);
  }

  window.addEventListener("hashchange", () => { if (onBoard()) loadBoard().catch(() => {}); });
  window.addEventListener("console:stream", (ev) => {
    ["rescuer.updated", "team.created"].forEach((name) => ev.detail.addEventListener(name, () => {
      if (onBoard()) loadBoard().catch(() => {});
      if (st.incident && !$("#incident-view").classList.contains("hidden")) loadPanel().catch(() => {});
    }));
  });
  window.addEventListener("console:me", (ev) => {
    st.me = ev.detail;
    // A rescuer's login opens the phone page, not the operators' console.
    if (st.me && st.me.role === "rescuer") { location.href = "/rescuer/"; return; }
    scheduleBoard();
    $("#rescue-report-card").classList.toggle("hidden", !isSupervisor());
    if (onBoard()) loadBoard().catch(() => {});
    if (onReports()) rescueReport();
  });
  $("#lang").addEventListener("change", () => setTimeout(() => {
    if (onBoard()) loadBoard().catch(() => {});
    if (st.incident) { renderPicker(); renderAssignments(); }
  }, 0));

  // ------------------------------------------------------------------ the rescue report

  const onReports = () => location.hash.replace(/^#\//, "").split("/")[0] === "reports";
  const mmss = (s) => (s == null ? t("r_no_data") : `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, "0")}`);

  async function loadRescueReport() {
    if (!onReports() || !isSupervisor()) return;
    const params = new URLSearchParams({ group: $("#rescue-report-group").value });
    const from = $("#report-from").value;
    const to = $("#report-to").value;
    if (from) params.set("from", `${from}T00:00:00`);
    if (to) {
      const end = new Date(`${to}T00:00:00Z`);
      end.setUTCDate(end.getUTCDate() + 1);
      params.set("to", end.toISOString().slice(0, 19));
    }
    const r = await api("GET", `/api/v1/reports/rescue?${params}`);
    const pct = (v) => (v == null ? t("r_no_data") : `${Math.round(v * 1000) / 10} %`);
    const line = (g) => `<tr><td>${esc(g.key === "total" ? "Σ" : g.key)}</td><td>${g.assignments}</td>
      <td>${esc(mmss(g.time_to_accept.median_s))}</td><td>${esc(mmss(g.travel.median_s))}</td>
      <td>${esc(mmss(g.on_scene.median_s))}</td><td>${esc(pct(g.accepted_within_target))}</td></tr>`;
    $("#rescue-report").innerHTML = `<thead><tr>${["r_rep_group", "r_rep_assignments", "r_rep_accept", "r_rep_travel", "r_rep_scene", "r_rep_within"]
      .map((k) => `<th>${esc(t(k))}</th>`).join("")}</tr></thead><tbody>${r.groups.map(line).join("")}${line(r.total)}</tbody>`;
  }
  const rescueReport = () => setTimeout(() => loadRescueReport().catch(() => {}), 50);
  window.addEventListener("hashchange", () => { if (onReports()) rescueReport(); });
  ["#report-run", "#report-group"].forEach((sel) => $(sel).addEventListener("click", rescueReport));
  ["#report-from", "#report-to", "#rescue-report-group"].forEach((sel) => $(sel).addEventListener("change", rescueReport));

  $("#rescuer-board").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-status]");
    if (!button) return;
    const id = button.closest("tr").dataset.rescuer;
    try {
      await api("PATCH", `/api/v1/rescue/rescuers/${id}`, { status: button.dataset.status });
      $("#roster-error").textContent = "";
    } catch (e) { $("#roster-error").textContent = e.message; }
    loadBoard().catch(() => {});
  });

  $("#roster-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const body = { name: f.get("name"), phone: f.get("phone"), shift: f.get("shift") || "", status: f.get("status") };
    if (f.get("team_id")) body.team_id = Number(f.get("team_id"));
    if (f.get("username")) { body.username = f.get("username"); body.password = f.get("password"); }
    try {
      await api("POST", "/api/v1/rescue/rescuers", body);
      ev.target.reset();
      $("#roster-error").textContent = "";
      loadBoard().catch(() => {});
    } catch (e) { $("#roster-error").textContent = e.message; }
  });

  $("#team-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/rescue/teams", { name: new FormData(ev.target).get("name") });
      ev.target.reset();
      $("#roster-error").textContent = "";
      loadBoard().catch(() => {});
    } catch (e) { $("#roster-error").textContent = e.message; }
  });
})();
