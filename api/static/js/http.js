// REST calls with the access token; one retry after a refresh when the token was refused.

import { BEARER_PREFIX, SUBPROTOCOL } from "./protocol.js";
import * as session from "./session.js";

/** An HTTP error in the API's shape: {error: {code, message, details, request_id}}. */
export class ApiError extends Error {
  constructor(status, body, headers) {
    const error = body?.error ?? {};
    super(error.message ?? `The service answered HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = error.code ?? null;
    this.details = error.details ?? {};
    this.requestId = error.request_id ?? headers?.get("X-Request-ID") ?? null;
  }

  /** The per-field messages of a 422: [{loc: [...], msg}] (empty for other errors). */
  get fieldErrors() {
    return Array.isArray(this.details?.errors) ? this.details.errors : [];
  }
}

export class NetworkError extends Error {
  constructor() {
    super("Cannot reach the service. Check the connection and try again.");
    this.name = "NetworkError";
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function send(url, { method, body, headers }) {
  const token = await session.validAccessToken();
  const all = { Accept: "application/json", ...headers, Authorization: `Bearer ${token}` };
  if (body !== undefined) all["Content-Type"] = "application/json";
  try {
    return await fetch(url, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new NetworkError();
  }
}

/**
 * Call the API as the signed-in user. Resolves to {data, status, headers}; rejects with
 * ApiError (HTTP error), NetworkError, or session.SessionExpired.
 */
export async function api(path, { method = "GET", body, query, headers = {} } = {}) {
  const url = withQuery(path, query);
  let response = await send(url, { method, body, headers });
  if (response.status === 401) {
    // The token may have been revoked or expired in flight: rotate once and retry.
    await session.refresh();
    response = await send(url, { method, body, headers });
    if (response.status === 401) session.clear("expired");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data, response.headers);
  return { data, status: response.status, headers: response.headers };
}

/** The URL of a command's event stream, with the access token and resume position. */
export function streamUrl(base, since) {
  const url = new URL(base, window.location.href);
  url.searchParams.set("since", String(since));
  return url.toString();
}

/** The token travels in Sec-WebSocket-Protocol, never in the URL (docs/protocol.md). */
export function streamProtocols(token) {
  return [SUBPROTOCOL, `${BEARER_PREFIX}${token}`];
}
