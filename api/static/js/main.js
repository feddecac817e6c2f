// The console shell: who is signed in, the navigation, and a hash router over the views.

import { errorBox, h, replace } from "./dom.js";
import { api, ApiError } from "./http.js";
import * as session from "./session.js";
import { auditView } from "./views/audit.js";
import { commandView } from "./views/command.js";
import { historyView } from "./views/history.js";
import { loginView } from "./views/login.js";
import { vehicleView } from "./views/vehicle.js";
import { vehiclesView } from "./views/vehicles.js";

const ROUTES = [
  { pattern: /^\/vehicles\/?$/, section: "vehicles", view: vehiclesView },
  { pattern: /^\/vehicles\/([0-9a-fA-F-]{36})$/, section: "vehicles", view: vehicleView },
  { pattern: /^\/commands\/?$/, section: "commands", view: historyView },
  { pattern: /^\/commands\/([0-9a-fA-F-]{36})$/, section: "commands", view: commandView },
  { pattern: /^\/audit\/?$/, section: "audit", view: auditView },
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const account = document.getElementById("account");
const notice = document.getElementById("notice");

let user = null;
let cleanup = null;
let generation = 0;

function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/vehicles";
  const [path, search = ""] = raw.split("?", 2);
  return { path, query: new URLSearchParams(search) };
}

/** Go to a route; `replace` keeps the history entry (filters, redirects). */
export function navigate(path, { replace: swap = false } = {}) {
  const target = `#${path}`;
  if (window.location.hash === target) {
    route();
  } else if (swap) {
    window.history.replaceState(null, "", target);
    route();
  } else {
    window.location.hash = target;
  }
}

function setNotice(text) {
  notice.textContent = text ?? "";
}

function showShell(signedIn) {
  nav.hidden = !signedIn;
  account.hidden = !signedIn;
  if (!signedIn) return;
  // The role once: "engineer" for the demo user of that name, "alice (engineer)" otherwise.
  document.getElementById("account-name").textContent =
    user.username === user.role ? user.username : `${user.username} (${user.role})`;
  for (const link of nav.querySelectorAll("[data-role]")) {
    link.hidden = link.dataset.role !== user.role;
  }
}

function endView() {
  generation += 1;
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // a view that failed to clean up must not block the next one
    }
  }
  cleanup = null;
}

async function route() {
  const focusedId = main.contains(document.activeElement) ? document.activeElement.id : "";
  endView();
  const mine = generation;
  if (!user) {
    showShell(false);
    loginView(main, { onSignedIn: start });
    return;
  }
  const { path, query } = parseHash();
  const match = ROUTES.map((r) => ({ ...r, m: path.match(r.pattern) })).find((r) => r.m);
  for (const link of nav.querySelectorAll("a")) {
    if (match && link.dataset.section === match.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!match) {
    navigate("/vehicles", { replace: true });
    return;
  }
  const ctx = {
    user,
    query,
    params: match.m.slice(1),
    navigate,
    notice: setNotice,
    isCurrent: () => mine === generation,
  };
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    const result = await match.view(main, ctx);
    if (mine === generation) cleanup = result ?? null;
    else result?.();
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof session.SessionExpired) return; // the session listener shows login
    replace(main, h("h1", { tabindex: "-1" }, "Something went wrong"), errorBox(error));
  }
  if (mine === generation) {
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · SOVD console` : "SOVD console";
    // Keep focus on the control that changed the route (a filter), else on the heading.
    const again = focusedId && document.getElementById(focusedId);
    if (again && main.contains(again)) {
      again.focus({ preventScroll: true });
    } else if (!main.contains(document.activeElement)) {
      heading?.setAttribute("tabindex", "-1");
      heading?.focus({ preventScroll: true });
    }
  }
}

let starting = null;

/** Load the signed-in user, then show the requested page (one load at a time). */
function start() {
  starting ??= boot().finally(() => {
    starting = null;
  });
  return starting;
}

async function boot() {
  if (!session.current()) {
    user = null;
    route();
    return;
  }
  try {
    user = (await api("/api/v1/auth/me")).data;
    setNotice("");
  } catch (error) {
    user = null;
    if (!(error instanceof session.SessionExpired) && !(error instanceof ApiError)) {
      setNotice(error.message);
    }
  }
  showShell(user !== null);
  route();
}

session.onChange((current, reason) => {
  if (!current) {
    user = null;
    endView();
    setNotice(reason === "expired" ? "Your session has ended. Sign in again." : "Signed out.");
    route();
  } else if (!user && reason === "refreshed") {
    start(); // signed in from another tab
  }
});

document.getElementById("sign-out").addEventListener("click", () => {
  session.logout();
});
window.addEventListener("hashchange", () => {
  setNotice("");
  route();
});

start();
