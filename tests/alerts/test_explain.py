"""
Incidents that explain themselves, and the story rule: a real timeline (the
CrisisLex LAX shooting) among complaint tweets gives a spike whose
explanation names the event's words and its story; a fast-growing story
fires its rule once, a slow one never; explanations are stored, survive a
restart and reach every notification, escaped.
"""

import csv
import json
import random

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from monitor.alerts.config import check_rule_spec
from monitor.alerts.detector import Detector
from monitor.alerts.incidents import Incident
from monitor.alerts.notifiers import Notification, explanation_lines, headline, summary_lines
from monitor.alerts.notifiers.email import email_message
from monitor.alerts.notifiers.live import live_message
from monitor.alerts.notifiers.slack import slack_message
from monitor.alerts.notifiers.webhook import webhook_body
from monitor.analysis.trending import excluded_words
from monitor.model import Analysis, Post, Topic, parse_time
from monitor.stories import StoryClusterer
from tests.alerts.helpers import T0, ScriptedNotifier, SyncStore, make_engine, post
from tests.alerts.test_crisislex import KEYWORDS, SURGE, timeline

EVENT_WORDS = {
    "shooting",
    "shooter",
    "shot",
    "shots",
    "fired",
    "gunfire",
    "gunman",
    "tsa",
    "terminal",
    "suspect",
    "killed",
    "officer",
    "custody",
    "checkpoint",
}


def complaints(shared_data):
    with open(shared_data / "complaints" / "complaints-data.csv", encoding="utf-8") as f:
        return [row[1] for row in csv.reader(f)]


def words_of(texts):
    return {w for text in texts for w in text.lower().replace("#", " ").split()}


def test_replayed_shooting_among_complaints_explains_its_spike(shared_data):
    """The LAX timeline mixed with complaint tweets over the same two weeks: the spike's explanation names the
    shooting's words, its top story is the shooting's, and its top posts and sources are the event's."""
    rows = timeline(shared_data)
    start, end = rows[0][0], rows[-1][0]
    rng = random.Random(7)
    posts = [Post(source="crisislex", network="twitter", native_id=i, text=text, author=f"a{n % 97}", created_at=t,
                  likes=n % 5, reposts=n % 3, author_followers=100 * (n % 11), topics=("LAX",),
                  analysis=Analysis(0.0, 0.0, 1.0, 0.0, "neutral"))
             for n, (t, i, text) in enumerate(rows)]  # fmt: skip
    background = complaints(shared_data)
    posts += [Post(source="complaints", network="twitter", native_id=f"c{n}", text=text, author=f"c{n % 50}",
                   created_at=rng.uniform(start, end), topics=("LAX",), analysis=Analysis(0.0, 0.0, 1.0, 0.0, "neutral"))
              for n, text in enumerate(background)]  # fmt: skip
    posts.sort(key=lambda p: p.created_at)
    topic = Topic(name="LAX", terms=tuple(KEYWORDS))
    clusterer = StoryClusterer(exclude=excluded_words([topic]))
    rule, problems = check_rule_spec({"name": "lax-spike", "type": "volume_spike", "topics": ["LAX"]})
    assert rule is not None, problems
    detector = Detector([rule], stories=clusterer, exclude=excluded_words([topic]))
    # As in the hub: a batch joins its stories before the alerts see it.
    # Replayed up to the busiest hour (17:00-18:00), while the incident is open.
    busiest = SURGE + 3600
    upto = [p for p in posts if p.created_at < busiest]
    for k in range(0, len(upto), 20):
        batch = upto[k : k + 20]
        for p in batch:
            clusterer.add(p)
        detector.observe(batch)
    changes, _ = detector.book.drain()
    (opened,) = [c for c in changes if c.event == "opened"]
    assert SURGE <= opened.incident.opened_at <= SURGE + 3600
    # Already at its opening it says what rose: the first reports' words.
    first = opened.snapshot["explanation"]
    assert first["window"] == "5m" and first["posts"] >= 20
    assert EVENT_WORDS & words_of(t["term"] for t in first["terms"]), first["terms"]
    # An hour in, recomputed at each new peak: the shooting's words, not the complaints', never the topic's own.
    (incident,) = detector.book.open.values()
    why = incident.explanation
    assert why["until"] == incident.peak["at"] and why["until"] > first["until"]
    terms = [t["term"] for t in why["terms"]]
    assert EVENT_WORDS & words_of(terms), terms
    assert not {"lax", "airport"} & words_of(terms), terms
    for t in why["terms"]:
        assert t["count"] >= 3 and t["baseline"] < t["count"]
    # The top story is the shooting: its words name it and its posts are the timeline's.
    top = why["stories"][0]
    assert EVENT_WORDS & words_of(top["terms"]), top
    story = clusterer.stories[top["id"]]
    assert story.sources["crisislex"] > 5 * story.sources.get("complaints", 0)
    assert top["count"] > top["baseline"] and top["count"] >= 3
    # Top posts by reach, the sources and their counts.
    assert len(why["top_posts"]) == 3 and all(p["source"] == "crisislex" for p in why["top_posts"])
    reach = [p["likes"] + 2 * p["reposts"] + (p["author_followers"] or 0) / 100 for p in why["top_posts"]]
    assert reach == sorted(reach, reverse=True)
    assert why["sources"][0]["source"] == "crisislex" and why["sources"][0]["count"] >= 20
    assert why["places"] == []  # no tweet here is placed
    # The summary a notification carries.
    lines = explanation_lines(incident.to_dict())
    assert lines[0].startswith("Why: story '") and "rose from" in lines[0]


