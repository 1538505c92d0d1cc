"""
Enrichment never delays a post: a Bluesky post of an author not yet looked
up is queued, stored and counted at once; the profile follows it through the
queue and the store, and the rules that need followers see the post then.
"""

import pytest_twisted
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import deferLater

from monitor.alerts.detector import Detector
from monitor.alerts.rules import Rule
from monitor.model import Analysis, Enriched, Post
from tests.stack import running
from tests.collect.test_bluesky_loopback import wait_until

ALICE = "did:plc:alice000000000000000000"
BOB = "did:plc:bob00000000000000000000"


def _author(trans, uid):
    trans.execute("SELECT author, author_followers, author_verified FROM posts WHERE uid = ?", (uid,))
    return trans.fetchone()


@pytest_twisted.ensureDeferred
async def test_post_stored_at_once_then_profile_attached_and_influencer_fires_once(reactor, tmp_path):
    """Collector, queue, pipeline, SQLite and alerts on the real reactor, against a slow fake AppView."""
    from monitor.alerts.engine import AlertEngine
    from monitor.analysis import Classifier
    from monitor.analysis.local import LocalAnalyzer
    from monitor.collect.bluesky import BlueskySource
    from monitor.config import parse_config
    from monitor.metrics import Metrics
    from monitor.pipeline import Pipeline
    from monitor.queue.memory import MemoryQueue
    from monitor.store.sqlite import SQLiteStore
    from monitor.store.sqlite_alerts import SQLiteAlerts
    from monitor.topics import TopicSet
    from tests.fakes.jetstream import FakeJetstream

    fake = FakeJetstream(reactor, start_us=int(reactor.seconds() * 1_000_000))
    fake.appview_delay = 0.6
    fake.profiles[ALICE] = {"did": ALICE, "handle": "alice.example.com", "followersCount": 52_000,
                            "verification": {"verifiedStatus": "valid"}}  # fmt: skip
    fake.profiles[BOB] = {"did": BOB, "handle": "bob.example.com", "followersCount": 12}
    port = reactor.listenTCP(0, fake.site(), interface="127.0.0.1")
    base = f"127.0.0.1:{port.getHost().port}"
    config = parse_config({
        "sources": [{"kind": "bluesky", "name": "bsky", "url": f"ws://{base}/subscribe",
                     "appview_url": f"http://{base}"}],
        "topics": [{"name": "Acme", "terms": ["acme"]}],
        "rules": [{"name": "big-voice", "type": "influencer", "min_followers": 10_000, "sentiment": "any",
                   "topics": ["Acme"]}],
        "alerts": {"live": False},
    }, environ={})  # fmt: skip
    (spec,) = config.sources
    assert spec["profile_wait"] == 0  # the default: never wait
    metrics = Metrics()
    store = SQLiteStore(tmp_path / "monitor.sqlite", reactor=reactor)
    queue = MemoryQueue(1000, reactor=reactor)
    topics = TopicSet(store)
    analyzer = LocalAnalyzer(Classifier(), threads=1, reactor=reactor)
    pipeline = Pipeline(queue, topics, analyzer, store, metrics, batch_size=50, reactor=reactor)
    source = BlueskySource(
        "bsky",
        queue,
        store,
        metrics,
        url=spec["url"],
        appview_url=spec["appview_url"],
        profile_wait=spec["profile_wait"],
        reactor=reactor,
    )
    engine = AlertEngine(
        config, store=SQLiteAlerts(store), metrics=metrics, topics=topics, sources=[source], reactor=reactor
    )
    pipeline.add_sink(engine)
    steps = [(store, True), lambda: topics.seed(config.topics), (engine, True), (analyzer, False),
             (pipeline, False), (source, False)]  # fmt: skip
    try:
        async with running(steps):
            await wait_until(reactor, lambda: source.state == "connected")
            posted = reactor.seconds()
            fake.post(ALICE, "3k1", "acme is down again")
            fake.post(BOB, "3k2", "acme works for me")
            uid = f"bluesky:at://{ALICE}/app.bsky.feed.post/3k1"
            bob_uid = f"bluesky:at://{BOB}/app.bsky.feed.post/3k2"
            seen = {}

            def author_of(uid, want=None):
                """Ask the store (the answer lands on a later poll); true once it is C{want}, or anything."""
                store.run_read(_author, uid).addCallback(lambda row: seen.__setitem__(uid, row))
                row = seen.get(uid)
                return row is not None and (want is None or row == want)

            def hits():
                """Hits of the influencer rule: those flushed to the metrics and those not yet."""
                return metrics.alert_hits.labels("big-voice")._value.get() + engine.detector.hits["big-voice"]

            await wait_until(reactor, lambda: author_of(uid), seconds=3.0, step=0.01)
            # Stored before the AppView answered, with the DID for an author.
            assert reactor.seconds() - posted < fake.appview_delay
            assert seen[uid] == (ALICE, None, 0)
            assert hits() == 0
            await wait_until(reactor, lambda: author_of(uid, ("alice.example.com", 52_000, 1)), seconds=5.0)
            await wait_until(reactor, lambda: author_of(bob_uid, ("bob.example.com", 12, 0)), seconds=3.0)
            await wait_until(reactor, lambda: hits() == 1, seconds=3.0)
            await deferLater(reactor, 0.3, lambda: None)
            assert hits() == 1  # once, not once per look
            # Her next post has the profile from the start; it is a hit of its own.
            fake.post(ALICE, "3k3", "acme support never answers")
            await wait_until(reactor, lambda: hits() == 2, seconds=3.0)
            assert metrics.stored.labels("bsky")._value.get() == 3
            await engine.flush()
            incidents, _ = await engine.incidents({"rule": "big-voice"}, limit=10)
            assert len(incidents) == 1 and incidents[0]["posts"] == 2
    finally:
        fake.disconnect_all()
        await port.stopListening()


