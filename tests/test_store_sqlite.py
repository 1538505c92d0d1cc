"""
Tests for L{monitor.store.sqlite}: a real SQLite file in C{tmp_path}, driven
through the real reactor and the adbapi thread pools.
"""

import sqlite3

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from monitor.interfaces import IStore
from monitor.model import Analysis, Post, Topic, iso8601
from monitor.store import MAX_LIMIT, PostQuery, StatsQuery
from monitor.store.migrations import (
    MIGRATIONS,
    SchemaVersionError,
    migrate,
    split_statements,
)
from monitor.store.sqlite import SQLiteStore, fts_query, hashtags, terms

pytestmark = pytest.mark.timeout(60)

#: A multiple of 60, so one-minute buckets start on it.
T0 = 1_700_000_040.0


def make_post(
    native_id,
    text="hello world",
    *,
    created_at=T0,
    source="demo",
    topics=("acme",),
    sentiment="neutral",
    compound=0.0,
    labels=(),
    analysed=True,
    **kw,
):
    analysis = None
    if analysed:
        analysis = Analysis(
            compound=compound,
            pos=max(compound, 0.0),
            neu=1.0 - abs(compound),
            neg=max(-compound, 0.0),
            sentiment=sentiment,
            labels=tuple(labels),
        )
    return Post(
        source=source,
        network=kw.pop("network", "demo"),
        native_id=str(native_id),
        text=text,
        author=kw.pop("author", "someone"),
        created_at=created_at,
        topics=tuple(topics),
        analysis=analysis,
        received_at=created_at + 1,
        **kw,
    )


def connect(store):
    """
    A plain connection to the store's file, to look behind its back.
    """
    return sqlite3.connect(store.path)


async def all_pages(store, **filters):
    """
    Every post the filters match, page by page.
    """
    seen, cursor = [], None
    while True:
        page, cursor = await store.query_posts(PostQuery(cursor=cursor, **filters))
        seen.extend(page)
        if cursor is None:
            return seen


async def ids(store, **filters):
    page, _ = await store.query_posts(PostQuery(limit=MAX_LIMIT, **filters))
    return [p["native_id"] for p in page]


@pytest.fixture
def path(tmp_path):
    return tmp_path / "var" / "monitor.sqlite"


@pytest_twisted.async_yield_fixture
async def store(path, reactor):
    service = SQLiteStore(path, reactor=reactor)
    await service.startService()
    yield service
    await service.stopService()


# -- schema and lifecycle ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_migrates_an_empty_database(store, path):
    """A new file gets its directory, the latest schema version and WAL mode."""
    assert path.exists()
    db = connect(store)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    assert {
        "posts",
        "post_topics",
        "post_tags",
        "posts_fts",
        "cursors",
        "topics",
        "dead_letters",
    } <= tables


def test_provides_istore(path):
    """The store provides the whole IStore interface."""
    assert verifyObject(IStore, SQLiteStore(path))


def test_refuses_an_in_memory_database():
    """Two pools on ':memory:' would be two databases, so it is refused."""
    with pytest.raises(ValueError):
        SQLiteStore(":memory:")


@pytest_twisted.ensureDeferred
async def test_reopen_is_idempotent(path, reactor):
    """Opening a migrated file again applies nothing and keeps the data."""
    first = SQLiteStore(path, reactor=reactor)
    await first.startService()
    await first.store_batch([make_post(1)], {"demo": "c1"})
    await first.stopService()

    second = SQLiteStore(path, reactor=reactor)
    await second.startService()
    try:
        assert await second.count_posts() == 1
        assert await second.get_cursor("demo") == "c1"
        await second.ready()
    finally:
        await second.stopService()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()


@pytest_twisted.ensureDeferred
async def test_refuses_a_newer_database(path, reactor):
    """A file from a newer schema fails the start with a clear error."""
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
    db.close()
    store = SQLiteStore(path, reactor=reactor)
    try:
        with pytest.raises(SchemaVersionError, match="newer monitor"):
            await store.startService()
        with pytest.raises(SchemaVersionError):
            await store.ready()
        with pytest.raises(SchemaVersionError):
            await store.count_posts()
    finally:
        await store.stopService()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    db.close()


