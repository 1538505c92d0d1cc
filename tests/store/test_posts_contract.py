"""
The contract of the posts seam, L{monitor.interfaces.IStore}: one suite run
against every provider, each on a real database (a SQLite file in
C{tmp_path}; a fresh database on the session's throwaway PostgreSQL server),
driven through the real reactor.

Provider-specific behaviour (SQLite's WAL and FTS5 tables, PostgreSQL's
reconnection) is tested beside each provider; what is here every store must
do alike.
"""

from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

import monitor.store.postgresql as postgresql_module
import monitor.store.sqlite as sqlite_module
from monitor.interfaces import IStore
from monitor.model import Enriched, Rejected, Topic, iso8601
from monitor.query import matches, parse
from monitor.store import MAX_LIMIT, PostQuery, StatsQuery
from monitor.store.postgresql import PostgreSQLStore
from monitor.store.sqlite import SQLiteStore
from tests.store.test_sqlite import T0, all_pages, ids, make_post

pytestmark = pytest.mark.timeout(60)


class SQLiteProvider:
    """A SQLite file, and a plain connection to look behind the store's back."""

    name = "sqlite"

    def __init__(self, tmp_path, reactor) -> None:
        self.path = tmp_path / "var" / "monitor.sqlite"
        self.reactor = reactor

    def open(self):
        return SQLiteStore(self.path, reactor=self.reactor)

    def sql(self, *statements: str) -> list:
        db = sqlite3.connect(self.path)
        try:
            rows = []
            for statement in statements:
                rows = db.execute(statement).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def break_cursors(self) -> None:
        self.sql("CREATE TRIGGER fail_cursor BEFORE INSERT ON cursors BEGIN SELECT RAISE(ABORT, 'forced failure'); END")

    def mend_cursors(self) -> None:
        self.sql("DROP TRIGGER fail_cursor")


class PostgreSQLProvider:
    """A fresh PostgreSQL database, and psycopg2 to look behind the store's back."""

    name = "postgresql"

    def __init__(self, dsn: str, reactor) -> None:
        self.dsn = dsn
        self.reactor = reactor

    def open(self):
        return PostgreSQLStore(self.dsn, pool_size=2, reactor=self.reactor)

    def sql(self, *statements: str) -> list:
        import psycopg2

        db = psycopg2.connect(self.dsn)
        try:
            rows = []
            with db.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                    rows = cursor.fetchall() if cursor.description else []
            db.commit()
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
        finally:
            db.close()

    def break_cursors(self) -> None:
        self.sql(
            "CREATE FUNCTION fail_cursor() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'forced failure'; END $$",
            "CREATE TRIGGER fail_cursor BEFORE INSERT ON cursors FOR EACH ROW EXECUTE FUNCTION fail_cursor()",
        )

    def mend_cursors(self) -> None:
        self.sql("DROP TRIGGER fail_cursor ON cursors")


#: Every provider of IStore, by name.
PROVIDERS = ("sqlite", "postgresql")


@pytest.fixture(params=PROVIDERS)
def posts_provider(request, tmp_path, reactor):
    """One provider of IStore, on a database of the test's own."""
    if request.param == "sqlite":
        return SQLiteProvider(tmp_path, reactor)
    return PostgreSQLProvider(request.getfixturevalue("postgres_dsn"), reactor)


@pytest_twisted.async_yield_fixture
async def posts_store(posts_provider):
    """A started store of each provider."""
    service = posts_provider.open()
    await service.startService()
    yield service
    await service.stopService()


# -- the interface and the schema ---------------------------------------


@pytest_twisted.ensureDeferred
async def test_provides_istore(posts_store):
    """The store provides the whole IStore interface."""
    assert verifyObject(IStore, posts_store)


@pytest_twisted.ensureDeferred
async def test_reopen_keeps_everything(posts_provider):
    """A second start on the same database migrates nothing and keeps what was stored."""
    store = posts_provider.open()
    await store.startService()
    try:
        await store.store_batch([make_post(1)], {"demo": "c1"})
    finally:
        await store.stopService()
    store = posts_provider.open()
    await store.startService()
    try:
        assert await store.count_posts() == 1
        assert await store.get_cursor("demo") == "c1"
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_refuses_work_before_start(posts_provider):
    """A store that was never started fails calls instead of hanging."""
    with pytest.raises(RuntimeError, match="not running"):
        await posts_provider.open().get_cursor("demo")


