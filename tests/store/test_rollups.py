"""
The statistics' rollups (L{monitor.store.rollups}) against a brute-force
count over the stored posts themselves, on real tweets (../shared/data):
random ranges whose edges fall inside minutes, every bucket width the
dashboard uses and one that is not a whole minute, after duplicates,
re-scoring, late author profiles and a back-fill of an older database.
"""

from __future__ import annotations

import csv
import json
import math
import random
import sqlite3
from collections import Counter

import pytest
import pytest_twisted

from monitor.analysis.trending import MIN_COUNT, candidates, excluded_words, rank, top, trending_terms
from monitor.model import LABELS, SENTIMENTS, Analysis, Enriched, Post, Topic, iso8601
from monitor.store import StatsQuery
from monitor.store import sqlite_rollups
from monitor.store.rollups import cover, post_words
from monitor.store.sqlite import SQLiteStore, hashtags, terms
from tests.conftest import SHARED

pytestmark = pytest.mark.timeout(300)

DATA = SHARED / "data"
COMPLAINTS = DATA / "complaints" / "complaints-data.csv"
VADER = DATA / "vader_icwsm2014" / "tweets_GroundTruth.txt"

#: Midnight UTC, so that days, hours and minutes all start on it.
DAY0 = 1_700_006_400.0
SPREAD = 3 * 86400


def real_texts() -> list[tuple[str, float]]:
    """(text, human mean rating -4..4 or complaint 1/0 scaled) of the real tweets."""
    out = []
    with open(COMPLAINTS, encoding="utf-8", newline="") as f:
        out += [(text, 1.0 if flag == "1" else 0.0) for _, text, flag, _ in csv.reader(f)]
    with open(VADER, encoding="utf-8", newline="") as f:
        for line in f.read().splitlines():
            _, mean, text = line.split("\t", 2)
            out.append((text, float(mean) / 4))
    return out


def make_posts(count: int, seed: int) -> list[Post]:
    rng = random.Random(seed)
    texts = real_texts()
    authors = [f"user{i}" for i in range(60)] + ["Zoë", "ünïcode"]
    posts = []
    for i in range(count):
        text, score = rng.choice(texts)
        compound = max(-1.0, min(1.0, score + rng.uniform(-0.2, 0.2)))
        sentiment = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        labels = tuple(label for label in LABELS if rng.random() < 0.15)
        analysis = None if rng.random() < 0.05 else Analysis(compound, max(compound, 0), 1 - abs(compound),
                                                               max(-compound, 0), sentiment, labels)  # fmt: skip
        # Clustered times: most posts fall in a few busy hours, some far apart.
        if rng.random() < 0.6:
            created = DAY0 + rng.choice((3.2, 27.9, 50.5)) * 3600 + rng.uniform(0, 1800)
        else:
            created = DAY0 + rng.uniform(-3600, SPREAD)
        posts.append(Post(
            source=rng.choice(("x", "mastodon", "bluesky")), network="demo", native_id=f"{seed}-{i}", text=text,
            author=rng.choice(authors), created_at=created,
            topics=tuple(t for t in ("acme", "globex", "initech") if rng.random() < 0.45),
            analysis=analysis, likes=rng.randrange(0, 30), reposts=rng.randrange(0, 5), replies=rng.randrange(0, 3),
            author_followers=None if rng.random() < 0.2 else rng.randrange(0, 100_000), lang="en",
        ))  # fmt: skip
    return posts


def stored_posts(path) -> list[dict]:
    """Every stored post, read behind the store's back."""
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT created_at, topics, source, sentiment, compound, likes, reposts, replies, labels, author, "
        "author_followers, text, lang, uid FROM posts"
    ).fetchall()
    db.close()
    keys = ("created_at", "topics", "source", "sentiment", "compound", "likes", "reposts", "replies", "labels",
            "author", "followers", "text", "lang", "uid")  # fmt: skip
    posts = [dict(zip(keys, row)) for row in rows]
    for p in posts:
        p["topics"] = json.loads(p["topics"])
        p["labels"] = p["labels"].split()
    return posts


