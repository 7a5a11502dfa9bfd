// The incident on screen: its times, the household card and phones, the timeline, and the
// actions its state allows. A pushed change redraws only the blocks that changed.

import { $, state, isMine, lateText, operatorName, putInQueue } from "./state.js";
import { t, esc, fmtTime, kindLabel, label } from "./text.js";
import { api, errorText } from "./api.js";
import { slaCells, renderQueue, reportSeen } from "./queue.js";
import { renderAlert } from "./alert.js";
import { scheduleRefresh } from "./app.js";

function describeDetail(detail) {
  if (!detail || typeof detail !== "object") return "";
  return Object.entries(detail)
    .filter(([k, v]) => v !== null && v !== "" && typeof v !== "object" && k !== "condition")
    .map(([k, v]) => `${t(`detail_${k}`) === `detail_${k}` ? t("detail_other") : t(`detail_${k}`)}: ${
      typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v) ? fmtTime(v) : v}`).join(", ");
}

export async function loadIncident(id, scroll = true) {
  const inc = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
  if (state.opening !== id) return; // another incident was opened, or the view left, meanwhile
  state.current = inc;
  renderIncident();
  if (scroll) window.scrollTo(0, 0);
}

function phoneList(hh) {
  const residents = hh.residents || [];
  const contacts = [...(hh.emergency_contacts || [])].sort((a, b) => (a.priority || 1) - (b.priority || 1));
  return [
    ...(hh.phone ? [{ number: hh.phone, who: t("home_phone") }] : []),
    ...residents.flatMap((r) => (r.phones || []).map((n) => ({ number: n, who: r.name }))),
    ...contacts.flatMap((c) => (c.phones || []).map((n) => ({
      number: n, who: `${c.name}${c.relation ? ` (${label("rel", c.relation)})` : ""}`, contact: c }))),
  ];
}

function phoneRow(p) {
  return `<li><span>${esc(p.who)}</span> <a href="tel:${esc(p.number.replace(/[^0-9+]/g, ""))}">${esc(p.number)}</a>
    ${p.contact && p.contact.has_key ? `<span class="tag">${esc(t("has_key"))}</span>` : ""}
    <button type="button" class="small call-back" data-number="${esc(p.number)}">${esc(t("callback"))}</button></li>`;
}

// A translated label for an internal value (prefix_value), or the value itself when it is
// something a person typed (a relation such as "neighbour" that has no entry).

function describeTimeline(e) {
  if (e.type === "event") return kindLabel(e.name);
  const key = `act_${e.name}`;
  return t(key) === key ? t("act_other") : t(key);
}

function describeAction(e) {
  const d = e.detail || {};
  const parts = [];
  if (d.outcome) parts.push(t(`cb_${d.outcome}`) !== `cb_${d.outcome}` && e.name === "callback_made"
    ? t(`cb_${d.outcome}`) : (t(`out_${d.outcome}`) === `out_${d.outcome}` ? d.outcome : t(`out_${d.outcome}`)));
  if (d.number) parts.push(d.number);
  if (d.responder) parts.push(d.responder);
  if (d.text) parts.push(d.text);
  if (d.note) parts.push(d.note);
  if (d.took_over_from) parts.push(`${t("from_operator")} ${operatorName(d.took_over_from)}`);
  if (d.was_assigned_to) parts.push(`${t("from_operator")} ${operatorName(d.was_assigned_to)}`);
  if (d.overdue) parts.push(`${t("overdue")}: ${t(`step_${d.overdue}`)}`);
  if (d.reason) parts.push(label("reason", d.reason));
  if (d.why) parts.push(label("reason", d.why));
  if (e.name === "assigned" && d.operator_id != null) {
    const who = state.people.find((p) => p.operator_id === d.operator_id);
    if (who) parts.unshift(who.display_name || who.username);
  }
  return parts.join(" · ");
}

// Forms belong to one incident: opening another starts them empty, with nothing chosen, so
// nothing typed for one household is ever recorded on another's. A live re-render of the same
// incident keeps what is being typed.
function resetForms(id) {
  if (state.formsFor === id) return;
  state.formsFor = id;
  ["#callback-form", "#resolve-form", "#note-form", "#takeover-form"].forEach((f) => $(f).reset());
  $("#takeover-form").classList.add("hidden");
  $("#action-error").textContent = "";
}

function canResolve(inc) {
  const reason = $("#resolve-form input[name=no_call_reason]").value.trim();
  return Boolean(inc.callback_at) || reason !== "";
}

