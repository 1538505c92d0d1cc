"""
Topic queries in the web UI and the API, in a real headless Chromium against
a real C{twistd -n monitor}: the query field of the topic form, "Try it"
with the matched words marked and what a draft gains and loses, the
posts page's query search, and C{query=} on C{GET /api/v1/posts}.
"""

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.web.conftest import CONFIG, TOKEN
from tests.web.test_browser import SHOWN_WITHIN_MS, wait_live
from tests.web.test_ui_polish import SCREENSHOTS

QUERY = "acme refund*"

#: Posts of this module, each marked so that other modules' posts never count.
MARK = f"q{time.time_ns()}"
POSTS = {
    "refunds": f"{MARK} acme refunds are slow",
    "outage": f"{MARK} acme outage today",
    "delayed": f"{MARK} acme refund delayed",
    "globex": f"{MARK} globex refund",
    "hostile": f'{MARK} <img src=x onerror=alert(1)> acme "><b>refund</b> <script>alert(2)</script>',
}


@pytest.fixture(scope="module")
def hub_config():
    return CONFIG + f'[[topics]]\nname = "Refunds"\nquery = "{QUERY}"\n'


@pytest.fixture(scope="module")
def stored(hub, admin):
    """The posts above, stored: seen on the live page."""
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)
    hub.append(*({"text": t, "likes": 150 if k == "outage" else 0} for k, t in POSTS.items()))
    for text in POSTS.values():
        expect(page.locator("#feed .post-text", has_text=text).first).to_be_visible(timeout=SHOWN_WITHIN_MS)
    return POSTS


def api(hub, **params):
    status, _, body = hub.request(
        "/api/v1/posts?" + urllib.parse.urlencode(params), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    return status, json.loads(body)


def shot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


def test_try_it_shows_matches_gains_and_losses(hub, admin, watch, stored):
    """Editing a query topic, Try it marks the matched words and lists the posts gained and lost."""
    page = admin
    page.goto(hub.base + "/topics/edit?name=Refunds")
    expect(page.locator("#field-query")).to_have_value(QUERY)
    page.fill("#field-query", f"{MARK} acme (refund* OR outage) -delayed")
    page.click("#try-it")
    results = page.locator("#try-matches")
    expect(results.locator(".post", has_text=POSTS["outage"])).to_be_visible()
    expect(results.locator(".post", has_text=POSTS["refunds"]).locator("mark")).to_have_text([f"{MARK} acme refunds"])
    expect(results.locator(".post", has_text=POSTS["delayed"])).to_have_count(0)
    gained = page.locator("#try-gained .post")
    expect(gained).to_have_count(1)
    expect(gained).to_contain_text(POSTS["outage"])
    expect(gained.locator(".why code")).to_have_text([MARK, "acme", "outage"])
    lost = page.locator("#try-lost .post")
    expect(lost).to_have_count(1)
    expect(lost).to_contain_text(POSTS["delayed"])
    expect(lost.locator(".why")).to_contain_text("the saved version matched")
    expect(page.locator("#try-gained-count")).to_have_text("+1 gained")
    expect(page.locator("#try-lost-count")).to_have_text("−1 lost")
    # The hostile post is text, its words marked inside the escaped text.
    hostile = results.locator(".post", has_text="onerror")
    expect(hostile.locator(".post-text")).to_have_text(POSTS["hostile"])
    expect(hostile.locator("mark")).to_have_text([MARK, "acme", "refund"])
    assert page.locator("#try-results img, #try-results script, #try-results .post-text b").count() == 0
    shot(page, "topic-try-query")
    assert watch.dialogs == [] and watch.problems == []
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_bad_query_is_shown_at_the_field_and_a_query_topic_saves(hub, admin, stored):
    """A bad query re-renders the form with the position next to the field; a good one saves and applies."""
    page = admin
    page.goto(hub.base + "/topics/new")
    page.fill("#field-name", "Outages")
    page.fill("#field-query", "acme AND (outage")
    page.click("#try-it")
    expect(page.locator("#error-query")).to_contain_text("At position 17: expected a ) to close the ( at position 10")
    expect(page.locator("#field-query")).to_have_value("acme AND (outage")
    expect(page.locator("#try-results")).to_have_count(0)
    page.fill("#field-query", "acme NEAR/2 outage")
    page.click("#save-topic")
    expect(page).to_have_url(re.compile(r"/topics\?saved=Outages"))
    expect(page.locator("#topics-table tr", has_text="Outages").locator(".topic-query")).to_have_text(
        "acme NEAR/2 outage"
    )
    shot(page, "topics-with-queries")
    page.goto(hub.base + "/live?topic=Outages")
    wait_live(page)
    hub.append({"text": f"{MARK} outage hits acme again"}, {"text": f"{MARK} acme had no outage... not"})
    expect(page.locator("#feed .post", has_text="outage hits acme again")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text="outage hits acme again").locator(".chip")).to_contain_text(["Outages"])
    expect(page.locator("#feed .post", has_text="acme had no outage")).to_have_count(0)


