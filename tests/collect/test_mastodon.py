"""
The Mastodon collector against the fake instance, in memory: Clock-driven
time and treq's StubTreq (a real Agent and Site over iosim).
"""

import json

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock

from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED
from monitor.collect.mastodon import MastodonSource, Timeline, newest, post_from_status
from monitor.config import ConfigError, parse_config
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from tests.fakes.mastodon import FakeMastodon
from tests.fakes.store import CursorStore

NOW = 1767268800.0
TAG = '<a href="https://mastodon.test/tags/acme" class="mention hashtag" rel="tag">#<span>acme</span></a>'


_worlds = []


@pytest.fixture(autouse=True)
def stop_worlds():
    """Stop every collector a test started, so none lingers into the next test."""
    yield
    while _worlds:
        w = _worlds.pop()
        if w.source.running:
            w.source.stopService()


class World:
    """A fake instance, a collector talking to it through StubTreq, and the queue it fills."""

    def __init__(
        self, timelines=("#acme",), cursor=None, size=10000, token="", fake_token=None, domain="mastodon.test", **kw
    ):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.fake = FakeMastodon(self.clock, domain=domain, token=fake_token)
        self.stub = StubTreq(self.fake.resource())
        self.queue = MemoryQueue(size, reactor=self.clock)
        self.store = CursorStore(cursor)
        self.source = MastodonSource(
            "masto",
            self.queue,
            self.store,
            Metrics(),
            f"https://{domain}",
            list(timelines),
            token=token,
            reactor=self.clock,
            **kw,
        )
        self.source.http_client = self.stub
        self.posts = []

    def start(self):
        _worlds.append(self)
        self.source.startService()
        self.settle()
        return self

    def settle(self):
        for _ in range(30):
            self.stub.flush()
            self.clock.advance(0)

    def advance(self, seconds, step=1.0):
        self.settle()
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step
            self.settle()

    def take(self):
        got = []
        if self.queue.size():
            self.queue.get(100000).addCallback(got.extend)
        self.settle()
        return got

    def paths(self):
        return [(path, args.get("min_id", [None])[0]) for path, args, _ in self.fake.requests]


def acme(fake, n, **kw):
    return [fake.status(f"<p>Is {TAG} down? #{i} 😩</p>", tags=["acme"], **kw) for i in range(n)]


def test_timelines_map_to_rest_and_streaming_paths():
    """Each timeline spelling maps to its REST path and parameters and its stream."""
    t = Timeline.parse("#acme:local")
    assert (t.rest_path, t.params, t.stream_path, t.stream_params) == (
        "/api/v1/timelines/tag/acme",
        (("local", "true"),),
        "/api/v1/streaming/hashtag/local",
        (("tag", "acme"),),
    )
    t = Timeline.parse("public:remote")
    assert (t.rest_path, t.params, t.stream_path) == (
        "/api/v1/timelines/public",
        (("remote", "true"),),
        "/api/v1/streaming/public/remote",
    )
    assert Timeline.parse("#café").rest_path == "/api/v1/timelines/tag/caf%C3%A9"
    assert newest("99", "100") == "100" and newest(None, "5") == "5"


def test_polls_gap_free_with_min_id_pages():
    """The first poll takes the newest page; later ones page with min_id, oldest first, until a short page."""
    w = World(limit=2, poll_interval=30.0)
    old = acme(w.fake, 3)
    w.start()
    first = w.take()
    assert [p.native_id for p in first] == [s["uri"] for s in old[1:]]  # the newest page only
    new = acme(w.fake, 5)
    w.advance(30)
    got = w.take()
    assert [p.native_id for p in got] == [s["uri"] for s in new]
    mins = [m for path, m in w.paths()]
    assert mins == [None, old[2]["id"], old[2]["id"], new[1]["id"], new[3]["id"]]
    assert json.loads(got[-1].cursor) == {"#acme": new[4]["id"]}
    assert [json.loads(p.cursor)["#acme"] for p in got] == [s["id"] for s in new]
    assert w.source.state == CONNECTED and w.source.rate_limit_remaining == 300 - 5


