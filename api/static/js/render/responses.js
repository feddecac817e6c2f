// A command's response parts as a table-like list, each part once, in sequence_number order.

import { h, icon } from "../dom.js";

const SEVERITY = { 1: "high", 2: "medium", 3: "low" };

function cell(label, value, className) {
  return h(
    "span",
    { class: `cell ${className ?? ""}`.trim() },
    h("span", { class: "visually-hidden" }, `${label}: `),
    value,
  );
}

function ecuText(ecu) {
  if (!ecu) return "—";
  return ecu.name ? `${ecu.address} ${ecu.name}` : ecu.address;
}

function dtcFlags(status = {}) {
  const flags = [];
  if (status.testFailed) flags.push("test failed");
  if (status.confirmedDTC) flags.push("confirmed");
  if (status.pendingDTC) flags.push("pending");
  return flags.length ? flags.join(", ") : "stored";
}

function formatValue(value) {
  if (typeof value === "number") return value.toLocaleString(undefined, { maximumFractionDigits: 3 });
  return String(value);
}

/** The cells of one part, by payload type; unknown types show their JSON. */
function cells(payload) {
  switch (payload?.type) {
    case "dtc": {
      const severity = payload.severity;
      return [
        cell("Code", h("strong", { class: "dtc-code" }, payload.display_code ?? payload.code), "code"),
        cell("Fault", payload.fault_name ?? "—", "main"),
        cell(
          "Severity",
          h(
            "span",
            { class: `severity sev-${severity}` },
            `${severity} · ${SEVERITY[severity] ?? "unknown"}`,
          ),
          "severity",
        ),
        cell("Status", dtcFlags(payload.status), "flags"),
      ];
    }
    case "dtc_summary":
      return [
        cell("Summary", h("strong", {}, "Summary"), "code"),
        cell(
          "Result",
          payload.dtc_count === 1 ? "1 trouble code" : `${payload.dtc_count} trouble codes`,
          "main wide",
        ),
      ];
    case "dtc_cleared":
      return [
        cell("Action", h("strong", {}, "Cleared"), "code"),
        cell(
          "Result",
          `${payload.cleared_count} trouble code${payload.cleared_count === 1 ? "" : "s"} cleared` +
            (payload.dtc_code ? ` (${payload.dtc_code})` : " (all)"),
          "main wide",
        ),
      ];
    case "data":
      return [
        cell("Identifier", h("strong", {}, payload.did), "code"),
        cell("Name", `${payload.name}${payload.category ? ` (${payload.category})` : ""}`, "main"),
        cell(
          "Value",
          h(
            "span",
            { class: "data-value" },
            formatValue(payload.value),
            payload.unit ? h("span", { class: "unit" }, ` ${payload.unit}`) : null,
          ),
          "value wide-2",
        ),
      ];
    case "negative_response":
      return [
        cell("Answer", h("strong", {}, "Negative"), "code"),
        cell(
          "Result",
          `Service ${payload.service} refused ${payload.did ?? ""}: ${payload.nrc} ${payload.nrc_name ?? ""}`,
          "main wide",
        ),
      ];
    default:
      return [
        cell("Type", h("strong", {}, payload?.type ?? "part"), "code"),
        cell("Payload", h("code", { class: "json" }, JSON.stringify(payload)), "main wide"),
      ];
  }
}

/** A one-line description of a part, for the timeline. */
export function describePart(payload) {
  switch (payload?.type) {
    case "dtc":
      return `${payload.display_code ?? payload.code} ${payload.fault_name ?? ""}`.trim();
    case "dtc_summary":
      return `summary, ${payload.dtc_count} trouble code${payload.dtc_count === 1 ? "" : "s"}`;
    case "dtc_cleared":
      return `${payload.cleared_count} cleared`;
    case "data":
      return `${payload.name} = ${formatValue(payload.value)}${payload.unit ? ` ${payload.unit}` : ""}`;
    case "negative_response":
      return `negative response ${payload.nrc} ${payload.nrc_name ?? ""}`.trim();
    default:
      return payload?.type ?? "part";
  }
}

export class ResponsesView {
  constructor() {
    this.count = h("span", { class: "count" }, "(0)");
    this.list = h("ol", { class: "chunks", "aria-label": "Response parts" });
    this.empty = h("p", { class: "muted empty" }, "No response parts yet.");
    this.element = h(
      "section",
      { class: "panel responses", "aria-labelledby": "responses-title" },
      h("h2", { id: "responses-title" }, "Responses ", this.count),
      h(
        "div",
        { class: "chunk-head", "aria-hidden": "true" },
        h("span", {}, "#"),
        h("span", {}, "ECU"),
        h("span", {}, "Code / item"),
        h("span", {}, "Description"),
        h("span", {}, "Detail"),
        h("span", {}, "Status"),
      ),
      this.list,
      this.empty,
    );
    this.seen = new Set();
  }

  /** Add a stored or streamed response; a part already shown is ignored. */
  add(response) {
    const number = response.sequence_number;
    if (this.seen.has(number)) return false;
    this.seen.add(number);
    const payload = response.response_payload ?? {};
    const item = h(
      "li",
      {
        class: `chunk chunk-${payload.type ?? "other"}${response.is_final ? " final" : ""}`,
        dataset: { sequenceNumber: number, type: payload.type ?? "" },
      },
      cell(
        "Part",
        h(
          "span",
          {},
          `#${number}`,
          response.is_final ? h("span", { class: "final-tag" }, icon("check"), " final") : null,
        ),
        "seq",
      ),
      cell("ECU", ecuText(payload.ecu), "ecu"),
      ...cells(payload),
    );
    const after = [...this.list.children].find((li) => Number(li.dataset.sequenceNumber) > number);
    this.list.insertBefore(item, after ?? null);
    this.count.textContent = `(${this.seen.size})`;
    this.empty.hidden = true;
    return true;
  }
}
