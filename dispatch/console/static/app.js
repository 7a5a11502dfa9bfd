// The operator console: plain JavaScript modules, no build step, every asset served by dispatchd.
// This module owns the page: login, routing, the whole re-read, the keyboard, the language. The
// live stream's changes are applied as they are pushed (state.js); the queue is still re-read
// whole when the stream (re)connects and every 30 s, so a missed message cannot last.

import { $, $$, state, alarmAt, applyGatewayChange, applyHouseholdChange, applyIncidentChange, isSupervisor,
  lateText, myStatus, operatorName, sortQueue } from "./state.js";
import { t, esc, fmtAge, fmtTime, kindLabel, label } from "./text.js";
import { api, asList, errorText, onUnauthorized } from "./api.js";
import { on as streamOn, setConnected, startStream, stopStream } from "./stream.js";
import { keepFocusedRow, renderQueue, slaCells, tickClock } from "./queue.js";
import { renderAlert, unlockAudio } from "./alert.js";
import { acknowledgeOrTakeOver, loadIncident, renderIncident } from "./incident.js";
import { loadEscalations } from "./escalations.js";
import { loadReports } from "./reports.js";

// Hooks for the console's other scripts (shift.js, rescue_console.js): views by route name, and
// functions called on each refresh (async), each render, and each stream change.
const kit = { views: {}, onRefresh: [], onRender: [], onEvent: [] };
window.ConsoleKit = kit;
onUnauthorized.call = () => showLogin();

// ---------------------------------------------------------------- language

