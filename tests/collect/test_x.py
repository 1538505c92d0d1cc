"""
The X collector in memory: the fake X API behind treq's StubTreq, time
driven by Clock.  Search paging and since_id, the post fields, rate limits,
the reconnect policy, stream rules, keep-alives and stalls, bad payloads.
"""

import json

from treq.testing import StubTreq
from twisted.internet.defer import fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock

from monitor.collect.base import BACKING_OFF, CONNECTED, FAILING, RATE_LIMITED
from monitor.backoff import Backoff
from monitor.collect.x import XSource, parse_tweet, problem, queries_for, topic_query
from monitor.metrics import Metrics
from monitor.model import Topic
from monitor.queue.memory import MemoryQueue
from tests.fakes.x import FakeX, problem_body
from tests.fakes.store import CursorStore

START = 1767225600.0  # 2026-01-01T00:00:00Z


class Harness:
    """A collector wired to a fake X in memory, with X's reconnect policy made deterministic."""

    def __init__(self, cursor=None, size=100000, names="tweet", fake=None, **kw):
        self.clock = Clock()
        self.clock.advance(START)
        self.fake = fake or FakeX(self.clock, names=names)
        self.queue = MemoryQueue(size, reactor=self.clock)
        self.store = CursorStore(cursor)
        self.metrics = Metrics()
        kw.setdefault("queries", ["acme"])
        self.source = XSource(
            "x", self.queue, self.store, self.metrics, "test-token", base_url="http://x.test/", reactor=self.clock, **kw
        )
        self.stub = StubTreq(self.fake)
        self.source.http_client = self.stub
        self.source.network_backoff = Backoff(0.25, step=0.25, cap=16, jitter=0)
        self.source.http_backoff = Backoff(5, cap=320, jitter=0)
        self.source.rate_backoff = Backoff(60, cap=960, jitter=0)
        self.committed = cursor

    def start(self):
        self.source.startService()
        self.turn()
        return self

    def turn(self, seconds=0.0):
        self.clock.advance(seconds)
        for _ in range(3):
            self.stub.flush()
            self.clock.advance(0)

    def take(self):
        """Everything queued so far; the last cursor among them counts as committed."""
        out = []
        for _ in range(100):
            if not self.queue.size():
                break
            self.queue.get(100000).addCallback(out.extend)
            self.turn()
        for p in out:
            if p.cursor is not None:
                self.committed = p.cursor
        return out

    def stop(self):
        self.source.stopService()
        self.fake.stop()


def ids(posts):
    return [p.native_id for p in posts]


# --- queries -------------------------------------------------------------------------


def test_topic_query_building():
    """Terms are ORed, phrases quoted, exclusions negated, languages as lang:, foreign handles left out."""
    t = Topic(
        name="Acme",
        terms=("acme", '"acme cloud"', "#acmedown", "@acmesupport", "@acme@mastodon.social", "acme.com"),
        variants=("acmee",),
        exclude=("roadrunner", "wile e"),
        languages=("en-GB", "de"),
    )
    assert topic_query(t) == (
        '(acme OR "acme cloud" OR #acmedown OR @acmesupport OR "acme.com" OR acmee) -roadrunner -"wile e" '
        "(lang:en OR lang:de) -is:retweet"
    )
    assert topic_query(Topic(name="G", terms=("globex",)), exclude_retweets=False) == "globex"
    assert topic_query(Topic(name="H", terms=("@someone@bsky.example",))) is None


def test_queries_from_topics_or_config():
    """Configured queries win; else one query per topic tagged by its name, skipping topics for other sources."""
    topics = [Topic(name="Acme", terms=("acme",)), Topic(name="Only RSS", terms=("x",), sources=("rss",))]
    assert queries_for("x", [], topics) == [("Acme", "acme -is:retweet")]
    assert queries_for("x", ["a OR b", "a OR b"], topics) == [("a OR b", "a OR b")]


