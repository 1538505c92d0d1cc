/* Corrections of posts, for editors: on every element with data-post-id
   (live feed cards, posts search rows, incident samples) a one-click
   sentiment choice and label chips that can be removed or added.  Sent to
   POST /ui/feedback with the page's CSRF token; post text is never parsed
   as HTML here (textContent only). */
(function () {
  "use strict";
  var M = window.Monitor;
  var SENTIMENTS = ["positive", "neutral", "negative"];
  var SYMBOL = { positive: "+", neutral: "=", negative: "−" };
  var LABEL_NAME = /^[a-z][a-z0-9_]{0,39}$/;

  function send(body) {
    return fetch("/ui/feedback", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (b) { if (!r.ok) throw new Error(b.error || ("HTTP " + r.status)); return b; });
    });
  }

  function labelsOf(node) { return (node.dataset.labels || "").split(" ").filter(Boolean); }

  function drawChips(node, box) {
    M.clear(box);
    labelsOf(node).forEach(function (l) {
      var remove = M.el("button", { type: "button", className: "chip-x", title: "Remove the label " + l, "aria-label": "Remove " + l, text: "×" });
      remove.addEventListener("click", function () { correct(node, { labels: obj(l, false) }); });
      box.appendChild(M.el("span", { className: "chip label-" + l }, l.replace(/_/g, " ") + " ", remove));
    });
  }

  function obj(k, v) { var o = {}; o[k] = v; return o; }

  function status(node, text, undo) {
    var s = node.querySelector(".fb-status");
    M.clear(s);
    s.appendChild(document.createTextNode(text));
    if (undo) {
      var u = M.el("button", { type: "button", className: "link fb-undo", text: "undo" });
      u.addEventListener("click", function () {
        send({ post_id: node.dataset.postId, undo: true }).then(function () {
          node.dataset.labels = node.dataset.originalLabels;
          node.dataset.corrected = "";
          paint(node);
          status(node, "correction undone", false);
        }, function (e) { status(node, e.message, false); });
      });
      s.appendChild(document.createTextNode(" · "));
      s.appendChild(u);
    }
  }

  /* A post as its correction f says: its labels, the chosen sentiment, who. */
  function show(node, f, what) {
    var labels = labelsOf(node).filter(function (l) { return f.labels[l] !== false; });
    Object.keys(f.labels).forEach(function (l) { if (f.labels[l] && labels.indexOf(l) < 0) labels.push(l); });
    node.dataset.labels = labels.join(" ");
    node.dataset.corrected = f.sentiment || "";
    paint(node);
    status(node, what + f.by, true);
  }

  function correct(node, body) {
    body.post_id = node.dataset.postId;
    node.classList.add("fb-busy");
    return send(body).then(function (answer) {
      node.classList.remove("fb-busy");
      show(node, answer.feedback, "saved by ");
    }, function (e) { node.classList.remove("fb-busy"); status(node, e.message, false); });
  }

  function paint(node) {
    var bar = node.querySelector(".fb-bar");
    bar.querySelectorAll(".fb-sentiment").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.value === node.dataset.corrected));
    });
    drawChips(node, bar.querySelector(".fb-labels"));
    var own = node.querySelector(".post-labels");
    if (own) own.hidden = true;  // the editable chips stand in for the read-only ones
  }

  function decorate(node) {
    if (node.dataset.fb) return;
    node.dataset.fb = "1";
    node.dataset.originalLabels = node.dataset.labels || "";
    var bar = M.el("div", { className: "fb-bar", role: "group", "aria-label": "Correct this post" });
    var group = M.el("span", { className: "fb-group" }, M.el("span", { className: "muted small", text: "Sentiment: " }));
    SENTIMENTS.forEach(function (s) {
      var b = M.el("button", { type: "button", className: "fb-sentiment " + s, title: "This post is " + s, "aria-pressed": "false", dataset: { value: s }, text: SYMBOL[s] + " " + s });
      b.addEventListener("click", function () { correct(node, { sentiment: s }); });
      group.appendChild(b);
    });
    bar.appendChild(group);
    bar.appendChild(M.el("span", { className: "fb-labels" }));
    var input = M.el("input", { type: "text", className: "fb-add", placeholder: "+ label", "aria-label": "Add a label", maxlength: "40", list: "fb-known-labels" });
    input.addEventListener("keydown", function (ev) {
      if (ev.key !== "Enter") return;
      ev.preventDefault();
      var name = input.value.trim().toLowerCase().replace(/[\s-]+/g, "_");
      if (!LABEL_NAME.test(name)) { status(node, "a label is a-z, 0-9 and _, starting with a letter", false); return; }
      input.value = "";
      correct(node, { labels: obj(name, true) });
    });
    bar.appendChild(input);
    bar.appendChild(M.el("span", { className: "fb-status small muted", "aria-live": "polite" }));
    var slot = node.querySelector(".feedback-slot") || node.querySelector(".post-foot") || node;
    slot.appendChild(bar);
    paint(node);
  }

  function known() {
    if (document.getElementById("fb-known-labels")) return;
    var list = M.el("datalist", { id: "fb-known-labels" });
    ["complaint", "purchase_intent", "question", "crisis"].forEach(function (l) { list.appendChild(M.el("option", { value: l })); });
    document.body.appendChild(list);
  }

  /* Show the corrections the posts already have. */
  function load(nodes) {
    if (!nodes.length) return;
    var q = new URLSearchParams();
    nodes.forEach(function (n) { q.append("post_id", n.dataset.postId); });
    M.getJSON("/ui/feedback.json?" + q.toString()).then(function (answer) {
      nodes.forEach(function (n) {
        var f = answer.feedback[n.dataset.postId];
        if (f) show(n, f, "corrected by ");
      });
    }, function () {});
  }

  function scan(root) {
    var found = [];
    (root.querySelectorAll ? Array.prototype.slice.call(root.querySelectorAll("[data-post-id]")) : []).forEach(function (n) { found.push(n); });
    if (root.dataset && root.dataset.postId) found.push(root);
    found = found.filter(function (n) { return !n.dataset.fb && n.dataset.postId; });
    found.forEach(decorate);
    load(found);
  }

  known();
  scan(document);
  // The live feed adds cards as posts arrive.
  new MutationObserver(function (changes) {
    changes.forEach(function (c) { c.addedNodes.forEach(function (n) { if (n.nodeType === 1) scan(n); }); });
  }).observe(document.body, { childList: true, subtree: true });
})();
