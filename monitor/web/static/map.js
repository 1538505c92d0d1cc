/* The map: posts with coordinates, live.  Tiles only if a tile server is
 * configured; the bundled world outline is drawn either way, so the map
 * means something offline. */
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
  var L = window.L, map = null, layer = null, markers = [], generation = 0;

  if (L) {
    map = L.map(box, { worldCopyJump: true, preferCanvas: true, minZoom: 1, maxZoom: 18 }).setView([25, 5], 2);
    var tiles = box.getAttribute("data-tile-url");
    if (tiles) {
      L.tileLayer(tiles, { attribution: box.getAttribute("data-tile-attribution") || "", maxZoom: 18 }).addTo(map);
    }
    if (window.topojson) {
      M.getJSON("/static/vendor/land-110m.json").then(function (topo) {
        var land = window.topojson.feature(topo, topo.objects.land);
        var outline = L.geoJSON(land, { interactive: false, style: { color: "#94a3b8", weight: 1, fillColor: "#f8fafc", fillOpacity: tiles ? 0 : 1 } });
        outline.addTo(map);
        outline.bringToBack();
      }).catch(function (e) { if (window.console) console.error(e); });
    }
    layer = L.layerGroup().addTo(map);
  } else {
    box.classList.add("hidden");
    list.classList.remove("hidden");
  }

  function add(p, fresh) {
    if (p.lat === null || p.lat === undefined || p.lon === null || p.lon === undefined) return;
    var label = (p.sentiment && p.sentiment.label) || "neutral";
    if (map) {
      var marker = L.circleMarker([p.lat, p.lon], { radius: fresh ? 8 : 6, color: "#ffffff", weight: 1, fillColor: COLORS[label] || COLORS.neutral, fillOpacity: 0.85 });
      marker.bindPopup(function () { return M.postCard(p, false); }, { maxWidth: 320 });
      marker.addTo(layer);
      markers.push(marker);
      if (markers.length > MAX_MARKERS) layer.removeLayer(markers.shift());
    } else {
      list.insertBefore(M.postCard(p, fresh), list.firstChild);
      while (list.children.length > 500) list.removeChild(list.lastChild);
    }
    countEl.textContent = M.num(map ? markers.length : list.children.length);
  }

  function load() {
    var mine = ++generation;
    M.getJSON("/ui/geo.json" + M.query({ topic: topicSelect.value, range: rangeSelect.value })).then(function (body) {
      if (mine !== generation) return;
      if (layer) layer.clearLayers();
      markers = [];
      M.clear(list);
      body.posts.slice().reverse().forEach(function (p) { add(p, false); });
      countEl.textContent = M.num(map ? markers.length : list.children.length);
    }).catch(function (e) { if (window.console) console.error(e); });
  }

  var channel = M.live(function () {
    return { kinds: ["post", "alert"], geo: true, topics: topicSelect.value ? [topicSelect.value] : null };
  }, function (env) { if (env.type === "post") add(env.data, true); });

  [topicSelect, rangeSelect].forEach(function (s) {
    s.addEventListener("change", function () { channel.resubscribe(); load(); });
  });
  document.getElementById("map-filters").addEventListener("submit", function (ev) { ev.preventDefault(); });
  window.monitorMap = { count: function () { return map ? markers.length : list.children.length; } };
  load();
})();
