"""
What every L{IQueue} promises, on every provider (the memory queue and the
Redis stream): order, batches, waiting gets, backpressure that never drops,
and posts and rejected payloads that travel intact.
"""

import pytest_twisted
from twisted.internet.defer import CancelledError
from zope.interface.verify import verifyObject

from monitor.interfaces import IQueue
from monitor.model import Analysis, Enriched, Post, Rejected

WAIT = 5  # seconds any one step may take on a real reactor


def post(i, **kw):
    return Post(source="s", network="s", native_id=str(i), text=f"acme post {i} ✓", author="a",
                created_at=1.7e9 + i, cursor=str(i), **kw)  # fmt: skip


def test_provides_the_interface(make_queue):
    """verifyObject: every method of IQueue is there with its signature."""
    verifyObject(IQueue, make_queue())


@pytest_twisted.ensureDeferred
async def test_fifo_in_batches_of_at_most_max_items(make_queue, reactor):
    """Posts come out in the order they went in, in non-empty batches no larger than asked."""
    q = make_queue()
    for i in range(7):
        await q.put(post(i)).addTimeout(WAIT, reactor)
    seen = []
    while len(seen) < 7:
        batch = await q.get(3).addTimeout(WAIT, reactor)
        assert 1 <= len(batch) <= 3
        seen.extend(batch)
        await q.ack(batch)
    assert [p.native_id for p in seen] == [str(i) for i in range(7)]


@pytest_twisted.ensureDeferred
async def test_a_waiting_get_fires_when_a_post_arrives(make_queue, reactor):
    """get on an empty queue waits, and fires with the post put afterwards."""
    q = make_queue()
    waiting = q.get(10)
    assert not waiting.called
    await q.put(post(1)).addTimeout(WAIT, reactor)
    batch = await waiting.addTimeout(WAIT, reactor)
    assert [p.native_id for p in batch] == ["1"]
    await q.ack(batch)


@pytest_twisted.ensureDeferred
async def test_full_queue_makes_put_wait_and_drops_nothing(make_queue, reactor):
    """Past its capacity a put waits (the collector is slowed); once posts are taken and acknowledged it goes in."""
    q = make_queue(capacity=3)
    for i in range(3):
        await q.put(post(i)).addTimeout(WAIT, reactor)
    blocked = q.put(post(3))
    assert not blocked.called
    assert q.waiting_puts() == 1
    taken = []
    while not blocked.called:
        batch = await q.get(10).addTimeout(WAIT, reactor)
        taken.extend(batch)
        await q.ack(batch)
        if not blocked.called:
            await blocked.addTimeout(WAIT, reactor)
    while len(taken) < 4:
        batch = await q.get(10).addTimeout(WAIT, reactor)
        taken.extend(batch)
        await q.ack(batch)
    assert [p.native_id for p in taken] == ["0", "1", "2", "3"]
    assert q.waiting_puts() == 0


@pytest_twisted.ensureDeferred
async def test_a_cancelled_put_never_enters(make_queue, reactor):
    """Cancelling a put that waits for room withdraws the post."""
    q = make_queue(capacity=1)
    await q.put(post(0)).addTimeout(WAIT, reactor)
    d = q.put(post(1))
    d.cancel()
    try:
        await d
    except CancelledError:
        pass
    batch = await q.get(10).addTimeout(WAIT, reactor)
    assert [p.native_id for p in batch] == ["0"]
    await q.ack(batch)
    await q.put(post(2)).addTimeout(WAIT, reactor)
    batch = await q.get(10).addTimeout(WAIT, reactor)
    assert [p.native_id for p in batch] == ["2"]


@pytest_twisted.ensureDeferred
async def test_posts_and_rejected_payloads_travel_intact(make_queue, reactor):
    """Every field of a post survives the queue, a rejected payload keeps its raw bytes, a late profile its posts."""
    q = make_queue()
    p = post(1, url="https://x.example/1", lang="en", likes=3, lat=48.8, lon=2.3, author_followers=10,
             author_verified=True, received_at=1.7e9, extra={"k": "v"}, story="s42")  # fmt: skip
    p.topics = ("Acme",)
    p.analysis = Analysis(0.5, 0.1, 0.6, 0.3, "positive", ("question",))
    bad = Rejected(source="s", raw=b"\xff\x00{not json", error="invalid JSON", context="line 3", cursor="9",
                   received_at=1.7e9)  # fmt: skip
    late = Enriched(source="s", uids=[p.uid], author="alice.example.com", author_followers=12,
                    author_verified=True, received_at=1.7e9)  # fmt: skip
    await q.put(p).addTimeout(WAIT, reactor)
    await q.put(bad).addTimeout(WAIT, reactor)
    await q.put(late).addTimeout(WAIT, reactor)
    got = []
    while len(got) < 3:
        batch = await q.get(10).addTimeout(WAIT, reactor)
        got.extend(batch)
    assert got[0].to_dict() == p.to_dict()
    assert got[0].story == "s42"
    assert got[1] == bad
    assert got[2] == late
    await q.ack(got)
