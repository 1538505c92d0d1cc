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

import pytest
from playwright.sync_api import expect

from tests.web.conftest import CONFIG, TOKEN, launch, login
from tests.web.test_browser import SHOWN_WITHIN_MS, wait_live
from tests.web.test_ui_polish import SCREENSHOTS, shoot

STORIES_CONFIG = CONFIG + """
[stories]
enabled = true
[[sources]]
kind = "replay"
name = "news"
path = "news.jsonl"
follow = true
"""


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
        found = [s for s in api(hub, "/api/v1/stories?limit=200")["stories"] if word in s["terms"]]
        if found and found[0]["size"] >= size or time.monotonic() > deadline:
            assert found, f"no story with {word!r}"
            return found[0]
        time.sleep(0.3)


def seed(hub, tag):
    """Two stories, on two networks, with places: a quake in Japan and a cup final in Spain."""
    quake = [{"text": f"acme terrible earthquake tokyo buildings shaking {tag}{i}", "lat": 35.68 + i / 50, "lon": 139.69}
             for i in range(6)]  # fmt: skip
    final = [{"text": f"acme football final goal stadium madrid {tag}{i}", "lat": 40.42, "lon": -3.70 + i / 50}
             for i in range(5)]  # fmt: skip
    hub.append(*quake[:4], *final[:3])
    append_news(hub, *quake[4:], *final[3:])
    return stories_with(hub, "earthquake", 6), stories_with(hub, "football", 5)


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
    page.locator("#stories-panel .story", has=page.locator(".term", has_text="earthquake")).locator("a.story-terms").click()
    expect(page).to_have_url(re.compile(r"/posts\?story=" + re.escape(quake["id"]) + "$"))
    rows = page.locator("#posts-table tbody tr")
    expect(rows).to_have_count(6)
    for text in rows.locator("td.post-text").all_inner_texts():
        assert "earthquake" in text, text
    expect(page.locator("h1")).to_contain_text("earthquake")
    expect(page.locator("#story-heading")).to_contain_text("6 posts")
    shoot(page, "stories-posts")
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
            for part in (story, story.locator("svg.sparkline"), story.locator("svg.sentiment-bar"), story.locator(".story-terms")):
                b = part.bounding_box()
                assert b["x"] >= c["x"] - 0.5 and b["x"] + b["width"] <= c["x"] + c["width"] + 0.5, (i, b, c)
        assert card.evaluate("e => e.scrollWidth <= e.clientWidth")
        card.screenshot(path=os.path.join(SCREENSHOTS, "stories-dashboard-phone.png"))
    finally:
        context.close()
