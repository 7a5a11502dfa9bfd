// The operator console: plain JavaScript, no build step, every asset served by dispatchd.
// The live stream only says "something changed"; the page then re-reads the queue from the API,
// so a missed or repeated stream message can never leave the page showing a wrong queue.
"use strict";

(() => {
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
    sound: localStorage.getItem("sound") !== "off",
    charts: {},
    refreshTimer: null,
    gateways: {},
  };

  function describeDetail(detail) {
    if (!detail || typeof detail !== "object") return "";
    return Object.entries(detail)
      .filter(([k, v]) => v !== null && v !== "" && typeof v !== "object" && k !== "condition")
      .map(([k, v]) => `${k}: ${v}`).join(", ");
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
    $("#lang").value = state.lang;
    $("#sound-toggle").textContent = t(state.sound ? "sound_on" : "sound_off");
    document.title = t("title");
  }

  function setLang(lang) {
    state.lang = lang;
    localStorage.setItem("lang", lang);
    applyI18n();
    render();
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    return new Intl.DateTimeFormat(state.lang, {
      timeZone: state.tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
    }).format(new Date(iso));
  }

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
      err.data = data;
      throw err;
    }
    return data;
  }

  const asList = (data, key) => (Array.isArray(data) ? data : (data && (data[key] || data.items)) || []);

  // ---------------------------------------------------------------- login

  function showLogin() {
    stopStream();
    state.me = null;
    $("#app").classList.add("hidden");
    $("#login-view").classList.remove("hidden");
  }

  async function afterLogin(me) {
    state.me = me;
    $("#login-view").classList.add("hidden");
    $("#app").classList.remove("hidden");
    $("#whoami").textContent = `${me.display_name || me.username} · ${me.role}`;
    try {
      const cfg = await api("GET", "/api/v1/console/config");
      if (cfg && cfg.timezone) state.tz = cfg.timezone;
    } catch (e) { /* the browser's zone is a fine fallback */ }
    startStream();
    route();
  }

  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    $("#login-error").textContent = "";
    try {
      await api("POST", "/api/v1/auth/login", {
        username: form.get("username"), password: form.get("password") });
      unlockAudio();
      await afterLogin(await api("GET", "/api/v1/auth/me"));
    } catch (e) {
      $("#login-error").textContent = t("login_failed");
    }
  });

  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/api/v1/auth/logout"); } catch (e) { /* already out */ }
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
    es.onopen = () => { setConnected(true); scheduleRefresh(0); };
    es.onerror = () => {
      setConnected(false);
      if (es.readyState === EventSource.CLOSED) {
        // The server refused (e.g. restarted without our session): retry from scratch.
        setTimeout(() => { if (state.me && state.stream === es) startStream(); }, 2000);
      }
    };
    const onChange = () => scheduleRefresh(150);
    es.onmessage = onChange;
    // Named stream events: any change to incidents or gateways re-reads the queue.
    ["incident.opened", "incident.updated", "incident.escalated", "incident.takeover",
      "gateway.online", "gateway.offline", "gateway.enrolled", "gateway.reenrolled",
      "gateway.revoked"].forEach((name) => es.addEventListener(name, onChange));
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
      await loadGateways();
      if (state.current) await loadIncident(state.current.id, false);
    } catch (e) { /* the next stream message or reconnect retries */ }
  }

  // ---------------------------------------------------------------- sound

  let audio = null;
  function unlockAudio() {
    try { audio = audio || new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { audio = null; }
  }
  function beep() {
    if (!state.sound || !audio) return;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.value = 0.08;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.25);
  }
  setInterval(() => {
    if (state.incidents.some(needsAttention)) beep();
  }, 2000);
  $("#sound-toggle").addEventListener("click", () => {
    state.sound = !state.sound;
    localStorage.setItem("sound", state.sound ? "on" : "off");
    unlockAudio();
    applyI18n();
  });

  // A new life-safety incident stands out until someone acknowledges it.
  function needsAttention(inc) { return inc.state === "new" && Number(inc.priority) <= 1; }

  // ---------------------------------------------------------------- queue

  function slaCells(inc) {
    const d = inc.deadlines || {};
    const parts = [["acknowledge", "ack"], ["callback", "call"], ["on_scene", "arrive"]];
    return parts.filter(([key]) => d[key]).map(([key, label]) => {
      const left = (new Date(d[key]).getTime() - Date.now()) / 1000;
      const done = { acknowledge: inc.acknowledged_at, callback: inc.callback_at,
        on_scene: inc.on_scene_at }[key];
      const cls = done ? "sla-done" : left < 0 ? "sla-over" : left < 30 ? "sla-warn" : "sla-ok";
      const txt = done ? "✓" : left < 0 ? `-${fmtAgeSeconds(-left)}` : fmtAgeSeconds(left);
      return `<span class="sla ${cls}" title="${esc(key)}">${esc(t(label))} ${txt}</span>`;
    }).join(" ");
  }

  function fmtAgeSeconds(s) {
    s = Math.floor(s);
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, "0")}`;
  }

  function renderQueue() {
    const rows = [...state.incidents].sort((a, b) =>
      (a.priority - b.priority) || (new Date(a.opened_at) - new Date(b.opened_at)));
    $("#queue-count").textContent = `${rows.length}`;
    $("#queue-empty").classList.toggle("hidden", rows.length > 0);
    $("#queue-body").innerHTML = rows.map((inc) => {
      const hh = inc.household || {};
      const cls = [`prio-${inc.priority}`, needsAttention(inc) ? "attention" : "",
        (inc.overdue && inc.overdue.length) ? "overdue" : ""].join(" ");
      return `<tr class="${cls}" data-id="${esc(inc.id)}" tabindex="0">
        <td><span class="prio prio-${esc(inc.priority)}">${esc(t(`prio_${inc.priority}`))}</span></td>
        <td class="kind">${esc(kindLabel(inc.kind))}</td>
        <td>${esc(hh.name || inc.household_name || inc.household_id || "")}</td>
        <td>${esc(hh.community || inc.community || "")}</td>
        <td class="age" data-since="${esc(inc.opened_at)}">${fmtAge(inc.opened_at)}</td>
        <td>${esc(t(`state_${inc.state}`))}</td>
        <td>${slaCells(inc)}</td>
        <td>${esc(inc.operator || "")}</td>
      </tr>`;
    }).join("");
    $$("#queue-body tr").forEach((tr) => {
      const open = () => { location.hash = `#/incident/${tr.dataset.id}`; };
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    });
  }

  // The age and timer columns tick every second without re-reading the API.
  setInterval(() => {
    $$("#queue-body td.age").forEach((td) => { td.textContent = fmtAge(td.dataset.since); });
    $$("#queue-body tr").forEach((tr) => {
      const inc = state.incidents.find((i) => String(i.id) === tr.dataset.id);
      if (inc) tr.children[6].innerHTML = slaCells(inc);
    });
    $("#clock").textContent = fmtTime(new Date().toISOString());
  }, 1000);

  // ---------------------------------------------------------------- incident view

  async function loadIncident(id, scroll = true) {
    const inc = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
    state.current = inc;
    renderIncident();
    if (scroll) window.scrollTo(0, 0);
  }

  function renderIncident() {
    const inc = state.current;
    if (!inc) return;
    const hh = inc.household || {};
    $("#incident-title").textContent = `${kindLabel(inc.kind)} · ${hh.name || inc.household_id || ""}`;
    $("#incident-state").textContent = t(`state_${inc.state}`);
    $("#incident-state").className = `pill state-${inc.state}`;
    const residents = hh.residents || [];
    const phones = [
      ...(hh.phone ? [{ number: hh.phone, label: "" }] : []),
      ...residents.flatMap((r) => (r.phones || []).map((n) => ({ number: n, label: r.name }))),
    ];
    const contacts = (hh.emergency_contacts || []).flatMap((c) =>
      (c.phones || []).map((n) => ({ name: c.name, relation: c.relation, phone: n, has_key: c.has_key })));
    const timelineAll = inc.timeline || [];
    const firstEvent = timelineAll.find((e) => e.type === "event" && e.device_id) || {};
    const deviceInfo = (hh.devices || []).find((d) => d.id === firstEvent.device_id) || {};
    const device = { id: firstEvent.device_id, room: firstEvent.room || deviceInfo.room };
    const gw = state.gateways[inc.gateway_id] || {};
    const age = (r) => (r.birth_year ? new Date().getFullYear() - r.birth_year : null);
    $("#household-card").innerHTML = `
      <h3>${esc(hh.name || "")}</h3>
      ${residents.map((r) => `<p><strong>${esc(t("resident"))}:</strong> ${esc(r.name)}
        ${age(r) ? `· ${esc(t("age"))} ${esc(age(r))}` : ""}</p>`).join("")}
      <p><strong>${esc(t("address"))}:</strong> ${esc(hh.address || "")} ${esc(hh.community || "")}</p>
      <p><strong>${esc(t("phones"))}:</strong> ${phones.map((p) =>
        `<a href="tel:${esc(p.number || p)}">${esc(p.label ? `${p.label} ` : "")}${esc(p.number || p)}</a>`).join(", ")}</p>
      <p><strong>${esc(t("medical"))}:</strong> ${esc(residents.map((r) => r.medical_notes || "").join(" "))}</p>
      <p><strong>${esc(t("access"))}:</strong> ${esc(hh.access_notes || "")} ${esc(hh.key_safe || "")}</p>
      <p><strong>${esc(t("contacts"))}:</strong> ${contacts.map((c) =>
        `${esc(c.name)} (${esc(c.relation || "")}${c.has_key ? ", 🔑" : ""}) <a href="tel:${esc(c.phone)}">${esc(c.phone)}</a>`).join("; ")}</p>
      <p><strong>${esc(t("device"))}:</strong> ${esc(device.id || inc.device_id || "—")}
        ${device.room || inc.room ? `· ${esc(t("room"))} ${esc(device.room || inc.room)}` : ""}</p>
      <p><strong>${esc(t("gateway"))}:</strong> ${esc(inc.gateway_id || "—")}
        ${gw.online === undefined ? "" : `· <span class="${gw.online ? "ok" : "bad"}">${esc(t(gw.online ? "online" : "offline"))}</span>`}
        ${gw.last_heartbeat_at ? `· ${esc(fmtTime(gw.last_heartbeat_at))}` : ""}</p>`;
    $("#callback-phone").innerHTML = [...phones, ...contacts.map((c) => ({ number: c.phone, label: c.name }))]
      .map((p) => `<option value="${esc(p.number || p)}">${esc(p.label ? `${p.label} ` : "")}${esc(p.number || p)}</option>`).join("");
    $("#timeline").innerHTML = timelineAll.map((e) => `<li class="tl-${esc(e.type)}">
        <time>${esc(fmtTime(e.at))}</time>
        <span class="what">${esc(e.type === "event" ? kindLabel(e.name) : t(`act_${e.name}`) === `act_${e.name}` ? e.name : t(`act_${e.name}`))}</span>
        <span class="who">${esc(e.actor || "")}</span>
        <span class="detail">${esc([e.device_id, e.room, describeDetail(e.detail)].filter(Boolean).join(" · "))}</span>
      </li>`).join("");
    const open = inc.state !== "resolved";
    $("#act-ack").disabled = !open || inc.state !== "new" && inc.operator === state.me.username;
    $("#act-dispatch").disabled = !open;
    $("#act-onscene").disabled = !open;
    $("#act-callback").disabled = !open;
    $("#act-resolve").disabled = !open;
  }

  async function act(path, body) {
    $("#action-error").textContent = "";
    try {
      const result = await api("POST", `/api/v1/incidents/${encodeURIComponent(state.current.id)}/${path}`, body || {});
      if (result && result.warning) $("#action-error").textContent = result.warning;
      await loadIncident(state.current.id, false);
      scheduleRefresh(0);
      return result;
    } catch (e) {
      $("#action-error").textContent = e.message;
      return null;
    }
  }

  $("#act-ack").addEventListener("click", () => act("acknowledge"));
  $("#act-dispatch").addEventListener("click", () => {
    const responder = $("#responder").value.trim() || t("responder_default");
    act("dispatch", { responder });
  });
  $("#act-onscene").addEventListener("click", () => act("on-scene"));
  $("#callback-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act("callback", { number: f.get("phone") || "", outcome: f.get("outcome"), note: f.get("note") || "" });
  });
  $("#note-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act("notes", { text: f.get("text") }).then(() => ev.target.reset());
  });
  $("#resolve-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    act("resolve", { outcome: f.get("outcome"), note: f.get("note") || "" });
  });

  // ---------------------------------------------------------------- gateways

  async function loadGateways() {
    const list = asList(await api("GET", "/api/v1/gateways"), "gateways");
    state.gateways = Object.fromEntries(list.map((g) => [g.id, g]));
    $("#gateways-body").innerHTML = list.map((g) => {
      const depth = g.buffer_depth || {};
      const backlog = typeof depth === "object" ? Object.values(depth).reduce((a, b) => a + Number(b || 0), 0) : depth;
      return `<tr>
        <td>${esc(g.id || g.gateway_id)}</td><td>${esc(g.household_name || g.household_id || "")}</td>
        <td><span class="${g.online ? "ok" : "bad"}">${esc(t(g.online ? "online" : "offline"))}</span></td>
        <td>${esc(fmtTime(g.last_heartbeat_at))}</td><td>${esc(backlog)}</td><td>${esc(g.version || "")}</td>
      </tr>`;
    }).join("");
  }

  // ---------------------------------------------------------------- households

  let households = [];
  async function loadHouseholds() {
    const q = $("#household-search").value.trim();
    households = asList(await api("GET", `/api/v1/households${q ? `?q=${encodeURIComponent(q)}` : ""}`), "households");
    $("#households-body").innerHTML = households.map((h) => `<tr data-id="${esc(h.id)}" tabindex="0">
        <td>${esc(h.name)}</td><td>${esc(h.address || "")}</td><td>${esc(h.community || "")}</td></tr>`).join("");
    $$("#households-body tr").forEach((tr) => tr.addEventListener("click", () => editHousehold(tr.dataset.id)));
  }
  let searchTimer = null;
  $("#household-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadHouseholds, 250);
  });

  const HOUSEHOLD_FIELDS = ["name", "address", "community", "phone", "access_notes", "key_safe", "notes"];
  async function editHousehold(id) {
    const h = await api("GET", `/api/v1/households/${encodeURIComponent(id)}`);
    const form = $("#household-form");
    form.classList.remove("hidden");
    form.innerHTML = HOUSEHOLD_FIELDS.map((f) => `<label>${esc(f)}
        <input name="${f}" value="${esc(h[f] ?? "")}"></label>`).join("") +
      `<button type="submit">${esc(t("save"))}</button><span class="muted" id="hh-saved"></span>`;
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const body = {};
      new FormData(form).forEach((v, k) => { body[k] = v; });
      try {
        const full = { ...h, ...body };
        delete full.created_at;
        delete full.updated_at;
        await api("PUT", `/api/v1/households/${encodeURIComponent(id)}`, full);
        $("#hh-saved").textContent = t("saved");
        loadHouseholds();
      } catch (e) { $("#hh-saved").textContent = e.message; }
    };
  }

  // ---------------------------------------------------------------- reports

  function chart(id, config) {
    if (!window.Chart) return;
    if (state.charts[id]) state.charts[id].destroy();
    state.charts[id] = new window.Chart($(`#${id}`), config);
  }

  async function loadReports() {
    const to = $("#report-to").value || new Date().toISOString().slice(0, 10);
    const from = $("#report-from").value ||
      new Date(Date.now() - 30 * 86400e3).toISOString().slice(0, 10);
    $("#report-from").value = from;
    $("#report-to").value = to;
    const r = await api("GET", `/api/v1/reports/response-times?from=${from}&to=${to}T23:59:59Z&group=community`);
    const groups = asList(r, "groups");
    const labels = groups.map((g) => g.key || g.community || g.group || "—");
    const minutes = (s) => (s == null ? null : Math.round((s / 60) * 10) / 10);
    const pick = (g, name) => (g[name] || {});
    chart("chart-times", {
      type: "bar",
      data: { labels, datasets: [
        { label: t("to_ack"), data: groups.map((g) => minutes(pick(g, "acknowledge").median_s)) },
        { label: t("to_callback"), data: groups.map((g) => minutes(pick(g, "callback").median_s)) },
        { label: t("to_arrive"), data: groups.map((g) => minutes(pick(g, "on_scene").median_s)) },
      ] },
      options: { animation: false, responsive: true },
    });
    chart("chart-targets", {
      type: "bar",
      data: { labels, datasets: [
        { label: t("to_ack"), data: groups.map((g) => pick(g, "acknowledge").within_target_pct) },
        { label: t("to_callback"), data: groups.map((g) => pick(g, "callback").within_target_pct) },
        { label: t("to_arrive"), data: groups.map((g) => pick(g, "on_scene").within_target_pct) },
      ] },
      options: { animation: false, responsive: true, scales: { y: { min: 0, max: 100 } } },
    });
    const byKind = r.alarms_by_kind || {};
    chart("chart-kinds", {
      type: "doughnut",
      data: { labels: Object.keys(byKind).map(kindLabel), datasets: [{ data: Object.values(byKind) }] },
      options: { animation: false, responsive: true },
    });
    const rate = r.false_alarm_rate;
    $("#report-summary").innerHTML = `<h3>${esc(t("incidents"))}: ${esc(r.incidents ?? groups.reduce((a, g) => a + (g.incidents || 0), 0))}</h3>
      <p>${esc(t("false_alarm_rate"))}: ${rate == null ? "—" : `${Math.round(rate * 1000) / 10}%`}</p>
      <p>${esc(t("gateways_offline"))}: ${esc(r.gateways_offline ?? "—")}</p>`;
  }
  $("#report-run").addEventListener("click", loadReports);

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
    const section = $(`#${name}-view`) || $("#queue-view");
    section.classList.remove("hidden");
    if (name === "gateways") loadGateways().catch(() => {});
    if (name === "households") loadHouseholds().catch(() => {});
    if (name === "reports") loadReports().catch(() => {});
    if (name === "queue") refresh();
  }

  function render() {
    renderQueue();
    renderIncident();
  }

  window.addEventListener("hashchange", route);
  $("#lang").addEventListener("change", (e) => setLang(e.target.value));
  $$("[data-lang]").forEach((b) => b.addEventListener("click", () => setLang(b.dataset.lang)));

  // ---------------------------------------------------------------- start

  applyI18n();
  setConnected(true);
  api("GET", "/api/v1/auth/me").then(afterLogin).catch(showLogin);
})();
