// Command history: filter by status and vehicle, page through, open a command.

import { errorBox, h, replace, STATUSES } from "../dom.js";
import { api } from "../http.js";
import { STORED_STATUSES } from "../protocol.js";
import { commandsTable } from "../render/commands.js";

const PAGE_SIZE = 20;

export async function historyView(root, { query, navigate, user }) {
  const filters = {
    status: query.get("status") ?? "",
    vehicle_id: query.get("vehicle_id") ?? "",
    offset: Math.max(0, Number.parseInt(query.get("offset") ?? "0", 10) || 0),
  };
  const [vehicles, page] = await Promise.all([
    api("/api/v1/vehicles", { query: { limit: 500 } }).then((r) => r.data),
    api("/api/v1/commands", {
      query: { status: filters.status, vehicle_id: filters.vehicle_id, limit: PAGE_SIZE, offset: filters.offset },
    }).then((r) => r.data),
  ]).catch((error) => [null, error]);

  const status = h(
    "select",
    { id: "history-status", name: "status" },
    h("option", { value: "" }, "Any status"),
    STORED_STATUSES.map((value) => h("option", { value }, STATUSES[value].label)),
  );
  status.value = filters.status;
  const vehicle = h(
    "select",
    { id: "history-vehicle", name: "vehicle_id" },
    h("option", { value: "" }, "Any vehicle"),
    (vehicles ?? []).map((v) => h("option", { value: v.vehicle_id }, `${v.vin} (${v.make} ${v.model})`)),
  );
  vehicle.value = filters.vehicle_id;

  function go(changes) {
    const next = { ...filters, ...changes };
    const params = new URLSearchParams();
    if (next.status) params.set("status", next.status);
    if (next.vehicle_id) params.set("vehicle_id", next.vehicle_id);
    if (next.offset) params.set("offset", String(next.offset));
    const text = params.toString();
    navigate(`/commands${text ? `?${text}` : ""}`);
  }
  status.addEventListener("change", () => go({ status: status.value, offset: 0 }));
  vehicle.addEventListener("change", () => go({ vehicle_id: vehicle.value, offset: 0 }));

  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter commands" },
    h("div", { class: "field" }, h("label", { for: "history-status" }, "Status"), status),
    h("div", { class: "field" }, h("label", { for: "history-vehicle" }, "Vehicle"), vehicle),
  );
  form.addEventListener("submit", (event) => event.preventDefault());

  const scope = user.role === "engineer" ? "Your commands, newest first." : "All commands, newest first.";
  const content = [h("h1", {}, "Commands"), h("p", { class: "lead" }, scope), form];
  if (page instanceof Error) {
    replace(root, ...content, errorBox(page));
    return;
  }
  const vins = new Map((vehicles ?? []).map((v) => [v.vehicle_id, v.vin]));
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.commands.length;
  const previous = h(
    "button",
    { type: "button", class: "button secondary", disabled: page.offset === 0 },
    "Previous page",
  );
  const next = h(
    "button",
    { type: "button", class: "button secondary", disabled: last >= page.total },
    "Next page",
  );
  previous.addEventListener("click", () => go({ offset: Math.max(0, page.offset - PAGE_SIZE) }));
  next.addEventListener("click", () => go({ offset: page.offset + PAGE_SIZE }));
  replace(
    root,
    ...content,
    h("p", { class: "muted", role: "status", id: "history-count" }, `Showing ${first}–${last} of ${page.total}.`),
    h(
      "div",
      { class: "table-wrap" },
      page.commands.length ? commandsTable(page.commands, vins) : h("p", {}, "No command matches."),
    ),
    h("nav", { class: "pager", "aria-label": "Pages" }, previous, next),
  );
}
