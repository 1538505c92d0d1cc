"""
The alert pages (/alerts, the rule form, backtest, incident and channel
buttons) through a real Klein resource and HTTP in memory (treq's
StubTreq), over an alert engine on a Clock and a synchronous store, with
sessions of each role.
"""

import re
from urllib.parse import urlencode

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from monitor.alerts.notifiers import DISABLE, RETRY, Delivery
from monitor.web.push import SESSION_COOKIE
from monitor.web.ui import WebUI
from monitor.web.users import Session
from tests.alerts.helpers import T0, ScriptedNotifier, make_engine, post, settle

BASE = "http://monitor.test"
CRISIS = {"name": "crisis", "type": "keyword", "labels": ["crisis"]}


class FakeUsers:
    """Sessions by cookie: one per role."""

    def __init__(self):
        self.sessions = {
            f"{role}-token": Session(f"key-{role}", n, f"{role}-user", role, f"csrf-{role}")
            for n, role in enumerate(("viewer", "editor", "admin"))
        }

    def session(self, token):
        return succeed(self.sessions.get(token))


class Browser:
    def __init__(self, engine, clock):
        self.engine, self.clock = engine, clock
        # The parts of a hub the pages use, around this engine.
        ui = WebUI(
            FakeUsers(), clock, store=engine.store.store, topics=engine.topics, sources=engine.sources, alerts=engine
        )
        self.stub = StubTreq(ui.resource())

    def call(self, method, path, role="editor", form=None, csrf=True):
        headers = {"Cookie": f"{SESSION_COOKIE}={role}-token"}
        data = None
        if method == "POST":
            form = dict(form or {})
            if csrf:
                form["csrf"] = f"csrf-{role}"
            data = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        d = self.stub.request(method, BASE + path, headers=headers, data=data, allow_redirects=False)
        self.stub.flush()
        out = []
        d.addBoth(out.append)
        assert out, f"{method} {path} did not answer"
        response = out[0]
        content = []
        response.content().addBoth(content.append)
        self.stub.flush()
        body = content[0].decode("utf-8")
        location = response.headers.getRawHeaders("location", [None])[0]
        return response.code, body, location

    def get(self, path, role="editor"):
        return self.call("GET", path, role)

    def post(self, path, form=None, role="editor", csrf=True):
        return self.call("POST", path, role, form, csrf)


@pytest.fixture
def web():
    clock = Clock()
    clock.advance(T0)
    hook = ScriptedNotifier("hook", [Delivery(RETRY, 500, "boom")])
    engine = make_engine(clock, [CRISIS], notifiers={"hook": hook})
    return Browser(engine, clock)


def open_incident(web):
    web.engine.posts_stored([post(1, T0 + 1, labels=("crisis",))])
    settle(web.clock, 10)
    (incident_id,) = [i.id for i in web.engine.detector.book.open.values() if i.rule == "crisis"]
    return incident_id


def rule_form(**fields):
    form = {"name": "", "type": "keyword", "topic": "", "severity": "warning", "enabled": "on", "action": "save"}
    form.update(fields)
    return form


def test_viewer_sees_alerts_but_cannot_change_them(web):
    """Any role sees rules, incidents and channels; a viewer gets no buttons and a 403 on the form and on changes."""
    open_incident(web)
    code, body, _ = web.get("/alerts", role="viewer")
    assert code == 200
    assert 'id="rule-crisis"' in body and "all topics" in body and "keyword" in body
    assert 'id="channel-hook"' in body and 'href="/alerts"' in body  # the nav link
    assert "Acknowledge" not in body and 'id="new-rule"' not in body
    assert web.get("/alerts/rules/new", role="viewer")[0] == 403
    assert web.get("/alerts/rules/crisis/edit", role="viewer")[0] == 403
    assert web.post("/alerts/rules/save", rule_form(name="x", phrases="acme"), role="viewer")[0] == 403
    assert web.post("/alerts/rules/crisis/delete", role="viewer")[0] == 403
    assert web.engine.get_rule("crisis") is not None


