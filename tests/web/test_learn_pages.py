"""
Corrections and learned models in the web UI, in a real headless Chromium
against a real C{twistd -n monitor}: an editor sets a post's sentiment in
one click and adds and removes labels on the live feed and the posts
search (stored under the editor's name, undoable); a viewer gets no
controls and is refused; hostile post text stays text; the Models page
shows what C{GET /api/v1/models} shows, with the learning curve, and an
admin switches a model off and on.
"""

import json
import time
import urllib.parse

import pytest
from playwright.sync_api import expect

from monitor.learn.datasets import complaints
from tests.conftest import SHARED
from tests.web.conftest import CONFIG, TOKEN, Watch, launch, login
from tests.web.test_browser import SHOWN_WITHIN_MS, wait_live
from tests.web.test_query_pages import shot

MARK = f"fb{time.time_ns()}"
HOSTILE = f'{MARK} acme <img src=x onerror=alert(1)> "><b>bold</b> <script>alert(2)</script> charged me twice'


@pytest.fixture(scope="module")
def hub_config():
    return (
        CONFIG + '[learning]\nmin_examples = 20\nretrain_after = 10\ndelay = "1s"\nfolds = 3\n'
        '[[rules]]\nname = "outage"\ntype = "keyword"\nphrases = ["outage"]\n'
    )


