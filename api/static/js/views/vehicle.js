// One vehicle: its facts and ECUs, the command form, and its recent commands.

import { connectionBadge, errorBox, facts, h, messageBox, relativeAge, replace, time } from "../dom.js";
import { api } from "../http.js";
import { PresenceStream } from "../presence.js";
import { commandsTable } from "../render/commands.js";
import { commandForm } from "./command-form.js";
import { rememberSubmission } from "./command.js";

const RECENT_LIMIT = 5;

export async function vehicleView(root, { params, user, navigate, isCurrent }) {
  const [vehicleId] = params;
  const [vehicle, catalog] = await Promise.all([
    api(`/api/v1/vehicles/${vehicleId}`).then((r) => r.data),
    api("/api/v1/command-types").then((r) => r.data),
  ]);
  const ecus = vehicle.metadata?.ecus ?? [];
  // Live from the presence stream: the badge, last-seen time, offline warning and the
  // form's state follow it.
  const connection = h("span", { id: "vehicle-connection" }, connectionBadge(vehicle.connection_status));
  const lastSeen = h("span", { id: "vehicle-last-seen" });
  const offlineWarning = messageBox(
    "warning",
    h("strong", {}, "Offline: "),
    "this vehicle is not connected; the service rejects commands for it until it reconnects.",
  );
  const offline = h("div", { id: "vehicle-offline" }, offlineWarning);
  let form = null;

  function showPresence(status, seen) {
    replace(connection, connectionBadge(status));
    if (seen !== undefined) replace(lastSeen, time(seen), ` (${relativeAge(seen)})`);
    const isOffline = status !== "connected";
    offline.hidden = !isOffline || user.role === "viewer";
    form?.setOffline(isOffline);
  }

  const details = h(
    "section",
    { class: "panel", "aria-labelledby": "vehicle-facts-title" },
    h("h2", { id: "vehicle-facts-title" }, "Vehicle"),
    facts([
      ["Connection", connection],
      ["Last seen", lastSeen],
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
        showPresence("disconnected");
        loadRecent();
      },
    });
    formPanel.append(offline, form.element);
  }
  showPresence(vehicle.connection_status, vehicle.last_seen_at);

  const stream = new PresenceStream({
    vehicleId: vehicle.vehicle_id,
    onPresence: (change) => {
      if (change.vehicle_id === vehicle.vehicle_id) showPresence(change.connection_status, change.last_seen_at);
    },
    // "live" once the stream's snapshot arrived: from then on every change shows here.
    onState: (state) => connection.setAttribute("data-presence", state),
  });
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
  await loadRecent();
  if (isCurrent?.() === false) return null; // left meanwhile: nothing to clean up later
  stream.start();
  return () => stream.stop();
}
