// The listener's pages: home shelves, search results, a book with its player controls, library, profile.

import { api, ApiError, isSignedIn } from "./api.js";
import { listeningChart } from "./chart.js";
import { clear, clock, cover, duration, errorBox, field, h, marked, names, say, showError, stars, toast } from "./dom.js";
import { player } from "./player.js";
import { navigate } from "./router.js";

const REASONS = {
  listened_with: (reason) => `Listeners of ${reason.title || "a book you played"} also enjoyed`,
  same_author: (reason) => `Same author as ${reason.title || "a book you played"}`,
  same_narrator: (reason) => `Same narrator as ${reason.title || "a book you played"}`,
  same_series: (reason) => `Next in the series of ${reason.title || "a book you played"}`,
  genre: (reason) => `Popular in ${reason.genre || "a genre you like"}`,
  popular: () => "Popular with listeners",
};

function bookCard(book, { note, progress } = {}) {
  const percent = progress && book.duration_seconds ? Math.round((100 * progress.position_seconds) / book.duration_seconds) : null;
  const meter = percent === null ? null : h("progress", { max: 100, value: percent, "aria-label": `${percent}% listened` });
  return h("li", { class: "book-card" },
    h("a", { href: `/books/${book.id}`, "data-link": true, class: "book-link" },
      cover(book),
      h("span", { class: "book-title" }, book.title)),
    h("span", { class: "book-meta" }, names(book.authors)),
    meter,
    note ? h("span", { class: "book-note" }, note) : null);
}