def test_create_rule_with_field_errors_then_good(web):
    """A bad field re-renders the form with the message next to it; a good rule is saved and listed."""
    code, body, _ = web.get("/alerts/rules/new")
    assert code == 200 and 'name="csrf" value="csrf-editor"' in body and "all topics" in body
    assert '<option value="Acme"' in body and '<option value="volume_spike"' in body
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="bad name!", phrases="acme down", cooldown="soon"))
    assert code == 400
    assert re.search(r'id="error-name"[^>]*>must be 1 to 64', body)
    assert re.search(r'id="error-cooldown"[^>]*>must be a duration', body)
    assert "acme down" in body  # what was typed is kept
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="outage", type="keyword"))
    assert code == 400 and 'id="error-phrases"' in body
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="spike", type="volume_spike", factor="lots"))
    assert code == 400 and re.search(r'id="error-factor"[^>]*>must be a number', body)
    assert web.engine.get_rule("outage") is None
    code, _, location = web.post(
        "/alerts/rules/save", rule_form(name="outage", topic="Acme", phrases="acme down\nacme outage", cooldown="10m",
                                        min_followers="5")  # another type's field: ignored
    )  # fmt: skip
    assert code == 303 and location.startswith("/alerts?")
    rule = web.engine.get_rule("outage")
    assert rule.spec["phrases"] == ["acme down", "acme outage"] and rule.topics == {"Acme"} and rule.origin == "web"
    assert "min_followers" not in rule.spec
    code, body, _ = web.get(location)
    assert 'id="rule-outage"' in body and "saved" in body
    # The same name again is refused on the name field.
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="outage", phrases="x"))
    assert code == 400 and 'id="error-name"' in body
    # Edit: the form shows the saved values and saves under the same name.
    code, body, _ = web.get("/alerts/rules/outage/edit")
    assert code == 200 and "acme outage" in body and 'id="delete-rule"' in body
    code, _, _ = web.post("/alerts/rules/save", rule_form(original="outage", phrases="acme down", severity="critical"))
    assert code == 303 and web.engine.get_rule("outage").severity == "critical"
    assert web.get("/alerts/rules/ghost/edit")[0] == 404


def test_enable_disable_and_delete(web):
    """The buttons disable, enable and delete a rule."""
    code, _, location = web.post("/alerts/rules/crisis/disable")
    assert code == 303 and not web.engine.get_rule("crisis").enabled
    code, body, _ = web.get("/alerts")
    assert 'id="toggle-crisis">Enable' in body
    code, _, _ = web.post("/alerts/rules/crisis/enable")
    assert code == 303 and web.engine.get_rule("crisis").enabled
    code, _, location = web.post("/alerts/rules/crisis/delete")
    assert code == 303 and web.engine.get_rule("crisis") is None
    code, body, _ = web.get(location)
    assert "Rule crisis deleted." in body and 'id="rule-crisis"' not in body
    code, _, location = web.post("/alerts/rules/crisis/delete")
    assert code == 303 and "problem=" in location


def test_changes_need_the_csrf_token(web):
    """A POST without the session's token is refused and changes nothing."""
    incident_id = open_incident(web)
    for path, form in [
        ("/alerts/rules/save", rule_form(name="x", phrases="acme")),
        ("/alerts/rules/crisis/disable", None),
        ("/alerts/rules/crisis/delete", None),
        (f"/alerts/incidents/{incident_id}/acknowledge", None),
        ("/alerts/channels/hook/enable", None),
    ]:
        code, body, _ = web.post(path, form, csrf=False)
        assert code == 403 and "CSRF" in body, path
    code, _, _ = web.post("/alerts/rules/crisis/disable", {"csrf": "wrong"}, csrf=False)
    assert code == 403
    assert web.engine.get_rule("x") is None and web.engine.get_rule("crisis").enabled
    assert web.engine.detector.book.by_id(incident_id).state == "open"


def test_acknowledge_and_resolve_an_incident(web):
    """The list links each incident to its page; acknowledge and resolve record who did it."""
    incident_id = open_incident(web)
    code, body, _ = web.get("/alerts")
    assert f'id="ack-{incident_id}"' in body and "(2 attempts)" in body
    assert f'href="/alerts/incidents/{incident_id}"' in body
    code, _, location = web.post(f"/alerts/incidents/{incident_id}/acknowledge")
    assert code == 303 and "acknowledged" in location
    code, body, _ = web.get("/alerts")
    assert "acknowledged by editor-user" in body and f'id="ack-{incident_id}"' not in body
    code, _, _ = web.post(f"/alerts/incidents/{incident_id}/resolve", role="admin")
    settle(web.clock)
    code, body, _ = web.get("/alerts")
    recent = body.split('id="recent-incidents"')[1]
    assert incident_id in recent and "resolved by admin-user" in recent
    code, _, location = web.post(f"/alerts/incidents/{incident_id}/resolve")
    assert code == 303 and "problem=" in location


def test_channel_enable_button(web):
    """A disabled channel shows why, and an editor can enable it."""
    channel = web.engine.outbox.channels["hook"]
    channel.notifier.script = [Delivery(DISABLE, 404, "no_service")]
    open_incident(web)
    code, body, _ = web.get("/alerts")
    assert "no_service" in body and 'id="enable-hook"' in body
    code, _, _ = web.post("/alerts/channels/hook/enable")
    assert code == 303 and channel.disabled_reason is None


