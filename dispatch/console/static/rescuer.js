// The rescuer's phone page. Its task arrives on the rescuer's own live stream. Every press is
// kept in this page's storage (localStorage) with its own time and an idempotency key before it
// is sent, and leaves the queue only once dispatch has answered it: a press made without a
// connection is sent when the connection returns, and one sent twice is applied once.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const state = {
    me: null,
    rescuer: null,
    task: null,
    lang: localStorage.getItem("lang") || (navigator.language.startsWith("zh") ? "zh-CN" : "en"),
    stream: null,
    online: true,
    flushing: false,
    seenTask: null,
  };
  // Which presses the task's state allows (the server has the last word).
  const ALLOWED = {
    accept: ["assigned"],
    en_route: ["assigned", "accepted"],
    on_scene: ["assigned", "accepted", "en_route"],
    need_help: ["accepted", "en_route", "on_scene", "handed_over"],
    handed_over: ["on_scene"],
    done: ["accepted", "en_route", "on_scene", "handed_over"],
  };
  const AFTER = { accept: "accepted", en_route: "en_route", on_scene: "on_scene", handed_over: "handed_over", done: "done" };

  function t(key) {
    const table = window.I18N[state.lang] || window.I18N.en;
    return table[key] ?? window.I18N.en[key] ?? key;
  }
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const kindLabel = (k) => (t(`kind_${k}`) === `kind_${k}` ? k : t(`kind_${k}`));

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function applyI18n() {
    document.documentElement.lang = state.lang;
    $$("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    $$("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
    $("#lang-toggle").textContent = state.lang === "zh-CN" ? "English" : "中文";
    document.title = t("r_title");
  }

  function setLang(lang) {
    state.lang = lang;
    localStorage.setItem("lang", lang);
    applyI18n();
    render();
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    if (resp.status === 401) { showLogin(); throw new Error("not logged in"); }
    const text = await resp.text();
    const data = text ? JSON.parse(text) : null;
    if (!resp.ok) {
      const err = new Error((data && (data.detail || data.title)) || resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  // ------------------------------------------------------------------ the queue of presses

  const queueKey = () => `rescuer.queue.${state.me ? state.me.username : ""}`;
  const loadQueue = () => { try { return JSON.parse(localStorage.getItem(queueKey()) || "[]"); } catch (e) { return []; } };
  const saveQueue = (q) => localStorage.setItem(queueKey(), JSON.stringify(q));

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Where the rescuer is, if they allow it; a press never waits more than a few seconds for it.
  const LOCATING_MS = 6000;
  function locate() {
    if (!navigator.geolocation) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), LOCATING_MS - 1000);
      navigator.geolocation.getCurrentPosition(
        (pos) => { clearTimeout(timer); resolve({ lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy_m: Math.round(pos.coords.accuracy) }); },
        () => { clearTimeout(timer); resolve(null); },
        { enableHighAccuracy: true, timeout: 4500, maximumAge: 30000 });
    });
  }

  async function press(action, extra = {}) {
    const task = state.task;
    if (!task) return;
    const item = { key: newKey(), assignment_id: task.assignment.id, action, pressed_at: new Date().toISOString(), ...extra };
    if (action === "en_route" || action === "on_scene") {
      // Queued at once (its time is the press's); the location joins it when it comes. Until
      // then (a few seconds at most) nothing sends it, or it would go without.
      const q = loadQueue(); q.push({ ...item, locating_until: Date.now() + LOCATING_MS }); saveQueue(q); render();
      const where = await locate();
      const again = loadQueue();
      const mine = again.find((x) => x.key === item.key);
      if (mine) { delete mine.locating_until; Object.assign(mine, where || {}); saveQueue(again); }
    } else {
      const q = loadQueue(); q.push(item); saveQueue(q); render();
    }
    flush();
  }

  async function flush() {
    if (state.flushing || !state.me) return;
    state.flushing = true;
    let sent = false;
    try {
      for (;;) {
        const q = loadQueue();
        if (!q.length) break;
        const item = q[0];
        // Presses go in order: the next waits while its location is on its way.
        if (item.locating_until && item.locating_until > Date.now()) break;
        const { locating_until: _, ...body } = item;
        let resp;
        try {
          resp = await fetch("/api/v1/rescuer/presses", {
            method: "POST", credentials: "same-origin",
            headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        } catch (e) { setOnline(false); break; }
        if (resp.status === 401) { showLogin(); break; }
        if (resp.status >= 500 || resp.status === 429 || resp.status === 408) break; // try again later
        setOnline(true);
        if (!resp.ok) {
          const data = await resp.json().catch(() => ({}));
          notice(`${t("r_refused")}: ${data.title || resp.status}${data.detail ? ` (${data.detail})` : ""}`);
        }
        saveQueue(loadQueue().filter((x) => x.key !== item.key));
        sent = true;
      }
    } finally {
      state.flushing = false;
      renderQueued();
    }
    if (sent) await loadTask().catch(() => {});
  }

  setInterval(() => { if (state.me && loadQueue().length) flush(); }, 3000);
  window.addEventListener("online", () => flush());

  // ------------------------------------------------------------------ alerting

  let audio = null;
  function unlockAudio() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
    } catch (e) { audio = null; }
  }
  document.addEventListener("click", unlockAudio);

  function alertNewTask() {
    unlockAudio();
    if (audio) {
      const now = audio.currentTime;
      [0, 0.35, 0.7].forEach((at) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.4, now + at);
        gain.gain.exponentialRampToValueAtTime(0.001, now + at + 0.3);
        osc.connect(gain).connect(audio.destination);
        osc.start(now + at);
        osc.stop(now + at + 0.3);
      });
      document.body.dataset.sounds = String(Number(document.body.dataset.sounds || 0) + 1);
    }
    if (navigator.vibrate && navigator.vibrate([400, 150, 400, 150, 400])) {
      document.body.dataset.vibrations = String(Number(document.body.dataset.vibrations || 0) + 1);
    }
  }

  function notice(text) {
    $("#notice").textContent = text;
    $("#notice").classList.toggle("hidden", !text);
  }

  // ------------------------------------------------------------------ stream and loading

  function setOnline(ok) {
    state.online = ok;
    $("#offline").classList.toggle("hidden", ok);
    $("#live").classList.toggle("live", ok && Boolean(state.stream) && state.stream.readyState === EventSource.OPEN);
    document.body.dataset.live = ok ? "connected" : "disconnected";
  }

  function startStream() {
    stopStream();
    const es = new EventSource("/api/v1/rescuer/stream", { withCredentials: true });
    state.stream = es;
    es.onopen = () => { setOnline(true); loadTask().catch(() => {}); flush(); };
    es.onerror = () => {
      $("#live").classList.remove("live");
      if (es.readyState === EventSource.CLOSED) setTimeout(() => reconnect(es), 2000);
    };
    es.addEventListener("task.assigned", () => loadTask(true).catch(() => {}));
    es.addEventListener("task.updated", () => loadTask().catch(() => {}));
    es.addEventListener("task.cancelled", (ev) => { notice(calledOff(ev)); loadTask().catch(() => {}); });
  }

  // Why the task was called off: the incident's resolution (in the page's language), or the
  // operator's reason.
  function calledOff(ev) {
    let data = {};
    try { data = JSON.parse(ev.data).data || {}; } catch (e) { data = {}; }
    if (data.resolution) {
      return `${t("r_task_cancelled_msg")} ${t("r_called_off_resolved").replace("{outcome}", t(`out_${data.resolution}`))}`;
    }
    return data.reason ? `${t("r_task_cancelled_msg")} ${data.reason}` : t("r_task_cancelled_msg");
  }

  async function reconnect(es) {
    if (!state.me || state.stream !== es) return;
    try {
      await api("GET", "/api/v1/rescuer/me");
      if (state.me && state.stream === es) startStream();
    } catch (e) {
      if (state.me && state.stream === es && e.status !== 401) setTimeout(() => reconnect(es), 2000);
    }
  }

  function stopStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
  }

  async function loadTask(fresh = false) {
    const [me, task] = await Promise.all([api("GET", "/api/v1/rescuer/me"), api("GET", "/api/v1/rescuer/task")]);
    state.rescuer = me;
    const id = task ? task.assignment.id : null;
    if (id && id !== state.seenTask) {
      state.seenTask = id;
      if (fresh || task.assignment.state === "assigned") alertNewTask();
      notice("");
    }
    state.task = task;
    render();
  }

  // ------------------------------------------------------------------ rendering

  // The task's state as this phone knows it: the server's, and the presses still queued.
  function localState() {
    if (!state.task) return null;
    let s = state.task.assignment.state;
    loadQueue().filter((x) => x.assignment_id === state.task.assignment.id).forEach((x) => {
      if (AFTER[x.action]) s = AFTER[x.action];
    });
    return s;
  }

  function renderQueued() {
    const n = loadQueue().length;
    $("#queued").classList.toggle("hidden", n === 0);
    $("#queued-count").textContent = String(n);
    document.body.dataset.queued = String(n);
  }

  function phones(hh) {
    const list = [];
    if (hh.phone) list.push({ who: t("r_home_phone"), number: hh.phone });
    (hh.residents || []).forEach((r) => (r.phones || []).forEach((n) => list.push({ who: r.name, number: n })));
    [...(hh.emergency_contacts || [])].sort((a, b) => (a.priority || 1) - (b.priority || 1))
      .forEach((c) => (c.phones || []).forEach((n) => list.push({ who: `${c.name}${c.relation ? ` (${c.relation})` : ""}`, number: n })));
    return list;
  }

  function render() {
    if (!state.me) return;
    const r = state.rescuer;
    $("#me-name").textContent = r ? r.name : state.me.username;
    $("#me-status").textContent = r ? t(`r_status_${r.status}`) : "";
    $("#me-status").dataset.status = r ? r.status : "";
    renderQueued();
    const task = state.task;
    const s = localState();
    const active = task && !["done", "cancelled", "reassigned"].includes(s);
    $("#idle").classList.toggle("hidden", Boolean(active));
    $("#task").classList.toggle("hidden", !active);
    document.body.dataset.task = active ? s : "";
    if (!active) {
      const status = r ? r.status : "off_duty";
      $("#shift-start").classList.toggle("hidden", status !== "off_duty");
      $("#shift-back").classList.toggle("hidden", status !== "returning");
      $("#shift-end").classList.toggle("hidden", status === "off_duty");
      return;
    }
    const hh = task.household || {};
    $("#task-new").classList.toggle("hidden", s !== "assigned");
    $("#task-title").textContent = `${kindLabel(task.incident.kind)} · ${hh.name || ""}`;
    $("#task-state").textContent = t(`r_task_${s}`);
    $("#task-alarm").textContent = `${t("r_alarm_at")} ${fmtTime(task.incident.alarm_at)}`;
    const year = new Date().getFullYear();
    const row = (label, html) => (html ? `<dt>${esc(label)}</dt><dd>${html}</dd>` : "");
    $("#task-card").innerHTML = `<dl>
        ${(hh.residents || []).map((res) => row(t("r_resident"), `<strong>${esc(res.name)}</strong>${res.birth_year ? ` · ${esc(t("r_age"))} ${year - res.birth_year}` : ""}${res.language ? ` · ${esc(res.language)}` : ""}`)).join("")}
        ${row(t("r_address"), esc([hh.address, hh.community].filter(Boolean).join(" · ")))}
        ${row(t("r_access"), esc(hh.access_notes || ""))}
        ${row(t("r_key_safe"), hh.key_safe ? `<span class="code">${esc(hh.key_safe)}</span>` : "")}
        ${row(t("r_medical"), (hh.residents || []).filter((x) => x.medical_notes).map((x) => `<span class="medical">${esc(x.medical_notes)}</span>`).join("<br>"))}
        ${row("", esc(hh.notes || ""))}
      </dl>
      <ul class="phones">${phones(hh).map((p) => `<li><a href="tel:${esc(p.number.replace(/[^0-9+]/g, ""))}">${esc(p.who)} · ${esc(p.number)}</a></li>`).join("")}</ul>`;
    const nav = $("#navigate");
    nav.classList.toggle("hidden", !task.navigation_url);
    if (task.navigation_url) nav.href = task.navigation_url;
    $$("[data-press]").forEach((b) => { b.disabled = !ALLOWED[b.dataset.press].includes(s); });
  }

  // ------------------------------------------------------------------ login and actions

  function showLogin() {
    stopStream();
    state.me = null;
    state.task = null;
    $("#app").classList.add("hidden");
    $("#login-view").classList.remove("hidden");
  }

  async function start(me) {
    state.me = me;
    $("#login-view").classList.add("hidden");
    $("#app").classList.remove("hidden");
    applyI18n();
    await loadTask();
    startStream();
    flush();
  }

  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    unlockAudio(); // a tap: the page may make sound from now on
    const f = new FormData(ev.target);
    $("#login-error").textContent = "";
    try {
      const reply = await api("POST", "/api/v1/auth/login", { username: f.get("username"), password: f.get("password") });
      if (reply.operator.role !== "rescuer") {
        await api("POST", "/api/v1/auth/logout").catch(() => {});
        $("#login-error").textContent = t("r_not_rescuer");
        return;
      }
      ev.target.reset();
      await start(reply.operator);
    } catch (e) {
      $("#login-error").textContent = e.status === 401 ? t("login_failed") : e.message;
    }
  });

  $("#logout").addEventListener("click", async () => {
    await api("POST", "/api/v1/auth/logout").catch(() => {});
    showLogin();
  });

  $$(".presses [data-press]").forEach((b) => b.addEventListener("click", () => {
    const extra = b.dataset.to ? { handed_over_to: b.dataset.to } : {};
    press(b.dataset.press, extra);
  }));
  $("#done-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    if (!f.get("outcome")) { notice(t("r_choose_outcome")); return; }
    press("done", { outcome: f.get("outcome"), note: String(f.get("note") || "") });
    ev.target.reset();
  });

  async function setStatus(status) {
    try {
      state.rescuer = await api("POST", "/api/v1/rescuer/status", { status });
      render();
    } catch (e) { notice(e.message); }
  }
  $("#shift-start").addEventListener("click", () => setStatus("available"));
  $("#shift-back").addEventListener("click", () => setStatus("available"));
  $("#shift-end").addEventListener("click", () => setStatus("off_duty"));
  $("#lang-toggle").addEventListener("click", () => setLang(state.lang === "zh-CN" ? "en" : "zh-CN"));
  $$("[data-lang]").forEach((b) => b.addEventListener("click", () => setLang(b.dataset.lang)));

  applyI18n();
  api("GET", "/api/v1/auth/me")
    .then((me) => (me.role === "rescuer" ? start(me) : showLogin()))
    .catch(showLogin);
})();
