"""
The status service on a Clock: every interval one C{status} event on the
bus with each collector's state, the queue's depth and the nodes'; a
broken part is left out rather than silencing the rest; nothing after the
stop.
"""

from twisted.internet.task import Clock

from monitor.bus import STATUS, EventBus
from monitor.queue.memory import MemoryQueue
from monitor.status import Status, StatusService


class Source:
    def __init__(self, name, state="idle"):
        self.name, self.state = name, state

    def status(self):
        return {"name": self.name, "state": self.state}


class Broken:
    name = "broken"

    def status(self):
        raise RuntimeError("boom")


class Nodes:
    def status(self):
        return [{"name": "n1", "state": "connected"}]


def listen(bus):
    heard = []
    bus.subscribe(STATUS, heard.append)
    return heard


def test_says_the_state_every_interval():
    """One event per interval, none before the first, none after the stop; each carries when and the period."""
    clock, bus = Clock(), EventBus()
    heard = listen(bus)
    queue = MemoryQueue(10, reactor=clock)
    service = StatusService(bus, clock, sources=[Source("inbox")], queue=queue, nodes=Nodes(), interval=5)
    service.startService()
    clock.advance(4.9)
    assert heard == []
    clock.advance(0.1)
    (first,) = heard
    assert isinstance(first, Status) and first.at == 5.0 and first.interval == 5
    assert first.state == {
        "sources": [{"name": "inbox", "state": "idle"}],
        "nodes": [{"name": "n1", "state": "connected"}],
        "queue": 0,
    }
    clock.advance(5)
    assert [s.at for s in heard] == [5.0, 10.0]
    service.stopService()
    clock.advance(50)
    assert len(heard) == 2


def test_the_snapshot_is_read_now():
    """The sources page reads the same shape at any moment, with the queue's depth as it is then."""
    clock, bus = Clock(), EventBus()
    queue = MemoryQueue(10, reactor=clock)
    source = Source("inbox")
    service = StatusService(bus, clock, sources=[source], queue=queue)
    assert service.snapshot() == {"sources": [{"name": "inbox", "state": "idle"}], "nodes": None, "queue": 0}
    source.state = "running"
    queue.put("a post")
    assert service.snapshot() == {"sources": [{"name": "inbox", "state": "running"}], "nodes": None, "queue": 1}


def test_the_hub_that_runs_each_collector_is_shown():
    """With a cluster, each source's state names the hub holding its lease."""
    service = StatusService(
        EventBus(), Clock(), sources=[Source("a"), Source("b")], runs_on={"a": "hub-1"}.get, interval=0
    )
    assert service.snapshot()["sources"] == [
        {"name": "a", "state": "idle", "hub": "hub-1"},
        {"name": "b", "state": "idle", "hub": None},
    ]


def test_a_broken_part_is_left_out():
    """A source whose status() raises is missing from the list; broken nodes are None; the rest is there."""

    class BrokenNodes:
        def status(self):
            raise RuntimeError("boom")

    service = StatusService(EventBus(), Clock(), sources=[Broken(), Source("inbox")], nodes=BrokenNodes())
    state = service.snapshot()
    assert state["sources"] == [{"name": "inbox", "state": "idle"}] and state["nodes"] is None


def test_interval_zero_says_nothing_by_itself():
    """Without an interval there is no loop: only an explicit publish() speaks."""
    clock, bus = Clock(), EventBus()
    heard = listen(bus)
    service = StatusService(bus, clock, interval=0)
    service.startService()
    clock.advance(100)
    assert heard == []
    service.publish()
    assert len(heard) == 1 and heard[0].state == {"sources": [], "nodes": None, "queue": None}
    service.stopService()
