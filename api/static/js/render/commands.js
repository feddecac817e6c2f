// A table of commands (history, a vehicle's recent commands).

import { h, paramsText, shortId, statusBadge, time } from "../dom.js";

/** `vins` maps vehicle_id to VIN (a shortened id is shown when a VIN is unknown). */
export function commandsTable(commands, vins, { caption = "Commands" } = {}) {
  const body = h("tbody");
  for (const command of commands) {
    body.append(
      h(
        "tr",
        { dataset: { commandId: command.command_id, status: command.status } },
        h("td", {}, time(command.submitted_at)),
        h(
          "th",
          { scope: "row" },
          h(
            "a",
            { href: `#/commands/${command.command_id}`, "aria-label": `${command.command_name} ${shortId(command.command_id)}, details` },
            command.command_name,
            h("span", { class: "muted mono" }, ` ${shortId(command.command_id)}`),
          ),
        ),
        h("td", { class: "mono" }, vins.get(command.vehicle_id) ?? shortId(command.vehicle_id)),
        h("td", { class: "mono" }, paramsText(command.command_params)),
        h("td", {}, statusBadge(command.status)),
      ),
    );
  }
  return h(
    "table",
    { class: "data-table commands-table" },
    h("caption", { class: "visually-hidden" }, caption),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Submitted"),
        h("th", { scope: "col" }, "Command"),
        h("th", { scope: "col" }, "Vehicle"),
        h("th", { scope: "col" }, "Parameters"),
        h("th", { scope: "col" }, "Status"),
      ),
    ),
    body,
  );
}
