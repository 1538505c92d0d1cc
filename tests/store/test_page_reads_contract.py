"""
The contract of L{monitor.store.interfaces.IPostReads} (the pages' reads
of the stored posts), run against every store provider (see
C{conftest.PROVIDERS}).
"""

from __future__ import annotations


import pytest_twisted
from zope.interface.verify import verifyObject

from monitor.model import Analysis, Post, Topic
from monitor.store.interfaces import IPostReads

T0 = 1_700_000_000.0


def _post(n, t, topics=("Acme",), author="a", compound=0.0, lat=None, lon=None, text=None, followers=None):
    sentiment = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
    return Post(source="s", network="s", native_id=str(n), text=text or f"post {n}", author=author, created_at=t,
                topics=topics, lat=lat, lon=lon, author_followers=followers, lang="en",
                analysis=Analysis(compound, 0.0, 1.0, 0.0, sentiment, ()))  # fmt: skip


def test_provides_the_interface(backend):
    """The posts store provides every method of IPostReads."""
    assert verifyObject(IPostReads, backend.store)


@pytest_twisted.ensureDeferred
async def test_oldest_volume_and_recent(backend):
    """The oldest post in range, posts per topic (most first, then by name), the newest posts as Posts."""
    store = backend.store
    assert await store.oldest_post() is None and await store.topic_volume() == []
    await store.store_batch([_post(1, T0 + 10, ("Acme", "Globex")), _post(2, T0 + 20, ("Globex",)),
                             _post(3, T0 + 30, ("Initech",)), _post(4, T0 + 40, ("Acme",))], {})  # fmt: skip
    assert await store.oldest_post() == T0 + 10
    assert await store.oldest_post(since=T0 + 15) == T0 + 20
    assert await store.topic_volume() == [{"topic": "Acme", "count": 2}, {"topic": "Globex", "count": 2},
                                          {"topic": "Initech", "count": 1}]  # fmt: skip
    assert await store.topic_volume(since=T0 + 15, until=T0 + 40) == [{"topic": "Globex", "count": 1},
                                                                      {"topic": "Initech", "count": 1}]  # fmt: skip
    recent = await store.recent_posts(3)
    assert [p.uid for p in recent] == ["s:4", "s:3", "s:2"]
    assert isinstance(recent[0], Post) and recent[0].extra == {"sentiment": "neutral", "compound": 0.0}


@pytest_twisted.ensureDeferred
async def test_geo_posts_newest_first_with_coordinates_only(backend):
    store = backend.store
    await store.store_batch([_post(1, T0, lat=51.5, lon=-0.1, text="<img src=x onerror=alert(1)>"),
                             _post(2, T0 + 60), _post(3, T0 + 120, ("Globex",), lat=40.7, lon=-74.0),
                             _post(4, T0 + 180, lat=48.9, lon=2.3)], {})  # fmt: skip
    found = await store.geo_posts()
    assert [p["id"] for p in found] == ["s:4", "s:3", "s:1"]
    assert found[2]["text"] == "<img src=x onerror=alert(1)>" and (found[2]["lat"], found[2]["lon"]) == (51.5, -0.1)
    assert [p["id"] for p in await store.geo_posts("Acme", since=T0, until=T0 + 180)] == ["s:1"]
    assert [p["id"] for p in await store.geo_posts(limit=1)] == ["s:4"]


@pytest_twisted.ensureDeferred
async def test_advocates_and_detractors(backend):
    """Authors with enough posts, most positive and most negative first; the neutral are neither."""
    store = backend.store
    posts = []
    for n, (author, compound) in enumerate(
        [
            ("fan", 0.8),
            ("fan", 0.6),
            ("ok", 0.1),
            ("ok", 0.2),
            ("hater", -0.9),
            ("hater", -0.7),
            ("meh", 0.0),
            ("meh", 0.01),
            ("once", 0.9),
        ]
    ):
        posts.append(_post(n, T0 + n, author=author, compound=compound, followers=n))
    await store.store_batch(posts, {})
    people = await store.author_sentiment()
    assert [(a["author"], a["posts"]) for a in people["advocates"]] == [("fan", 2), ("ok", 2)]
    assert [a["author"] for a in people["detractors"]] == ["hater"]
    assert people["detractors"][0]["followers"] == 5
    assert abs(people["advocates"][0]["average_compound"] - 0.7) < 1e-9
    assert (await store.author_sentiment(min_posts=1, limit=1))["advocates"][0]["author"] == "once"


@pytest_twisted.ensureDeferred
async def test_topic_origins(backend):
    store = backend.store
    await store.sync_file_topics([Topic(name="Acme", terms=("acme",))])
    await store.save_topic(Topic(name="Globex", terms=("globex",)))
    origins = await store.topic_origins()
    assert {name: o["origin"] for name, o in origins.items()} == {"Acme": "file", "Globex": "web"}


@pytest_twisted.ensureDeferred
async def test_term_counts_count_every_post_of_the_range(backend):
    """How many posts use each term, exact over the range (edges inside minutes too), per topic or all."""
    store = backend.store
    await store.store_batch([_post(n, T0 + n * 10, text=f"refund delayed again {'outage' if n % 2 else 'billing'}")
                             for n in range(10)]
                            + [_post(50, T0 + 5, ("Globex",), text="refund outage")], {})  # fmt: skip
    counts, forms, posts = await store.term_counts("Acme", T0, T0 + 100)
    assert posts == 10 and counts["refund"] == 10 and counts["outage"] == 5 and counts["billing"] == 5
    assert forms["refund"] == "refund"
    counts, _, posts = await store.term_counts(None, T0, T0 + 100, words=True)
    assert posts == 11 and counts["refund"] == 11 and counts["outage"] == 6
    assert all(" " not in term for term in counts)
    counts, _, posts = await store.term_counts("Acme", T0 + 45, T0 + 75, only={"outage", "billing"})
    assert posts == 3 and counts == {"outage": 2, "billing": 1}
