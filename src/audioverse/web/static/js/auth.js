// Sign-in pages: log in, register, verify the email (the link from the mail), forgotten password and reset.

import { api, login } from "./api.js";
import { errorBox, field, h, say, showError } from "./dom.js";
import { focusMain, navigate } from "./router.js";

function form(title, fields, submitLabel, onSubmit, after = []) {
  const errors = errorBox();
  const submit = h("button", { type: "submit", class: "button primary" }, submitLabel);
  const element = h("form", { class: "card form", novalidate: true }, errors, fields, submit, after);
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.hidden = true;
    submit.disabled = true;
    try {
      await onSubmit(element);
    } catch (error) {
      showError(errors, error);
      say(error.message);
    } finally {
      submit.disabled = false;
    }
  });
  return h("section", { class: "narrow" }, h("h1", {}, title), element);
}

export function loginView({ query }) {
  const next = query.get("next") || "/";
  return form(
    "Log in",
    [
      field("Username or email", h("input", { name: "username", autocomplete: "username", required: true })),
      field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    ],
    "Log in",
    async (element) => {
      await login(element.elements.username.value.trim(), element.elements.password.value);
      say("Logged in");
      await navigate(next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
      focusMain();
    },
    h("p", {}, h("a", { href: "/forgot-password", "data-link": true }, "Forgot your password?"), " · ",
      h("a", { href: "/register", "data-link": true }, "Create an account")),
  );
}

export function registerView() {
  return form(
    "Create an account",
    [
      field("Email", h("input", { name: "email", type: "email", autocomplete: "email", required: true })),
      field("Username", h("input", { name: "username", autocomplete: "username", required: true })),
      field("Password", h("input", { name: "password", type: "password", autocomplete: "new-password", required: true }),
        "At least 8 characters; a long phrase is best."),
    ],
    "Register",
    async (element) => {
      const values = element.elements;
      await api("/auth/register/", {
        method: "POST",
        auth: false,
        body: { email: values.email.value.trim(), username: values.username.value.trim(), password: values.password.value },
      });
      await login(values.username.value.trim(), values.password.value);
      element.replaceWith(
        h("div", { class: "card" },
          h("p", {}, `Welcome! We sent a link to ${values.email.value.trim()} to verify your email.`),
          h("p", {}, "You can listen right away; reviews need a verified email."),
          h("a", { class: "button primary", href: "/", "data-link": true }, "Start listening")),
      );
      say("Account created. Check your email to verify it.");
    },
  );
}

export async function verifyView({ query }) {
  const token = query.get("token");
  const box = h("div", { class: "card", role: "status" });
  if (!token) {
    box.append(h("p", {}, "This link has no token. Open the link from your email again."));
  } else {
    try {
      await api("/auth/verify-email/", { method: "POST", auth: false, body: { token } });
      box.append(h("p", {}, "Your email is verified. Thank you!"),
        h("a", { class: "button primary", href: "/", "data-link": true }, "Go to AudioVerse"));
      // The token has done its job: keep it out of the history.
      history.replaceState(null, "", "/verify-email");
    } catch (error) {
      box.append(h("p", { class: "error-text" }, `This link did not work: ${error.message}`));
    }
  }
  return h("section", { class: "narrow" }, h("h1", {}, "Verify your email"), box);
}

export function forgotView() {
  return form(
    "Reset your password",
    [field("Email", h("input", { name: "email", type: "email", autocomplete: "email", required: true }))],
    "Send reset link",
    async (element) => {
      await api("/auth/password-reset/", { method: "POST", auth: false, body: { email: element.elements.email.value.trim() } });
      element.replaceWith(h("div", { class: "card" }, h("p", {}, "If an account has that email, a reset link is on its way.")));
      say("Reset link sent");
    },
  );
}

export function resetView({ query }) {
  const token = query.get("token") || "";
  return form(
    "Choose a new password",
    [field("New password", h("input", { name: "password", type: "password", autocomplete: "new-password", required: true }))],
    "Set password",
    async (element) => {
      await api("/auth/password-reset/confirm/", {
        method: "POST",
        auth: false,
        body: { token, new_password: element.elements.password.value },
      });
      history.replaceState(null, "", "/reset-password");
      element.replaceWith(h("div", { class: "card" }, h("p", {}, "Your password is changed. "),
        h("a", { class: "button primary", href: "/login", "data-link": true }, "Log in")));
      say("Password changed");
    },
  );
}