def placed(n, t, text, lat, lon, **kw):
    return post(n, t, text=text, lat=lat, lon=lon, **kw)


def test_places_and_sources_of_a_spike():
    """Placed posts are counted by rounded place, with their mean position; sources by name, busiest first."""
    rule, _ = check_rule_spec({"name": "spike", "type": "volume_spike", "min_count": 10, "warmup": 0,
                               "baseline": "1h", "window": "5m"})  # fmt: skip
    detector = Detector([rule])
    base = [post(i, T0 + i * 120, text="acme quiet day") for i in range(30)]
    burst = [placed(100 + i, T0 + 3600 + i * 10, "river flood near the bridge", 48.85 + i * 0.001, 2.35,
                    source="bluesky" if i % 3 else "mastodon") for i in range(20)]  # fmt: skip
    burst += [placed(200 + i, T0 + 3600 + i * 10 + 5, "river flood downtown", -33.9, 151.2) for i in range(4)]
    detector.observe(base + burst + [post(999, T0 + 3600 + 310)])
    # Recomputed as the incident goes on: the latest covers the whole burst.
    (incident,) = detector.book.open.values()
    why = incident.explanation
    assert why["places"][0]["count"] == 20 and abs(why["places"][0]["lat"] - 48.86) < 0.02
    assert why["places"][1] == {"lat": -33.9, "lon": 151.2, "count": 4}
    assert [(s["source"], s["count"]) for s in why["sources"]] == [("bluesky", 13), ("mastodon", 7), ("s", 4)]
    assert {"river", "flood"} <= words_of(t["term"] for t in why["terms"])
    assert why["stories"] == []  # no clusterer given


def test_a_sentiment_shift_is_explained_by_its_negative_posts():
    """A shift's explanation is about the negative posts of the window: their words, their top posts."""
    rule, _ = check_rule_spec({"name": "shift", "type": "sentiment_shift", "min_count": 10, "warmup": 0,
                               "baseline": "1h", "window": "5m"})  # fmt: skip
    detector = Detector([rule])
    calm = [post(i, T0 + i * 120, text="acme quiet day") for i in range(30)]
    angry = [post(100 + i, T0 + 3600 + i * 10, text="acme refund never came charged twice", sentiment="negative",
                  likes=50 + i) for i in range(15)]  # fmt: skip
    happy = [post(200 + i, T0 + 3600 + i * 10 + 5, text="acme lovely new colours", likes=500) for i in range(5)]
    detector.observe(calm + angry + happy + [post(999, T0 + 3600 + 300)])
    (incident,) = detector.book.open.values()
    why = incident.explanation
    assert 10 <= why["posts"] <= 15  # the negative posts of the window at the shift's peak
    assert {p["id"] for p in why["top_posts"]} <= {f"s:{100 + i}" for i in range(15)}  # the happy ones had more likes
    assert [p["likes"] for p in why["top_posts"]] == sorted((p["likes"] for p in why["top_posts"]), reverse=True)
    terms = words_of(t["term"] for t in why["terms"])
    assert {"refund", "charged"} <= terms and not {"lovely", "colours"} & terms


