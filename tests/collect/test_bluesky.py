"""
The Bluesky (Jetstream) collector against the fake Jetstream, in memory:
Clock-driven time and an iosim connection whose client side really pauses.
"""

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.test import iosim

from monitor.collect.base import BACKING_OFF, CONNECTED, RATE_LIMITED
from monitor.collect.bluesky import BlueskySource, ProfileLookupFailed, post_from_commit, read_facets
from monitor.config import ConfigError, parse_config
from monitor.metrics import Metrics
from monitor.queue.memory import MemoryQueue
from monitor.model import PROFILE_PENDING, Enriched
from tests.fakes.jetstream import FakeJetstream, link_facet, mention_facet, tag_facet
from tests.fakes.store import CursorStore

T0 = 1_767_225_600_000_000
ALICE = "did:plc:alice000000000000000000"
BOB = "did:plc:bob00000000000000000000"


class PausableTransport(iosim.FakeTransport):
    """An iosim transport whose pauseProducing really stops delivery, like a TCP socket."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.paused = False
        self.pauses = 0
        self._held = []

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False
        held, self._held = b"".join(self._held), []
        if held:
            self.protocol.dataReceived(held)

    def bufferReceived(self, buf):
        if self.paused:
            self._held.append(buf)
        else:
            super().bufferReceived(buf)


class MemoryNet:
    """An endpoint factory for the collector that connects it to a server factory in memory."""

    def __init__(self, clock, server_factory):
        self.clock = clock
        self.server_factory = server_factory
        self.pumps = []
        self.refuse = False
        self.connects = 0
        self.client_transports = []

    def endpoint(self, host, port, secure):
        self.target = (host, port, secure)
        return self

    def connect(self, factory):
        self.connects += 1
        if self.refuse:
            return fail(ConnectionRefusedError("Connection was refused by other side"))
        a, b = IPv4Address("TCP", "127.0.0.1", 40000 + self.connects), IPv4Address("TCP", "127.0.0.1", 443)
        client = factory.buildProtocol(b)
        server = self.server_factory.buildProtocol(a)
        ct, st = PausableTransport(client, False, a, b), PausableTransport(server, True, b, a)
        self.client_transports.append(ct)
        self.pumps.append(iosim.connect(server, st, client, ct, greet=False, clock=self.clock))
        return succeed(client)

    def flush(self):
        for _ in range(50):
            moved = False
            for pump in self.pumps:
                moved = pump.flush() or moved
            self.clock.advance(0)
            if not moved:
                return


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
    """A fake Jetstream, a collector wired to it, and the queue it fills."""

    def __init__(self, cursor=None, size=10000, appview=False, **kw):
        self.clock = Clock()
        self.clock.advance(T0 / 1e6 + 60)
        self.fake = FakeJetstream(self.clock, start_us=T0)
        self.net = MemoryNet(self.clock, self.fake.ws_factory())
        self.queue = MemoryQueue(size, reactor=self.clock)
        self.store = CursorStore(cursor)
        kw.setdefault("appview_url", "https://appview.test" if appview else "")
        self.source = BlueskySource(
            "bsky",
            self.queue,
            self.store,
            Metrics(),
            url="wss://jetstream.test/subscribe",
            reactor=self.clock,
            endpoint_factory=self.net.endpoint,
            **kw,
        )

    def start(self):
        _worlds.append(self)
        self.source.startService()
        self.settle()
        return self

    def settle(self):
        self.net.flush()

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


def test_subscribes_for_posts_from_the_live_tail():
    """Without a saved cursor it asks for posts only, frames under its limit, and no cursor."""
    w = World().start()
    assert w.net.target == ("jetstream.test", 443, True)
    (params,) = w.fake.requests
    assert params == {"wantedCollections": ["app.bsky.feed.post"], "maxMessageSizeBytes": [str(1 << 20)]}
    assert w.source.state == CONNECTED


def test_creates_become_posts_everything_else_is_counted():
    """Only create commits of posts become posts; updates, deletes, identity and account events are counted."""
    w = World().start()
    w.fake.identity(ALICE, "alice.example.com")
    e1 = w.fake.post(ALICE, "3kaaa", "Is acme down? 🙃", langs=["pt-BR", "en"], created_at="2026-01-01T00:00:00.000Z")
    w.fake.add(
        {
            "did": ALICE,
            "kind": "commit",
            "commit": {
                "rev": "r2",
                "operation": "update",
                "collection": "app.bsky.feed.post",
                "rkey": "3kaaa",
                "record": {"text": "edited"},
            },
        }
    )
    w.fake.delete(ALICE, "3kaaa")
    w.fake.account(BOB)
    w.fake.add(
        {
            "did": BOB,
            "kind": "commit",
            "commit": {
                "rev": "r3",
                "operation": "create",
                "collection": "app.bsky.feed.like",
                "rkey": "3klike",
                "record": {},
            },
        }
    )
    w.fake.add({"did": BOB, "kind": "future-kind", "future": {}})
    e2 = w.fake.post(BOB, "3kbbb", "plain")
    w.settle()
    posts = w.take()
    assert [p.uid for p in posts] == [
        f"bluesky:at://{ALICE}/app.bsky.feed.post/3kaaa",
        f"bluesky:at://{BOB}/app.bsky.feed.post/3kbbb",
    ]
    p = posts[0]
    assert (p.network, p.native_id, p.source) == ("bluesky", f"at://{ALICE}/app.bsky.feed.post/3kaaa", "bsky")
    assert p.url == f"https://bsky.app/profile/{ALICE}/post/3kaaa"
    assert p.author == "alice.example.com" and posts[1].author == BOB
    assert p.lang == "pt-BR" and p.text == "Is acme down? 🙃"
    assert p.created_at == 1767225600.0
    assert p.cursor == str(e1["time_us"]) and posts[1].cursor == str(e2["time_us"])
    assert p.author_followers is None
    # The like never arrives: the fake honours wantedCollections like the real one.
    assert w.source.events == {"identity": 1, "create": 2, "update": 1, "delete": 1, "account": 1, "other": 1}
    assert w.source.malformed_count == 0


def test_facet_byte_offsets_with_emoji_before_them():
    """Facet offsets are UTF-8 bytes: with emoji before them the right spans are read and links written out."""
    text = "😀🎉 café @acme.example said: acme.example/status/12... #AcmeDown ok"
    facets = [
        mention_facet(text, "acme.example", "did:plc:acme"),
        link_facet(text, "acme.example/status/12...", "https://acme.example/status/1234"),
        tag_facet(text, "AcmeDown"),
        {
            "index": {"byteStart": 1, "byteEnd": 3},
            "features": [  # inside the first emoji: skipped
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://evil.example/"}
            ],
        },
        {"index": {"byteStart": 5, "byteEnd": 999}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "x"}]},
        "junk",
        {
            "index": {"byteStart": 0, "byteEnd": 4},
            "features": [  # "click here"-style: text kept
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://other.example/"}
            ],
        },
    ]
    # A character-offset reader would start the mention 6 bytes early.
    assert text.index("@acme") != len(text[: text.index("@acme")].encode())
    out, found = read_facets(text, facets)
    assert out == "😀🎉 café @acme.example said: https://acme.example/status/1234 #AcmeDown ok"
    assert found["mentions"] == [{"did": "did:plc:acme", "handle": "acme.example"}]
    assert found["links"] == ["https://acme.example/status/1234", "https://evil.example/", "https://other.example/"]
    assert found["hashtags"] == ["AcmeDown", "x"]


def test_post_from_commit_fields():
    """Hidden tags, reply parent, embedded link and a lying createdAt are handled."""
    commit = {
        "rkey": "3kx",
        "record": {
            "text": "hi",
            "createdAt": "2099-01-01T00:00:00Z",
            "tags": ["#launch", "launch", 7],
            "reply": {"root": {"uri": "at://r"}, "parent": {"uri": "at://p"}},
            "embed": {"$type": "app.bsky.embed.external", "external": {"uri": "https://news.example/a"}},
        },
    }
    post = post_from_commit("s", ALICE, T0, commit)
    assert post.created_at == T0 / 1e6  # a post from the future is dated when the relay saw it
    assert post.extra["hashtags"] == ["launch"] and post.extra["reply_to"] == "at://p"
    assert post.extra["links"] == ["https://news.example/a"] and post.lang is None


def test_resume_after_disconnect_without_loss_or_duplicates():
    """A drop mid-stream reconnects from the last time_us minus the rewind; out-of-order events are not lost."""
    w = World(rewind=5.0).start()
    times = [T0 + i * 1_000_000 for i in range(10)]
    times[5] = times[4] - 2_000_000  # not strictly increasing, like the real relay
    w.fake.drop_after = 5
    for i, t in enumerate(times):
        w.fake.post(ALICE, f"3k{i:03d}", f"post {i}", time_us=t)
    w.settle()
    first = w.take()
    assert [p.text for p in first] == [f"post {i}" for i in range(5)]
    assert w.source.state == BACKING_OFF and "connection lost" in w.source.last_error
    w.advance(2)
    assert w.source.state == CONNECTED and len(w.fake.requests) == 2
    assert w.fake.requests[1]["cursor"] == [str(times[4] - 5_000_000)]
    rest = w.take()
    assert [p.text for p in rest] == [f"post {i}" for i in range(5, 10)]
    assert w.source.events["duplicate"] == 5
    cursors = [int(p.cursor) for p in first + rest]
    assert cursors == sorted(cursors) and cursors[-1] == times[9]


def test_drop_before_any_event_resumes_from_when_the_tail_was_opened():
    """Reading the live tail, a drop before the first event resumes from the connect time, not the new tail."""
    w = World(rewind=5.0).start()
    opened_us = int(w.clock.seconds() * 1_000_000)
    w.fake.disconnect_all()
    w.advance(2)
    assert w.fake.requests[1]["cursor"] == [str(opened_us - 5_000_000)]


def test_restart_resumes_from_saved_cursor():
    """A saved cursor is rewound; older events are not asked for, newer ones are read once."""
    saved = T0 + 10_000_000
    w = World(cursor=str(saved), rewind=3.0)
    for i in range(20):
        w.fake.post(ALICE, f"3k{i:03d}", f"post {i}", time_us=T0 + i * 1_000_000)
    w.start()
    assert w.fake.requests[0]["cursor"] == [str(saved - 3_000_000)]
    assert [p.text for p in w.take()] == [f"post {i}" for i in range(7, 20)]


def test_malformed_frames_are_dead_letters_and_the_stream_goes_on():
    """Invalid, truncated, mistyped and binary frames are counted and kept; the good ones around them arrive."""
    w = World().start()
    bad = [
        b"{not json",
        b'{"did":"did:plc:x","time_us":1,"kind":"commit","commit":{"rev":"r","operation":"cre',
        b"[1, 2, 3]",
        json.dumps({"did": ALICE, "time_us": "soon", "kind": "commit"}).encode(),
        json.dumps({"did": "not-a-did", "time_us": T0, "kind": "commit"}).encode(),
        json.dumps({"did": ALICE, "time_us": T0, "kind": "commit", "commit": {"operation": "create"}}).encode(),
        json.dumps(
            {
                "did": ALICE,
                "time_us": T0,
                "kind": "commit",
                "commit": {
                    "rev": "r",
                    "operation": "create",
                    "collection": "app.bsky.feed.post",
                    "rkey": "3k",
                    "record": {"text": 42},
                },
            }
        ).encode(),
        b"\xff\xfe not utf-8",
    ]
    w.fake.post(ALICE, "3k1", "before")
    for frame in bad:
        w.fake.add_raw(frame)
    w.fake.post(ALICE, "3k2", "after \x00 nul and \ud800 surrogate")
    w.settle()
    w.source._frame(b"\x28\xb5\x2f\xfd", True)  # a binary (zstd) frame
    posts = w.take()
    assert [p.text for p in posts] == ["before", "after  nul and ? surrogate"]
    assert w.source.malformed_count == len(bad) + 1 == len(w.store.letters)
    errors = [e for _, _, e, _ in w.store.letters]
    assert errors[0].startswith("invalid JSON") and errors[1].startswith("invalid JSON")
    assert errors[3].startswith("time_us") and errors[4].startswith("did")
    assert errors[6].startswith("commit.record.text")
    assert "binary" in errors[-1]
    assert all(ctx.startswith("jetstream.test after time_us") for _, _, _, ctx in w.store.letters)
    assert w.store.letters[0][1] == b"{not json"
    assert w.source.state == CONNECTED and len(w.fake.requests) == 1


def test_oversized_frame_is_refused_counted_and_skipped():
    """A frame over max_message drops the connection without buffering it; it is counted and the stream resumes."""
    w = World(max_message=4096).start()
    assert w.fake.requests[0]["maxMessageSizeBytes"] == ["4096"]
    w.fake.ignore_max_size = True  # a server that does not honour the limit
    w.fake.post(ALICE, "3k1", "small")
    big = w.fake.post(ALICE, "3k2", "x" * 10_000)
    w.fake.post(ALICE, "3k3", "after")
    w.settle()
    assert [p.text for p in w.take()] == ["small"]
    assert w.source.malformed_count == 1 and "larger than 4096" in w.store.letters[0][2]
    assert w.source.state == BACKING_OFF
    w.fake.ignore_max_size = False  # the real server skips it when asked
    w.advance(2)
    assert [p.text for p in w.take()] == ["after"]
    assert big["commit"]["rkey"] == "3k2"


def test_keepalives_keep_it_up_then_silence_is_a_stall():
    """Server pings keep a quiet stream alive; when nothing comes at all, it reconnects after stall_timeout."""
    w = World(stall_timeout=30.0).start()
    w.fake.ping_interval = 10.0
    w.fake.drop_after = None
    w.fake.disconnect_all()  # reconnect so the pings start
    w.advance(2)
    assert w.net.connects == 2 and w.source.state == CONNECTED
    w.advance(120)
    assert w.net.connects == 2 and w.source.state == CONNECTED
    (client,) = w.fake.clients
    client.sendPing()  # the last bytes it will ever send
    w.settle()
    client.hang()  # and it no longer reads: the collector's own pings get no pong
    w.advance(29.5, step=0.5)
    assert w.source.state == CONNECTED
    w.advance(1, step=0.5)
    assert w.source.state == BACKING_OFF and "stalled: nothing received for 30s" in w.source.last_error
    w.advance(3)
    assert w.net.connects == 3 and w.source.state == CONNECTED


def test_quiet_live_server_is_pinged_not_dropped():
    """With no events and no server pings, the collector's own pings get pongs, so a live server never stalls."""
    w = World(stall_timeout=20.0).start()
    w.advance(200)
    assert w.net.connects == 1 and w.source.state == CONNECTED