def test_server_ignoring_min_id_does_not_spin():
    """A server that ignores min_id (always the newest page) is not asked again and again."""
    w = World(limit=2, poll_interval=30.0)
    render = w.fake.render_timeline
    w.fake.render_timeline = lambda request, path, args, auth: render(
        request, path, {k: v for k, v in args.items() if k != "min_id"}, auth
    )
    statuses = acme(w.fake, 3)
    w.start()
    assert len(w.fake.requests) == 2 and len(w.take()) == 2
    w.advance(30)
    assert len(w.fake.requests) == 3 and w.take() == [] and w.source.events["duplicate"] == 4
    assert w.source.positions == {"#acme": statuses[-1]["id"]}


def test_status_becomes_a_plain_text_post():
    """HTML becomes plain text (entities, emoji), a content warning leads, and counts and author are kept."""
    w = World()
    s = w.fake.status(
        f"<p>Is {TAG} down?<br>AT&amp;T too &lt;3 😩</p><p>second</p>",
        tags=["acme"],
        spoiler_text="Acme rant",
        language="de",
        favourites_count=9,
        reblogs_count=5,
        replies_count=2,
    )
    r = w.fake.status(f"<p>{TAG} remote</p>", tags=["acme"], acct="carol", local=False, language=None, url=None)
    w.start()
    a, b = w.take()
    assert a.text == "Acme rant Is #acme down? AT&T too <3 😩 second"
    assert (a.uid, a.url, a.lang) == (f"mastodon:{s['uri']}", s["url"], "de")
    assert (a.likes, a.reposts, a.replies, a.author_followers) == (9, 5, 2, 812)
    assert a.author == "bob@mastodon.test" and a.created_at == NOW
    assert a.extra["hashtags"] == ["acme"] and a.extra["instance"] == "mastodon.test"
    assert b.author == "carol@remote.example" and b.url == r["uri"] and b.lang is None


def test_boost_counts_the_boosted_status_once():
    """A boost is the status it boosts, once, with the booster noted; the original and the boost are one post."""
    w = World(timelines=("public",))
    original = w.fake.status("<p>Acme is great</p>", acct="alice")
    boost = w.fake.status("", acct="dave", reblog=w.fake.public(original))
    w.start()
    (post,) = w.take()
    assert post.native_id == original["uri"] and post.text == "Acme is great"
    assert w.source.events["duplicate"] == 1
    assert json.loads(post.cursor) == {"public": original["id"]}
    w2 = World(timelines=("public",))
    w2.fake.status("", acct="dave", reblog=w.fake.public(original))
    w2.start()
    (only,) = w2.take()
    assert only.uid == post.uid and only.extra["boosted_by"] == "dave" and only.author == "alice@mastodon.test"
    assert boost["reblog"]["id"] == original["id"]


def test_same_status_through_two_instances_is_one_post():
    """A status federated to two instances has two local ids but one uri, hence one uid."""
    here, there = World(domain="one.test"), World(domain="two.test")
    uri = "https://origin.example/users/zoe/statuses/1"
    here.fake.status("<p>Acme!</p>", acct="zoe@origin.example", local=False, uri=uri, tags=["acme"])
    there.fake.status("<p>Acme!</p>", acct="zoe@origin.example", local=False, uri=uri, tags=["acme"])
    there.fake.status("<p>filler</p>", tags=["acme"])
    (a,) = here.start().take()
    b, _ = there.start().take()
    assert a.uid == b.uid == f"mastodon:{uri}" and a.author == b.author == "zoe@origin.example"


def test_one_status_in_two_timelines_is_taken_once():
    """A status in two followed timelines is queued once; each timeline keeps its own position."""
    w = World(timelines=("#acme", "public"))
    s = w.fake.status(f"<p>{TAG}</p>", tags=["acme"])
    w.start()
    (post,) = w.take()
    assert post.native_id == s["uri"] and w.source.events["duplicate"] == 1
    w.fake.status("<p>other</p>")
    w.advance(30)
    (other,) = w.take()
    assert json.loads(other.cursor) == {"#acme": s["id"], "public": w.fake.statuses[-1]["id"]}