def test_problem_type_suffix():
    """Problem types match on their suffix whatever the host; plain bodies still give a message."""
    for host in ("api.x.com", "api.twitter.com"):
        body = json.dumps(
            {"title": "Invalid Request", "detail": "bad query", "type": f"https://{host}/2/problems/invalid-request"}
        ).encode()
        assert problem(body) == ("invalid-request", "Invalid Request: bad query")
    assert problem(b'{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}') == (
        "about:blank",
        "Too Many Requests",
    )
    assert problem(b"<html>oops</html>") == ("", "<html>oops</html>")


# --- post fields -------------------------------------------------------------------------


def test_post_fields_from_expansions():
    """Author followers and verification come from includes.users, geo from a place's bbox centre or a point."""
    fake = FakeX(Clock())
    place = fake.add_place("Manhattan, NY", [-74.02, 40.70, -73.91, 40.88])
    a = fake.make_post(
        "acme &amp; &lt;b&gt;friends&lt;/b&gt; 🚀🔥",
        username="alice",
        place=place,
        likes=4,
        reposts=2,
        replies=1,
        followers=830,
        verified=True,
        created_at="2026-01-01T12:00:00.000Z",
    )
    b = fake.make_post("acme at a point", username="bob", point=[13.4, 52.5], lang="und")
    users = {u["id"]: u for u in fake.users.values()}
    pa = parse_tweet(a, "x", users, fake.places, 0.0, ("Acme",))
    assert pa.text == "acme & <b>friends</b> 🚀🔥" and pa.author == "alice"
    assert pa.url == f"https://x.com/alice/status/{a['id']}" and pa.uid == f"x:{a['id']}"
    assert (pa.likes, pa.reposts, pa.replies, pa.author_followers, pa.author_verified) == (4, 2, 1, 830, True)
    assert abs(pa.lat - 40.79) < 1e-9 and abs(pa.lon + 73.965) < 1e-9
    assert pa.created_at == START + 12 * 3600 and pa.lang == "en" and pa.extra["matching_rules"] == ["Acme"]
    pb = parse_tweet(b, "x", users, fake.places, 0.0)
    assert (pb.lat, pb.lon, pb.lang) == (52.5, 13.4, None)
    # No expansion for the author: the id stands in and the URL still works.
    pc = parse_tweet(dict(a, author_id="999"), "x", {}, {}, 0.0)
    assert pc.author == "999" and pc.url == f"https://x.com/i/web/status/{a['id']}"


def test_post_named_fields_accepted():
    """The Post-named spellings (repost_count, includes.posts, edit_history_post_ids) read like the Tweet ones."""
    h = Harness(names="post").start()
    h.fake.publish("acme reposted", reposts=7)
    h.turn(60)
    (p,) = h.take()
    assert p.reposts == 7 and h.source.malformed_count == 0
    tweet = dict(h.fake.posts[0], edit_history_post_ids=["1", "2"], note_tweet={"text": "acme long " * 40})
    q = parse_tweet(tweet, "x", {}, {}, 0.0)
    assert q.extra["edit_history_ids"] == ["1", "2"] and q.text.startswith("acme long acme long")


# --- search -------------------------------------------------------------------------------


def test_search_pages_then_since_id():
    """Every page is read once; only the last post carries the cursor (the first page's newest_id), used next."""
    h = Harness(max_results=10)
    for i in range(25):
        h.fake.publish(f"acme post {i}")
    h.fake.publish("nothing to see here")
    h.start()
    posts = h.take()
    assert sorted(ids(posts)) == sorted(p["id"] for p in h.fake.posts[:25])
    assert [p.cursor for p in posts[:-1]] == [None] * 24
    newest = h.fake.posts[24]["id"]
    assert json.loads(posts[-1].cursor) == {"since": {"acme": newest}}
    searches = h.fake.seen("search")
    assert len(searches) == 3 and searches[0].arg("since_id") is None and searches[2].arg("next_token")
    first = searches[0]
    assert first.arg("query") == "acme" and first.arg("max_results") == "10"
    assert "public_metrics" in first.arg("tweet.fields") and first.arg("expansions") == "author_id,geo.place_id"
    assert first.headers["authorization"] == "Bearer test-token" and first.headers["user-agent"].startswith("monitor/")
    assert h.source.state == CONNECTED
    h.fake.publish("acme again")
    h.turn(59)
    assert len(h.fake.seen("search")) == 3
    h.turn(1)
    assert h.fake.seen("search")[-1].arg("since_id") == newest
    assert [p.text for p in h.take()] == ["acme again"]
    h.stop()


