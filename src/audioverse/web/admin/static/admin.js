// The admin's one script of our own, loaded after sqladmin's (the policy allows no inline code).
// It hands the session's CSRF token to sqladmin's forms and its delete request, which do not know of it,
// and reloads a status page while a job it shows is running.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";

  function addToken(form) {
    if ((form.getAttribute("method") || "GET").toUpperCase() !== "POST") return;
    if (form.querySelector('input[name="csrftoken"]')) return;
    var field = document.createElement("input");
    field.type = "hidden";
    field.name = "csrftoken";
    field.value = token;
    // First, so a multipart form carries it before any file.
    form.insertBefore(field, form.firstChild);
  }

  document.querySelectorAll("form").forEach(addToken);
  // Forms a modal or select2 adds later get it when they are sent.
  document.addEventListener("submit", function (event) { addToken(event.target); }, true);

  if (window.jQuery) {
    window.jQuery.ajaxSetup({
      beforeSend: function (xhr, settings) {
        if (!/^(GET|HEAD|OPTIONS)$/i.test(settings.type)) xhr.setRequestHeader("X-CSRFToken", token);
      },
    });
  }

  // sqladmin's icon-only button to clear a list's search has no name for screen readers.
  var reset = document.getElementById("search-reset");
  if (reset && !reset.getAttribute("aria-label")) reset.setAttribute("aria-label", "Clear the search");

  var running = document.querySelector('[data-reindex-state="running"], [data-rebuild-state="running"]');
  if (running) window.setTimeout(function () { window.location.reload(); }, 1500);
})();
