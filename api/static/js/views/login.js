// Sign in with a username and password.

import { h, icon, replace } from "../dom.js";
import * as session from "../session.js";

export function loginView(root, { onSignedIn }) {
  const error = h("div", { class: "form-error", role: "alert", id: "login-error" });
  const username = h("input", {
    id: "login-username",
    name: "username",
    autocomplete: "username",
    required: true,
    "aria-describedby": "login-error",
  });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    "aria-describedby": "login-error",
  });
  const submit = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const form = h(
    "form",
    { class: "panel login", novalidate: true },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Use your service account to follow vehicles and commands."),
    h("div", { class: "field" }, h("label", { for: "login-username" }, "Username"), username),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
    error,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(error);
    if (!username.value.trim() || !password.value) {
      replace(error, icon("alert"), " Enter a username and a password.");
      (username.value.trim() ? password : username).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await session.login(username.value.trim(), password.value);
      password.value = "";
      await onSignedIn();
    } catch (failure) {
      replace(error, icon("alert"), ` ${failure.message}`);
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  replace(root, h("div", { class: "center" }, form));
  username.focus();
}
