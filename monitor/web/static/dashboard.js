/* The dashboard: one JSON fetch for the range, then live increments from
 * the channel, and a full refresh now and then for the top lists. */
(function () {
  "use strict";
  var M = window.Monitor;
  var root = document.getElementById("dashboard");
  var topicSelect = document.getElementById("dash-topic");
  var rangeSelect = document.getElementById("dash-range");
  var hasCharts = typeof window.Chart === "function";
  var COLORS = { positive: "#16a34a", neutral: "#94a3b8", negative: "#dc2626" };
  var PALETTE = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#f97316", "#64748b", "#ec4899"];
  var SENTIMENTS = ["positive", "neutral", "negative"];
  var charts = {};
  var data = null, lastLoad = 0, loading = false, dirty = false, generation = 0;

  if (!hasCharts) root.classList.add("no-charts");
  window.monitorDashboard = { data: function () { return data; }, charts: charts, loadStories: function () { loadStories(); } };

  function topic() { return topicSelect.value; }
  function range() { return rangeSelect.value; }

  function load() {
    var mine = ++generation;
    loading = true;
    loadStories();
    return M.getJSON("/ui/stats.json" + M.query({ topic: topic(), range: range() })).then(function (body) {
      if (mine !== generation) return;
      data = body;
      lastLoad = Date.now();
      render();
    }).catch(function (e) { if (window.console) console.error(e); }).then(function () { loading = false; });
  }

  /* The Stories panel is drawn by the hub (the same template as the first
     page): fetched as HTML the hub escaped, parsed (never run), swapped in. */
  var storiesGeneration = 0;
  function loadStories() {
    if (!document.getElementById("stories-panel")) return;
    var mine = ++storiesGeneration;
    var url = "/ui/stories" + M.query({ topic: topic(), range: range() });
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      if (mine !== storiesGeneration) return;
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("stories-panel");
      var current = document.getElementById("stories-panel");
      if (fresh && current) current.replaceWith(document.importNode(fresh, true));
    }).catch(function (e) { if (window.console) console.error(e); });
  }

  /* --- live increments ------------------------------------------------ */

  function addPost(p) {
    if (!data) return;
    var t = Date.parse(p.created_at);
    if (isNaN(t) || t < Date.parse(data.since)) return;
    var label = (p.sentiment && p.sentiment.label) || "neutral";
    data.count += 1;
    if (data.sentiment[label] !== undefined) data.sentiment[label] += 1;
    (p.labels || []).forEach(function (l) { if (data.labels[l] !== undefined) data.labels[l] += 1; });
    data.engagement.likes += p.likes || 0;
    data.engagement.reposts += p.reposts || 0;
    data.engagement.replies += p.replies || 0;
    var size = data.bucket * 1000;
    var start = new Date(Math.floor(t / size) * size).toISOString().replace(/\.\d{3}Z$/, ".000Z");
    var bucket = null;
    for (var i = data.volume.length - 1; i >= 0; i--) {
      if (data.volume[i].start === start) { bucket = data.volume[i]; break; }
    }
    if (!bucket) {
      bucket = { start: start, count: 0, positive: 0, neutral: 0, negative: 0 };
      data.volume.push(bucket);
      data.volume.sort(function (a, b) { return Date.parse(a.start) - Date.parse(b.start); });
    }
    bucket.count += 1;
    bucket[label] += 1;
    if (!topic() && data.topics) {
      (p.topics || []).forEach(function (name) {
        var row = data.topics.filter(function (r) { return r.topic === name; })[0];
        if (row) row.count += 1; else data.topics.push({ topic: name, count: 1 });
      });
    }
    if (data.share_of_voice) {
      (p.topics || []).forEach(function (name) {
        data.share_of_voice.topics.forEach(function (r) { if (r.topic === name) r.count += 1; });
      });
      var total = data.share_of_voice.topics.reduce(function (s, r) { return s + r.count; }, 0);
      data.share_of_voice.topics.forEach(function (r) { r.share = total ? r.count / total : 0; });
    }
    dirty = true;
  }

  /* Redraw at most a few times a second, however fast posts come. */
  setInterval(function () { if (dirty) { dirty = false; render(); } }, 300);

  /* --- rendering ---------------------------------------------------------- */

  function setText(id, text) { var n = document.getElementById(id); if (n) n.textContent = text; }
  /* A count in a card: compact when large ("1.2M"), exact on hover. */
  function figure(id, n) {
    var node = document.getElementById(id);
    if (!node) return;
    node.textContent = M.compact(n);
    node.title = M.num(n);
  }

  function render() {
    if (!data) return;
    var s = data.sentiment, total = data.count;
    figure("kpi-count", total);
    var change = document.getElementById("kpi-change");
    var before = data.previous_count || 0;
    var rangeName = rangeSelect.options[rangeSelect.selectedIndex] ? rangeSelect.options[rangeSelect.selectedIndex].text.replace(/^Last /, "").toLowerCase() : "period";
    change.title = M.num(before) + " posts in the previous " + rangeName;
    if (total === before) {
      change.textContent = "= same as previous " + rangeName;
      change.className = "kpi-sub";
    } else if (before) {
      var diff = Math.round(100 * (total - before) / before);
      change.textContent = (total > before ? "▲ " : "▼ ") + Math.abs(diff) + "% vs previous " + rangeName;
      change.className = "kpi-sub " + (total > before ? "up" : "down");
    } else {
      change.textContent = "▲ +" + M.compact(total) + " vs previous " + rangeName;
      change.className = "kpi-sub up";
    }
    setText("kpi-positive", M.pct(s.positive, total));
    setText("kpi-positive-n", M.num(s.positive) + " posts");
    setText("kpi-negative", M.pct(s.negative, total));
    setText("kpi-negative-n", M.num(s.negative) + " posts");
    setText("kpi-average", s.average_compound === null || s.average_compound === undefined ? "–" : M.score(s.average_compound));
    ["complaint", "purchase_intent", "crisis", "question"].forEach(function (l) { figure("kpi-" + l, data.labels[l]); });
    var e = data.engagement;
    figure("kpi-engagement", e.likes + e.reposts + e.replies);
    var split = document.getElementById("kpi-engagement-split");
    split.textContent = "♥ " + M.compact(e.likes) + " · ↻ " + M.compact(e.reposts) + " · ↩ " + M.compact(e.replies);
    split.title = M.num(e.likes) + " likes, " + M.num(e.reposts) + " reposts, " + M.num(e.replies) + " replies";

    renderVolume();
    renderSentiment();
    renderShare();
    renderTrending("trending-hashtags", data.trending.hashtags, "tag", "#");
    renderTrending("trending-terms", data.trending.terms, "term", "");
    renderChips("top-hashtags", data.top_hashtags, "tag", "#");
    renderChips("top-terms", data.top_terms, "term", "");
    renderAuthors("authors-reach", data.top_authors.by_followers, function (a) { return [M.num(a.followers), M.num(a.posts)]; });
    renderAuthors("authors-count", data.top_authors.by_posts, function (a) { return [M.num(a.posts), M.score(a.average_compound)]; });
    renderAuthors("advocates", data.advocates, function (a) { return [M.num(a.posts), M.score(a.average_compound)]; });
    renderAuthors("detractors", data.detractors, function (a) { return [M.num(a.posts), M.score(a.average_compound)]; });
    setText("dash-updated", "Range " + new Date(data.since).toLocaleString() + " – now · updated " + new Date().toLocaleTimeString());
  }

  /* Every bucket from the start of the range to now, empty ones too. */
  function series() {
    var size = data.bucket * 1000;
    var first = Math.floor(Date.parse(data.since) / size) * size;
    var last = Math.max(Date.now(), Date.parse(data.until));
    var byStart = {};
    data.volume.forEach(function (b) { byStart[Date.parse(b.start)] = b; });
    var rows = [];
    for (var t = first; t <= last; t += size) rows.push(byStart[t] || { start: new Date(t).toISOString(), count: 0, positive: 0, neutral: 0, negative: 0 });
    return rows;
  }

  function tick(iso) {
    var d = new Date(iso);
    if (data.bucket >= 86400) return d.toLocaleDateString();
    if (data.bucket >= 3 * 3600) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function chart(id, config) {
    if (charts[id]) {
      charts[id].data.labels = config.data.labels;
      config.data.datasets.forEach(function (ds, i) {
        if (charts[id].data.datasets[i]) {
          charts[id].data.datasets[i].data = ds.data;
          if (ds.backgroundColor) charts[id].data.datasets[i].backgroundColor = ds.backgroundColor;
        } else charts[id].data.datasets.push(ds);
      });
      charts[id].data.datasets.length = config.data.datasets.length;
      charts[id].update("none");
      return;
    }
    var canvas = document.getElementById(id);
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } }, config.options || {});
    charts[id] = new window.Chart(canvas, config);
  }

  function bars(id, rows) {
    /* Without the chart library: a plain bar list. */
    var box = M.clear(document.getElementById(id));
    var max = rows.reduce(function (m, r) { return Math.max(m, r.value); }, 0) || 1;
    rows.forEach(function (r) {
      var bar = M.el("span", { className: "bar " + (r.kind || "") });
      bar.style.width = Math.round(100 * r.value / max) + "%";
      box.appendChild(M.el("div", { className: "bar-row" }, M.el("span", { text: r.label }), M.el("span", {}, bar), M.el("span", { className: "num", text: M.num(r.value) })));
    });
  }

  function renderVolume() {
    var rows = series();
    if (hasCharts) {
      chart("chart-volume", {
        type: "bar",
        data: {
          labels: rows.map(function (r) { return tick(r.start); }),
          datasets: SENTIMENTS.map(function (k) { return { label: k, data: rows.map(function (r) { return r[k]; }), backgroundColor: COLORS[k], stack: "s" }; })
        },
        options: { scales: { x: { stacked: true, grid: { display: false }, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
      });
    } else {
      bars("fallback-volume", rows.filter(function (r) { return r.count; }).slice(-12).map(function (r) { return { label: tick(r.start), value: r.count }; }));
    }
  }

  function renderSentiment() {
    var s = data.sentiment;
    if (hasCharts) {
      chart("chart-sentiment", {
        type: "doughnut",
        data: { labels: SENTIMENTS, datasets: [{ data: SENTIMENTS.map(function (k) { return s[k]; }), backgroundColor: SENTIMENTS.map(function (k) { return COLORS[k]; }) }] },
        options: { cutout: "62%" }
      });
    } else {
      bars("fallback-sentiment", SENTIMENTS.map(function (k) { return { label: k, value: s[k], kind: k }; }));
    }
  }

  function renderShare() {
    var rows, title, note = "";
    if (data.share_of_voice) {
      title = "Share of voice: " + data.share_of_voice.group;
      rows = data.share_of_voice.topics.map(function (r) { return { label: r.topic, value: r.count }; });
      note = "Posts per topic of the group " + data.share_of_voice.group + " in this range.";
    } else if (!topic()) {
      title = "Share of voice: all topics";
      rows = (data.topics || []).slice(0, 10).map(function (r) { return { label: r.topic, value: r.count }; });
      note = "A post may mention several topics.";
    } else {
      title = "Share of voice";
      rows = [];
      note = "This topic is in no group; give it a group on the Topics page to compare it.";
    }
    setText("sov-title", title);
    setText("sov-note", note);
    if (hasCharts) {
      chart("chart-sov", {
        type: "doughnut",
        data: { labels: rows.map(function (r) { return r.label; }), datasets: [{ data: rows.map(function (r) { return r.value; }), backgroundColor: rows.map(function (r, i) { return PALETTE[i % PALETTE.length]; }) }] },
        options: { cutout: "55%", plugins: { legend: { position: "right", labels: { boxWidth: 12 } } } }
      });
    } else {
      bars("fallback-sov", rows);
    }
  }

  function renderTrending(id, rows, key, prefix) {
    var body = M.clear(document.getElementById(id));
    if (!rows.length) { body.appendChild(M.el("tr", {}, M.el("td", { colspan: "3", className: "muted", text: "Nothing rising." }))); return; }
    rows.forEach(function (r) {
      var name = M.el("td", {}, M.el("span", { text: prefix + r[key] }), r.previous === 0 ? M.el("span", { className: "new-badge", text: "NEW" }) : null);
      var now = M.el("td", { className: "num up-text", text: M.num(r.count) });
      body.appendChild(M.el("tr", {}, name, now, M.el("td", { className: "num muted", text: M.num(r.previous) })));
    });
  }

  function renderChips(id, rows, key, prefix) {
    var box = M.clear(document.getElementById(id));
    if (!rows.length) { box.appendChild(M.el("span", { className: "muted small", text: "None in this range." })); return; }
    rows.forEach(function (r) { box.appendChild(M.el("span", { className: "chip" }, prefix + r[key], M.el("span", { className: "count", text: M.num(r.count) }))); });
  }

  function renderAuthors(id, rows, cells) {
    var body = M.clear(document.getElementById(id));
    if (!rows || !rows.length) { body.appendChild(M.el("tr", {}, M.el("td", { colspan: "3", className: "muted", text: "No one yet." }))); return; }
    rows.slice(0, 10).forEach(function (a) {
      var values = cells(a);
      body.appendChild(M.el("tr", {}, M.el("td", { text: a.author, title: a.author }), M.el("td", { className: "num", text: values[0] }), M.el("td", { className: "num", text: values[1] })));
    });
  }

  /* --- wiring -------------------------------------------------------------- */

  var channel = M.live(function () {
    return { kinds: ["post", "stats", "alert"], topics: topic() ? [topic()] : null };
  }, function (env) {
    if (env.type === "post") addPost(env.data);
    else if (env.type === "stats" && !loading && Date.now() - lastLoad > 20000) load();
  });

  function changed() {
    var t = topic();
    history.replaceState(null, "", "/dashboard" + M.query({ topic: t, range: range() }));
    var h1 = document.querySelector(".page-head h1");
    if (h1) h1.textContent = t ? "Dashboard: " + t : "Dashboard";
    channel.resubscribe();
    data = null;
    load();
  }
  topicSelect.addEventListener("change", changed);
  rangeSelect.addEventListener("change", changed);
  document.getElementById("dash-filters").addEventListener("submit", function (ev) { ev.preventDefault(); changed(); });

  // Slide the window and refresh the top lists once a minute.
  setInterval(function () { if (!loading) load(); }, 60000);
  load();
})();