def _post(uid_key, followers=None, verified=False, sentiment="negative"):
    return Post(source="bsky", network="bluesky", native_id=uid_key, text="acme is broken", author="did:plc:x",
                created_at=1_767_225_600.0, author_followers=followers, author_verified=verified,
                topics=("Acme",), analysis=Analysis(-0.5, 0.0, 0.5, 0.5, sentiment))  # fmt: skip


def test_detector_looks_again_with_follower_rules_only_once():
    """A late profile: influencer rules see the post once; keyword rules and windows do not count it again."""
    rules = [
        Rule({"name": "big", "type": "influencer", "min_followers": 1000, "sentiment": "any", "cooldown": "1h"}),
        Rule({"name": "word", "type": "keyword", "phrases": ["broken"], "cooldown": "1h"}),
        Rule({"name": "buyers", "type": "purchase_intent", "min_followers": 10, "cooldown": "1h"}),
    ]
    detector = Detector(rules)
    post = _post("p1")
    detector.observe([post])
    assert dict(detector.hits) == {"word": 1}
    post.author_followers = 5000
    detector.enriched([post])
    assert dict(detector.hits) == {"word": 1, "big": 1}
    detector.enriched([post])  # told twice: still once
    detector.observe([post])  # seen again: not counted again
    assert dict(detector.hits) == {"word": 1, "big": 1}
    # A post the detector never counted is not judged on its profile alone.
    detector.enriched([_post("p2", followers=5000)])
    assert dict(detector.hits) == {"word": 1, "big": 1}


@pytest_twisted.ensureDeferred
async def test_store_applies_a_late_profile_after_the_posts_of_its_batch(reactor, tmp_path):
    """An Enriched in the same batch as its post updates it; unknown fields keep what is stored."""
    from monitor.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "monitor.sqlite", reactor=reactor)
    await maybeDeferred(store.startService)
    try:
        post, other = _post("p1"), _post("p2")
        other.author_followers = 9
        both = [
            Enriched("bsky", [post.uid], "alice.example.com", 70, True),
            Enriched("bsky", [other.uid], None, None, False),
        ]
        assert len(await store.store_batch([post, other], {"bsky": "5"}, [], None, both)) == 2
        assert await store.run_read(_author, post.uid) == ("alice.example.com", 70, 1)
        assert await store.run_read(_author, other.uid) == ("did:plc:x", 9, 0)
        assert await store.get_cursor("bsky") == "5"
    finally:
        await maybeDeferred(store.stopService)