def test_first_search_reads_at_most_max_pages():
    """A query never searched before stops after max_pages; later polls follow every page."""
    h = Harness(max_results=10, max_pages=2)
    for i in range(45):
        h.fake.publish(f"acme {i}")
    h.start()
    assert len(h.take()) == 20 and len(h.fake.seen("search")) == 2
    for i in range(25):
        h.fake.publish(f"acme later {i}")
    h.turn(60)
    assert len(h.take()) == 25 and len(h.fake.seen("search")) == 5
    h.stop()


def test_restart_resumes_from_committed_cursor_without_duplicates():
    """A new collector with the committed cursor asks only for newer posts."""
    h = Harness()
    for i in range(3):
        h.fake.publish(f"acme {i}")
    h.start()
    assert len(h.take()) == 3
    h.stop()
    h2 = Harness(cursor=h.committed, fake=h.fake)
    h2.fake.clock = h2.clock
    h2.fake.publish("acme after restart")
    h2.start()
    assert [p.text for p in h2.take()] == ["acme after restart"]
    assert h2.fake.seen("search")[-1].arg("since_id") == h.fake.posts[2]["id"]
    h2.stop()


def test_failure_mid_paging_keeps_old_position():
    """A 503 on page two: the position stays, the poll is retried after 5 s, and nothing is emitted twice."""
    h = Harness(max_results=10)
    for i in range(15):
        h.fake.publish(f"acme {i}")
    h.start()
    first = h.take()
    assert len(first) == 15 and json.loads(first[-1].cursor)["since"]["acme"] == h.fake.posts[14]["id"]
    for i in range(15):
        h.fake.publish(f"acme more {i}")
    h.fake.script("search", None)
    h.fake.script("search", 503, body=problem_body("about:blank", "Service Unavailable", "try later"))
    h.turn(60)
    got = h.take()
    assert len(got) == 10 and all(p.cursor is None for p in got)
    assert h.source.state == BACKING_OFF and h.source.positions["acme"] == h.fake.posts[14]["id"]
    h.turn(5)
    rest = h.take()
    assert len(rest) == 5 and json.loads(rest[-1].cursor)["since"]["acme"] == h.fake.posts[-1]["id"]
    assert len({p.native_id for p in first + got + rest}) == 30
    h.stop()


def test_remaining_zero_waits_for_reset():
    """x-rate-limit-remaining 0: the next request waits for x-rate-limit-reset, reported as rate limited."""
    h = Harness(poll_interval=10)
    h.fake.set_limit("search", 450, 1, START + 300)
    h.fake.publish("acme 1")
    h.start()
    assert len(h.take()) == 1 and h.source.rate_limit_remaining == 0
    assert h.metrics.rate_limit_remaining.labels("x")._value.get() == 0
    h.turn(10)
    assert h.source.state == RATE_LIMITED and h.source.status()["resume_at"] == "2026-01-01T00:05:01.000Z"
    h.turn(280)
    assert len(h.fake.seen("search")) == 1
    h.turn(11)
    assert len(h.fake.seen("search")) == 2 and h.source.state == CONNECTED
    h.stop()


def test_429_waits_until_reset_header():
    """A 429 with X's headers and problem body waits until the reset, then polls again."""
    h = Harness()
    h.fake.script(
        "search",
        429,
        headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(START + 120))},
        body=problem_body("about:blank", "Too Many Requests", "Too Many Requests", status=429),
    )
    h.start()
    assert h.source.state == RATE_LIMITED and "429" in h.source.last_error
    h.turn(120)
    assert len(h.fake.seen("search")) == 1
    h.turn(1)
    assert len(h.fake.seen("search")) == 2 and h.source.state == CONNECTED
    h.stop()


