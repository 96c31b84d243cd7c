// lifewatch dashboard: reload the page when the store changed (at most every 2 s).
// The page works without this script; it only saves pressing reload.
(function () {
  "use strict";
  var shown = document.body.getAttribute("data-version");
  var live = document.getElementById("live");
  var failures = 0;
  function poll() {
    fetch("/api/changes", { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) { return answer.ok ? answer.json() : Promise.reject(answer.status); })
      .then(function (body) {
        failures = 0;
        if (live) { live.textContent = "live"; }
        if (shown && body.version !== shown) { window.location.reload(); return; }
        setTimeout(poll, 1000);
      })
      .catch(function () {
        failures += 1;
        if (live) { live.textContent = "not updating (server unreachable)"; }
        setTimeout(poll, Math.min(30000, 1000 * Math.pow(2, failures)));
      });
  }
  setTimeout(poll, 1000);
})();