def brute_stats(posts, topic, since, until, bucket, top_n) -> dict:
    """What the stats of a range are, counted post by post."""
    chosen = [p for p in posts if (topic is None or topic in p["topics"])
              and (since is None or p["created_at"] >= since) and (until is None or p["created_at"] < until)]  # fmt: skip
    sentiments = Counter(p["sentiment"] for p in chosen)
    scored = [p["compound"] for p in chosen if p["compound"] is not None]
    volume: dict = {}
    for p in chosen:
        start = math.floor(p["created_at"] / bucket) * bucket
        volume.setdefault(start, Counter())[p["sentiment"]] += 1
    authors: dict = {}
    for p in chosen:
        a = authors.setdefault(p["author"], {"posts": 0, "followers": None, "scores": []})
        a["posts"] += 1
        if p["followers"] is not None:
            a["followers"] = max(a["followers"] or p["followers"], p["followers"])
        if p["compound"] is not None:
            a["scores"].append(p["compound"])

    def author(name):
        a = authors[name]
        return {"author": name, "followers": a["followers"], "posts": a["posts"],
                "average_compound": sum(a["scores"]) / len(a["scores"]) if a["scores"] else None}  # fmt: skip

    by_followers = sorted((n for n in authors if authors[n]["followers"] is not None),
                          key=lambda n: (-authors[n]["followers"], -authors[n]["posts"], n))  # fmt: skip
    by_posts = sorted(authors, key=lambda n: (-authors[n]["posts"],
                                              -(authors[n]["followers"] if authors[n]["followers"] is not None else -1), n))  # fmt: skip
    tags = Counter(t for p in chosen for t in hashtags(p["text"]))
    words = Counter(t for p in chosen for t in terms(p["text"]))
    return {
        "topic": topic,
        "since": iso8601(since) if since is not None else None,
        "until": iso8601(until) if until is not None else None,
        "bucket": bucket,
        "count": len(chosen),
        "sentiment": {
            **{s: sentiments[s] for s in SENTIMENTS},
            "average_compound": sum(scored) / len(scored) if scored else None,
        },  # fmt: skip
        "labels": {label: sum(label in p["labels"] for p in chosen) for label in LABELS},
        "engagement": {k: sum(p[k] for p in chosen) for k in ("likes", "reposts", "replies")},
        "volume": [
            {"start": iso8601(k), "count": sum(c.values()), **{s: c[s] for s in SENTIMENTS}}
            for k, c in sorted(volume.items())
        ],  # fmt: skip
        "top_authors": {
            "by_followers": [author(n) for n in by_followers[:top_n]],
            "by_posts": [author(n) for n in by_posts[:top_n]],
        },  # fmt: skip
        "top_hashtags": [{"tag": t, "count": n} for t, n in sorted(tags.items(), key=lambda i: (-i[1], i[0]))[:top_n]],
        "top_terms": [{"term": t, "count": n} for t, n in sorted(words.items(), key=lambda i: (-i[1], i[0]))[:top_n]],
    }


