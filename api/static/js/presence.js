// Follow vehicles' presence over the realtime WebSocket (docs/protocol.md, "Presence
// streams"): a snapshot, then each change. After a drop it reconnects with back-off and
// the server sends a fresh snapshot, so nothing is missed and nothing needs a position.

import { REALTIME_URL } from "./config.js";
import { CLOSE, shouldReconnect } from "./protocol.js";
import { streamProtocols } from "./http.js";
import * as session from "./session.js";

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;

function presenceUrl(vehicleId) {
  const sameOrigin = `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}`;
  const base = (REALTIME_URL || sameOrigin).replace(/\/$/, "");
  return `${base}/ws/vehicles${vehicleId ? `/${encodeURIComponent(vehicleId)}` : ""}`;
}

/**
 * Presence of every vehicle (vehicleId null) or one. onPresence({vehicle_id,
 * connection_status, last_seen_at, ...}) runs for every vehicle of each snapshot and for
 * each change, in order; onState("live" | "reconnecting" | "stopped") for an indicator.
 */
export class PresenceStream {
  #vehicleId;
  #onPresence;
  #onState;
  #socket = null;
  #timer = null;
  #attempt = 0;
  #ended = false;

  constructor({ vehicleId = null, onPresence, onState = () => {} }) {
    this.#vehicleId = vehicleId;
    this.#onPresence = onPresence;
    this.#onState = onState;
  }

  start() {
    this.#connect();
    return this;
  }

  stop() {
    this.#ended = true;
    clearTimeout(this.#timer);
    const socket = this.#socket;
    this.#socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "Done");
  }

  async #connect() {
    let token;
    try {
      token = await session.validAccessToken();
    } catch {
      this.#retry();
      return;
    }
    if (this.#ended) return;
    const socket = new WebSocket(presenceUrl(this.#vehicleId), streamProtocols(token));
    this.#socket = socket;
    socket.addEventListener("message", (message) => {
      if (this.#socket === socket) this.#message(message.data);
    });
    socket.addEventListener("close", (event) => {
      if (this.#socket !== socket || this.#ended) return;
      this.#socket = null;
      if (shouldReconnect(event.code) || event.code === CLOSE.TOKEN_EXPIRED) this.#retry();
      else this.#onState("stopped", { code: event.code, reason: event.reason });
    });
  }

  #message(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (event?.event === "presence_snapshot") {
      this.#attempt = 0;
      this.#onState("live", {});
      for (const vehicle of event.vehicles ?? []) this.#onPresence(vehicle);
    } else if (event?.event === "presence") {
      this.#onPresence(event);
    }
  }

  #retry() {
    this.#attempt += 1;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (this.#attempt - 1));
    this.#onState("reconnecting", { attempt: this.#attempt });
    this.#timer = setTimeout(() => this.#connect(), Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
  }
}
