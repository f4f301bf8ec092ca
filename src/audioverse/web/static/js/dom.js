// Small DOM helpers: elements built from data (never HTML strings), times, the live status region.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

// The engine's highlights are escaped HTML with <mark> around matches: keep the text and the marks only.
export function marked(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  const fragment = document.createDocumentFragment();
  for (const node of template.content.childNodes) {
    if (node.nodeName === "MARK") fragment.append(h("mark", {}, node.textContent));
    else fragment.append(document.createTextNode(node.textContent));
  }
  return fragment;
}

export function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds || 0));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

export function duration(seconds) {
  const minutes = Math.round((seconds || 0) / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
}

export function names(people) {
  return (people || []).map((person) => person.name).join(", ");
}

export function say(message) {
  const status = document.getElementById("status");
  status.textContent = "";
  // A change the screen reader notices even when the same message repeats.
  requestAnimationFrame(() => {
    status.textContent = message;
  });
}

let toastTimer = null;

export function toast(message) {
  const element = document.getElementById("toast");
  element.textContent = message;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    element.hidden = true;
  }, 5000);
}

export function cover(book, size = "") {
  if (book.cover_url) {
    return h("img", { class: `cover ${size}`, src: book.cover_url, alt: "", loading: "lazy", width: 160, height: 160 });
  }
  const hue = (book.id * 47) % 360;
  const placeholder = h("div", { class: `cover placeholder ${size}`, "aria-hidden": "true" }, book.title.slice(0, 1));
  // CSSOM, not a style attribute: the policy allows no inline styles.
  placeholder.style.setProperty("--hue", String(hue));
  return placeholder;
}

export function stars(rating) {
  const value = Number(rating || 0);
  return h("span", { class: "stars", "aria-label": `Rated ${value.toFixed(1)} out of 5` },
    "★".repeat(Math.round(value)) + "☆".repeat(5 - Math.round(value)));
}

export function field(labelText, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id }, labelText),
    input,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
}

export function errorBox() {
  return h("div", { class: "error", role: "alert", hidden: true });
}

export function showError(box, error) {
  const messages = [error.message];
  for (const item of (error.fieldErrors && error.fieldErrors()) || []) messages.push(`${item.field}: ${item.message}`);
  clear(box);
  append(box, messages.map((message) => h("p", {}, message)));
  box.hidden = false;
}
