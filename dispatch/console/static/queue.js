// The queue: open incidents as rows changed in place (focus and scroll kept), the keyboard on
// them, the report that a screen showed an incident, and the clock that ticks their timers.

import { $, $$, state, alarmAt, isRestored, lateText, myStatus, needsAttention, operatorName, sortQueue } from "./state.js";
import { t, esc, fmtAge, fmtAgeSeconds, fmtClock, fmtTime, kindLabel } from "./text.js";
import { api } from "./api.js";
import { renderAlert } from "./alert.js";

export function slaCells(inc) {
  return slaParts(inc).map(({ step, label, cls, txt }) =>
    `<span class="sla ${cls}" data-step="${step}" title="${esc(t(`step_${step}`))}">${esc(t(label))} ${txt}</span>`).join(" ");
}

function slaParts(inc) {
  const d = inc.deadlines || {};
  const parts = [["acknowledge", "ack"], ["callback", "call"], ["on_scene", "arrive"]];
  return parts.filter(([key]) => d[key]).map(([step, label]) => {
    const left = (new Date(d[step]).getTime() - Date.now()) / 1000;
    const done = { acknowledge: inc.acknowledged_at, callback: inc.callback_at,
      on_scene: inc.on_scene_at }[step];
    const cls = done ? "sla-done" : left < 0 ? "sla-over" : left < 30 ? "sla-warn" : "sla-ok";
    const txt = done ? "✓" : left < 0 ? `-${fmtAgeSeconds(-left)}` : fmtAgeSeconds(left);
    return { step, label, cls, txt };
  });
}

// The timers tick in place: the same elements get new text, rather than new elements every
// second under the operator's pointer and screen reader.
export function tickSla(el, inc) {
  const parts = slaParts(inc);
  const spans = Array.from(el.querySelectorAll(".sla"));
  if (spans.length !== parts.length || spans.some((s, n) => s.dataset.step !== parts[n].step)) {
    el.innerHTML = slaCells(inc);
    return;
  }
  parts.forEach(({ step, label, cls, txt }, n) => {
    const text = `${t(label)} ${txt}`;
    if (spans[n].textContent !== text) spans[n].textContent = text;
    const className = `sla ${cls}`;
    if (spans[n].className !== className) spans[n].className = className;
    const title = t(`step_${step}`); // the language may have changed
    if (spans[n].title !== title) spans[n].title = title;
  });
}

// The row's cells, without what ticks (the age, the lateness, the timers: filled in by
// tickRow), so a cell is written again only when the incident changed. The age column ticks
// from alarm_at; an alarm that reached dispatch late says so ("happened 10 min ago, arrived
// late"), as its timers already ran while it waited.
function rowCells(inc) {
  const hh = inc.household || {};
  const late = inc.late ? ` <span class="late" data-late-since="${esc(alarmAt(inc))}"></span>` : "";
  const holder = inc.operator ? `${esc(operatorName(inc.operator))}${inc.operator_presence && inc.operator_presence !== "on_duty"
    ? ` <span class="tag">${esc(t(`presence_${inc.operator_presence}`))}</span>` : ""}` : "";
  return `<td><span class="prio prio-${esc(inc.priority)}">${esc(t(`prio_${inc.priority}`))}</span></td>
      <td class="kind">${esc(kindLabel(inc.kind))}</td>
      <td>${esc(hh.name || inc.household_name || inc.household_id || "")}</td>
      <td>${esc(hh.community || inc.community || "")}</td>
      <td class="age"><span class="since" data-since="${esc(alarmAt(inc))}"></span>${late}</td>
      <td>${esc(t(`state_${inc.state}`))}${isRestored(inc)
        ? ` <span class="cleared">${esc(kindLabel(`${inc.kind}_restore`))} ${esc(fmtClock(inc.last_event_at))}</span>` : ""}${
        inc.realerted_at ? ` <span class="again">${esc(t("alarm_again_short"))}</span>` : ""}</td>
      <td class="timers"></td>
      <td>${holder}</td>`;
}

function tickRow(tr, inc) {
  const since = tr.querySelector(".since");
  const age = fmtAge(since.dataset.since);
  if (since.textContent !== age) since.textContent = age;
  const late = tr.querySelector(".late");
  if (late && late.textContent !== lateText(inc)) late.textContent = lateText(inc);
  tickSla(tr.querySelector(".timers"), inc);
}

// A row is written again only when the incident changed (rowCells leaves out what ticks).
const rowHtml = new WeakMap();
function drawRow(tr, inc) {
  const html = rowCells(inc);
  if (rowHtml.get(tr) !== html) { tr.innerHTML = html; rowHtml.set(tr, html); }
  tickRow(tr, inc);
}



