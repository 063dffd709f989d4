// The directory's viewer counts move live: one small request every 10 s for all tiles.
(function () {
  "use strict";
  const root = document.getElementById("directory");
  if (!root) return;
  function refresh() {
    fetch(root.dataset.liveUrl, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (entries) {
        const counts = {};
        entries.forEach(function (entry) { counts[entry.slug] = entry.viewers; });
        document.querySelectorAll("[data-viewers]").forEach(function (node) {
          const slug = node.dataset.viewers;
          if (slug in counts) node.textContent = String(counts[slug]);
          else node.closest(".tile").classList.add("ended");
        });
      }).catch(function () {});
  }
  window.goliveDirectory = { refresh: refresh };
  setInterval(refresh, 10000);
})();
