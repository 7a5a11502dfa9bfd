// A wristband incident's location: the latest fix with its time, whether it is a real fix,
// the distance from home, the last hour's track drawn from the positions alone (no map tiles:
// nothing is fetched from outside the centre), and the centre's "open map" link if configured.
"use strict";

window.IncidentLocation = (() => {
  let seq = 0;

  function card() {
    let el = document.getElementById("location-card");
    if (!el) {
      el = document.createElement("div");
      el.id = "location-card";
      el.className = "card hidden";
      const household = document.getElementById("household-card");
      household.parentNode.insertBefore(el, household.nextSibling);
    }
    return el;
  }

  function distance(m, t) {
    if (m === null || m === undefined) return t("loc_home_unset");
    return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10000 ? 2 : 1)} km`;
  }

  // The track as an SVG polyline in a box, north up, with the home as a square if known.
  function trackSvg(track, home, esc) {
    const points = track.map((f) => [f.lon, f.lat]);
    if (home) points.push([home.lon, home.lat]);
    if (!points.length) return "";
    const lons = points.map((p) => p[0]);
    const lats = points.map((p) => p[1]);
    const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
    const kx = Math.cos((midLat * Math.PI) / 180);
    const w = 260, h = 160, pad = 12;
    const spanX = Math.max((Math.max(...lons) - Math.min(...lons)) * kx, 1e-5);
    const spanY = Math.max(Math.max(...lats) - Math.min(...lats), 1e-5);
    const scale = Math.min((w - 2 * pad) / spanX, (h - 2 * pad) / spanY);
    const x = (lon) => pad + (lon - Math.min(...lons)) * kx * scale;
    const y = (lat) => h - pad - (lat - Math.min(...lats)) * scale;
    const line = track.map((f) => `${x(f.lon).toFixed(1)},${y(f.lat).toFixed(1)}`).join(" ");
    const last = track[track.length - 1];
    return `<svg class="track" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">
      <polyline points="${esc(line)}" fill="none" stroke="currentColor" stroke-width="2"/>
      ${home ? `<rect class="home" x="${x(home.lon) - 5}" y="${y(home.lat) - 5}" width="10" height="10"/>` : ""}
      ${last ? `<circle class="here" cx="${x(last.lon)}" cy="${y(last.lat)}" r="5"/>` : ""}
    </svg>`;
  }

  function html(loc, h) {
    const { t, esc, fmtTime } = h;
    const latest = loc.latest || loc.position;
    const fixTag = latest.fix
      ? `<span class="tag ok" data-fix="true">${esc(t("loc_fix_real"))}</span>`
      : `<span class="tag bad" data-fix="false">${esc(t("loc_fix_none"))}</span>`;
    const unverified = loc.position.verified ? ""
      : ` <span class="tag bad">${esc(t("loc_unverified"))}</span>`;
    const link = loc.map_url
      ? `<a id="loc-map-link" href="${esc(loc.map_url)}" target="_blank" rel="noopener noreferrer">${esc(t("loc_open_map"))}</a>`
      : "";
    return `<h3>${esc(t("loc_title"))}</h3>
      <dl class="facts">
        <dt>${esc(t("loc_latest"))}</dt>
        <dd id="loc-latest">${esc(latest.lat.toFixed(6))}, ${esc(latest.lon.toFixed(6))}
          · <time>${esc(fmtTime(latest.at || latest.fix_at))}</time> ${fixTag}${unverified}</dd>
        <dt>${esc(t("loc_distance"))}</dt><dd id="loc-distance">${esc(distance(loc.distance_m, t))}</dd>
        <dt>${esc(t("loc_track"))}</dt><dd id="loc-track">${esc(t("loc_points").replace("{n}", loc.track.length))}</dd>
        ${loc.resident ? `<dt>${esc(t("loc_wearer"))}</dt><dd>${esc(loc.resident)} · ${esc(loc.terminal)}</dd>` : ""}
      </dl>
      ${trackSvg(loc.track, loc.home, esc)}
      <p>${link}</p>`;
  }

  // Called by the console each time it renders an incident.
  async function show(inc, h) {
    const el = card();
    const mine = ++seq;
    if (!inc.position) {
      el.classList.add("hidden");
      el.innerHTML = "";
      return;
    }
    el.classList.remove("hidden");
    try {
      const loc = await h.api("GET", `/api/v1/incidents/${encodeURIComponent(inc.id)}/location`);
      if (mine === seq) el.innerHTML = html(loc, h);
    } catch (err) {
      if (mine === seq) el.innerHTML = `<p class="bad">${h.esc(h.t("loc_unavailable"))}</p>`;
    }
  }

  return { show };
})();