// Live updates change rows in place: the focused row keeps the focus and the page its scroll
// position, so a keyboard user is never thrown back to the top by an alarm elsewhere.
export function renderQueue() {
  const rows = sortQueue(state.incidents);
  const body = $("#queue-body");
  $("#queue-count").textContent = `${rows.length}`;
  $("#queue-empty").classList.toggle("hidden", rows.length > 0);
  const focusedId = document.activeElement && document.activeElement.parentElement === body
    ? document.activeElement.dataset.id : null;
  const focusedTop = focusedId ? document.activeElement.getBoundingClientRect().top : null;
  const existing = new Map(Array.from(body.children).map((tr) => [tr.dataset.id, tr]));
  rows.forEach((inc, n) => {
    const id = String(inc.id);
    let tr = existing.get(id);
    existing.delete(id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = id;
      tr.tabIndex = -1;
    }
    tr.className = [`prio-${inc.priority}`, needsAttention(inc) ? "attention" : "",
      isRestored(inc) ? "restored" : "", (inc.overdue && inc.overdue.length) ? "overdue" : ""].join(" ").trim();
    drawRow(tr, inc);
    if (body.children[n] !== tr) body.insertBefore(tr, body.children[n] || null);
  });
  existing.forEach((tr) => tr.remove());
  // One row is in the Tab order (the focused one, else the first); arrows move between rows.
  const current = (focusedId && body.querySelector(`tr[data-id="${CSS.escape(focusedId)}"]`)) || null;
  Array.from(body.children).forEach((tr, n) => { tr.tabIndex = (current ? tr === current : n === 0) ? 0 : -1; });
  if (current && document.activeElement !== current) current.focus({ preventScroll: true });
  // Rows added above the focused one would push it down: scroll by as much, so it stays put.
  if (current && focusedTop !== null) {
    const moved = current.getBoundingClientRect().top - focusedTop;
    if (moved) window.scrollBy(0, moved);
  }
  if (!$("#queue-view").classList.contains("hidden")) rows.forEach(reportSeen);
}

// Whatever is redrawn above the queue (the presence strip, say) keeps the focused row where
// it is on screen, as renderQueue does for rows added above it.
export function keepFocusedRow(update) {
  const el = document.activeElement;
  const row = el && el.parentElement === $("#queue-body") ? el : null;
  const top = row ? row.getBoundingClientRect().top : null;
  update();
  if (row && row.isConnected && top !== null) {
    const moved = row.getBoundingClientRect().top - top;
    if (moved) window.scrollBy(0, moved);
  }
}

const openRow = (tr) => { location.hash = `#/incident/${encodeURIComponent(tr.dataset.id)}`; };
$("#queue-body").addEventListener("click", (e) => {
  const tr = e.target.closest("tr");
  if (tr) openRow(tr);
});
// A press on a row opens it even when the page moved under the pointer before the release
// (the alarm strip above went, the presence line was drawn, the row was written again): the
// browser then sends the click elsewhere, or nowhere, and the operator's alarm would not open.
let pressed = null;
$("#queue-body").addEventListener("pointerdown", (e) => {
  const tr = e.isPrimary && e.button === 0 ? e.target.closest("tr") : null;
  pressed = tr ? { id: tr.dataset.id, target: e.target, x: e.clientX, y: e.clientY } : null;
});
document.addEventListener("pointercancel", () => { pressed = null; });
document.addEventListener("pointerup", (e) => {
  const was = pressed;
  pressed = null;
  if (!was || !e.isPrimary) return;
  if (Math.abs(e.clientX - was.x) > 8 || Math.abs(e.clientY - was.y) > 8) return; // a drag
  const tr = e.target instanceof Element ? e.target.closest("tr") : null;
  if (tr && tr.dataset.id === was.id && was.target.isConnected) return; // its click comes
  const row = Array.from($("#queue-body").children).find((r) => r.dataset.id === was.id);
  if (row) openRow(row);
});
$("#queue-body").addEventListener("keydown", (e) => {
  const tr = e.target.closest("tr");
  if (!tr) return;
  const rows = Array.from($("#queue-body").children);
  const at = rows.indexOf(tr);
  const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: rows.length - 1 }[e.key];
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openRow(tr); return; }
  if (to === undefined || !rows[to]) return;
  e.preventDefault();
  rows.forEach((r) => { r.tabIndex = r === rows[to] ? 0 : -1; });
  rows[to].focus();
});

// The console tells dispatch when an incident first appears on this screen (first_seen_at).
// Not while on break: the operator is not looking (dispatch keeps the break either way).
export function reportSeen(inc) {
  if (inc.first_seen_at || state.seenSent.has(inc.id) || document.hidden) return;
  if (!state.me || $("#app").classList.contains("hidden") || myStatus() === "on_break") return;
  state.seenSent.add(inc.id);
  api("POST", `/api/v1/incidents/${encodeURIComponent(inc.id)}/seen`, {})
    .catch(() => state.seenSent.delete(inc.id));
}


// The age and timer columns tick every second without re-reading the API.
setInterval(() => {
  $$("#alert-age").forEach((el) => { el.textContent = fmtAge(el.dataset.since); });
  $$("#queue-body tr").forEach((tr) => {
    const inc = state.incidents.find((i) => String(i.id) === tr.dataset.id);
    if (!inc) return;
    tickRow(tr, inc);
    tr.classList.toggle("attention", needsAttention(inc)); // a priority-2 alarm's time comes
  });
  if (state.me) renderAlert();
  tickClock();
}, 1000);
export function tickClock() { $("#clock").textContent = fmtTime(new Date().toISOString()); }
