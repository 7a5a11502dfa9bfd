// The live stream: one EventSource, reconnected after a drop and resumed from the last change
// seen (Last-Event-ID); each change is handed to the page parsed, to be applied as it is.

import { $, state } from "./state.js";
import { t } from "./text.js";
import { api } from "./api.js";

// app.js fills these in: what to do when the stream (re)opens, and with each change.
export const on = { open: () => {}, change: (_type, _change, _raw) => {} };

// Every change the console follows, by its kind (the SSE event name).
const KINDS = [
  "incident.opened", "incident.updated", "incident.returned", "incident.realerted",
  "incident.escalated", "incident.takeover", "incident.taken_over", "incident.reassigned",
  "gateway.online", "gateway.offline", "gateway.enrolled", "gateway.reenrolled", "gateway.revoked",
  "household.created", "household.updated", "household.archived", "household.restored",
  "household.away", "household.back", "operator.created", "operator.updated", "operator.presence",
];

export function setConnected(ok) {
  state.connected = ok;
  $("#conn-banner").classList.toggle("hidden", ok);
  $("#live-dot").classList.toggle("live", ok);
  $("#live-dot").title = ok ? t("reconnected") : t("disconnected");
  document.body.dataset.live = ok ? "connected" : "disconnected";
}

export function startStream() {
  stopStream();
  // EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed.
  const es = new EventSource("/api/v1/stream", { withCredentials: true });
  state.stream = es;
  window.dispatchEvent(new CustomEvent("console:stream", { detail: es }));
  es.onopen = () => { setConnected(true); on.open(); };
  es.onerror = () => {
    setConnected(false);
    // CONNECTING: the browser retries by itself (the server asks for 2 s). CLOSED: the server
    // answered with an error (starting up, or our session is gone): retry from scratch.
    if (es.readyState === EventSource.CLOSED) setTimeout(() => reconnect(es), 2000);
  };
  const onChange = (ev) => {
    let change = null;
    try { change = JSON.parse(ev.data); } catch (e) { /* nothing to apply; the safety re-read covers it */ }
    on.change(ev.type, change && typeof change === "object" ? change : null, ev.data);
  };
  es.onmessage = onChange;
  KINDS.forEach((name) => es.addEventListener(name, onChange));
}

async function reconnect(es) {
  if (!state.me || state.stream !== es) return;
  try {
    await api("GET", "/api/v1/auth/me"); // a 401 shows the login form instead
    if (state.me && state.stream === es) startStream();
  } catch (e) {
    if (state.me && state.stream === es && e.status !== 401) setTimeout(() => reconnect(es), 2000);
  }
}

export function stopStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}
