// The fleet: connection status (live, from the presence stream), search by VIN, filter by status.

import { connectionBadge, errorBox, h, relativeAge, replace, time } from "../dom.js";
import { api } from "../http.js";
import { PresenceStream } from "../presence.js";

/** Wait this long after the last keystroke before searching (ms). */
const SEARCH_DEBOUNCE_MS = 250;

export async function vehiclesView(root, { query, isCurrent }) {
  const search = h("input", {
    id: "vehicle-search",
    type: "search",
    maxlength: 17,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "e.g. WVW or 123456",
    value: query.get("search") ?? "",
    "aria-describedby": "vehicle-search-hint",
  });
  const status = h(
    "select",
    { id: "vehicle-status" },
    h("option", { value: "" }, "All vehicles"),
    h("option", { value: "connected" }, "Connected"),
    h("option", { value: "disconnected" }, "Disconnected"),
  );
  status.value = query.get("status") ?? "";
  const summary = h("p", { class: "muted", role: "status", id: "vehicle-count" });
  const results = h("div", { class: "table-wrap" });

  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Find vehicles" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "vehicle-search" }, "Search by VIN"),
      search,
      h("p", { class: "hint", id: "vehicle-search-hint" }, "Any part of the VIN, up to 17 characters."),
    ),
    h("div", { class: "field" }, h("label", { for: "vehicle-status" }, "Connection status"), status),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });

  replace(
    root,
    h("h1", {}, "Vehicles"),
    h("p", { class: "lead" }, "Open a vehicle by its VIN to send it a diagnostic command."),
    filters,
    summary,
    results,
  );

  // The latest presence heard per vehicle: applied to the rows shown, now and after a reload.
  const presence = new Map();
  const stream = new PresenceStream({
    onPresence: (change) => {
      presence.set(change.vehicle_id, change);
      const row = results.querySelector(`tr[data-vehicle-id="${CSS.escape(change.vehicle_id)}"]`);
      if (row) showPresence(row, change);
    },
  });

  let timer = null;
  let request = 0;
  async function load() {
    const mine = ++request;
    const params = { search: search.value.trim(), status: status.value };
    const hash = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
    window.history.replaceState(null, "", `#/vehicles${hash ? `?${hash}` : ""}`);
    results.setAttribute("aria-busy", "true");
    try {
      const { data } = await api("/api/v1/vehicles", { query: { ...params, limit: 500 } });
      if (mine !== request || !isCurrent()) return;
      summary.textContent = `${data.length} vehicle${data.length === 1 ? "" : "s"} shown.`;
      replace(results, data.length ? table(data.map((v) => ({ ...v, ...presenceOf(presence, v) }))) : h("p", {}, "No vehicle matches."));
    } catch (error) {
      if (mine === request && isCurrent()) replace(results, errorBox(error));
    } finally {
      results.removeAttribute("aria-busy");
    }
  }
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(load, SEARCH_DEBOUNCE_MS);
  });
  status.addEventListener("change", load);
  await load();
  if (isCurrent()) stream.start();
  return () => {
    clearTimeout(timer);
    stream.stop();
  };
}

function presenceOf(presence, vehicle) {
  const heard = presence.get(vehicle.vehicle_id);
  return heard ? { connection_status: heard.connection_status, last_seen_at: heard.last_seen_at } : {};
}

/** Update one row's connection and last-seen cells in place. */
function showPresence(row, { connection_status: status, last_seen_at: seen }) {
  replace(row.querySelector(".conn"), connectionBadge(status));
  replace(row.querySelector(".seen"), time(seen), h("span", { class: "muted" }, ` (${relativeAge(seen)})`));
}

function table(vehicles) {
  const body = h("tbody");
  for (const vehicle of vehicles) {
    body.append(
      h(
        "tr",
        { dataset: { vehicleId: vehicle.vehicle_id, vin: vehicle.vin } },
        h("th", { scope: "row" }, h("a", { href: `#/vehicles/${vehicle.vehicle_id}`, class: "mono" }, vehicle.vin)),
        h("td", {}, `${vehicle.make} ${vehicle.model}`, h("span", { class: "muted" }, ` ${vehicle.year}`)),
        h("td", { class: "conn" }, connectionBadge(vehicle.connection_status)),
        h("td", { class: "seen" }, time(vehicle.last_seen_at), h("span", { class: "muted" }, ` (${relativeAge(vehicle.last_seen_at)})`)),
      ),
    );
  }
  return h(
    "table",
    { class: "data-table", id: "vehicle-table" },
    h("caption", { class: "visually-hidden" }, "Vehicles"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "VIN"),
        h("th", { scope: "col" }, "Vehicle"),
        h("th", { scope: "col" }, "Connection"),
        h("th", { scope: "col" }, "Last seen"),
      ),
    ),
    body,
  );
}
