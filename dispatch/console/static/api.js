// Requests to dispatchd, and its refusals in the operator's language.

import { operatorName } from "./state.js";
import { t } from "./text.js";

// What the page does when the session is gone (app.js shows the login form).
export const onUnauthorized = { call: () => {} };

export async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (resp.status === 401) {
    onUnauthorized.call();
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
export function errorText(e) {
  const title = String((e && e.title) || "");
  for (const [pattern, key] of ERRORS) {
    const m = title.match(pattern);
    if (m) return t(key).replace("{who}", operatorName(m[1]));
  }
  if (e && e.status === 403) return t("err_forbidden");
  return e && e.status ? `${t("err_refused")} (${e.status})` : t("err_network");
}

export const asList = (data, key) => (Array.isArray(data) ? data : (data && (data[key] || data.items)) || []);
