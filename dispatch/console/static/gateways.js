// The gateways page: every gateway, offline ones first, with its household, heartbeat, backlog,
// version and the health of each device from its last heartbeat. app.js reads the list again
// on a gateway's change on the live stream; the page also re-reads it every 15 s while shown.
"use strict";

(() => {
  // admin.js (loaded first) lends its helpers.
  const { $, $$, C, t, esc, api, L, show, section, enc } = window.ConsoleAdmin.kit;
  const LOW_BATTERY = 20;
  let gatewaysTimer = null;

  function fmtDuration(ms) {
    const min = Math.max(0, Math.floor(ms / 60000));
    const d = Math.floor(min / 1440);
    const h = Math.floor((min % 1440) / 60);
    const m = min % 60;
    return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min`;
  }

  function renderGatewaysPage() {
    const el = show("gateways-view", "gateways");
    el.innerHTML = `<div class="view-head"><h2>${L("nav_gateways")}</h2></div>
      <table class="adm-table"><thead><tr>
        <th>${L("gw_id")}</th><th>${L("col_household")}</th><th>${L("gw_status")}</th>
        <th>${L("gw_last")}</th><th>${L("gw_backlog")}</th><th>${L("adm_devices_health")}</th><th>${L("gw_version")}</th>
      </tr></thead><tbody id="gateways-body"></tbody></table>
      <section id="dc09-receiver" class="hidden" aria-labelledby="dc09-title"></section>`;
    loadGatewayRows().catch(() => {});
    loadDc09().catch(() => {});
    clearInterval(gatewaysTimer);
    gatewaysTimer = setInterval(() => {
      if (section("gateways-view").classList.contains("hidden")) { clearInterval(gatewaysTimer); return; }
      loadGatewayRows().catch(() => {});
      loadDc09().catch(() => {});
    }, 15000);
  }

  // The DC-09 receiver's answers by reason: a transmitter with a wrong clock, key or account shows
  // here, not only in the server's log. Shown only where this server runs a receiver.
  async function loadDc09() {
    const r = await api("GET", "/api/v1/dc09/receiver");
    const el = $("#dc09-receiver");
    if (!el) return;
    el.classList.toggle("hidden", !r.listening);
    if (!r.listening) return;
    const rejected = Object.entries(r.rejected).filter(([, n]) => n > 0);
    const accepted = Object.entries(r.accepted).filter(([kind]) => kind !== "repeat")
      .map(([kind, n]) => `${esc(kind)} ${esc(n)}`).join(" · ") || "0";
    const rows = rejected.map(([reason, n]) => `<tr data-reason="${esc(reason)}"><td>${L(`dc09_r_${reason}`)}</td>
        <td class="bad">${esc(n)}</td></tr>`).join("");
    el.innerHTML = `<h3 id="dc09-title">${L("dc09_title")} <span class="muted">(${L("dc09_since")}
        ${esc(C().fmtTime(r.since))}, :${esc(r.port)})</span></h3>
      <p>${L("dc09_accepted")}: ${accepted} · ${L("dc09_repeat")}: <span data-count="repeat">${esc(r.accepted.repeat || 0)}</span></p>
      ${rows ? `<table class="compact"><thead><tr><th>${L("dc09_rejected")}: ${L("dc09_reason")}</th><th>${L("dc09_count")}</th></tr></thead>
        <tbody>${rows}</tbody></table>` : `<p class="muted">${L("dc09_none")}</p>`}`;
  }

  function deviceSummary(g) {
    const devices = g.devices || [];
    if (!devices.length) return `<span class="muted">—</span>`;
    const offline = devices.filter((d) => !d.online).length;
    const low = devices.filter((d) => d.battery != null && d.battery <= LOW_BATTERY).length;
    const rows = devices.map((d) => `<tr><td>${esc(d.id)}</td>
        <td class="${d.online ? "ok" : "bad"}">${esc(t(d.online ? "online" : "adm_device_offline"))}</td>
        <td class="${d.battery != null && d.battery <= LOW_BATTERY ? "bad" : ""}">${d.battery == null ? "—" : `${esc(Math.round(d.battery))} %`}</td>
        <td>${esc(C().fmtTime(d.last_seen))}</td></tr>`).join("");
    return `<details><summary>${esc(devices.length)} ${esc(t("adm_gateway_devices"))}
        ${offline ? `· <span class="bad">${esc(offline)} ${esc(t("adm_device_offline"))}</span>` : ""}
        ${low ? `· <span class="bad">${esc(low)} ${esc(t("adm_low_battery"))}</span>` : ""}</summary>
      <table class="compact"><thead><tr><th>${L("device")}</th><th>${L("adm_status")}</th><th>${L("adm_battery")}</th>
        <th>${L("adm_last_seen")}</th></tr></thead><tbody>${rows}</tbody></table></details>`;
  }

  // Offline gateways first: they are the ones somebody needs to look at.
  async function loadGatewayRows(given) {
    const list = [...(given || await api("GET", "/api/v1/gateways"))]
      .sort((a, b) => (a.online - b.online) || String(a.id).localeCompare(String(b.id)));
    if (!given) C().setGateways(list);
    const body = $("#gateways-body");
    if (!body) return;
    const open = new Set($$("#gateways-body details[open]").map((d) => d.closest("tr").dataset.id));
    body.innerHTML = list.map((g) => {
      const backlog = Object.values(g.buffer_depth || {}).reduce((a, b) => a + Number(b || 0), 0);
      const status = g.revoked ? `<span class="bad">${esc(t("adm_revoked"))}</span>` : g.online
        ? `<span class="ok">${esc(t("online"))}</span>`
        : `<span class="bad">${esc(t("offline"))}</span> · ${esc(t("adm_offline_for"))} ${esc(fmtDuration(Date.now() - new Date(g.status_changed_at)))}`;
      return `<tr data-id="${esc(g.id)}"><td>${esc(g.id)}</td>
        <td><a href="#/household/${esc(enc(g.household_id))}">${esc(g.household_name || g.household_id)}</a></td>
        <td>${status}</td><td>${esc(C().fmtTime(g.last_heartbeat_at))}</td><td>${esc(backlog)}</td>
        <td>${deviceSummary(g)}</td><td>${esc(g.version || "")}</td></tr>`;
    }).join("");
    open.forEach((id) => { const d = $(`#gateways-body tr[data-id="${CSS.escape(id)}"] details`); if (d) d.open = true; });
    document.body.dataset.gatewaysLoaded = String(Date.now());
  }

  window.ConsoleGateways = { render: renderGatewaysPage, load: loadGatewayRows,
    leave: () => clearInterval(gatewaysTimer) };
})();