# -- the story rule ----------------------------------------------------------------


FAST = {"name": "fast-story", "type": "story", "rate": 2, "min_size": 20, "window": "10m", "cooldown": "15m"}


def test_story_rule_fires_once_for_a_fast_story_not_for_a_slow_one():
    """A story growing at 4 posts a minute opens one incident naming it (id and words) and notifies once;
    a story of one post a minute running alongside never fires; the incident resolves once the story calms."""
    clock = Clock()
    clock.advance(T0)
    hook = ScriptedNotifier("hook")
    clusterer = StoryClusterer()
    engine = make_engine(clock, [FAST], notifiers={"hook": hook}, stories=clusterer)
    n = 0
    fast_words = ["flood", "river", "evacuate", "bridge", "rain"]
    for minute in range(50):
        batch = []
        for k in range(4 if minute < 20 else 0):
            n += 1
            words = random.Random(n).sample(fast_words, 4)
            batch.append(post(n, T0 + minute * 60 + k * 15, text=" ".join(words) + f" {n}"))
        n += 1
        batch.append(post(n, T0 + minute * 60 + 30, text="bakery croissant sale sourdough today"))
        for p in batch:
            clusterer.add(p)
        engine.posts_stored(batch)
        clock.advance(60)
    fast = max(clusterer.stories.values(), key=lambda s: s.size)
    slow = [s for s in clusterer.stories.values() if "croissant" in s.terms]
    assert len(slow) == 1 and slow[0].size == 50 and fast.size == 80
    rows = engine.store.store.rows("SELECT rule, source, state, signal, explanation FROM alert_incidents")
    assert len(rows) == 1, rows
    rule, source, state, signal, explanation = rows[0]
    signal, explanation = json.loads(signal), json.loads(explanation)
    assert (rule, source, state) == ("fast-story", f"story:{fast.id}", "resolved")
    assert signal["story"] == fast.id and set(signal["terms"]) <= set(fast_words) and len(signal["terms"]) >= 3
    assert signal["unit"] == "posts per minute"
    assert explanation["stories"][0]["id"] == fast.id and explanation["top_posts"]
    assert [n.event for n in hook.calls] == ["opened", "resolved"]
    opened = hook.calls[0].payload["incident"]
    assert opened["signal"]["value"] >= 2 and opened["signal"]["size"] >= 20
    assert opened["explanation"]["stories"][0]["id"] == fast.id
    # It opened once the story reached min_size (20 posts: the fifth minute), not before.
    assert parse_time(opened["opened_at"]) == T0 + 5 * 60
    name = ", ".join(opened["explanation"]["stories"][0]["terms"])
    assert explanation_lines(opened)[0].startswith(f"Why: story '{name}' ({fast.id}) rose from 0 to ")
    assert headline(hook.calls[0].payload) == "New incident [warning]: fast-growing story on Acme (rule fast-story)"
    assert summary_lines(hook.calls[0].payload)[0].startswith(
        f"story {fast.id} ({', '.join(opened['signal']['terms'])}): "
    )


def test_story_rule_needs_min_size_and_the_rate():
    """A burst smaller than min_size, or a story slower than the rate, opens nothing."""
    clock = Clock()
    clock.advance(T0)
    clusterer = StoryClusterer()
    rule = dict(FAST, min_size=50)
    engine = make_engine(clock, [rule], stories=clusterer)
    for minute in range(15):
        batch = [post(minute * 10 + k, T0 + minute * 60 + k * 20, text=f"flood river evacuate bridge {k}")
                 for k in range(3)]  # fmt: skip
        for p in batch:
            clusterer.add(p)
        engine.posts_stored(batch)
        clock.advance(60)
    assert engine.store.store.rows("SELECT id FROM alert_incidents") == []
    # Without a clusterer (stories off) a story rule never fires.
    assert make_engine(Clock(), [FAST]).detector.stories is None


