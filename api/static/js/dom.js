// Small DOM helpers: element builder, icons, badges and formatting shared by the views.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Build an element: h("p", {class: "x", onclick: fn}, "text", child). Never sets inline styles. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value" && "value" in el) el.value = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A decorative icon from the sprite in index.html; meaning is always carried by text too. */
export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", `icon icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS(SVG_NS, "use");
  use.setAttribute("href", `#i-${name}`);
  svg.append(use);
  return svg;
}

/** Terminal statuses, from the protocol module the api generates (common/protocol.py). */
export { TERMINAL } from "./protocol.js";

export const STATUSES = {
  pending: { label: "Pending", icon: "clock" },
  in_progress: { label: "In progress", icon: "play" },
  retrying: { label: "Retrying", icon: "refresh" },
  completed: { label: "Completed", icon: "check" },
  failed: { label: "Failed", icon: "x" },
  timeout: { label: "Timed out", icon: "hourglass" },
  cancelled: { label: "Cancelled", icon: "ban" },
  rejected: { label: "Rejected", icon: "ban" },
};

export function statusLabel(status) {
  return STATUSES[status]?.label ?? String(status);
}

/** A status shown as icon plus text, coloured by CSS; data-status carries the raw value. */
export function statusBadge(status, props = {}) {
  const meta = STATUSES[status] ?? { label: String(status), icon: "info" };
  return h(
    "span",
    { class: `badge status-${status}`, dataset: { status }, ...props },
    icon(meta.icon),
    h("span", {}, meta.label),
  );
}

export function connectionBadge(connectionStatus) {
  const connected = connectionStatus === "connected";
  return h(
    "span",
    { class: `badge conn-${connected ? "up" : "down"}`, dataset: { connection: connectionStatus } },
    icon(connected ? "link" : "unlink"),
    h("span", {}, connected ? "Connected" : "Disconnected"),
  );
}

// One date-and-time format and one clock format for every page, both in the person's
// locale (its own 12- or 24-hour convention); nothing else formats a time.
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const CLOCK_FORMAT = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  fractionalSecondDigits: 3,
});

/** An ISO timestamp as date and time text, in the page's one format. */
export function dateTimeText(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : TIME_FORMAT.format(date);
}

/** An ISO timestamp as clock text (with milliseconds), in the page's one clock format. */
export function clockText(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : CLOCK_FORMAT.format(date);
}

/** A <time> element for an ISO timestamp, or an em dash when there is none. */
export function time(iso, { clock = false } = {}) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  return h("time", { datetime: iso, title: iso }, clock ? clockText(iso) : dateTimeText(iso));
}

/** ``text`` ending with a full stop (a server message may have none). */
export function sentence(text) {
  const trimmed = String(text ?? "").trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

export function relativeAge(iso) {
  if (!iso) return "never";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

export function paramsText(params) {
  const entries = Object.entries(params ?? {});
  if (!entries.length) return "—";
  return entries.map(([key, value]) => `${key}=${value}`).join(", ");
}

export function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

/** A message box for an error (ApiError or anything else), with the request id when known. */
export function errorBox(error, { title } = {}) {
  const box = h(
    "div",
    { class: "message error", role: "alert" },
    icon("alert"),
    h("div", {}, title ? h("strong", {}, `${title}: `) : null, error?.message ?? String(error)),
  );
  if (error?.requestId) {
    box.lastChild.append(h("span", { class: "request-id" }, ` (request ${error.requestId})`));
  }
  return box;
}

export function messageBox(kind, ...content) {
  const icons = { info: "info", success: "check", warning: "alert", error: "alert" };
  return h(
    "div",
    { class: `message ${kind}`, role: kind === "error" ? "alert" : null },
    icon(icons[kind] ?? "info"),
    h("div", {}, ...content),
  );
}

/** A label/value description list from [label, value] pairs; values may be nodes. */
export function facts(pairs, props = {}) {
  const list = h("dl", { class: "facts", ...props });
  for (const [label, value] of pairs) {
    list.append(h("dt", {}, label), h("dd", {}, value ?? "—"));
  }
  return list;
}