def test_backpressure_pauses_the_socket():
    """With the queue full the WebSocket transport is paused, nothing piles up, and reading resumes in order."""
    w = World(size=3).start()
    for i in range(50):
        w.fake.post(ALICE, f"3k{i:03d}", f"post {i}")
        w.settle()  # one network read per frame
    transport = w.net.client_transports[0]
    assert transport.paused and w.queue.size() == 3
    # One post waits for room; the rest stays in the socket, not in the hub.
    assert len(w.source._frames) + len(w.source._held) == 0 and w.source.posts == 4
    assert len(transport._held) == 46
    got = []
    for _ in range(40):
        got += w.take()
        if len(got) == 50:
            break
    assert [p.text for p in got] == [f"post {i}" for i in range(50)]
    assert not transport.paused and transport.pauses >= 2


def test_connection_refused_backs_off_and_never_crashes():
    """A server that does not exist: backing off with growing delays, then it connects once the server is there."""
    w = World()
    w.net.refuse = True
    w.start()
    assert w.source.state == BACKING_OFF and "refused" in w.source.last_error
    assert w.source.status()["resume_at"] is not None
    w.advance(100)
    tries = w.net.connects
    assert 4 <= tries <= 9  # about 1, 2, 4, 8, 16, 32 s apart
    w.net.refuse = False
    w.advance(70)
    assert w.source.state == CONNECTED


