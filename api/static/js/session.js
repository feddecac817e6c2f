// The signed-in session: the token pair in localStorage, refreshed before the access
// token expires. Refresh rotates the refresh token, so a single refresh runs at a time
// and other tabs pick up the new pair through the storage event.

const STORAGE_KEY = "sovd.session";
/** Refresh when this fraction of the access token's lifetime is left... */
const REFRESH_MARGIN_FRACTION = 0.25;
/** ...but never earlier than this before it expires (ms). */
const REFRESH_MARGIN_MAX_MS = 60_000;
/** Treat the access token as expired this long before it really does (ms). */
const EXPIRY_SKEW_MS = 2_000;
/** Retry a refresh that failed for a transient reason (network, 429, 5xx) after (ms). */
const REFRESH_RETRY_MS = 5_000;

export class SessionExpired extends Error {
  constructor(message = "Your session has ended. Sign in again.") {
    super(message);
    this.name = "SessionExpired";
  }
}

let session = load();
let timer = null;
let inflight = null;
const listeners = new Set();

function load() {
  try {
    const value = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null");
    return value?.access_token && value?.refresh_token ? value : null;
  } catch {
    return null;
  }
}

function emit(reason) {
  for (const listener of listeners) listener(session, reason);
}

function schedule() {
  clearTimeout(timer);
  timer = null;
  if (!session) return;
  const lifetime = (session.lifetime_s ?? 0) * 1000;
  const margin = Math.min(REFRESH_MARGIN_MAX_MS, lifetime * REFRESH_MARGIN_FRACTION);
  const delay = Math.max(0, session.expires_at - margin - Date.now());
  timer = setTimeout(() => {
    refresh().catch(() => {});
  }, delay);
}

function store(pair) {
  session = {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    // expires_in is relative to now: no dependence on the server's clock.
    expires_at: Date.now() + pair.expires_in * 1000,
    lifetime_s: pair.expires_in,
  };
  localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  schedule();
}

/** Forget the session (locally); listeners hear `reason` ("signed-out" or "expired"). */
export function clear(reason = "signed-out") {
  const had = session !== null;
  session = null;
  clearTimeout(timer);
  localStorage.removeItem(STORAGE_KEY);
  if (had) emit(reason);
}

export function current() {
  return session;
}

/** Call `listener(session, reason)` on every change; returns the unsubscribe function. */
export function onChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function accessToken() {
  return session?.access_token ?? null;
}

/** An access token that is not about to expire, refreshing first when needed. */
export async function validAccessToken() {
  if (!session) throw new SessionExpired();
  if (Date.now() < session.expires_at - EXPIRY_SKEW_MS) return session.access_token;
  return refresh();
}

/** Rotate the token pair now (at most one request at a time); resolves to the new access token. */
export function refresh() {
  inflight ??= rotate().finally(() => {
    inflight = null;
  });
  return inflight;
}

async function rotate() {
  const used = session?.refresh_token;
  if (!used) throw new SessionExpired();
  let response;
  try {
    response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ refresh_token: used }),
    });
  } catch (error) {
    retryLater();
    throw error;
  }
  if (response.ok) {
    store(await response.json());
    emit("refreshed");
    return session.access_token;
  }
  // Another tab may have rotated the pair first: adopt what it stored.
  const latest = load();
  if (latest && latest.refresh_token !== used) {
    session = latest;
    schedule();
    emit("refreshed");
    return session.access_token;
  }
  if (response.status === 401 || response.status === 422) {
    clear("expired");
    throw new SessionExpired();
  }
  retryLater();
  throw new Error(`Token refresh failed (HTTP ${response.status})`);
}

function retryLater() {
  clearTimeout(timer);
  if (!session) return;
  timer = setTimeout(() => {
    refresh().catch(() => {});
  }, REFRESH_RETRY_MS);
}

export async function login(username, password) {
  const response = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body?.error?.message ?? `Sign-in failed (HTTP ${response.status})`;
    throw new Error(message);
  }
  store(body);
  emit("signed-in");
}

/** Revoke both tokens on the server (best effort) and forget them here. */
export async function logout() {
  const ended = session;
  clear("signed-out");
  if (!ended) return;
  try {
    await fetch("/api/v1/auth/logout", {
      method: "POST",
      headers: {
        Authorization: `Bearer ${ended.access_token}`,
        "Content-Type": "application/json",
      },
      body: JSON.stringify({ refresh_token: ended.refresh_token }),
    });
  } catch {
    // Offline: the tokens are gone from this browser and expire on their own.
  }
}

window.addEventListener("storage", (event) => {
  if (event.key !== STORAGE_KEY) return;
  const had = session !== null;
  session = load();
  schedule();
  if (session) emit("refreshed");
  else if (had) emit("signed-out");
});

schedule();
