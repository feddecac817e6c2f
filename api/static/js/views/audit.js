// The audit trail, for admins: GET /api/v1/audit (the latest entries).

import { errorBox, h, messageBox, replace, shortId, time } from "../dom.js";
import { api, ApiError } from "../http.js";

const AUDIT_LIMIT = 50;

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
  const refresh = h("button", { type: "button", class: "button secondary", id: "audit-refresh" }, "Refresh");
  const body = h("div", { class: "table-wrap" });
  replace(
    root,
    heading,
    h("p", { class: "lead" }, `Who did what to which vehicle: the latest ${AUDIT_LIMIT} entries.`),
    h("div", { class: "actions" }, refresh),
    body,
  );

  async function load() {
    body.setAttribute("aria-busy", "true");
    try {
      const { data } = await api("/api/v1/audit", { query: { limit: AUDIT_LIMIT } });
      const entries = data?.entries ?? [];
      const total = typeof data?.total === "number" ? ` of ${data.total}` : "";
      replace(
        body,
        h("p", { class: "muted", role: "status" }, `${entries.length} entr${entries.length === 1 ? "y" : "ies"}${total}.`),
        entries.length ? table(entries) : h("p", {}, "No audit entry yet."),
      );
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        replace(body, messageBox("info", h("strong", {}, "Audit trail unavailable. "), "This service does not record one yet."));
      } else {
        replace(body, errorBox(error));
      }
    } finally {
      body.removeAttribute("aria-busy");
    }
  }
  refresh.addEventListener("click", load);
  await load();
}

function table(entries) {
  const rows = entries.map((entry) =>
    h(
      "tr",
      { dataset: { auditId: entry.id ?? "" } },
      h("td", {}, time(entry.at)),
      h("th", { scope: "row" }, entry.action ?? "—"),
      h("td", {}, entry.username ?? (entry.user_id ? shortId(entry.user_id) : "—")),
      h("td", {}, outcomeBadge(entry.outcome)),
      h("td", { class: "mono" }, entry.vehicle_id ? shortId(entry.vehicle_id) : "—"),
      h(
        "td",
        { class: "mono" },
        entry.command_id ? h("a", { href: `#/commands/${entry.command_id}` }, shortId(entry.command_id)) : "—",
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
