// The operator console: plain JavaScript, no build step, every asset served by dispatchd.
// The live stream only says "something changed"; the page then re-reads the queue from the API,
// so a missed or repeated stream message can never leave the page showing a wrong queue.
"use strict";

// Hooks for the console's other modules, filled in before they load: views by route name, and
// functions called on each refresh (async), each render, and each named stream event.
window.ConsoleKit = { views: {}, onRefresh: [], onRender: [], onEvent: [] };

(() => {
  const kit = window.ConsoleKit;
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const state = {
    me: null,
    lang: localStorage.getItem("lang") || (navigator.language.startsWith("zh") ? "zh-CN" : "en"),
    tz: Intl.DateTimeFormat().resolvedOptions().timeZone,
    incidents: [],
    current: null,
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

  function describeDetail(detail) {
    if (!detail || typeof detail !== "object") return "";
    return Object.entries(detail)
      .filter(([k, v]) => v !== null && v !== "" && typeof v !== "object" && k !== "condition")
      .map(([k, v]) => `${t(`detail_${k}`) === `detail_${k}` ? t("detail_other") : t(`detail_${k}`)}: ${
        typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v) ? fmtTime(v) : v}`).join(", ");
  }

  // ---------------------------------------------------------------- i18n and formatting

  function t(key) {
    const table = window.I18N[state.lang] || window.I18N.en;
    return table[key] ?? window.I18N.en[key] ?? key;
  }

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

  // One unambiguous form in every language: 2026-11-29 12:21:53, in the centre's time zone.
  function fmtTime(iso) {
    if (!iso) return "—";
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
      timeZone: state.tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
  }

  // Hours and minutes in the centre's zone: "smoke cleared 10:14".
  function fmtClock(iso) { return fmtTime(iso).slice(11, 16); }

  function fmtAge(iso) {
    if (!iso) return "—";
    let s = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(s).padStart(2, "0")}`;
  }

  function kindLabel(kind) { return t(`kind_${kind}`) === `kind_${kind}` ? kind : t(`kind_${kind}`); }

  function esc(text) {
    return String(text ?? "").replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // ---------------------------------------------------------------- API

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (resp.status === 401) {
      showLogin();
      throw new Error("not logged in");
    }
    const text = await resp.text();
    const data = text ? JSON.parse(text) : null;
    if (!resp.ok) {
      const err = new Error((data && (data.detail || data.title)) || resp.statusText);
      err.status = resp.status;
      err.title = (data && data.title) || "";
      err.data = data;
      throw err;
    }
    return data;
  }

  // The server's refusals in the operator's language: known titles by pattern, anything else as a
  // translated "refused" with its status (the English detail stays in the server's log).
  const ERRORS = [
    [/^already taken by (.+)$/, "err_already_taken"],
    [/^incident not held by you$/, "err_not_held"],
    [/^no call recorded$/, "err_no_call"],
    [/^incident is resolved$/, "err_resolved"],
    [/^rescuer on scene$/, "err_rescuer_on_scene"],
    [/^cannot (.+) an incident that is (.+)$/, "err_wrong_state"],
    [/^no such incident$/, "err_no_incident"],
    [/^invalid request$/, "err_invalid"],
    [/role required$/, "err_forbidden"],
    [/^already held by (.+)$/, "err_already_held"],
    [/^(.+) is not on duty$/, "err_not_on_duty"],
  ];
  function errorText(e) {
    const title = String((e && e.title) || "");
    for (const [pattern, key] of ERRORS) {
      const m = title.match(pattern);
      if (m) return t(key).replace("{who}", operatorName(m[1]));
    }
    if (e && e.status === 403) return t("err_forbidden");
    return e && e.status ? `${t("err_refused")} (${e.status})` : t("err_network");
  }

  // Operators by their display name where the presence list knows them, else their username.
  function operatorName(username) {
    if (!username) return "";
    if (username === "system") return t("actor_system");
    const who = state.people.find((p) => p.username === username || p.display_name === username);
    return (who && who.display_name) || username;
  }

  const asList = (data, key) => (Array.isArray(data) ? data : (data && (data[key] || data.items)) || []);

  // ---------------------------------------------------------------- login

  function showLogin() {
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

  const isSupervisor = () => Boolean(state.me && ["supervisor", "admin"].includes(state.me.role));

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

  // ---------------------------------------------------------------- live stream

  function setConnected(ok) {
    state.connected = ok;
    $("#conn-banner").classList.toggle("hidden", ok);
    $("#live-dot").classList.toggle("live", ok);
    $("#live-dot").title = ok ? t("reconnected") : t("disconnected");
    document.body.dataset.live = ok ? "connected" : "disconnected";
  }

  function startStream() {
    stopStream();
    // EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed.
    const es = new EventSource("/api/v1/stream", { withCredentials: true });
    state.stream = es;
    window.dispatchEvent(new CustomEvent("console:stream", { detail: es }));
    es.onopen = () => { setConnected(true); scheduleRefresh(0); };
    es.onerror = () => {
      setConnected(false);
      // CONNECTING: the browser retries by itself (the server asks for 2 s). CLOSED: the server
      // answered with an error (starting up, or our session is gone): retry from scratch.
      if (es.readyState === EventSource.CLOSED) setTimeout(() => reconnect(es), 2000);
    };
    const onChange = (ev) => {
      scheduleRefresh(50);
      if (ev && /^incident\.(escalated|takeover)$/.test(ev.type) && isSupervisor()) loadEscalations().catch(() => {});
      if (ev && ev.type) kit.onEvent.forEach((hook) => hook(ev.type, ev.data));
    };
    es.onmessage = onChange;
    // Named stream events: any change to incidents or gateways re-reads the queue.
    ["incident.opened", "incident.updated", "incident.escalated", "incident.takeover",
      "gateway.online", "gateway.offline", "gateway.enrolled", "gateway.reenrolled",
      "gateway.revoked", "household.created", "household.updated", "incident.returned",
      "incident.realerted", "incident.taken_over", "incident.reassigned", "operator.presence"].forEach((name) => es.addEventListener(name, onChange));
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

  function stopStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
  }

  function scheduleRefresh(delay) {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refresh, delay);
  }

  async function refresh() {
    if (!state.me) return;
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
    } catch (e) { /* the next stream message or reconnect retries */ }
  }

  // A safety net under the stream: a half-open connection shows no error to the page (the
  // server's keep-alives are comments, invisible to EventSource), so re-read the queue anyway.
  setInterval(() => { if (state.me && state.connected) refresh(); }, 30000);

  // ---------------------------------------------------------------- sound

  let audio = null;
  function unlockAudio() {
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
  $("#sound-toggle").addEventListener("click", () => { unlockAudio(); setMuted(!state.muted); });
  $("#unmute").addEventListener("click", () => setMuted(false));

  const isLifeSafety = (inc) => Number(inc.priority) <= 1;
  const isRestored = (inc) => Boolean(inc.summary && inc.summary.restored);
  // Timers run from when the alarm happened (alarm_at), not from when it reached dispatch.
  const alarmAt = (inc) => inc.alarm_at || inc.opened_at;
  const waitedS = (inc) => (Date.now() - new Date(alarmAt(inc)).getTime()) / 1000;
  const isMine = (inc) => Boolean(inc && state.me && inc.operator === state.me.username);
  // A new alarm event joined after acknowledgement: it alerts whoever holds the incident, and
  // everyone (the strip) when nobody does.
  const isRealerted = (inc) => Boolean(inc.realerted_at) && (!inc.operator || isMine(inc));

  // An alarm stands out until someone acknowledges it: life safety at once, priority 2 once it
  // has waited the configured time. Once its condition is restored it stops flashing (it stays
  // open in the queue, marked as cleared).
  function needsAttention(inc) {
    if (isRealerted(inc)) return true;
    if (inc.state !== "new" || isRestored(inc)) return false;
    if (isLifeSafety(inc)) return true;
    return Number(inc.priority) === 2 && waitedS(inc) >= state.p2AfterS;
  }

  // ---------------------------------------------------------------- alert strip

  // Shown above every view while an alarm waits: open or acknowledge in one click. The strip
  // itself is not a live region (its age ticks every second); a screen reader hears each new
  // alarm once, from #alert-announce.
  function renderAlert() {
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

  // ---------------------------------------------------------------- queue

  const sortQueue = (list) => [...list].sort((a, b) =>
    (a.priority - b.priority) || (new Date(a.opened_at) - new Date(b.opened_at)));

  function slaCells(inc) {
    const d = inc.deadlines || {};
    const parts = [["acknowledge", "ack"], ["callback", "call"], ["on_scene", "arrive"]];
    return parts.filter(([key]) => d[key]).map(([key, label]) => {
      const left = (new Date(d[key]).getTime() - Date.now()) / 1000;
      const done = { acknowledge: inc.acknowledged_at, callback: inc.callback_at,
        on_scene: inc.on_scene_at }[key];
      const cls = done ? "sla-done" : left < 0 ? "sla-over" : left < 30 ? "sla-warn" : "sla-ok";
      const txt = done ? "✓" : left < 0 ? `-${fmtAgeSeconds(-left)}` : fmtAgeSeconds(left);
      return `<span class="sla ${cls}" title="${esc(t(`step_${key}`))}">${esc(t(label))} ${txt}</span>`;
    }).join(" ");
  }

  function fmtAgeSeconds(s) {
    s = Math.floor(s);
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  // The row's cells. The age column ticks from alarm_at; an alarm that reached dispatch late
  // says so ("happened 10 min ago, arrived late"), as its timers already ran while it waited.
  function rowCells(inc) {
    const hh = inc.household || {};
    const late = inc.late ? ` <span class="late" data-late-since="${esc(alarmAt(inc))}">${esc(lateText(inc))}</span>` : "";
    const holder = inc.operator ? `${esc(operatorName(inc.operator))}${inc.operator_presence && inc.operator_presence !== "on_duty"
      ? ` <span class="tag">${esc(t(`presence_${inc.operator_presence}`))}</span>` : ""}` : "";
    return `<td><span class="prio prio-${esc(inc.priority)}">${esc(t(`prio_${inc.priority}`))}</span></td>
        <td class="kind">${esc(kindLabel(inc.kind))}</td>
        <td>${esc(hh.name || inc.household_name || inc.household_id || "")}</td>
        <td>${esc(hh.community || inc.community || "")}</td>
        <td class="age"><span class="since" data-since="${esc(alarmAt(inc))}">${fmtAge(alarmAt(inc))}</span>${late}</td>
        <td>${esc(t(`state_${inc.state}`))}${isRestored(inc)
          ? ` <span class="cleared">${esc(kindLabel(`${inc.kind}_restore`))} ${esc(fmtClock(inc.last_event_at))}</span>` : ""}${
          inc.realerted_at ? ` <span class="again">${esc(t("alarm_again_short"))}</span>` : ""}</td>
        <td>${slaCells(inc)}</td>
        <td>${holder}</td>`;
  }

  function lateText(inc) {
    const minutes = Math.max(1, Math.round(waitedS(inc) / 60));
    return t("late_arrival").replace("{min}", String(minutes));
  }

  // Live updates change rows in place: the focused row keeps the focus and the page its scroll
  // position, so a keyboard user is never thrown back to the top by an alarm elsewhere.
  const rowHtml = new WeakMap();
  function renderQueue() {
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
      const html = rowCells(inc);
      if (rowHtml.get(tr) !== html) { tr.innerHTML = html; rowHtml.set(tr, html); }
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
  function keepFocusedRow(update) {
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
  function reportSeen(inc) {
    if (inc.first_seen_at || state.seenSent.has(inc.id) || document.hidden) return;
    if (!state.me || $("#app").classList.contains("hidden") || myStatus() === "on_break") return;
    state.seenSent.add(inc.id);
    api("POST", `/api/v1/incidents/${encodeURIComponent(inc.id)}/seen`, {})
      .catch(() => state.seenSent.delete(inc.id));
  }

  function myStatus() {
    const me = state.me && state.people.find((p) => p.username === state.me.username);
    return me ? me.status : null;
  }

  // The age and timer columns tick every second without re-reading the API.
  setInterval(() => {
    $$("#queue-body .since, #alert-age").forEach((el) => { el.textContent = fmtAge(el.dataset.since); });
    $$("#queue-body tr").forEach((tr) => {
      const inc = state.incidents.find((i) => String(i.id) === tr.dataset.id);
      if (!inc) return;
      tr.children[6].innerHTML = slaCells(inc);
      const late = tr.querySelector(".late");
      if (late) late.textContent = lateText(inc);
      tr.classList.toggle("attention", needsAttention(inc)); // a priority-2 alarm's time comes
    });
    if (state.me) renderAlert();
    tickClock();
  }, 1000);
  function tickClock() { $("#clock").textContent = fmtTime(new Date().toISOString()); }

  // ---------------------------------------------------------------- incident view

  async function loadIncident(id, scroll = true) {
    const inc = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
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
  function label(prefix, value) {
    const key = `${prefix}_${String(value).replace(/[^a-z0-9]+/gi, "_").toLowerCase()}`;
    return t(key) === key ? String(value) : t(key);
  }

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

  function renderIncident() {
    const inc = state.current;
    if (!inc) return;
    resetForms(inc.id);
    reportSeen(inc);
    $("#incident-view").dataset.id = inc.id;
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
  function applyIncident(inc) {
    const open = inc.state !== "resolved";
    state.incidents = state.incidents.filter((i) => i.id !== inc.id).concat(open ? [inc] : []);
    renderQueue();
    renderAlert();
  }

  // Acknowledging an incident another operator holds takes it over: that needs a confirmation
  // and a reason, and the other operator is told.
  function acknowledgeOrTakeOver() {
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

  // ---------------------------------------------------------------- escalations (supervisors)

  function describeEscalation(c) {
    const d = c.data || {};
    if (c.kind === "incident.takeover") return t("esc_takeover");
    const key = `esc_${d.reason}`;
    return t(key) === key ? String(d.reason || c.kind) : t(key);
  }

  async function loadEscalations() {
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

  // ---------------------------------------------------------------- gateways

  // The gateways page and the household pages are admin.js's; the incident card reads these.
  async function loadGateways() {
    const list = asList(await api("GET", "/api/v1/gateways"), "gateways");
    state.gateways = Object.fromEntries(list.map((g) => [g.id, g]));
    if (window.ConsoleAdmin) window.ConsoleAdmin.gateways(list);
  }

  // ---------------------------------------------------------------- reports

  function chart(id, config) {
    if (!window.Chart) return;
    if (state.charts[id]) state.charts[id].destroy();
    state.charts[id] = new window.Chart($(`#${id}`), config);
  }

  // The centre's calendar day as UTC instants: reports cover whole local days.
  function localDay(offsetDays) {
    const parts = new Intl.DateTimeFormat("en-CA", { timeZone: state.tz, year: "numeric",
      month: "2-digit", day: "2-digit" }).format(new Date(Date.now() + offsetDays * 86400e3));
    return parts.slice(0, 10);
  }

  let reportTicket = 0;
  async function loadReports() {
    const to = $("#report-to").value || localDay(0);
    const from = $("#report-from").value || localDay(-29);
    $("#report-from").value = from;
    $("#report-to").value = to;
    $("#report-error").textContent = "";
    // Dates are typed in the page's one format (YYYY-MM-DD), not the browser's picker format.
    const valid = (d) => /^\d{4}-\d{2}-\d{2}$/.test(d) && !Number.isNaN(Date.parse(`${d}T00:00:00Z`));
    if (!valid(from) || !valid(to)) { $("#report-error").textContent = t("date_format_error"); return; }
    const end = new Date(`${to}T00:00:00Z`);
    end.setUTCDate(end.getUTCDate() + 1);
    const query = `from=${encodeURIComponent(`${from}T00:00:00`)}&to=${encodeURIComponent(end.toISOString().slice(0, 19))}`;
    const group = $("#report-group").value;
    $("#report-csv").href = `/api/v1/reports/response-times.csv?${query}&group=${group}`;
    const ticket = ++reportTicket;
    let r;
    try {
      r = await api("GET", `/api/v1/reports/response-times?${query}&group=${group}`);
    } catch (e) {
      if (ticket === reportTicket) $("#report-error").textContent = e.status === 403 ? t("reports_forbidden") : errorText(e);
      return;
    }
    if (ticket !== reportTicket) return; // a newer request (other dates or grouping) is under way
    $("#reports-view").dataset.group = group;
    const groups = r.groups || [];
    const labels = groups.map((g) => g.group);
    const minutes = (v) => (v == null ? null : Math.round((v / 60) * 10) / 10);
    const pct = (v) => (v == null ? null : Math.round(v * 1000) / 10);
    const steps = [["to_acknowledge", "to_ack", "#4c8dff"], ["to_callback", "to_callback", "#e8b339"],
      ["to_arrive", "to_arrive", "#3fb96f"]];
    const grid = { color: "#2c333d" };
    const ticks = { color: "#c5ccd6" };
    const common = { animation: false, responsive: true, maintainAspectRatio: false,
      plugins: { legend: { labels: { color: "#e6e9ee" } } },
      scales: { x: { grid, ticks }, y: { grid, ticks, beginAtZero: true } } };
    chart("chart-times", {
      type: "bar",
      data: { labels, datasets: steps.map(([key, label, color]) => ({
        label: t(label), backgroundColor: color, data: groups.map((g) => minutes(g[key].median_s)) })) },
      options: common,
    });
    chart("chart-targets", {
      type: "bar",
      data: { labels, datasets: steps.map(([key, label, color]) => ({
        label: `${t(label)} (${t("target")} ${minutes(r.total[key].target_s)} ${t("unit_min")})`,
        backgroundColor: color, data: groups.map((g) => pct(g[key].within_target)) })) },
      options: { ...common, scales: { ...common.scales, y: { grid, ticks, min: 0, max: 100 } } },
    });
    const byKind = r.total.alarms_by_kind || {};
    chart("chart-kinds", {
      type: "doughnut",
      data: { labels: Object.keys(byKind).map(kindLabel), datasets: [{ data: Object.values(byKind),
        backgroundColor: ["#ff3b3b", "#ff8c42", "#e8b339", "#3fb96f", "#4c8dff", "#a06cff", "#2ec4c4", "#8b95a3"] }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { position: "right", labels: { color: "#e6e9ee" } } } },
    });
    renderLevels(r);
    const tot = r.total;
    const line = (label, timing) => `<tr><th>${esc(t(label))}</th><td>${esc(timing.count)}</td>
      <td>${esc(minutes(timing.median_s) ?? "—")}</td><td>${esc(minutes(timing.p90_s) ?? "—")}</td>
      <td>${timing.within_target == null ? esc(t("no_data")) : `${esc(pct(timing.within_target))}%`}</td></tr>`;
    $("#report-summary").innerHTML = `<h3>${esc(t("incidents"))}: ${esc(tot.incidents)}</h3>
      <table class="compact"><thead><tr><th></th><th>n</th><th>${esc(t("median_min"))}</th>
        <th>${esc(t("p90_min"))}</th><th>${esc(t("within_target"))}</th></tr></thead><tbody>
        ${line("to_ack", tot.to_acknowledge)}${line("to_callback", tot.to_callback)}${line("to_arrive", tot.to_arrive)}
      </tbody></table>
      <p>${esc(t("false_alarm_rate"))}: ${tot.false_alarm_rate == null ? esc(t("no_data")) : `${esc(pct(tot.false_alarm_rate))}%`}
        · ${esc(t("gateways_offline"))}: ${esc(r.gateways_offline_now)}</p>`;
  }
  // One line per group: each of the centre's marks as "share (met of due)"; nothing due is
  // "no data", which is not 0 %.
  function renderLevels(r) {
    const marks = r.total.service_levels || [];
    const cell = (l) => (l.share == null ? `<td class="muted">${esc(t("no_data"))}</td>`
      : `<td>${esc(Math.round(l.share * 1000) / 10)}% <span class="muted">(${esc(l.met)}/${esc(l.due)})</span></td>`);
    $("#report-levels").innerHTML = `<thead><tr><th></th>${marks.map((m) =>
      `<th>${esc(t(`lvl_${m.step}`))} ${esc(m.within_s >= 300 ? `${m.within_s / 60} ${t("unit_min")}` : `${m.within_s} ${t("unit_s")}`)}</th>`).join("")}</tr></thead>
      <tbody>${[...(r.groups || []), r.total].map((g) => `<tr data-group="${esc(g.group)}"><th>${esc(g.group === "total" ? t("incidents") : g.group)}</th>
        ${(g.service_levels || []).map(cell).join("")}</tr>`).join("")}</tbody>`;
  }

  $("#report-run").addEventListener("click", loadReports);
  $("#report-group").addEventListener("change", loadReports);

  // ---------------------------------------------------------------- routing

  function currentView() {
    const h = location.hash.replace(/^#\//, "");
    return h.split("/")[0] || "queue";
  }

  function route() {
    if (!state.me) return;
    const [view, id] = location.hash.replace(/^#\//, "").split("/");
    const name = view || "queue";
    $$(".view").forEach((v) => v.classList.add("hidden"));
    $$("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
    if (name === "incident" && id) {
      $("#incident-view").classList.remove("hidden");
      loadIncident(decodeURIComponent(id)).catch(() => { location.hash = "#/queue"; });
      return;
    }
    state.current = null;
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
})();