def test_5xx_burst_backs_off_exponentially():
    """A burst of 5xx answers is retried after 5, 10, 20 s; success resets the delay."""
    h = Harness()
    for code in (503, 500, 502):
        h.fake.script("search", code, body=b"<html>upstream error</html>")
    h.fake.publish("acme survives")
    h.start()
    times = []
    for _ in range(40):
        h.turn(1)
        times = [r for r in h.fake.seen("search")]
        if len(times) == 4:
            break
    assert h.clock.seconds() - START == 35 and h.source.state == CONNECTED
    assert [p.text for p in h.take()] == ["acme survives"]
    assert h.source.http_backoff.attempts == 0
    h.stop()


def test_partial_errors_are_counted_not_fatal():
    """errors[] next to data in a 200: the posts are kept, the errors counted."""
    h = Harness()
    post = h.fake.make_post("acme with a deleted quote")
    body = {
        "data": [post],
        "includes": {"users": list(h.fake.users.values())},
        "errors": [
            {
                "value": "123",
                "detail": "Could not find tweet with id: [123].",
                "title": "Not Found Error",
                "type": "https://api.x.com/2/problems/resource-not-found",
            }
        ],
        "meta": {"result_count": 1, "newest_id": post["id"], "oldest_id": post["id"]},
    }
    h.fake.script("search", 200, body=body)
    h.start()
    assert ids(h.take()) == [post["id"]]
    assert h.source.partial_errors == 1 and h.source.state == CONNECTED and h.source.status()["partial_errors"] == 1
    h.stop()


def test_malformed_pages_and_posts_are_dead_letters():
    """Truncated and invalid JSON pages, and posts with wrong types, are kept as dead letters; polling goes on."""
    h = Harness(poll_interval=10)
    good = h.fake.make_post("acme good one")
    bad = dict(h.fake.make_post("acme bad"), text=42)
    worse = dict(h.fake.make_post("acme worse"), public_metrics={"like_count": -1})
    h.fake.script("search", 200, body=b'{"data": [{"id": "1", "text": "acme tru')
    h.fake.script("search", 200, body=b"[1, 2]")
    h.fake.script(
        "search", 200, body={"data": [good, bad, worse, "nope"], "meta": {"result_count": 4, "newest_id": worse["id"]}}
    )
    h.start()
    h.turn(10)
    h.turn(10)
    assert ids(h.take()) == [good["id"]]
    errors = [e for _, _, e, _ in h.store.letters]
    assert errors[0] == "invalid JSON" and errors[1] == "not a JSON object"
    assert any("text" in e for e in errors) and any("like_count" in e for e in errors) and len(errors) == 5
    assert all(c == "search 'acme'" for _, _, _, c in h.store.letters)
    assert h.source.malformed_count == 5 and h.source.state == CONNECTED
    h.stop()


def test_refused_query_skipped_others_polled():
    """X refusing one query (400 invalid-request) does not stop the others; all refused means failing."""
    long_query = "acme OR " * 70 + "acme"
    h = Harness(queries=[long_query, "globex"])
    h.fake.publish("globex news")
    h.start()
    assert [p.text for p in h.take()] == ["globex news"]
    assert "too long" in h.source.last_error and h.source.state == CONNECTED
    h.stop()
    h = Harness(queries=[long_query]).start()
    assert h.source.state == FAILING
    h.stop()


def test_nothing_to_search_is_failing():
    """Without queries or searchable topics the source says so and stops."""
    h = Harness(queries=[], topics=[Topic(name="B", terms=("@a@bsky.example",))]).start()
    assert h.source.state == FAILING and "no queries" in h.source.last_error
    h.stop()


def test_bad_token_is_failing_with_http_backoff():
    """A 401 is failing (not a crash) and retried on the HTTP schedule."""
    h = Harness()
    h.source.bearer_token = "wrong"
    h.start()
    assert h.source.state == FAILING and "401" in h.source.last_error
    h.turn(5)
    assert len(h.fake.seen("search")) == 2
    h.stop()


class Refusing:
    """An HTTP client whose every connection is refused."""

    def __init__(self):
        self.calls = 0

    def request(self, *a, **kw):
        self.calls += 1
        return fail(ConnectionRefusedError("127.0.0.1:9"))


