// Follow one command's events over the realtime WebSocket (docs/protocol.md): resume
// with since=<last seq> after a drop, never deliver an event twice, honour close codes.

import { CLOSE, TERMINAL, needsNewToken, shouldReconnect } from "./protocol.js";
import { streamProtocols, streamUrl } from "./http.js";
import * as session from "./session.js";

const REALTIME_KEY = "sovd.realtime";
/** First reconnect delay and its ceiling (ms); each attempt doubles it, with jitter. */
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export const State = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  DONE: "done",
  STOPPED: "stopped",
});

/** What to tell the user when the stream stops for good (which codes stop: protocol.js). */
const STOP_REASONS = {
  [CLOSE.NORMAL]: "The server closed the stream.",
  [CLOSE.POLICY_VIOLATION]: "The stream refused the credentials.",
  [CLOSE.MESSAGE_TOO_BIG]: "A message to the server was too large.",
  [CLOSE.SESSION_REVOKED]: "Your session was ended (signed out or disabled). Sign in again.",
  [CLOSE.COMMAND_NOT_FOUND]: "This command does not exist or is not visible to you.",
  [CLOSE.IDLE]: "The stream was idle and closed.",
  [CLOSE.CANNOT_RECOVER]: "This command is no longer stored; showing what the API still has.",
  [CLOSE.TOO_MANY_CONNECTIONS]: "Too many open streams for your user. Close other console tabs, then reload.",
};

/** Remember where the realtime process lives, from a websocket_url the API returned. */
export function rememberStreamUrl(websocketUrl) {
  const base = String(websocketUrl).replace(/\/ws\/responses\/[^/?#]+.*$/, "");
  if (base) localStorage.setItem(REALTIME_KEY, base);
}

/** The stream URL of a command: as the API gave it, else from the remembered realtime base. */
export function commandStreamUrl(commandId, websocketUrl) {
  if (websocketUrl) return websocketUrl;
  const sameOrigin = `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}`;
  const base = localStorage.getItem(REALTIME_KEY) || sameOrigin;
  return `${base}/ws/responses/${encodeURIComponent(commandId)}`;
}

/**
 * One command's event stream. Callbacks: onEvent(event) for each command event in seq
 * order, exactly once; onState(state, detail) for the connection indicator; onLost()
 * when the server can no longer replay what was missed (fetch over REST instead).
 */
export class CommandStream {
  #url;
  #commandId;
  #onEvent;
  #onState;
  #onLost;
  #socket = null;
  #timer = null;
  #attempt = 0;
  #ended = false;
  #authRetried = false;
  #unsubscribe = null;
  #online = () => {
    if (this.#timer !== null) this.#reconnectNow();
  };

  constructor({ url, commandId, since = 0, onEvent, onState = () => {}, onLost = () => {} }) {
    this.#url = url;
    this.#commandId = commandId;
    this.lastSeq = since;
    this.#onEvent = onEvent;
    this.#onState = onState;
    this.#onLost = onLost;
  }

  start() {
    this.#unsubscribe = session.onChange((current, reason) => this.#sessionChanged(current, reason));
    window.addEventListener("online", this.#online);
    this.#connect();
    return this;
  }

  /** Stop for good (leaving the page, signing out). */
  stop() {
    this.#end();
  }

  #end() {
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#unsubscribe?.();
    window.removeEventListener("online", this.#online);
    const socket = this.#socket;
    this.#socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "Done");
  }

  async #connect() {
    this.#timer = null;
    this.#onState(this.#attempt ? State.RECONNECTING : State.CONNECTING, {
      attempt: this.#attempt,
    });
    let token;
    try {
      token = await session.validAccessToken();
    } catch (error) {
      if (error instanceof session.SessionExpired) this.#stop(error.message);
      else this.#retry();
      return;
    }
    if (this.#ended) return;
    const socket = new WebSocket(streamUrl(this.#url, this.lastSeq), streamProtocols(token));
    this.#socket = socket;
    socket.addEventListener("open", () => {
      if (this.#socket === socket) this.#onState(State.LIVE, { since: this.lastSeq });
    });
    socket.addEventListener("message", (message) => {
      if (this.#socket === socket) this.#message(message.data);
    });
    socket.addEventListener("close", (event) => {
      if (this.#socket === socket) this.#closed(event);
    });
  }

  #message(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (!event || typeof event !== "object") return;
    if (event.event === "welcome") {
      this.#attempt = 0;
      this.#authRetried = false;
      this.expiresAt = event.expires_at;
      return;
    }
    if (typeof event.seq === "number" && event.command_id === this.#commandId) {
      // Already shown: a replay overlap. A snapshot restates the stored command with
      // positions of its own (docs/protocol.md): every part of it goes to the page,
      // which shows each response once by its sequence_number.
      if (event.seq <= this.lastSeq && event.snapshot !== true) return;
      this.lastSeq = Math.max(this.lastSeq, event.seq);
      this.#attempt = 0;
      this.#onEvent(event);
      if (event.event === "status" && TERMINAL.has(event.status)) {
        this.#end();
        this.#onState(State.DONE, {});
      }
      return;
    }
    if (event.event === "error" && event.error_code === "cannot_recover") {
      this.#onLost(event);
    }
    // welcome/token_refreshed/pong and event types added later need nothing here.
  }

  #closed(event) {
    this.#socket = null;
    if (this.#ended) return;
    const { code, reason } = event;
    const expired = needsNewToken(code, reason);
    if (expired && !this.#authRetried) {
      // The token ran out on the wire: rotate it, then resume where we were.
      this.#authRetried = true;
      session.refresh().then(
        () => this.#ended || this.#connect(),
        (error) =>
          error instanceof session.SessionExpired ? this.#stop(error.message) : this.#retry(code),
      );
      return;
    }
    if (code === CLOSE.CANNOT_RECOVER) {
      this.#stop(STOP_REASONS[CLOSE.CANNOT_RECOVER]);
      this.#onLost({ last_seq: null });
      return;
    }
    if (!shouldReconnect(code)) {
      const why = STOP_REASONS[code] ?? STOP_REASONS[Math.floor(code / 100) * 100] ?? "";
      this.#stop([why, reason ? `(${code}: ${reason})` : `(${code})`].join(" ").trim());
      return;
    }
    this.#retry(code);
  }

  #retry(code) {
    this.#attempt += 1;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (this.#attempt - 1));
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.#onState(State.RECONNECTING, { attempt: this.#attempt, delay, code });
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #reconnectNow() {
    clearTimeout(this.#timer);
    this.#connect();
  }

  #stop(message) {
    this.#end();
    this.#onState(State.STOPPED, { message });
  }

  #sessionChanged(current, reason) {
    if (!current) {
      this.#stop("Signed out.");
      return;
    }
    if (reason === "refreshed" && this.#socket?.readyState === WebSocket.OPEN) {
      this.#socket.send(JSON.stringify({ action: "refresh", token: current.access_token }));
    }
  }
}
