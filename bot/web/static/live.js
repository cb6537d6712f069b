// Live updates: reload the page when a card or message changed (pages work without this script).
(function () {
  if (!window.EventSource || document.querySelector("textarea:focus")) return;
  var root = document.querySelector('link[rel="stylesheet"]').getAttribute("href").replace(/\/static\/console\.css$/, "");
  var source = new EventSource(root + "/live");
  source.addEventListener("change", function () {
    var editing = document.activeElement && document.activeElement.tagName === "TEXTAREA";
    var open = document.querySelector("details[open]");
    if (!editing && !open) { source.close(); window.location.reload(); }
  });
})();
