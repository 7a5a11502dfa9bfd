// The console's model: what the page knows (the open queue, the incident on screen, who is
// there) and how a change pushed by the live stream is applied to it. No drawing, no requests.

import { t } from "./text.js";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

export const state = {
  me: null,
  lang: localStorage.getItem("lang") || (navigator.language.startsWith("zh") ? "zh-CN" : "en"),
  tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
  incidents: [],
  current: null,
  // The incident the route asked for: only its answer is drawn (a slower, older read is not).
  opening: null,
  stream: null,
  connected: false,
  // Muting lasts for the shift (this login); life-safety alarms sound regardless.
  muted: sessionStorage.getItem("muted") === "1",
  p2AfterS: 60,
  formsFor: null,
  escalations: [],
  charts: {},
  refreshTimer: null,
  gateways: {},
  // Who is there (GET /operators/presence): display names, and this operator's own status.
  people: [],
  // Incidents this page reported as shown (POST /seen), and alarms already announced once.
  seenSent: new Set(),
  announced: new Set(),
  assignedHere: {},  // incident id → the operator this supervisor assigned it to
};

export const isSupervisor = () => Boolean(state.me && ["supervisor", "admin"].includes(state.me.role));
export const isLifeSafety = (inc) => Number(inc.priority) <= 1;
export const isRestored = (inc) => Boolean(inc.summary && inc.summary.restored);
// Timers run from when the alarm happened (alarm_at), not from when it reached dispatch.
export const alarmAt = (inc) => inc.alarm_at || inc.opened_at;
export const waitedS = (inc) => (Date.now() - new Date(alarmAt(inc)).getTime()) / 1000;
export const isMine = (inc) => Boolean(inc && state.me && inc.operator === state.me.username);
// A new alarm event joined after acknowledgement: it alerts whoever holds the incident, and
// everyone (the strip) when nobody does.
export const isRealerted = (inc) => Boolean(inc.realerted_at) && (!inc.operator || isMine(inc));

// An alarm stands out until someone acknowledges it: life safety at once, priority 2 once it
// has waited the configured time. Once its condition is restored it stops flashing (it stays
// open in the queue, marked as cleared).
export function needsAttention(inc) {
  if (isRealerted(inc)) return true;
  if (inc.state !== "new" || isRestored(inc)) return false;
  if (isLifeSafety(inc)) return true;
  return Number(inc.priority) === 2 && waitedS(inc) >= state.p2AfterS;
}

export const sortQueue = (list) => [...list].sort((a, b) =>
  (a.priority - b.priority) || (new Date(a.opened_at) - new Date(b.opened_at)));

export function lateText(inc) {
  const minutes = Math.max(1, Math.round(waitedS(inc) / 60));
  return t("late_arrival").replace("{min}", String(minutes));
}

// Operators by their display name where the presence list knows them, else their username.
export function operatorName(username) {
  if (!username) return "";
  if (username === "system") return t("actor_system");
  const who = state.people.find((p) => p.username === username || p.display_name === username);
  return (who && who.display_name) || username;
}

export function myStatus() {
  const me = state.me && state.people.find((p) => p.username === state.me.username);
  return me ? me.status : null;
}

// ---------------------------------------------------------------- applying a pushed change

// An incident as a list row: the change's data without what it added to the timeline.
function asRow(data) {
  const { timeline_added: _added, ...inc } = data;
  return inc;
}

// The queue holds open incidents; a resolved one leaves it.
export function putInQueue(inc) {
  const open = inc.state !== "resolved";
  const at = state.incidents.findIndex((i) => i.id === inc.id);
  if (at >= 0 && open) state.incidents[at] = inc;
  else if (at >= 0) state.incidents.splice(at, 1);
  else if (open) state.incidents.push(inc);
}

// One key per timeline entry, so an entry the page already has (read with the incident, or
// pushed before) is never shown twice.
const canonical = (v) => (v && typeof v === "object"
  ? (Array.isArray(v) ? `[${v.map(canonical).join(",")}]`
    : `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`)
  : JSON.stringify(v ?? null));
const entryKey = (e) => canonical([new Date(e.at).getTime(), e.type, e.name, e.actor, e.event_id, e.detail || {}]);

// The incident on screen takes the change's fields and appends its new timeline entries; an
// event's room comes from the household's devices, as the server fills it when read.
function mergeCurrent(data) {
  const cur = state.current;
  const rooms = Object.fromEntries(((cur.household || {}).devices || []).map((d) => [d.id, d.room]));
  const have = new Set((cur.timeline || []).map(entryKey));
  const added = (data.timeline_added || [])
    .filter((e) => !have.has(entryKey(e)))
    .map((e) => (e.type === "event" && e.device_id && !e.room ? { ...e, room: rooms[e.device_id] || null } : e));
  state.current = { ...cur, ...asRow(data), timeline: [...(cur.timeline || []), ...added] };
}

// What an incident change does to the page's model; true when the open incident changed.
export function applyIncidentChange(data) {
  putInQueue(asRow(data));
  if (!state.current || state.current.id !== data.id) return false;
  mergeCurrent(data);
  return true;
}

// A household's new record: the open incident's card and the queue's names follow it.
export function applyHouseholdChange(data) {
  if (!data || !data.id || !data.name) return false;
  state.incidents.forEach((inc) => {
    if (inc.household_id === data.id) Object.assign(inc, { household_name: data.name, community: data.community });
  });
  if (!state.current || state.current.household_id !== data.id) return false;
  state.current = { ...state.current, household: data, household_name: data.name, community: data.community };
  return true;
}

// A gateway going offline or online, or revoked: the change says which (its time is the
// status's), so the page's list is updated without reading every gateway again, which a centre
// losing its network would otherwise ask of each console once per gateway. False when the
// change says something else (an enrollment) or the gateway is not known yet: then read.
export function applyGatewayChange(change) {
  const known = state.gateways[change.entity_id];
  const data = change.data || {};
  if (!known) return false;
  if (typeof data.online === "boolean") {
    if (known.online !== data.online) Object.assign(known, { online: data.online, status_changed_at: change.at });
    return true;
  }
  if (data.revoked === true) { known.revoked = true; return true; }
  return false;
}
