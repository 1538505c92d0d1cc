"""
Stories in a real Chromium against a real hub with stories turned on and
two replayed networks: the dashboard's Stories panel (keywords, sparkline,
a link to the story's posts), the map coloured by story with a legend of
their keywords that filters, and the live feed filtered by story.
Screenshots go to C{var/screenshots/stories-*.png} for a person to look at.
"""

import json
import os
import re
import time
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.web.conftest import CONFIG, TOKEN, launch, login
from tests.web.test_browser import SHOWN_WITHIN_MS, wait_live
from tests.web.test_ui_polish import SCREENSHOTS, shoot

STORIES_CONFIG = (
    CONFIG
    + """
[stories]
enabled = true
[[sources]]
kind = "replay"
name = "news"
path = "news.jsonl"
follow = true
"""
)


@pytest.fixture(scope="module")
def hub_config():
    return STORIES_CONFIG


def append_news(hub, *posts):
    """Posts from the second network (its own replay file)."""
    now = time.time()
    with open(os.path.join(hub.dir, "news.jsonl"), "a", encoding="utf-8") as f:
        for i, p in enumerate(posts):
            f.write(json.dumps({"id": f"n{time.time_ns()}-{i}", "author": "newsdesk", "created_at": now, **p}) + "\n")


def api(hub, path):
    status, _, body = hub.request(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (path, body[:300])
    return json.loads(body)


def stories_with(hub, word, size, seconds=30):
    """The story whose terms have C{word}, once it has C{size} posts (bounded wait)."""
    deadline = time.monotonic() + seconds
    while True:
        found = story_with(hub, word)
        if found and found["size"] >= size or time.monotonic() > deadline:
            assert found, f"no story with {word!r}"
            return found
        time.sleep(0.3)


def story_with(hub, word):
    """The largest story whose terms have C{word}, or None."""
    found = [s for s in api(hub, "/api/v1/stories?limit=200")["stories"] if word in s["terms"]]
    return found[0] if found else None


def size_now(hub, word):
    """How many posts the story with C{word} has now (0 with none): the hub is
    shared by the module's tests, so a setup waits for this many more."""
    found = story_with(hub, word)
    return found["size"] if found else 0


def seed(hub, tag):
    """Two stories, on two networks, with places: a quake in Japan and a cup final in Spain."""
    quake = [{"text": f"acme terrible earthquake tokyo buildings shaking {tag}{i}", "lat": 35.68 + i / 50, "lon": 139.69}
             for i in range(6)]  # fmt: skip
    final = [{"text": f"acme football final goal stadium madrid {tag}{i}", "lat": 40.42, "lon": -3.70 + i / 50}
             for i in range(5)]  # fmt: skip
    had = size_now(hub, "earthquake"), size_now(hub, "football")
    hub.append(*quake[:4], *final[:3])
    append_news(hub, *quake[4:], *final[3:])
    return stories_with(hub, "earthquake", had[0] + 6), stories_with(hub, "football", had[1] + 5)


def test_dashboard_panel_shows_stories_and_leads_to_their_posts(hub, admin, watch):
    """The panel names each story by its keywords with a sparkline and its networks; its link lists that story's posts only."""
    page = admin
    quake, final = seed(hub, "d")
    page.goto(hub.base + "/dashboard?range=1h")
    panel = page.locator("#stories-panel")
    row = panel.locator(".story", has=page.locator(".term", has_text="earthquake"))
    expect(row).to_have_count(1)
    expect(row.locator(".story-size")).to_have_text("6 posts")
    expect(row.locator(".chip.source")).to_have_count(2)
    expect(row.locator(".story-sources")).to_contain_text("inbox")
    expect(row.locator(".story-sources")).to_contain_text("news")
    points = row.locator("svg.sparkline polyline").get_attribute("points").split()
    assert len(points) == 60
    # The newest minute holds the posts: the line rises at its right end.
    assert float(points[-1].split(",")[1]) < float(points[0].split(",")[1])
    box = row.locator("svg.sparkline").bounding_box()
    assert box["width"] > 60 and box["height"] > 10
    expect(panel.locator(".story", has=page.locator(".term", has_text="football"))).to_have_count(1)
    # The panel refreshes with the others: a third story appears without a reload.
    append_news(hub, *({"text": f"acme volcano eruption iceland ash cloud v{i}"} for i in range(3)))
    stories_with(hub, "volcano", 3)
    page.evaluate("window.monitorDashboard.loadStories()")
    expect(panel.locator(".term", has_text="volcano")).to_be_visible()
    panel = page.locator("#stories-panel")
    panel.scroll_into_view_if_needed()
    shoot(page, "stories-dashboard")
    page.locator("#stories-panel .story", has=page.locator(".term", has_text="earthquake")).locator(
        "a.story-terms"
    ).click()
    expect(page).to_have_url(re.compile(r"/posts\?story=" + re.escape(quake["id"]) + "$"))
    rows = page.locator("#posts-table tbody tr")
    expect(rows).to_have_count(6)
    for text in rows.locator("td.post-text").all_inner_texts():
        assert "earthquake" in text, text
    expect(page.locator("h1")).to_contain_text("earthquake")
    expect(page.locator("#story-heading")).to_contain_text("6 posts")
    shoot(page, "stories-posts")
    # A story the hub no longer holds (faded, or from before a reset) is a page, not an error.
    page.goto(hub.base + "/posts?story=s999999")
    expect(page.locator("#story-heading")).to_contain_text("no longer among the live stories")
    assert watch.problems == []


def test_dashboard_panel_fits_a_phone(hub, playwright):
    """At 390 px each story's keywords, sparkline and bar stay inside the card."""
    seed(hub, "p")
    context = launch(playwright, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        login(page, hub, "admin")
        page.goto(hub.base + "/dashboard?range=1h")
        card = page.locator("#stories-panel")
        expect(card.locator(".story").first).to_be_visible()
        c = card.bounding_box()
        assert c["x"] >= 0 and c["x"] + c["width"] <= 390, c
        for i in range(card.locator(".story").count()):
            story = card.locator(".story").nth(i)
            for part in (
                story,
                story.locator("svg.sparkline"),
                story.locator("svg.sentiment-bar"),
                story.locator(".story-terms"),
            ):
                b = part.bounding_box()
                assert b["x"] >= c["x"] - 0.5 and b["x"] + b["width"] <= c["x"] + c["width"] + 0.5, (i, b, c)
        assert card.evaluate("e => e.scrollWidth <= e.clientWidth")
        card.screenshot(path=os.path.join(SCREENSHOTS, "stories-dashboard-phone.png"))
    finally:
        context.close()


def two_placed_stories(hub, tag):
    """A wildfire near Los Angeles (on both networks) and a marathon in Berlin, with coordinates."""
    fire = [{"text": f"acme wildfire california smoke evacuation {tag}{i}", "lat": 34.05 + i / 20, "lon": -118.24}
            for i in range(5)]  # fmt: skip
    run = [{"text": f"acme marathon berlin runners record {tag}{i}", "lat": 52.52, "lon": 13.40 + i / 20}
           for i in range(4)]  # fmt: skip
    had = size_now(hub, "wildfire"), size_now(hub, "marathon")
    fire_ids = hub.append(*fire[:3], *run)
    append_news(hub, *fire[3:])
    return stories_with(hub, "wildfire", had[0] + 5), stories_with(hub, "marathon", had[1] + 4), fire_ids


MARKERS = """() => {
    const out = [];
    window.monitorMap.posts.eachLayer(m => out.push({story: m.options.story, fill: m.options.fillColor}));
    return out;
}"""


def test_map_colours_posts_by_story_with_a_legend_that_filters(hub, admin, watch):
    """Two stories' markers have two colours; the legend names their keywords; a click shows one story, another click all."""
    page = admin
    fire, run, _ = two_placed_stories(hub, "m")
    page.goto(hub.base + "/map?range=1h#2/40/-50")
    wait_live(page)
    page.wait_for_function("n => window.monitorMap.count() >= n", arg=9, timeout=10000)
    legend = page.locator("#map-legend")
    fire_entry = legend.locator(".legend-story", has_text="wildfire")
    run_entry = legend.locator(".legend-story", has_text="marathon")
    expect(fire_entry).to_have_count(1)
    expect(run_entry).to_have_count(1)
    expect(fire_entry.locator(".count")).to_have_text("5")
    colours = page.evaluate("ids => ids.map(id => window.monitorMap.colourOf(id))", [fire["id"], run["id"]])
    assert colours[0] != colours[1] and "#a8a29e" not in colours, colours
    for entry, colour in ((fire_entry, colours[0]), (run_entry, colours[1])):
        assert entry.locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor") == rgb(colour)
    # Every marker of a story has that story's colour.
    markers = page.evaluate(MARKERS)
    for story, colour in ((fire["id"], colours[0]), (run["id"], colours[1])):
        fills = {m["fill"] for m in markers if m["story"] == story}
        assert fills == {colour}, (story, fills)
    shot = page.locator(".map-card")
    page.evaluate("() => { window.monitorMap.map.setView([44, -50], 2, {animate: false}); }")
    page.wait_for_timeout(300)
    shot.screenshot(path=os.path.join(SCREENSHOTS, "stories-map.png"))
    total = page.evaluate("window.monitorMap.visible()")
    fire_entry.click()
    expect(fire_entry).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("window.monitorMap.visible()") == 5
    assert {m["story"] for m in page.evaluate(MARKERS)} == {fire["id"]}
    expect(page).to_have_url(re.compile(r"[?&]story=" + re.escape(fire["id"]) + r"\b"))
    expect(page.locator("#map-filtered")).to_contain_text("5 of story")
    # A post of the chosen story arriving live is drawn in its colour; one of another story is held back.
    hub.append(
        {"text": "acme marathon berlin runners record live", "lat": 52.5, "lon": 13.3},
        {"text": "acme wildfire california smoke evacuation live", "lat": 34.3, "lon": -118.5},
    )
    page.wait_for_function("() => window.monitorMap.visible() === 6", timeout=SHOWN_WITHIN_MS)
    assert page.evaluate("window.monitorMap.count()") == total + 2
    assert {m["fill"] for m in page.evaluate(MARKERS)} == {colours[0]}
    shot.screenshot(path=os.path.join(SCREENSHOTS, "stories-map-filtered.png"))
    fire_entry = page.locator("#map-legend .legend-story", has_text="wildfire")
    fire_entry.click()
    expect(fire_entry).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("window.monitorMap.visible()") == total + 2
    # Coloured by sentiment instead, the sentiment legend comes back.
    page.select_option("#m-colour", "sentiment")
    expect(page.locator("#legend-sentiment")).to_be_visible()
    expect(legend).to_be_hidden()
    assert watch.problems == []


def rgb(hex_colour):
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_map_legend_fits_a_phone(hub, playwright):
    """At 390 px the legend's entries wrap inside the card; long keywords are cut, not spilled."""
    two_placed_stories(hub, "f")
    context = launch(playwright, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        login(page, hub, "admin")
        page.goto(hub.base + "/map?range=1h")
        card = page.locator(".map-card")
        expect(page.locator("#map-legend .legend-story").first).to_be_visible(timeout=10000)
        c = card.bounding_box()
        entries = page.locator("#map-legend .legend-story, #map-legend .legend-other")
        for i in range(entries.count()):
            b = entries.nth(i).bounding_box()
            assert b["x"] >= c["x"] - 0.5 and b["x"] + b["width"] <= c["x"] + c["width"] + 0.5, (i, b, c)
        card.screenshot(path=os.path.join(SCREENSHOTS, "stories-map-phone.png"))
    finally:
        context.close()


def test_live_feed_filtered_by_story_gets_only_its_posts(hub, admin, watch):
    """?story= picks the story in the choice, the page says so, the first load and the live posts are that story's only, and the count is exact."""
    page = admin
    fire, run, _ = two_placed_stories(hub, "l")
    page.goto(hub.base + "/live?" + urlencode({"story": fire["id"]}))
    wait_live(page)
    expect(page.locator("#f-story")).to_have_value(fire["id"])
    expect(page.locator("#feed-filter")).to_be_visible()
    expect(page.locator("#feed-filter-text")).to_contain_text("wildfire")
    cards = page.locator("#feed .post")
    expect(cards.first).to_be_visible()
    (now,) = [s for s in api(hub, "/api/v1/stories?limit=200")["stories"] if s["id"] == fire["id"]]
    # The setup's last posts may reach the page live rather than in its
    # first load: wait for them, the count is still exact.
    first = min(50, now["size"])
    expect(cards).to_have_count(first)
    for text in cards.locator(".post-text").all_inner_texts():
        assert "wildfire" in text, text
    # The setup's own posts may still be arriving live (stored around the
    # page's subscription): the rate counts from what it says now.
    before = int(page.locator("#feed-rate").inner_text())
    marker = f"x{time.time_ns()}"
    # The other story's posts are written first: when the last wildfire
    # post is shown, the hub has pushed (and the page refused) them all.
    hub.append(
        *({"text": f"acme marathon berlin runners record {marker}{i}"} for i in range(3)),
        {"text": f"acme garden gnomes sale {marker}"},
        {"text": f'acme wildfire california smoke evacuation <img src=x onerror="window.pwned=1"> {marker}h'},
        *({"text": f"acme wildfire california smoke evacuation {marker}{i}"} for i in range(2)),
    )
    expect(page.locator("#feed .post", has_text=f"evacuation {marker}1")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text=f"evacuation {marker}0")).to_be_visible()
    expect(page.locator("#feed .post", has_text=marker)).to_have_count(3)
    expect(page.locator("#feed-count")).to_have_text(str(first + 3))
    expect(page.locator("#feed-rate")).to_have_text(str(before + 3))
    # Post text is text: the hostile post's markup is shown, never run.
    expect(page.locator("#feed .post", has_text=f"{marker}h").locator(".post-text")).to_contain_text(
        '<img src=x onerror="window.pwned=1">'
    )
    assert page.locator("#feed img").count() == 0 and page.evaluate("window.pwned") is None
    shoot(page, "stories-live-filtered")
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        for part in ("#live-filters", "#feed-filter", "#feed .post >> nth=0"):
            b = page.locator(part).bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= 390, (part, b)
        page.screenshot(path=os.path.join(SCREENSHOTS, "stories-live-phone.png"))
    finally:
        page.set_viewport_size({"width": 1400, "height": 900})
    expect(cards.first.locator(".story-chip")).to_contain_text("wildfire")
    # Any story again: the address forgets it, the feed reloads with every story.
    page.select_option("#f-story", "")
    expect(page).not_to_have_url(re.compile(r"story="))
    expect(page.locator("#feed-filter")).to_be_hidden()
    expect(page.locator("#feed .post", has_text=f"runners record {marker}2")).to_be_visible()
    # And chosen from a post's story, it is kept in the address.
    page.locator("#feed .post", has_text=f"runners record {marker}2").locator(".story-chip").click()
    expect(page).to_have_url(re.compile(r"[?&]story=" + re.escape(run["id"])))
    expect(page.locator("#feed .post", has_text=f"wildfire california smoke evacuation {marker}")).to_have_count(0)
    expect(page.locator("#feed .post", has_text=f"runners record {marker}0")).to_be_visible()
    assert watch.problems == []