# -- store_batch and cursors ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_failing_batch_stores_nothing(posts_store, posts_provider):
    """An error after the posts are written rolls back posts, topics, tags and cursor."""
    posts_provider.break_cursors()
    posts = [make_post(1, "a #tagged post"), make_post(2)]
    with pytest.raises(Exception, match="forced failure"):
        await posts_store.store_batch(posts, {"demo": "c2"}, [Rejected("demo", b"{", "bad", "line 1")], {"demo": 3})
    assert await posts_store.count_posts() == 0
    assert await posts_store.get_cursor("demo") is None
    assert await ids(posts_store, q="tagged") == []
    assert await posts_store.dead_letters() == []
    assert await posts_store.source_counters("demo") == {"posts": 0, "malformed": 0}
    for table in ("post_topics", "post_tags"):
        assert posts_provider.sql(f"SELECT count(*) FROM {table}") == [(0,)]

    posts_provider.mend_cursors()
    assert len(await posts_store.store_batch(posts, {"demo": "c2"})) == 2
    assert await posts_store.get_cursor("demo") == "c2"
    assert await ids(posts_store, q="tagged") == ["1"]


@pytest_twisted.ensureDeferred
async def test_late_profiles_update_stored_posts(posts_store):
    """Enriched rows set the author fields after the batch's posts, in order; unknown values keep the stored ones."""
    first, second = make_post(1, author="did:plc:a"), make_post(2, author="did:plc:b", author_followers=7)
    updates = [
        Enriched("demo", [first.uid], "alice.example", 70, True),
        Enriched("demo", [second.uid], None, None, False),
        Enriched("demo", [first.uid], None, 71, True),
    ]
    await posts_store.store_batch([first, second], {}, (), None, updates)
    page, _ = await posts_store.query_posts(PostQuery())
    got = {p["native_id"]: (p["author"], p["author_followers"], p["author_verified"]) for p in page}
    assert got == {"1": ("alice.example", 71, True), "2": ("did:plc:b", 7, False)}


@pytest_twisted.ensureDeferred
async def test_source_counters_are_all_time_and_move_with_the_batch(posts_provider):
    """Collected and malformed counts grow in the batch's transaction and survive a reopen."""
    store = posts_provider.open()
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
    store = posts_provider.open()
    await store.startService()
    try:
        assert await store.source_counters("x") == {"posts": 8, "malformed": 2}
        assert await store.source_counters("y") == {"posts": 0, "malformed": 1}
        assert await store.count_posts() == 3
        assert [d["context"] for d in await store.dead_letters(source="x")] == ["frame 1", "line 6"]
    finally:
        await store.stopService()


@pytest_twisted.ensureDeferred
async def test_dead_letters(posts_store, posts_provider):
    """Raw bytes are kept, shown decoded with replacements, newest first."""
    await posts_store.dead_letter("x", b"\xff\xfe{not json", "bad json", "line 3")
    await posts_store.dead_letter("bsky", b'{"ok": 1}', "no text", "frame 9")
    await posts_store.dead_letter("x", "caf\udce9", "bad encoding", "line 4")
    letters = await posts_store.dead_letters()
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
    assert [d["error"] for d in await posts_store.dead_letters(source="x", limit=1)] == ["bad encoding"]
    raws = [row[0] for row in posts_provider.sql("SELECT raw FROM dead_letters ORDER BY id")]
    assert raws == [b"\xff\xfe{not json", b'{"ok": 1}', b"caf\xe9"]


# -- story state ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_story_state_round_trip(posts_provider):
    """The one saved state comes back parsed, the last one saved wins, and it survives a reopen."""
    store = posts_provider.open()
    await store.startService()
    try:
        assert await store.story_state() is None
        await store.save_story_state('{"version": 1, "stories": []}')
        await store.save_story_state('{"version": 1, "stories": [{"id": "s1", "text": "caf\u00e9 <b>"}]}')
    finally:
        await store.stopService()
    store = posts_provider.open()
    await store.startService()
    try:
        assert await store.story_state() == {"version": 1, "stories": [{"id": "s1", "text": "café <b>"}]}
    finally:
        await store.stopService()


