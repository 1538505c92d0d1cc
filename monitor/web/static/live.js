/* The live feed: posts as they are analysed, filtered without reloading. */
(function () {
  "use strict";
  var M = window.Monitor;
  var feed = document.getElementById("feed");
  var empty = document.getElementById("feed-empty");
  var pauseButton = document.getElementById("pause");
  var countEl = document.getElementById("feed-count");
  var rateEl = document.getElementById("feed-rate");
  var bufferedEl = document.getElementById("feed-buffered");
  var lostEl = document.getElementById("feed-lost");
  var sampledEl = document.getElementById("feed-sampled");
  var selects = { topic: "f-topic", sentiment: "f-sentiment", label: "f-label", source: "f-source" };
  // The story choice is there when the hub groups posts into stories.
  var storySelect = document.getElementById("f-story");
  if (storySelect) selects.story = "f-story";
  var filterBox = document.getElementById("feed-filter");
  var filterText = document.getElementById("feed-filter-text");
  // At most DRAW_MAX cards are drawn per animation frame: in a flood the
  // feed shows a sample (and says so) while the counters stay exact.
  var MAX_SHOWN = 300, MAX_BUFFERED = 1000, DRAW_MAX = 100;
  var paused = false, buffered = [], lost = 0, generation = 0;
  var incoming = [], drawing = false, notDrawn = 0;
  // Arrivals per second of the last minute: exact at any rate, bounded.
  var perSecond = {};
  // The ids shown, so a post pushed while the reload was under way (or
  // sent twice) shows once.
  var shown = {};

  function value(name) { var node = selects[name] && document.getElementById(selects[name]); return node ? node.value : ""; }
  function filters() { return { topic: value("topic"), sentiment: value("sentiment"), label: value("label"), source: value("source"), story: value("story") }; }

  // Filters come from the address, so a filtered feed can be bookmarked.
  var initial = new URLSearchParams(location.search);
  Object.keys(selects).forEach(function (k) {
    var v = initial.get(k);
    var select = document.getElementById(selects[k]);
    if (v && Array.prototype.some.call(select.options, function (o) { return o.value === v; })) select.value = v;
  });

  function subscription() {
    var f = filters();
    return {
      kinds: ["post", "alert"],
      topics: f.topic ? [f.topic] : null,
      sentiments: f.sentiment ? [f.sentiment] : null,
      labels: f.label ? [f.label] : null,
      sources: f.source ? [f.source] : null
    };
  }

  function accepts(p) {
    var f = filters();
    if (f.topic && (p.topics || []).indexOf(f.topic) < 0) return false;
    if (f.sentiment && (!p.sentiment || p.sentiment.label !== f.sentiment)) return false;
    if (f.label && (p.labels || []).indexOf(f.label) < 0) return false;
    if (f.source && p.source !== f.source) return false;
    if (f.story && p.story !== f.story) return false;
    return true;
  }

  /* Say which filters are on (the story by its keywords), with a way out. */
  function describeFilters() {
    var parts = [];
    Object.keys(selects).forEach(function (k) {
      var select = document.getElementById(selects[k]);
      if (!select.value) return;
      var option = select.options[select.selectedIndex];
      parts.push(k === "story" ? "story “" + (option.getAttribute("data-name") || option.text) + "”" : k + " " + option.text);
    });
    filterBox.classList.toggle("hidden", parts.length === 0);
    filterText.textContent = parts.length ? "Filtered: only posts of " + parts.join(", ") + " are shown and counted." : "";
  }

  function status() {
    countEl.textContent = M.num(feed.children.length);
    empty.classList.toggle("hidden", feed.children.length > 0);
    rateEl.textContent = M.num(lastMinute());
    sampledEl.classList.toggle("hidden", notDrawn === 0);
    sampledEl.textContent = notDrawn ? "a sample of a flood: " + M.num(notDrawn) + " not drawn" : "";
    bufferedEl.classList.toggle("hidden", !paused);
    bufferedEl.textContent = paused ? "paused, " + M.num(buffered.length) + " new waiting" : "";
    lostEl.classList.toggle("hidden", lost === 0);
    // The hub sends every post when a story is chosen (it cannot filter by
    // story), so what it skipped may be of any story.
    lostEl.textContent = lost ? M.num(lost) + " skipped while this tab could not keep up" + (value("story") ? " (of all stories)" : "") : "";
  }

  function arrived() {
    var second = Math.floor(Date.now() / 1000);
    perSecond[second] = (perSecond[second] || 0) + 1;
  }

  function lastMinute() {
    var now = Math.floor(Date.now() / 1000), total = 0;
    Object.keys(perSecond).forEach(function (k) {
      if (Number(k) <= now - 60) delete perSecond[k];
      else total += perSecond[k];
    });
    return total;
  }

  /* Draw what arrived since the last animation frame; of a flood only the
     newest DRAW_MAX, counted in notDrawn. */
  function queueDraw(p) {
    incoming.push(p);
    if (incoming.length > DRAW_MAX) { incoming.shift(); notDrawn += 1; }
    if (drawing) return;
    drawing = true;
    var later = window.requestAnimationFrame || function (f) { return setTimeout(f, 16); };
    later(function () {
      drawing = false;
      var posts = incoming;
      incoming = [];
      show(posts, true);
    });
  }

  /* A post's story, named by its keywords when the choice knows it: a
     click shows only that story. */
  function storyChip(card, id) {
    if (!id || !storySelect) return;
    var option = Array.prototype.filter.call(storySelect.options, function (o) { return o.value === id; })[0];
    var name = option ? option.getAttribute("data-name") || option.text : "";
    var chip = M.el("button", { type: "button", className: "chip story-chip", title: "Show only this story's posts", dataset: { story: id } },
      "story: " + (name || id));
    chip.addEventListener("click", function () {
      if (!option) {
        option = M.el("option", { value: id, "data-name": name || "story " + id, text: name || "story " + id });
        storySelect.appendChild(option);
      }
      storySelect.value = id;
      storySelect.dispatchEvent(new Event("change"));
    });
    var foot = card.querySelector(".post-foot");
    if (foot) foot.insertBefore(chip, foot.querySelector(".post-labels"));
  }

  function when(node) { return Number(node.getAttribute("data-time")) || 0; }

  /* Put each post in its place by time, newest on top, once per id. */
  function show(posts, fresh) {
    posts.forEach(function (p) {
      if (p.id && shown[p.id]) return;
      var card = M.postCard(p, fresh);
      storyChip(card, p.story);
      var t = Date.parse(p.created_at) || 0;
      card.setAttribute("data-time", String(t));
      if (p.id) { card.setAttribute("data-id", p.id); shown[p.id] = true; }
      var next = feed.firstChild;
      while (next && when(next) > t) next = next.nextSibling;
      feed.insertBefore(card, next);
    });
    while (feed.children.length > MAX_SHOWN) {
      var last = feed.lastChild;
      delete shown[last.getAttribute("data-id")];
      feed.removeChild(last);
    }
    status();
  }

  function reload() {
    var mine = ++generation;
    M.clear(feed);
    shown = {};
    buffered = [];
    incoming = [];
    notDrawn = 0;
    status();
    describeFilters();
    M.getJSON("/ui/recent.json" + M.query(Object.assign(filters(), { limit: 50 }))).then(function (body) {
      if (mine !== generation) return;
      // Posts pushed since the filter changed are already shown: once each.
      show(body.posts, false);
    }).catch(function (e) { if (window.console) console.error(e); });
  }

  var channel = M.live(subscription, function (env) {
    if (env.type === "post") {
      if (!accepts(env.data)) return;
      arrived();
      if (paused) {
        buffered.push(env.data);
        if (buffered.length > MAX_BUFFERED) { buffered.shift(); lost += 1; }
        status();
      } else {
        queueDraw(env.data);
      }
    } else if (env.type === "lost") {
      lost += env.data.count;
      status();
    } else if (env.type === "subscribed") {
      // From now on the hub pushes every post that is stored: load what
      // came before, so that a post stored between the page's first load
      // and this moment (or during a reconnect) is not missed.
      reload();
    }
  });

  Object.keys(selects).forEach(function (k) {
    document.getElementById(selects[k]).addEventListener("change", function () {
      history.replaceState(null, "", location.pathname + M.query(filters()));
      // With the socket open the hub's "subscribed" answer reloads the feed.
      if (channel.isOpen()) channel.resubscribe();
      else reload();
    });
  });
  document.getElementById("live-filters").addEventListener("submit", function (ev) { ev.preventDefault(); });

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused && buffered.length) { var waiting = buffered; buffered = []; show(waiting, true); }
    status();
  });

  /* The stories to choose from change as posts come: refreshed now and
     then, the chosen one kept (named by its keywords, set as text). */
  function refreshStories() {
    if (!storySelect) return;
    M.getJSON("/ui/stories.json?limit=30").then(function (body) {
      var chosen = storySelect.value, chosenOption = storySelect.selectedIndex > 0 ? storySelect.options[storySelect.selectedIndex] : null;
      while (storySelect.options.length > 1) storySelect.remove(1);
      var seen = false;
      body.stories.forEach(function (s) {
        storySelect.appendChild(M.el("option", { value: s.id, "data-name": s.name, text: s.name + " (" + M.num(s.size) + ")" }));
        if (s.id === chosen) seen = true;
      });
      if (chosen && !seen && chosenOption) storySelect.insertBefore(chosenOption, storySelect.options[1] || null);
      storySelect.value = chosen;
      describeFilters();
    }).catch(function (e) { if (window.console) console.error(e); });
  }

  setInterval(status, 5000);
  setInterval(refreshStories, 60000);
  window.monitorLive = { refreshStories: refreshStories, filters: filters };
  reload();
})();