def test_restart_resumes_from_saved_positions():
    """A saved JSON cursor is used as min_id per timeline; a broken one is ignored."""
    w = World(timelines=("#acme", "public:local"))
    statuses = acme(w.fake, 4)
    w.source.store = CursorStore(
        json.dumps({"#acme": statuses[1]["id"], "public:local": statuses[2]["id"], "gone": "1"})
    )
    w.start()
    got = w.take()
    assert w.paths() == [
        ("/api/v1/timelines/tag/acme", statuses[1]["id"]),
        ("/api/v1/timelines/public", statuses[2]["id"]),
    ]
    assert [p.native_id for p in got] == [s["uri"] for s in statuses[2:]]
    assert MastodonSource._load(w.source, "{not json") == {}


def test_rate_limit_429_waits_until_the_iso_reset():
    """Remaining 0 waits for X-RateLimit-Reset (ISO, microseconds); a 429 waits too; nothing is lost."""
    w = World(poll_interval=1.0)
    w.fake.rate_limit = 2
    w.start()
    assert w.source.rate_limit_remaining == 1
    w.advance(2)
    assert w.source.state == RATE_LIMITED and "rate limit used up" in w.source.last_error
    assert w.source.resume_at == pytest.approx(NOW + 300.0)  # the fake's window, to the microsecond
    assert w.source.status()["rate_limit_remaining"] == 0 and len(w.fake.requests) == 2
    statuses = acme(w.fake, 3)
    w.advance(290, step=10)
    assert w.source.state == RATE_LIMITED and len(w.fake.requests) == 2  # it waited instead of being refused
    w.advance(15)
    assert [p.native_id for p in w.take()] == [s["uri"] for s in statuses]


def test_429_waits_as_the_instance_says():
    """A 429 (its JSON error, remaining 0, an ISO reset) is rate limited until the reset, then goes on."""
    w = World()
    w.fake.rate_limit = 0  # counts the collector's requests differently: every one is over
    statuses = acme(w.fake, 2)
    w.start()
    assert w.source.state == RATE_LIMITED and "HTTP 429 (Too many requests)" in w.source.last_error
    assert w.source.resume_at == pytest.approx(NOW + 300.0) and w.source.rate_limit_remaining == 0
    w.fake.rate_limit = 300
    w.advance(295, step=5)
    assert len(w.fake.requests) == 1 and w.take() == []
    w.advance(10)
    assert [p.native_id for p in w.take()] == [s["uri"] for s in statuses]
    assert w.source.state == CONNECTED


def test_5xx_burst_backs_off_then_recovers_without_loss():
    """A burst of 502/503/500 backs off with growing delays; then every status arrives once."""
    w = World(poll_interval=5.0)
    statuses = acme(w.fake, 3)
    w.fake.fail = [503, 502, 500, 503]
    w.start()
    assert w.source.state == BACKING_OFF and "HTTP 503" in w.source.last_error
    delays = []
    for _ in range(4):
        before = len(w.fake.requests)
        start = w.clock.seconds()
        while len(w.fake.requests) == before:
            w.advance(0.5, step=0.5)
        delays.append(w.clock.seconds() - start)
    assert delays[0] < delays[1] < delays[2]
    assert [p.native_id for p in w.take()] == [s["uri"] for s in statuses]
    assert w.source.state == CONNECTED


def test_malformed_pages_and_entries_are_dead_letters():
    """Invalid and truncated JSON pages back off; a bad entry is kept aside while its neighbours arrive."""
    w = World(poll_interval=5.0)
    w.fake.garbage = [b"<html>oops</html>", b'[{"id": "1", "uri": "x"']
    good = acme(w.fake, 1)[0]
    broken = w.fake.status("<p>x</p>", tags=["acme"], created_at="yesterday")
    last = acme(w.fake, 1)[0]
    w.start()
    w.advance(20)
    assert [p.native_id for p in w.take()] == [good["uri"], last["uri"]]
    errors = [e for _, _, e, _ in w.store.letters]
    assert errors[0].startswith("timeline page") and errors[1].startswith("timeline page")
    assert errors[2].startswith("created_at") and w.store.letters[2][3].endswith(f"id {broken['id']}")
    assert w.source.malformed_count == 3