function applyI18n() {
  document.documentElement.lang = state.lang;
  $$("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $$("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  $$("[data-i18n-label]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nLabel)));
  $("#lang").value = state.lang;
  $("#sound-toggle").textContent = t(state.muted ? "unmute" : "mute_shift");
  $("#mute-banner").classList.toggle("hidden", !state.muted);
  if (state.me) $("#whoami-role").textContent = t(`role_${state.me.role}`);
  document.title = t("title");
}

function setLang(lang) {
  state.lang = lang;
  localStorage.setItem("lang", lang);
  applyI18n();
  render();
}

// ---------------------------------------------------------------- login

export function showLogin() {
  stopStream();
  state.me = null;
  state.incidents = [];
  state.current = null;
  renderAlert();
  $("#app").classList.add("hidden");
  $("#login-view").classList.remove("hidden");
  // The autofocus attribute acts only on page load, when the form is still hidden.
  $("#login-form input[name=username]").focus();
}

async function afterLogin(me) {
  state.me = me;
  window.dispatchEvent(new CustomEvent("console:me", { detail: me }));
  $("#login-view").classList.add("hidden");
  $("#app").classList.remove("hidden");
  $("#whoami-name").textContent = me.display_name || me.username;
  $("#whoami-role").textContent = t(`role_${me.role}`);
  $("#whoami-role").dataset.role = me.role;
  $$(".supervisor-only").forEach((el) => el.classList.toggle("hidden", !isSupervisor()));
  applyI18n();
  try {
    const cfg = await api("GET", "/api/v1/console/config");
    if (cfg && cfg.timezone) state.tz = cfg.timezone;
    if (cfg && typeof cfg.priority2_alert_after_s === "number") state.p2AfterS = cfg.priority2_alert_after_s;
  } catch (e) { /* the browser's zone and the default delay are fine fallbacks */ }
  tickClock();
  startStream();
  route();
}

function setMuted(muted) {
  state.muted = muted;
  if (muted) sessionStorage.setItem("muted", "1"); else sessionStorage.removeItem("muted");
  applyI18n();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  setMuted(false); // a new shift starts with sound
  const form = new FormData(ev.target);
  $("#login-error").textContent = "";
  try {
    await api("POST", "/api/v1/auth/login", {
      username: form.get("username"), password: form.get("password") });
    unlockAudio();
    await afterLogin(await api("GET", "/api/v1/auth/me"));
  } catch (e) {
    $("#login-error").textContent = e.status === 429 ? t("login_throttled") : t("login_failed");
  }
});

$("#logout").addEventListener("click", async () => {
  try { await api("POST", "/api/v1/auth/logout"); } catch (e) { /* already out */ }
  setMuted(false);
  showLogin();
});

// ---------------------------------------------------------------- the live stream and re-reads

// A change is applied as it is pushed: the queue, the strip and the open incident are redrawn
// from the model, with no request. Only what the change does not carry is read (a gateway
// newly enrolled, the escalations list); the other modules get every change too.
function onChange(type, change, raw) {
  const data = change && change.data;
  if (change && change.topic === "incident" && data && data.id) {
    const onScreen = applyIncidentChange(data);
    renderQueue();
    renderAlert();
    if (onScreen) renderIncident();
  } else if (change && change.topic === "household") {
    if (applyHouseholdChange(data)) renderIncident();
    renderQueue();
  } else if (change && change.topic === "gateway") {
    if (applyGatewayChange(change)) {
      showGateways(Object.values(state.gateways));
      if (state.current && state.current.gateway_id === change.entity_id) renderIncident();
    } else loadGateways().catch(() => {});
  }
  if (/^incident\.(escalated|takeover)$/.test(type) && isSupervisor()) loadEscalations().catch(() => {});
  kit.onEvent.forEach((hook) => hook(type, raw, change));
  // The administration pages (classic scripts) follow the stream through this event.
  if (change) window.dispatchEvent(new CustomEvent("console:change", { detail: { type, change } }));
}
streamOn.change = onChange;
// On (re)connecting, everything is read once: what changed while the page was away.
streamOn.open = () => scheduleRefresh(0);

export function scheduleRefresh(delay) {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(refresh, delay);
}

async function refresh() {
  if (!state.me) return;
  // Counted, begun and ended (failed too), so a test can tell this re-read from the drawing of
  // a change.
  document.body.dataset.reads = String(Number(document.body.dataset.reads || 0) + 1);
  try {
    state.incidents = asList(await api("GET", "/api/v1/incidents?state=open&limit=500"), "incidents");
    renderQueue();
    renderAlert();
    // Presence (display names, one's own break) follows; the rows then show the names.
    await Promise.all(kit.onRefresh.map((hook) => hook().catch(() => {})));
    renderQueue();
    if (isSupervisor()) await loadEscalations();
    await loadGateways();
    if (state.current) await loadIncident(state.current.id, false);
  } catch (e) { /* the next stream message or reconnect retries */ } finally {
    document.body.dataset.readsDone = String(Number(document.body.dataset.readsDone || 0) + 1);
  }
}

// A safety net under the stream: a half-open connection shows no error to the page (the
// server's keep-alives are comments, invisible to EventSource), so re-read the queue anyway.
setInterval(() => { if (state.me && state.connected) refresh(); }, 30000);
$("#sound-toggle").addEventListener("click", () => { unlockAudio(); setMuted(!state.muted); });
$("#unmute").addEventListener("click", () => setMuted(false));

// ---------------------------------------------------------------- gateways

// The gateways page and the household pages are admin.js's; the incident card reads these.
async function loadGateways() {
  const list = asList(await api("GET", "/api/v1/gateways"), "gateways");
  state.gateways = Object.fromEntries(list.map((g) => [g.id, g]));
  showGateways(list);
}

function showGateways(list) {
  if (window.ConsoleAdmin) window.ConsoleAdmin.gateways(list);
}

// ---------------------------------------------------------------- routing

function route() {
  if (!state.me) return;
  const [view, id] = location.hash.replace(/^#\//, "").split("/");
  const name = view || "queue";
  $$(".view").forEach((v) => v.classList.add("hidden"));
  $$("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
  if (name === "incident" && id) {
    const wanted = decodeURIComponent(id);
    const view = $("#incident-view");
    if (state.current && state.current.id !== wanted) state.current = null;
    if (view.dataset.id !== wanted) {
      // Nothing of the incident shown before stays while this one is read: it would be read,
      // or acted on, as this one.
      view.classList.add("loading");
      view.setAttribute("aria-busy", "true");
    }
    state.opening = wanted;
    view.classList.remove("hidden");
    loadIncident(wanted).catch(() => { if (state.opening === wanted) location.hash = "#/queue"; });
    return;
  }
  state.current = null;
  state.opening = null;
  if (window.ConsoleAdmin && window.ConsoleAdmin.route(name, id)) return;
  const section = $(`#${name}-view`) || $("#queue-view");
  section.classList.remove("hidden");
  if (name === "reports") loadReports().catch(() => {});
  if (name === "escalations") loadEscalations().catch(() => {});
  if (kit.views[name]) kit.views[name]().catch(() => {});
  if (name === "queue") refresh();
}

function render() {
  renderQueue();
  renderAlert();
  renderIncident();
  kit.onRender.forEach((hook) => hook());
}

window.addEventListener("hashchange", route);
// The skip link moves the focus into the page without touching the route in the URL.
$("#skip-link").addEventListener("click", (e) => {
  e.preventDefault();
  $("#main").focus();
});

// Keyboard: Esc back to the queue; in an incident, A acknowledges and N writes a note.
// Letters act only when no field has the focus, so typing a note never triggers anything.
document.addEventListener("keydown", (e) => {
  if (!state.me || e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
  if (e.key === "Escape") {
    if (typing) { document.activeElement.blur(); return; }
    location.hash = "#/queue";
    return;
  }
  if (typing) return;
  const inIncident = !$("#incident-view").classList.contains("hidden") && state.current;
  if (inIncident && e.key.toLowerCase() === "a" && !$("#act-ack").disabled) { e.preventDefault(); acknowledgeOrTakeOver(); }
  if (inIncident && e.key.toLowerCase() === "n") { e.preventDefault(); $("#note-form input").focus(); }
  const idle = document.activeElement === document.body;
  if (!inIncident && idle && e.key === "Enter" && !$("#alert-strip").classList.contains("hidden")) $("#alert-open").click();
});
$("#lang").addEventListener("change", (e) => setLang(e.target.value));
$$("[data-lang]").forEach((b) => b.addEventListener("click", () => setLang(b.dataset.lang)));

// What admin.js (the administration pages) borrows from this page.
window.Console = { t, api, esc, fmtTime, kindLabel, me: () => state.me, tz: () => state.tz,
  setGateways: (list) => { state.gateways = Object.fromEntries(list.map((g) => [g.id, g])); } };

// ---------------------------------------------------------------- start

// What the page's other modules (shift.js: presence and handover) build on.
Object.assign(kit, { $, $$, api, t, esc, fmtTime, fmtAge, kindLabel, label, state, operatorName, errorText,
  slaCells, sortQueue, alarmAt, lateText, isSupervisor, scheduleRefresh, myStatus, keepFocusedRow });

applyI18n();
setConnected(true);
api("GET", "/api/v1/auth/me").then(afterLogin).catch(showLogin);