def api(hub, method, path, body=None):
    import urllib.request

    req = urllib.request.Request(hub.base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def feedback_of(hub, native_id):
    return api(hub, "GET", "/api/v1/posts/" + urllib.parse.quote(f"inbox:{native_id}", safe="") + "/feedback")


@pytest.fixture(scope="module")
def editor(hub, playwright):
    """The editor, in a browser of their own (the admin has the module's)."""
    context = launch(playwright)
    page = context.new_page()
    login(page, hub, "ed")
    yield page
    context.close()


def test_editor_corrects_on_the_live_feed_and_posts_search(hub, editor):
    page = editor
    watch = Watch(page)
    page.goto(hub.base + "/live")
    wait_live(page)
    [hostile_id, plain_id] = hub.append({"text": HOSTILE}, {"text": f"{MARK} acme is lovely today"})
    card = page.locator("#feed .post", has_text=f"{MARK} acme <img").first
    expect(card).to_be_visible(timeout=SHOWN_WITHIN_MS)
    # The text is shown as text: the markup is visible, nothing ran.
    expect(card.locator(".post-text")).to_have_text(HOSTILE)
    assert card.locator("img, b, script").count() == 0
    card.locator(".fb-sentiment.negative").click()
    expect(card.locator(".fb-status")).to_contain_text("saved by ed")
    expect(card.locator(".fb-sentiment.negative")).to_have_attribute("aria-pressed", "true")
    card.locator(".fb-add").fill("billing")
    card.locator(".fb-add").press("Enter")
    expect(card.locator(".fb-labels .chip.label-billing")).to_be_visible()
    code, body = feedback_of(hub, hostile_id)
    assert code == 200 and body["feedback"]["sentiment"] == "negative" and body["feedback"]["by"] == "ed"
    assert body["feedback"]["labels"] == {"billing": True}
    shot(page, "feedback-live")
    # Remove the label again: a "no" for billing.
    card.locator(".fb-labels .chip.label-billing .chip-x").click()
    expect(card.locator(".fb-labels .chip.label-billing")).to_have_count(0)
    assert feedback_of(hub, hostile_id)[1]["feedback"]["labels"] == {"billing": False}
    # A bad label name is refused in the page, before any request.
    card.locator(".fb-add").fill("Bad label!")
    card.locator(".fb-add").press("Enter")
    expect(card.locator(".fb-status")).to_contain_text("a label is")

    # The posts search shows the corrections made; one click, then undo.
    page.goto(hub.base + "/posts?" + urllib.parse.urlencode({"q": MARK}))
    hostile_row = page.locator("#posts-table tr", has_text="charged me twice")
    expect(hostile_row.locator(".fb-sentiment.negative")).to_have_attribute("aria-pressed", "true")
    expect(hostile_row.locator(".fb-status")).to_contain_text("corrected by ed")
    row = page.locator("#posts-table tr", has_text="acme is lovely today")
    row.locator(".fb-sentiment.positive").click()
    expect(row.locator(".fb-status")).to_contain_text("saved by ed")
    assert feedback_of(hub, plain_id)[1]["feedback"]["sentiment"] == "positive"
    shot(page, "feedback-posts")
    row.locator(".fb-undo").click()
    expect(row.locator(".fb-status")).to_contain_text("undone")
    assert feedback_of(hub, plain_id)[0] == 404
    assert watch.problems == [] and watch.dialogs == []
    watch.stop()


def test_editor_corrects_an_incident_sample(hub, editor):
    [native] = hub.append({"text": f"{MARK} acme outage again, nothing loads"})
    deadline = time.monotonic() + 60
    while True:
        incidents = api(hub, "GET", "/api/v1/incidents?rule=outage")[1]["incidents"]
        if incidents and any(s["id"] == f"inbox:{native}" for s in incidents[0]["samples"]):
            break
        assert time.monotonic() < deadline, incidents
        time.sleep(0.2)
    page = editor
    page.goto(hub.base + "/alerts/incidents/" + urllib.parse.quote(incidents[0]["id"], safe=""))
    sample = page.locator("#incident-posts .post", has_text="outage again")
    sample.locator(".fb-sentiment.negative").click()
    expect(sample.locator(".fb-status")).to_contain_text("saved by ed")
    assert feedback_of(hub, native)[1]["feedback"]["sentiment"] == "negative"
    shot(page, "feedback-incident")


def test_a_viewer_has_no_controls_and_is_refused(hub, fresh_browser):
    page = fresh_browser.new_page()
    login(page, hub, "vi")
    page.goto(hub.base + "/posts?" + urllib.parse.urlencode({"q": MARK}))
    expect(page.locator("#posts-table tr").nth(1)).to_be_visible()
    assert page.locator(".fb-bar").count() == 0
    status = page.evaluate(
        """() => fetch('/ui/feedback', {method: 'POST', credentials: 'same-origin',
             headers: {'Content-Type': 'application/json', 'X-CSRF-Token': document.body.dataset.csrf},
             body: JSON.stringify({post_id: 'inbox:x', sentiment: 'negative'})}).then(r => r.status)"""
    )
    assert status == 403


def test_the_editor_needs_the_csrf_token(hub, editor):
    editor.goto(hub.base + "/posts")
    status = editor.evaluate(
        """() => fetch('/ui/feedback', {method: 'POST', credentials: 'same-origin',
             headers: {'Content-Type': 'application/json'},
             body: JSON.stringify({post_id: 'inbox:x', sentiment: 'negative'})}).then(r => r.status)"""
    )
    assert status == 403


def test_models_page_shows_the_models_and_an_admin_switches_them(hub, admin):
    corpus = [
        e for d, e, _ in complaints(SHARED / "data/complaints/complaints-data.csv") if d in ("software", "retail")
    ][:80]
    ids = hub.append(*({"text": f"acme {e.text}", "id": f"{MARK}-{e.key}"} for e in corpus))

    def stored():
        code, body = api(hub, "GET", "/api/v1/posts?" + urllib.parse.urlencode({"q": "acme", "limit": 500}))
        return {p["native_id"] for p in body["posts"]} >= set(ids)

    deadline = time.monotonic() + 60
    while not stored():
        assert time.monotonic() < deadline, "posts not stored"
        time.sleep(0.2)
    for native, e in zip(ids, corpus):
        code, _ = api(hub, "PUT", "/api/v1/posts/" + urllib.parse.quote(f"inbox:{native}", safe="") + "/feedback",
                      {"labels": {"complaint": e.label == "yes"}})  # fmt: skip
        assert code == 200
    deadline = time.monotonic() + 120
    while True:
        models = {m["name"]: m for m in api(hub, "GET", "/api/v1/models")[1]["models"]}
        if models.get("complaint", {}).get("state") in ("active", "inactive"):
            break
        assert time.monotonic() < deadline, models
        time.sleep(0.5)
    m = models["complaint"]
    page = admin
    page.goto(hub.base + "/models")
    card = page.locator("#model-complaint-en")
    expect(card.locator("[data-field=state]")).to_have_text(m["state"])
    expect(card.locator("[data-field=version]")).to_have_text(m["version"])
    expect(card.locator("[data-field=macro_f1]")).to_contain_text("%.3f" % m["evaluation"]["macro_f1"])
    expect(card.locator("[data-field=macro_f1]")).to_contain_text("%.3f" % m["evaluation"]["baseline_macro_f1"])
    assert card.locator("[data-field=confusion] tbody td").all_text_contents() == [
        f"{n:,}" for row in m["evaluation"]["confusion"] for n in row]  # fmt: skip
    assert card.locator("svg polyline").count() == 2
    shot(page, "models")
    # The admin's switch, both ways.
    before = m["state"]
    card.locator("button[type=submit]").click()
    expect(page.locator(".alert.success")).to_be_visible()
    after = {x["name"]: x for x in api(hub, "GET", "/api/v1/models")[1]["models"]}["complaint"]
    assert after["state"] == ("inactive" if before == "active" else "active")
    expect(page.locator("#model-complaint-en [data-field=state]")).to_have_text(after["state"])


def test_admin_rescores_stored_posts_from_the_models_page(hub, admin):
    page = admin
    page.goto(hub.base + "/models")
    expect(page.locator("#rescore-status")).to_contain_text("keep the answer they got")
    page.locator("#rescore-start").click()
    expect(page.locator(".alert.success")).to_contain_text("Re-scoring")
    deadline = time.monotonic() + 60
    while api(hub, "GET", "/api/v1/rescore")[1]["rescore"]["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = api(hub, "GET", "/api/v1/rescore")[1]["rescore"]
    page.goto(hub.base + "/models")
    expect(page.locator("#rescore-status")).to_contain_text(f"{job['done']:,} of {job['total']:,} posts")
    expect(page.locator("#rescore-status")).to_contain_text("started by admin")
    shot(page, "models-rescored")
