// Live updates: when what a page shows changed (server-sent events from /changes), the page fetches itself
// again and swaps its content in place, without a reload. Pages work without this script.
(function () {
  var main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var topics = main.getAttribute("data-live").split(" ").filter(Boolean);
  if (!topics.length) return;
  var root = document.querySelector('link[rel="stylesheet"]').getAttribute("href").replace(/\/static\/console\.css$/, "");
  var busy = false, waiting = false;

  function editing() {
    var active = document.activeElement;
    var typing = active && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName) && active.type !== "hidden";
    return typing || main.querySelector("details[open]") !== null;
  }

  function refresh() {
    if (busy || editing()) { waiting = true; return; }
    busy = true; waiting = false;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || editing()) { waiting = true; return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main[data-live]");
        if (!fresh) return;
        // What the operator was just told (a note: "Retrying task …") is shown once by the server: keep it.
        var first = fresh.firstChild;
        main.querySelectorAll(":scope > p.note").forEach(function (note) { fresh.insertBefore(note, first); });
        main.replaceWith(fresh); main = fresh; document.title = fresh.ownerDocument.title || document.title;
      })
      .catch(function () { waiting = true; })
      .then(function () { busy = false; if (waiting && !editing()) refresh(); });
  }

  // A change that came while the operator was typing or had a form open is shown once they are done.
  document.addEventListener("focusout", function () { if (waiting) setTimeout(refresh, 0); });
  document.addEventListener("toggle", function () { if (waiting) refresh(); }, true);

  var source = new EventSource(root + "/changes");
  source.addEventListener("open", function () { document.documentElement.setAttribute("data-listening", "yes"); });
  source.addEventListener("change", function (event) {
    var moved = String(event.data).split(" ");
    if (topics.some(function (t) { return moved.indexOf(t) >= 0; })) refresh();
  });
})();
