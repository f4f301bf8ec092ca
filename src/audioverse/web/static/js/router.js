// Client-side routes on the History API: same-origin links with data-link change the view without a reload.

const routes = [];
let notFound = null;

export function route(pattern, view) {
  const names = [];
  const regex = new RegExp(
    `^${pattern.replace(/\/:(\w+)/g, (_, name) => {
      names.push(name);
      return "/([^/]+)";
    })}/?$`,
  );
  routes.push({ regex, names, view });
}

export function otherwise(view) {
  notFound = view;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  return render();
}

let renderCount = 0;

export async function render() {
  const number = ++renderCount;
  const url = new URL(location.href);
  const main = document.getElementById("main");
  for (const { regex, names, view } of routes) {
    const match = regex.exec(url.pathname);
    if (!match) continue;
    const params = Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(match[i + 1])]));
    const content = await view({ params, query: url.searchParams, isCurrent: () => number === renderCount });
    if (number !== renderCount) return; // a newer navigation drew its view meanwhile
    main.replaceChildren(content);
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · AudioVerse` : "AudioVerse";
    markCurrentLink(url.pathname);
    return;
  }
  main.replaceChildren(await notFound());
}

function markCurrentLink(pathname) {
  for (const link of document.querySelectorAll(".nav a")) {
    if (link.getAttribute("href") === pathname) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

export function focusMain() {
  const main = document.getElementById("main");
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  navigate(url.pathname + url.search).then(focusMain);
});

window.addEventListener("popstate", () => render());