def test_handshake_errors_back_off_and_429_waits():
    """HTTP 503 before the upgrade backs off; 429 waits as long as the server says."""
    w = World()
    w.fake.refuse = [503, 429]
    w.start()
    assert w.source.state == BACKING_OFF and "503" in w.source.last_error
    w.advance(2)
    assert w.source.state == RATE_LIMITED and "429" in w.source.last_error
    w.advance(57)  # no Retry-After: a minute
    assert w.source.state == RATE_LIMITED
    w.advance(3)
    assert w.source.state == CONNECTED


def test_stop_is_quiet():
    """Stopping aborts the connection and leaves no timers behind."""
    w = World(appview=True).start()
    w.source.profiles.fetch = lambda dids: Deferred()
    w.fake.post(ALICE, "3k1", "waiting for a profile")
    w.settle()
    w.source.stopService()
    w.settle()
    assert w.fake.clients == [] and w.clock.getDelayedCalls() == []


# -- profiles ---------------------------------------------------------------------------


def test_profiles_fill_author_and_followers():
    """A post waits briefly for its author's profile; handle, followers and verification are filled in."""
    w = World(appview=True, profile_wait=1.0).start()
    calls = []

    def fetch(dids):
        calls.append(dids)
        return succeed({ALICE: {"handle": "alice.example.com", "followers": 1520, "verified": True}})

    w.source.profiles.fetch = fetch
    w.fake.post(ALICE, "3k1", "hello")
    w.fake.post(BOB, "3k2", "unknown author")
    w.settle()
    assert w.take() == []  # the batch goes out after a moment
    w.advance(0.1, step=0.05)
    a, b = w.take()
    assert (a.author, a.author_followers, a.author_verified) == ("alice.example.com", 1520, True)
    assert (b.author, b.author_followers) == (BOB, None)
    assert calls == [[ALICE, BOB]]
    w.fake.post(ALICE, "3k3", "cached now")
    w.settle()
    (c,) = w.take()
    assert c.author_followers == 1520 and len(calls) == 1


