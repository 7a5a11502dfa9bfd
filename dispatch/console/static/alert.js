// The alarm strip above every view (open or acknowledge in one click), its announcement to
// screen readers, and the tones that sound until someone acknowledges.

import { $, state, alarmAt, isLifeSafety, isRealerted, needsAttention, sortQueue } from "./state.js";
import { t, fmtAge, kindLabel } from "./text.js";
import { api, errorText } from "./api.js";
import { applyIncident } from "./incident.js";
import { scheduleRefresh } from "./app.js";

let audio = null;
export function unlockAudio() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") audio.resume();
  } catch (e) { audio = null; }
}
// Browsers start audio only after a gesture: any click or key on the page unlocks it.
["pointerdown", "keydown"].forEach((ev) => document.addEventListener(ev, unlockAudio, { capture: true }));
// Life safety: a loud square tone that no mute silences. Priority 2: a softer, lower sine tone.
const TONES = {
  life: { type: "square", freq: 880, gain: 0.08, counter: "sounds" },
  soft: { type: "sine", freq: 520, gain: 0.03, counter: "softSounds" },
};
function beep(tone) {
  unlockAudio();
  if (!audio || audio.state !== "running") {
    $("#sound-blocked").classList.remove("hidden");
    return;
  }
  $("#sound-blocked").classList.add("hidden");
  const { type, freq, gain: level, counter } = TONES[tone];
  document.body.dataset[counter] = String(Number(document.body.dataset[counter] || 0) + 1);
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.type = type;
  osc.frequency.value = freq;
  gain.gain.value = level;
  osc.connect(gain).connect(audio.destination);
  osc.start();
  osc.stop(audio.currentTime + 0.25);
}
setInterval(() => {
  if (!state.me) return;
  const waiting = state.incidents.filter(needsAttention);
  if (waiting.some(isLifeSafety)) beep("life");
  else if (waiting.length && !state.muted) beep("soft");
}, 2000);

// Shown above every view while an alarm waits: open or acknowledge in one click. The strip
// itself is not a live region (its age ticks every second); a screen reader hears each new
// alarm once, from #alert-announce.
export function renderAlert() {
  const waiting = sortQueue(state.incidents).filter(needsAttention);
  const strip = $("#alert-strip");
  strip.classList.toggle("hidden", waiting.length === 0);
  document.title = waiting.length ? `⚠ (${waiting.length}) ${t("title")}` : t("title");
  announce(waiting);
  if (!waiting.length) { strip.dataset.id = ""; return; }
  const inc = waiting[0];
  strip.dataset.id = inc.id;
  strip.dataset.priority = String(inc.priority);
  const headline = isRealerted(inc) ? t("alarm_again") : isLifeSafety(inc) ? t("new_alarm") : t("alarm_waiting");
  $("#alert-text").textContent = [
    waiting.length > 1 ? `${waiting.length} × ${headline}` : headline,
    kindLabel(inc.kind), inc.household_name || inc.household_id, inc.community || "",
  ].filter(Boolean).join(" · ");
  $("#alert-age").dataset.since = alarmAt(inc);
  $("#alert-age").textContent = fmtAge(alarmAt(inc));
}

function announce(waiting) {
  const fresh = waiting.filter((inc) => !state.announced.has(`${inc.id}@${inc.realerted_at || ""}`));
  if (!fresh.length) return;
  fresh.forEach((inc) => state.announced.add(`${inc.id}@${inc.realerted_at || ""}`));
  $("#alert-announce").textContent = fresh.map((inc) => [
    isRealerted(inc) ? t("alarm_again") : isLifeSafety(inc) ? t("new_alarm") : t("alarm_waiting"),
    kindLabel(inc.kind), inc.household_name || inc.household_id].filter(Boolean).join(" · ")).join(". ");
}
$("#alert-open").addEventListener("click", () => {
  const id = $("#alert-strip").dataset.id;
  if (id) location.hash = `#/incident/${encodeURIComponent(id)}`;
});
$("#alert-ack").addEventListener("click", async () => {
  const id = $("#alert-strip").dataset.id;
  if (!id) return;
  try {
    const result = await api("POST", `/api/v1/incidents/${encodeURIComponent(id)}/acknowledge`, {});
    if (result && result.incident) applyIncident(result.incident);
    location.hash = `#/incident/${encodeURIComponent(id)}`;
  } catch (e) { $("#alert-text").textContent = errorText(e); }
  scheduleRefresh(0);
});