def test_oversized_page_is_refused():
    """A page larger than the limit is dropped (not buffered), dead-lettered with its start, and retried."""
    w = World(poll_interval=5.0)
    w.source.max_body = 2000
    w.fake.status("<p>" + "acme " * 1000 + "</p>", tags=["acme"])
    w.start()
    assert w.source.malformed_count == 1 and "larger than 2000" in w.store.letters[0][2]
    assert len(w.store.letters[0][1]) <= 2000 and w.source.state == BACKING_OFF


def test_restricted_timeline_asks_for_a_token():
    """401 on a timeline (4.5+ restricted feeds) is failing with a hint, retried slowly, never a crash."""
    w = World()
    w.fake.timelines_need_token = True
    w.start()
    assert w.source.state == FAILING and "set token" in w.source.last_error
    assert w.source.resume_at - w.clock.seconds() >= 60


def test_unknown_hashtag_is_empty_not_an_error():
    """A 404 for a hashtag nobody used is an empty timeline."""
    w = World(timelines=("#unknown",)).start()
    assert w.source.state == CONNECTED and w.source.last_error is None and w.take() == []


# -- streaming ------------------------------------------------------------------------------


def test_streams_with_a_token_and_catches_up_alongside():
    """With a token each timeline is streamed; the catch-up poll runs too; heartbeats and deletes are handled."""
    w = World(timelines=("#acme", "public:local"), token="sekrit", fake_token="sekrit")
    before = acme(w.fake, 2)
    w.start()
    assert w.source.status()["streams"] == {"#acme": "connected", "public:local": "connected"}
    assert ("/api/v2/instance", None) in w.paths()
    assert {p for p, _ in w.paths()} >= {"/api/v1/streaming/hashtag", "/api/v1/streaming/public/local"}
    assert all(auth == "Bearer sekrit" for path, _, auth in w.fake.requests)
    assert [p.native_id for p in w.take()] == [s["uri"] for s in before]
    live = acme(w.fake, 2)
    w.fake.delete(live[0]["id"])
    w.fake.edit(live[1], "<p>edited</p>")
    w.advance(60)  # heartbeats only
    got = w.take()
    assert [p.native_id for p in got] == [s["uri"] for s in live]
    assert w.source.events["delete"] == 2 and w.source.events["edit"] == 2  # once per stream
    assert w.source.events["update"] == 4 and w.source.events["duplicate"] == 4  # each status came twice
    assert w.source.positions == {"#acme": live[1]["id"], "public:local": live[1]["id"]}
    assert live[1]["id"] in json.loads(got[-1].cursor).values()  # whichever stream brought it first
    n = len(w.fake.requests)
    w.advance(120)
    assert len(w.fake.requests) == n  # no polling while streaming


def test_stream_stall_reconnects_and_loses_nothing():
    """Heartbeats, then silence: after stall_timeout the stream reconnects and the catch-up fills the gap."""
    w = World(token="t", fake_token="t", stall_timeout=45.0)
    w.start()
    w.advance(90, step=5)  # :thump every 15 s keeps it up; the last one just came
    assert w.source.state == CONNECTED and len(w.fake.streams) == 1
    w.fake.hang = True
    missed = acme(w.fake, 3)  # written while the stream is silent
    w.advance(44.5, step=0.5)
    assert w.source.state == CONNECTED and w.take() == []
    w.advance(1, step=0.5)
    assert "stalled, nothing received for 45s" in w.source.last_error
    w.fake.hang = False
    w.advance(5)
    assert w.source.state == CONNECTED
    assert [p.native_id for p in w.take()] == [s["uri"] for s in missed]


def test_stream_dropped_mid_stream_resumes_without_loss_or_duplicates():
    """A stream cut in the middle reconnects; the catch-up poll brings what was missed, duplicates are dropped."""
    w = World(token="t", fake_token="t")
    w.start()
    first = acme(w.fake, 2)
    w.settle()
    w.fake.drop_streams()
    missed = acme(w.fake, 2, push=False)
    w.advance(5)
    after = acme(w.fake, 1)
    w.settle()
    got = w.take()
    assert [p.native_id for p in got] == [s["uri"] for s in first + missed + after]
    assert len({p.uid for p in got}) == len(got)