// Replace a block only when its content changed: a live update then leaves the focus (a Call
// back button, the phone list) where the operator put it. True if it was replaced.
const shownHtml = new WeakMap();
function setHtml(el, html, extra = "") {
  const key = `${html}\u0000${extra}`;
  if (shownHtml.get(el) === key) return false;
  el.innerHTML = html;
  shownHtml.set(el, key);
  return true;
}
$("#household-card").addEventListener("click", (e) => {
  const b = e.target.closest(".call-back");
  if (!b) return;
  $("#callback-phone").value = b.dataset.number;
  $("#callback-form select[name=outcome]").focus();
});

export function renderIncident() {
  const inc = state.current;
  if (!inc) return;
  resetForms(inc.id);
  reportSeen(inc);
  $("#incident-view").dataset.id = inc.id;
  $("#incident-view").classList.remove("loading");
  $("#incident-view").removeAttribute("aria-busy");
  const hh = inc.household || {};
  const mine = isMine(inc);
  $("#incident-title").textContent = `${kindLabel(inc.kind)} · ${hh.name || inc.household_name || inc.household_id || ""}`;
  $("#incident-state").textContent = t(`state_${inc.state}`);
  $("#incident-state").className = `pill state-${inc.state}`;
  $("#incident-holder").textContent = inc.operator ? `${t("col_operator")}: ${operatorName(inc.operator)}` : "";
  $("#incident-sla").innerHTML = slaCells(inc);
  // When it happened, when dispatch had it, when a screen first showed it.
  $("#incident-times").innerHTML = [
    ["time_alarm", inc.alarm_at], ["time_received", inc.received_at], ["time_first_seen", inc.first_seen_at],
  ].map(([key, at]) => `<span><span class="muted">${esc(t(key))}</span> ${esc(at ? fmtTime(at) : "—")}</span>`).join("")
    + (inc.late ? ` <span class="late">${esc(lateText(inc))}</span>` : "");
  const residents = hh.residents || [];
  const phones = phoneList(hh);
  const timelineAll = inc.timeline || [];
  const firstEvent = timelineAll.find((e) => e.type === "event" && e.device_id) || {};
  const deviceInfo = (hh.devices || []).find((d) => d.id === firstEvent.device_id) || {};
  const room = firstEvent.room || deviceInfo.room || "";
  const gw = state.gateways[inc.gateway_id] || null;
  const backlog = gw ? Object.values(gw.buffer_depth || {}).reduce((a, b) => a + Number(b || 0), 0) : null;
  const age = (r) => (r.birth_year ? new Date().getFullYear() - r.birth_year : null);
  const row = (label, html) => (html ? `<dt>${esc(label)}</dt><dd>${html}</dd>` : "");
  if (setHtml($("#household-card"), `
    <h3>${esc(hh.name || inc.household_id || "")}</h3>
    <dl class="facts">
      ${residents.map((r) => row(t("resident"), `<strong>${esc(r.name)}</strong>${age(r) ? ` · ${esc(t("age"))} ${esc(age(r))}` : ""}${r.language ? ` · ${esc(label("lang", r.language))}` : ""}`)).join("")}
      ${row(t("address"), esc([hh.address, hh.community].filter(Boolean).join(" · ")))}
      ${row(t("medical"), residents.filter((r) => r.medical_notes).map((r) => `<span class="medical">${esc(r.medical_notes)}</span>`).join("<br>"))}
      ${row(t("access"), esc([hh.access_notes, hh.key_safe].filter(Boolean).join(" · ")))}
      ${row(t("notes"), esc(hh.notes || ""))}
      ${row(t("device"), esc([deviceInfo.label || firstEvent.device_id || "—", room ? `${t("room")}: ${room}` : ""].filter(Boolean).join(" · ")))}
      ${row(t("gateway"), gw ? `${esc(gw.id)} · <span class="${gw.online ? "ok" : "bad"}">${esc(t(gw.online ? "online" : "offline"))}</span>
        · ${esc(t("gw_last"))} ${esc(fmtTime(gw.last_heartbeat_at))} · ${esc(t("gw_backlog"))} ${esc(backlog)}${gw.version ? ` · v${esc(gw.version)}` : ""}`
        : esc(inc.gateway_id || "—"))}
    </dl>
    <h4>${esc(t("phones"))} / ${esc(t("contacts"))}</h4>
    <ul class="phones">${phones.map(phoneRow).join("") || `<li class="muted">—</li>`}</ul>`,
  // Redrawn when the household or incident changed, not on every live update (focus stays).
  `${inc.id}|${JSON.stringify(hh)}`)) {
    if (window.ConsoleAdmin) window.ConsoleAdmin.householdCard($("#household-card"), hh, inc);
  }
  const selected = $("#callback-phone").value;
  if (setHtml($("#callback-phone"), phones.map((p) =>
    `<option value="${esc(p.number)}">${esc(p.who)} ${esc(p.number)}</option>`).join(""))
    && phones.some((p) => p.number === selected)) $("#callback-phone").value = selected;
  setHtml($("#timeline"), [...timelineAll].reverse().map((e) => `<li class="tl-${esc(e.type)}">
      <time>${esc(fmtTime(e.at))}</time>
      <span class="what">${esc(describeTimeline(e))}</span>
      <span class="who">${esc(e.type === "event" ? (e.device_id || "") : operatorName(e.actor || ""))}</span>
      <span class="detail">${esc(e.type === "event" ? [e.room, describeDetail(e.detail)].filter(Boolean).join(" · ") : describeAction(e))}</span>
    </li>`).join(""));
  // Only what the incident's state allows is enabled; the server still has the last word.
  const open = inc.state !== "resolved";
  const worked = ["acknowledged", "callback_made", "responder_dispatched", "on_scene"].includes(inc.state);
  $("#act-ack").disabled = !open || (mine && inc.state !== "new" && !inc.realerted_at);
  $("#act-ack").textContent = inc.operator && !mine ? t("act_takeover_btn") : t("act_ack");
  $("#act-ack").classList.toggle("urgent", inc.state === "new");
  $("#act-release").disabled = !open || !mine;
  $("#act-onscene").disabled = !(mine && inc.state === "responder_dispatched");
  $("#act-callback").disabled = !(mine && worked);
  $("#act-resolve").disabled = !(mine && worked && canResolve(inc));
  $("#resolve-hint").classList.toggle("hidden", !(mine && worked) || canResolve(inc));
  $("#incident-view").dataset.state = inc.state;
  window.IncidentLocation.show(inc, { t, esc, fmtTime, api });
  window.dispatchEvent(new CustomEvent("console:incident", { detail: { incident: inc, me: state.me } }));
}