def test_story_rule_keys_are_checked():
    """rate and min_size are checked like every key, and the window must fit the stories' counts."""
    rule, problems = check_rule_spec(FAST)
    assert rule is not None and rule.rate == 2.0 and rule.min_size == 20 and rule.window == 600
    _, problems = check_rule_spec(dict(FAST, rate=0))
    assert problems == ["rule.rate: must be more than 0"]
    _, problems = check_rule_spec(dict(FAST, min_size="many"))
    assert problems and problems[0].startswith("rule.min_size:")
    _, problems = check_rule_spec(dict(FAST, window="3h"))
    assert problems and problems[0].startswith("rule.window:")
    rule, _ = check_rule_spec({"name": "s", "type": "story"})
    assert (rule.rate, rule.min_size, rule.window, rule.cooldown) == (2.0, 20, 600, 1800.0)


def test_story_rules_are_not_backtested():
    """A backtest of a story rule is refused on rule.type: stories are not stored with their history."""
    from monitor.alerts.engine import AlertError

    engine = make_engine(Clock(), [])
    with pytest.raises(AlertError) as e:
        run(engine.backtest(FAST, T0 - 3600, T0))
    assert e.value.problems[0].startswith("rule.type: story rules cannot be backtested")


# -- stored, restarted ---------------------------------------------------------------


def spike_engine(clock, store=None, **kw):
    rule = {"name": "spike", "type": "volume_spike", "min_count": 10, "warmup": 0, "baseline": "1h", "cooldown": "10m"}
    return make_engine(clock, [rule], store=store, **kw)


def test_explanation_is_stored_and_survives_a_restart():
    """The explanation is written with the incident, read back by the API's query, and a restarted engine keeps it."""
    clock = Clock()
    clock.advance(T0 + 3600)
    store = SyncStore()
    engine = spike_engine(clock, store)
    engine.posts_stored([post(i, T0 + i * 300, text="acme calm") for i in range(12)])
    engine.posts_stored([post(100 + i, T0 + 3600 + i * 5, text="acme outage checkout broken") for i in range(30)])
    engine.posts_stored([post(999, T0 + 3600 + 420)])
    clock.advance(1)
    (incident,) = engine.detector.book.open.values()
    stored = run(engine.incident(incident.id))
    assert words_of(t["term"] for t in stored["explanation"]["terms"]) >= {"outage", "checkout"}
    assert "acme" not in words_of(t["term"] for t in stored["explanation"]["terms"])
    run(engine.stopService())
    again = spike_engine(clock, store)
    (loaded,) = again.detector.book.open.values()
    assert loaded.explanation == stored["explanation"]


def run(d):
    """The result of a coroutine or Deferred that must have finished (synchronous store)."""
    out = []
    ensureDeferred(d).addBoth(out.append)
    assert out, "expected a fired Deferred"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


# -- notifications, escaped --------------------------------------------------------------

HOSTILE = "<script>alert(1)</script> <!channel> *bold* _it_ [click](https://evil.example) & <@U123>"


def hostile_note(event="opened"):
    incident = Incident("inc_9", "spike", "volume_spike", "Acme", None, "warning", 1.7e9, 1.7e9 + 60, 900.0)
    incident.posts, incident.hits = 140, 3
    incident.signal = {"value": 140, "count": 140, "baseline": 2, "ratio": 70, "window": "10m", "direction": "up"}
    incident.explanation = {
        "window": "10m", "from": "2023-11-14T22:00:00.000Z", "until": "2023-11-14T22:10:00.000Z", "posts": 140,
        "baseline_posts": 12,
        "stories": [{"id": "s7", "terms": ["flood", "river", "<!here>"], "count": 140, "baseline": 2, "size": 300}],
        "terms": [{"term": "evacuate", "count": 60, "baseline": 1.0}, {"term": "<b>dam</b>", "count": 9, "baseline": 0}],
        "top_posts": [{"id": "x:1", "author": "mallory<!everyone>", "text": HOSTILE, "url": "https://social.example/1",
                       "source": "bluesky", "network": "bluesky", "likes": 5, "reposts": 2, "author_followers": 9000}],
        "sources": [{"source": "bluesky", "network": "bluesky", "count": 100}, {"source": "mastodon", "network": "mastodon", "count": 40}],
        "places": [{"lat": 51.5, "lon": -0.12, "count": 12}],
    }  # fmt: skip
    return Notification("msg_9", "inc_9", "c", event, {"event": event, "incident": incident.to_dict()}, created_at=0.0)