# -- query_posts ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_posts_of_a_story(posts_store):
    """story= selects a story's posts, newest first and page by page, with the other filters."""
    posts = [make_post(i, f"post {i}", created_at=T0 + i, story="s1" if i % 3 else "s2") for i in range(1, 10)]
    posts.append(make_post(10, "no story", created_at=T0 + 10))
    await posts_store.store_batch(posts, {})
    assert await ids(posts_store, story="s2") == ["9", "6", "3"]
    assert await ids(posts_store, story="s1", topic="acme", since=T0 + 4) == ["8", "7", "5", "4"]
    assert await ids(posts_store, story="s404") == []
    page, following = await posts_store.query_posts(PostQuery(story="s1", limit=4))
    rest, end = await posts_store.query_posts(PostQuery(story="s1", limit=4, cursor=following))
    assert [p["native_id"] for p in page + rest] == ["8", "7", "5", "4", "2", "1"] and end is None
    assert await posts_store.count_matching(PostQuery(story="s1")) == 6


# -- full text: more of the q= semantics ---------------------------------


@pytest_twisted.ensureDeferred
async def test_phrases_and_prefixes(posts_store):
    """Phrases keep word order across punctuation; a prefix works alone and ends a word list; hostile quoting is text."""
    await posts_store.store_batch(
        [
            make_post(1, "Battery-life is great"),
            make_post(2, "life of a battery", created_at=T0 + 1),
            make_post(3, "Charged twice for one order!", created_at=T0 + 2),
            make_post(4, "twice charged, once refunded", created_at=T0 + 3),
            make_post(5, "l'été est là", created_at=T0 + 4),
        ],
        {},
    )
    assert await ids(posts_store, q='"battery life"') == ["1"]
    assert await ids(posts_store, q="battery-life") == ["1"]
    assert await ids(posts_store, q="battery life") == ["2", "1"]
    assert await ids(posts_store, q='"charged twice"') == ["3"]
    assert await ids(posts_store, q="charg* twice") == ["4", "3"]
    assert await ids(posts_store, q='"refund') == []
    assert await ids(posts_store, q="refund*") == ["4"]
    assert await ids(posts_store, q="ete LA") == ["5"]
    assert await ids(posts_store, q='"once" OR nothing') == []


# -- moved from tests/store/test_sqlite.py (provider-neutral) -------------


@pytest_twisted.ensureDeferred
async def test_store_batch_is_idempotent_on_uid(posts_store):
    """A uid already stored, or repeated in a batch, is stored only once."""
    posts = [make_post(1), make_post(2), make_post(2), make_post(3)]
    assert await posts_store.store_batch(posts, {}) == ["demo:1", "demo:2", "demo:3"]
    assert await posts_store.store_batch(posts, {}) == []
    assert await posts_store.store_batch([make_post(3), make_post(4)], {}) == ["demo:4"]
    assert await posts_store.count_posts() == 4
    other_network = make_post(1, network="other")
    assert await posts_store.store_batch([other_network], {}) == ["other:1"]


@pytest_twisted.ensureDeferred
async def test_store_batch_saves_cursors(posts_store):
    """Cursors are saved with the batch and later ones replace earlier ones."""
    assert await posts_store.get_cursor("demo") is None
    await posts_store.store_batch([make_post(1)], {"demo": "10", "other": "a"})
    await posts_store.store_batch([], {"demo": "11"})
    assert await posts_store.get_cursor("demo") == "11"
    assert await posts_store.get_cursor("other") == "a"


@pytest_twisted.ensureDeferred
async def test_post_is_returned_verbatim(posts_store):
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
    await posts_store.store_batch([post], {})
    [got], following = await posts_store.query_posts(PostQuery())
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
async def test_post_without_analysis_has_null_scores(posts_store):
    """A post stored without analysis has null scores and no labels."""
    await posts_store.store_batch([make_post(1, analysed=False)], {})
    [got], _ = await posts_store.query_posts(PostQuery())
    assert got["sentiment"] == dict.fromkeys(("compound", "pos", "neu", "neg", "label", "by"))
    assert got["labels"] == []
    stats = await posts_store.stats(StatsQuery())
    assert stats["count"] == 1
    assert stats["sentiment"]["average_compound"] is None


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
async def test_query_filters(posts_store, filter_posts):
    """Each filter alone, and combined, selects exactly the matching posts."""
    await posts_store.store_batch(filter_posts, {})
    assert await ids(posts_store) == ["4", "3", "2", "1"]
    assert await ids(posts_store, topic="acme") == ["4", "2", "1"]
    assert await ids(posts_store, topic="rival") == ["4", "3"]
    assert await ids(posts_store, topic="nothing") == []
    assert await ids(posts_store, source="x") == ["3", "1"]
    assert await ids(posts_store, sentiment="negative") == ["4", "1"]
    assert await ids(posts_store, sentiment="neutral") == ["3"]
    assert await ids(posts_store, label="complaint") == ["4", "1"]
    assert await ids(posts_store, label="purchase_intent") == ["2"]
    assert await ids(posts_store, label="crisis") == ["4"]
    assert await ids(posts_store, since=T0 + 2) == ["4", "3", "2"]
    assert await ids(posts_store, until=T0 + 2) == ["1"]
    assert await ids(posts_store, since=T0 + 2, until=T0 + 4) == ["3", "2"]
    assert await ids(posts_store, q="phone") == ["3", "2", "1"]
    assert await ids(posts_store, topic="acme", source="bsky", sentiment="negative") == ["4"]
    assert await ids(posts_store, topic="acme", q="phone", label="complaint") == ["1"]


