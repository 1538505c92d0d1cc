"""
Searching stored posts with a topic query (L{monitor.store.PostQuery.query}):
a real SQLite file driven through the real reactor, the answers checked
against the query evaluated on each post by L{monitor.query.matches}.
"""

import pytest
import pytest_twisted

import monitor.store.sqlite as sqlite_module
from monitor.query import matches, parse
from monitor.store import MAX_LIMIT, PostQuery
from tests import test_store_sqlite
from tests.test_store_sqlite import T0, all_pages, make_post

# The SQLite store's fixtures, shared with its own tests.
path, store = test_store_sqlite.path, test_store_sqlite.store

pytestmark = pytest.mark.timeout(60)

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
])
@pytest_twisted.ensureDeferred
async def test_query_selects_what_it_matches(store, query):
    """Every post the query matches comes back, newest first, and no other."""
    posts = await fill(store)
    tree = parse(query)
    expected = [p.native_id for p in sorted(posts, key=lambda p: -p.created_at) if matches(tree, p)]
    assert expected, "a query that matches nothing proves little"
    page, cursor = await store.query_posts(PostQuery(query=query, limit=MAX_LIMIT))
    assert [p["native_id"] for p in page] == expected and cursor is None
    assert await store.count_matching(PostQuery(query=query)) == len(expected)
    # One post per page: the cursor goes on after the last one returned.
    assert [p["native_id"] for p in await all_pages(store, query=query, limit=1)] == expected


@pytest_twisted.ensureDeferred
async def test_query_with_other_filters(store):
    """The query narrows what the other filters select."""
    await fill(store)
    page, _ = await store.query_posts(PostQuery(query="refund*", q="acme", since=T0 + 1))
    assert [p["native_id"] for p in page] == ["4", "2"]


@pytest_twisted.ensureDeferred
async def test_a_page_reads_at_most_query_scan_posts(store, monkeypatch):
    """
    A query that finds little stops reading after QUERY_SCAN rows and hands
    back a cursor from the last row read, so paging still reaches every match.
    """
    await fill(store)
    monkeypatch.setattr(sqlite_module, "QUERY_SCAN", 2)
    page, cursor = await store.query_posts(PostQuery(query="globex", limit=10))
    assert page == [] and cursor is not None  # read "nothing to see" and the giveaway post
    assert [p["native_id"] for p in await all_pages(store, query="globex")] == ["3"]


@pytest.mark.parametrize("query,position", [("acme AND (refund", 17), ("NEAR/3 acme", 1), ("likes:>=x", 7)])
@pytest_twisted.ensureDeferred
async def test_a_bad_query_names_query(store, query, position):
    """A query that does not parse is the query parameter's fault, with the position."""
    with pytest.raises(ValueError, match=rf"^query: at position {position}: expected "):
        await store.query_posts(PostQuery(query=query))
    with pytest.raises(ValueError, match=r"^query: "):
        await store.count_matching(PostQuery(query=query))
