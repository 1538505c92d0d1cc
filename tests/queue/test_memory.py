"""
The bounded memory queue: FIFO, batching, and backpressure through Deferreds.
"""

from twisted.internet.task import Clock

from monitor.interfaces import IQueue
from monitor.queue.memory import MemoryQueue
from zope.interface.verify import verifyObject


def test_provides_interface():
    """MemoryQueue provides IQueue."""
    verifyObject(IQueue, MemoryQueue(1, reactor=Clock()))


def test_put_waits_when_full():
    """A put beyond the bound waits until a get makes room, then the item enters in order."""
    q = MemoryQueue(2, reactor=Clock())
    fired = []
    for i in range(3):
        q.put(i).addCallback(lambda _, i=i: fired.append(i))
    assert fired == [0, 1]
    assert q.size() == 2 and q.waiting_puts() == 1
    got = []
    q.get(1).addCallback(got.extend)
    assert got == [0]
    assert fired == [0, 1, 2]
    q.get(10).addCallback(got.extend)
    assert got == [0, 1, 2]


def test_get_waits_and_batches_one_turn():
    """A waiting get fires on the next reactor turn with everything put meanwhile."""
    clock = Clock()
    q = MemoryQueue(100, reactor=clock)
    got = []
    q.get(10).addCallback(got.append)
    for i in range(5):
        q.put(i)
    assert got == []
    clock.advance(0)
    assert got == [[0, 1, 2, 3, 4]]


def test_cancel_put_withdraws_item():
    """Cancelling a waiting put removes the item; it never enters the queue."""
    q = MemoryQueue(1, reactor=Clock())
    q.put("a")
    d = q.put("b")
    d.addErrback(lambda f: None)
    d.cancel()
    got = []
    q.get(10).addCallback(got.extend)
    assert got == ["a"] and q.size() == 0 and q.waiting_puts() == 0


def test_cancel_get():
    """A cancelled get takes nothing."""
    clock = Clock()
    q = MemoryQueue(5, reactor=clock)
    d = q.get(5)
    d.addErrback(lambda f: None)
    d.cancel()
    q.put(1)
    clock.advance(0)
    assert q.size() == 1