def test_every_notifier_carries_the_explanation_escaped():
    """Slack (text and blocks), e-mail, webhook JSON and the live push all carry the why, with hostile post text
    and story words escaped where markup means something."""
    n = hostile_note()
    lines = explanation_lines(n.incident)
    assert lines[0] == "Why: story 'flood, river, <!here>' (s7) rose from 2 to 140 posts/10m"
    assert lines[1] == "Terms: evacuate (60, was 1), <b>dam</b> (9, was 0)"
    assert lines[2].startswith("Top post: @mallory<!everyone> (9000 followers) on bluesky: <script>")
    assert lines[3:] == ["Sources: bluesky 100, mastodon 40", "Places: 51.5, -0.12 (12 posts)"]

    slack = slack_message(n.payload)
    text = json.dumps(slack, ensure_ascii=False)
    assert "rose from 2 to 140 posts/10m" in text and "Sources: bluesky 100" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;!channel&gt;" in text
    for raw in ("<script>", "<!channel>", "<!here>", "<!everyone>", "<@U123>", "<b>dam"):
        assert raw not in text, raw
    # Markdown stays text: no Slack link is made of it.
    assert "<https://evil.example" not in text
    assert "Why: story" in slack["text"] and "<!here>" not in slack["text"]

    mail = email_message(n, "monitor@example.com", ["ops@example.com"], 0).decode()
    import email

    body = email.message_from_string(mail).get_payload(decode=True).decode()
    assert "Why: story 'flood, river, <!here>' (s7) rose from 2 to 140 posts/10m" in body
    assert "Places: 51.5, -0.12 (12 posts)" in body and "Content-Type: text/plain" in mail

    hook = json.loads(webhook_body(n, 0))
    assert hook["data"]["incident"]["explanation"]["stories"][0]["id"] == "s7"
    assert hook["data"]["incident"]["explanation"]["top_posts"][0]["text"] == HOSTILE  # JSON carries it as data

    live = live_message(n)
    assert live["why"] == lines and live["incident"]["explanation"]["terms"][0]["term"] == "evacuate"


def test_incidents_without_explanation_say_nothing_more():
    """Post-rule incidents have no explanation: messages are as before."""
    n = hostile_note()
    n.payload["incident"]["explanation"] = {}
    assert explanation_lines(n.incident) == []
    assert "Why:" not in json.dumps(slack_message(n.payload))
    assert live_message(n)["why"] == []


# -- a real hub ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_real_hub_gives_its_stories_to_the_story_rule(reactor, tmp_path, shared_data):
    """A twistd hub with stories on, replaying the LAX tweets among complaints: its story rule opens an incident
    naming a story of the shooting, whose explanation the API returns."""
    from tests.test_stories import replaying_hub

    rules = '[[rules]]\nname = "grow"\ntype = "story"\nrate = 1\nmin_size = 15\n'
    hub = await replaying_hub(reactor, tmp_path, shared_data, rules)
    try:
        code, body = await hub.get("/api/v1/incidents?rule=grow")
        assert code == 200
        incidents = json.loads(body)["incidents"]
        assert incidents, body
        biggest = max(incidents, key=lambda i: i["signal"]["size"])
        assert biggest["type"] == "story" and biggest["source"] == f"story:{biggest['signal']['story']}"
        assert {"shooting", "lax", "#lax", "airport", "tsa"} & set(biggest["signal"]["terms"]), biggest["signal"]
        why = biggest["explanation"]
        assert why["stories"][0]["id"] == biggest["signal"]["story"] and why["top_posts"]
        assert why["sources"] == [{"source": "archive", "network": None, "count": why["sources"][0]["count"]}]
        # One incident per story, never two for the same one.
        assert len({i["source"] for i in incidents}) == len(incidents)
    finally:
        assert await hub.stop(), hub.output()
