// A household's wristbands (JT/T 808), a card on the household page for supervisors: those
// bound to it, remove one, bind another by its terminal number (a registered, unbound one is
// offered, none chosen for the person), with the resident who wears it.
"use strict";

window.WristbandPanel = (() => {
  function row(w, h) {
    const { t, esc, fmtTime } = h;
    const state = w.online ? `<span class="ok">${esc(t("online"))}</span>` : `<span class="bad">${esc(t("offline"))}</span>`;
    return `<li data-terminal="${esc(w.terminal)}"><strong>${esc(w.terminal)}</strong>
      ${esc(w.resident || "")} · ${state}
      ${w.last_seen_at ? ` · ${esc(t("wb_seen"))} ${esc(fmtTime(w.last_seen_at))}` : ""}
      ${w.battery !== null && w.battery !== undefined ? ` · ${esc(w.battery)}%` : ""}
      <button type="button" class="small secondary wb-remove">${esc(t("wb_remove"))}</button></li>`;
  }

  async function show(household, h) {
    const { t, esc, api } = h;
    const side = document.querySelector("#household-view .adm-side");
    if (!side) return;
    let panel = document.getElementById("wristband-panel");
    if (!panel || panel.parentNode !== side) {
      panel = document.createElement("div");
      panel.id = "wristband-panel";
      panel.className = "card";
      side.insertBefore(panel, side.children[1] || null);
    }
    let all;
    try {
      all = await api("GET", "/api/v1/wristbands");
    } catch (err) {
      panel.innerHTML = "";  // not a supervisor, or the list is unavailable: nothing to offer
      return;
    }
    const mine = all.filter((w) => w.household_id === household.id);
    const unbound = all.filter((w) => w.household_id === null);
    panel.innerHTML = `<h3>${esc(t("wb_title"))}</h3>
      <ul class="wristbands">${mine.map((w) => row(w, h)).join("") || `<li class="muted">${esc(t("wb_none"))}</li>`}</ul>
      <input id="wb-terminal" list="wb-unbound" inputmode="numeric" autocomplete="off"
        placeholder="${esc(t("wb_terminal"))}" aria-label="${esc(t("wb_terminal"))}">
      <datalist id="wb-unbound">${unbound.map((w) => `<option value="${esc(w.terminal)}">${esc(w.model || "")}</option>`).join("")}</datalist>
      <input id="wb-resident" placeholder="${esc(t("wb_resident"))}" aria-label="${esc(t("wb_resident"))}">
      <button type="button" id="wb-bind">${esc(t("wb_bind"))}</button>
      <span class="muted">${esc(t("wb_unbound_hint").replace("{n}", unbound.length))}</span>
      <p id="wb-error" class="bad"></p>`;
    panel.querySelectorAll("input").forEach((input) => input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); panel.querySelector("#wb-bind").click(); }
    }));
    panel.querySelector("#wb-bind").addEventListener("click", async () => {
      const terminal = panel.querySelector("#wb-terminal").value.replace(/[\s-]/g, "");
      if (!terminal) { panel.querySelector("#wb-error").textContent = t("wb_terminal_missing"); return; }
      try {
        await api("POST", "/api/v1/wristbands", {
          terminal, household_id: household.id, resident: panel.querySelector("#wb-resident").value.trim(),
        });
        await show(household, h);
      } catch (err) { panel.querySelector("#wb-error").textContent = err.message; }
    });
    panel.querySelectorAll(".wb-remove").forEach((button) => button.addEventListener("click", async () => {
      const terminal = button.closest("li").dataset.terminal;
      try {
        await api("DELETE", `/api/v1/wristbands/${encodeURIComponent(terminal)}`);
        await show(household, h);
      } catch (err) { panel.querySelector("#wb-error").textContent = err.message; }
    }));
  }

  return { show };
})();