def close(actual, expected):
    """Equal, floats to 1e-9 (sums are added in another order)."""
    if isinstance(expected, float) and actual is not None:
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(close(actual[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(close, actual, expected))
    return actual == expected


async def assert_like_brute_force(store, path, rng, rounds):
    posts = stored_posts(path)
    for _ in range(rounds):
        topic = rng.choice((None, "acme", "globex", "initech", "nobody"))
        since = DAY0 + rng.uniform(-7200, SPREAD) if rng.random() < 0.9 else None
        length = rng.choice((rng.uniform(1, 120), rng.uniform(60, 7200), rng.uniform(3600, 2 * 86400)))
        until = (since if since is not None else DAY0) + length if rng.random() < 0.9 else None
        if since is not None and until is not None and rng.random() < 0.2:
            since = math.floor(since / 60) * 60  # on a minute boundary too
        bucket = rng.choice((15, 60, 300, 1800, 3600, 3 * 3600, 86400, 7 * 86400))
        top_n = rng.choice((1, 3, 10, 50))
        got = await store.stats(StatsQuery(topic=topic, since=since, until=until, bucket=bucket, top=top_n))
        got.pop("share_of_voice")
        want = brute_stats(posts, topic, since, until, bucket, top_n)
        wrong = [(k, got[k], want[k]) for k in want if not close(got[k], want[k])]
        assert not wrong, (topic, since, until, bucket, top_n, json.dumps(wrong)[:3000])


@pytest.fixture
def path(tmp_path):
    return tmp_path / "monitor.sqlite"


@pytest_twisted.async_yield_fixture
async def store(path, reactor):
    service = SQLiteStore(path, reactor=reactor)
    await service.startService()
    yield service
    await service.stopService()


def test_cover_splits_ranges_into_whole_buckets_and_partial_minutes():
    """Days in the middle, hours and minutes towards the edges, the partial minutes left for the posts."""
    pieces, edges = cover(DAY0 - 90.5, DAY0 + 86400 + 3600 + 61.25)
    assert edges == [(DAY0 - 90.5, DAY0 - 60), (DAY0 + 86400 + 3660, DAY0 + 86400 + 3661.25)]
    assert pieces == [(86400, DAY0, DAY0 + 86400), (60, DAY0 - 60, DAY0),
                      (3600, DAY0 + 86400, DAY0 + 86400 + 3600), (60, DAY0 + 86400 + 3600, DAY0 + 86400 + 3660)]  # fmt: skip
    assert cover(DAY0 + 1, DAY0 + 2) == ([], [(DAY0 + 1, DAY0 + 2)])
    assert cover(DAY0 + 2, DAY0 + 1) == ([], [])
    assert cover(None, None) == ([(86400, None, None)], [])
    assert cover(None, DAY0 + 120, spans=(60,)) == ([(60, None, DAY0 + 120)], [])
    pieces, edges = cover(DAY0 + 30, None)
    assert edges == [(DAY0 + 30, DAY0 + 60)]
    assert pieces[0] == (86400, DAY0 + 86400, None)
    # Every second of a range is in exactly one piece or edge.
    rng = random.Random(7)
    for _ in range(200):
        lo = DAY0 + rng.uniform(-86400, 86400)
        hi = lo + rng.uniform(0, 3 * 86400)
        pieces, edges = cover(lo, hi)
        covered = sorted([(a, b) for a, b in edges] + [(a, b) for _, a, b in pieces])
        assert covered[0][0] == lo and covered[-1][1] == hi
        assert all(x[1] == y[0] for x, y in zip(covered, covered[1:]))
        assert all(a % span == 0 and b % span == 0 for span, a, b in pieces)
        # Hours and days only where they are closed; minutes everywhere.
        folded = rng.choice(({}, {3600: DAY0 + 7200}, {3600: DAY0 + 86400 + 3600, 86400: DAY0 + 86400}))
        pieces, edges = cover(lo, hi, folded=folded)
        covered = sorted([(a, b) for a, b in edges] + [(a, b) for _, a, b in pieces])
        assert covered[0][0] == lo and covered[-1][1] == hi
        assert all(x[1] == y[0] for x, y in zip(covered, covered[1:]))
        assert all(span == 60 or (span in folded and b <= folded[span]) for span, a, b in pieces)
    assert cover(None, None, folded={}) == ([(60, None, None)], [])
    assert cover(None, None, folded={3600: DAY0}) == ([(3600, None, DAY0), (60, DAY0, None)], [])


@pytest_twisted.ensureDeferred
async def test_stats_equal_a_brute_force_count_on_real_posts(store, path):
    """Random topics, ranges (edges inside minutes), buckets and top sizes: the rollups say what the posts say."""
    posts = make_posts(3000, seed=1)
    for start in range(0, len(posts), 400):
        await store.store_batch(posts[start : start + 400], {})
    # The same posts again, some in a batch with new ones: each counts once.
    again = make_posts(3100, seed=1)
    assert len(await store.store_batch(again[2500:], {})) == 100
    assert await store.store_batch(again[:10] + again[:10], {}) == []
    await assert_like_brute_force(store, path, random.Random(2), 60)


@pytest_twisted.ensureDeferred
async def test_posts_in_time_order_close_hours_and_days_as_they_pass(store, path):
    """As a live stream writes them: minutes first, hours and days summed once they close, late posts still counted."""
    posts = sorted(make_posts(2500, seed=15), key=lambda p: p.created_at)
    late = posts[::10]
    for start in range(0, len(posts), 100):
        await store.store_batch([p for p in posts[start : start + 100] if p not in late], {})
    db = sqlite3.connect(path)
    folded = dict(db.execute("SELECT span, until FROM rollup_folded"))
    db.close()
    newest = posts[-1].created_at
    assert folded[3600] == math.floor((newest - sqlite_rollups.GRACE) / 3600) * 3600
    assert folded[86400] == math.floor(folded[3600] / 86400) * 86400
    await assert_like_brute_force(store, path, random.Random(16), 30)
    # A tenth of the posts come after their hours and days have closed.
    await store.store_batch(late, {})
    await assert_like_brute_force(store, path, random.Random(17), 30)


def test_post_words_are_the_three_functions_words():
    """The writer's one-pass split gives what hashtags, terms and candidates give, on real texts and odd ones."""
    texts = [text for text, _ in real_texts()] + [
        "@bob://x and http://a.b/c #tag", "Visit www.Example.com NOW!! great service", "A#b c&#d x/#e #1 #we're",
        "it's Acme's fault, isn't it? charged twice... charged twice", "see https://t.co/x?y=#frag then more words",
        "café crème brûlée’s best", "", "THE the The", "dont can't won't", "one\ntwo three-four five_six",
    ]  # fmt: skip
    for text in texts:
        for lang in ("en", None, "es", "de"):
            assert post_words(text, lang) == (hashtags(text), terms(text), candidates(text, lang)), (text, lang)


@pytest.mark.parametrize("keep", [3, 40])
@pytest_twisted.ensureDeferred
async def test_top_lists_from_each_buckets_most_used_keys_stay_exact(store, path, monkeypatch, keep):
    """
    Closed hours and days give only their C{keep} most used terms, tags and
    authors first: the lists still equal the brute force (settled from those
    or read whole), late posts and rescoring included.
    """
    monkeypatch.setattr(sqlite_rollups, "KEEP", keep)
    posts = sorted(make_posts(2500, seed=21), key=lambda p: p.created_at)
    late = posts[::9]
    for start in range(0, len(posts), 250):
        await store.store_batch([p for p in posts[start : start + 250] if p not in late], {})
    await store.store_batch(late, {})
    await assert_like_brute_force(store, path, random.Random(22), 30)


@pytest_twisted.ensureDeferred
async def test_skewed_top_lists_are_settled_from_the_most_used_keys(store, path):
    """
    Words and authors of Zipf-like use over ten closed hours: the top terms
    and authors come from each hour's 20 most used keys (no statement sums
    every row of the hours) and equal the brute force count.
    """
    rng = random.Random(31)
    words = ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(300)]
    weights = [1 / (i + 1) for i in range(len(words))]
    authors = [f"fan{i}" for i in range(300)]
    posts = [
        Post(source="x", network="demo", native_id=f"z{i}", author=rng.choices(authors, weights)[0],
             text=" ".join(rng.choices(words, weights, k=4)) + " #" + rng.choices(words, weights)[0],
             created_at=DAY0 + i * 12.0, topics=("acme",), author_followers=rng.randrange(1_000_000), lang="en")
        for i in range(3600)
    ]  # fmt: skip
    for start in range(0, len(posts), 300):
        await store.store_batch(posts[start : start + 300], {})
    stored = stored_posts(path)
    since, until = DAY0 + 1800.5, DAY0 + 10 * 3600 + 30.25
    want = brute_stats(stored, None, since, until, 3600, 2)
    db = sqlite3.connect(path)
    statements: list = []
    db.set_trace_callback(statements.append)
    trans = db.cursor()
    pieces, edges = sqlite_rollups.cover(trans, since, until)
    assert sum(span == 3600 for span, _, _ in pieces) == 1  # the hours of the range are closed
    tally = sqlite_rollups.edge_tally(trans, None, edges, 3600)
    terms = sqlite_rollups.leaders(trans, "rollup_terms", "", pieces, dict(tally.terms), 2, keep=20)
    by_followers, by_posts = sqlite_rollups.leading_authors(trans, "", pieces, tally, 2, keep=20)
    db.close()
    assert [{"term": k, "count": n} for k, n in terms] == want["top_terms"]
    assert [a for a, *_ in by_posts] == [a["author"] for a in want["top_authors"]["by_posts"]]
    assert [(a, f, n) for a, n, f, *_ in by_followers] == [
        (a["author"], a["followers"], a["posts"]) for a in want["top_authors"]["by_followers"]
    ]
    assert not [s for s in statements if "FROM rollup_terms WHERE" in s or "FROM rollup_authors WHERE" in s]


@pytest_twisted.ensureDeferred
async def test_rescoring_and_late_profiles_move_the_counts(store, path):
    """Sentiment and labels rewritten, authors renamed and followers lowered: still the brute-force answer."""
    posts = make_posts(1500, seed=3)
    await store.store_batch(posts, {})
    rng = random.Random(4)
    db = sqlite3.connect(path)
    ids = [row[0] for row in db.execute("SELECT id FROM posts ORDER BY random() LIMIT 400")]
    db.close()
    changes = [(rng.choice(SENTIMENTS), "model", " question " if rng.random() < 0.5 else "", i) for i in ids]
    await store.update_scores(changes)
    chosen = rng.sample(posts, 200)
    updates = [
        Enriched("x", [p.uid], rng.choice((None, "renamed", p.author)), rng.choice((None, 0, 5))) for p in chosen
    ]
    await store.store_batch([], {}, updates=updates)
    await assert_like_brute_force(store, path, random.Random(5), 40)


@pytest_twisted.ensureDeferred
async def test_migration_backfills_an_older_database(path, reactor):
    """A database from before the rollups gets them from its posts on start, answering as the posts do."""
    store = SQLiteStore(path, reactor=reactor)
    await store.startService()
    await store.store_batch(make_posts(1200, seed=6), {})
    await store.stopService()
    db = sqlite3.connect(path)
    for table in ("rollup_volume", "rollup_labels", "rollup_authors", "rollup_tags", "rollup_terms", "rollup_minutes",
                  "rollup_folded"):  # fmt: skip
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 10")
    db.commit()
    db.close()
    store = SQLiteStore(path, reactor=reactor)
    await store.startService()
    try:
        db = sqlite3.connect(path)
        # V11 counted the posts into minute, hour and day rows; V12 moved the
        # minutes into minute rows and reopened the newest hour and day; V13
        # indexed the hour and day rows by use.
        assert db.execute("PRAGMA user_version").fetchone()[0] == 13
        assert db.execute("SELECT count(*) FROM rollup_terms WHERE span = 60").fetchone()[0] == 0
        assert (
            db.execute(
                "SELECT sum(j.value ->> 2) FROM rollup_minutes AS m, json_each(m.volume) AS j WHERE m.scope = ''"
            ).fetchone()[0]
            == 1200
        )
        newest = max(p.created_at for p in make_posts(1200, seed=6))
        assert dict(db.execute("SELECT span, until FROM rollup_folded")) == {
            3600: math.floor(newest / 3600) * 3600,
            86400: math.floor(newest / 86400) * 86400,
        }
        db.close()
        await assert_like_brute_force(store, path, random.Random(8), 25)
        # New posts after the move, late ones among them, count as well.
        await store.store_batch(make_posts(600, seed=13), {})
        await assert_like_brute_force(store, path, random.Random(14), 25)
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_share_of_voice_and_dashboard_queries_equal_brute_force(store, path):
    """Topic volume, share of voice and advocates/detractors over rollups and partial minutes."""
    await store.store_batch(make_posts(2000, seed=9), {})
    await store.sync_file_topics([Topic(n, terms=(n,), group="g") for n in ("acme", "globex", "initech")])
    posts = stored_posts(path)
    rng = random.Random(10)
    for _ in range(15):
        since = DAY0 + rng.uniform(-3600, SPREAD / 2)
        until = since + rng.uniform(30, 86400)
        inside = [p for p in posts if since <= p["created_at"] < until]
        per_topic = Counter(t for p in inside for t in p["topics"])
        assert await store.topic_volume(since, until) == [
            {"topic": t, "count": n} for t, n in sorted(per_topic.items(), key=lambda i: (-i[1], i[0]))
        ]
        stats = await store.stats(StatsQuery(topic="acme", since=since, until=until))
        total = sum(per_topic.values())
        assert [(t["topic"], t["count"]) for t in stats["share_of_voice"]["topics"]] == sorted(
            per_topic.items(), key=lambda i: (-i[1], i[0])
        ) or total == 0
        topic = rng.choice((None, "globex"))
        people = await store.author_sentiment(topic, since, until)
        scores: dict = {}
        for p in inside:
            if (topic is None or topic in p["topics"]) and p["compound"] is not None:
                scores.setdefault(p["author"], []).append(p["compound"])
        average = {a: sum(s) / len(s) for a, s in scores.items() if len(s) >= 2}
        advocates = sorted((a for a in average if average[a] >= 0.05), key=lambda a: (-average[a], -len(scores[a]), a))
        detractors = sorted((a for a in average if average[a] <= -0.05), key=lambda a: (average[a], -len(scores[a]), a))
        assert [a["author"] for a in people["advocates"]] == advocates[:10]
        assert [a["author"] for a in people["detractors"]] == detractors[:10]
        for row in people["advocates"] + people["detractors"]:
            assert row["posts"] == len(scores[row["author"]])
            assert math.isclose(row["average_compound"], average[row["author"]], abs_tol=1e-9)


@pytest_twisted.ensureDeferred
async def test_trending_terms_equal_brute_force(store, path):
    """Rising terms and top words over every post of both periods, the topic's own words left out."""
    await store.store_batch(make_posts(2500, seed=11), {})
    posts = stored_posts(path)
    own = [Topic("acme", terms=("acme", "service"))]
    exclude = excluded_words(own)
    rng = random.Random(12)
    for _ in range(8):
        since = DAY0 + rng.uniform(0, SPREAD - 7200)
        until = since + rng.uniform(600, 6 * 3600)
        topic = rng.choice((None, "acme"))

        def count(lo, hi):
            counts, n = Counter(), 0
            for p in posts:
                if lo <= p["created_at"] < hi and (topic is None or topic in p["topics"]):
                    n += 1
                    found = candidates(p["text"], p["lang"], exclude)
                    counts.update(found.keys())
            return counts, n

        now, posts_now = count(since, until)
        before, posts_before = count(since - (until - since), since)
        got = await trending_terms(store, topic, since, until, own)
        want_trending = rank(Counter({t: n for t, n in now.items() if n >= MIN_COUNT}), posts_now, before,
                             posts_before, {}, 10)  # fmt: skip
        assert [(r["count"], r["previous"], r["score"]) for r in got["trending"]] == [
            (r["count"], r["previous"], r["score"]) for r in want_trending
        ]
        want_top = top(now, {}, 10)
        assert [r["count"] for r in got["top"]] == [r["count"] for r in want_top]
