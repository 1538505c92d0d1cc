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
  /* 1234567 as "1.2M": for figures in small cards (the exact one goes in a title). */
  var COMPACT = window.Intl ? new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }) : null;
  M.compact = function (n) {
    if (n === null || n === undefined) return "–";
    return (COMPACT && Math.abs(n) >= 100000) ? COMPACT.format(n) : M.num(n);
  };
  M.pct = function (part, whole) { return whole ? Math.round((100 * part) / whole) + "%" : "–"; };
  M.score = function (c) {
    if (c === null || c === undefined) return "";
    var text = Math.abs(c) < 0.005 ? "0.00" : Number(c).toFixed(2);
    return (c >= 0.005 ? "+" : "") + text;
  };
  M.time = function (iso) {
    var d = new Date(iso);
    if (isNaN(d)) return "";
    var today = new Date();
    var sameDay = d.toDateString() === today.toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  };

  /* "3 min ago", "in 2 h", "yesterday": a time relative to now. */
  var RELATIVE = (window.Intl && Intl.RelativeTimeFormat) ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var STEPS = [[60, "second"], [3600, "minute", 60], [86400, "hour", 3600], [7 * 86400, "day", 86400], [30 * 86400, "week", 7 * 86400], [365 * 86400, "month", 30 * 86400], [Infinity, "year", 365 * 86400]];
  M.ago = function (iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) return "";
    var s = (t - Date.now()) / 1000, a = Math.abs(s);
    if (a < 45) return s > 5 ? "in a few seconds" : "just now";
    for (var i = 1; i < STEPS.length; i++) {
      if (a < STEPS[i][0]) {
        var n = Math.round(s / STEPS[i][2]);
        return RELATIVE ? RELATIVE.format(n, STEPS[i][1]) : Math.abs(n) + " " + STEPS[i][1] + "s " + (n < 0 ? "ago" : "from now");
      }
    }
    return new Date(t).toLocaleString();
  };
  /* The exact time in the browser's time zone, for a title. */
  M.exact = function (iso) {
    var d = new Date(iso);
    if (isNaN(d)) return "";
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
  };
  /* A <time> that reads "5 min ago" and shows the exact local time on hover. */
  M.stamp = function (iso) {
    var node = M.el("time", { datetime: iso, className: "ago" });
    M.refreshTime(node);
    return node;
  };
  M.refreshTime = function (node) {
    var iso = node.getAttribute("datetime");
    var text = M.ago(iso);
    if (!text) return;
    node.textContent = text;
    node.title = M.exact(iso);
  };
  /* Every <time class="ago"> on the page, now and every 30 s. */
  M.refreshTimes = function (root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("time.ago[datetime]"), M.refreshTime);
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
      M.el("span", { className: "muted" }, (p.source || "") + " · ", M.stamp(p.created_at)),
      M.el("span", { className: "score sentiment-badge " + label, text: label + " " + M.score(p.sentiment && p.sentiment.compound) }));
    var text = M.el("p", { className: "post-text", text: p.text });
    var foot = M.el("div", { className: "post-foot" });
    (p.topics || []).forEach(function (t) { foot.appendChild(M.el("span", { className: "chip", text: t })); });
    var labels = M.el("span", { className: "post-labels" });
    (p.labels || []).forEach(function (l) { labels.appendChild(M.el("span", { className: "chip label-" + l, text: l.replace("_", " ") })); });
    foot.appendChild(labels);
    var link = M.safeUrl(p.url);
    if (link) foot.appendChild(M.el("a", { href: link, target: "_blank", rel: "noopener noreferrer nofollow", text: "open original ↗" }));
    return M.el("li", {
      className: "post " + label + (fresh ? " fresh" : ""),
      dataset: { topics: (p.topics || []).join("\n"), labels: (p.labels || []).join(" "), sentiment: label, source: p.source || "", postId: p.id || "", by: (p.sentiment && p.sentiment.by) || "" }
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
    var close = M.el("button", { type: "button", className: "toast-close", title: "Dismiss", "aria-label": "Dismiss", text: "×" });
    var severity = incident.severity || (alert && alert.severity) || "";
    var toast = M.el("div", { className: "toast" + (severity ? " severity-" + severity : "") },
      M.el("div", { className: "toast-head" }, M.el("strong", { className: "toast-title", text: title }), close),
      text ? M.el("p", { text: String(text) }) : null,
      // Why it fired (the explanation's first line), as text.
      alert && alert.why && alert.why.length ? M.el("p", { className: "toast-why", text: String(alert.why[0]) }) : null);
    close.addEventListener("click", function () { toast.remove(); });
    box.insertBefore(toast, box.firstChild);
    while (box.children.length > 5) box.removeChild(box.lastChild);
    setTimeout(function () { toast.remove(); }, 30000);
    return toast;
  };

  /* Pages that want to hear of alerts besides the toast. */
  var alertListeners = [];
  M.onAlert = function (listener) { alertListeners.push(listener); };

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
            if (frame[i].type === "alert") {
              M.toast(frame[i].data);
              for (var j = 0; j < alertListeners.length; j++) alertListeners[j](frame[i].data);
            }
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
    return {
      resubscribe: send,
      isOpen: function () { return !!ws && ws.readyState === 1; },
      close: function () { stopped = true; if (ws) ws.close(); }
    };
  };

  /* On a phone the navigation folds behind a menu button. */
  var menu = document.getElementById("menu-button");
  if (menu) {
    menu.addEventListener("click", function () {
      var open = document.body.classList.toggle("menu-open");
      menu.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  /* Copy buttons: <button data-copy="element-id">. */
  document.addEventListener("click", function (ev) {
    var button = ev.target && ev.target.closest && ev.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    function done(ok) {
      button.textContent = ok ? "Copied" : "Select and copy by hand";
      setTimeout(function () { button.textContent = "Copy"; }, 2500);
    }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    else fallback();
  });

  M.refreshTimes();
  setInterval(function () { M.refreshTimes(); }, 30000);

  /* Forms that ask first: <form data-confirm="Sure?">. */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) ev.preventDefault();
  });
})();
