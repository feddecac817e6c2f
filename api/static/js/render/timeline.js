// A command's timeline: streamed events, each once, or the stored record's milestones
// when the command had already ended. The list is an aria-live region.

import { clockText, h, icon, statusLabel, STATUSES, time } from "../dom.js";
import { describePart } from "./responses.js";

function entry({ key, seq, kind, status, at, text, iconName }) {
  return h(
    "li",
    {
      class: `tl-entry tl-${kind}`,
      dataset: { key, seq: seq ?? "", kind, status: status ?? "" },
    },
    h("span", { class: "tl-icon" }, icon(iconName)),
    h("span", { class: "tl-time" }, time(at, { clock: true })),
    h("span", { class: "tl-text" }, text),
  );
}

function statusText(event) {
  const label = statusLabel(event.status);
  if (event.status === "retrying") {
    const next = event.retry_at ? clockText(event.retry_at) : "shortly";
    return `Retrying: attempt ${event.attempt ?? "?"} failed (${event.reason ?? "no reason given"}); next attempt at ${next}`;
  }
  if (event.status === "in_progress") return "Status: In progress (a worker started the command)";
  return event.error_message ? `Status: ${label} — ${event.error_message}` : `Status: ${label}`;
}

/**
 * The entry an event is shown as, once: a response part by its number however it came
 * (live, replayed, or restated by a snapshot, whose positions are not the original
 * events'); a snapshot's status and error once each; any other event by its seq.
 */
function eventKey(event) {
  if (event.event === "response") {
    return `part-${event.sequence_number ?? event.response?.sequence_number}`;
  }
  return event.snapshot === true ? `snapshot-${event.event}` : `seq-${event.seq}`;
}

/** Timeline fields of one streamed event (status, response, error, or a later type). */
function fromEvent(event, receivedAt) {
  const common = { key: eventKey(event), seq: event.seq, at: receivedAt };
  switch (event.event) {
    case "status":
      return {
        ...common,
        kind: "status",
        status: event.status,
        at: event.completed_at ?? event.started_at ?? receivedAt,
        text: statusText(event),
        iconName: STATUSES[event.status]?.icon ?? "info",
      };
    case "response": {
      const response = event.response ?? {};
      const number = event.sequence_number ?? response.sequence_number;
      return {
        ...common,
        kind: "response",
        at: response.received_at ?? receivedAt,
        text: `${response.is_final ? "Final part" : "Part"} ${number} received: ${describePart(response.response_payload)}`,
        iconName: "data",
      };
    }
    case "error":
      return {
        ...common,
        kind: "error",
        text: `Error${event.error_code ? ` (${event.error_code})` : ""}: ${event.error_message ?? "unknown"}`,
        iconName: "alert",
      };
    default:
      return { ...common, kind: "other", text: `Event: ${event.event}`, iconName: "info" };
  }
}

export class Timeline {
  constructor() {
    this.list = h("ol", {
      class: "timeline",
      "aria-live": "polite",
      "aria-relevant": "additions",
      "aria-label": "Command events",
    });
    this.element = h(
      "section",
      { class: "panel timeline-panel", "aria-labelledby": "timeline-title" },
      h("h2", { id: "timeline-title" }, "Timeline"),
      this.list,
    );
    this.keys = new Set();
  }

  #add(fields) {
    if (this.keys.has(fields.key)) return false;
    this.keys.add(fields.key);
    this.list.append(entry(fields));
    return true;
  }

  /** A streamed event; one already shown (``eventKey``) is ignored. */
  addEvent(event) {
    return this.#add(fromEvent(event, new Date().toISOString()));
  }

  submitted(record) {
    this.#add({
      key: "submitted",
      kind: "submitted",
      at: record.submitted_at,
      text: `Submitted ${record.command_name} (${Object.entries(record.command_params ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")})`,
      iconName: "clock",
    });
  }

  /** The milestones of an ended command, from its record and stored responses. */
  fromRecord(record, responses) {
    this.submitted(record);
    if (record.started_at) {
      this.#add({
        key: "started",
        kind: "status",
        status: "in_progress",
        at: record.started_at,
        text: `Status: In progress${record.attempts > 1 ? ` (${record.attempts} attempts)` : ""}`,
        iconName: "play",
      });
    }
    for (const response of responses) {
      this.#add({
        key: `part-${response.sequence_number}`,
        kind: "response",
        at: response.received_at,
        text: `${response.is_final ? "Final part" : "Part"} ${response.sequence_number} received: ${describePart(response.response_payload)}`,
        iconName: "data",
      });
    }
    this.#add({
      key: "terminal",
      kind: "status",
      status: record.status,
      at: record.completed_at,
      text: statusText(record),
      iconName: STATUSES[record.status]?.icon ?? "info",
    });
  }
}