def test_posts_page_searches_with_a_query(hub, admin, watch, stored):
    """The posts page filters with a query, marks its words, and shows a bad query next to the field."""
    page = admin
    page.goto(
        hub.base
        + "/posts?"
        + urllib.parse.urlencode({"query": f'{MARK} (refund* OR "outage today") -globex likes:<100'})
    )
    rows = page.locator("#posts-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#posts-table")).to_contain_text(POSTS["refunds"])
    expect(page.locator("#posts-table")).not_to_contain_text(POSTS["outage"])
    expect(page.locator("#posts-table td.post-text", has_text="<img src=x onerror=alert(1)>")).to_be_visible()
    expect(page.locator("#posts-table tr", has_text="refunds are slow").locator("mark")).to_have_text([MARK, "refunds"])
    assert page.locator("#posts-table img, #posts-table script, #posts-table td.post-text b").count() == 0
    shot(page, "posts-query")
    page.fill("#field-query", "acme OR")
    page.locator("#search-form button[type=submit]").click()
    expect(page.locator("#error-query")).to_contain_text("at position 8: expected a word")
    expect(page.locator("#field-query")).to_have_value("acme OR")
    expect(page.locator("#posts-table tbody tr")).to_have_text(["No post matches."])
    # The page itself answers 400 (the browser logs that); nothing else went wrong.
    assert watch.dialogs == [] and [p for p in watch.problems if "status of 400" not in p] == []


def test_api_filters_posts_with_a_query(hub, stored):
    """GET /api/v1/posts?query= returns exactly the matching posts; a bad query is a 400 naming query."""
    status, body = api(hub, query=f"{MARK} acme NOT (delayed OR outage)", limit=500)
    assert status == 200
    assert sorted(p["text"] for p in body["posts"]) == sorted([POSTS["refunds"], POSTS["hostile"]])
    status, body = api(hub, query=f"{MARK} ONEAR/1 acme -had", limit=500)
    assert status == 200 and {p["text"] for p in body["posts"]} == {POSTS["refunds"], POSTS["outage"], POSTS["delayed"]}
    status, body = api(hub, query="acme NEAR/0 refund")
    assert status == 400 and body["parameter"] == "query"
    assert "at position 11: expected a distance from 1 to 100" in body["error"]


def call(hub, method, path, body=None):
    """(status, JSON) of one API request with the token."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        hub.base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_topics_api_takes_a_query(hub, admin, stored):
    """PUT /api/v1/topics/NAME checks the query like the file does (position at topic.query) and applies at once."""
    status, body = call(hub, "PUT", "/api/v1/topics/Api", {"query": "acme AND (refund"})
    assert status == 400 and body["problems"] == [
        "topic.query: at position 17: expected a ) to close the ( at position 10, found the end of the query"
    ]
    status, body = call(hub, "PUT", "/api/v1/topics/Api", {})
    assert status == 400 and body["problems"] == ["topic.terms: a topic needs at least one term or variant, or a query"]
    status, body = call(hub, "PUT", "/api/v1/topics/Api", {"name": "Other", "query": "acme"})
    assert status == 400 and "name in the address" in body["problems"][0]
    status, body = call(hub, "PUT", "/api/v1/topics/Api", {"query": f"{MARK} apiword ONEAR/2 acme"})
    assert status == 200 and body["topic"]["query"] == f"{MARK} apiword ONEAR/2 acme"
    assert call(hub, "GET", "/api/v1/topics/Api")[1]["topic"]["query"] == body["topic"]["query"]
    page = admin
    page.goto(hub.base + "/live")
    wait_live(page)
    hub.append({"text": f"{MARK} apiword and acme"}, {"text": f"{MARK} acme and apiword"})
    # Both are stored (both are about Acme); only the first is in order for Api.
    for text in ("apiword and acme", "acme and apiword"):
        expect(page.locator("#feed .post", has_text=text)).to_be_visible(timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#feed .post", has_text="apiword and acme").locator(".chip")).to_contain_text(["Acme", "Api"])
    status, body = api(hub, topic="Api")
    assert status == 200 and [p["text"] for p in body["posts"]] == [f"{MARK} apiword and acme"]
    assert call(hub, "DELETE", "/api/v1/topics/Api") == (200, {"deleted": "Api"})
    assert call(hub, "GET", "/api/v1/topics/Api")[0] == 404
    assert call(hub, "DELETE", "/api/v1/topics/Api")[0] == 404
