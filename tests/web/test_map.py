"""
The map page in a real Chromium against a real hub: the offline basemap cut
at the 180° meridian, its 1:50m detail and country names when zoomed in,
clusters with counts that spiderfy, hostile text in popups, one marker per
post, and topic, range and view kept in the address.  Screenshots go to
C{var/screenshots/map-*.png} for a person to look at.
"""

import os
import re
import time

from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.web.conftest import CONFIG, PASSWORDS, HubProcess, launch, login
from tests.web.test_browser import SHOWN_WITHIN_MS, wait_live

SCREENSHOTS = os.path.join(str(ROOT), "var", "screenshots")
SEA = (0xDB, 0xEA, 0xFE)  # the map's background
LAND = (0xF8, 0xFA, 0xFC)  # the basemap's fill


def shot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"map-{name}.png"))


def open_map(page, hub, address="", basemap="110m"):
    page.goto("about:blank")  # a new load, even if only the #view differs
    page.goto(hub.base + "/map" + address)
    wait_live(page)
    expect(page.locator("#map")).to_have_attribute("data-basemap", basemap, timeout=10000)


def idle(page):
    """Wait for the map to finish moving and the canvas to be drawn."""
    page.evaluate("""() => new Promise(done => {
        const map = window.monitorMap.map;
        const settle = () => requestAnimationFrame(() => requestAnimationFrame(done));
        if (map._animatingZoom || map._panAnim && map._panAnim._inProgress) map.once("moveend", settle); else settle();
    })""")


def go(page, lat, lon, zoom):
    page.evaluate(
        "([lat, lon, zoom]) => { window.monitorMap.map.setView([lat, lon], zoom, {animate: false}); }", [lat, lon, zoom]
    )
    idle(page)


#: The colour the basemap's canvas has at a place, or None if the place is
#: off the canvas.
PIXEL = """([lat, lon]) => {
    const map = window.monitorMap.map;
    const canvas = map.getPane("basemap").querySelector("canvas");
    const at = map.latLngToContainerPoint([lat, lon]);
    const box = map.getContainer().getBoundingClientRect(), c = canvas.getBoundingClientRect();
    const x = Math.round((box.left + at.x - c.left) * canvas.width / c.width);
    const y = Math.round((box.top + at.y - c.top) * canvas.height / c.height);
    if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return null;
    const d = canvas.getContext("2d").getImageData(x, y, 1, 1).data;
    return d[3] === 0 ? "sea" : [d[0], d[1], d[2]];
}"""


def colour(page, lat, lon):
    found = page.evaluate(PIXEL, [lat, lon])
    assert found is not None, (lat, lon)
    return "sea" if found == "sea" else ("land" if tuple(found) == LAND else tuple(found))


#: Every edge the basemap gives Leaflet, as [lon1, lon2, lat1, lat2] where
#: the edge is longer than 60° of longitude, and the basemap's longitudes' range.
LONG_EDGES = """() => {
    const map = window.monitorMap.map, found = [], range = [Infinity, -Infinity];
    function walk(lls, closed) {
        if (!lls.length) return;
        if (Array.isArray(lls[0])) { lls.forEach(l => walk(l, closed)); return; }
        for (let i = 0; i < lls.length; i++) {
            const a = lls[i];
            range[0] = Math.min(range[0], a.lng); range[1] = Math.max(range[1], a.lng);
            if (i + 1 === lls.length && !closed) break;
            const b = lls[(i + 1) % lls.length];
            if (Math.abs(a.lng - b.lng) > 60) found.push([a.lng, b.lng, a.lat, b.lat]);
        }
    }
    map.eachLayer(l => {
        if (l.options.pane === "basemap" && l.getLatLngs) walk(l.getLatLngs(), l instanceof L.Polygon);
    });
    return {found, range};
}"""


def test_basemap_is_cut_at_the_antimeridian(hub, admin, watch):
    """Russia, Fiji and Antarctica draw no line across the world and no band over the ocean, at either detail."""
    page = admin
    for zoom, basemap in ((2, "110m"), (3, "50m")):
        open_map(page, hub, f"#{zoom}/30/10", basemap)
        idle(page)
        edges = page.evaluate(LONG_EDGES)
        assert edges["found"] == [] and -540 <= edges["range"][0] and edges["range"][1] <= 540, edges
        # The band the uncut shapes drew over the North Atlantic and the Pacific is sea.
        for lat, lon in ((45, -35), (60, -30), (30, -150), (-20, -130), (-40, 170)):
            go(page, lat, lon, zoom)
            assert colour(page, lat, lon) == "sea", (basemap, lat, lon)
        # And the land on both sides of the meridian is land.
        for lat, lon in ((66.5, 176), (66.5, -174), (-17.8, 178), (-82, 100), (-82, -100), (62, 100)):
            go(page, lat, lon, zoom)
            assert colour(page, lat, lon) != "sea", (basemap, lat, lon)
    go(page, 62, 180, 3)
    shot(page, "antimeridian")
    go(page, 25, 5, 2)
    shot(page, "world")
    assert watch.problems == []


