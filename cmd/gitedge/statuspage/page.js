// Refreshes the page's content every 5 seconds from the node, in place
// (no scroll jump), while the tab is visible and not paused; says so
// when the node stops answering.
(function () {
  var paused = false, btn = document.getElementById("pause");
  // Without this script the page reloads itself (noscript meta refresh).
  btn.hidden = false;
  document.getElementById("refresh").textContent = "refreshes every 5s";
  btn.addEventListener("click", function () {
    paused = !paused;
    btn.textContent = paused ? "resume" : "pause";
    document.getElementById("refresh").textContent = paused ? "paused" : "refreshes every 5s";
  });
  function refresh() {
    if (paused || document.hidden) return;
    fetch(location.pathname, {cache: "no-store"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.text();
    }).then(function (text) {
      var doc = new DOMParser().parseFromString(text, "text/html");
      var next = doc.getElementById("main");
      if (!next) throw new Error("no page");
      document.title = doc.title;
      var icon = doc.querySelector("link[rel=icon]"), cur = document.querySelector("link[rel=icon]");
      if (icon && cur) cur.href = icon.href; // green or red in the tab
      // Keep the pause button and its state.
      next.querySelector("#pause").replaceWith(btn);
      next.querySelector("#refresh").textContent = document.getElementById("refresh").textContent;
      document.getElementById("main").replaceWith(next);
    }).catch(function () {
      document.getElementById("stale").hidden = false;
    });
  }
  setInterval(refresh, 5000);
})();
