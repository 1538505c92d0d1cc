/* monitor: what every page shares.  Text from posts is only ever set with
 * textContent: never innerHTML. */
(function () {
  "use strict";
  var M = (window.Monitor = {});
  M.csrf = document.body.getAttribute("data-csrf") || "";

  /* Build an element: M.el("a", {href: u, className: "x", text: "t"}, child...) */
  M.el = function (tag, props) {
    var node = document.createElement(tag);
    props = props || {};
    Object.keys(props).forEach(function (k) {
      var v = props[k];
      if (v === undefined || v === null) return;
      if (k === "text") node.textContent = String(v);
      else if (k === "className") node.className = v;
      else if (k === "title") node.title = String(v);
      else if (k === "href") node.href = v;
      else if (k === "dataset") Object.keys(v).forEach(function (d) { node.dataset[d] = v[d]; });
      else node.setAttribute(k, v);
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  };

  M.clear = function (node) { while (node && node.firstChild) node.removeChild(node.firstChild); return node; };
  M.num = function (n) { return (n === null || n === undefined) ? "–" : Number(n).toLocaleString(); };
  M.pct = function (part, whole) { return whole ? Math.round((100 * part) / whole) + "%" : "–"; };
  M.score = function (c) { return (c === null || c === undefined) ? "" : (c > 0 ? "+" : "") + Number(c).toFixed(2); };
  M.time = function (iso) {
    var d = new Date(iso);
    if (isNaN(d)) return "";
    var today = new Date();
    var sameDay = d.toDateString() === today.toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  };

  /* Only http(s) links are ever made clickable. */
  M.safeUrl = function (u) {
    if (typeof u !== "string" || !u) return null;
    try {
      var url = new URL(u, location.href);
      return (url.protocol === "http:" || url.protocol === "https:") ? url.href : null;
    } catch (e) { return null; }
  };

  M.getJSON = function (url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (r) {
      if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); throw new Error("logged out"); }
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.json();
    });
  };

  M.query = function (params) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) { if (params[k]) q.set(k, params[k]); });
    var s = q.toString();
    return s ? "?" + s : "";
  };

  /* One post as a feed item. */
  M.postCard = function (p, fresh) {
    var label = (p.sentiment && p.sentiment.label) || "neutral";
    var head = M.el("div", { className: "post-head" },
      M.el("strong", { className: "author", text: p.author }),
      M.el("span", { className: "muted", text: (p.source || "") + " · " + M.time(p.created_at) }),
      M.el("span", { className: "score sentiment-badge " + label, text: label + " " + M.score(p.sentiment && p.sentiment.compound) }));
    var text = M.el("p", { className: "post-text", text: p.text });
    var foot = M.el("div", { className: "post-foot" });
    (p.topics || []).forEach(function (t) { foot.appendChild(M.el("span", { className: "chip", text: t })); });
    (p.labels || []).forEach(function (l) { foot.appendChild(M.el("span", { className: "chip label-" + l, text: l.replace("_", " ") })); });
    var link = M.safeUrl(p.url);
    if (link) foot.appendChild(M.el("a", { href: link, target: "_blank", rel: "noopener noreferrer nofollow", text: "open original ↗" }));
    return M.el("li", {
      className: "post " + label + (fresh ? " fresh" : ""),
      dataset: { topics: (p.topics || []).join("\n"), labels: (p.labels || []).join(" "), sentiment: label, source: p.source || "" }
    }, head, text, foot);
  };

  /* An alert from the alert engine, as a toast in the corner (any page). */
  M.toast = function (alert) {
    var box = document.getElementById("toasts");
    if (!box) {
      box = M.el("div", { id: "toasts", className: "toasts", role: "status", "aria-live": "polite" });
      document.body.appendChild(box);
    }
    var incident = (alert && alert.incident) || {};
    var title = [alert && alert.event, alert && alert.topic].filter(Boolean).join(" · ") || "Alert";
    var text = incident.summary || incident.title || incident.message || incident.rule || "";
    var close = M.el("button", { type: "button", className: "toast-close", title: "Dismiss", text: "×" });
    var toast = M.el("div", { className: "toast" }, close, M.el("strong", { text: title }), text ? M.el("p", { text: String(text) }) : null);
    close.addEventListener("click", function () { toast.remove(); });
    box.insertBefore(toast, box.firstChild);
    while (box.children.length > 5) box.removeChild(box.lastChild);
    setTimeout(function () { toast.remove(); }, 30000);
    return toast;
  };

  /* The live channel: reconnects with backoff; subscription() gives the
   * current filters; onEnvelope gets each {type, data}. */
  M.live = function (subscription, onEnvelope) {
    var dot = document.getElementById("live-dot");
    var ws = null, delay = 500, failures = 0, stopped = false;
    function state(s, title) {
      if (!dot) return;
      dot.setAttribute("data-state", s);
      dot.title = "Live channel: " + title;
    }
    function send() {
      if (ws && ws.readyState === 1) ws.send(JSON.stringify(Object.assign({ type: "subscribe" }, subscription())));
    }
    function open() {
      state("connecting", "connecting");
      ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
      ws.onopen = function () { delay = 500; failures = 0; state("open", "connected"); send(); };
      ws.onmessage = function (ev) {
        var frame;
        try { frame = JSON.parse(ev.data); } catch (e) { return; }
        if (!Array.isArray(frame)) return;
        for (var i = 0; i < frame.length; i++) {
          try {
            if (frame[i].type === "alert") M.toast(frame[i].data);
            else onEnvelope(frame[i]);
          } catch (e) { if (window.console) console.error(e); }
        }
      };
      ws.onclose = function (ev) {
        state("closed", "disconnected, retrying");
        if (stopped) return;
        if (ev.code === 4401) { location.href = "/login"; return; }
        failures += 1;
        if (failures === 3) M.getJSON("/ui/sources.json").catch(function () {});
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
    return { resubscribe: send, close: function () { stopped = true; if (ws) ws.close(); } };
  };

  /* Forms that ask first: <form data-confirm="Sure?">. */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) ev.preventDefault();
  });
})();