@pytest_twisted.ensureDeferred
async def test_count_matching(posts_store, filter_posts):
    """The count of a search is that of all its pages, and stops at the given most."""
    await posts_store.store_batch(filter_posts, {})
    assert await posts_store.count_matching(PostQuery()) == 4
    assert await posts_store.count_matching(PostQuery(topic="acme", limit=1)) == 3
    assert await posts_store.count_matching(PostQuery(q="phone", source="x")) == 2
    assert await posts_store.count_matching(PostQuery(q="!!!")) == 0
    assert await posts_store.count_matching(PostQuery(), most=2) == 2
    with pytest.raises(ValueError, match="^sentiment: "):
        await posts_store.count_matching(PostQuery(sentiment="angry"))


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
async def test_query_rejects_bad_filters(posts_store, query, field):
    """A bad filter fails with a ValueError that names the field."""
    with pytest.raises(ValueError, match=f"^{field}: "):
        await posts_store.query_posts(query)


@pytest_twisted.ensureDeferred
async def test_full_text_search(posts_store):
    """Search folds case and accents, keeps phrases and allows prefixes."""
    await posts_store.store_batch(
        [
            make_post(1, "Le café était fermé"),
            make_post(2, "best cafe in town", created_at=T0 + 1),
            make_post(3, "the brown fox jumps", created_at=T0 + 2),
            make_post(4, "a fox that is brown", created_at=T0 + 3),
            make_post(5, "Twisted Python rules", created_at=T0 + 4),
        ],
        {},
    )
    assert await ids(posts_store, q="cafe") == ["2", "1"]
    assert await ids(posts_store, q="CAFÉ") == ["2", "1"]
    assert await ids(posts_store, q="ferme cafe") == ["1"]
    assert await ids(posts_store, q="brown fox") == ["4", "3"]
    assert await ids(posts_store, q='"brown fox"') == ["3"]
    assert await ids(posts_store, q="twist*") == ["5"]
    assert await ids(posts_store, q="twist") == []
    assert await ids(posts_store, q="   ") == ["5", "4", "3", "2", "1"]


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
async def test_hostile_search_text_is_only_text(posts_store, q):
    """FTS5 syntax in search text is searched for, never parsed or failed on."""
    await posts_store.store_batch([make_post(1, "the brown fox")], {})
    page, _ = await posts_store.query_posts(PostQuery(q=q))
    assert isinstance(page, list)
    assert await posts_store.count_posts() == 1


