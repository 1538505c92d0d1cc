/* The alerts page, live: when an incident opens, escalates or resolves (an
 * alert on the live channel), and every 20 s for deliveries and channels,
 * the tables are fetched again and swapped in place.  The markup comes
 * from this hub's own escaped template, parsed inert by DOMParser. */
(function () {
  "use strict";
  var M = window.Monitor;
  var root = document.getElementById("alerts-live");
  var note = document.getElementById("alerts-updated");
  if (!root) return;
  var busy = false, again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
      if (r.status !== 200) throw new Error("alerts: HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("alerts-live");
      if (!fresh) return;
      root.replaceWith(document.importNode(fresh, true));
      root = document.getElementById("alerts-live");
      M.refreshTimes(root);
      if (note) { note.textContent = "updated " + new Date().toLocaleTimeString(); note.title = "Updates live"; }
      window.monitorAlerts.refreshed += 1;
    }).catch(function (e) { if (window.console) console.error(e); }).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  window.monitorAlerts = { refreshed: 0, refresh: refresh };
  M.onAlert(function () { refresh(); });
  M.live(function () { return { kinds: ["alert"] }; }, function () {});
  setInterval(refresh, 20000);
})();