function shelf(title, items, empty) {
  const id = `shelf-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { class: "shelf", "aria-labelledby": id },
    h("h2", { id }, title),
    items.length ? h("ul", { class: "book-row" }, items) : h("p", { class: "muted" }, empty));
}

async function safely(promise, fallback) {
  try {
    return await promise;
  } catch {
    return fallback;
  }
}

export async function homeView() {
  const signedIn = isSignedIn();
  const [current, recommended, popular, fresh] = await Promise.all([
    signedIn ? safely(api("/listening/current/?limit=10"), { items: [] }) : { items: [] },
    safely(api("/audiobooks/recommended/?limit=12"), { items: [] }),
    safely(api("/audiobooks/?sort=-play_count&limit=12"), { items: [] }),
    safely(api("/audiobooks/?sort=-created_at&limit=12"), { items: [] }),
  ]);
  return h("div", { class: "page" },
    h("h1", { class: "visually-hidden" }, "Home"),
    signedIn ? shelf("Continue listening", current.items.map((item) => bookCard(item.audiobook, { progress: item.progress })),
      "Nothing in progress. Pick a book below.") : h("section", { class: "card hero" },
      h("h2", {}, "Audiobooks for every moment"),
      h("p", {}, "Log in to keep your place on every device, build a library and get recommendations."),
      h("a", { class: "button primary", href: "/login", "data-link": true }, "Log in"), " ",
      h("a", { class: "button", href: "/register", "data-link": true }, "Register")),
    shelf(signedIn ? "Recommended for you" : "Recommended",
      recommended.items.map((item) => bookCard(item.audiobook, { note: (REASONS[item.reason.kind] || REASONS.popular)(item.reason) })),
      "No recommendations yet."),
    shelf("Popular", popular.items.map((book) => bookCard(book)), "No books yet."),
    shelf("New", fresh.items.map((book) => bookCard(book)), "No books yet."));
}

const FILTERS = [
  { name: "genre", facet: "genres", label: "Genre" },
  { name: "language", facet: "languages", label: "Language" },
  { name: "duration", facet: "duration", label: "Duration" },
];
let genreNames = null;
const languageNames = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });

function languageName(code) {
  try {
    return languageNames.of(code) || code;
  } catch {
    return code; // not a language tag Intl knows
  }
}

// What a facet value reads as: genre slugs by their names, language codes by the language's name.
async function facetLabels() {
  genreNames ??= safely(api("/genres/", { auth: false }), [])
    .then((genres) => new Map((Array.isArray(genres) ? genres : []).map((genre) => [genre.slug, genre.name])));
  const genres = await genreNames;
  return {
    genre: (value) => genres.get(value) || value,
    language: languageName,
    duration: (value) => value.replace("h", " h").replace("<", "under ").replace(">", "over "),
  };
}
const DURATIONS = { "<1h": [null, 3600], "1-3h": [3600, 10800], "3-6h": [10800, 21600], "6-10h": [21600, 36000], "10-20h": [36000, 72000], ">20h": [72000, null] };

export async function searchView({ query }) {
  const q = query.get("q") || "";
  const params = new URLSearchParams({ q, limit: "20", facets: "genres,languages,duration" });
  for (const name of ["genre", "language", "sort"]) if (query.get(name)) params.set(name, query.get(name));
  const bucket = DURATIONS[query.get("duration")];
  if (bucket) {
    if (bucket[0] !== null) params.set("duration_min", String(bucket[0]));
    if (bucket[1] !== null) params.set("duration_max", String(bucket[1]));
  }
  const errors = errorBox();
  let page = { items: [], total: 0, facets: {} };
  const labels = facetLabels();
  try {
    page = await api(`/audiobooks/search/?${params}`, { auth: false });
  } catch (error) {
    showError(errors, error);
  }
  const label = await labels;
  const filters = h("form", { class: "filters", "aria-label": "Filters" }, h("input", { type: "hidden", name: "q", value: q }));
  for (const filter of FILTERS) {
    const select = h("select", { name: filter.name }, h("option", { value: "" }, "Any"));
    for (const [value, count] of Object.entries(page.facets[filter.facet] || {})) {
      select.append(h("option", { value, selected: query.get(filter.name) === value }, `${label[filter.name](value)} (${count})`));
    }
    if (query.get(filter.name) && !select.value) {
      select.append(h("option", { value: query.get(filter.name), selected: true }, label[filter.name](query.get(filter.name))));
    }
    filters.append(field(filter.label, select));
  }
  filters.append(h("button", { type: "submit", class: "button small" }, "Apply"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(filters)) if (value) next.set(name, value);
    navigate(`/search?${next}`);
  });
  const results = h("ol", { class: "results" }, page.items.map((item) => h("li", { class: "result" },
    h("a", { href: `/books/${item.id}`, "data-link": true, class: "result-cover", tabindex: "-1", "aria-hidden": "true" }, cover(item, "small")),
    h("div", {},
      h("h2", { class: "result-title" }, h("a", { href: `/books/${item.id}`, "data-link": true }, marked(item.highlights.title || item.title))),
      h("p", { class: "book-meta" }, "by ", marked((item.highlights.authors.length ? item.highlights.authors : item.authors.map((a) => a.name)).join(", ")),
        " · ", duration(item.duration_seconds), " · ", languageName(item.language)),
      item.highlights.description ? h("p", { class: "snippet" }, marked(item.highlights.description)) : null))));
  const summary = `${page.total} ${page.total === 1 ? "result" : "results"}${q ? ` for “${q}”` : ""}`;
  say(summary);
  return h("div", { class: "page search-page" },
    h("h1", {}, q ? `Search: ${q}` : "Browse"),
    errors,
    h("p", { class: "muted" }, summary),
    h("div", { class: "search-layout" }, filters, page.items.length ? results : h("p", {}, "No books match. Try fewer words or other filters.")));
}

let markChapters = () => {};
player.addEventListener("chapter", () => markChapters());
player.addEventListener("loaded", () => markChapters());

function chapterList(book, chapters) {
  const list = h("ol", { class: "chapters" });
  const mark = () => {
    const current = player.isCurrent(book.id) ? player.chapterIndexAt(player.position) : -1;
    list.querySelectorAll("button").forEach((button, index) => {
      if (index === current) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    });
  };
  for (const chapter of chapters) {
    list.append(h("li", {}, h("button", {
      type: "button",
      class: "chapter",
      onclick: () => listen(book, { at: chapter.start_time_seconds }),
    }, h("span", {}, chapter.title), h("span", { class: "time" }, clock(chapter.start_time_seconds)))));
  }
  markChapters = mark;
  mark();
  return list;
}

async function listen(book, { at = null } = {}) {
  if (!isSignedIn()) {
    navigate(`/login?next=/books/${book.id}`);
    return;
  }
  try {
    await player.load(book, { play: true, at });
  } catch (error) {
    toast(error.message);
  }
}

function reviewList(reviews, me) {
  return h("ul", { class: "reviews" }, reviews.map((review) => {
    const helpful = h("button", { type: "button", class: "button small", "aria-pressed": "false" },
      `Helpful (${review.helpful_count || 0})`);
    helpful.addEventListener("click", async () => {
      const voted = helpful.getAttribute("aria-pressed") === "true";
      try {
        await api(`/reviews/${review.id}/helpful/`, { method: voted ? "DELETE" : "POST" });
        helpful.setAttribute("aria-pressed", String(!voted));
        review.helpful_count = (review.helpful_count || 0) + (voted ? -1 : 1);
        helpful.textContent = `Helpful (${review.helpful_count})`;
      } catch (error) {
        toast(error.message);
      }
    });
    const mine = me && review.user_id === me.id;
    return h("li", { class: "review card" },
      h("p", {}, stars(review.rating), " ", h("strong", {}, review.username)),
      review.review_text ? h("p", {}, review.review_text) : null,
      me && !mine ? helpful : h("span", { class: "muted" }, `${review.helpful_count || 0} found this helpful`));
  }));
}

function reviewForm(book, onDone) {
  const errors = errorBox();
  const rating = h("select", { name: "rating", required: true },
    [5, 4, 3, 2, 1].map((value) => h("option", { value: String(value) }, `${value} star${value > 1 ? "s" : ""}`)));
  const text = h("textarea", { name: "text", rows: 3, maxlength: 5000 });
  const element = h("form", { class: "card form" }, h("h3", {}, "Write a review"), errors,
    field("Rating", rating), field("Review (optional)", text), h("button", { type: "submit", class: "button primary" }, "Post review"));
  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/audiobooks/${book.id}/reviews/`, { method: "POST", body: { rating: Number(rating.value), review_text: text.value || null } });
      say("Review posted");
      onDone();
    } catch (error) {
      showError(errors, error);
    }
  });
  return element;
}

