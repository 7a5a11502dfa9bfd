// A wristband incident's location: the latest fix with its time, whether it is a real fix,
// the distance from home, the last hour's track, and the centre's "open map" link if configured.
// The track is drawn from the positions alone, unless the centre configured map tiles: then the
// latest fix, the home and the track are drawn on a slippy map (Leaflet, served by dispatchd and
// loaded only then). Without that setting nothing is fetched from outside the centre.
"use strict";

window.IncidentLocation = (() => {
  let seq = 0;
  // The centre's map tiles ({url_template, attribution}); null: none; undefined: not asked yet.
  let tiles;
  let leaflet = null;
  // The one map, kept across redraws: {m, layer, zoom, zoomTitles, incident}.
  let map = null;

  function card() {
    let el = document.getElementById("location-card");
    if (!el) {
      el = document.createElement("div");
      el.id = "location-card";
      el.className = "card hidden";
      el.innerHTML = `<div id="loc-body"></div><div id="loc-map" class="hidden"></div>`;
      const household = document.getElementById("household-card");
      household.parentNode.insertBefore(el, household.nextSibling);
    }
    return el;
  }

  async function tileConfig(h) {
    if (tiles === undefined) {
      try {
        tiles = (await h.api("GET", "/api/v1/console/config")).map_tiles || null;
      } catch (err) {
        return null; // asked again at the next redraw
      }
    }
    return tiles;
  }

  function loadLeaflet() {
    if (!leaflet) {
      leaflet = new Promise((resolve, reject) => {
        const css = document.createElement("link");
        css.rel = "stylesheet";
        css.href = "/console/vendor/leaflet.css";
        document.head.appendChild(css);
        const js = document.createElement("script");
        js.src = "/console/vendor/leaflet.js";
        js.onload = () => resolve(window.L);
        js.onerror = () => { leaflet = null; reject(new Error("leaflet did not load")); };
        document.head.appendChild(js);
      });
    }
    return leaflet;
  }

  // The latest fix, the home and the track on the map. The view is fitted when the incident
  // changes, not on its live updates: a map the operator has moved stays where they put it.
  function drawMap(L, el, loc, cfg, incidentId, h) {
    const { t, esc } = h;
    if (!map) {
      const m = L.map(el, { zoomControl: false, attributionControl: true });
      m.attributionControl.setPrefix(false);
      L.tileLayer(cfg.url_template, { attribution: esc(cfg.attribution || ""), maxZoom: 19 }).addTo(m);
      map = { m, layer: L.layerGroup().addTo(m), zoom: null, zoomTitles: "", incident: null };
    }
    el.setAttribute("role", "region");
    el.setAttribute("aria-label", t("loc_map"));
    const titles = [t("loc_zoom_in"), t("loc_zoom_out")];
    if (map.zoomTitles !== titles.join("|")) {
      if (map.zoom) map.zoom.remove();
      map.zoom = L.control.zoom({ zoomInTitle: titles[0], zoomOutTitle: titles[1] }).addTo(map.m);
      map.zoomTitles = titles.join("|");
    }
    const latest = loc.latest || loc.position;
    const here = [latest.lat, latest.lon];
    map.layer.clearLayers();
    const line = loc.track.map((f) => [f.lat, f.lon]);
    if (line.length > 1) {
      L.polyline(line, { className: "loc-track", color: "#1f5fd1", weight: 4, opacity: 0.9 })
        .addTo(map.layer);
    }
    if (loc.home) {
      L.circleMarker([loc.home.lat, loc.home.lon], {
        className: "loc-home", radius: 7, color: "#ffffff", weight: 2, fillColor: "#1e7d44", fillOpacity: 1,
      }).addTo(map.layer);
    }
    L.circleMarker(here, {
      className: "loc-here", radius: 9, color: "#ffffff", weight: 3, fillColor: "#c81e1e", fillOpacity: 1,
    }).addTo(map.layer);
    map.m.invalidateSize(false); // the card may have been hidden when the map was made
    if (map.incident !== incidentId) {
      map.incident = incidentId;
      const points = [here, ...line];
      if (loc.home) points.push([loc.home.lat, loc.home.lon]);
      map.m.fitBounds(L.latLngBounds(points), { padding: [24, 24], maxZoom: 17 });
    }
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

  function html(loc, h, withMap) {
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
      ${withMap ? "" : trackSvg(loc.track, loc.home, esc)}
      <p>${link}</p>`;
  }

  // Called by the console each time it renders an incident.
  async function show(inc, h) {
    const el = card();
    const body = document.getElementById("loc-body");
    const mapEl = document.getElementById("loc-map");
    const mine = ++seq;
    if (!inc.position) {
      el.classList.add("hidden");
      body.innerHTML = "";
      return;
    }
    el.classList.remove("hidden");
    let loc;
    let cfg;
    try {
      [loc, cfg] = await Promise.all([
        h.api("GET", `/api/v1/incidents/${encodeURIComponent(inc.id)}/location`),
        tileConfig(h),
      ]);
    } catch (err) {
      if (mine === seq) {
        body.innerHTML = `<p class="bad">${h.esc(h.t("loc_unavailable"))}</p>`;
        mapEl.classList.add("hidden");
      }
      return;
    }
    if (mine !== seq) return;
    let L = null;
    if (cfg) {
      try {
        L = await loadLeaflet();
      } catch (err) {
        L = null; // the track is drawn without a map instead
      }
      if (mine !== seq) return;
    }
    body.innerHTML = html(loc, h, Boolean(L));
    mapEl.classList.toggle("hidden", !L);
    if (L) drawMap(L, mapEl, loc, cfg, inc.id, h);
  }

  return { show };
})();
