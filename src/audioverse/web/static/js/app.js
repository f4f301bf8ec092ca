// Starts the listener app: routes, the signed-in state of the navigation, the search box's suggestions.

import { api, isSignedIn, logout, onAuthChange, refresh } from "./api.js";
import { forgotView, loginView, registerView, resetView, verifyView } from "./auth.js";
import { clear, h, say, toast } from "./dom.js";
import { player } from "./player.js";
import { focusMain, navigate, otherwise, render, route } from "./router.js";
import { bookView, favoritesView, historyView, homeView, libraryView, notFoundView, profileView, searchView } from "./views.js";

route("/", homeView);
route("/search", searchView);
route("/books/:id", bookView);
route("/library", libraryView);
route("/favorites", favoritesView);
route("/history", historyView);
route("/profile", profileView);
route("/login", loginView);
route("/register", registerView);
route("/verify-email", verifyView);
route("/forgot-password", forgotView);
route("/reset-password", resetView);
otherwise(notFoundView);

function showAuthState(signedIn) {
  for (const item of document.querySelectorAll("[data-auth]")) {
    item.hidden = (item.dataset.auth === "in") !== signedIn;
  }
}

onAuthChange((signedIn) => {
  showAuthState(signedIn);
  if (!signedIn) player.close();
});

document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  say("Logged out");
  await navigate("/");
  focusMain();
});

// Search as you type: a combobox whose listbox holds books, authors and narrators.
const form = document.getElementById("search-form");
const input = document.getElementById("search-input");
const list = document.getElementById("suggestions");
let suggestTimer = null;
let suggestAbort = null;
let active = -1;

function closeSuggestions() {
  list.hidden = true;
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
  active = -1;
}

function options() {
  return [...list.querySelectorAll("[role=option]")];
}

function highlight(index) {
  const all = options();
  if (!all.length) return;
  active = (index + all.length) % all.length;
  all.forEach((option, i) => option.setAttribute("aria-selected", String(i === active)));
  input.setAttribute("aria-activedescendant", all[active].id);
}

async function suggest() {
  const q = input.value.trim();
  if (q.length < 2) return closeSuggestions();
  suggestAbort?.abort();
  suggestAbort = new AbortController();
  let found;
  try {
    found = await api(`/search/suggest/?q=${encodeURIComponent(q)}`, { auth: false, signal: suggestAbort.signal });
  } catch {
    return;
  }
  clear(list);
  const add = (kind, label, href) =>
    list.append(h("li", { role: "option", id: `suggestion-${list.children.length}`, "aria-selected": "false", "data-href": href },
      h("span", { class: "kind" }, kind), label));
  for (const book of found.audiobooks) add("Book", book.title, `/books/${book.id}`);
  for (const author of found.authors) add("Author", author.name, `/search?q=${encodeURIComponent(author.name)}`);
  for (const narrator of found.narrators) add("Narrator", narrator.name, `/search?q=${encodeURIComponent(narrator.name)}`);
  const count = list.children.length;
  list.hidden = count === 0;
  input.setAttribute("aria-expanded", String(count > 0));
  say(count ? `${count} suggestions` : "No suggestions");
}

function go(href) {
  closeSuggestions();
  navigate(href).then(focusMain);
}

input.addEventListener("input", () => {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(suggest, 150);
});
input.addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" && !list.hidden) {
    event.preventDefault();
    highlight(active + 1);
  } else if (event.key === "ArrowUp" && !list.hidden) {
    event.preventDefault();
    highlight(active - 1);
  } else if (event.key === "Escape") {
    closeSuggestions();
  } else if (event.key === "Enter" && active >= 0 && !list.hidden) {
    event.preventDefault();
    go(options()[active].dataset.href);
  }
});
input.addEventListener("blur", () => setTimeout(closeSuggestions, 200));
list.addEventListener("mousedown", (event) => {
  const option = event.target.closest("[role=option]");
  if (option) {
    event.preventDefault();
    go(option.dataset.href);
  }
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = input.value.trim();
  go(`/search?q=${encodeURIComponent(q)}`);
});

async function start() {
  showAuthState(isSignedIn());
  const params = new URLSearchParams(location.search);
  if (location.pathname === "/search") input.value = params.get("q") || "";
  // A reload keeps the refresh token only: trade it for an access token before the first view asks.
  if (isSignedIn()) await refresh();
  showAuthState(isSignedIn());
  try {
    await render();
  } catch (error) {
    toast(error.message || "Something went wrong");
  }
  if (isSignedIn()) await player.restore();
}

window.addEventListener("unhandledrejection", (event) => {
  toast((event.reason && event.reason.message) || "Something went wrong");
});

start();