def test_connection_refused_backs_off_linearly():
    """A server that is not there: backing off 0.25, 0.5, 0.75 s..., never a crash."""
    h = Harness()
    client = h.source.http_client = Refusing()
    h.start()
    assert h.source.state == BACKING_OFF and "refused" in h.source.last_error.lower()
    for expected, step in ((2, 0.25), (3, 0.5), (4, 0.75)):
        h.turn(step - 0.01)
        assert client.calls == expected - 1
        h.turn(0.01)
        assert client.calls == expected
    h.stop()


# --- stream ----------------------------------------------------------------------------


def stream_harness(**kw):
    kw.setdefault("mode", "stream")
    kw.setdefault("topics", [Topic(name="Acme", terms=("acme",)), Topic(name="Globex", terms=("globex",))])
    kw.setdefault("queries", [])
    return Harness(**kw)


def test_rules_sync_adds_new_deletes_gone():
    """Rules follow the topics: missing ones added with the topic as tag, stale ones deleted, equal ones kept."""
    h = stream_harness()
    h.fake.rules = {
        "1": {"id": "1", "value": "acme -is:retweet", "tag": "Acme"},
        "2": {"id": "2", "value": "initech", "tag": "Initech"},
    }
    h.start()
    assert sorted((r["value"], r["tag"]) for r in h.fake.rules.values()) == [
        ("acme -is:retweet", "Acme"),
        ("globex -is:retweet", "Globex"),
    ]
    posts = h.fake.seen("rules-post")
    assert [json.loads(p.body) for p in posts] == [
        {"delete": {"ids": ["2"]}},
        {"add": [{"value": "globex -is:retweet", "tag": "Globex"}]},
    ]
    assert h.source.state == CONNECTED and len(h.fake.streams) == 1
    h.stop()


def test_rules_in_sync_means_no_post():
    """With the rules already right, only GET rules is asked, never POST."""
    h = stream_harness(queries=["acme"])
    h.fake.rules = {"1": {"id": "1", "value": "acme", "tag": "acme"}}
    h.start()
    assert h.fake.seen("rules-post") == [] and h.source.state == CONNECTED
    h.stop()


def test_refused_rules_logged_not_fatal():
    """A rule X refuses (errors[] in the add answer) is counted; the stream still connects."""
    h = stream_harness(queries=["acme", " "])
    h.start()
    assert h.source.partial_errors == 1 and "refused 1 of 2" in h.source.last_error
    assert h.source.state == CONNECTED
    h.stop()


def test_stream_posts_keepalives_and_stall():
    """Posts arrive with matching rules and cursors; keep-alives keep it up; silence past stall_timeout reconnects."""
    h = stream_harness(stall_timeout=30)
    h.start()
    h.fake.publish("acme is down 🔥 &lt;3")
    h.turn()
    (p,) = h.take()
    assert p.text == "acme is down 🔥 <3" and p.extra["matching_rules"] == ["Acme"]
    assert json.loads(p.cursor) == {"last_id": p.native_id}
    for _ in range(5):
        h.turn(20)
    assert len(h.fake.seen("stream")) == 1 and h.source.state == CONNECTED
    h.fake.keepalives = False
    h.turn(29)
    assert len(h.fake.seen("stream")) == 1
    h.turn(11)
    assert len(h.fake.seen("stream")) == 2 and "keep-alive" in h.source.last_error
    # The reconnect filled the gap from search, since the last post seen.
    assert h.fake.seen("search")[-1].arg("since_id") == p.native_id
    h.stop()


def test_stream_disconnect_resume_without_loss_or_duplicates():
    """Posts published while the stream is down come from search after the reconnect; none twice."""
    h = stream_harness()
    h.start()
    for i in range(3):
        h.fake.publish(f"acme before {i}")
    h.turn()
    before = h.take()
    h.fake.drop_streams()
    for i in range(2):
        h.fake.publish(f"globex during {i}")
    h.turn()
    h.turn(0.25)
    for i in range(2):
        h.fake.publish(f"acme after {i}")
    h.turn()
    after = h.take()
    texts = [p.text for p in before + after]
    assert sorted(texts) == sorted(
        [f"acme before {i}" for i in range(3)]
        + [f"globex during {i}" for i in range(2)]
        + [f"acme after {i}" for i in range(2)]
    )
    assert json.loads(after[-1].cursor)["last_id"] == h.fake.posts[-1]["id"]
    assert len(h.fake.seen("stream")) == 2
    h.stop()


