// The audit trail, for admins: GET /api/v1/audit (the latest entries).

import { errorBox, h, messageBox, replace, shortId, time } from "../dom.js";
import { api, ApiError } from "../http.js";

const AUDIT_LIMIT = 50;
/** The recorded actions (GET /api/v1/audit?action=...); entries with others still show. */
const ACTIONS = [
  "login",
  "login_failed",
  "logout",
  "token_refreshed",
  "access_denied",
  "subscription_refused",
  "command_submitted",
  "command_rejected",
  "command_cancel_requested",
  "command_started",
  "command_completed",
  "command_failed",
  "command_timeout",
  "command_cancelled",
];

function detailsText(details) {
  if (!details || typeof details !== "object") return details ? String(details) : "—";
  const entries = Object.entries(details);
  return entries.length ? entries.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") : "—";
}

function outcomeBadge(outcome) {
  if (!outcome) return h("span", { class: "muted" }, "—");
  const kind = /^(ok|success|succeeded|allowed)$/i.test(outcome) ? "ok" : /denied|fail|error|reject/i.test(outcome) ? "bad" : "neutral";
  return h("span", { class: `badge outcome-${kind}`, dataset: { outcome } }, outcome);
}

export async function auditView(root, { user }) {
  const heading = h("h1", {}, "Audit trail");
  if (user.role !== "admin") {
    replace(root, heading, messageBox("info", "Only admins can read the audit trail."));
    return;
  }
  const action = h(
    "select",
    { id: "audit-action" },
    h("option", { value: "" }, "Any action"),
    ACTIONS.map((value) => h("option", { value }, value.replaceAll("_", " "))),
  );
  const refresh = h("button", { type: "button", class: "button secondary", id: "audit-refresh" }, "Refresh");
  const previous = h("button", { type: "button", class: "button secondary" }, "Newer entries");
  const next = h("button", { type: "button", class: "button secondary" }, "Older entries");
  const body = h("div", { class: "table-wrap" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages", hidden: true }, previous, next);
  const filters = h(
    "form",
    { class: "filters", "aria-label": "Filter the audit trail" },
    h("div", { class: "field" }, h("label", { for: "audit-action" }, "Action"), action),
    h("div", { class: "field" }, h("span", { class: "label-spacer", "aria-hidden": "true" }, " "), refresh),
  );
  filters.addEventListener("submit", (event) => event.preventDefault());
  replace(
    root,
    heading,
    h("p", { class: "lead" }, "Who did what to which vehicle, newest first."),
    filters,
    body,
    pager,
  );

  let offset = 0;
  async function load() {
    body.setAttribute("aria-busy", "true");
    try {
      const { data } = await api("/api/v1/audit", {
        query: { limit: AUDIT_LIMIT, offset: offset || null, action: action.value },
      });
      const entries = data?.entries ?? [];
      const total = typeof data?.total === "number" ? data.total : null;
      const range = entries.length ? `${offset + 1}–${offset + entries.length}` : "0";
      replace(
        body,
        h("p", { class: "muted", role: "status" }, `Showing ${range}${total === null ? "" : ` of ${total}`}.`),
        entries.length ? table(entries, data) : h("p", {}, "No audit entry matches."),
      );
      pager.hidden = false;
      previous.disabled = offset === 0;
      next.disabled = total === null ? entries.length < AUDIT_LIMIT : offset + entries.length >= total;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        pager.hidden = true;
        replace(body, messageBox("info", h("strong", {}, "Audit trail unavailable. "), "This service does not record one yet."));
      } else {
        replace(body, errorBox(error));
      }
    } finally {
      body.removeAttribute("aria-busy");
    }
  }
  refresh.addEventListener("click", load);
  action.addEventListener("change", () => {
    offset = 0;
    load();
  });
  previous.addEventListener("click", () => {
    offset = Math.max(0, offset - AUDIT_LIMIT);
    load();
  });
  next.addEventListener("click", () => {
    offset += AUDIT_LIMIT;
    load();
  });
  await load();
}

/** The entry's username, else the name the api resolved for its user id. */
function userText(entry, usernames) {
  const name = entry.username ?? usernames[entry.user_id];
  if (name) return name;
  return entry.user_id ? h("span", { class: "mono id", title: entry.user_id }, shortId(entry.user_id)) : "—";
}

function table(entries, { usernames = {}, vins = {} } = {}) {
  const rows = entries.map((entry) =>
    h(
      "tr",
      { dataset: { auditId: entry.id ?? "" } },
      h("td", {}, time(entry.at)),
      h("th", { scope: "row" }, entry.action ?? "—"),
      h("td", { class: "audit-user" }, userText(entry, usernames)),
      h("td", {}, outcomeBadge(entry.outcome)),
      h(
        "td",
        { class: "mono audit-vehicle" },
        entry.vehicle_id
          ? h("a", { href: `#/vehicles/${entry.vehicle_id}`, class: "id" }, vins[entry.vehicle_id] ?? shortId(entry.vehicle_id))
          : "—",
      ),
      h(
        "td",
        { class: "mono" },
        entry.command_id ? h("a", { href: `#/commands/${entry.command_id}`, class: "id" }, shortId(entry.command_id)) : "—",
      ),
      h("td", { class: "mono" }, entry.ip ?? "—"),
      h("td", { class: "details", title: entry.user_agent ?? "" }, detailsText(entry.details)),
    ),
  );
  return h(
    "table",
    { class: "data-table audit-table" },
    h("caption", { class: "visually-hidden" }, "Audit entries"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Time", "Action", "User", "Outcome", "Vehicle", "Command", "IP", "Details"].map((label) =>
          h("th", { scope: "col" }, label),
        ),
      ),
    ),
    h("tbody", {}, rows),
  );
}
