"""
The dashboard's trending terms in a real Chromium against a real hub fed
real tweets: ordinary posts before and now, a burst of transport complaints
now.  The table shows what rose, not filler words or the topic's own name.
"""

import csv
import json
import re
import time

from playwright.sync_api import expect

from monitor.analysis.trending import stop_words
from tests.analysis.test_trending import COMPLAINTS
from tests.web.test_ui_polish import shoot


def test_trending_terms_are_what_rose(hub, admin):
    """Range "last hour": the complaints' words (a phrase too) lead, no stop word and no "acme"."""
    with open(COMPLAINTS, encoding="utf-8", newline="") as f:
        rows = [(text, domain) for _, text, _, domain in csv.reader(f)]
    ordinary = [t for t, d in rows if d.startswith("random")][:300]
    transport = [t for t, d in rows if d == "transport"][:120]
    now = time.time()
    posts = [{"text": "Acme " + t, "created_at": now - 3600 - 60 - i * 10} for i, t in enumerate(ordinary[::2])]
    posts += [{"text": "Acme " + t, "created_at": now - 60 - i * 10} for i, t in enumerate(ordinary[1::2] + transport)]
    hub.append(*posts)
    expected = len(ordinary[1::2] + transport)
    page = admin
    # The replay is stored within seconds; ask until every post is counted
    # (the page's own figure also grows by live increments, its lists not).
    deadline = time.monotonic() + 60
    while True:
        data = page.request.get(hub.base + "/ui/stats.json?topic=Acme&range=1h").json()
        if data["count"] >= expected or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    assert data["count"] == expected, json.dumps(data)[:500]
    page.goto(hub.base + "/dashboard?topic=Acme&range=1h")
    page.wait_for_function("() => window.monitorDashboard && window.monitorDashboard.data() !== null")
    terms = page.locator("#trending-terms tr td:first-child > span:first-child")
    expect(terms.first).to_be_visible()
    shown = terms.all_inner_texts()
    assert shown[0] == "flight", shown
    assert "train" in shown and "hey" not in shown, shown
    english = stop_words("en")
    for term in shown:
        assert "acme" not in term.split(), shown
        assert not all(w in english for w in term.split()), shown
    chips = page.locator("#top-terms").inner_text().split()
    assert "acme" not in chips
    expect(page.locator("#trending-terms-note")).to_contain_text("most surprising rise first")
    page.locator("#trending-terms").scroll_into_view_if_needed()
    shoot(page, "dashboard-trending-terms")


def test_seven_digit_engagement_fits_at_phone_and_desktop_width(hub, playwright, admin):
    """1,234,567 likes: the card shows a short figure with the exact one on hover, inside its card, at 390 and 1400 px."""
    from tests.web.conftest import launch, login

    hub.append({"text": "acme viral post", "likes": 1234567, "reposts": 45678, "replies": 3456})
    admin.goto(hub.base + "/dashboard?range=1h")
    deadline = time.monotonic() + 30
    while "M" not in admin.locator("#kpi-engagement").inner_text() and time.monotonic() < deadline:
        admin.wait_for_timeout(300)
        admin.reload()
    context = launch(playwright, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        phone = context.new_page()
        login(phone, hub, "admin")
        for page, width in ((admin, 1400), (phone, 390)):
            page.goto(hub.base + "/dashboard?range=1h")
            value = page.locator("#kpi-engagement")
            expect(value).to_have_text(re.compile(r"^\d(\.\d)?M$"))
            assert int(value.get_attribute("title").replace(",", "")) >= 1234567
            card = page.locator(".kpi", has=value)
            for element in (card, value, card.locator(".kpi-sub")):
                assert element.evaluate("e => e.scrollWidth <= e.clientWidth"), (width, element)
            b, c = value.bounding_box(), card.bounding_box()
            assert c["x"] <= b["x"] and b["x"] + b["width"] <= c["x"] + c["width"], (width, b, c)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            card.scroll_into_view_if_needed()
            shoot(page, f"dashboard-engagement-{width}")
    finally:
        context.close()


def test_backtest_times_are_relative_with_the_exact_time_on_hover(hub, admin):
    """The backtest's period and its incidents read "5 min ago", the exact local time in the title, no raw ISO."""
    hub.append(*({"text": f"acme is down again {i}", "created_at": time.time() - 600 + i} for i in range(5)))
    page = admin
    page.goto(hub.base + "/alerts/rules/new")
    page.fill("#field-name", "down-backtest")
    page.fill("#field-phrases", "acme is down")
    page.select_option("#field-period", "24h")
    deadline = time.monotonic() + 30
    while True:
        page.click("#backtest-rule")
        expect(page.locator("#backtest-results")).to_be_visible()
        if page.locator("#backtest-table time").count() or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    results = page.locator("#backtest-results")
    times = results.locator("time.ago")
    assert times.count() >= 3  # since, until, and an incident's opening
    for i in range(times.count()):
        t = times.nth(i)
        assert re.search(r"ago|now|yesterday|\d", t.inner_text()), t.inner_text()
        assert "T" not in t.inner_text() and t.get_attribute("title"), t.inner_text()
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", results.inner_text()), results.inner_text()
    shoot(page, "rule-backtest")