function bookmarkPanel(book) {
  const list = h("ul", { class: "bookmarks" });
  const section = h("section", { class: "panel", "aria-labelledby": "bookmarks-heading" }, h("h2", { id: "bookmarks-heading" }, "Bookmarks"), list);
  const load = async () => {
    const items = await safely(api(`/audiobooks/${book.id}/bookmarks/`), []);
    clear(list);
    if (!items.length) list.append(h("li", { class: "muted" }, "No bookmarks yet. Use “Bookmark” in the player."));
    for (const mark of items) {
      list.append(h("li", { class: "bookmark" },
        h("button", { type: "button", class: "link-button", onclick: () => listen(book, { at: mark.position_seconds }) },
          `${clock(mark.position_seconds)} ${mark.title}`),
        mark.note ? h("p", { class: "muted" }, mark.note) : null,
        h("button", { type: "button", class: "button small", "aria-label": `Delete bookmark at ${clock(mark.position_seconds)}`, onclick: async () => {
          await api(`/bookmarks/${mark.id}/`, { method: "DELETE" });
          say("Bookmark deleted");
          load();
        } }, "Delete")));
    }
  };
  reloadBookmarks = (bookId) => {
    if (bookId === book.id && section.isConnected) load();
  };
  load();
  return section;
}

let reloadBookmarks = () => {};

// The player's Bookmark button works on every page; the book's page, when shown, lists the new one.
player.addEventListener("bookmark", () => {
  if (!player.book) return;
  const book = player.book;
  const dialog = bookmarkDialog(book, player.position, () => reloadBookmarks(book.id));
  document.body.append(dialog);
  dialog.showModal();
});

function bookmarkDialog(book, position, onSaved) {
  const chapter = player.currentChapter();
  const title = h("input", { name: "title", value: chapter ? chapter.title : "", maxlength: 200 });
  const note = h("textarea", { name: "note", rows: 3, maxlength: 2000 });
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": "bookmark-title" });
  const form = h("form", { method: "dialog", class: "form" },
    h("h2", { id: "bookmark-title" }, `Bookmark at ${clock(position)}`),
    field("Title", title), field("Note", note),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "button primary", value: "save" }, "Save"),
      h("button", { type: "submit", class: "button", value: "cancel" }, "Cancel")));
  dialog.append(form);
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue === "save") {
      try {
        await api(`/audiobooks/${book.id}/bookmarks/`, { method: "POST", body: { position_seconds: position, title: title.value, note: note.value } });
        say("Bookmark saved");
        onSaved();
      } catch (error) {
        toast(error.message);
      }
    }
    dialog.remove();
  });
  return dialog;
}