@pytest.mark.parametrize("how", ["wrong token", 403, 404, 400])
def test_refused_stream_falls_back_to_polling(how):
    """Streaming refused (401 bad token, 403, 404, 400): that timeline is polled instead."""
    w = World(token="mine", fake_token="theirs" if how == "wrong token" else "mine", poll_interval=10.0)
    if how != "wrong token":
        w.fake.stream_refuse = how
    w.start()
    assert w.source.status()["mode"] == "polling" and w.source.events["streaming_refused"] == 1
    assert "streaming refused" in w.source.last_error
    s = acme(w.fake, 1)[0]
    w.advance(10)
    assert [p.native_id for p in w.take()] == [s["uri"]]


def test_stream_garbage_is_dead_lettered_and_the_stream_goes_on():
    """Invalid JSON, a non-object and an over-long line in the stream are kept aside; good events still arrive."""
    w = World(token="t", fake_token="t")
    w.start()
    w.fake.stream_raw(b"event: update\ndata: {not json\n\n")
    w.fake.stream_raw(b"event: update\ndata: [1,2]\n\n")
    w.fake.stream_raw(b"event: update\ndata: " + b"x" * (1 << 20) + b"\n\n")
    w.fake.stream_raw(b"event: mystery\ndata: 1\n\nid: 7\nretry: 10\n: comment\n")
    s = acme(w.fake, 1)[0]
    w.settle()
    assert [p.native_id for p in w.take()] == [s["uri"]]
    errors = [e for _, _, e, _ in w.store.letters]
    assert errors[0].startswith("invalid JSON") and "not an object" in errors[1] and "longer than" in errors[2]
    assert w.source.events["other"] == 1 and w.source.state == CONNECTED


def test_streaming_backpressure_keeps_order():
    """With a tiny queue, streamed statuses wait (the body paused) and all arrive in order."""
    w = World(token="t", fake_token="t", size=2)
    w.start()
    statuses = acme(w.fake, 12)
    got = []
    for _ in range(20):
        w.settle()
        got += w.take()
    assert [p.native_id for p in got] == [s["uri"] for s in statuses]


def test_stop_cancels_everything():
    """Stopping cancels streams, polls and waits; no timer is left behind."""
    w = World(timelines=("#acme", "public"), token="t", fake_token="t")
    w.start()
    w.source.stopService()
    w.settle()
    assert w.source.state == "stopped"
    assert [c for c in w.clock.getDelayedCalls() if c.active() and "thump" not in repr(c.func)] == []


# -- configuration ------------------------------------------------------------------------


def test_config_keys_and_checks():
    """A mastodon source needs an instance URL and timelines; bad spellings are named."""
    config = parse_config(
        {
            "sources": [
                {
                    "kind": "mastodon",
                    "name": "m",
                    "instance": "https://mastodon.social",
                    "timelines": ["#acme", "public:local"],
                }
            ]
        }
    )
    (spec,) = config.sources
    assert spec["token"] == "" and spec["limit"] == 40 and spec["streaming"] is True
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "sources": [
                    {"kind": "mastodon", "name": "m", "instance": "mastodon.social", "timelines": ["acme"], "limit": 80}
                ]
            }
        )
    text = str(e.value)
    assert "sources[0].instance" in text and "'acme' is not a timeline" in text and "sources[0].limit" in text
    with pytest.raises(ConfigError, match="at least one timeline"):
        parse_config({"sources": [{"kind": "mastodon", "name": "m", "instance": "https://x.test", "timelines": []}]})


def test_post_from_status_refuses_what_it_cannot_read():
    """Missing uri, a bad account or a bad date name the field."""
    from monitor.collect.mastodon import MalformedStatus

    base = FakeMastodon(Clock()).public(FakeMastodon(Clock()).status("<p>x</p>"))
    for change, field in (
        ({"uri": None}, "uri"),
        ({"account": {}}, "account.acct"),
        ({"created_at": "nope"}, "created_at"),
        ({"content": 5}, "content"),
    ):
        with pytest.raises(MalformedStatus, match=field):
            post_from_status("s", dict(base, **change), "h")