@pytest_twisted.ensureDeferred
async def test_pagination_with_equal_times(posts_store):
    """Pages over many posts sharing timestamps give each post exactly once."""
    posts = [make_post(i, created_at=T0 + (i // 5), topics=("acme",) if i % 2 else ("acme", "b")) for i in range(23)]
    await posts_store.store_batch(posts, {})
    for filters in ({}, {"topic": "acme"}, {"topic": "b"}, {"q": "hello"}):
        for limit in (1, 4, 5, 23):
            seen = await all_pages(posts_store, limit=limit, **filters)
            uids = [p["id"] for p in seen]
            assert len(uids) == len(set(uids))
            expected = {p.uid for p in posts if filters.get("topic", "acme") in p.topics}
            assert set(uids) == expected
            times = [p["created_at"] for p in seen]
            assert times == sorted(times, reverse=True)


@pytest_twisted.ensureDeferred
async def test_last_full_page_has_no_cursor(posts_store):
    """When a page ends exactly at the last post, there is no next cursor."""
    await posts_store.store_batch([make_post(i, created_at=T0 + i) for i in range(4)], {})
    page, following = await posts_store.query_posts(PostQuery(limit=2))
    assert [p["native_id"] for p in page] == ["3", "2"]
    page, following = await posts_store.query_posts(PostQuery(limit=2, cursor=following))
    assert [p["native_id"] for p in page] == ["1", "0"]
    assert following is None


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
async def test_stats_of_a_topic(posts_store, stats_posts, group_topics):
    """Counts, buckets, top lists and share of voice are exact on a known set."""
    await posts_store.store_batch(stats_posts, {})
    await posts_store.sync_file_topics(group_topics)
    stats = await posts_store.stats(StatsQuery(topic="acme", since=T0, until=T0 + 300, bucket=60, top=10))
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
async def test_stats_of_everything(posts_store, stats_posts, group_topics):
    """Without a topic, stats cover every post in range and have no share."""
    await posts_store.store_batch(stats_posts, {})
    await posts_store.sync_file_topics(group_topics)
    stats = await posts_store.stats(StatsQuery(since=T0, until=T0 + 300, bucket=3600, top=2))
    assert stats["count"] == 6
    assert stats["share_of_voice"] is None
    assert stats["volume"] == [
        {"start": iso8601(T0 - T0 % 3600), "count": 6,
         "positive": 3, "neutral": 1, "negative": 2},
    ]  # fmt: skip
    assert stats["top_hashtags"] == [{"tag": "acme", "count": 3}, {"tag": "fail", "count": 1}]
    assert len(stats["top_terms"]) == 2
    assert len(stats["top_authors"]["by_posts"]) == 2
    everything = await posts_store.stats(StatsQuery())
    assert everything["count"] == 8
    assert everything["since"] is None and everything["until"] is None


@pytest_twisted.ensureDeferred
async def test_share_of_voice_needs_a_group(posts_store, stats_posts, group_topics):
    """A topic without a group, or unknown, has no share of voice."""
    await posts_store.store_batch(stats_posts, {})
    await posts_store.sync_file_topics(group_topics)
    assert (await posts_store.stats(StatsQuery(topic="solo")))["share_of_voice"] is None
    assert (await posts_store.stats(StatsQuery(topic="unknown")))["share_of_voice"] is None
    other = await posts_store.stats(StatsQuery(topic="other"))
    assert other["share_of_voice"] == {
        "group": "cars",
        "topics": [{"topic": "other", "count": 0, "share": 0}],
    }


@pytest_twisted.ensureDeferred
async def test_stats_of_an_empty_range(posts_store):
    """An empty range gives zeros, empty lists and no average."""
    stats = await posts_store.stats(StatsQuery(topic="acme"))
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
async def test_buckets_before_the_epoch_round_down(posts_store):
    """Bucket starts are floored, also for negative times."""
    await posts_store.store_batch([make_post(1, created_at=-30.5), make_post(2, created_at=59.0)], {})
    stats = await posts_store.stats(StatsQuery(bucket=60))
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
async def test_stats_rejects_bad_queries(posts_store, query, field):
    """A bad stats query fails with a ValueError that names the field."""
    with pytest.raises(ValueError, match=f"^{field}: "):
        await posts_store.stats(query)


@pytest_twisted.ensureDeferred
async def test_sync_file_topics(posts_store):
    """The file's topics are mirrored; topics saved from the web are kept."""
    a, b, c = Topic("a", terms=("a",)), Topic("b", terms=("b",)), Topic("c", terms=("c",))
    await posts_store.sync_file_topics([a, b])
    assert await posts_store.list_topics() == [a, b]

    b_web = Topic("b", terms=("bee", '"b phrase"'), fuzzy=True, group="g")
    await posts_store.save_topic(b_web)
    a2 = Topic("a", terms=("a", "aa"))
    b_file = Topic("b", terms=("file wins?",))
    await posts_store.sync_file_topics([a2, b_file, c])
    assert await posts_store.list_topics() == [a2, b_web, c]

    await posts_store.sync_file_topics([])
    assert await posts_store.list_topics() == [b_web]


@pytest_twisted.ensureDeferred
async def test_save_and_delete_topic(posts_store):
    """Topics saved from the web can be replaced and deleted."""
    topic = Topic("ünïcode", terms=("x",), languages=("en",), sources=("demo",))
    await posts_store.save_topic(topic)
    await posts_store.save_topic(Topic("other"), origin="file")
    assert await posts_store.list_topics() == [Topic("other"), topic]
    assert await posts_store.delete_topic("ünïcode") is True
    assert await posts_store.delete_topic("ünïcode") is False
    assert await posts_store.list_topics() == [Topic("other")]
    with pytest.raises(ValueError, match="^origin: "):
        await posts_store.save_topic(topic, origin="api")


# -- topic queries (moved from tests/test_store_query.py) -----------------

TEXTS = [
    "acme will refund me, they charged twice",
    "acme outage again",
    "refunds from Acme are slow",
    "globex refund",
    "acme giveaway! refund guaranteed",
    "nothing to see",
]


async def fill(store):
    posts = [
        make_post(i, text, created_at=T0 + i, likes=i * 10, author=f"user{i % 2}", lang="en" if i % 3 else "de")
        for i, text in enumerate(TEXTS)
    ]
    await store.store_batch(posts, {})
    return posts


@pytest.mark.parametrize("query", [
    "acme refund*",
    "acme NEAR/3 refund*",
    "(acme OR globex) refund -giveaway",
    "likes:>=20 acme",
    "lang:de OR author:user1",
    "NOT acme",
])  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_query_selects_what_it_matches(posts_store, query):
    """Every post the query matches comes back, newest first, and no other."""
    posts = await fill(posts_store)
    tree = parse(query)
    expected = [p.native_id for p in sorted(posts, key=lambda p: -p.created_at) if matches(tree, p)]
    assert expected, "a query that matches nothing proves little"
    page, cursor = await posts_store.query_posts(PostQuery(query=query, limit=MAX_LIMIT))
    assert [p["native_id"] for p in page] == expected and cursor is None
    assert await posts_store.count_matching(PostQuery(query=query)) == len(expected)
    # One post per page: the cursor goes on after the last one returned.
    assert [p["native_id"] for p in await all_pages(posts_store, query=query, limit=1)] == expected


@pytest_twisted.ensureDeferred
async def test_query_with_other_filters(posts_store):
    """The query narrows what the other filters select."""
    await fill(posts_store)
    page, _ = await posts_store.query_posts(PostQuery(query="refund*", q="acme", since=T0 + 1))
    assert [p["native_id"] for p in page] == ["4", "2"]


@pytest_twisted.ensureDeferred
async def test_a_page_reads_at_most_query_scan_posts(posts_store, monkeypatch):
    """
    A query that finds little stops reading after QUERY_SCAN rows and hands
    back a cursor from the last row read, so paging still reaches every match.
    """
    await fill(posts_store)
    monkeypatch.setattr(sqlite_module, "QUERY_SCAN", 2)
    monkeypatch.setattr(postgresql_module, "QUERY_SCAN", 2)
    page, cursor = await posts_store.query_posts(PostQuery(query="globex", limit=10))
    assert page == [] and cursor is not None  # read "nothing to see" and the giveaway post
    assert [p["native_id"] for p in await all_pages(posts_store, query="globex")] == ["3"]


@pytest.mark.parametrize("query,position", [("acme AND (refund", 17), ("NEAR/3 acme", 1), ("likes:>=x", 7)])
@pytest_twisted.ensureDeferred
async def test_a_bad_query_names_query(posts_store, query, position):
    """A query that does not parse is the query parameter's fault, with the position."""
    with pytest.raises(ValueError, match=rf"^query: at position {position}: expected "):
        await posts_store.query_posts(PostQuery(query=query))
    with pytest.raises(ValueError, match=r"^query: "):
        await posts_store.count_matching(PostQuery(query=query))


@pytest_twisted.ensureDeferred
async def test_a_stored_post_reads_back_as_the_live_channel_sent_it(posts_store):
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
    await posts_store.store_batch(posts, {})
    stored = {p["id"]: p for p in await all_pages(posts_store)}
    for post in posts:
        assert stored[post.uid] == post.to_api()
    assert stored["demo:1"]["sentiment"] == {"compound": -0.4, "pos": 0.0, "neu": 0.6, "neg": 0.4,
                                             "label": "negative", "by": "vader"}  # fmt: skip
    assert stored["demo:1"]["topics"] == ["acme", "globex"]
