"""
The statistics of every store provider against the same brute-force count
(L{tests.store.test_rollups}): SQLite and PostgreSQL keep their rollups each
in its own way and give the same, exact answers, also after late profiles,
re-scoring and the trending terms' counts.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import pytest_twisted

from monitor.analysis.trending import candidates
from monitor.model import SENTIMENTS, Enriched
from monitor.store import StatsQuery
from monitor.store.postgresql import MIGRATIONS
from tests.store.test_posts_contract import posts_provider, posts_store  # noqa: F401 (fixtures)
from tests.store.test_rollups import DAY0, SPREAD, brute_stats, close, make_posts

pytestmark = pytest.mark.timeout(300)


def stored(provider) -> list[dict]:
    rows = provider.sql(
        "SELECT created_at, topics, source, sentiment, compound, likes, reposts, replies, labels, author, "
        "author_followers, text, lang, uid FROM posts"
    )
    keys = ("created_at", "topics", "source", "sentiment", "compound", "likes", "reposts", "replies", "labels",
            "author", "followers", "text", "lang", "uid")  # fmt: skip
    posts = [dict(zip(keys, row)) for row in rows]
    for p in posts:
        p["topics"] = json.loads(p["topics"])
        p["labels"] = p["labels"].split()
    return posts


@pytest_twisted.ensureDeferred
async def test_stats_and_term_counts_equal_a_brute_force_count(posts_store, posts_provider):  # noqa: F811
    posts = make_posts(1500, seed=21)
    for start in range(0, len(posts), 300):
        await posts_store.store_batch(posts[start : start + 300], {})
    assert await posts_store.store_batch(posts[:5] + posts[:5], {}) == []
    rng = random.Random(22)
    chosen = rng.sample(posts, 150)
    updates = [
        Enriched("x", [p.uid], rng.choice((None, "renamed", p.author)), rng.choice((None, 0, 5))) for p in chosen
    ]
    await posts_store.store_batch([], {}, updates=updates)
    ids = [row[0] for row in posts_provider.sql("SELECT id FROM posts ORDER BY id")][::5]
    await posts_store.update_scores(
        [(rng.choice(SENTIMENTS), "model", " question " if rng.random() < 0.5 else "", i) for i in ids]
    )
    everything = stored(posts_provider)
    for _ in range(25):
        topic = rng.choice((None, "acme", "globex", "nobody"))
        since = DAY0 + rng.uniform(-7200, SPREAD)
        until = since + rng.choice((rng.uniform(1, 120), rng.uniform(60, 7200), rng.uniform(3600, 2 * 86400)))
        bucket = rng.choice((15, 60, 1800, 3600, 86400))
        top_n = rng.choice((1, 5, 20))
        got = await posts_store.stats(StatsQuery(topic=topic, since=since, until=until, bucket=bucket, top=top_n))
        got.pop("share_of_voice")
        want = brute_stats(everything, topic, since, until, bucket, top_n)
        assert close(got, want), (topic, since, until, bucket, top_n, json.dumps(got)[:2000], json.dumps(want)[:2000])
        counts, _, n = await posts_store.term_counts(topic, since, until)
        inside = [p for p in everything if since <= p["created_at"] < until and (topic is None or topic in p["topics"])]
        assert n == len(inside)
        assert counts == Counter(t for p in inside for t in candidates(p["text"], p["lang"]))


# PostgreSQL's migration only: SQLite's has its own test (tests/store/test_rollups.py).
@pytest.mark.parametrize("posts_provider", ["postgresql"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_postgresql_migration_counts_the_posts_already_stored(posts_provider):  # noqa: F811
    """A PostgreSQL database from before the rollups gets them from its posts on start."""
    store = posts_provider.open()
    await store.startService()
    await store.store_batch(make_posts(800, seed=23), {})
    await store.stopService()
    posts_provider.sql(
        *(f"DROP TABLE rollup_{name}" for name in ("volume", "labels", "authors", "tags", "terms")),
        # The step before the rollups' (the last one).
        f"UPDATE schema_version SET version = {len(MIGRATIONS) - 1}",
    )
    store = posts_provider.open()
    await store.startService()
    try:
        assert posts_provider.sql("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
        everything = stored(posts_provider)
        rng = random.Random(24)
        for _ in range(10):
            since = DAY0 + rng.uniform(-3600, SPREAD)
            until = since + rng.uniform(60, 86400)
            topic = rng.choice((None, "initech"))
            got = await store.stats(StatsQuery(topic=topic, since=since, until=until, bucket=3600, top=10))
            got.pop("share_of_voice")
            assert close(got, brute_stats(everything, topic, since, until, 3600, 10))
    finally:
        await store.stopService()