def test_backtest_shows_when_the_draft_would_fire(web):
    """Backtest lists each time the unsaved draft would have fired, with counts; nothing is saved."""
    web.engine.store.store.add_posts([post(i, T0 - 86400 + i * 3600, text="acme is down") for i in range(3)])
    form = rule_form(name="draft", phrases="acme is down", cooldown="5m", action="backtest", period="7d")
    code, body, _ = web.post("/alerts/rules/save", form)
    assert code == 200 and 'id="backtest-results"' in body
    assert "would have fired 3 times" in body and "3 posts" in body
    assert body.count('<tr><td><time class="ago" datetime="2023-11-') == 3
    assert web.engine.get_rule("draft") is None
    code, body, _ = web.post("/alerts/rules/save", dict(form, period="24h", phrases="nothing like it"))
    assert code == 200 and "would not have fired" in body
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="h", type="source_health", action="backtest"))
    assert code == 400 and re.search(r'id="error-type"[^>]*>source_health rules cannot be backtested', body)


def test_rule_with_several_topics_keeps_them(web):
    """A rule watching two topics shows both selected and saves both; an unknown topic is an error on the field."""
    code, _, _ = web.post("/alerts/rules/save", rule_form(name="two", phrases="acme", topic=["Acme", "Globex"]))
    assert code == 303 and web.engine.get_rule("two").topics == {"Acme", "Globex"}
    code, body, _ = web.get("/alerts/rules/two/edit")
    assert '<option value="Acme" selected>' in body and '<option value="Globex" selected>' in body
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="three", phrases="acme", topic="Nope"))
    assert code == 400 and 'id="error-topic"' in body


def test_incident_page_says_why_and_lists_posts_and_attempts(web):
    """An incident's page shows the rule's conditions, its sample posts (escaped) and every delivery attempt."""
    web.engine.posts_stored([post(1, T0 + 1, labels=("crisis",), text="<b>acme</b> is on fire")])
    settle(web.clock, 10)
    (incident_id,) = [i.id for i in web.engine.detector.book.open.values() if i.rule == "crisis"]
    code, body, _ = web.get(f"/alerts/incidents/{incident_id}", role="viewer")
    assert code == 200
    why = body.split('id="incident-why"')[1].split("</section>")[0]
    assert "labels" in why and "crisis" in why
    posts = body.split('id="incident-posts"')[1].split("</section>")[0]
    assert "&lt;b&gt;acme&lt;/b&gt; is on fire" in posts and "<b>acme" not in posts
    assert "/posts?since=2023-11-14T22%3A00%3A01.000Z" in posts and "topic=Acme" in posts
    attempts = body.split('id="incident-notifications"')[1].split("</section>")[0]
    assert "boom" in attempts and "retry" in attempts and "sent" in attempts
    assert 'id="ack-' not in body  # a viewer gets no buttons
    code, body, _ = web.get(f"/alerts/incidents/{incident_id}")
    assert f'id="ack-{incident_id}"' in body
    assert web.get("/alerts/incidents/inc_nope")[0] == 404


def test_rule_form_speaks_plainly_and_offers_choices(web):
    """Hints name no internals; labels, sentiment, drops and channels are choices, not free text."""
    code, body, _ = web.get("/alerts/rules/new")
    assert code == 200
    hints = " ".join(re.findall(r'<span class="hint"[^>]*>([^<]*)</span>', body))
    for internal in ("False", "True", "yes or no", "comma separated", "min_followers", "min_count", "keyword:"):
        assert internal not in hints, internal
    assert "one per line" in body.split('id="field-phrases"')[0].rsplit("<label", 1)[1]
    assert re.search(r'<input type="checkbox" name="labels" value="crisis"', body)
    assert re.search(r'<select name="sentiment" id="field-sentiment">', body)
    assert re.search(r'<input type="checkbox" name="drops" id="field-drops">', body)
    assert re.search(r'<input type="checkbox" name="channels" value="hook"', body)
    # What the choices save.
    form = rule_form(name="angry", labels=["complaint", "crisis"], sentiment="negative", channels="hook")
    code, _, _ = web.post("/alerts/rules/save", form)
    assert code == 303
    spec = web.engine.get_rule("angry").spec
    assert (
        spec["labels"] == ["complaint", "crisis"] and spec["sentiment"] == "negative" and spec["channels"] == ["hook"]
    )
    code, body, _ = web.get("/alerts/rules/angry/edit")
    assert 'value="crisis" checked' in body and '<option value="negative" selected>' in body
    code, _, _ = web.post("/alerts/rules/save", rule_form(name="drop", type="volume_spike", drops="on"))
    assert code == 303 and web.engine.get_rule("drop").spec["drops"] is True
    code, _, _ = web.post("/alerts/rules/save", rule_form(name="nodrop", type="volume_spike"))
    assert code == 303 and web.engine.get_rule("nodrop").spec["drops"] is False