export async function bookView({ params }) {
  let book;
  try {
    // The address's digits as they are: a number past 2**53 would be rounded to another book's id.
    book = await api(`/audiobooks/${params.id}/`);
  } catch (error) {
    // 422: an id no book can have (past 64 bits); to a reader it is the same missing page.
    if (error instanceof ApiError && (error.status === 404 || error.status === 422)) return notFoundView();
    throw error;
  }
  const id = book.id;
  const signedIn = isSignedIn();
  const [reviews, similar, me, entry] = await Promise.all([
    safely(api(`/audiobooks/${id}/reviews/?limit=10`), { items: [] }),
    safely(api(`/audiobooks/${id}/similar/?limit=8`), { items: [] }),
    signedIn ? safely(api("/users/me/"), null) : null,
    signedIn ? safely(api(`/library/?limit=100`), { items: [] }) : { items: [] },
  ]);
  const inLibrary = entry.items.find((item) => item.audiobook.id === id);
  const listenButton = h("button", { type: "button", class: "button primary", id: "listen", onclick: () => listen(book) },
    signedIn ? "Listen" : "Log in to listen");
  const libraryButton = h("button", { type: "button", class: "button", "aria-pressed": String(Boolean(inLibrary)) },
    inLibrary ? "In your library" : "Add to library");
  libraryButton.addEventListener("click", async () => {
    const has = libraryButton.getAttribute("aria-pressed") === "true";
    await api(`/library/${id}/`, { method: has ? "DELETE" : "POST", body: has ? undefined : {} });
    libraryButton.setAttribute("aria-pressed", String(!has));
    libraryButton.textContent = has ? "Add to library" : "In your library";
    say(has ? "Removed from your library" : "Added to your library");
  });
  const favoriteButton = h("button", { type: "button", class: "button", "aria-pressed": String(Boolean(inLibrary && inLibrary.is_favorite)) },
    inLibrary && inLibrary.is_favorite ? "★ Favourite" : "☆ Favourite");
  favoriteButton.addEventListener("click", async () => {
    const has = favoriteButton.getAttribute("aria-pressed") === "true";
    await api(`/library/${id}/favorite/`, { method: has ? "DELETE" : "POST" });
    favoriteButton.setAttribute("aria-pressed", String(!has));
    favoriteButton.textContent = has ? "☆ Favourite" : "★ Favourite";
    say(has ? "Removed from favourites" : "Marked as favourite");
  });
  const reviewsSection = h("section", { class: "panel", "aria-labelledby": "reviews-heading" },
    h("h2", { id: "reviews-heading" }, `Reviews (${book.total_reviews})`),
    reviews.items.length ? reviewList(reviews.items, me) : h("p", { class: "muted" }, "No reviews yet."));
  if (me && me.is_verified && !reviews.items.some((review) => review.user_id === me.id)) {
    reviewsSection.append(reviewForm(book, () => navigate(`/books/${id}`, { replace: true })));
  } else if (me && !me.is_verified) {
    reviewsSection.append(h("p", { class: "muted" }, "Verify your email to write a review."));
  }
  return h("article", { class: "page book-page" },
    h("div", { class: "book-head" },
      cover(book, "large"),
      h("div", { class: "book-facts" },
        h("h1", {}, book.title),
        book.subtitle ? h("p", { class: "subtitle" }, book.subtitle) : null,
        h("p", {}, "by ", names(book.authors) || "Unknown"),
        book.narrators.length ? h("p", { class: "muted" }, "Narrated by ", names(book.narrators)) : null,
        h("p", {}, stars(book.average_rating), ` ${Number(book.average_rating || 0).toFixed(1)} (${book.total_ratings} ${book.total_ratings === 1 ? "rating" : "ratings"}) · `,
          duration(book.duration_seconds), ` · ${languageName(book.language)}`),
        h("p", { class: "genres" }, book.genres.map((genre) => h("a", { class: "tag", href: `/search?genre=${encodeURIComponent(genre.slug)}`, "data-link": true }, genre.name))),
        h("div", { class: "actions" }, listenButton, signedIn ? libraryButton : null, signedIn ? favoriteButton : null))),
    h("section", { class: "panel", "aria-labelledby": "about-heading" }, h("h2", { id: "about-heading" }, "About"),
      h("p", { class: "description" }, book.description || "No description.")),
    h("section", { class: "panel", "aria-labelledby": "chapters-heading" }, h("h2", { id: "chapters-heading" }, "Chapters"),
      book.chapters.length ? chapterList(book, book.chapters) : h("p", { class: "muted" }, "This book has no chapters.")),
    signedIn ? bookmarkPanel(book) : null,
    reviewsSection,
    similar.items.length ? shelf("Listeners also enjoyed", similar.items.map((item) => bookCard(item.audiobook)), "") : null);
}

