"""
What a demanding user notices, in a real Chromium against a real hub: the
live feed's order and duplicates, toasts, alerts and incidents, the rule
form, the dashboard's figures, search totals, exports, the sources page,
the token page and a phone-width layout.  Every page is also saved as a
screenshot under C{var/screenshots/} for a person to look at.
"""

import csv
import io
import os
import re
import time

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.web.conftest import CONFIG, Watch, launch, login
from tests.web.test_browser import SHOWN_WITHIN_MS, wait_live

SCREENSHOTS = os.path.join(str(ROOT), "var", "screenshots")

#: The browser tests' hub, with alert rules of each severity, a channel
#: that cannot deliver, and a followed file that does not exist yet.
POLISH_CONFIG = (
    CONFIG
    + """
[[sources]]
kind = "replay"
name = "later"
path = "not-yet.jsonl"
follow = true
[[rules]]
name = "outage"
type = "keyword"
phrases = ["outage"]
severity = "critical"
cooldown = "1m"
[[rules]]
name = "refunds"
type = "keyword"
phrases = ["refund"]
severity = "warning"
[[rules]]
name = "praise"
type = "keyword"
phrases = ["wonderful"]
severity = "info"
[[channels]]
name = "ops-hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
"""
)


@pytest.fixture(scope="module")
def hub_config():
    return POLISH_CONFIG


@pytest.fixture(scope="module")
def browser(playwright):
    """A browser in another time zone than the hub's UTC, allowed to use the clipboard."""
    context = launch(playwright, timezone_id="America/New_York", locale="en-US")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    yield context
    context.close()


def shoot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def box(locator):
    b = locator.bounding_box()
    assert b is not None
    return b


def overlap(a, b):
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])  # fmt: skip


def test_live_feed_once_per_post_in_time_order_and_scrolls_inside(hub, admin):
    """A post pushed while the filter's reload is under way shows once; cards are in time order; the page stays short."""
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)
    marker = f"d{time.time_ns()}"
    now = time.time()
    # Written out of order: the card of the older post goes below the newer one.
    hub.append({"text": f"acme newer {marker}", "created_at": now - 10},
               {"text": f"acme older {marker}", "created_at": now - 3000})  # fmt: skip
    expect(page.locator("#feed .post", has_text=f"acme newer {marker}")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text=f"acme older {marker}")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    times = page.eval_on_selector_all("#feed .post", "cards => cards.map(c => Number(c.dataset.time))")
    assert times == sorted(times, reverse=True)

    # Hold the reload of a filter change until the socket has pushed a new post, then let it answer.
    held = []
    page.route("**/ui/recent.json*", lambda route: held.append(route))
    page.select_option("#f-topic", "Acme")
    hub.append({"text": f"acme overlap {marker}"})
    expect(page.locator("#feed .post", has_text=f"acme overlap {marker}")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert len(held) == 1
    with page.expect_response("**/ui/recent.json*"):
        held[0].continue_()
    page.unroute("**/ui/recent.json*")
    expect(page.locator("#feed .post", has_text=f"acme older {marker}")).to_be_visible()
    expect(page.locator("#feed .post", has_text=f"acme overlap {marker}")).to_have_count(1)
    ids = page.eval_on_selector_all("#feed .post", "cards => cards.map(c => c.dataset.id)")
    assert len(ids) == len(set(ids))
    times = page.eval_on_selector_all("#feed .post", "cards => cards.map(c => Number(c.dataset.time))")
    assert times == sorted(times, reverse=True)

    # 300 cards scroll inside the feed; the page itself stays one screen tall.
    hub.append(*({"text": f"acme filler {marker} {i} " + "words " * 30} for i in range(120)))
    expect(page.locator("#feed .post", has_text=f"filler {marker} 119 ")).to_have_count(1, timeout=SHOWN_WITHIN_MS)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height <= page.viewport_size["height"] + 50
    scroller = page.locator("#feed-scroll")
    assert scroller.evaluate("e => e.scrollHeight > e.clientHeight")
    # The status line has no dangling separator.
    status = page.locator("#feed-status").inner_text().strip()
    assert not status.endswith("·") and "· ·" not in status, status
    page.click("#pause")
    status = page.locator("#feed-status").inner_text().strip()
    assert status.endswith("new waiting") and "· ·" not in status, status
    page.click("#pause")
    shoot(page, "live")


def test_toast_close_button_leaves_the_title_readable(hub, admin):
    """The × of an alert toast sits beside its title, not over it, even for a long title."""
    page = admin
    page.goto(hub.base + "/sources")
    page.evaluate("""() => Monitor.toast({event: "opened", topic: "A rather long topic name for a toast title",
        incident: {severity: "critical", summary: "spike of posts"}})""")
    toast = page.locator(".toast").first
    assert not overlap(box(toast.locator(".toast-close")), box(toast.locator(".toast-title")))
    shoot(page, "toast")
    toast.locator(".toast-close").click()
    expect(page.locator(".toast")).to_have_count(0)


def test_alerts_page_severities_buttons_times_and_live(hub, admin):
    """Severities look different, Disable looks like a button and stays visible on hover, times are relative with
    the exact local time on hover, and a new incident appears without reloading."""
    page = admin
    page.goto(hub.base + "/alerts")
    wait_live(page)
    colours = {level: page.locator(f"#rules-table .severity-{level}").first.evaluate("e => getComputedStyle(e).backgroundColor")
               for level in ("info", "warning", "critical")}  # fmt: skip
    assert len(set(colours.values())) == 3, colours
    toggle = page.locator("#toggle-outage")
    style = "e => { const s = getComputedStyle(e); return [s.color, s.backgroundColor, s.borderTopColor, s.opacity]; }"
    before = toggle.evaluate(style)
    toggle.hover()
    after = toggle.evaluate(style)
    for color, background, border, opacity in (before, after):
        assert color != background and float(opacity) == 1 and border != "rgba(0, 0, 0, 0)", (before, after)
    assert toggle.is_enabled()

    page.evaluate("window.__sameDocument = true")
    marker = f"o{time.time_ns()}"
    hub.append({"text": f"acme outage everywhere {marker}"})
    row = page.locator("#open-incidents tr", has_text="outage")
    expect(row).to_be_visible(timeout=SHOWN_WITHIN_MS + 2000)
    assert page.evaluate("window.__sameDocument") is True
    stamp = row.locator("time.ago").first
    expect(stamp).to_have_text(re.compile(r"now|seconds? ago|minutes? ago"))
    title = stamp.get_attribute("title")
    assert re.search(r"EST|EDT", title), title  # the browser's zone, not the hub's UTC
    shoot(page, "alerts")

    # The incident's own page: why, posts, notification attempts.
    row.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"/alerts/incidents/inc_"))
    expect(page.locator("#incident-why")).to_contain_text("outage")
    expect(page.locator("#incident-posts .post", has_text=marker)).to_be_visible()
    expect(page.locator("#incident-notifications")).to_contain_text("ops-hook", timeout=10000)
    page.reload()
    shoot(page, "incident")