def test_zooming_in_shows_detail_and_names(hub, admin, watch):
    """From zoom 3 the 1:50m borders are drawn, and countries are named by size as one zooms in."""
    page = admin
    open_map(page, hub, "#2/30/10")
    labels = page.locator(".country-label span")
    expect(labels.filter(has_text="Russia")).to_be_visible()
    expect(labels.filter(has_text="France")).to_have_count(0)
    go(page, 50, 10, 4)
    expect(page.locator("#map")).to_have_attribute("data-basemap", "50m")
    expect(labels.filter(has_text="France")).to_be_visible()
    expect(labels.filter(has_text="Switzerland")).to_have_count(0)
    shot(page, "europe")
    go(page, 47, 9.5, 7)
    # Liechtenstein and Andorra are not in the 1:110m file at all.
    expect(labels.filter(has_text="Liechtenstein")).to_be_visible()
    expect(labels.filter(has_text="Switzerland")).to_be_visible()
    # The Lake Constance shore and the Alps' borders: a 1:50m border has
    # points every few km; Switzerland's outline has well over a hundred.
    points = page.evaluate("""() => {
        let n = 0;
        window.monitorMap.map.eachLayer(l => {
            if (l.options.pane !== "basemap" || !l.getLatLngs || l.options.stroke !== false) return;
            const b = l.getBounds();
            if (b.contains([46.8, 8.2])) n = Math.max(n, [].concat(...[].concat(...l.getLatLngs())).length);
        });
        return n;
    }""")
    assert points > 150, points
    shot(page, "alps")
    assert watch.problems == []


def test_clusters_count_and_spiderfy_and_popups_are_text(hub, admin, watch):
    """Forty posts on one spot are one cluster saying 40; a click spreads them; a hostile post's popup shows its markup as text."""
    page = admin
    spot = f"spot{time.time_ns()}"
    # Rings of the sentiment mix (with stories on, the map colours by story unless told).
    open_map(page, hub, "?colour=sentiment#3/62/-10", "50m")
    before = page.evaluate("window.monitorMap.count()")
    hostile = '<img src=x onerror="window.pwned=1"><b>bold</b> acme ' + spot
    ids = hub.append(
        *({"text": f"acme outage in reykjavik {spot} {i}", "lat": 64.1466, "lon": -21.9426} for i in range(39)),
        {"text": hostile, "lat": 64.1466, "lon": -21.9426},
        *({"text": f"acme in dublin {spot} {i}", "lat": 53.35 + i / 100, "lon": -6.26} for i in range(3)),
    )
    page.wait_for_function("n => window.monitorMap.count() >= n", arg=before + 43, timeout=10000)
    assert page.evaluate("window.monitorMap.count()") == before + 43
    idle(page)
    cluster = page.locator(".post-cluster", has_text="40")
    expect(cluster).to_have_count(1)
    title = cluster.locator(".cluster-ring").get_attribute("title")
    counts = re.fullmatch(r"40 posts: (\d+) negative, (\d+) neutral, (\d+) positive", title)
    assert counts and sum(map(int, counts.groups())) == 40, title
    shot(page, "clusters")
    cluster.click()
    expect(page.locator("#map")).to_have_attribute("data-spiderfied", "40")
    page.wait_for_timeout(400)  # the spider's animation (0.3 s in the library's CSS)
    shot(page, "spiderfied")
    # Click the hostile post where the spider put it.
    at = page.evaluate(
        """id => {
        const map = window.monitorMap.map, m = window.monitorMap.marker(id);
        const p = map.latLngToContainerPoint(m.getLatLng()), box = map.getContainer().getBoundingClientRect();
        return [box.left + p.x, box.top + p.y];
    }""",
        "inbox:" + ids[39],
    )
    page.mouse.click(at[0], at[1])
    popup = page.locator(".leaflet-popup-content")
    expect(popup.locator(".post-text")).to_have_text(hostile)
    assert popup.locator(".post-text *").count() == 0
    assert page.evaluate("window.pwned") is None
    item = popup.locator("li.post")
    assert item.evaluate("li => getComputedStyle(li).listStyleType") == "none"
    page.wait_for_timeout(400)  # the popup's fade and the pan that brings it into view
    shot(page, "popup")
    assert watch.problems == []


