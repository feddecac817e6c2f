// One command: its record, its responses, its timeline, and its live events while it runs.

import {
  clockText,
  errorBox,
  facts,
  h,
  icon,
  messageBox,
  paramsText,
  replace,
  shortId,
  statusBadge,
  statusLabel,
  TERMINAL,
  time,
} from "../dom.js";
import { api, ApiError } from "../http.js";
import { describePart, ResponsesView } from "../render/responses.js";
import { Timeline } from "../render/timeline.js";
import { CommandStream, commandStreamUrl, State } from "../stream.js";

/** After a retry's due time, how long (ms) before the page asks for the attempt count. */
const NEXT_ATTEMPT_GRACE_MS = 500;

/** websocket_url of commands submitted from this page, by command id. */
const submitted = new Map();

export function rememberSubmission(command) {
  submitted.set(command.command_id, command.websocket_url);
}

const STREAM_TEXT = {
  [State.CONNECTING]: ["ring", () => "Connecting to live events…"],
  [State.LIVE]: ["dot", () => "Live: receiving events as they happen"],
  [State.RECONNECTING]: [
    "refresh",
    (d) =>
      d.delay
        ? `Connection lost${d.code ? ` (${d.code})` : ""}: reconnecting in ${Math.max(1, Math.round(d.delay / 1000))} s (attempt ${d.attempt})…`
        : `Reconnecting (attempt ${d.attempt})…`,
  ],
  [State.DONE]: ["check", () => "Stream complete: every event received"],
  [State.STOPPED]: ["unlink", (d) => `Not live: ${d.message || "the stream stopped"}`],
  ended: ["info", () => "Not live: the command had already ended; showing its stored results"],
};

function streamIndicator() {
  const element = h("p", { class: "stream-state", id: "stream-state", role: "status" });
  return {
    element,
    set(state, detail = {}) {
      const [iconName, text] = STREAM_TEXT[state];
      element.className = `stream-state state-${state}`;
      element.dataset.state = state;
      replace(element, icon(iconName), h("span", {}, text(detail)));
    },
  };
}

function resultBox(record, responses) {
  const parts = responses.size;
  switch (record.status) {
    case "completed":
      return messageBox(
        "success",
        h("strong", {}, "Completed. "),
        `${parts} response part${parts === 1 ? "" : "s"}`,
        responses.final ? `; ${describePart(responses.final)}.` : ".",
      );
    case "cancelled":
      return messageBox("info", h("strong", {}, "Cancelled. "), "The command was stopped before it finished.");
    default:
      return messageBox(
        "error",
        h("strong", {}, `${statusLabel(record.status)}. `),
        record.error_message ?? "No reason was recorded.",
      );
  }
}

