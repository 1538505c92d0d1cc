/* The map: posts with coordinates, live, clustered with counts.  Tiles only
 * if a tile server is configured; otherwise the bundled Natural Earth
 * basemap (1:110m for the world, 1:50m from zoom 3, with country names), so
 * the map means something offline.  Topic, range and view are kept in the
 * address. */
(function () {
  "use strict";
  var M = window.Monitor;
  var box = document.getElementById("map");
  var list = document.getElementById("map-list");
  var countEl = document.getElementById("map-count");
  var topicSelect = document.getElementById("m-topic");
  var rangeSelect = document.getElementById("m-range");
  var COLORS = { positive: "#16a34a", neutral: "#64748b", negative: "#dc2626" };
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

  function viewFromHash() {
    var m = /^#(\d{1,2})\/(-?\d+(?:\.\d+)?)\/(-?\d+(?:\.\d+)?)$/.exec(location.hash);
    if (!m) return DEFAULT_VIEW;
    var zoom = Number(m[1]), lat = Number(m[2]), lon = Number(m[3]);
    if (zoom < 1 || zoom > 18 || Math.abs(lat) > 85 || Math.abs(lon) > 180) return DEFAULT_VIEW;
    return { zoom: zoom, lat: lat, lon: lon };
  }

  function remember() {
    var q = M.query({ topic: topicSelect.value, range: rangeSelect.value });
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
    return M.el("ul", { className: "popup-post" }, M.postCard(p, false));
  }

  function marker(p) {
    var label = (p.sentiment && p.sentiment.label) || "neutral";
    var m = L.circleMarker([p.lat, p.lon], { radius: 7, color: "#ffffff", weight: 1.5, fillColor: COLORS[label] || COLORS.neutral, fillOpacity: 0.9, sentiment: label });
    m.bindPopup(function () { return popup(p); }, { maxWidth: 320, minWidth: 240 });
    return m;
  }

  function counted() { countEl.textContent = M.num(order.length); }

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
        fresh_markers.push(item);
      } else {
        item = M.postCard(p, fresh);
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
    counted();
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
      add(body.posts.slice().reverse(), false);
    }).catch(function (e) { if (window.console) console.error(e); });
  }

  var channel = M.live(function () {
    return { kinds: ["post", "alert"], geo: true, topics: topicSelect.value ? [topicSelect.value] : null };
  }, function (env) { if (env.type === "post") add([env.data], true); });

  [topicSelect, rangeSelect].forEach(function (s) {
    s.addEventListener("change", function () { remember(); channel.resubscribe(); load(); });
  });
  document.getElementById("map-filters").addEventListener("submit", function (ev) { ev.preventDefault(); });
  window.monitorMap = {
    count: function () { return order.length; },
    map: map,
    posts: layer,
    marker: function (id) { return map ? shown[id] || null : null; }
  };
  remember();
  load();
})();
