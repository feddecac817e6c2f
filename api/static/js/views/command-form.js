// The command form, built from the catalog (GET /api/v1/command-types): one field per
// parameter of the type's JSON schema, the API's validation messages under each field,
// and a confirmation dialog before a destructive command.

import { errorBox, h, icon, messageBox, replace } from "../dom.js";
import { api, ApiError } from "../http.js";
import { rememberStreamUrl } from "../stream.js";

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The schema of one property, looking through `anyOf: [{...}, {type: "null"}]`. */
function resolve(property) {
  if (Array.isArray(property.anyOf)) {
    const concrete = property.anyOf.find((option) => option.type !== "null") ?? {};
    return { ...concrete, ...property, anyOf: undefined };
  }
  return property;
}

function plain(text) {
  return String(text ?? "").replaceAll("`", "");
}

function seconds(ms) {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}

/** Ask before going on; resolves true only when the person confirms. */
export function confirmAction({ title, body, confirmLabel }) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  replace(document.getElementById("confirm-body"), body);
  document.getElementById("confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolveChoice) => {
    dialog.addEventListener("close", () => resolveChoice(dialog.returnValue === "confirm"), {
      once: true,
    });
  });
}

function field(name, property, required, vehicle) {
  const schema = resolve(property);
  const id = `param-${name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const examples = schema.examples ?? (schema.example ? [schema.example] : []);
  const hints = [];
  if (schema.description) hints.push(plain(schema.description));
  const described = examples.length && plain(schema.description).includes(examples[0]);
  if (examples.length && !described) hints.push(`Example: ${examples.join(", ")}.`);
  if (schema.pattern) hints.push(h("span", {}, "Format: ", h("code", {}, schema.pattern)));
  const input = h("input", {
    id,
    name,
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: examples[0] ?? null,
    "aria-required": required ? "true" : null,
    "aria-describedby": `${hintId} ${errorId}`,
    list: name === "ecuAddress" && vehicle?.metadata?.ecus ? `${id}-options` : null,
  });
  const options =
    input.getAttribute("list") &&
    h(
      "datalist",
      { id: `${id}-options` },
      vehicle.metadata.ecus.map((ecu) => h("option", { value: ecu.address }, ecu.name)),
    );
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  const wrapper = h(
    "div",
    { class: "field", dataset: { param: name } },
    h(
      "label",
      { for: id },
      h("code", {}, name),
      required
        ? h("span", { class: "required" }, h("span", { "aria-hidden": "true" }, " *"), " required")
        : h("span", { class: "optional" }, " optional"),
    ),
    input,
    options,
    h("p", { class: "hint", id: hintId }, hints.flatMap((part, i) => (i ? [" ", part] : [part]))),
    error,
  );
  return {
    name,
    input,
    wrapper,
    setError(message) {
      error.hidden = !message;
      replace(error, message ? [icon("alert"), ` ${message}`] : []);
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
  };
}

/**
 * The form for one vehicle. `onSubmitted(command)` gets the 202 body (with websocket_url).
 */
export function commandForm({ vehicle, catalog, user, onSubmitted }) {
  const allowed = catalog.filter((type) => type.roles_allowed.includes(user.role));
  const typeSelect = h("select", { id: "command-type", name: "command_name" });
  for (const type of catalog) {
    const permitted = type.roles_allowed.includes(user.role);
    const suffix = [type.destructive ? "destructive" : null, permitted ? null : `requires ${type.roles_allowed.join(" or ")}`]
      .filter(Boolean)
      .join(", ");
    typeSelect.append(
      h("option", { value: type.name, disabled: !permitted }, suffix ? `${type.name} (${suffix})` : type.name),
    );
  }
  typeSelect.value = allowed[0]?.name ?? "";
  const about = h("div", { class: "type-about", id: "command-type-about" });
  const fieldBox = h("div", { class: "params" });
  const formError = h("div", { class: "form-error", id: "command-form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "button primary", id: "send-command" }, "Send command");
  const form = h(
    "form",
    { class: "command-form", novalidate: true, "aria-labelledby": "command-form-title" },
    h("h2", { id: "command-form-title" }, "Send a command"),
    h(
      "div",
      { class: "field" },
      h("label", { for: "command-type" }, "Command type"),
      typeSelect,
    ),
    about,
    fieldBox,
    formError,
    h("div", { class: "actions" }, submit),
  );
  typeSelect.setAttribute("aria-describedby", "command-type-about");

  let fields = [];
  const current = () => catalog.find((type) => type.name === typeSelect.value);
  function build() {
    const type = current();
    replace(formError);
    if (!type) {
      replace(about, "No command type is available to your role.");
      replace(fieldBox);
      submit.disabled = true;
      return;
    }
    const retry = type.retry?.retry_safe
      ? `retried up to ${type.retry.max_retries} times on a transient fault`
      : "never retried automatically";
    replace(
      about,
      h("p", {}, type.description),
      h("p", { class: "hint" }, `Times out after ${seconds(type.timeout_ms)}; ${retry}.`),
      type.destructive
        ? messageBox("warning", h("strong", {}, "Destructive: "), "this changes the vehicle's state. You will be asked to confirm.")
        : null,
    );
    const schema = type.parameters ?? {};
    const required = new Set(schema.required ?? []);
    fields = Object.entries(schema.properties ?? {}).map(([name, property]) =>
      field(name, property, required.has(name), vehicle),
    );
    replace(fieldBox, fields.map((f) => f.wrapper));
    submit.textContent = type.destructive ? `Send ${type.name}…` : "Send command";
    submit.classList.toggle("danger", Boolean(type.destructive));
    submit.disabled = false;
  }
  typeSelect.addEventListener("change", build);
  build();

  function showError(error) {
    for (const f of fields) f.setError("");
    if (!(error instanceof ApiError)) {
      replace(formError, errorBox(error));
      return;
    }
    if (error.status === 422) {
      const general = [];
      let first = null;
      for (const problem of error.fieldErrors) {
        const [where, group, name] = problem.loc ?? [];
        const target = where === "body" && group === "command_params" && fields.find((f) => f.name === name);
        if (target) {
          target.setError(problem.msg);
          first ??= target;
        } else {
          general.push(`${(problem.loc ?? []).slice(1).join(".") || "request"}: ${problem.msg}`);
        }
      }
      replace(
        formError,
        messageBox(
          "error",
          h("strong", {}, "The service did not accept the command. "),
          first ? "Check the fields marked below." : "",
          general.length ? h("ul", {}, general.map((text) => h("li", {}, text))) : null,
        ),
      );
      first?.input.focus();
      return;
    }
    if (error.status === 403) {
      replace(formError, messageBox("error", h("strong", {}, "Not allowed: "), error.message));
      return;
    }
    if (error.status === 409) {
      const { blocking_command_id: blocking, command_id: rejected, last_seen_at: lastSeen } = error.details;
      const parts = [h("strong", {}, blocking ? "Vehicle busy: " : "Vehicle offline: "), error.message];
      if (blocking) {
        parts.push(" ", h("a", { href: `#/commands/${blocking}` }, "Open the blocking command"), ".");
      }
      if (lastSeen) parts.push(` Last seen ${new Date(lastSeen).toLocaleString()}.`);
      else if (!blocking) parts.push(" It has never reported since it was registered.");
      if (rejected) parts.push(" ", h("a", { href: `#/commands/${rejected}` }, "Open the rejected command"), ".");
      replace(formError, messageBox("error", ...parts));
      return;
    }
    replace(formError, errorBox(error));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const type = current();
    if (!type || submit.disabled) return;
    const params = {};
    for (const f of fields) {
      const value = f.input.value.trim();
      if (value) params[f.name] = value;
    }
    if (type.destructive) {
      const summary = Object.entries(params).map(([k, v]) => `${k}=${v}`).join(", ") || "no parameters";
      const ok = await confirmAction({
        title: `Run ${type.name}?`,
        body: [
          h("p", {}, `${type.description}`),
          h("p", {}, "Vehicle ", h("strong", { class: "mono" }, vehicle.vin), `, ${summary}.`),
          h("p", {}, "This cannot be undone."),
        ],
        confirmLabel: `Yes, run ${type.name}`,
      });
      if (!ok) {
        replace(formError, messageBox("info", `${type.name} was not sent.`));
        submit.focus();
        return;
      }
    }
    replace(formError);
    submit.disabled = true;
    const label = submit.textContent;
    submit.textContent = "Sending…";
    try {
      const { data } = await api("/api/v1/commands", {
        method: "POST",
        headers: { "Idempotency-Key": idempotencyKey() },
        body: { vehicle_id: vehicle.vehicle_id, command_name: type.name, command_params: params },
      });
      rememberStreamUrl(data.websocket_url);
      onSubmitted(data);
    } catch (error) {
      showError(error);
    } finally {
      submit.disabled = false;
      submit.textContent = label;
    }
  });
  return form;
}