export async function commandView(root, { params, user, isCurrent }) {
  const [commandId] = params;
  const [recordResult, responsesResult] = await Promise.all([
    api(`/api/v1/commands/${commandId}`),
    api(`/api/v1/commands/${commandId}/responses`),
  ]);
  let record = recordResult.data;
  const vin = await api(`/api/v1/vehicles/${record.vehicle_id}`)
    .then((r) => r.data.vin)
    .catch(() => null);
  if (!isCurrent()) return undefined;

  const statusSlot = h("span", { id: "command-status-slot" });
  const indicator = streamIndicator();
  const notice = h("div", { class: "command-notice", "aria-live": "polite" });
  const result = h("div", { class: "result", id: "command-result" });
  const factsSlot = h("div");
  const responses = new ResponsesView();
  const timeline = new Timeline();
  const partsByNumber = { size: 0, final: null };
  const cancel = h("button", { type: "button", class: "button secondary", id: "cancel-command" }, icon("ban"), " Cancel command");

  function say(kind, ...content) {
    notice.dataset.kind = kind;
    replace(notice, ...content);
  }

  function addResponse(response) {
    if (responses.add(response)) {
      partsByNumber.size += 1;
      if (response.is_final) partsByNumber.final = response.response_payload;
    }
  }

  function render() {
    replace(statusSlot, statusBadge(record.status, { id: "command-status" }));
    replace(
      factsSlot,
      facts([
        ["Command id", h("span", { class: "mono id", id: "command-id" }, record.command_id)],
        ["Vehicle", h("a", { href: `#/vehicles/${record.vehicle_id}`, class: "mono id" }, vin ?? record.vehicle_id)],
        ["Parameters", h("span", { class: "mono" }, paramsText(record.command_params))],
        ["Submitted", time(record.submitted_at)],
        ["Started", time(record.started_at)],
        ["Ended", time(record.completed_at)],
        ["Attempts", h("span", { id: "command-attempts" }, String(record.attempts ?? 0))],
        ["Deadline", time(record.deadline_at)],
        ["Request id", h("span", { class: "mono id" }, record.request_id ?? "—")],
      ]),
    );
    const running = !TERMINAL.has(record.status);
    cancel.hidden = !running || user.role === "viewer";
    if (!running) replace(result, resultBox(record, partsByNumber));
  }

  async function reload() {
    try {
      const [fresh, stored] = await Promise.all([
        api(`/api/v1/commands/${commandId}`),
        api(`/api/v1/commands/${commandId}/responses`),
      ]);
      record = fresh.data;
      for (const response of stored.data) addResponse(response);
      render();
    } catch (error) {
      say("error", errorBox(error, { title: "Could not refresh the command" }));
    }
  }

  function onEvent(event) {
    timeline.addEvent(event);
    if (event.event === "response" && event.response) {
      addResponse(event.response);
      if (notice.dataset.kind === "retry") {
        say("");
        refreshAttempts(); // the first part of the next attempt: it has started
      }
    } else if (event.event === "status" && event.status === "retrying") {
      refreshAttempts();
      // The next attempt may send no event before its end (parts already received are
      // not sent again): ask the API for the count once it is due to have started.
      clearTimeout(attemptTimer);
      const due = event.retry_at ? new Date(event.retry_at).getTime() - Date.now() : 0;
      attemptTimer = setTimeout(refreshAttempts, Math.max(0, due) + NEXT_ATTEMPT_GRACE_MS);
      say(
        "retry",
        messageBox(
          "warning",
          h("strong", {}, `Attempt ${event.attempt ?? "?"} failed: `),
          `${event.reason ?? "transient fault"}. Retrying`,
          event.retry_at ? ` at ${clockText(event.retry_at)}.` : ".",
        ),
      );
    } else if (event.event === "status") {
      record = {
        ...record,
        status: event.status,
        started_at: event.started_at ?? record.started_at,
        completed_at: event.completed_at ?? record.completed_at,
        error_message: event.error_message ?? record.error_message,
      };
      if (TERMINAL.has(event.status)) say("");
      render();
      if (TERMINAL.has(event.status)) reload();
      else refreshAttempts();
    }
  }

  // The stream says an attempt started or failed; the count itself is the API's.
  let attemptsRequest = null;
  let attemptsAgain = false;
  let attemptTimer = null;
  function refreshAttempts() {
    if (attemptsRequest) {
      attemptsAgain = true; // an event came while asking: ask once more afterwards
      return;
    }
    attemptsRequest = api(`/api/v1/commands/${commandId}`)
      .then(({ data }) => {
        if (!isCurrent()) return;
        if ((data.attempts ?? 0) > (record.attempts ?? 0)) {
          record = { ...record, attempts: data.attempts, deadline_at: data.deadline_at };
          render();
        }
      })
      .catch(() => {}) // the next event or the final reload tries again
      .finally(() => {
        attemptsRequest = null;
        if (attemptsAgain) {
          attemptsAgain = false;
          refreshAttempts();
        }
      });
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const { data, status } = await api(`/api/v1/commands/${commandId}/cancel`, { method: "POST" });
      if (status === 202) {
        say("cancel", messageBox("info", "Cancel requested: the vehicle stops at its next step."));
      } else {
        record = data;
        render();
      }
    } catch (error) {
      const title = error instanceof ApiError && error.status === 409 ? "Cannot cancel" : "Cancel failed";
      say("error", errorBox(error, { title }));
    } finally {
      cancel.disabled = false;
    }
  });

  for (const response of responsesResult.data) addResponse(response);
  replace(
    root,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/commands" }, "Commands"), " / ", shortId(record.command_id)),
    h("h1", {}, `${record.command_name} on `, h("span", { class: "mono" }, vin ?? shortId(record.vehicle_id))),
    h("div", { class: "status-bar" }, statusSlot, indicator.element, cancel),
    notice,
    result,
    h(
      "div",
      { class: "columns wide-left" },
      responses.element,
      h("section", { class: "panel", "aria-labelledby": "facts-title" }, h("h2", { id: "facts-title" }, "Details"), factsSlot),
    ),
    timeline.element,
  );
  render();

  // A command just submitted from this page is followed from its first event even when it
  // ended before the page loaded: its event log replays the whole run.
  const justSubmitted = submitted.get(commandId);
  submitted.delete(commandId);
  if (TERMINAL.has(record.status) && !justSubmitted) {
    timeline.fromRecord(record, responsesResult.data);
    indicator.set("ended");
    return undefined;
  }
  timeline.submitted(record);
  const stream = new CommandStream({
    url: commandStreamUrl(commandId, record.websocket_url ?? justSubmitted),
    commandId,
    onEvent,
    onState: (state, detail) => indicator.set(state, detail),
    onLost: () => {
      say("lost", messageBox("warning", "Some events could not be replayed; the command was reloaded from its stored record."));
      reload();
    },
  }).start();
  return () => {
    clearTimeout(attemptTimer);
    stream.stop();
  };
}
