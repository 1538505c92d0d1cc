/* The offline basemap: world-atlas TopoJSON (Natural Earth) as Leaflet
 * layers.  world-atlas keeps shapes whole across the 180° meridian (Russia,
 * Fiji) and lets Antarctica wind round the pole, which is right on a sphere
 * but draws lines across the world and bands over the ocean on a flat map.
 * So every ring is cut here: its longitudes made continuous, a ring round
 * the pole closed along the pole, then clipped into world copies at
 * [-540, 540] (so a wide view across 180° shows land, not a gap).  Borders are
 * drawn from the arcs as lines, split where they cross, so no cut edge is
 * ever stroked. */
(function () {
  "use strict";
  var B = (window.MonitorBasemap = {});
  var WINDOW = [-540, 540];
  var SHIFTS = [-360, 0, 360];

  /* Longitudes made continuous: a step of more than 180° crosses the meridian. */
  B.unwrap = function (points) {
    var out = [], offset = 0, prev = null;
    for (var i = 0; i < points.length; i++) {
      var lon = points[i][0];
      if (prev !== null) {
        var step = lon + offset - prev;
        if (step > 180) offset -= 360;
        else if (step < -180) offset += 360;
      }
      prev = lon + offset;
      out.push([prev, points[i][1]]);
    }
    return out;
  };

  /* A ring that ends 360° from where it began goes round a pole: close it
   * along that pole, in steps, so no edge is long. */
  function closeRound(ring) {
    var first = ring[0], last = ring[ring.length - 1];
    var turn = last[0] - first[0];
    if (Math.abs(turn) < 180) return ring;
    var lat = 0;
    for (var i = 0; i < ring.length; i++) lat += ring[i][1];
    var pole = lat < 0 ? -90 : 90;
    var out = ring.slice();
    var steps = Math.ceil(Math.abs(turn) / 30);
    for (var s = 0; s <= steps; s++) out.push([last[0] - (turn * s) / steps, pole]);
    out.push(first);
    return out;
  }

  /* Sutherland–Hodgman against one vertical edge: keep x >= edge (side 1) or x <= edge (side -1). */
  function clipSide(ring, edge, side) {
    var out = [];
    for (var i = 0; i < ring.length; i++) {
      var a = ring[i], b = ring[(i + 1) % ring.length];
      var ina = side * (a[0] - edge) >= 0, inb = side * (b[0] - edge) >= 0;
      if (ina) out.push(a);
      if (ina !== inb) {
        var t = (edge - a[0]) / (b[0] - a[0]);
        out.push([edge, a[1] + t * (b[1] - a[1])]);
      }
    }
    return out;
  }

  function clipRing(ring, shift) {
    var moved = ring.map(function (p) { return [p[0] + shift, p[1]]; });
    var r = clipSide(clipSide(moved, WINDOW[0], 1), WINDOW[1], -1);
    return r.length >= 3 ? r : null;
  }

  /* A GeoJSON polygon's rings (outer first) as polygons no wider than the
   * window, each with its holes. */
  B.cutPolygon = function (rings) {
    // Points on a pole (the 1:50m Antarctica runs along it) are left out:
    // an edge between two of them is no crossing, and closeRound puts the
    // pole back.
    var ready = rings.map(function (r) {
      return r.filter(function (p) { return Math.abs(p[1]) < 89.99; });
    }).filter(function (r) { return r.length >= 3; }).map(function (r) { return closeRound(B.unwrap(r)); });
    if (!ready.length) return [];
    var out = [];
    SHIFTS.forEach(function (shift) {
      var outer = clipRing(ready[0], shift);
      if (!outer) return;
      var polygon = [outer];
      for (var i = 1; i < ready.length; i++) {
        var hole = clipRing(ready[i], shift);
        if (hole) polygon.push(hole);
      }
      out.push(polygon);
    });
    return out;
  };

  /* A line split where it crosses the meridian, in each world copy. */
  B.cutLine = function (points) {
    var parts = [], part = [points[0]];
    for (var i = 1; i < points.length; i++) {
      var a = points[i - 1], b = points[i];
      var step = b[0] - a[0];
      if (Math.abs(step) > 180) {
        var edge = step < 0 ? 180 : -180;
        var bx = b[0] + (step < 0 ? 360 : -360);
        var t = bx === a[0] ? 0 : (edge - a[0]) / (bx - a[0]);
        var lat = a[1] + t * (b[1] - a[1]);
        part.push([edge, lat]);
        parts.push(part);
        part = [[-edge, lat]];
      }
      part.push(b);
    }
    parts.push(part);
    var out = [];
    SHIFTS.forEach(function (shift) {
      parts.forEach(function (p) {
        clipLine(p.map(function (q) { return [q[0] + shift, q[1]]; }), out);
      });
    });
    return out;
  };

  /* The stretches of a line inside the window, added to out. */
  function clipLine(points, out) {
    var part = [];
    function cross(a, b, edge) {
      var t = (edge - a[0]) / (b[0] - a[0]);
      return [edge, a[1] + t * (b[1] - a[1])];
    }
    for (var i = 0; i < points.length; i++) {
      var p = points[i], inside = p[0] >= WINDOW[0] && p[0] <= WINDOW[1];
      var prev = i ? points[i - 1] : null;
      var prevInside = prev && prev[0] >= WINDOW[0] && prev[0] <= WINDOW[1];
      if (prev && inside !== prevInside) {
        var edge = (inside ? prev : p)[0] < WINDOW[0] ? WINDOW[0] : WINDOW[1];
        part.push(cross(prev, p, edge));
        if (!inside) { out.push(part); part = []; }
      }
      if (inside) part.push(p);
    }
    if (part.length >= 2) out.push(part);
    for (var k = out.length - 1; k >= 0 && out[k].length < 2; k--) out.splice(k, 1);
  }

  /* Area in km² (as on a cylindrical equal-area map): only to rank labels. */
  function area(ring) {
    var s = 0, rad = Math.PI / 180;
    for (var i = 0; i < ring.length; i++) {
      var a = ring[i], b = ring[(i + 1) % ring.length];
      s += (b[0] - a[0]) * rad * (Math.sin(a[1] * rad) + Math.sin(b[1] * rad)) / 2;
    }
    return Math.abs(s) * 6371 * 6371;
  }

  function inside(ring, x, y) {
    var c = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var a = ring[i], b = ring[j];
      if ((a[1] > y) !== (b[1] > y) && x < ((b[0] - a[0]) * (y - a[1])) / (b[1] - a[1]) + a[0]) c = !c;
    }
    return c;
  }

  /* Where a polygon's name goes: its centroid if that is inside, else the
   * middle of the widest stretch of land on the centroid's latitude. */
  function labelPoint(ring) {
    var x = 0, y = 0, n = ring.length;
    for (var i = 0; i < n; i++) { x += ring[i][0]; y += ring[i][1]; }
    x /= n; y /= n;
    if (inside(ring, x, y)) return [y, x];
    var xs = [];
    for (var k = 0, j = n - 1; k < n; j = k++) {
      var a = ring[k], b = ring[j];
      if ((a[1] > y) !== (b[1] > y)) xs.push(a[0] + ((y - a[1]) * (b[0] - a[0])) / (b[1] - a[1]));
    }
    xs.sort(function (p, q) { return p - q; });
    var best = null, width = -1;
    for (var m = 0; m + 1 < xs.length; m += 2) {
      if (xs[m + 1] - xs[m] > width) { width = xs[m + 1] - xs[m]; best = (xs[m] + xs[m + 1]) / 2; }
    }
    return best === null ? [y, x] : [y, best];
  }

  /* The zoom from which a country of this area is named. */
  function labelZoom(km2) {
    if (km2 >= 2.5e6) return 2;
    if (km2 >= 6e5) return 3;
    if (km2 >= 1.2e5) return 4;
    if (km2 >= 2.5e4) return 5;
    return 6;
  }

  /* Leaflet latlngs ([lat, lon]) of [lon, lat] rings. */
  function latlngs(rings) { return rings.map(function (r) { return r.map(function (p) { return [p[1], p[0]]; }); }); }

  /* One level of detail: land filled, coastlines and borders stroked, and
   * the countries' names, each with the zoom it appears at. */
  B.build = function (L, topojson, topo, options) {
    var shapes = [], labels = [];
    var style = options.style;
    topo.objects.countries.geometries.forEach(function (g) {
      var f = topojson.feature(topo, g);
      if (!f.geometry) return;
      var polygons = f.geometry.type === "Polygon" ? [f.geometry.coordinates] : f.geometry.coordinates;
      var pieces = [], biggest = null, biggestArea = 0;
      polygons.forEach(function (rings) {
        B.cutPolygon(rings).forEach(function (piece) {
          pieces.push(latlngs(piece));
          var outer = piece[0], a = area(outer);
          var x = labelPoint(outer)[1];
          if (x >= -180 && x <= 180 && a > biggestArea) { biggestArea = a; biggest = outer; }
        });
      });
      if (pieces.length) shapes.push(L.polygon(pieces, Object.assign({ interactive: false, stroke: false, fillColor: style.land, fillOpacity: 1 }, options.path)));
      var name = f.properties && f.properties.name;
      if (name && biggest) labels.push({ name: name, at: labelPoint(biggest), zoom: labelZoom(biggestArea) });
    });
    function lines(filter, lineStyle) {
      var mesh = topojson.mesh(topo, topo.objects.countries, filter);
      var parts = [];
      mesh.coordinates.forEach(function (line) { B.cutLine(line).forEach(function (p) { parts.push(p); }); });
      return L.polyline(latlngs(parts), Object.assign({ interactive: false, fill: false }, lineStyle, options.path));
    }
    shapes.push(lines(function (a, b) { return a === b; }, { color: style.coast, weight: 1 }));
    shapes.push(lines(function (a, b) { return a !== b; }, { color: style.border, weight: 0.8, dashArray: style.borderDash }));
    return { group: L.layerGroup(shapes), labels: labels };
  };
})();