def test_stream_restart_fills_gap_from_cursor():
    """Starting with a saved last_id, the stream connects and then searches each rule since it."""
    h = stream_harness(cursor=json.dumps({"last_id": "1899999999999999999"}))
    h.fake.publish("acme old", post_id="1899999999999999999")
    h.fake.publish("acme missed while down")
    h.fake.publish("globex missed too")
    h.start()
    got = h.take()
    assert sorted(p.text for p in got) == ["acme missed while down", "globex missed too"]
    assert [p.cursor for p in got[:-1]] == [None] and json.loads(got[-1].cursor)["last_id"] == h.fake.posts[-1]["id"]
    assert {s.arg("since_id") for s in h.fake.seen("search")} == {"1899999999999999999"}
    h.stop()


def test_stream_duplicates_and_out_of_order():
    """A post delivered twice is emitted once; an older id arriving late is kept and does not move the cursor back."""
    h = stream_harness()
    h.start()
    new = h.fake.make_post("acme newer", post_id="1900000000000000009")
    old = h.fake.make_post("acme older", post_id="1900000000000000005")
    rules = [{"id": "1", "tag": "Acme"}]
    for post in (new, new, old):
        h.fake.stream_raw(json.dumps({"data": post, "matching_rules": rules}).encode() + b"\r\n")
    h.turn()
    got = h.take()
    assert ids(got) == [new["id"], old["id"]]
    assert json.loads(got[-1].cursor)["last_id"] == new["id"]
    h.stop()


def test_stream_bad_lines_are_dead_letters():
    """Invalid JSON, wrong types and an over-long line are dead letters; the stream goes on; a truncated end too."""
    h = stream_harness()
    h.start()
    h.fake.stream_raw(b"{not json}\r\n")
    h.fake.stream_raw(b'{"data": {"id": 5, "text": "acme"}}\r\n')
    h.fake.stream_raw(
        b'{"errors": [{"title": "operational-disconnect", '
        b'"disconnect_type": "UpstreamOperationalDisconnect", '
        b'"type": "https://api.x.com/2/problems/operational-disconnect"}]}\r\n'
    )
    h.fake.stream_raw(b'"x' + b"a" * (1 << 20) + b'"\r\n')
    h.fake.publish("acme still fine")
    h.fake.stream_raw(b'{"data": {"id": "77", "text": "acme trunc')
    h.turn()
    assert [p.text for p in h.take()] == ["acme still fine"]
    h.fake.end_streams()
    h.turn()
    errors = [e for _, _, e, _ in h.store.letters]
    assert errors[0] == "invalid JSON" and errors[1].startswith("id:") and "longer than" in errors[2]
    assert errors[3] == "truncated line at the end of the stream" and len(errors) == 4
    assert all(c == "stream" for _, _, _, c in h.store.letters)
    assert h.source.state == CONNECTED and len(h.fake.seen("stream")) == 2
    h.stop()


def test_stream_http_error_policy():
    """Stream connects: 503s back off 5, 10 s; a 429 (too many connections) from one minute; 409 re-syncs rules."""
    h = stream_harness()
    h.fake.script("stream", 503, body=b"")
    h.fake.script("stream", 503, body=b"")
    h.fake.script(
        "stream",
        429,
        body=problem_body(
            "streaming-connection",
            "ConnectionException",
            "This stream is currently at the maximum allowed connection limit.",
            connection_issue="TooManyConnections",
        ),
    )
    h.fake.script("stream", 409, body=problem_body("streaming-connection", "ConnectionException", "no rules"))
    h.start()
    assert h.source.state == BACKING_OFF
    h.turn(5)
    assert len(h.fake.seen("stream")) == 2
    h.turn(10)
    assert len(h.fake.seen("stream")) == 3 and h.source.state == RATE_LIMITED
    assert "TooManyConnections" in h.source.last_error
    h.turn(59)
    assert len(h.fake.seen("stream")) == 3
    h.turn(1)
    assert len(h.fake.seen("stream")) == 4 and len(h.fake.seen("rules")) == 1
    h.turn(20)
    assert len(h.fake.seen("rules")) == 2 and h.source.state == CONNECTED
    h.stop()


