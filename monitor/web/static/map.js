/* The map: posts with coordinates, live, clustered with counts.  Tiles only
 * if a tile server is configured; otherwise the bundled Natural Earth
 * basemap (1:110m for the world, 1:50m from zoom 3, with country names), so
 * the map means something offline.  Posts are coloured by their story (the
 * largest stories shown each get a colour of a fixed palette, the others
 * grey; a legend names them by keywords and filters the map to one) or by
 * sentiment.  Topic, range, colouring, the chosen story and the view are
 * kept in the address. */
(function () {
  "use strict";
  var M = window.Monitor;
  var box = document.getElementById("map");
  var list = document.getElementById("map-list");
  var countEl = document.getElementById("map-count");
  var topicSelect = document.getElementById("m-topic");
  var rangeSelect = document.getElementById("m-range");
  var COLORS = { positive: "#16a34a", neutral: "#64748b", negative: "#dc2626" };
  // Tableau's ten without its grey and brown: told apart by most eyes.
  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"];
  var OTHER = "#a8a29e";
  var colourSelect = document.getElementById("m-colour");
  var legend = document.getElementById("map-legend");
  var sentimentLegend = document.getElementById("legend-sentiment");
  var filteredEl = document.getElementById("map-filtered");
  var stories = {};  // story id -> {id, name, terms, size}, as the hub named them
  var colourOf = {};  // story id -> palette colour, for the largest shown
  var only = null;  // the story the map is filtered to
  var unnamed = {}, naming = null;  // story ids to ask the hub about
  var MAX_MARKERS = 3000;
  var DEFAULT_VIEW = { zoom: 2, lat: 30, lon: 10 };
  var DETAIL_FROM = 3;  // the zoom from which the 1:50m basemap is drawn
  var L = window.L, map = null, layer = null, generation = 0;
  var shown = {}, order = [];  // post id -> marker (or list item), oldest first

  /* -- the address: ?topic=&range= and #zoom/lat/lon ------------------------ */

  function pick(select, value) {
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) { select.value = value; return; }
    }
  }
  var address = new URLSearchParams(location.search);
  if (address.has("topic")) pick(topicSelect, address.get("topic"));
  if (address.has("range")) pick(rangeSelect, address.get("range"));
  if (colourSelect && address.has("colour")) pick(colourSelect, address.get("colour"));
  if (address.get("story")) only = address.get("story");
  function byStory() { return !!colourSelect && colourSelect.value === "story"; }

  function viewFromHash() {
    var m = /^#(\d{1,2})\/(-?\d+(?:\.\d+)?)\/(-?\d+(?:\.\d+)?)$/.exec(location.hash);
    if (!m) return DEFAULT_VIEW;
    var zoom = Number(m[1]), lat = Number(m[2]), lon = Number(m[3]);
    if (zoom < 1 || zoom > 18 || Math.abs(lat) > 85 || Math.abs(lon) > 180) return DEFAULT_VIEW;
    return { zoom: zoom, lat: lat, lon: lon };
  }

  function remember() {
    var q = M.query({ topic: topicSelect.value, range: rangeSelect.value, colour: colourSelect && !byStory() ? colourSelect.value : "", story: only || "" });
    var hash = "";
    if (map) {
      var c = map.getCenter().wrap(), z = map.getZoom();
      var digits = Math.max(0, Math.ceil(Math.log(Math.pow(2, z)) / Math.LN10));
      hash = "#" + z + "/" + c.lat.toFixed(digits) + "/" + c.lng.toFixed(digits);
    }
    history.replaceState(null, "", location.pathname + q + hash);
  }

  /* -- the map -------------------------------------------------------------- */

  function clusterIcon(cluster) {
    if (byStory()) return storyClusterIcon(cluster);
    var counts = { negative: 0, neutral: 0, positive: 0 };
    var children = cluster.getAllChildMarkers();
    children.forEach(function (m) { counts[m.options.sentiment] = (counts[m.options.sentiment] || 0) + 1; });
    var n = children.length;
    var neg = (100 * counts.negative) / n, neu = neg + (100 * counts.neutral) / n;
    var size = n < 10 ? 30 : n < 100 ? 36 : n < 1000 ? 42 : 48;
    var ring = M.el("div", { className: "cluster-ring", title: n + " posts: " + counts.negative + " negative, " + counts.neutral + " neutral, " + counts.positive + " positive" },
      M.el("span", { className: "cluster-count", text: M.compact(n) }));
    // The sentiment mix as a ring: set through the CSSOM, which the CSP allows.
    ring.style.background = "conic-gradient(" + COLORS.negative + " 0 " + neg + "%, " + COLORS.neutral + " " + neg + "% " + neu + "%, " + COLORS.positive + " " + neu + "% 100%)";
    return L.divIcon({ html: ring, className: "post-cluster", iconSize: L.point(size, size) });
  }

  /* A cluster in story colours: its stories' shares as a ring, largest first. */
  function storyClusterIcon(cluster) {
    var children = cluster.getAllChildMarkers(), counts = {};
    children.forEach(function (m) { var c = storyColour(m.options.story); counts[c] = (counts[c] || 0) + 1; });
    var n = children.length, at = 0, stops = [], names = [];
    Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a]; }).forEach(function (c) {
      var share = (100 * counts[c]) / n;
      stops.push(c + " " + at + "% " + (at + share) + "%");
      at += share;
      names.push(counts[c] + " " + colourName(c));
    });
    var size = n < 10 ? 30 : n < 100 ? 36 : n < 1000 ? 42 : 48;
    var ring = M.el("div", { className: "cluster-ring", title: n + " posts: " + names.join(", ") },
      M.el("span", { className: "cluster-count", text: M.compact(n) }));
    ring.style.background = "conic-gradient(" + stops.join(", ") + ")";
    return L.divIcon({ html: ring, className: "post-cluster", iconSize: L.point(size, size) });
  }

  /* -- stories: colours, legend, filter -------------------------------------- */

  function storyColour(id) { return (id && colourOf[id]) || OTHER; }
  function colourName(c) {
    var id = Object.keys(colourOf).filter(function (k) { return colourOf[k] === c; })[0];
    return id ? "in " + storyName(id) : "in other stories or none";
  }
  function storyName(id) { return stories[id] ? stories[id].name : "story " + id; }
  function fill(m) { return byStory() ? storyColour(m.options.story) : COLORS[m.options.sentiment] || COLORS.neutral; }

  /* The largest stories among the posts shown keep their colours while
     they stay among the largest; a colour freed goes to the next one. */
  function assignColours() {
    var count = {};
    order.forEach(function (id) { var s = storyAt(id); if (s) count[s] = (count[s] || 0) + 1; });
    var ranked = Object.keys(count).sort(function (a, b) {
      var sa = stories[a] ? stories[a].size : 0, sb = stories[b] ? stories[b].size : 0;
      return (sb - sa) || (count[b] - count[a]) || (a < b ? -1 : 1);
    }).slice(0, PALETTE.length);
    var kept = {};
    ranked.forEach(function (id) { if (colourOf[id]) kept[id] = colourOf[id]; });
    var used = Object.keys(kept).map(function (id) { return kept[id]; });
    var free = PALETTE.filter(function (c) { return used.indexOf(c) < 0; });
    ranked.forEach(function (id) { if (!kept[id]) kept[id] = free.shift(); });
    colourOf = kept;
    return { ranked: ranked, count: count };
  }

  function storyAt(id) {
    var item = shown[id];
    return item && item.options ? item.options.story : item && item.getAttribute ? item.getAttribute("data-story") : null;
  }

  function recolour() {
    var ranking = assignColours();
    if (map) {
      // Only markers whose colour changed are redrawn, and then the clusters.
      var changed = [];
      order.forEach(function (id) {
        var m = shown[id], want = fill(m);
        if (m.options.fillColor !== want) { m.setStyle({ fillColor: want }); changed.push(m); }
      });
      if (changed.length && layer.refreshClusters) layer.refreshClusters();
    }
    drawLegend(ranking);
  }

  function drawLegend(ranking) {
    if (!legend) return;
    legend.classList.toggle("hidden", !byStory());
    sentimentLegend.classList.toggle("hidden", byStory());
    M.clear(legend);
    var inTop = 0;
    ranking.ranked.forEach(function (id) {
      inTop += ranking.count[id];
      var swatch = M.el("span", { className: "swatch" });
      swatch.style.background = colourOf[id];
      var button = M.el("button", { type: "button", className: "legend-story" + (only === id ? " chosen" : ""), "aria-pressed": only === id ? "true" : "false",
        title: only === id ? "Show every story" : "Show only this story", dataset: { story: id } },
        swatch, M.el("span", { className: "legend-name", text: storyName(id) }), M.el("span", { className: "count", text: M.num(ranking.count[id]) }));
      button.addEventListener("click", function () { choose(only === id ? null : id); });
      legend.appendChild(M.el("li", {}, button));
    });
    var rest = order.length - inTop;
    if (only && ranking.ranked.indexOf(only) < 0) {
      // Chosen from the address or before it left the largest: still a way back.
      var back = M.el("button", { type: "button", className: "legend-story chosen", "aria-pressed": "true", title: "Show every story", dataset: { story: only } },
        M.el("span", { className: "swatch other" }), M.el("span", { className: "legend-name", text: storyName(only) }));
      back.addEventListener("click", function () { choose(null); });
      legend.appendChild(M.el("li", {}, back));
    }
    if (rest > 0 || !ranking.ranked.length) {
      legend.appendChild(M.el("li", { className: "legend-other" }, M.el("span", { className: "swatch other" }),
        M.el("span", { className: "legend-name", text: ranking.ranked.length ? "other stories or none" : "no story yet" }), M.el("span", { className: "count", text: M.num(rest) })));
    }
    if (ranking.ranked.length) legend.appendChild(M.el("li", { className: "legend-hint muted", text: only ? "click it again to show every story" : "click a story to show only it" }));
  }

  function visible(m) { return !only || m.options.story === only; }

  /* Filter the map to one story (or none); the markers stay, hidden. */
  function choose(id) {
    only = id;
    if (map) {
      layer.clearLayers();
      var on = order.map(function (k) { return shown[k]; }).filter(visible);
      if (layer.addLayers) layer.addLayers(on); else on.forEach(function (m) { layer.addLayer(m); });
    }
    remember();
    counted();
    recolour();
  }

  /* Name stories the hub pushed posts of before this page knew them. */
  function learn(ids) {
    ids.forEach(function (id) { if (id && !stories[id]) unnamed[id] = true; });
    if (naming || !Object.keys(unnamed).length) return;
    naming = setTimeout(function () {
      var asked = Object.keys(unnamed).slice(0, 100);
      asked.forEach(function (id) { delete unnamed[id]; });
      M.getJSON("/ui/stories.json" + M.query({ ids: asked.join(",") })).then(function (body) {
        body.stories.forEach(function (s) { stories[s.id] = s; });
      }).catch(function (e) { if (window.console) console.error(e); }).then(function () {
        naming = null;
        recolour();
        if (Object.keys(unnamed).length) learn([]);
      });
    }, 500);
  }

  var basemap = { level: null, levels: {}, labels: null };

  function labelIcon(name) {
    return L.divIcon({ html: M.el("span", { text: name }), className: "country-label", iconSize: L.point(0, 0) });
  }

  /* The level for this zoom, loaded the first time it is needed. */
  function drawBasemap() {
    var want = map.getZoom() >= DETAIL_FROM ? "50m" : "110m";
    var level = basemap.levels[want];
    if (!level) {
      level = basemap.levels[want] = { loading: true };
      M.getJSON("/static/vendor/countries-" + want + ".json").then(function (topo) {
        var built = window.MonitorBasemap.build(L, window.topojson, topo, {
          style: { land: "#f8fafc", coast: "#94a3b8", border: "#cbd5e1", borderDash: null },
          path: { pane: "basemap", renderer: basemap.renderer }
        });
        built.markers = built.labels.map(function (l) {
          var m = L.marker(l.at, { icon: labelIcon(l.name), interactive: false, keyboard: false, pane: "labels" });
          m.minZoom = l.zoom;
          return m;
        });
        basemap.levels[want] = built;
        drawBasemap();
      }).catch(function (e) {
        if (window.console) console.error(e);
        delete basemap.levels[want];
        document.getElementById("basemap-missing").classList.remove("hidden");
      });
      return;
    }
    if (level.loading) return;
    if (basemap.level !== level) {
      if (basemap.level) map.removeLayer(basemap.level.group);
      level.group.addTo(map);
      basemap.level = level;
      box.setAttribute("data-basemap", want);
    }
    var zoom = map.getZoom();
    Object.keys(basemap.levels).forEach(function (k) {
      var l = basemap.levels[k];
      if (!l.markers) return;
      l.markers.forEach(function (m) {
        var on = l === level && zoom >= m.minZoom;
        if (on && !map.hasLayer(m)) basemap.labels.addLayer(m);
        else if (!on && map.hasLayer(m)) basemap.labels.removeLayer(m);
      });
    });
  }

  if (L) {
    var view = viewFromHash();
    map = L.map(box, { worldCopyJump: true, minZoom: 1, maxZoom: 18 }).setView([view.lat, view.lon], view.zoom);
    map.createPane("basemap").style.zIndex = 150;
    map.createPane("labels").style.zIndex = 350;
    map.getPane("labels").style.pointerEvents = "none";
    var tiles = box.getAttribute("data-tile-url");
    if (tiles) {
      L.tileLayer(tiles, { attribution: box.getAttribute("data-tile-attribution") || "", maxZoom: 18 }).addTo(map);
    } else if (window.topojson && window.MonitorBasemap) {
      basemap.renderer = L.canvas({ pane: "basemap", padding: 0.3 });
      basemap.labels = L.layerGroup().addTo(map);
      map.attributionControl.addAttribution("Natural Earth");
      map.on("zoomend", drawBasemap);
      drawBasemap();
    } else {
      document.getElementById("basemap-missing").classList.remove("hidden");
    }
    if (L.markerClusterGroup) {
      layer = L.markerClusterGroup({ showCoverageOnHover: false, maxClusterRadius: 45, iconCreateFunction: clusterIcon, chunkedLoading: true,
        spiderLegPolylineOptions: { weight: 1, color: "#475569", opacity: 0.35 } });
      layer.on("spiderfied", function (e) { box.setAttribute("data-spiderfied", String(e.markers.length)); });
      layer.on("unspiderfied", function () { box.removeAttribute("data-spiderfied"); });
    } else {
      layer = L.layerGroup();
      document.getElementById("cluster-missing").classList.remove("hidden");
    }
    layer.addTo(map);
    map.on("moveend", remember);
    // A #zoom/lat/lon typed or pasted into the address moves the map there.
    window.addEventListener("hashchange", function () {
      var v = viewFromHash();
      map.setView([v.lat, v.lon], v.zoom);
    });
  } else {
    box.classList.add("hidden");
    list.classList.remove("hidden");
  }

  /* -- the posts: once per id, the newest MAX_MARKERS ------------------------ */

  function popup(p) {
    // A list of one: the card is a list item, and a bare <li> gets a bullet.
    var card = M.postCard(p, false);
    if (p.story) {
      card.appendChild(M.el("p", { className: "popup-story small" }, "Story: ",
        M.el("a", { href: "/posts" + M.query({ story: p.story }), text: storyName(p.story) })));
    }
    return M.el("ul", { className: "popup-post" }, card);
  }

  function marker(p) {
    var label = (p.sentiment && p.sentiment.label) || "neutral";
    var m = L.circleMarker([p.lat, p.lon], { radius: 7, color: "#ffffff", weight: 1.5, fillOpacity: 0.9, sentiment: label, story: p.story || null });
    m.setStyle({ fillColor: fill(m) });
    m.bindPopup(function () { return popup(p); }, { maxWidth: 320, minWidth: 240 });
    return m;
  }

  function counted() {
    countEl.textContent = M.num(order.length);
    if (!filteredEl) return;
    var n = only ? order.filter(function (id) { return storyAt(id) === only; }).length : 0;
    filteredEl.textContent = only ? "; " + M.num(n) + " of story “" + storyName(only) + "” shown" : "";
  }

  /* Add posts not shown yet; returns the new markers (for one bulk add). */
  function add(posts, fresh) {
    var fresh_markers = [];
    posts.forEach(function (p) {
      if (p.lat === null || p.lat === undefined || p.lon === null || p.lon === undefined) return;
      var id = p.id || (p.source + "\n" + p.created_at + "\n" + p.text);
      if (shown[id]) return;
      var item;
      if (map) {
        item = marker(p);
        if (visible(item)) fresh_markers.push(item);
      } else {
        item = M.postCard(p, fresh);
        if (p.story) item.setAttribute("data-story", p.story);
        list.insertBefore(item, list.firstChild);
      }
      shown[id] = item;
      order.push(id);
    });
    if (map && fresh_markers.length) {
      if (layer.addLayers) layer.addLayers(fresh_markers);
      else fresh_markers.forEach(function (m) { layer.addLayer(m); });
    }
    var old = [];
    while (order.length > (map ? MAX_MARKERS : 500)) {
      var gone = order.shift();
      old.push(shown[gone]);
      delete shown[gone];
    }
    if (map && old.length) {
      if (layer.removeLayers) layer.removeLayers(old);
      else old.forEach(function (m) { layer.removeLayer(m); });
    } else old.forEach(function (node) { list.removeChild(node); });
    learn(posts.map(function (p) { return p.story; }));
    counted();
    recolourSoon();
  }

  /* Ranks change as posts come; redrawn at most twice a second. */
  var recolouring = null;
  function recolourSoon() {
    if (recolouring) return;
    recolouring = setTimeout(function () { recolouring = null; recolour(); }, 500);
  }

  function clearAll() {
    if (layer) layer.clearLayers();
    M.clear(list);
    shown = {};
    order = [];
    counted();
  }

  function load() {
    var mine = ++generation;
    // Cleared now, so posts pushed while this loads are kept: once each.
    clearAll();
    M.getJSON("/ui/geo.json" + M.query({ topic: topicSelect.value, range: rangeSelect.value })).then(function (body) {
      if (mine !== generation) return;
      Object.keys(body.stories || {}).forEach(function (id) { stories[id] = body.stories[id]; });
      add(body.posts.slice().reverse(), false);
      recolour();
    }).catch(function (e) { if (window.console) console.error(e); });
  }

  var channel = M.live(function () {
    return { kinds: ["post", "alert"], geo: true, topics: topicSelect.value ? [topicSelect.value] : null };
  }, function (env) { if (env.type === "post") add([env.data], true); });

  [topicSelect, rangeSelect].forEach(function (s) {
    s.addEventListener("change", function () { remember(); channel.resubscribe(); load(); });
  });
  if (colourSelect) colourSelect.addEventListener("change", function () {
    if (!byStory() && only) choose(null);
    remember();
    recolour();
  });
  document.getElementById("map-filters").addEventListener("submit", function (ev) { ev.preventDefault(); });
  window.monitorMap = {
    count: function () { return order.length; },
    map: map,
    posts: layer,
    marker: function (id) { return map ? shown[id] || null : null; },
    colourOf: function (storyId) { return storyColour(storyId); },
    visible: function () { return map ? order.filter(function (id) { return layer.hasLayer(shown[id]); }).length : order.length; },
    choose: choose
  };
  remember();
  load();
})();