def test_phrases_entered_as_the_hint_says_backtest(web):
    """Phrases one per line, as the hint says, each match in a backtest."""
    web.engine.store.store.add_posts([post(1, T0 - 7200, text="the acme site is down"),
                                post(2, T0 - 3600, text="my acme refund never came")])  # fmt: skip
    form = rule_form(name="draft", phrases="site is down\nrefund", cooldown="1m", action="backtest", period="24h")
    code, body, _ = web.post("/alerts/rules/save", form)
    assert code == 200 and "would have fired 2 times" in body


def test_rule_form_offers_the_story_type(web):
    """The form offers the story type with its rate and smallest size; bad values come back on their fields;
    a good one is saved."""
    code, body, _ = web.get("/alerts/rules/new")
    assert '<option value="story"' in body
    for key in ("rate", "min_size"):
        label = body.split(f'id="field-{key}"')[0].rsplit("<label", 1)[1]
        assert 'data-types="story"' in label, key
    window = body.split('id="field-window"')[0].rsplit("<label", 1)[1]
    assert "story" in re.search(r'data-types="([^"]*)"', window).group(1).split()
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="grow", type="story", rate="fast", min_size="10"))
    assert code == 400 and re.search(r'id="error-rate"[^>]*>must be a number', body)
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="grow", type="story", rate="0"))
    assert code == 400 and re.search(r'id="error-rate"[^>]*>must be more than 0', body)
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="grow", type="story", window="3h"))
    assert code == 400 and re.search(r'id="error-window"[^>]*>must be whole minutes, from 1m to 1h', body)
    code, _, _ = web.post("/alerts/rules/save", rule_form(name="grow", type="story", rate="3", min_size="10",
                                                          window="15m", factor="9"))  # fmt: skip
    assert code == 303
    assert web.engine.get_rule("grow").spec == {"name": "grow", "type": "story", "enabled": True, "severity": "warning",
                                                "rate": 3.0, "min_size": 10, "window": "15m", "topics": [],
                                                "channels": [], "escalate_at": None, "cooldown": "30m"}  # fmt: skip
    code, body, _ = web.get("/alerts/rules/grow/edit")
    assert 'id="field-rate" value="3.0"' in body and 'id="field-min_size" value="10"' in body


HOSTILE = "<script>alert(1)</script> flood river <img src=x onerror=alert(2)>"


@pytest.fixture
def storied():
    """The pages over an engine given a story clusterer, as the hub gives it."""
    from monitor.stories import StoryClusterer

    clock = Clock()
    clock.advance(T0)
    clusterer = StoryClusterer(exclude={"acme"})
    engine = make_engine(clock, [CRISIS], notifiers={"hook": ScriptedNotifier("hook")}, stories=clusterer)
    return Browser(engine, clock)


def open_spike(web):
    """A spike of hostile, placed posts from two sources after a calm hour (each batch in its stories first, when
    the engine has stories, as in the hub); its incident's id."""
    from monitor.alerts.config import check_rule_spec

    def store(posts):
        if web.engine.stories is not None:
            for p in posts:
                web.engine.stories.add(p)
        web.engine.posts_stored(posts)

    spike = {"name": "spike", "type": "volume_spike", "min_count": 10, "warmup": 0, "baseline": "1h"}
    rule, _ = check_rule_spec(spike)
    web.engine._set_rules(list(web.engine.rules.values()) + [rule])
    web.clock.advance(3600)
    store([post(i, T0 + i * 300, text="acme calm") for i in range(12)])
    store([post(100 + i, T0 + 3600 + i * 5, text=f"{HOSTILE} {i}", likes=i, lat=51.5, lon=-0.1,
                source="bluesky" if i % 2 else "mastodon") for i in range(30)] + [post(999, T0 + 3600 + 300)])  # fmt: skip
    settle(web.clock, 10)
    (incident_id,) = [i.id for i in web.engine.detector.book.open.values() if i.rule == "spike"]
    return incident_id


