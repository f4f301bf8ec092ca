// The API client: bearer tokens, one refresh on a 401, problem+json errors as ApiError.
//
// The access token lives only in memory (a script injected later cannot read it from storage); the
// refresh token is in localStorage so a reload or a new tab stays signed in. Refresh tokens rotate and a
// reused one revokes the whole family, so every refresh runs under a Web Lock shared by this origin's
// tabs and reads the newest token from storage inside it: two tabs never present the same token.

const REFRESH_KEY = "audioverse.refresh_token";
const LOCK_NAME = "audioverse.refresh";

let accessToken = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `Request failed (${status})`);
    this.status = status;
    this.problem = problem || {};
  }

  fieldErrors() {
    return this.problem.errors || [];
  }
}

export function onAuthChange(listener) {
  listeners.add(listener);
}

function announce() {
  for (const listener of listeners) listener(isSignedIn());
}

export function isSignedIn() {
  return accessToken !== null || localStorage.getItem(REFRESH_KEY) !== null;
}

function store(pair) {
  accessToken = pair.access_token;
  localStorage.setItem(REFRESH_KEY, pair.refresh_token);
}

function forget() {
  const changed = isSignedIn();
  accessToken = null;
  localStorage.removeItem(REFRESH_KEY);
  if (changed) announce();
}

async function withLock(work) {
  if (navigator.locks) return navigator.locks.request(LOCK_NAME, work);
  return work();
}

async function readBody(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) return response.json();
  return response.text();
}

let refreshing = null;

// A new access token from the stored refresh token; false when the session is gone.
export function refresh() {
  refreshing ??= withLock(async () => {
    const token = localStorage.getItem(REFRESH_KEY);
    if (!token) return false;
    const response = await fetch("/api/auth/refresh/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: token }),
    });
    if (!response.ok) {
      if (response.status === 401) forget();
      return false;
    }
    store(await response.json());
    return true;
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function headersFor(body, withAuth) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (withAuth && accessToken) headers.Authorization = `Bearer ${accessToken}`;
  return headers;
}

// Calls the API at ``path`` (under /api); JSON in and out; throws ApiError on a non-2xx answer.
export async function api(path, { method = "GET", body, signal, keepalive = false, auth = true } = {}) {
  if (auth && accessToken === null && localStorage.getItem(REFRESH_KEY)) await refresh();
  const send = () =>
    fetch(`/api${path}`, {
      method,
      signal,
      keepalive,
      headers: headersFor(body, auth),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let response = await send();
  if (response.status === 401 && auth && localStorage.getItem(REFRESH_KEY)) {
    if (await refresh()) response = await send();
  }
  const payload = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, typeof payload === "object" ? payload : null);
  return payload;
}

// A request that must outlive the page (pagehide): keepalive fetch with the bearer header, no retry.
export function sendKeepalive(path, body) {
  if (!accessToken) return;
  fetch(`/api${path}`, {
    method: "POST",
    keepalive: true,
    headers: headersFor(body, true),
    body: JSON.stringify(body),
  }).catch(() => {});
}

export async function login(usernameOrEmail, password) {
  const pair = await api("/auth/login/", {
    method: "POST",
    auth: false,
    body: { username_or_email: usernameOrEmail, password },
  });
  store(pair);
  announce();
}

export async function logout() {
  const token = localStorage.getItem(REFRESH_KEY);
  try {
    if (token) await api("/auth/logout/", { method: "POST", auth: false, body: { refresh_token: token } });
  } finally {
    forget();
  }
}

// Another tab logging out (or in) removes or sets the stored token: follow it.
window.addEventListener("storage", (event) => {
  if (event.key !== REFRESH_KEY) return;
  if (event.newValue === null) {
    accessToken = null;
    announce();
  } else if (event.oldValue === null) {
    announce();
  }
});