def test_a_failed_migration_is_rolled_back(tmp_path):
    """A step that fails leaves the version and schema of the step before."""
    steps = (
        "CREATE TABLE one (x);",
        "CREATE TABLE two (x); INSERT INTO nowhere VALUES (1);",
    )
    db = sqlite3.connect(tmp_path / "m.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, "m.sqlite", steps)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"one"}
    assert migrate(db, "m.sqlite", steps[:1]) == []


def test_split_statements_keeps_trigger_bodies():
    """Semicolons inside a trigger body do not split the statement."""
    script = """
        CREATE TABLE t (x);
        CREATE TRIGGER t_ai AFTER INSERT ON t BEGIN
            SELECT 1; SELECT 2;
        END;
        -- a comment; with a semicolon
        CREATE INDEX t_x ON t (x);
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


@pytest_twisted.ensureDeferred
async def test_refuses_work_before_start(path, reactor):
    """A store that was never started fails calls instead of hanging them."""
    store = SQLiteStore(path, reactor=reactor)
    with pytest.raises(RuntimeError, match="not running"):
        await store.get_cursor("demo")


@pytest_twisted.ensureDeferred
async def test_calls_made_while_starting_wait_for_migrations(path, reactor):
    """Reads and writes issued right after start run once the schema exists."""
    store = SQLiteStore(path, reactor=reactor)
    started = store.startService()
    try:
        stored = store.store_batch([make_post(1)], {})
        counted = store.count_posts()
        assert await stored == 1
        assert await counted in (0, 1)
        await started
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_work_in_flight(path, reactor):
    """Stopping lets a batch already handed over commit before closing."""
    store = SQLiteStore(path, reactor=reactor)
    await store.startService()
    batch = store.store_batch([make_post(i) for i in range(300)], {"demo": "end"})
    await store.stopService()
    assert await batch == 300
    with pytest.raises(RuntimeError, match="not running"):
        await store.count_posts()

    again = SQLiteStore(path, reactor=reactor)
    await again.startService()
    try:
        assert await again.count_posts() == 300
        assert await again.get_cursor("demo") == "end"
    finally:
        await again.stopService()


# -- store_batch and cursors ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_store_batch_is_idempotent_on_uid(store):
    """A uid already stored, or repeated in a batch, is stored only once."""
    posts = [make_post(1), make_post(2), make_post(2), make_post(3)]
    assert await store.store_batch(posts, {}) == 3
    assert await store.store_batch(posts, {}) == 0
    assert await store.store_batch([make_post(3), make_post(4)], {}) == 1
    assert await store.count_posts() == 4
    other_network = make_post(1, network="other")
    assert await store.store_batch([other_network], {}) == 1


@pytest_twisted.ensureDeferred
async def test_store_batch_saves_cursors(store):
    """Cursors are saved with the batch and later ones replace earlier ones."""
    assert await store.get_cursor("demo") is None
    await store.store_batch([make_post(1)], {"demo": "10", "other": "a"})
    await store.store_batch([], {"demo": "11"})
    assert await store.get_cursor("demo") == "11"
    assert await store.get_cursor("other") == "a"


@pytest_twisted.ensureDeferred
async def test_a_failing_batch_stores_nothing(store):
    """An error after the posts are written rolls back posts and cursor."""
    db = connect(store)
    db.execute(
        "CREATE TRIGGER fail_cursor BEFORE INSERT ON cursors "
        "BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
    )
    db.commit()
    posts = [make_post(1, "a #tagged post"), make_post(2)]
    with pytest.raises(sqlite3.IntegrityError, match="forced failure"):
        await store.store_batch(posts, {"demo": "c2"})
    assert await store.count_posts() == 0
    assert await store.get_cursor("demo") is None
    assert await ids(store, q="tagged") == []
    for table in ("post_topics", "post_tags"):
        assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0

    db.execute("DROP TRIGGER fail_cursor")
    db.commit()
    db.close()
    assert await store.store_batch(posts, {"demo": "c2"}) == 2
    assert await store.get_cursor("demo") == "c2"


@pytest_twisted.ensureDeferred
async def test_stored_rows_keep_search_index_in_sync(store):
    """Topics, hashtags and full-text rows are written for new posts only."""
    posts = [
        make_post(1, "#Acme rocks #acme #ACME #1 &#39; x.com/#frag", topics=("b", "a")),
        make_post(2, "plain", topics=()),
    ]
    await store.store_batch(posts, {})
    await store.store_batch(posts, {})
    db = connect(store)
    try:
        assert db.execute("SELECT topic FROM post_topics ORDER BY topic").fetchall() == [
            ("a",),
            ("b",),
        ]
        assert db.execute("SELECT tag FROM post_tags").fetchall() == [("acme",)]
        db.execute("INSERT INTO posts_fts (posts_fts) VALUES ('integrity-check')")
        assert db.execute("SELECT count(*) FROM posts_fts").fetchone()[0] == 2
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_post_is_returned_verbatim(store):
    """Every field comes back in the API shape; markup in text is untouched."""
    text = "<script>alert('x')</script> & \"quotes\" café 🎉"
    post = make_post(
        "n1",
        text,
        created_at=T0 + 0.25,
        topics=("zeta", "acme"),
        sentiment="negative",
        compound=-0.5,
        labels=("complaint", "purchase_intent"),
        author="<b>mallory</b>",
        url="https://example.com/p/1",
        lang="en",
        likes=3,
        reposts=2,
        replies=1,
        author_followers=42,
        author_verified=True,
        lat=51.5,
        lon=-0.12,
        story="s7",
    )
    await store.store_batch([post], {})
    [got], following = await store.query_posts(PostQuery())
    assert following is None
    assert got == {
        "id": "demo:n1",
        "source": "demo",
        "network": "demo",
        "native_id": "n1",
        "author": "<b>mallory</b>",
        "text": text,
        "created_at": iso8601(T0 + 0.25),
        "url": "https://example.com/p/1",
        "lang": "en",
        "topics": ["acme", "zeta"],
        "labels": ["complaint", "purchase_intent"],
        "sentiment": {
            "compound": -0.5,
            "pos": 0.0,
            "neu": 0.5,
            "neg": 0.5,
            "label": "negative",
            "by": "vader",
        },
        "likes": 3,
        "reposts": 2,
        "replies": 1,
        "author_followers": 42,
        "author_verified": True,
        "lat": 51.5,
        "lon": -0.12,
        "story": "s7",
    }


@pytest_twisted.ensureDeferred
async def test_post_without_analysis_has_null_scores(store):
    """A post stored without analysis has null scores and no labels."""
    await store.store_batch([make_post(1, analysed=False)], {})
    [got], _ = await store.query_posts(PostQuery())
    assert got["sentiment"] == dict.fromkeys(("compound", "pos", "neu", "neg", "label", "by"))
    assert got["labels"] == []
    stats = await store.stats(StatsQuery())
    assert stats["count"] == 1
    assert stats["sentiment"]["average_compound"] is None


# -- query_posts ---------------------------------------------------------


@pytest.fixture
def filter_posts():
    return [
        make_post(1, "Acme phone battery died", created_at=T0 + 1, source="x",
                  sentiment="negative", compound=-0.6, labels=("complaint",)),
        make_post(2, "I want to buy an Acme phone", created_at=T0 + 2, source="bsky",
                  sentiment="positive", compound=0.5, labels=("purchase_intent",)),
        make_post(3, "Rival phone is fine", created_at=T0 + 3, source="x",
                  topics=("rival",), labels=("question",)),
        make_post(4, "Acme and Rival both crashed", created_at=T0 + 4, source="bsky",
                  topics=("acme", "rival"), sentiment="negative", compound=-0.9,
                  labels=("crisis", "complaint")),
    ]  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_query_filters(store, filter_posts):
    """Each filter alone, and combined, selects exactly the matching posts."""
    await store.store_batch(filter_posts, {})
    assert await ids(store) == ["4", "3", "2", "1"]
    assert await ids(store, topic="acme") == ["4", "2", "1"]
    assert await ids(store, topic="rival") == ["4", "3"]
    assert await ids(store, topic="nothing") == []
    assert await ids(store, source="x") == ["3", "1"]
    assert await ids(store, sentiment="negative") == ["4", "1"]
    assert await ids(store, sentiment="neutral") == ["3"]
    assert await ids(store, label="complaint") == ["4", "1"]
    assert await ids(store, label="purchase_intent") == ["2"]
    assert await ids(store, label="crisis") == ["4"]
    assert await ids(store, since=T0 + 2) == ["4", "3", "2"]
    assert await ids(store, until=T0 + 2) == ["1"]
    assert await ids(store, since=T0 + 2, until=T0 + 4) == ["3", "2"]
    assert await ids(store, q="phone") == ["3", "2", "1"]
    assert await ids(store, topic="acme", source="bsky", sentiment="negative") == ["4"]
    assert await ids(store, topic="acme", q="phone", label="complaint") == ["1"]


@pytest_twisted.ensureDeferred
async def test_posts_of_a_story(store, path):
    """story= selects a story's posts, newest first and page by page, through the (story, created_at) index."""
    posts = [make_post(i, f"post {i}", created_at=T0 + i, story="s1" if i % 3 else "s2") for i in range(1, 10)]
    posts.append(make_post(10, "no story", created_at=T0 + 10))
    await store.store_batch(posts, {})
    assert await ids(store, story="s2") == ["9", "6", "3"]
    assert await ids(store, story="s1", topic="acme", since=T0 + 4) == ["8", "7", "5", "4"]
    assert await ids(store, story="s404") == []
    page, following = await store.query_posts(PostQuery(story="s1", limit=4))
    rest, end = await store.query_posts(PostQuery(story="s1", limit=4, cursor=following))
    assert [p["native_id"] for p in page + rest] == ["8", "7", "5", "4", "2", "1"] and end is None
    assert await store.count_matching(PostQuery(story="s1")) == 6

    def plan(trans):
        sql, params, _ = SQLiteStore._plan_posts(PostQuery(story="s1"))
        return " ".join(row[-1] for row in trans.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())

    assert "posts_story_created" in await store.run_read(plan)


@pytest_twisted.ensureDeferred
async def test_count_matching(store, filter_posts):
    """The count of a search is that of all its pages, and stops at the given most."""
    await store.store_batch(filter_posts, {})
    assert await store.count_matching(PostQuery()) == 4
    assert await store.count_matching(PostQuery(topic="acme", limit=1)) == 3
    assert await store.count_matching(PostQuery(q="phone", source="x")) == 2
    assert await store.count_matching(PostQuery(q="!!!")) == 0
    assert await store.count_matching(PostQuery(), most=2) == 2
    with pytest.raises(ValueError, match="^sentiment: "):
        await store.count_matching(PostQuery(sentiment="angry"))


@pytest.mark.parametrize(
    "query, field",
    [
        (PostQuery(sentiment="angry"), "sentiment"),
        (PostQuery(label="complaint' OR 1=1 --"), "label"),
        (PostQuery(limit=0), "limit"),
        (PostQuery(limit=MAX_LIMIT + 1), "limit"),
        (PostQuery(cursor="not-a-cursor"), "cursor"),
        (PostQuery(cursor="!!!"), "cursor"),
        (PostQuery(since=float("nan")), "since"),
        (PostQuery(story="s1' OR 1=1 --"), "story"),
        (PostQuery(story=""), "story"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_query_rejects_bad_filters(store, query, field):
    """A bad filter fails with a ValueError that names the field."""
    with pytest.raises(ValueError, match=f"^{field}: "):
        await store.query_posts(query)


@pytest_twisted.ensureDeferred
async def test_full_text_search(store):
    """Search folds case and accents, keeps phrases and allows prefixes."""
    await store.store_batch(
        [
            make_post(1, "Le café était fermé"),
            make_post(2, "best cafe in town", created_at=T0 + 1),
            make_post(3, "the brown fox jumps", created_at=T0 + 2),
            make_post(4, "a fox that is brown", created_at=T0 + 3),
            make_post(5, "Twisted Python rules", created_at=T0 + 4),
        ],
        {},
    )
    assert await ids(store, q="cafe") == ["2", "1"]
    assert await ids(store, q="CAFÉ") == ["2", "1"]
    assert await ids(store, q="ferme cafe") == ["1"]
    assert await ids(store, q="brown fox") == ["4", "3"]
    assert await ids(store, q='"brown fox"') == ["3"]
    assert await ids(store, q="twist*") == ["5"]
    assert await ids(store, q="twist") == []
    assert await ids(store, q="   ") == ["5", "4", "3", "2", "1"]


@pytest.mark.parametrize(
    "q",
    [
        '"',
        '""',
        "*",
        "NEAR(",
        "NEAR(a b",
        "'; drop table posts; --",
        "a OR",
        "AND",
        "NOT fox",
        "^fox",
        "fox:",
        "text:fox",
        "(fox",
        "fox)",
        '"unbalanced phrase',
        "-fox +brown",
        "{fox}",
        "fox\x00brown",
        "💥",
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_search_text_is_only_text(store, q):
    """FTS5 syntax in search text is searched for, never parsed or failed on."""
    await store.store_batch([make_post(1, "the brown fox")], {})
    page, _ = await store.query_posts(PostQuery(q=q))
    assert isinstance(page, list)
    assert await store.count_posts() == 1


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fts_query_is_always_valid(text):
    """Whatever the text, the FTS5 query built from it parses."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE f USING fts5 (x, tokenize='unicode61 remove_diacritics 2')")
    query = fts_query(text)
    if query is not None:
        db.execute("SELECT * FROM f WHERE f MATCH ?", (query,)).fetchall()


def test_fts_query_quotes_words_and_phrases():
    """Words and phrases become FTS5 strings; punctuation alone is dropped."""
    assert fts_query('acme "battery life" fix*') == '"acme" "battery life" "fix"*'
    assert fts_query('say "hi') == '"say" "hi"'
    assert fts_query('a"b') == '"a" "b"'
    assert fts_query("* ( ) \" '") is None


@pytest_twisted.ensureDeferred
async def test_pagination_with_equal_times(store):
    """Pages over many posts sharing timestamps give each post exactly once."""
    posts = [
        make_post(i, created_at=T0 + (i // 5), topics=("acme",) if i % 2 else ("acme", "b"))
        for i in range(23)
    ]
    await store.store_batch(posts, {})
    for filters in ({}, {"topic": "acme"}, {"topic": "b"}, {"q": "hello"}):
        for limit in (1, 4, 5, 23):
            seen = await all_pages(store, limit=limit, **filters)
            uids = [p["id"] for p in seen]
            assert len(uids) == len(set(uids))
            expected = {p.uid for p in posts if filters.get("topic", "acme") in p.topics}
            assert set(uids) == expected
            times = [p["created_at"] for p in seen]
            assert times == sorted(times, reverse=True)


@pytest_twisted.ensureDeferred
async def test_last_full_page_has_no_cursor(store):
    """When a page ends exactly at the last post, there is no next cursor."""
    await store.store_batch([make_post(i, created_at=T0 + i) for i in range(4)], {})
    page, following = await store.query_posts(PostQuery(limit=2))
    assert [p["native_id"] for p in page] == ["3", "2"]
    page, following = await store.query_posts(PostQuery(limit=2, cursor=following))
    assert [p["native_id"] for p in page] == ["1", "0"]
    assert following is None


# -- stats ---------------------------------------------------------------


@pytest.fixture
def stats_posts():
    return [
        make_post("a1", "Battery died again #Acme #fail https://acme.example/x?y=#z @support",
                  created_at=T0 + 5, author="alice", author_followers=100,
                  sentiment="positive", compound=0.8, labels=("complaint",),
                  likes=3, reposts=1),
        make_post("a2", "Why is the battery so bad? #acme", created_at=T0 + 30,
                  author="bob", author_followers=5000, sentiment="negative",
                  compound=-0.6, labels=("complaint", "question"), likes=10, replies=4),
        make_post("a3", "Thinking about buying the new phone battery pack",
                  created_at=T0 + 70, author="alice", author_followers=120,
                  labels=("purchase_intent",)),
        make_post("a4", "Love the screen #ACME #love", created_at=T0 + 200,
                  author="carol", sentiment="positive", compound=0.5, likes=2),
        make_post("r1", "rival screen", created_at=T0 + 10, topics=("rival",),
                  author="dave", sentiment="positive", compound=0.4),
        make_post("b1", "Battery fire! #recall", created_at=T0 + 75,
                  topics=("acme", "rival"), author="erin", author_followers=50,
                  sentiment="negative", compound=-0.9, labels=("crisis",),
                  likes=20, reposts=5),
        make_post("o1", "too early #acme", created_at=T0 - 100, author="zed"),
        make_post("o2", "too late #acme", created_at=T0 + 600, author="zed"),
    ]  # fmt: skip


@pytest.fixture
def group_topics():
    return [
        Topic("acme", terms=("acme",), group="phones"),
        Topic("rival", terms=("rival",), group="phones"),
        Topic("other", terms=("other",), group="cars"),
        Topic("solo", terms=("solo",)),
    ]


@pytest_twisted.ensureDeferred
async def test_stats_of_a_topic(store, stats_posts, group_topics):
    """Counts, buckets, top lists and share of voice are exact on a known set."""
    await store.store_batch(stats_posts, {})
    await store.sync_file_topics(group_topics)
    stats = await store.stats(
        StatsQuery(topic="acme", since=T0, until=T0 + 300, bucket=60, top=10)
    )
    assert stats["sentiment"].pop("average_compound") == pytest.approx(-0.04)
    assert stats["top_terms"] == [{"term": "battery", "count": 4}] + [
        {"term": term, "count": 1}
        for term in ("bad", "buying", "died", "fire", "love", "new", "pack", "phone", "screen")
    ]
    del stats["top_terms"]
    by_followers = stats["top_authors"]["by_followers"]
    assert by_followers[1].pop("average_compound") == pytest.approx(0.4)
    assert stats == {
        "topic": "acme",
        "since": iso8601(T0),
        "until": iso8601(T0 + 300),
        "bucket": 60,
        "count": 5,
        "sentiment": {"positive": 2, "neutral": 1, "negative": 2},
        "labels": {"complaint": 2, "purchase_intent": 1, "question": 1, "crisis": 1},
        "engagement": {"likes": 35, "reposts": 6, "replies": 4},
        "volume": [
            {"start": iso8601(T0), "count": 2, "positive": 1, "neutral": 0, "negative": 1},
            {"start": iso8601(T0 + 60), "count": 2, "positive": 0, "neutral": 1, "negative": 1},
            {"start": iso8601(T0 + 180), "count": 1, "positive": 1, "neutral": 0, "negative": 0},
        ],
        "top_authors": {
            "by_followers": [
                {"author": "bob", "followers": 5000, "posts": 1, "average_compound": -0.6},
                {"author": "alice", "followers": 120, "posts": 2},
                {"author": "erin", "followers": 50, "posts": 1, "average_compound": -0.9},
            ],
            "by_posts": [
                {"author": "alice", "followers": 120, "posts": 2,
                 "average_compound": pytest.approx(0.4)},
                {"author": "bob", "followers": 5000, "posts": 1, "average_compound": -0.6},
                {"author": "erin", "followers": 50, "posts": 1, "average_compound": -0.9},
                {"author": "carol", "followers": None, "posts": 1, "average_compound": 0.5},
            ],
        },
        "top_hashtags": [
            {"tag": "acme", "count": 3},
            {"tag": "fail", "count": 1},
            {"tag": "love", "count": 1},
            {"tag": "recall", "count": 1},
        ],
        "share_of_voice": {
            "group": "phones",
            "topics": [
                {"topic": "acme", "count": 5, "share": pytest.approx(5 / 7)},
                {"topic": "rival", "count": 2, "share": pytest.approx(2 / 7)},
            ],
        },
    }  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_stats_of_everything(store, stats_posts, group_topics):
    """Without a topic, stats cover every post in range and have no share."""
    await store.store_batch(stats_posts, {})
    await store.sync_file_topics(group_topics)
    stats = await store.stats(StatsQuery(since=T0, until=T0 + 300, bucket=3600, top=2))
    assert stats["count"] == 6
    assert stats["share_of_voice"] is None
    assert stats["volume"] == [
        {"start": iso8601(T0 - T0 % 3600), "count": 6,
         "positive": 3, "neutral": 1, "negative": 2},
    ]  # fmt: skip
    assert stats["top_hashtags"] == [{"tag": "acme", "count": 3}, {"tag": "fail", "count": 1}]
    assert len(stats["top_terms"]) == 2
    assert len(stats["top_authors"]["by_posts"]) == 2
    everything = await store.stats(StatsQuery())
    assert everything["count"] == 8
    assert everything["since"] is None and everything["until"] is None


@pytest_twisted.ensureDeferred
async def test_share_of_voice_needs_a_group(store, stats_posts, group_topics):
    """A topic without a group, or unknown, has no share of voice."""
    await store.store_batch(stats_posts, {})
    await store.sync_file_topics(group_topics)
    assert (await store.stats(StatsQuery(topic="solo")))["share_of_voice"] is None
    assert (await store.stats(StatsQuery(topic="unknown")))["share_of_voice"] is None
    other = await store.stats(StatsQuery(topic="other"))
    assert other["share_of_voice"] == {
        "group": "cars",
        "topics": [{"topic": "other", "count": 0, "share": 0}],
    }


@pytest_twisted.ensureDeferred
async def test_stats_of_an_empty_range(store):
    """An empty range gives zeros, empty lists and no average."""
    stats = await store.stats(StatsQuery(topic="acme"))
    assert stats["count"] == 0
    assert stats["sentiment"] == {
        "positive": 0,
        "neutral": 0,
        "negative": 0,
        "average_compound": None,
    }
    assert stats["labels"] == {"complaint": 0, "purchase_intent": 0, "question": 0, "crisis": 0}
    assert stats["engagement"] == {"likes": 0, "reposts": 0, "replies": 0}
    for key in ("volume", "top_hashtags", "top_terms"):
        assert stats[key] == []


@pytest_twisted.ensureDeferred
async def test_buckets_before_the_epoch_round_down(store):
    """Bucket starts are floored, also for negative times."""
    await store.store_batch([make_post(1, created_at=-30.5), make_post(2, created_at=59.0)], {})
    stats = await store.stats(StatsQuery(bucket=60))
    assert [(b["start"], b["count"]) for b in stats["volume"]] == [
        (iso8601(-60), 1),
        (iso8601(0), 1),
    ]


@pytest.mark.parametrize(
    "query, field",
    [
        (StatsQuery(bucket=0), "bucket"),
        (StatsQuery(bucket=1.5), "bucket"),
        (StatsQuery(top=0), "top"),
        (StatsQuery(until=float("inf")), "until"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_stats_rejects_bad_queries(store, query, field):
    """A bad stats query fails with a ValueError that names the field."""
    with pytest.raises(ValueError, match=f"^{field}: "):
        await store.stats(query)


def test_terms_skip_noise():
    """Terms leave out stopwords, short words, URLs, handles and hashtags."""
    text = "It's the Battery's fault! See https://x.co/battery @battery_bot #battery ok 42abc"
    assert terms(text) == {"battery", "fault", "abc"}


def test_hashtags_are_normalised():
    """Hashtags are lower-cased, without '#', and not URL fragments or numbers."""
    text = "#Acme #ÉTÉ2024 a#b #1 https://x.co/#frag &#39; (#yes)"
    assert hashtags(text) == {"acme", "été2024", "yes"}


# -- dead letters --------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_dead_letters(store):
    """Raw bytes are kept, shown decoded with replacements, newest first."""
    await store.dead_letter("x", b"\xff\xfe{not json", "bad json", "line 3")
    await store.dead_letter("bsky", b'{"ok": 1}', "no text", "frame 9")
    await store.dead_letter("x", "caf\udce9", "bad encoding", "line 4")
    letters = await store.dead_letters()
    assert [(d["source"], d["error"]) for d in letters] == [
        ("x", "bad encoding"),
        ("bsky", "no text"),
        ("x", "bad json"),
    ]
    oldest = letters[-1]
    assert oldest["raw"] == "\ufffd\ufffd{not json"
    assert oldest["context"] == "line 3"
    assert oldest["received_at"].endswith("Z")
    assert letters[0]["raw"] == "caf\ufffd"
    assert [d["error"] for d in await store.dead_letters(source="x", limit=1)] == [
        "bad encoding"
    ]
    db = connect(store)
    raws = [row[0] for row in db.execute("SELECT raw FROM dead_letters ORDER BY id")]
    db.close()
    assert raws == [b"\xff\xfe{not json", b'{"ok": 1}', b"caf\xe9"]


# -- topics --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sync_file_topics(store):
    """The file's topics are mirrored; topics saved from the web are kept."""
    a, b, c = Topic("a", terms=("a",)), Topic("b", terms=("b",)), Topic("c", terms=("c",))
    await store.sync_file_topics([a, b])
    assert await store.list_topics() == [a, b]

    b_web = Topic("b", terms=("bee", '"b phrase"'), fuzzy=True, group="g")
    await store.save_topic(b_web)
    a2 = Topic("a", terms=("a", "aa"))
    b_file = Topic("b", terms=("file wins?",))
    await store.sync_file_topics([a2, b_file, c])
    assert await store.list_topics() == [a2, b_web, c]

    await store.sync_file_topics([])
    assert await store.list_topics() == [b_web]


@pytest_twisted.ensureDeferred
async def test_save_and_delete_topic(store):
    """Topics saved from the web can be replaced and deleted."""
    topic = Topic("ünïcode", terms=("x",), languages=("en",), sources=("demo",))
    await store.save_topic(topic)
    await store.save_topic(Topic("other"), origin="file")
    assert await store.list_topics() == [Topic("other"), topic]
    assert await store.delete_topic("ünïcode") is True
    assert await store.delete_topic("ünïcode") is False
    assert await store.list_topics() == [Topic("other")]
    with pytest.raises(ValueError, match="^origin: "):
        await store.save_topic(topic, origin="api")


@pytest_twisted.ensureDeferred
async def test_source_counters_are_all_time_and_move_with_the_batch(path, reactor):
    """Collected and malformed counts grow in the batch's transaction and survive a reopen."""
    from monitor.model import Rejected

    store = SQLiteStore(path, reactor=reactor)
    await store.startService()
    try:
        assert await store.source_counters("x") == {"posts": 0, "malformed": 0}
        posts = [make_post(f"p{i}", source="x") for i in range(3)]
        # Five collected (two matched no topic, so only three are stored), one rejected.
        bad = Rejected("x", b"{", "bad json", "line 6", "60:6", 1.0)
        await store.store_batch(posts, {"x": "60:6"}, [bad], {"x": 5})
        # The same posts again (a replay): still counted as collected.
        await store.store_batch(posts, {"x": "90:9"})
        await store.dead_letter("x", b"??", "no text", "frame 1")
        await store.dead_letter("y", b"??", "no text", "frame 2")
    finally:
        await store.stopService()
    store = SQLiteStore(path, reactor=reactor)
    await store.startService()
    try:
        assert await store.source_counters("x") == {"posts": 8, "malformed": 2}
        assert await store.source_counters("y") == {"posts": 0, "malformed": 1}
        assert await store.count_posts() == 3
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_a_stored_post_reads_back_as_the_live_channel_sent_it(store):
    """
    One shape of a post (L{monitor.model.api_post}): what the live channel
    sends from the post in memory is what the API reads from the store.
    """
    posts = [
        make_post(1, "acme <b>refund</b> now", compound=-0.4, sentiment="negative", labels=("complaint",),
                  topics=("globex", "acme"), url="https://x.test/1", lang="en", likes=3, reposts=2, replies=1,
                  author_followers=1200, author_verified=True, lat=51.5, lon=-0.12),
        make_post(2, "not scored yet", analysed=False),
    ]  # fmt: skip
    posts[0].story = "s1"
    await store.store_batch(posts, {})
    stored = {p["id"]: p for p in await all_pages(store)}
    for post in posts:
        assert stored[post.uid] == post.to_api()
    assert stored["demo:1"]["sentiment"] == {"compound": -0.4, "pos": 0.0, "neu": 0.6, "neg": 0.4,
                                             "label": "negative", "by": "vader"}  # fmt: skip
    assert stored["demo:1"]["topics"] == ["acme", "globex"]
