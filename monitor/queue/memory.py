"""
The embedded queue: bounded, in memory, with Deferred-based backpressure.
"""

from __future__ import annotations

from collections import deque

from zope.interface import implementer

from twisted.internet.defer import Deferred, succeed

from monitor.interfaces import IQueue


@implementer(IQueue)
class MemoryQueue:
    """
    A bounded FIFO.  A C{put} beyond C{size} returns a Deferred that fires
    only when a consumer has made room, so a collector waiting on it is
    slowed to the pace of analysis instead of growing the hub's memory.

    Waiting consumers are woken on the next reactor turn, not on the first
    C{put}, so that posts arriving together travel together as one batch.
    """

    def __init__(self, size: int = 10000, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._size = size
        self._items: deque = deque()
        self._putters: deque[tuple[Deferred, object]] = deque()
        self._getters: deque[tuple[Deferred, int]] = deque()
        self._wake_call = None

    def size(self) -> int:
        return len(self._items)

    def drained(self) -> bool:
        # Nothing outlives this process: a stop processes everything first.
        return not self._items

    @property
    def capacity(self) -> int:
        return self._size

    def waiting_puts(self) -> int:
        """
        How many producers wait for room (for metrics).
        """
        return len(self._putters)

    def put(self, post) -> Deferred:
        if len(self._items) < self._size:
            self._items.append(post)
            self._schedule_wake()
            return succeed(None)

        def cancel(d: Deferred) -> None:
            try:
                self._putters.remove(entry)
            except ValueError:
                pass

        d = Deferred(cancel)
        entry = (d, post)
        self._putters.append(entry)
        return d

    def get(self, max_items: int) -> Deferred:
        if self._items and not self._getters:
            return succeed(self._take(max_items))

        def cancel(d: Deferred) -> None:
            try:
                self._getters.remove(entry)
            except ValueError:
                pass

        d = Deferred(cancel)
        entry = (d, max_items)
        self._getters.append(entry)
        return d

    def ack(self, posts) -> Deferred:
        # Nothing survives this process anyway; there is nothing to settle.
        return succeed(None)

    def _take(self, max_items: int) -> list:
        n = min(max_items, len(self._items))
        batch = [self._items.popleft() for _ in range(n)]
        self._admit()
        return batch

    def _admit(self) -> None:
        """
        Move waiting producers' posts in while there is room.
        """
        while self._putters and len(self._items) < self._size:
            d, post = self._putters.popleft()
            self._items.append(post)
            d.callback(None)

    def _schedule_wake(self) -> None:
        if self._getters and self._wake_call is None:
            self._wake_call = self._reactor.callLater(0, self._wake)

    def _wake(self) -> None:
        self._wake_call = None
        while self._getters and self._items:
            d, max_items = self._getters.popleft()
            d.callback(self._take(max_items))