def test_incident_page_shows_why_escaped(web):
    """A spike's page says why in words (story, terms, top posts by reach, sources, places), post text escaped."""
    incident_id = open_spike(web)
    code, body, _ = web.get(f"/alerts/incidents/{incident_id}", role="viewer")
    assert code == 200
    why = body.split('id="incident-explanation"')[1].split("</section>")[0]
    summary = body.split('id="incident-why"')[1].split('id="explanation-summary"')[1].split("</ul>")[0]
    assert "Why: rising terms: " in summary and "flood river (30, was 0)" in summary
    assert "Sources: bluesky 15, mastodon 15" in summary and "Places: 51.5, -0.1 (30 posts)" in summary
    posts = why.split('id="explanation-posts"')[1].split("</ol>")[0]
    assert re.findall(r'data-post-id="([^"]+)"', posts) == [
        "bluesky:129",
        "mastodon:128",
        "bluesky:127",
    ]  # most reach first
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in posts and "<script>alert" not in body
    assert "<img src=x" not in body
    assert re.search(r"<dt>bluesky</dt><dd>15</dd>", why) and re.search(r"<dt>51.5, -0.1</dt><dd>30 posts</dd>", why)
    # A post rule's incident has no such section.
    web.engine.posts_stored([post(1000, T0 + 3600 + 310, labels=("crisis",))])
    settle(web.clock, 10)
    (incident_id,) = [i.id for i in web.engine.detector.book.open.values() if i.rule == "crisis"]
    code, body, _ = web.get(f"/alerts/incidents/{incident_id}")
    assert 'id="incident-explanation"' not in body


def test_incident_page_names_the_rising_story(storied):
    """With stories on, the page's why starts with the story that rose and its words, escaped."""
    incident_id = open_spike(storied)
    code, body, _ = storied.get(f"/alerts/incidents/{incident_id}")
    summary = body.split('id="explanation-summary"')[1].split("</ul>")[0]
    (story,) = storied.engine.stories.list(min_size=20)
    # Its words as the clusterer ranks them (all tied here), each a word of its posts.
    words = storied.engine.detector.book.open[("spike", "Acme", None)].explanation["stories"][0]["terms"]
    assert words and set(words) <= {"flood", "river", "script", "alert", "img", "src", "onerror"}
    assert f"Why: story &#39;{', '.join(words)}&#39; ({story['id']}) rose from 0 to 30 posts/5m" in summary
    table = body.split('id="explanation-stories"')[1].split("</table>")[0]
    assert f'data-story="{story["id"]}"' in table and "<script" not in table


def test_incident_page_why_in_a_browser(storied, playwright):
    """In Chromium the explanation reads as text (no script of a post runs, no image of one loads), and the page is
    saved as var/screenshots/incident-explained.png for a person to look at."""
    import os

    from tests.conftest import ROOT
    from tests.web.conftest import launch

    web = storied
    incident_id = open_spike(web)
    static = ROOT / "monitor" / "web" / "static"
    seen = []

    def serve(route):
        path = "/" + route.request.url.split("/", 3)[3]
        seen.append(path)
        if path.startswith("/static/"):
            name = (static / path[len("/static/") :].split("?")[0]).resolve()
            if static.resolve() in name.parents and name.is_file():
                kind = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}.get(name.suffix, "")
                return route.fulfill(status=200, body=name.read_bytes(), content_type=kind)
            return route.fulfill(status=404, body=b"")
        if route.request.method != "GET" or path.startswith("/ws"):
            return route.abort()
        code, body, _ = web.get(path, role="viewer")
        route.fulfill(status=code, body=body.encode(), content_type="text/html; charset=utf-8")

    context = launch(playwright)
    try:
        page = context.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.route("**/*", serve)
        page.goto(f"{BASE}/alerts/incidents/{incident_id}")
        why = page.locator("#incident-explanation")
        assert why.is_visible()
        summary = page.locator("#explanation-summary").inner_text()
        assert summary.startswith("Why: story '") and "Sources: bluesky 15, mastodon 15" in summary
        assert "flood river (30, was 0)" in summary
        assert page.locator("#explanation-stories tbody tr").count() == 1
        first = page.locator("#explanation-posts .post-text").first.inner_text()
        assert first.startswith("<script>alert(1)</script> flood river <img src=x onerror=alert(2)>")
        assert page.locator("#incident-explanation img").count() == 0 and dialogs == []
        assert not [p for p in seen if p.startswith("/x")]  # the post's <img src=x> is text, never fetched
        os.makedirs(ROOT / "var" / "screenshots", exist_ok=True)
        page.screenshot(path=str(ROOT / "var" / "screenshots" / "incident-explained.png"), full_page=True)
    finally:
        context.close()
