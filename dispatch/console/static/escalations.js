// Escalations (supervisors): what was not acknowledged or worked in time, and the form that
// hands an escalated incident to an operator on duty.

import { $, $$, state, operatorName } from "./state.js";
import { t, esc, fmtTime, kindLabel } from "./text.js";
import { api, errorText } from "./api.js";

function describeEscalation(c) {
  const d = c.data || {};
  if (c.kind === "incident.takeover") return t("esc_takeover");
  const key = `esc_${d.reason}`;
  return t(key) === key ? String(d.reason || c.kind) : t(key);
}

export async function loadEscalations() {
  state.escalations = await api("GET", "/api/v1/escalations?limit=100");
  const open = new Set(state.incidents.map((i) => i.id));
  const live = state.escalations.filter((c) => open.has(c.entity_id));
  $("#escalation-count").textContent = String(new Set(live.map((c) => c.entity_id)).size);
  $("#escalation-count").classList.toggle("hidden", live.length === 0);
  $("#escalations-empty").classList.toggle("hidden", state.escalations.length > 0);
  const shown = new Set();  // one assign form per incident, on its newest escalation
  // A live redraw keeps what the supervisor has chosen and typed, and where the cursor was.
  const typed = {};
  $$("#escalations-body form.assign").forEach((f) => {
    typed[f.dataset.id] = { operator: f.operator.value, reason: f.reason.value,
      focus: f.contains(document.activeElement) ? document.activeElement.name : "" };
  });
  $("#escalations-body").innerHTML = state.escalations.map((c) => {
    const d = c.data || {};
    const inc = state.incidents.find((i) => i.id === c.entity_id) || d.incident || {};
    const who = d.from ? t("esc_from_by").replace("{from}", operatorName(d.from)).replace("{by}", operatorName(d.by || ""))
      : operatorName(inc.operator || "");
    return `<tr data-id="${esc(c.entity_id)}" tabindex="0" class="${open.has(c.entity_id) ? "" : "muted"}">
      <td>${esc(fmtTime(c.at))}</td><td>${esc(describeEscalation(c))} · ${esc(kindLabel(inc.kind || ""))}</td>
      <td>${esc(inc.household_name || inc.household_id || "")}</td><td>${esc(who)}</td>
      <td>${esc(inc.state ? t(`state_${inc.state}`) : "")}</td>
      <td>${open.has(c.entity_id) && !shown.has(c.entity_id) && shown.add(c.entity_id) ? assignCell(c.entity_id) : ""}</td></tr>`;
  }).join("");
  $$("#escalations-body tr").forEach((tr) => tr.addEventListener("click", (ev) => {
    if (ev.target.closest(".assign")) return;
    location.hash = `#/incident/${encodeURIComponent(tr.dataset.id)}`;
  }));
  $$("#escalations-body form.assign").forEach((form) => {
    form.addEventListener("submit", assignFrom);
    const kept = typed[form.dataset.id];
    if (!kept) return;
    form.operator.value = kept.operator;
    form.reason.value = kept.reason;
    if (kept.focus) form[kept.focus].focus();
  });
}

// A supervisor hands an escalated incident to an operator on duty: nobody is chosen for them,
// and the reason is required, as it is on the timeline.
// What this supervisor assigned stays said on its row through the panel's live redraws.
function assignCell(incidentId) {
  const who = state.assignedHere[incidentId];
  const said = who ? `<span class="assigned" role="status">${esc(t("esc_assigned").replace("{who}", who))}</span> ` : "";
  return said + assignForm(incidentId);
}

function assignForm(incidentId) {
  const people = state.people.filter((p) => p.status === "on_duty");
  const options = people.map((p) => `<option value="${esc(p.username)}">${esc(p.display_name || p.username)}</option>`).join("");
  return `<form class="assign" data-id="${esc(incidentId)}">
    <select name="operator" required aria-label="${esc(t("esc_assign"))}"><option value="">${esc(t("choose"))}</option>${options}</select>
    <input name="reason" required maxlength="200" aria-label="${esc(t("reason"))}" placeholder="${esc(t("reason"))}">
    <button type="submit">${esc(t("esc_assign_button"))}</button>
    <span class="assign-error" role="status"></span></form>`;
}

async function assignFrom(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const out = form.querySelector(".assign-error");
  out.textContent = "";
  try {
    const who = operatorName(form.operator.value);
    await api("POST", `/api/v1/incidents/${encodeURIComponent(form.dataset.id)}/assign`,
      { operator: form.operator.value, reason: form.reason.value.trim() });
    state.assignedHere[form.dataset.id] = who;
    await loadEscalations();
  } catch (e) { out.textContent = errorText(e); }
}
