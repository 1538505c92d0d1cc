/* Sources: states pushed every few seconds over the live channel. */
(function () {
  "use strict";
  var M = window.Monitor;
  var body = document.querySelector("#sources-table tbody");
  var queue = document.getElementById("queue-depth");

  function cell(row, field, text) {
    var td = row.querySelector('[data-field="' + field + '"]');
    if (td) td.textContent = text;
    return td;
  }

  function update(s) {
    var row = null;
    Array.prototype.forEach.call(body.querySelectorAll("tr[data-source]"), function (tr) {
      if (tr.getAttribute("data-source") === s.name) row = tr;
    });
    if (!row) return;
    var shown = s.note ? "waiting" : String(s.state);
    var state = cell(row, "state", shown);
    if (state) state.className = "state state-" + shown.replace(/ /g, "-");
    cell(row, "hub", s.hub || "");
    cell(row, "posts", M.num(s.posts));
    cell(row, "posts_per_minute", s.posts_per_minute === undefined ? "" : M.num(s.posts_per_minute));
    cell(row, "malformed", M.num(s.malformed));
    var last = row.querySelector('[data-field="last_post_at"]');
    if (last) {
      M.clear(last);
      last.appendChild(s.last_post_at ? M.stamp(s.last_post_at) : document.createTextNode("never"));
    }
    var details = row.querySelector('[data-field="details"]');
    if (details) {
      M.clear(details);
      // A note explains a normal state (waiting for a file); an error is a problem.
      if (s.note) details.appendChild(M.el("span", { className: "note-text", text: s.note }));
      else if (s.last_error) details.appendChild(M.el("span", { className: "error-text", text: s.last_error }));
    }
  }

  /* Whatever the nodes part reports: a list of records as a table. */
  var nodesBox = document.getElementById("nodes");
  function nodes(value) {
    if (!nodesBox || value === null || value === undefined) return;
    var rows = Array.isArray(value) ? value : (Array.isArray(value.nodes) ? value.nodes : null);
    if (!rows) return;
    M.clear(nodesBox);
    if (!rows.length) {
      nodesBox.appendChild(M.el("p", { className: "muted", text: "No analysis node is connected: posts are analysed by the hub itself." }));
      return;
    }
    var keys = [];
    rows.forEach(function (r) { Object.keys(r).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
    var head = M.el("tr");
    keys.forEach(function (k) { head.appendChild(M.el("th", { text: k.replace(/_/g, " ") })); });
    var body = M.el("tbody");
    rows.forEach(function (r) {
      var tr = M.el("tr");
      keys.forEach(function (k) {
        var v = r[k];
        tr.appendChild(M.el("td", { text: v === null || v === undefined ? "" : (typeof v === "object" ? JSON.stringify(v) : String(v)) }));
      });
      body.appendChild(tr);
    });
    nodesBox.appendChild(M.el("table", { className: "data" }, M.el("thead", {}, head), body));
  }

  M.live(function () { return { kinds: ["source", "alert"] }; }, function (env) {
    if (env.type !== "source") return;
    (env.data.sources || []).forEach(update);
    nodes(env.data.nodes);
    if (queue && env.data.queue !== undefined && env.data.queue !== null) queue.textContent = M.num(env.data.queue);
  });
})();
