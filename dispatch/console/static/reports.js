// Reports (supervisors): response times by day, hour, community or operator, as charts and
// tables, for whole days in the centre's zone.

import { $, state } from "./state.js";
import { t, esc, kindLabel } from "./text.js";
import { api, errorText } from "./api.js";

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
export async function loadReports() {
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
