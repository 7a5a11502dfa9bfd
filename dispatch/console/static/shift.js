// The shift: who is there (presence, and one's own break), what happened to one's own incidents
// (taken over, returned), and the handover view of what is open, who holds it and what is late.
"use strict";

(() => {
  const kit = window.ConsoleKit;
  const $ = (sel) => document.querySelector(sel);
  const STATUSES = ["on_duty", "on_break", "gone"];

  // ---------------------------------------------------------------- presence

  async function loadPresence() {
    kit.state.people = await kit.api("GET", "/api/v1/operators/presence");
    renderPresence();
  }

  function renderPresence() {
    const people = kit.state.people;
    const { t, esc } = kit;
    const groups = STATUSES.map((status) => {
      const here = people.filter((p) => p.status === status);
      if (!here.length) return "";
      return `<span class="presence-group" data-status="${status}"><strong>${esc(t(`presence_${status}`))}</strong>
        ${here.map((p) => `<span class="person" data-username="${esc(p.username)}">${esc(p.display_name || p.username)}${
          p.held ? ` <span class="held" title="${esc(t("held_title"))}">${esc(t("held_n").replace("{n}", p.held))}</span>` : ""}</span>`).join("")}</span>`;
    }).join("");
    kit.keepFocusedRow(() => { $("#presence").innerHTML = groups; });
    const mine = kit.myStatus();
    document.body.dataset.presence = mine || "";
    $("#my-presence").textContent = mine ? t(`presence_${mine}`) : "";
    $("#my-presence").dataset.status = mine || "";
    $("#break-toggle").textContent = t(mine === "on_break" ? "back_on_duty" : "take_break");
    $("#break-banner").classList.toggle("hidden", mine !== "on_break");
  }

  // Going on break returns what one holds to the queue (the server does, with a timeline entry);
  // coming back is on duty at once.
  async function setBreak(onBreak) {
    try {
      kit.state.people = await kit.api("POST", "/api/v1/operators/me/break", { on_break: onBreak });
      renderPresence();
    } catch (e) {
      showNotice(kit.errorText(e));
    }
    kit.scheduleRefresh(0);
  }
  $("#break-toggle").addEventListener("click", () => setBreak(kit.myStatus() !== "on_break"));
  $("#break-end").addEventListener("click", () => setBreak(false));

  // ---------------------------------------------------------------- what happened to my incidents

  // An operator who loses an incident is told on their own screen, and it stays until read.
  function onStreamEvent(type, raw) {
    if (type === "operator.presence") { loadPresence().catch(() => {}); return; }
    let change;
    try { change = JSON.parse(raw); } catch (e) { return; }
    if (!change || change.topic !== "operator") return;
    const d = change.data || {};
    const inc = d.incident || {};
    const what = [kit.kindLabel(inc.kind || ""), inc.household_name || inc.household_id || ""].filter(Boolean).join(" · ");
    const key = { "incident.taken_over": "notice_taken_over", "incident.reassigned": "notice_reassigned",
      "incident.returned": "notice_returned" }[type];
    if (!key) return;
    const reason = d.reason ? kit.label("reason", d.reason) : "";
    showNotice(kit.t(key).replace("{who}", kit.operatorName(d.by || "")).replace("{what}", what)
      .replace("{reason}", reason || "—"), inc.id);
  }

  function showNotice(text, incidentId) {
    $("#notice-text").textContent = text;
    $("#notice").dataset.id = incidentId || "";
    $("#notice-open").classList.toggle("hidden", !incidentId);
    $("#notice").classList.remove("hidden");
  }
  $("#notice-dismiss").addEventListener("click", () => $("#notice").classList.add("hidden"));
  $("#notice-open").addEventListener("click", () => {
    const id = $("#notice").dataset.id;
    $("#notice").classList.add("hidden");
    if (id) location.hash = `#/incident/${encodeURIComponent(id)}`;
  });

  // ---------------------------------------------------------------- handover

  // What the next shift needs: every open incident, who holds it (and whether they are still
  // there), what is overdue; who is on duty. Printable (the top bar and strip are left out).
  async function loadHandover() {
    const data = await kit.api("GET", "/api/v1/incidents?state=open&limit=500");
    const incidents = kit.sortQueue(data.items || []);
    await loadPresence().catch(() => {});
    renderHandover(incidents);
  }

  let handedOver = null; // what the view shows, to redraw it in another language
  function renderHandover(incidents) {
    handedOver = incidents;
    const { t, esc } = kit;
    const overdue = incidents.filter((i) => (i.overdue || []).length);
    const unheld = incidents.filter((i) => !i.operator);
    $("#handover-at").textContent = `${t("handover_at")} ${kit.fmtTime(new Date().toISOString())}`;
    $("#handover-summary").innerHTML = [
      [t("handover_open"), incidents.length], [t("handover_unheld"), unheld.length],
      [t("handover_overdue"), overdue.length],
    ].map(([k, v]) => `<span class="stat"><span class="muted">${esc(k)}</span> <strong>${esc(v)}</strong></span>`).join("");
    $("#handover-people").innerHTML = STATUSES.map((status) => {
      const here = kit.state.people.filter((p) => p.status === status);
      return `<li><strong>${esc(t(`presence_${status}`))}</strong>: ${here.length
        ? here.map((p) => `${esc(p.display_name || p.username)} (${esc(t("held_n").replace("{n}", p.held))})`).join(", ")
        : "—"}</li>`;
    }).join("");
    $("#handover-empty").classList.toggle("hidden", incidents.length > 0);
    $("#handover-body").innerHTML = incidents.map((inc) => {
      const late = (inc.overdue || []).map((o) => t(`step_${typeof o === "string" ? o : o.step}`)).join(", ");
      const holder = inc.operator
        ? `${esc(kit.operatorName(inc.operator))}${inc.operator_presence && inc.operator_presence !== "on_duty"
          ? ` <span class="tag">${esc(t(`presence_${inc.operator_presence}`))}</span>` : ""}`
        : `<span class="warn">${esc(t("handover_nobody"))}</span>`;
      return `<tr data-id="${esc(inc.id)}" class="${late ? "overdue" : ""}">
        <td><span class="prio prio-${esc(inc.priority)}">${esc(t(`prio_${inc.priority}`))}</span></td>
        <td><a href="#/incident/${encodeURIComponent(inc.id)}">${esc(kit.kindLabel(inc.kind))}</a></td>
        <td>${esc(inc.household_name || inc.household_id || "")}</td>
        <td>${esc(t(`state_${inc.state}`))}</td>
        <td>${esc(kit.fmtTime(kit.alarmAt(inc)))}${inc.late ? ` <span class="late">${esc(kit.lateText(inc))}</span>` : ""}</td>
        <td>${holder}</td>
        <td>${late ? `<span class="sla sla-over">${esc(late)}</span>` : `<span class="muted">${esc(t("handover_in_time"))}</span>`}</td>
        <td>${esc(kit.fmtTime(inc.last_action_at))}</td>
      </tr>`;
    }).join("");
  }

  $("#handover-print").addEventListener("click", () => window.print());

  kit.views.handover = loadHandover;
  kit.onRefresh.push(loadPresence);
  kit.onRender.push(() => {
    if (kit.state.people.length) renderPresence();
    if (handedOver && !$("#handover-view").classList.contains("hidden")) renderHandover(handedOver);
  });
  kit.onEvent.push(onStreamEvent);
})();