def test_late_profiles_never_hold_posts_beyond_the_bound():
    """A profile that comes late: the post goes out after profile_wait without followers; later posts get them."""
    w = World(appview=True, profile_wait=1.0).start()
    pending = []
    w.source.profiles.fetch = lambda dids: pending.append(Deferred()) or pending[-1]
    w.fake.post(ALICE, "3k1", "first")
    w.fake.post(ALICE, "3k2", "second")
    w.settle()
    w.advance(0.9, step=0.1)
    assert w.take() == []
    w.advance(0.2, step=0.1)
    posts = w.take()
    assert [(p.text, p.author_followers) for p in posts] == [("first", None), ("second", None)]
    assert all(p.extra.get(PROFILE_PENDING) for p in posts)
    pending[0].callback({ALICE: {"handle": "alice.example.com", "followers": 7, "verified": False}})
    w.fake.post(ALICE, "3k3", "third")
    w.settle()
    late, third = w.take()
    # The profile follows the posts that went out without it, then serves the next.
    assert isinstance(late, Enriched) and late.uids == [p.uid for p in posts]
    assert (late.author, late.author_followers, late.author_verified) == ("alice.example.com", 7, False)
    assert (third.text, third.author, third.author_followers) == ("third", "alice.example.com", 7)
    assert PROFILE_PENDING not in third.extra