async function act(path, body) {
  $("#action-error").textContent = "";
  try {
    const result = await api("POST", `/api/v1/incidents/${encodeURIComponent(state.current.id)}/${path}`, body || {});
    if (result && result.took_over_from) {
      $("#action-error").textContent = t("took_over_warning").replace("{who}", operatorName(result.took_over_from));
    }
    if (result && result.incident) applyIncident(result.incident);
    await loadIncident(state.current.id, false);
    scheduleRefresh(0);
    return result;
  } catch (e) {
    $("#action-error").textContent = errorText(e);
    return null;
  }
}

// The action's reply already holds the incident: the queue and the strip follow at once.
export function applyIncident(inc) {
  putInQueue(inc);
  renderQueue();
  renderAlert();
}

// Acknowledging an incident another operator holds takes it over: that needs a confirmation
// and a reason, and the other operator is told.
export function acknowledgeOrTakeOver() {
  const inc = state.current;
  const mine = isMine(inc);
  if (inc && inc.operator && !mine) {
    $("#takeover-form").classList.remove("hidden");
    $("#takeover-form input[name=reason]").value = "";
    $("#takeover-form input[name=reason]").focus();
    return;
  }
  act("acknowledge");
}
$("#act-ack").addEventListener("click", acknowledgeOrTakeOver);
$("#takeover-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const reason = $("#takeover-form input[name=reason]").value.trim();
  if (!reason) return;
  if (await act("acknowledge", { takeover: true, reason })) $("#takeover-form").classList.add("hidden");
});
$("#takeover-cancel").addEventListener("click", () => $("#takeover-form").classList.add("hidden"));
// Rescuers are sent from the roster (rescue_console.js), which asks for a re-read when done.
window.addEventListener("console:reload", () => scheduleRefresh(0));
$("#act-onscene").addEventListener("click", () => act("on-scene"));
$("#act-release").addEventListener("click", () => act("release"));
$("#callback-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  act("callback", { number: f.get("phone") || "", outcome: f.get("outcome"), note: f.get("note") || "" })
    .then((ok) => {
      if (!ok) return;
      ev.target.elements.note.value = "";
      ev.target.elements.outcome.value = ""; // the next call's outcome is chosen afresh
    });
});
$("#note-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  act("notes", { text: f.get("text") }).then(() => ev.target.reset());
});
$("#resolve-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { outcome: f.get("outcome"), note: f.get("note") || "" };
  const reason = String(f.get("no_call_reason") || "").trim();
  if (reason) body.no_call_reason = reason;
  const handover = String(f.get("on_scene_handover") || "").trim();
  if (handover) body.on_scene_handover = handover;
  act("resolve", body).then((ok) => {
    if (ok) { ev.target.reset(); location.hash = "#/queue"; }
  });
});

$("#resolve-form input[name=no_call_reason]").addEventListener("input", () => renderIncident());