function requireSignIn() {
  if (isSignedIn()) return null;
  navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
  return h("p", {}, "Log in to see this page.");
}

function tabs(current) {
  const links = [["/library", "Library"], ["/favorites", "Favourites"], ["/history", "History"]];
  return h("nav", { class: "tabs", "aria-label": "Library sections" }, links.map(([href, label]) =>
    h("a", { href, "data-link": true, class: "tab", "aria-current": href === current ? "page" : undefined }, label)));
}

async function listPage(path, title, current, empty) {
  const redirect = requireSignIn();
  if (redirect) return redirect;
  const page = await safely(api(`${path}?limit=100`), { items: [] });
  const items = page.items.map((item) => bookCard(item.audiobook, { progress: item.progress }));
  return h("div", { class: "page" }, h("h1", {}, title), tabs(current),
    items.length ? h("ul", { class: "book-grid" }, items) : h("p", { class: "muted" }, empty));
}

export const libraryView = () => listPage("/library/", "Your library", "/library", "Your library is empty. Add books from their pages.");
export const favoritesView = () => listPage("/library/favorites/", "Favourites", "/favorites", "No favourites yet.");
export const historyView = () => listPage("/listening/history/", "History", "/history", "Nothing listened to yet.");

export async function profileView() {
  const redirect = requireSignIn();
  if (redirect) return redirect;
  const [me, stats] = await Promise.all([api("/users/me/"), safely(api("/users/me/stats/"), null)]);
  const days = (count) => `${count} ${count === 1 ? "day" : "days"}`;
  const facts = stats ? [
    ["Listening time", duration(stats.total_listening_seconds)],
    ["Books started", stats.audiobooks_started],
    ["Books finished", stats.audiobooks_completed],
    ["Current streak", days(stats.current_streak_days)],
    ["Longest streak", days(stats.longest_streak_days)],
    ["Reviews", stats.reviews_written],
    ["Bookmarks", stats.bookmarks_count],
  ] : [];
  const errors = errorBox();
  const speed = h("select", { name: "speed" }, ["0.5", "0.75", "1", "1.25", "1.5", "2", "2.5", "3"].map((value) =>
    h("option", { value, selected: Number(value) === me.default_playback_speed }, `${value}×`)));
  const bio = h("textarea", { name: "bio", rows: 3, maxlength: 5000 }, me.bio || "");
  const settings = h("form", { class: "card form" }, h("h2", {}, "Settings"), errors,
    field("Default speed", speed), field("About you", bio), h("button", { type: "submit", class: "button primary" }, "Save"));
  settings.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/users/me/", { method: "PATCH", body: { default_playback_speed: Number(speed.value), bio: bio.value } });
      say("Profile saved");
    } catch (error) {
      showError(errors, error);
    }
  });
  return h("div", { class: "page profile-page" },
    h("h1", {}, me.username),
    h("p", { class: "muted" }, me.email, me.is_verified ? " · verified" : " · not verified yet"),
    h("section", { class: "panel", "aria-labelledby": "stats-heading" }, h("h2", { id: "stats-heading" }, "Listening"),
      h("dl", { class: "stats" }, facts.map(([label, value]) => h("div", {}, h("dt", {}, label), h("dd", {}, String(value))))),
      stats ? h("figure", { class: "chart-figure" }, listeningChart(stats.listening_by_day),
        h("figcaption", { class: "muted" }, "Minutes per day, last 30 days")) : null,
      stats && stats.top_genres.length ? h("p", {}, "Top genres: ", stats.top_genres.map((genre) => genre.name).join(", ")) : null,
      stats && stats.top_authors.length ? h("p", {}, "Top authors: ", stats.top_authors.map((author) => author.name).join(", ")) : null),
    settings);
}

export function notFoundView() {
  return h("section", { class: "narrow" }, h("h1", {}, "Page not found"),
    h("p", {}, h("a", { href: "/", "data-link": true }, "Back to the home page")));
}