def test_profile_wait_zero_never_waits_and_the_profile_follows():
    """The default (profile_wait = 0): a post goes out at once; its profile follows it, then serves the next posts."""
    w = World(appview=True).start()
    assert w.source.profile_wait == 0
    w.source.profiles.fetch = lambda dids: succeed(
        {d: {"handle": "h.example", "followers": 3, "verified": False} for d in dids}
    )
    w.fake.post(ALICE, "3k1", "first")
    w.settle()
    (first,) = w.take()
    assert (first.author, first.author_followers) == (ALICE, None)
    w.advance(0.1, step=0.05)
    (late,) = w.take()
    assert isinstance(late, Enriched) and late.uids == [first.uid] and late.author_followers == 3
    w.fake.post(ALICE, "3k2", "second")
    w.settle()
    assert [p.author_followers for p in w.take()] == [3]


def test_appview_trouble_does_not_hold_posts():
    """While the AppView fails, posts flow without waiting and the trouble is reported once."""
    w = World(appview=True, profile_wait=1.0).start()
    w.source.profiles.fetch = lambda dids: fail(ProfileLookupFailed("AppView answered HTTP 500"))
    w.fake.post(ALICE, "3k1", "one")
    w.settle()
    w.advance(0.1, step=0.05)
    assert [p.text for p in w.take()] == ["one"]
    w.fake.post(BOB, "3k2", "two")
    w.settle()
    assert [p.text for p in w.take()] == ["two"]
    assert "profile lookups failed" in w.source.last_error


# -- configuration ------------------------------------------------------------------------


def test_config_defaults_and_checks():
    """A bare bluesky source validates with the public defaults; wrong schemes are named."""
    config = parse_config({"sources": [{"kind": "bluesky", "name": "bsky"}]})
    (spec,) = config.sources
    assert spec["url"] == "wss://jetstream2.us-east.bsky.network/subscribe"
    assert spec["appview_url"] == "https://public.api.bsky.app" and spec["profile_wait"] == 0.0
    with pytest.raises(ConfigError) as e:
        parse_config(
            {"sources": [{"kind": "bluesky", "name": "b", "url": "https://x", "appview_url": "ftp://y", "rewind": -1}]}
        )
    text = str(e.value)
    assert "sources[0].url" in text and "sources[0].appview_url" in text and "sources[0].rewind" in text
    parse_config({"sources": [{"kind": "bluesky", "name": "b", "appview_url": ""}]})
