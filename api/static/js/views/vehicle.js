// One vehicle: its facts and ECUs, the command form, and its recent commands.

import { connectionBadge, errorBox, facts, h, messageBox, relativeAge, replace, time } from "../dom.js";
import { api } from "../http.js";
import { commandsTable } from "../render/commands.js";
import { commandForm } from "./command-form.js";
import { rememberSubmission } from "./command.js";

const RECENT_LIMIT = 5;
/** While the vehicle is offline, how often (ms) the page checks whether it reconnected. */
const OFFLINE_CHECK_MS = 5000;

export async function vehicleView(root, { params, user, navigate, isCurrent }) {
  const [vehicleId] = params;
  const [vehicle, catalog] = await Promise.all([
    api(`/api/v1/vehicles/${vehicleId}`).then((r) => r.data),
    api("/api/v1/command-types").then((r) => r.data),
  ]);
  const ecus = vehicle.metadata?.ecus ?? [];
  const connection = h("span", { id: "vehicle-connection" }, connectionBadge(vehicle.connection_status));
  const details = h(
    "section",
    { class: "panel", "aria-labelledby": "vehicle-facts-title" },
    h("h2", { id: "vehicle-facts-title" }, "Vehicle"),
    facts([
      ["Connection", connection],
      ["Last seen", h("span", {}, time(vehicle.last_seen_at), ` (${relativeAge(vehicle.last_seen_at)})`)],
      ["Make and model", `${vehicle.make} ${vehicle.model} (${vehicle.year})`],
      ["Powertrain", vehicle.metadata?.powertrain ?? "—"],
      ["Vehicle id", h("span", { class: "mono id" }, vehicle.vehicle_id)],
    ]),
    h("h3", {}, "ECUs"),
    ecus.length
      ? h(
          "ul",
          { class: "ecus" },
          ecus.map((ecu) => h("li", {}, h("code", {}, ecu.address), ` ${ecu.name}`)),
        )
      : h("p", { class: "muted" }, "No ECU listed."),
  );

  const formPanel = h("section", { class: "panel" });
  const recent = h("div", { class: "table-wrap" }, h("p", { class: "muted" }, "Loading…"));
  const offlineWarning = messageBox(
    "warning",
    h("strong", {}, "Offline: "),
    "this vehicle is not connected; the service rejects commands for it until it reconnects.",
  );
  let form = null;
  let timer = null;

  function showConnection(status) {
    replace(connection, connectionBadge(status));
    const offline = status !== "connected";
    offlineWarning.hidden = !offline;
    form?.setOffline(offline);
    clearTimeout(timer);
    timer = offline ? setTimeout(checkConnection, OFFLINE_CHECK_MS) : null;
  }

  async function checkConnection() {
    try {
      const { data } = await api(`/api/v1/vehicles/${vehicleId}/status`);
      if (isCurrent?.() !== false) showConnection(data.connection_status);
    } catch {
      if (isCurrent?.() !== false) timer = setTimeout(checkConnection, OFFLINE_CHECK_MS);
    }
  }

  async function loadRecent() {
    try {
      const { data } = await api("/api/v1/commands", {
        query: { vehicle_id: vehicle.vehicle_id, limit: RECENT_LIMIT },
      });
      replace(
        recent,
        data.commands.length
          ? commandsTable(data.commands, new Map([[vehicle.vehicle_id, vehicle.vin]]), { caption: "Recent commands" })
          : h("p", { class: "muted" }, "No command yet."),
      );
    } catch (error) {
      replace(recent, errorBox(error));
    }
  }

  if (user.role === "viewer") {
    replace(
      formPanel,
      h("h2", {}, "Send a command"),
      messageBox("info", "Viewers can follow vehicles and commands but cannot send commands."),
    );
  } else {
    form = commandForm({
      vehicle,
      catalog,
      user,
      onSubmitted: (command) => {
        rememberSubmission(command);
        navigate(`/commands/${command.command_id}`);
      },
      onRejected: () => {
        showConnection("disconnected");
        loadRecent();
      },
    });
    formPanel.append(offlineWarning, form.element);
  }

  replace(
    root,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/vehicles" }, "Vehicles"), " / ", vehicle.vin),
    h("h1", { class: "mono" }, vehicle.vin),
    h("p", { class: "lead" }, `${vehicle.make} ${vehicle.model}, ${vehicle.year}`),
    h("div", { class: "columns" }, formPanel, details),
    h(
      "section",
      { class: "panel", "aria-labelledby": "recent-title" },
      h("h2", { id: "recent-title" }, "Recent commands"),
      recent,
      h("p", {}, h("a", { href: `#/commands?vehicle_id=${vehicle.vehicle_id}` }, "All commands for this vehicle")),
    ),
  );
  showConnection(vehicle.connection_status);
  await loadRecent();
  if (isCurrent?.() === false) {
    clearTimeout(timer);
    return undefined;
  }
  return () => clearTimeout(timer);
}