def test_a_post_loaded_and_pushed_is_one_marker(hub, admin, watch):
    """A post the page loads that the socket also pushes (the load was slow) is one marker, counted once."""
    page = admin
    held = []
    page.route("**/ui/geo.json*", lambda route: held.append(route))
    page.goto(hub.base + "/map#4/48/5")
    wait_live(page)
    page.wait_for_function("() => window.monitorMap && true")
    while not held:
        page.wait_for_timeout(50)
    marker = f"twice{time.time_ns()}"
    (native,) = hub.append({"text": f"acme in lyon {marker}", "lat": 45.76, "lon": 4.84})
    post_id = "inbox:" + native
    page.wait_for_function("id => window.monitorMap.marker(id) !== null", arg=post_id, timeout=10000)
    pushed = page.evaluate("window.monitorMap.count()")
    with page.expect_response("**/ui/geo.json*") as response:
        held[0].continue_()
    loaded = response.value.json()["posts"]
    assert post_id in [p["id"] for p in loaded]
    page.wait_for_function("n => window.monitorMap.count() === n", arg=len(loaded))
    page.unroute("**/ui/geo.json*")
    markers = page.evaluate("""() => window.monitorMap.posts.getLayers().length""")
    assert pushed == 1 and markers == len(loaded)
    assert page.locator("#map-count").inner_text() == str(len(loaded))
    assert watch.problems == []


def test_topic_range_and_view_survive_a_reload(hub, admin, watch, playwright):
    """The address keeps topic, range and view; a reload or a shared link restores them; nonsense in it is ignored."""
    page = admin
    open_map(page, hub)
    page.select_option("#m-topic", "Acme")
    page.select_option("#m-range", "7d")
    go(page, 41.9, 12.5, 6)
    assert "topic=Acme" in page.url and "range=7d" in page.url and "#6/41.9" in page.url
    page.reload()
    wait_live(page)
    expect(page.locator("#m-topic")).to_have_value("Acme")
    expect(page.locator("#m-range")).to_have_value("7d")
    view = page.evaluate(
        "(() => { const m = window.monitorMap.map, c = m.getCenter(); return [m.getZoom(), c.lat, c.lng]; })()"
    )
    assert view[0] == 6 and abs(view[1] - 41.9) < 0.1 and abs(view[2] - 12.5) < 0.1
    expect(page.locator("#map")).to_have_attribute("data-basemap", "50m")
    # A link shared with another user opens the same view.
    context = launch(playwright)
    try:
        other = context.new_page()
        login(other, hub, "vi")
        other.goto(page.url)
        wait_live(other)
        expect(other.locator("#m-topic")).to_have_value("Acme")
        assert other.evaluate("window.monitorMap.map.getZoom()") == 6
    finally:
        context.close()
    for address in ("?topic=Nope&range=forever#99/abc/1", "?range=%3Cscript%3E#7/95/400", "?topic=&range=#x"):
        page.goto(hub.base + "/map" + address)
        wait_live(page)
        expect(page.locator("#m-topic")).to_have_value("")
        expect(page.locator("#m-range")).to_have_value("24h")
        assert page.evaluate("window.monitorMap.map.getZoom()") == 2
    assert watch.problems == []


def test_phone_width(hub, playwright):
    """At 390 px the map fits the screen and still clusters."""
    context = launch(playwright, viewport={"width": 390, "height": 800})
    try:
        page = context.new_page()
        login(page, hub, "vi")
        open_map(page, hub, "#3/55/0", "50m")
        idle(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        expect(page.locator(".post-cluster").first).to_be_visible()
        shot(page, "phone")
    finally:
        context.close()


def test_map_without_cluster_library_or_basemap_says_so(hub, fresh_browser):
    """If the cluster library or the world file cannot be loaded, the map says so and still shows the posts."""
    page = fresh_browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("**/leaflet.markercluster.js", lambda route: route.abort())
    page.route("**/countries-*.json", lambda route: route.abort())
    login(page, hub, "vi")
    hub.append({"text": "acme without clusters", "lat": 1.0, "lon": 2.0})
    page.goto(hub.base + "/map")
    expect(page.locator("#cluster-missing")).to_be_visible()
    expect(page.locator("#basemap-missing")).to_be_visible()
    page.wait_for_function("() => window.monitorMap.count() >= 1", timeout=SHOWN_WITHIN_MS)
    expect(page.locator(".leaflet-overlay-pane path.leaflet-interactive").first).to_be_attached()
    assert errors == []


def test_tiles_replace_the_basemap(playwright, tmp_path):
    """With [web] tile_url set the map shows those tiles and no bundled basemap."""
    config = CONFIG.replace("ws_interval = 0.1", 'ws_interval = 0.1\ntile_url = "http://127.0.0.1:9/{z}/{x}/{y}.png"')
    hub = HubProcess(str(tmp_path), config)
    hub.add_user("vi", "viewer", PASSWORDS["vi"])
    hub.start()
    context = launch(playwright)
    try:
        page = context.new_page()
        login(page, hub, "vi")
        page.goto(hub.base + "/map")
        wait_live(page)
        expect(page.locator(".leaflet-tile").first).to_be_attached()
        assert page.locator("#map").get_attribute("data-basemap") is None
        assert page.locator(".country-label").count() == 0
        assert page.locator("#basemap-missing").is_hidden()
    finally:
        context.close()
        hub.stop()
