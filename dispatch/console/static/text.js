// What the page says and how: the operator's language (window.I18N, from i18n.js), one date
// format in every language, in the centre's time zone, and HTML escaping.

import { state } from "./state.js";

export function t(key) {
  const table = window.I18N[state.lang] || window.I18N.en;
  return table[key] ?? window.I18N.en[key] ?? key;
}

// One unambiguous form in every language: 2026-11-29 12:21:53, in the centre's time zone.
export function fmtTime(iso) {
  if (!iso) return "—";
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
    timeZone: state.tz, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

// Hours and minutes in the centre's zone: "smoke cleared 10:14".
export function fmtClock(iso) { return fmtTime(iso).slice(11, 16); }

export function fmtAge(iso) {
  if (!iso) return "—";
  let s = Math.max(0, Math.floor((Date.now() - new Date(iso).getTime()) / 1000));
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(s).padStart(2, "0")}`;
}

export function fmtAgeSeconds(s) {
  s = Math.floor(s);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

export function kindLabel(kind) { return t(`kind_${kind}`) === `kind_${kind}` ? kind : t(`kind_${kind}`); }

// A translated label for an internal value (prefix_value), or the value itself when it is
// something a person typed (a relation such as "neighbour" that has no entry).
export function label(prefix, value) {
  const key = `${prefix}_${String(value).replace(/[^a-z0-9]+/gi, "_").toLowerCase()}`;
  return t(key) === key ? String(value) : t(key);
}

export function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