def test_stream_backpressure_pauses_reading():
    """With the queue full the stream is not read further; the posts come once there is room, none lost."""
    h = stream_harness(size=2)
    h.start()
    for i in range(10):
        h.fake.publish(f"acme {i}")
    h.turn()
    assert h.queue.size() == 2 and h.queue.waiting_puts() == 1
    got = []
    for _ in range(20):
        if h.queue.size():
            h.queue.get(1).addCallback(got.extend)
        h.turn()
    assert [p.text for p in got] == [f"acme {i}" for i in range(10)]
    h.stop()


def test_stop_while_streaming_is_quiet():
    """Stopping the service mid-stream cancels the read and drops the connection."""
    h = stream_harness()
    h.start()
    assert len(h.fake.streams) == 1
    h.source.stopService()
    h.turn()
    assert h.fake.streams == [] and h.source.state == "stopped"
    h.fake.stop()


def test_config_keys_and_make_source(monkeypatch):
    """An x source reads its token from the environment, checks its keys, and gets the hub's topics."""
    import pytest

    from monitor.collect import make_source
    from monitor.config import ConfigError, parse_config

    cfg = parse_config(
        {
            "sources": [{"kind": "x", "name": "x", "bearer_token": "${X_BEARER_TOKEN}"}],
            "topics": [{"name": "Acme", "terms": ["acme"]}],
        },
        environ={"X_BEARER_TOKEN": "sekrit"},
    )
    spec = cfg.sources[0]
    assert spec["bearer_token"] == "sekrit" and spec["mode"] == "search" and spec["base_url"] == "https://api.x.com"
    clock = Clock()
    source = make_source(spec, MemoryQueue(10, reactor=clock), CursorStore(), Metrics(), cfg.topics, clock)
    assert isinstance(source, XSource) and source.queries == [("Acme", "acme -is:retweet")]
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                "sources": [
                    {
                        "kind": "x",
                        "name": "x",
                        "bearer_token": "${NOPE}",
                        "mode": "firehose",
                        "max_results": 500,
                        "base_url": "api.x.com",
                    }
                ]
            },
            environ={},
        )
    text = str(e.value)
    assert "NOPE is not set" in text and "'search', 'stream'" in text and "from 10 to 100" in text
    assert "http or https URL" in text


class LiveTopics:
    """The two things a source reads of the hub's TopicSet."""

    def __init__(self, *topics):
        self.topics = list(topics)
        self.listeners = []

    def reload(self, *topics):
        self.topics = list(topics)
        for listener in list(self.listeners):
            listener()


def test_queries_follow_topic_edits():
    """Searches use the topics as they are now; the stream re-syncs its rules when they change."""
    clock = Clock()
    live = LiveTopics(Topic(name="A", terms=("acme",)))
    search = XSource("xs", MemoryQueue(10, reactor=clock), CursorStore(), Metrics(), "t", topics=live, reactor=clock)
    assert [tag for tag, _ in search.queries] == ["A"]
    live.reload(Topic(name="A", terms=("acme",)), Topic(name="B", terms=("globex",)))
    assert [tag for tag, _ in search.queries] == ["A", "B"]

    stream = XSource(
        "xt", MemoryQueue(10, reactor=clock), CursorStore(), Metrics(), "t", mode="stream", topics=live, reactor=clock
    )
    synced = []

    async def sync_rules():
        synced.append([tag for tag, _ in stream.queries])

    stream.rules.sync = sync_rules
    stream.running = True
    stream._topics.listeners.append(stream._topics_changed)
    live.reload(Topic(name="C", terms=("initech",)))
    assert synced == [["C"]]