def test_rule_form_choices_and_hints(hub, admin):
    """The rule form offers checkboxes and selects, and each field's hint fits the chosen type."""
    page = admin
    page.goto(hub.base + "/alerts/rules/new")
    expect(page.locator("input[name=labels][value=crisis]")).to_be_visible()
    expect(page.locator("#field-sentiment")).to_be_visible()
    expect(page.locator("input[name=channels][value=ops-hook]")).to_be_visible()
    phrases_hint = page.locator("label", has=page.locator("#field-phrases")).locator(".hint")
    expect(phrases_hint).to_contain_text("one per line")
    shoot(page, "rule-form")
    page.select_option("#field-type", "influencer")
    sentiment_hint = page.locator("label", has=page.locator("#field-sentiment")).locator(".hint")
    expect(sentiment_hint).to_contain_text("default: negative")
    expect(page.locator("#field-phrases")).to_be_hidden()
    page.select_option("#field-type", "volume_spike")
    expect(page.locator("#field-drops")).to_be_visible()
    assert page.locator("#field-drops").get_attribute("type") == "checkbox"
    text = page.locator("#rule-form").inner_text()
    for internal in ("False", "yes or no", "comma separated", "min_count"):
        assert internal not in text, internal


def test_dashboard_figures(hub, admin):
    """A 7-digit engagement fits its card; Posts compares with the previous period; fresh data picks a short range."""
    page = admin
    hub.append({"text": "acme viral post", "likes": 1234567, "reposts": 45678, "replies": 3456})
    page.goto(hub.base + "/live")
    wait_live(page)
    expect(page.locator("#feed .post", has_text="acme viral post")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    page.goto(hub.base + "/dashboard")
    page.wait_for_function("() => window.monitorDashboard && window.monitorDashboard.data() !== null")
    # Everything here is minutes old: not one bar at the edge of a day.
    assert page.locator("#dash-range").input_value() in ("15m", "1h")
    value = page.locator("#kpi-engagement")
    expect(value).to_have_text(re.compile(r"^1\.\dM$"))
    assert value.get_attribute("title").replace(",", "").isdigit()
    card = page.locator(".kpi", has=value)
    assert card.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert value.evaluate("e => e.scrollWidth <= e.clientWidth")
    expect(page.locator("#kpi-change")).to_contain_text("vs previous")
    expect(page.locator("#kpi-change")).not_to_contain_text("new activity")
    shoot(page, "dashboard")


def test_posts_total_and_csv_booleans(hub, admin):
    """The search says how many posts match in all; CSV writes true and false, not Python's False."""
    page = admin
    marker = f"t{time.time_ns()}"
    page.goto(hub.base + "/live")
    wait_live(page)
    hub.append(*({"text": f"acme {marker} {i}", "author_verified": i == 0} for i in range(57)))
    expect(page.locator("#feed .post", has_text=f"{marker} 56")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    page.goto(hub.base + f"/posts?q={marker}")
    expect(page.locator("#posts-total")).to_contain_text("57 posts match")
    expect(page.locator("#posts-table tbody tr")).to_have_count(50)
    shoot(page, "posts")
    rows = list(csv.DictReader(io.StringIO(page.request.get(hub.base + f"/posts/export.csv?q={marker}").text())))
    assert len(rows) == 57 and {r["author_verified"] for r in rows} == {"true", "false"}


def test_waiting_inbox_is_not_an_error(hub, admin):
    """A followed file that does not exist yet reads as waiting, in neutral colours, not as a red error."""
    page = admin
    page.goto(hub.base + "/sources")
    wait_live(page)
    row = page.locator("#sources-table tr[data-source=later]")
    expect(row.locator("[data-field=state]")).to_have_text("waiting")
    expect(row.locator("[data-field=details]")).to_contain_text("waiting for")
    assert row.locator(".error-text").count() == 0
    # In one script turn: the live status may redraw the row between two.
    colour = page.evaluate(
        "() => getComputedStyle(document.querySelector('#sources-table tr[data-source=later] "
        "[data-field=details] span')).color"
    )
    red, green, blue = map(int, re.findall(r"\d+", colour)[:3])
    assert not (red > 150 and green < 100 and blue < 100), colour
    shoot(page, "sources")


def test_token_page_redirects_and_copies(hub, admin):
    """Creating a token redirects to a GET page that shows it once, with a working copy button."""
    page = admin
    page.goto(hub.base + "/admin")
    expect(page.locator("#roles-help")).to_contain_text("alert rules")
    page.fill("#create-token input[name=token_name]", "copytest")
    page.click("#create-token button")
    expect(page).to_have_url(re.compile(r"/admin\?created=token$"))
    token = page.locator("#new-token-value").inner_text()
    assert token.startswith("mon_")
    page.click("#copy-token")
    expect(page.locator("#copy-token")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    shoot(page, "admin")
    page.reload()
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert token not in page.content()


def test_phone_width_has_a_menu(hub, playwright):
    """At 390 px the navigation folds behind a menu button; nothing is cut off or wider than the screen."""
    context = launch(playwright, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        watch = Watch(page)
        login(page, hub, "admin")
        for path in ("/dashboard", "/live", "/map", "/posts", "/topics", "/sources", "/alerts", "/admin"):
            page.goto(hub.base + path)
            page.wait_for_load_state("networkidle")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            expect(page.locator("#menu-button")).to_be_visible()
            expect(page.locator("#nav")).to_be_hidden()
            shoot(page, "phone" + path.replace("/", "-"))
        page.click("#menu-button")
        links = page.locator("#nav a")
        expect(links.first).to_be_visible()
        for i in range(links.count()):
            b = box(links.nth(i))
            assert b["x"] >= 0 and b["x"] + b["width"] <= 390, links.nth(i).inner_text()
        shoot(page, "phone-menu")
        links.filter(has_text="Topics").click()
        expect(page).to_have_url(re.compile(r"/topics$"))
        assert watch.problems == []
    finally:
        context.close()


def test_screenshots_of_every_page(hub, admin, fresh_browser):
    """Every page, at desktop width, saved for a person to look at; none has a script error."""
    page = admin
    watch = Watch(page)
    for path in ("/dashboard", "/map", "/topics", "/topics/new", "/topics/edit?name=Acme", "/alerts/rules/new",
                 "/alerts/rules/outage/edit", "/account"):  # fmt: skip
        page.goto(hub.base + path)
        page.wait_for_load_state("networkidle")
        shoot(page, "page" + re.sub(r"[^a-z0-9]+", "-", path.lower()).rstrip("-"))
    watch.stop()
    assert watch.problems == []
    page.goto(hub.base + "/nope")
    shoot(page, "page-not-found")
    login_page = fresh_browser.new_page()
    login_page.goto(hub.base + "/login")
    shoot(login_page, "login")
